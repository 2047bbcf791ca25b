//! `faas logs`: the gateway's ndjson log stream, printed line by line as it
//! arrives (with `--follow` the stream never ends, so nothing is buffered
//! beyond one line).

use std::io::{BufRead, BufReader, Write};

use clap::Args;
use faas_common::api::LogEntry;

use crate::Context;
use crate::client::{DEFAULT_TIMEOUT, Subject, check_function_name, query_string, transport_error};
use crate::error::{Error, Result};

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The function
    name: String,

    /// Keep the stream open and print new lines as they come
    #[arg(short, long)]
    follow: bool,

    /// Only the last N lines
    #[arg(long, value_name = "N")]
    tail: Option<u64>,

    /// Only lines since a time (RFC 3339) or a duration ago (5m, 1h)
    #[arg(long, value_name = "WHEN")]
    since: Option<String>,

    /// Print the gateway's JSON lines as they are
    #[arg(long)]
    json: bool,
}

pub fn logs(ctx: &Context, args: LogsArgs) -> Result<()> {
    check_function_name(&args.name)?;
    let client = ctx.client_with(None, DEFAULT_TIMEOUT)?;
    let tail = args.tail.map(|n| n.to_string());
    let mut query = vec![("name", args.name.as_str())];
    if let Some(tail) = &tail {
        query.push(("tail", tail));
    }
    if let Some(since) = &args.since {
        query.push(("since", since));
    }
    if args.follow {
        query.push(("follow", "true"));
    }
    let path = format!("/system/logs{}", query_string(query));
    let response = client.get_stream(&path, Subject::Function(&args.name))?;

    let mut lines = BufReader::new(response.into_body().into_reader());
    let stdout = std::io::stdout();
    let mut line = Vec::new();
    loop {
        line.clear();
        match lines.read_until(b'\n', &mut line) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let why = transport_error(ureq::Error::from(e), client.gateway(), client.timeout());
                return Err(Error::new(format!("the log stream broke off: {why}")));
            }
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\n', '\r']);
        if text.is_empty() {
            continue;
        }
        let shown = if args.json {
            text.to_string()
        } else {
            format_line(text)
        };
        // One write and flush per line: with --follow a reader is waiting.
        let mut out = stdout.lock();
        writeln!(out, "{shown}")
            .and_then(|()| out.flush())
            .map_err(Error::stdout)?;
    }
}

/// `timestamp instance text`; a line that is not a log entry is shown as
/// it came rather than lost.
fn format_line(line: &str) -> String {
    match serde_json::from_str::<LogEntry>(line) {
        Ok(entry) => {
            let instance = if entry.instance.is_empty() {
                entry.name.as_str()
            } else {
                entry.instance.as_str()
            };
            format!("{} {instance} {}", entry.timestamp, entry.text)
        }
        Err(_) => line.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_print_as_timestamp_instance_text() {
        let line = r#"{"name":"cat","namespace":"","instance":"cat.1.x7w2","timestamp":"2026-11-22T14:00:01.123Z","text":"hello world"}"#;
        assert_eq!(
            format_line(line),
            "2026-11-22T14:00:01.123Z cat.1.x7w2 hello world"
        );
        let anonymous = r#"{"name":"cat","timestamp":"t","text":"x"}"#;
        assert_eq!(format_line(anonymous), "t cat x");
        assert_eq!(format_line("not json"), "not json");
    }
}
