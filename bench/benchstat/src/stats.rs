//! Figures over repetitions: rows of a TSV (`label rep value…`, one row per
//! run), medians, runs paired by repetition, spreads and percentiles.

/// The numbers in `column` (1-based) of the rows labelled `label`, sorted.
pub fn values(tsv: &str, label: &str, column: usize) -> Vec<f64> {
    sorted(
        rows(tsv)
            .filter(|row| row.first() == Some(&label))
            .filter_map(|row| number(row.get(column - 1)?)),
    )
}

/// [`values`] of the rows whose third field is `key` too (a label and a
/// process name, say).
pub fn values_where(tsv: &str, label: &str, key: &str, column: usize) -> Vec<f64> {
    sorted(
        rows(tsv)
            .filter(|row| row.first() == Some(&label) && row.get(2) == Some(&key))
            .filter_map(|row| number(row.get(column - 1)?)),
    )
}

/// One number per line (blank lines skipped), sorted.
pub fn list(text: &str) -> Vec<f64> {
    sorted(text.lines().filter_map(|l| number(l.trim())))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Ratio,
    Diff,
}

/// For each repetition both `a` and `b` ran (column 2), `a/b` or `a-b` of
/// `column`: each run compared with the one of the same repetition, which
/// ran right next to it. Sorted.
pub fn paired(tsv: &str, a: &str, b: &str, column: usize, op: Op) -> Vec<f64> {
    let of = |label: &str| -> Vec<(String, f64)> {
        rows(tsv)
            .filter(|row| row.first() == Some(&label))
            .filter_map(|row| Some((row.get(1)?.to_string(), number(row.get(column - 1)?)?)))
            .collect()
    };
    let bs = of(b);
    sorted(of(a).into_iter().filter_map(|(rep, va)| {
        let (_, vb) = bs.iter().rev().find(|(r, _)| *r == rep)?;
        Some(match op {
            Op::Ratio => va / vb,
            Op::Diff => va - vb,
        })
    }))
}

/// The median of sorted values: the middle one, or the mean of the two.
pub fn median(sorted: &[f64]) -> Option<f64> {
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

/// (min, max) of sorted values.
pub fn spread(sorted: &[f64]) -> Option<(f64, f64)> {
    Some((*sorted.first()?, *sorted.last()?))
}

/// "median µs (min–max)" to one decimal, or "–" when there is nothing.
pub fn summary(sorted: &[f64]) -> String {
    match (median(sorted), spread(sorted)) {
        (Some(m), Some((lo, hi))) => format!("{m:.1} µs ({lo:.1}–{hi:.1})"),
        _ => "–".to_owned(),
    }
}

/// Nearest-rank percentiles of a sorted list.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Percentiles {
    pub p50: f64,
    pub p95: f64,
    pub min: f64,
    pub max: f64,
}

pub fn percentiles(sorted: &[f64]) -> Option<Percentiles> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let rank = |p: f64| ((p * n as f64).ceil() as usize).clamp(1, n) - 1;
    Some(Percentiles {
        // The lower middle for an even count, as the scripts always did.
        p50: sorted[n.div_ceil(2) - 1],
        p95: sorted[rank(0.95)],
        min: sorted[0],
        max: sorted[n - 1],
    })
}

/// Busy (field 1) or steal (field 3) time between two "busy total steal"
/// snapshots of /proc/stat, as a percentage of the elapsed total.
pub fn cpu_percent(before: &str, after: &str, field: usize) -> Result<f64, String> {
    let parse = |s: &str| -> Result<Vec<f64>, String> {
        let v: Vec<f64> = s.split_whitespace().filter_map(number).collect();
        if v.len() == 3 {
            Ok(v)
        } else {
            Err(format!("{s:?} is not a \"busy total steal\" snapshot"))
        }
    };
    let (x, y) = (parse(before)?, parse(after)?);
    if !(1..=3).contains(&field) {
        return Err(format!("field {field}: expected 1 (busy) or 3 (steal)"));
    }
    let total = y[1] - x[1];
    Ok(if total > 0.0 {
        100.0 * (y[field - 1] - x[field - 1]) / total
    } else {
        0.0
    })
}

fn rows(tsv: &str) -> impl Iterator<Item = Vec<&str>> {
    tsv.lines().map(|l| l.split('\t').collect())
}

fn number(text: &str) -> Option<f64> {
    text.trim().parse::<f64>().ok().filter(|v| v.is_finite())
}

fn sorted(values: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    const TSV: &str = "label\trep\tp50_us\trate\n\
        fork\t1\t300\t1000\n\
        raw\t1\t200\t1500\n\
        fork\t2\t330\t990\n\
        raw\t2\t300\t1400\n\
        fork\t3\t310\t1010\n\
        raw\t3\t250\t1450\n\
        lonely\t9\t5\t5\n";

    #[test]
    fn medians_take_the_middle_or_the_mean_of_the_two() {
        assert_eq!(median(&values(TSV, "fork", 3)), Some(310.0));
        assert_eq!(median(&[1.0, 2.0, 4.0, 8.0]), Some(3.0));
        assert_eq!(median(&values(TSV, "nobody", 3)), None);
        // The header and unparsable fields are not figures.
        assert_eq!(values(TSV, "label", 3), Vec::<f64>::new());
    }

    #[test]
    fn paired_ratios_compare_runs_of_the_same_repetition() {
        // fork/raw per rep: 1.5, 1.1, 1.24 → median 1.24
        let ratios = paired(TSV, "fork", "raw", 3, Op::Ratio);
        assert_eq!(ratios.len(), 3);
        assert!((median(&ratios).unwrap() - 1.24).abs() < 1e-9);
        let diffs = paired(TSV, "fork", "raw", 3, Op::Diff);
        assert_eq!(diffs, vec![30.0, 60.0, 100.0]);
        // A label without a partner in the same repetition pairs with nothing.
        assert!(paired(TSV, "lonely", "raw", 3, Op::Ratio).is_empty());
    }

    #[test]
    fn spreads_and_summaries() {
        assert_eq!(spread(&values(TSV, "raw", 4)), Some((1400.0, 1500.0)));
        let cpu = "gw\t1\tgateway\t33.3\ngw\t2\tgateway\t35.0\ngw\t1\treplica\t90\n";
        assert_eq!(
            summary(&values_where(cpu, "gw", "gateway", 4)),
            "34.1 µs (33.3–35.0)"
        );
        assert_eq!(summary(&[]), "–");
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v = list("0.5\n0.7\n\n0.6\n2.0\n");
        let p = percentiles(&v).unwrap();
        assert_eq!((p.p50, p.p95, p.min, p.max), (0.6, 2.0, 0.5, 2.0));
        let hundred: Vec<f64> = (1..=100).map(f64::from).collect();
        let p = percentiles(&hundred).unwrap();
        assert_eq!((p.p50, p.p95), (50.0, 95.0));
        assert_eq!(percentiles(&[]), None);
    }

    #[test]
    fn cpu_percent_is_a_share_of_the_elapsed_total() {
        assert_eq!(cpu_percent("100 1000 5", "400 2000 55", 1).unwrap(), 30.0);
        assert_eq!(cpu_percent("100 1000 5", "400 2000 55", 3).unwrap(), 5.0);
        assert_eq!(cpu_percent("1 1 1", "1 1 1", 1).unwrap(), 0.0);
        assert!(cpu_percent("1 2", "1 2 3", 1).is_err());
    }
}
