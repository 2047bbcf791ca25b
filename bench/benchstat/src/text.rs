//! Text in and out: wrk's report, numbers printed the way the scripts
//! always printed them, and RESULTS.md sections.

/// What one wrk run reported (latencies in microseconds).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Wrk {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub rate: f64,
    /// Non-2xx answers plus socket errors (connect, read, write, timeout).
    pub errors: u64,
}

impl Wrk {
    pub fn line(&self) -> String {
        format!(
            "{:.1} {:.1} {:.1} {:.1} {}",
            self.p50, self.p90, self.p99, self.rate, self.errors
        )
    }
}

/// A `faas experiment run`'s `calls.csv`, summed up: how many calls, the
/// wall time from the first call's start to the last one's end, the rate
/// over it, the mean client time, and the failures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Calls {
    pub n: u64,
    pub wall_seconds: f64,
    pub rate: f64,
    pub client_mean_us: f64,
    pub failures: u64,
}

/// Parses `calls.csv` (its header names the columns; quoted fields, with
/// `""` for a quote, are read whole).
pub fn calls(csv: &str) -> Result<Calls, String> {
    let mut lines = csv.lines();
    let header = fields(lines.next().ok_or("calls.csv is empty")?);
    let at = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| format!("calls.csv has no {name} column"))
    };
    let (start, client, status, error) = (
        at("start_unix_ns")?,
        at("client_ms")?,
        at("status")?,
        at("error")?,
    );
    let (mut n, mut failures, mut sum_ms) = (0u64, 0u64, 0.0);
    let (mut first, mut last) = (f64::INFINITY, f64::NEG_INFINITY);
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let row = fields(line);
        let get = |i: usize| row.get(i).map(String::as_str).unwrap_or("");
        let began: f64 = get(start)
            .parse()
            .map_err(|_| format!("bad start_unix_ns in {line:?}"))?;
        let took: f64 = get(client).parse().unwrap_or(0.0);
        n += 1;
        sum_ms += took;
        first = first.min(began);
        last = last.max(began + took * 1e6);
        let ok = get(status).starts_with('2') && get(error).is_empty();
        failures += u64::from(!ok);
    }
    if n == 0 {
        return Err("calls.csv holds no calls".into());
    }
    let wall_seconds = (last - first) / 1e9;
    Ok(Calls {
        n,
        wall_seconds,
        rate: n as f64 / wall_seconds,
        client_mean_us: sum_ms / n as f64 * 1000.0,
        failures,
    })
}

/// One CSV line's fields.
fn fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut field)),
            (c, _) => field.push(c),
        }
    }
    out.push(field);
    out
}

/// Parses `wrk --latency` output.
pub fn wrk(report: &str) -> Result<Wrk, String> {
    let (mut p50, mut p90, mut p99, mut rate) = (None, None, None, None);
    let mut errors = 0u64;
    for line in report.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            ["50%", v, ..] => p50 = micros(v),
            ["90%", v, ..] => p90 = micros(v),
            ["99%", v, ..] => p99 = micros(v),
            ["Requests/sec:", v, ..] => rate = v.parse::<f64>().ok(),
            _ if line.contains("Non-2xx or 3xx responses:") => {
                errors += fields
                    .last()
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0);
            }
            // "Socket errors: connect 0, read 1, write 0, timeout 2"
            ["Socket", "errors:", rest @ ..] => {
                errors += rest
                    .iter()
                    .filter_map(|f| f.trim_end_matches(',').parse::<u64>().ok())
                    .sum::<u64>();
            }
            _ => {}
        }
    }
    match (p50, rate) {
        (Some(p50), Some(rate)) => Ok(Wrk {
            p50,
            p90: p90.unwrap_or(f64::NAN),
            p99: p99.unwrap_or(f64::NAN),
            rate,
            errors,
        }),
        _ => Err("not a wrk --latency report (no 50% line or no Requests/sec)".to_owned()),
    }
}

/// A wrk duration (`812.00us`, `1.20ms`, `2.01s`, `1.5m`) in microseconds.
fn micros(value: &str) -> Option<f64> {
    let (number, scale) = if let Some(v) = value.strip_suffix("us") {
        (v, 1.0)
    } else if let Some(v) = value.strip_suffix("ms") {
        (v, 1e3)
    } else if let Some(v) = value.strip_suffix('m') {
        (v, 60e6)
    } else if let Some(v) = value.strip_suffix('s') {
        (v, 1e6)
    } else {
        (value, 1.0)
    };
    number.parse::<f64>().ok().map(|n| n * scale)
}

/// A number as awk prints one: an integer plainly, anything else with six
/// significant digits (`%.6g`).
pub fn g6(value: f64) -> String {
    if !value.is_finite() {
        return if value.is_nan() {
            "nan".into()
        } else if value > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        };
    }
    if value == value.trunc() && value.abs() < 1e16 {
        return format!("{}", value as i64);
    }
    let exponent = value.abs().log10().floor() as i32;
    if !(-4..6).contains(&exponent) {
        let text = format!("{:.5e}", value);
        let (mantissa, exp) = text.split_once('e').expect("{:e} has an exponent");
        let exp: i32 = exp.parse().expect("an integer exponent");
        let mantissa = trim_zeros(mantissa);
        return format!(
            "{mantissa}e{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.abs()
        );
    }
    let decimals = (5 - exponent).max(0) as usize;
    trim_zeros(&format!("{value:.decimals$}"))
}

fn trim_zeros(text: &str) -> String {
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text.to_owned()
    }
}

/// `value` with `decimals` decimals.
pub fn fixed(value: f64, decimals: usize) -> String {
    format!("{value:.decimals$}")
}

/// printf with one number: `%.Nf`, `%+.Nf` or `%d`.
pub fn printf(format: &str, value: f64) -> Result<String, String> {
    let bad = || format!("{format:?}: expected %.Nf, %+.Nf or %d");
    let spec = format.strip_prefix('%').ok_or_else(bad)?;
    if spec == "d" {
        return Ok(format!("{}", value.trunc() as i64));
    }
    let (sign, spec) = match spec.strip_prefix('+') {
        Some(rest) => (true, rest),
        None => (false, spec),
    };
    let decimals: usize = spec
        .strip_prefix('.')
        .and_then(|s| s.strip_suffix('f'))
        .and_then(|d| d.parse().ok())
        .ok_or_else(bad)?;
    Ok(if sign {
        format!("{value:+.decimals$}")
    } else {
        format!("{value:.decimals$}")
    })
}

/// RESULTS.md with `section` (which starts with its own `## …` heading) in
/// place of the section whose heading starts with `heading`; else before
/// `## How to reproduce`; else at the end. Sections stay one blank line
/// apart.
pub fn splice(results: &str, heading: &str, section: &str) -> String {
    let lines: Vec<&str> = results.lines().collect();
    let at = |prefix: &str| lines.iter().position(|l| l.starts_with(prefix));
    let (start, end) = match at(heading) {
        Some(start) => {
            let end = lines[start + 1..]
                .iter()
                .position(|l| l.starts_with("## "))
                .map_or(lines.len(), |n| start + 1 + n);
            (start, end)
        }
        None => match at("## How to reproduce") {
            Some(at) => (at, at),
            None => (lines.len(), lines.len()),
        },
    };
    let before = lines[..start].join("\n");
    let after = lines[end..].join("\n");
    let mut out = before.trim_end().to_owned();
    if !out.is_empty() {
        out.push_str("\n\n");
    }
    out.push_str(section.trim_end());
    out.push('\n');
    if !after.trim().is_empty() {
        out.push('\n');
        out.push_str(after.trim_start_matches('\n'));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_csv_sums_up_to_wall_time_rate_and_failures() {
        let csv = "experiment,iteration,start_unix_ns,client_ms,status,error\n\
                   e,1,1000000000,2.0,200,\n\
                   e,1,1001000000,4.0,200,\n\
                   e,1,1002000000,1.0,500,\"500: boom, \"\"quoted\"\"\"\n";
        let c = calls(csv).unwrap();
        assert_eq!(c.n, 3);
        assert_eq!(c.failures, 1);
        // From 1.000 s to the second call's end, 1.001 s + 4 ms.
        assert!((c.wall_seconds - 0.005).abs() < 1e-12, "{c:?}");
        assert!((c.rate - 600.0).abs() < 1e-6);
        assert!((c.client_mean_us - 7000.0 / 3.0).abs() < 1e-9);
        assert_eq!(fields("a,\"b,\"\"c\"\"\",d"), ["a", "b,\"c\"", "d"]);
        assert!(
            calls("experiment\n")
                .unwrap_err()
                .contains("no start_unix_ns")
        );
    }

    const REPORT: &str = "Running 6s test @ http://127.0.0.1:39110/
  1 threads and 8 connections
  Latency Distribution
     50%  812.00us
     75%    1.01ms
     90%    1.20ms
     99%    2.01s
  12034 requests in 6.00s, 1.31MB read
  Socket errors: connect 0, read 1, write 0, timeout 2
  Non-2xx or 3xx responses: 4
Requests/sec:   2005.61
Transfer/sec:    223.47KB
";

    #[test]
    fn wrk_reports_are_read_in_microseconds_with_every_error_counted() {
        let w = wrk(REPORT).unwrap();
        assert_eq!(w.p50, 812.0);
        assert_eq!(w.p90, 1200.0);
        assert!((w.p99 - 2_010_000.0).abs() < 1e-6, "{}", w.p99);
        assert_eq!(w.rate, 2005.61);
        assert_eq!(w.errors, 7);
        assert_eq!(w.line(), "812.0 1200.0 2010000.0 2005.6 7");
        assert!(wrk("connection refused").is_err());
    }

    #[test]
    fn numbers_print_as_awk_prints_them() {
        assert_eq!(g6(3.0), "3");
        assert_eq!(g6(1.2345678), "1.23457");
        assert_eq!(g6(0.93), "0.93");
        assert_eq!(g6(12345.678), "12345.7");
        assert_eq!(g6(-0.5), "-0.5");
        assert_eq!(g6(1234567.5), "1.23457e+06");
        assert_eq!(g6(0.0000123), "1.23e-05");
        assert_eq!(g6(f64::NAN), "nan");
    }

    #[test]
    fn printf_takes_the_formats_the_scripts_use() {
        assert_eq!(printf("%.0f", 2.5).unwrap(), "2");
        assert_eq!(printf("%.2f", 1.005).unwrap(), "1.00");
        assert_eq!(printf("%+.1f", 3.0).unwrap(), "+3.0");
        assert_eq!(printf("%+.0f", -4.4).unwrap(), "-4");
        assert_eq!(printf("%d", 7.9).unwrap(), "7");
        assert!(printf("%s", 1.0).is_err());
    }

    #[test]
    fn a_section_replaces_its_old_self_or_goes_before_the_reproduction_notes() {
        let results = "# Results\n\n## 1. Fork\n\nold fork\n\n## 5. Async calls\n\nold async\nmore\n\n## How to reproduce\n\nrun it\n";
        let new = "## 5. Async calls\n\nnew async\n";
        assert_eq!(
            splice(results, "## 5. Async calls", new),
            "# Results\n\n## 1. Fork\n\nold fork\n\n## 5. Async calls\n\nnew async\n\n## How to reproduce\n\nrun it\n"
        );
        let fresh = "## 6. Autoscaling\n\nscaled\n";
        assert_eq!(
            splice(results, "## 6. Autoscaling", fresh),
            "# Results\n\n## 1. Fork\n\nold fork\n\n## 5. Async calls\n\nold async\nmore\n\n## 6. Autoscaling\n\nscaled\n\n## How to reproduce\n\nrun it\n"
        );
        assert_eq!(splice("", "## 6. Autoscaling", fresh), fresh);
        // A section that is last keeps the file ending in one newline.
        assert_eq!(
            splice("## 6. Autoscaling\n\nold\n", "## 6. Autoscaling", fresh),
            fresh
        );
    }
}
