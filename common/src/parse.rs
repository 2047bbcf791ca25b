//! Parsers for the values people write in environment variables and flags:
//! durations, byte sizes and booleans. Errors are short hints, meant to
//! follow the name of the variable at fault.

use std::time::Duration;

/// Accepts `10` (seconds), `10s`, `500ms`, `1.5s`, `2m`, `1h`, `250us`.
pub fn parse_duration(v: &str) -> Result<Duration, String> {
    const HINT: &str = "expected a duration such as 10, 10s, 500ms, 2m or 1h30m";
    let v = v.trim();
    let mut rest = v;
    let mut secs = 0.0;
    let mut parts = 0;
    while !rest.is_empty() {
        let split = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, tail) = rest.split_at(split);
        let number: f64 = number.parse().map_err(|_| HINT.to_string())?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let scale = match unit.trim() {
            // A bare number is seconds, but only on its own ("10").
            "" if parts == 0 && tail.is_empty() => 1.0,
            "s" | "sec" | "secs" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            "m" | "min" => 60.0,
            "h" => 3600.0,
            _ => return Err(HINT.to_string()),
        };
        secs += number * scale;
        parts += 1;
        rest = tail;
    }
    if parts == 0 || !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
        return Err(HINT.to_string());
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Accepts `1048576`, `64k`, `64KiB`, `64m`, `64MB`, `1g` (multiples of 1024).
pub fn parse_bytes(v: &str) -> Result<u64, String> {
    const HINT: &str = "expected a size in bytes such as 1048576, 512k or 64m";
    let v = v.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (number, unit) = v.split_at(split);
    let number: u64 = number.parse().map_err(|_| HINT.to_string())?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "ki" | "kib" => 1 << 10,
        "m" | "mb" | "mi" | "mib" => 1 << 20,
        "g" | "gb" | "gi" | "gib" => 1 << 30,
        _ => return Err(HINT.to_string()),
    };
    number.checked_mul(scale).ok_or_else(|| HINT.to_string())
}

/// CPUs as Docker counts them, in billionths: `0.5` or `500m` (millicores,
/// as Kubernetes writes them) → 500 000 000. Zero and negatives are refused.
pub fn parse_cpus(v: &str) -> Result<u64, String> {
    const HINT: &str = "expected a number of CPUs such as 0.5, 2 or 500m";
    let v = v.trim();
    let cpus = match v.strip_suffix('m') {
        Some(milli) => milli.trim().parse::<f64>().map(|m| m / 1000.0),
        None => v.parse::<f64>(),
    }
    .map_err(|_| HINT.to_string())?;
    if !cpus.is_finite() || cpus <= 0.0 || cpus > 1e6 {
        return Err(HINT.to_string());
    }
    Ok((cpus * 1e9).round() as u64)
}

/// Accepts true/false, 1/0, yes/no, on/off in any case.
pub fn parse_bool(v: &str) -> Result<bool, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err("expected true or false".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpus_and_kubernetes_sizes() {
        assert_eq!(parse_cpus("0.5"), Ok(500_000_000));
        assert_eq!(parse_cpus("2"), Ok(2_000_000_000));
        assert_eq!(parse_cpus("250m"), Ok(250_000_000));
        for bad in ["", "0", "-1", "half", "1e400"] {
            assert!(parse_cpus(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_bytes("128Mi"), Ok(128 << 20));
        assert_eq!(parse_bytes("128m"), Ok(128 << 20));
    }

    #[test]
    fn durations_accept_bare_seconds_and_units() {
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("s").is_err());
        // Go's compound form (OpenFaaS writes durations so).
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("2m30s"), Ok(Duration::from_secs(150)));
        assert_eq!(parse_duration("1m0.5s"), Ok(Duration::from_millis(60_500)));
        assert!(parse_duration("1m30").is_err());
        assert!(parse_duration("10 20").is_err());
    }

    #[test]
    fn sizes_accept_binary_suffixes() {
        assert_eq!(parse_bytes("1024"), Ok(1024));
        assert_eq!(parse_bytes("64k"), Ok(64 << 10));
        assert_eq!(parse_bytes("64MiB"), Ok(64 << 20));
        assert_eq!(parse_bytes("1g"), Ok(1 << 30));
        assert!(parse_bytes("1.5m").is_err());
        assert!(parse_bytes("99999999999999999999g").is_err());
    }

    #[test]
    fn booleans_accept_common_spellings() {
        for yes in ["true", "TRUE", "1", "yes", "on"] {
            assert_eq!(parse_bool(yes), Ok(true));
        }
        for no in ["false", "0", "No", "off"] {
            assert_eq!(parse_bool(no), Ok(false));
        }
        assert!(parse_bool("maybe").is_err());
    }
}
