//! `summary.csv`: per function × memory × CPU × payload × cold/warm, the
//! statistics benchmark suites report. Times are over the calls that
//! succeeded; `n` and `failures` count them all. Percentiles interpolate
//! between ranks (numpy's default); `stdev` is the sample standard
//! deviation; the confidence interval is Student's t for the mean.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, StudentsT};

use super::record::Row;

/// Descriptive statistics of one sample.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Stats {
    pub n: usize,
    pub mean: f64,
    pub median: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub stdev: f64,
    pub cv: f64,
    pub ci95_low: f64,
    pub ci95_high: f64,
}

impl Stats {
    /// `None` for an empty sample; the spread of one value is 0 and its
    /// interval the value itself.
    pub fn of(values: &[f64]) -> Option<Stats> {
        if values.is_empty() {
            return None;
        }
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let mean = sorted.iter().sum::<f64>() / n as f64;
        let stdev = if n > 1 {
            (sorted.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        } else {
            0.0
        };
        let half = if n > 1 {
            t_975(n - 1) * stdev / (n as f64).sqrt()
        } else {
            0.0
        };
        Some(Stats {
            n,
            mean,
            median: percentile(&sorted, 0.5),
            p90: percentile(&sorted, 0.9),
            p95: percentile(&sorted, 0.95),
            p99: percentile(&sorted, 0.99),
            stdev,
            cv: if mean != 0.0 { stdev / mean } else { 0.0 },
            ci95_low: mean - half,
            ci95_high: mean + half,
        })
    }
}

/// The 97.5th percentile of Student's t with `df` degrees of freedom.
pub fn t_975(df: usize) -> f64 {
    StudentsT::new(0.0, 1.0, df as f64)
        .map(|t| t.inverse_cdf(0.975))
        .unwrap_or(1.959964)
}

/// The `q` quantile of sorted values, interpolated between ranks.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        1 => sorted[0],
        n => {
            let h = (n - 1) as f64 * q;
            let lo = h.floor() as usize;
            let hi = (lo + 1).min(n - 1);
            sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
        }
    }
}

/// One line of `summary.csv`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub experiment: String,
    pub function: String,
    pub memory: String,
    pub cpu: String,
    pub payload_id: usize,
    pub cold_start: bool,
    pub n: usize,
    pub failures: usize,
    pub client_mean_ms: Option<f64>,
    pub client_median_ms: Option<f64>,
    pub client_p90_ms: Option<f64>,
    pub client_p95_ms: Option<f64>,
    pub client_p99_ms: Option<f64>,
    pub client_stdev_ms: Option<f64>,
    pub client_cv: Option<f64>,
    pub client_ci95_low_ms: Option<f64>,
    pub client_ci95_high_ms: Option<f64>,
    pub function_mean_ms: Option<f64>,
    pub function_median_ms: Option<f64>,
    pub function_p90_ms: Option<f64>,
    pub function_p95_ms: Option<f64>,
    pub function_p99_ms: Option<f64>,
    pub function_stdev_ms: Option<f64>,
    pub function_cv: Option<f64>,
    pub function_ci95_low_ms: Option<f64>,
    pub function_ci95_high_ms: Option<f64>,
    pub cpu_user_mean_ms: Option<f64>,
    pub cpu_kernel_mean_ms: Option<f64>,
    pub rss_mean_bytes: Option<f64>,
    pub rss_max_bytes: Option<u64>,
    pub cold_starts: usize,
}

impl Summary {
    /// The group's cells for a table: function, memory, CPU, payload,
    /// cold or warm, calls, failures (`-` for a setting left as it was).
    pub fn group_cells(&self) -> [String; 7] {
        let dash = |v: &str| {
            if v.is_empty() {
                "-".to_owned()
            } else {
                v.to_owned()
            }
        };
        [
            self.function.clone(),
            dash(&self.memory),
            dash(&self.cpu),
            self.payload_id.to_string(),
            if self.cold_start { "cold" } else { "warm" }.to_owned(),
            self.n.to_string(),
            self.failures.to_string(),
        ]
    }
}

/// The group a call is summarised in.
type Key = (String, String, String, String, usize, bool);

fn key(row: &Row) -> Key {
    (
        row.experiment.clone(),
        row.function.clone(),
        row.memory.clone(),
        row.cpu.clone(),
        row.payload_id,
        row.cold_start,
    )
}

/// Summarises `rows`, groups in the order they first appear.
pub fn summarize(rows: &[Row]) -> Vec<Summary> {
    let mut order: Vec<Key> = Vec::new();
    let mut groups: BTreeMap<Key, Vec<&Row>> = BTreeMap::new();
    for row in rows {
        let k = key(row);
        let group = groups.entry(k.clone()).or_default();
        if group.is_empty() {
            order.push(k);
        }
        group.push(row);
    }
    order
        .into_iter()
        .map(|k| {
            let rows = &groups[&k];
            summary(k.clone(), rows)
        })
        .collect()
}

fn summary(k: Key, rows: &[&Row]) -> Summary {
    let ok: Vec<&&Row> = rows.iter().filter(|r| !r.failed()).collect();
    let values =
        |f: fn(&Row) -> Option<f64>| -> Vec<f64> { ok.iter().filter_map(|r| f(r)).collect() };
    let client = Stats::of(&values(|r| r.client_ms));
    let function = Stats::of(&values(|r| r.function_ms));
    let mean = |v: Vec<f64>| (!v.is_empty()).then(|| round(v.iter().sum::<f64>() / v.len() as f64));
    let rss: Vec<u64> = ok.iter().filter_map(|r| r.max_rss_bytes).collect();
    let (experiment, function_name, memory, cpu, payload_id, cold_start) = k;
    let field = |s: Option<Stats>, f: fn(&Stats) -> f64| s.as_ref().map(f).map(round);
    Summary {
        experiment,
        function: function_name,
        memory,
        cpu,
        payload_id,
        cold_start,
        n: rows.len(),
        failures: rows.len() - ok.len(),
        client_mean_ms: field(client, |s| s.mean),
        client_median_ms: field(client, |s| s.median),
        client_p90_ms: field(client, |s| s.p90),
        client_p95_ms: field(client, |s| s.p95),
        client_p99_ms: field(client, |s| s.p99),
        client_stdev_ms: field(client, |s| s.stdev),
        client_cv: field(client, |s| s.cv),
        client_ci95_low_ms: field(client, |s| s.ci95_low),
        client_ci95_high_ms: field(client, |s| s.ci95_high),
        function_mean_ms: field(function, |s| s.mean),
        function_median_ms: field(function, |s| s.median),
        function_p90_ms: field(function, |s| s.p90),
        function_p95_ms: field(function, |s| s.p95),
        function_p99_ms: field(function, |s| s.p99),
        function_stdev_ms: field(function, |s| s.stdev),
        function_cv: field(function, |s| s.cv),
        function_ci95_low_ms: field(function, |s| s.ci95_low),
        function_ci95_high_ms: field(function, |s| s.ci95_high),
        cpu_user_mean_ms: mean(values(|r| r.cpu_user_ms)),
        cpu_kernel_mean_ms: mean(values(|r| r.cpu_kernel_ms)),
        rss_mean_bytes: (!rss.is_empty())
            .then(|| (rss.iter().sum::<u64>() as f64 / rss.len() as f64).round()),
        rss_max_bytes: rss.iter().copied().max(),
        cold_starts: rows.iter().filter(|r| r.cold_start).count(),
    }
}

/// Six significant decimals are plenty for milliseconds.
fn round(v: f64) -> f64 {
    (v * 1e6).round() / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics_match_hand_computed_values() {
        let s = Stats::of(&[4.0, 1.0, 3.0, 2.0, 10.0]).unwrap();
        assert_eq!(s.n, 5);
        assert_eq!(s.mean, 4.0);
        assert_eq!(s.median, 3.0);
        // numpy.percentile([1,2,3,4,10], 90) == 7.6
        assert!((s.p90 - 7.6).abs() < 1e-12);
        // sample stdev: sqrt(((0+9+1+4+36))/4) = sqrt(12.5)
        assert!((s.stdev - 12.5f64.sqrt()).abs() < 1e-12);
        assert!((s.cv - 12.5f64.sqrt() / 4.0).abs() < 1e-12);
        // t(0.975, 4) = 2.776445
        let half = 2.776445105 * 12.5f64.sqrt() / 5f64.sqrt();
        assert!((s.ci95_high - (4.0 + half)).abs() < 1e-6, "{s:?}");
        assert!((s.ci95_low - (4.0 - half)).abs() < 1e-6);
        let one = Stats::of(&[7.0]).unwrap();
        assert_eq!(
            (one.median, one.stdev, one.ci95_low, one.ci95_high),
            (7.0, 0.0, 7.0, 7.0)
        );
        assert_eq!(Stats::of(&[]), None);
    }

    #[test]
    fn groups_split_by_setting_payload_and_coldness_and_count_failures() {
        let row = |memory: &str, payload_id, cold_start, client_ms: f64, status| Row {
            experiment: "e".into(),
            function: "f".into(),
            memory: memory.into(),
            payload_id,
            cold_start,
            client_ms: Some(client_ms),
            function_ms: Some(client_ms / 2.0),
            max_rss_bytes: Some(100),
            status,
            ..Default::default()
        };
        let rows = vec![
            row("128m", 0, true, 50.0, 200),
            row("128m", 0, false, 2.0, 200),
            row("128m", 0, false, 4.0, 200),
            row("128m", 0, false, 1000.0, 500),
            row("128m", 1, false, 3.0, 200),
            row("256m", 0, false, 1.0, 200),
        ];
        let s = summarize(&rows);
        assert_eq!(s.len(), 4);
        assert_eq!((s[0].cold_start, s[0].n, s[0].cold_starts), (true, 1, 1));
        let warm = &s[1];
        assert_eq!((warm.n, warm.failures), (3, 1));
        assert_eq!(warm.client_mean_ms, Some(3.0), "failed calls are not timed");
        assert_eq!(warm.function_median_ms, Some(1.5));
        assert_eq!(warm.rss_max_bytes, Some(100));
        assert_eq!((s[2].payload_id, s[3].memory.as_str()), (1, "256m"));
    }
}
