//! `faas experiment compare A B`: for every group both runs measured
//! (function, memory, CPU, payload, cold or warm), each summary figure in
//! A and in B, the change, and whether it is more than noise: Welch's
//! t-test for means, the Mann–Whitney U test (normal approximation, ties
//! corrected) for medians and the 95th percentile, both two-sided over the
//! calls in `calls.csv`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use statrs::distribution::{ContinuousCDF, Normal, StudentsT};

use super::record::{Row, read_calls};
use super::stats::Stats;
use crate::error::{Error, Result};
use crate::output;

#[derive(Debug, clap::Args)]
pub struct CompareArgs {
    /// The results folder of the run before the change
    pub a: PathBuf,
    /// The results folder of the run after it
    pub b: PathBuf,
    /// Below this p-value a change counts as significant
    #[arg(long, default_value_t = 0.05, value_name = "P")]
    pub alpha: f64,
    /// One JSON object per figure instead of a table
    #[arg(long)]
    pub json: bool,
}

/// One figure of one group, in both runs.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    pub function: String,
    pub memory: String,
    pub cpu: String,
    pub payload_id: usize,
    pub cold_start: bool,
    pub figure: &'static str,
    pub a: f64,
    pub b: f64,
    /// (b − a) / a, when a is not 0.
    pub relative: Option<f64>,
    /// The test's two-sided p-value, when the figure has one.
    pub p: Option<f64>,
    pub test: &'static str,
    pub significant: bool,
}

type Key = (String, String, String, usize, bool);

pub fn compare(args: CompareArgs) -> Result<()> {
    if !(args.alpha > 0.0 && args.alpha < 1.0) {
        return Err(Error::new(format!(
            "--alpha {} is not a probability between 0 and 1",
            args.alpha
        )));
    }
    let a = groups(&args.a)?;
    let b = groups(&args.b)?;
    let changes = changes(&a, &b, args.alpha);
    if changes.is_empty() {
        return Err(Error::new(format!(
            "{} and {} measured no group in common (function, memory, cpu, payload, cold/warm)",
            args.a.display(),
            args.b.display()
        )));
    }
    if args.json {
        let mut text = String::new();
        for c in &changes {
            text.push_str(&serde_json::to_string(c).expect("a change encodes"));
            text.push('\n');
        }
        return output::print(&text);
    }
    let rows: Vec<Vec<String>> = changes
        .iter()
        .map(|c| {
            vec![
                c.function.clone(),
                dash(&c.memory),
                dash(&c.cpu),
                c.payload_id.to_string(),
                if c.cold_start { "cold" } else { "warm" }.to_owned(),
                c.figure.to_owned(),
                format!("{:.3}", c.a),
                format!("{:.3}", c.b),
                c.relative
                    .map_or("–".into(), |r| format!("{:+.1}%", r * 100.0)),
                c.p.map_or("–".into(), |p| format!("{p:.4}")),
                verdict(c),
            ]
        })
        .collect();
    let mut text = output::table(
        &[
            "FUNCTION", "MEMORY", "CPU", "PAYLOAD", "START", "FIGURE", "A", "B", "CHANGE", "P",
            "VERDICT",
        ],
        &rows,
    );
    let lost: Vec<&Key> = a.keys().filter(|k| !b.contains_key(*k)).collect();
    let new: Vec<&Key> = b.keys().filter(|k| !a.contains_key(*k)).collect();
    if !lost.is_empty() || !new.is_empty() {
        text.push_str(&format!(
            "\n{} group(s) only in A, {} only in B (not compared)\n",
            lost.len(),
            new.len()
        ));
    }
    text.push_str(&format!(
        "\np: two-sided; means by Welch's t-test, medians and p95 by the Mann–Whitney U test; significant below {}\n",
        args.alpha
    ));
    output::print(&text)
}

fn dash(text: &str) -> String {
    if text.is_empty() {
        "-".into()
    } else {
        text.to_owned()
    }
}

fn verdict(c: &Change) -> String {
    match c.p {
        None => String::new(),
        Some(_) if !c.significant => "no significant change".into(),
        Some(_) if c.b < c.a => "lower".into(),
        Some(_) => "higher".into(),
    }
}

/// A run's successful calls by group.
fn groups(dir: &Path) -> Result<BTreeMap<Key, Vec<Row>>> {
    let rows = read_calls(&dir.join("calls.csv"))?;
    let mut groups: BTreeMap<Key, Vec<Row>> = BTreeMap::new();
    for row in rows.into_iter().filter(|r| !r.failed()) {
        let key = (
            row.function.clone(),
            row.memory.clone(),
            row.cpu.clone(),
            row.payload_id,
            row.cold_start,
        );
        groups.entry(key).or_default().push(row);
    }
    Ok(groups)
}

/// How a figure is computed from a sample, and tested.
#[derive(Clone, Copy)]
enum Figure {
    Mean,
    Median,
    P95,
    Max,
}

/// A call's value for a figure.
type Value = fn(&Row) -> Option<f64>;

const FIGURES: &[(&str, Value, Figure)] = &[
    ("client mean ms", |r| r.client_ms, Figure::Mean),
    ("client median ms", |r| r.client_ms, Figure::Median),
    ("client p95 ms", |r| r.client_ms, Figure::P95),
    ("function mean ms", |r| r.function_ms, Figure::Mean),
    ("function median ms", |r| r.function_ms, Figure::Median),
    ("cpu user mean ms", |r| r.cpu_user_ms, Figure::Mean),
    ("cpu kernel mean ms", |r| r.cpu_kernel_ms, Figure::Mean),
    (
        "max rss bytes",
        |r| r.max_rss_bytes.map(|b| b as f64),
        Figure::Max,
    ),
];

fn changes(a: &BTreeMap<Key, Vec<Row>>, b: &BTreeMap<Key, Vec<Row>>, alpha: f64) -> Vec<Change> {
    let mut out = Vec::new();
    for (key, rows_a) in a {
        let Some(rows_b) = b.get(key) else {
            continue;
        };
        for (figure, value, kind) in FIGURES {
            let xs: Vec<f64> = rows_a.iter().filter_map(value).collect();
            let ys: Vec<f64> = rows_b.iter().filter_map(value).collect();
            let (Some(sa), Some(sb)) = (Stats::of(&xs), Stats::of(&ys)) else {
                continue;
            };
            let (va, vb, p, test) = match kind {
                Figure::Mean => (sa.mean, sb.mean, welch(&xs, &ys), "welch"),
                Figure::Median => (sa.median, sb.median, mann_whitney(&xs, &ys), "mann-whitney"),
                Figure::P95 => (sa.p95, sb.p95, mann_whitney(&xs, &ys), "mann-whitney"),
                Figure::Max => (
                    xs.iter().copied().fold(f64::MIN, f64::max),
                    ys.iter().copied().fold(f64::MIN, f64::max),
                    None,
                    "",
                ),
            };
            out.push(Change {
                function: key.0.clone(),
                memory: key.1.clone(),
                cpu: key.2.clone(),
                payload_id: key.3,
                cold_start: key.4,
                figure,
                a: va,
                b: vb,
                relative: (va != 0.0).then(|| (vb - va) / va),
                p,
                test,
                significant: p.is_some_and(|p| p < alpha),
            });
        }
    }
    out
}

/// Welch's two-sided t-test p-value; `None` with fewer than two values on
/// a side.
pub fn welch(xs: &[f64], ys: &[f64]) -> Option<f64> {
    let (a, b) = (Stats::of(xs)?, Stats::of(ys)?);
    if a.n < 2 || b.n < 2 {
        return None;
    }
    let (va, vb) = (a.stdev.powi(2) / a.n as f64, b.stdev.powi(2) / b.n as f64);
    if va + vb == 0.0 {
        return Some(if a.mean == b.mean { 1.0 } else { 0.0 });
    }
    let t = (a.mean - b.mean) / (va + vb).sqrt();
    let df = (va + vb).powi(2) / (va.powi(2) / (a.n - 1) as f64 + vb.powi(2) / (b.n - 1) as f64);
    let dist = StudentsT::new(0.0, 1.0, df).ok()?;
    Some((2.0 * (1.0 - dist.cdf(t.abs()))).clamp(0.0, 1.0))
}

/// The Mann–Whitney U test's two-sided p-value (normal approximation with
/// tie and continuity corrections); `None` with an empty side.
pub fn mann_whitney(xs: &[f64], ys: &[f64]) -> Option<f64> {
    let (n1, n2) = (xs.len(), ys.len());
    if n1 == 0 || n2 == 0 {
        return None;
    }
    let mut all: Vec<(f64, bool)> = xs
        .iter()
        .map(|&x| (x, true))
        .chain(ys.iter().map(|&y| (y, false)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    let n = all.len();
    let mut rank_sum_x = 0.0;
    let mut ties = 0.0;
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        // Ranks i+1..=j+1 share their mean.
        let rank = (i + j + 2) as f64 / 2.0;
        let count = (j - i + 1) as f64;
        ties += count.powi(3) - count;
        rank_sum_x += rank * all[i..=j].iter().filter(|v| v.1).count() as f64;
        i = j + 1;
    }
    let (n1f, n2f, nf) = (n1 as f64, n2 as f64, n as f64);
    let u = rank_sum_x - n1f * (n1f + 1.0) / 2.0;
    let mean = n1f * n2f / 2.0;
    let variance = n1f * n2f / 12.0 * ((nf + 1.0) - ties / (nf * (nf - 1.0)).max(1.0));
    if variance <= 0.0 {
        return Some(1.0);
    }
    let z = ((u - mean).abs() - 0.5).max(0.0) / variance.sqrt();
    let normal = Normal::new(0.0, 1.0).ok()?;
    Some((2.0 * (1.0 - normal.cdf(z))).clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn welch_matches_a_worked_example() {
        // scipy.stats.ttest_ind(a, b, equal_var=False): t = -2.4554, df = 24.99, p = 0.021378
        let a = [
            27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0, 21.7,
            21.4,
        ];
        let b = [
            27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1, 22.9, 20.5,
            24.4,
        ];
        let p = welch(&a, &b).unwrap();
        assert!((p - 0.021378).abs() < 1e-5, "{p}");
        assert_eq!(welch(&[1.0, 1.0], &[1.0, 1.0]), Some(1.0));
        assert_eq!(welch(&[1.0], &[2.0, 3.0]), None);
    }

    #[test]
    fn mann_whitney_matches_a_worked_example() {
        // scipy.stats.mannwhitneyu(x, y, method="asymptotic"): U = 1, p = 0.013711
        let x = [1.0, 2.0, 3.0, 4.0, 5.0];
        let y = [4.5, 6.0, 7.0, 8.0, 9.0, 10.0];
        let p = mann_whitney(&x, &y).unwrap();
        assert!((p - 0.013711).abs() < 1e-5, "{p}");
        // Identical samples, all tied pairs: scipy gives p = 1.
        let same = mann_whitney(&[1.0, 2.0, 3.0], &[1.0, 2.0, 3.0]).unwrap();
        assert!((same - 1.0).abs() < 1e-9, "{same}");
        assert_eq!(mann_whitney(&[], &[1.0]), None);
    }

    #[test]
    fn a_clear_change_is_significant_and_noise_is_not() {
        let row = |client: f64| Row {
            function: "f".into(),
            client_ms: Some(client),
            status: 200,
            ..Default::default()
        };
        let key: Key = ("f".into(), String::new(), String::new(), 0, false);
        let noisy =
            |base: f64| -> Vec<Row> { (0..30).map(|i| row(base + (i % 7) as f64)).collect() };
        let a = BTreeMap::from([(key.clone(), noisy(100.0))]);
        let faster = BTreeMap::from([(key.clone(), noisy(50.0))]);
        let same = BTreeMap::from([(key.clone(), noisy(100.0))]);
        let c = changes(&a, &faster, 0.05);
        let mean = c.iter().find(|c| c.figure == "client mean ms").unwrap();
        assert!(mean.significant && mean.b < mean.a, "{mean:?}");
        assert!((mean.relative.unwrap() + 0.485).abs() < 0.01, "{mean:?}");
        assert_eq!(verdict(mean), "lower");
        let c = changes(&a, &same, 0.05);
        assert!(c.iter().all(|c| !c.significant), "{c:?}");
    }
}
