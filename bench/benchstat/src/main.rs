//! benchstat: the analysis behind `bench/*.sh`, in one tested place
//! instead of awk strings. Each subcommand prints one line for a shell
//! variable (or rewrites RESULTS.md); bad input is an error naming it.
//!
//! ```text
//! benchstat wrk FILE                      p50 p90 p99 (µs) rate errors
//! benchstat median TSV LABEL COLUMN       median over the label's rows
//! benchstat paired TSV A B COLUMN ratio|diff
//!                                         median of per-repetition A/B (or A-B)
//! benchstat spread TSV LABEL COLUMN       min–max
//! benchstat summary FILE|TSV [LABEL KEY COLUMN]
//!                                         "median µs (min–max)" or "–"
//! benchstat stats FILE                    p50 p95 min max n of a list (seconds)
//! benchstat calls CALLS.CSV               n wall_s rate/s client_mean_µs failures
//!                                         of a `faas experiment run`
//! benchstat calc FORMAT EXPR              printf FORMAT of an arithmetic EXPR
//! benchstat verdict "EXPR OP EXPR" [HOW]  **met**, or **missed** (HOW)
//! benchstat cpu-percent BEFORE AFTER FIELD
//!                                         busy (1) or steal (3) % between two /proc/stat snapshots
//! benchstat splice RESULTS HEADING FILE   put FILE's section in RESULTS.md
//! ```

mod expr;
mod stats;
mod text;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(out) => {
            if !out.is_empty() {
                println!("{out}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("benchstat: {e}");
            ExitCode::from(2)
        }
    }
}

fn read(path: &str) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))
}

fn column(arg: &str) -> Result<usize, String> {
    match arg.parse::<usize>() {
        Ok(c) if c >= 1 => Ok(c),
        _ => Err(format!("{arg:?} is not a column number (1 is the first)")),
    }
}

fn run(args: &[String]) -> Result<String, String> {
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    match a.as_slice() {
        ["wrk", file] => text::wrk(&read(file)?).map(|w| w.line()),
        ["median", tsv, label, col] => {
            let values = stats::values(&read(tsv)?, label, column(col)?);
            Ok(stats::median(&values).map_or("nan".into(), text::g6))
        }
        ["paired", tsv, a, b, col, op] => {
            let op = match *op {
                "ratio" => stats::Op::Ratio,
                "diff" => stats::Op::Diff,
                other => return Err(format!("{other:?}: expected ratio or diff")),
            };
            let values = stats::paired(&read(tsv)?, a, b, column(col)?, op);
            Ok(stats::median(&values).map_or("nan".into(), text::g6))
        }
        ["spread", tsv, label, col] => {
            let values = stats::values(&read(tsv)?, label, column(col)?);
            Ok(stats::spread(&values).map_or("–".into(), |(lo, hi)| {
                format!("{}–{}", text::fixed(lo, 0), text::fixed(hi, 0))
            }))
        }
        ["summary", tsv, label, key, col] => {
            let values = stats::values_where(&read(tsv)?, label, key, column(col)?);
            Ok(stats::summary(&values))
        }
        ["stats", file] => {
            let values = stats::list(&read(file)?);
            Ok(stats::percentiles(&values).map_or("- - - - 0".into(), |p| {
                format!(
                    "{:.3} {:.3} {:.3} {:.3} {}",
                    p.p50,
                    p.p95,
                    p.min,
                    p.max,
                    values.len()
                )
            }))
        }
        ["calls", file] => text::calls(&read(file)?).map(|c| {
            format!(
                "{} {} {} {} {}",
                c.n,
                text::g6(c.wall_seconds),
                text::g6(c.rate),
                text::g6(c.client_mean_us),
                c.failures
            )
        }),
        ["calc", format, expression] => {
            let value = expr::eval(expression)?;
            text::printf(format, value)
        }
        ["verdict", condition] => verdict(condition, None),
        ["verdict", condition, how] => verdict(condition, Some(how)),
        ["cpu-percent", before, after, field] => {
            let field = column(field)?;
            stats::cpu_percent(before, after, field).map(|p| text::fixed(p, 0))
        }
        ["splice", results, heading, section] => {
            let updated = text::splice(&read(results)?, heading, read(section)?.trim_end());
            std::fs::write(results, updated).map_err(|e| format!("cannot write {results}: {e}"))?;
            Ok(String::new())
        }
        _ => Err(format!(
            "unknown or incomplete command {:?} (see the usage in bench/benchstat/src/main.rs)",
            a.join(" ")
        )),
    }
}

fn verdict(condition: &str, how: Option<&str>) -> Result<String, String> {
    Ok(if expr::holds(condition)? {
        "**met**".to_owned()
    } else {
        match how.filter(|h| !h.is_empty()) {
            Some(how) => format!("**missed** ({how})"),
            None => "**missed**".to_owned(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_args(args: &[&str]) -> Result<String, String> {
        run(&args.iter().map(|a| a.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn verdicts_say_met_or_by_how_much_it_was_missed() {
        assert_eq!(run_args(&["verdict", "1.2 <= 1.25"]).unwrap(), "**met**");
        assert_eq!(
            run_args(&["verdict", "1.3 <= 1.25", "by 5 µs"]).unwrap(),
            "**missed** (by 5 µs)"
        );
        assert_eq!(
            run_args(&["verdict", "0.7 >= 0.8", ""]).unwrap(),
            "**missed**"
        );
    }

    #[test]
    fn bad_input_is_an_error_naming_it() {
        assert!(
            run_args(&["median", "/no/such.tsv", "x", "3"])
                .unwrap_err()
                .contains("/no/such.tsv")
        );
        assert!(
            run_args(&["median", "/dev/null", "x", "zero"])
                .unwrap_err()
                .contains("zero")
        );
        assert!(
            run_args(&["paired", "/dev/null", "a", "b", "3", "sum"])
                .unwrap_err()
                .contains("sum")
        );
        assert!(
            run_args(&["frobnicate"])
                .unwrap_err()
                .contains("frobnicate")
        );
    }
}
