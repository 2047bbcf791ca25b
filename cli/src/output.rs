//! Output for people and for scripts: aligned tables, `key: value` blocks,
//! pretty JSON, and writing to stdout without panicking when it is closed.

use std::io::Write;
use std::time::Duration;

use serde::Serialize;

use crate::error::{Error, Result};

/// Writes `text` to stdout as is.
pub fn print(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(Error::stdout)
}

/// Pretty JSON, one document, newline-terminated.
pub fn print_json<T: Serialize + ?Sized>(value: &T) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value)
        .map_err(|e| Error::new(format!("cannot encode JSON output: {e}")))?;
    text.push('\n');
    print(&text)
}

/// Columns padded to their widest cell, separated by three spaces; the last
/// column is not padded, so lines carry no trailing blanks.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| width(h)).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(width(cell));
            }
        }
    }
    let mut out = String::new();
    let header_row: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header_row).chain(rows) {
        let last = row.len().saturating_sub(1);
        for (i, cell) in row.iter().enumerate() {
            out.push_str(cell);
            if i < last {
                let pad = widths.get(i).copied().unwrap_or(0) - width(cell) + 3;
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push('\n');
    }
    out
}

/// `Key:   value` lines with the values aligned; a multi-line value keeps
/// its later lines under its first.
pub fn fields(pairs: &[(&str, String)]) -> String {
    let key_width = pairs.iter().map(|(k, _)| width(k) + 1).max().unwrap_or(0);
    let mut out = String::new();
    for (key, value) in pairs {
        let mut lines = value.lines();
        let first = lines.next().unwrap_or("");
        let label = format!("{key}:");
        out.push_str(format!("{label:<key_width$}  {first}").trim_end());
        out.push('\n');
        for line in lines {
            out.push_str(&format!("{:key_width$}  {line}\n", ""));
        }
    }
    out
}

/// `60s`, `1.5s`, `250ms`, `2m`, `2m30s`: how people write durations.
pub fn duration_text(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    if !ms.is_multiple_of(1000) && ms < 60_000 {
        return format!("{:.1}s", d.as_secs_f64());
    }
    let secs = d.as_secs();
    match (secs / 60, secs % 60) {
        (0, s) => format!("{s}s"),
        (m, 0) => format!("{m}m"),
        (m, s) => format!("{m}m{s}s"),
    }
}

fn width(text: &str) -> usize {
    text.chars().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns_without_trailing_blanks() {
        let text = table(
            &["NAME", "INVOCATIONS", "REPLICAS"],
            &[
                vec!["catservice".into(), "12".into(), "1/1".into()],
                vec!["wc".into(), "0".into(), "0/2".into()],
            ],
        );
        assert_eq!(
            text,
            "NAME         INVOCATIONS   REPLICAS\n\
             catservice   12            1/1\n\
             wc           0             0/2\n"
        );
    }

    #[test]
    fn an_empty_table_still_has_its_header() {
        assert_eq!(table(&["NAME"], &[]), "NAME\n");
    }

    #[test]
    fn fields_align_values_and_indent_continuations() {
        let text = fields(&[
            ("Name", "cat".into()),
            ("Labels", "a=1\nb=2".into()),
            ("Empty", String::new()),
        ]);
        assert_eq!(text, "Name:    cat\nLabels:  a=1\n         b=2\nEmpty:\n");
    }

    #[test]
    fn durations_read_as_written() {
        assert_eq!(duration_text(Duration::from_secs(60)), "1m");
        assert_eq!(duration_text(Duration::from_secs(45)), "45s");
        assert_eq!(duration_text(Duration::from_secs(150)), "2m30s");
        assert_eq!(duration_text(Duration::from_millis(1500)), "1.5s");
        assert_eq!(duration_text(Duration::from_millis(250)), "250ms");
    }
}
