//! `faas invoke --async` and `faas invoke-bulk`: calls handed to the
//! gateway's queue. Ids go to stdout (one per line, so scripts can capture
//! them), what people read goes to stderr; `--wait` polls the records with
//! a spinner until the calls finish.

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;
use ureq::Body;
use ureq::http::{HeaderName, Method, Response, header};

use crate::Context;
use crate::call::{INVOKE_TIMEOUT, InvokeArgs, call_request, content_value, send_call};
use crate::client::{Client, Subject, check_function_name, status_error};
use crate::error::{Error, Result, io_reason};
use crate::executions::{self, Execution};
use crate::output::{self, duration_text, table};

const X_CALL_ID: &str = "x-call-id";
const X_CALLBACK_URL: &str = "x-callback-url";
/// How often a waiting CLI reads the records.
const POLL: Duration = Duration::from_millis(250);
/// Reasons, and ids per reason, named in `invoke-bulk --wait`'s error.
const FAILURES_NAMED: usize = 3;

#[derive(Debug, Args)]
pub struct BulkArgs {
    /// The function
    name: String,

    /// JSON Lines: each non-empty line is one JSON value, the body of one
    /// call (a string's body is the string itself); - reads stdin
    #[arg(short, long, value_name = "FILE")]
    file: PathBuf,

    /// The gateway POSTs each call's answer to this URL when it finishes
    /// (X-Callback-Url)
    #[arg(long, value_name = "URL")]
    callback: Option<String>,

    /// Wait for every call to finish (see --timeout), print how many ended
    /// in each status, and exit 1 unless all succeeded
    #[arg(long)]
    wait: bool,
}

/// `202 {"id","function","status"}` from `POST /async-function/{name}`.
#[derive(Debug, Deserialize)]
struct Queued {
    id: String,
}

/// `202 {"function","ids"}` from `POST /bulk-function/{name}`.
#[derive(Debug, Deserialize)]
struct BulkQueued {
    ids: Vec<String>,
}

/// `faas invoke NAME --async`: queue the call, print its id, and with
/// `--wait`, its output once it has finished.
pub fn invoke_async(
    ctx: &Context,
    client: &Client,
    args: &InvokeArgs,
    body: Vec<u8>,
) -> Result<()> {
    let path = format!("/async-function/{}{}", args.name, args.query_string());
    let mut extra = Vec::new();
    if let Some(url) = &args.callback {
        extra.push((HeaderName::from_static(X_CALLBACK_URL), content_value(url)?));
    }
    let response = send_call(
        client,
        |body| call_request(client, args, &path, &extra, body),
        body,
    )?;
    let response = accepted(client, &args.name, response, &path)?;
    let id = match response
        .headers()
        .get(X_CALL_ID)
        .and_then(|v| v.to_str().ok())
    {
        Some(id) if !id.is_empty() => id.to_string(),
        _ => client.read_json::<Queued>(response, "POST", &path)?.id,
    };
    eprintln!("queued {id} (faas executions get {id})");
    if !args.wait {
        return output::print(&format!("{id}\n"));
    }

    let timeout = ctx.timeout_or(INVOKE_TIMEOUT);
    let ids = [id.clone()];
    let Some(records) = until_finished(client, &ids, timeout)? else {
        return Err(Error::new(format!(
            "timed out after {} waiting for execution {id} (faas executions get {id} shows its progress)",
            duration_text(timeout)
        )));
    };
    let record = &records[0];
    if !record.succeeded() {
        return Err(Error::new(format!(
            "execution {id} of {:?} {}",
            args.name,
            record.failure_text()
        )));
    }
    executions::print_output(client, &id)
}

/// `faas invoke-bulk NAME --file payloads.jsonl`: one call per line, ids
/// printed in the file's order.
pub fn invoke_bulk(ctx: &Context, args: BulkArgs) -> Result<()> {
    check_function_name(&args.name)?;
    let (source, text) = read_payloads(&args.file)?;
    let (array, count) = bulk_body(&text, &source)?;
    let client = ctx.client_with(None, INVOKE_TIMEOUT)?;
    let path = format!("/bulk-function/{}", args.name);
    let callback = args.callback.as_deref().map(content_value).transpose()?;
    let response = send_call(
        &client,
        |body| {
            let mut builder = client
                .request(Method::POST, &path)
                .header(header::CONTENT_TYPE, "application/json");
            if let Some(url) = &callback {
                builder = builder.header(X_CALLBACK_URL, url);
            }
            builder
                .body(body)
                .map_err(|e| Error::new(format!("cannot build the request: {e}")))
        },
        array.into_bytes(),
    )?;
    let response = accepted(&client, &args.name, response, &path)?;
    let ids = client.read_json::<BulkQueued>(response, "POST", &path)?.ids;
    if ids.len() != count {
        return Err(Error::new(format!(
            "the gateway queued {} calls for {count} payloads",
            ids.len()
        )));
    }
    let plural = if count == 1 { "call" } else { "calls" };
    eprintln!("queued {count} {plural} to {}", args.name);
    output::print(&ids.iter().map(|id| format!("{id}\n")).collect::<String>())?;
    if !args.wait {
        return Ok(());
    }

    let timeout = ctx.timeout_or(INVOKE_TIMEOUT);
    let records = until_finished(&client, &ids, timeout)?;
    let finished = records.is_some();
    let records = match records {
        Some(records) => records,
        // Timed out: one last look, so the summary shows where they are.
        None => executions::fetch_many(&client, &ids)?
            .into_iter()
            .flatten()
            .collect(),
    };
    eprint!("{}", summary_table(&records));
    if !finished {
        let unfinished = records.iter().filter(|r| !r.finished()).count();
        return Err(Error::new(format!(
            "timed out after {}: {unfinished} of {count} calls have not finished (faas executions list --function {})",
            duration_text(timeout),
            args.name
        )));
    }
    let failed = records.iter().filter(|r| !r.succeeded()).count();
    if failed == 0 {
        return Ok(());
    }
    Err(Error::new(format!(
        "{failed} of {count} calls did not succeed: {}",
        failures_text(&records)
    )))
}

/// The calls that did not succeed, grouped by reason (often one for all):
/// `reason (id, id, and 3 more); reason (id)`, a few of each.
fn failures_text(records: &[Execution]) -> String {
    let mut groups: Vec<(String, Vec<&str>)> = Vec::new();
    for record in records.iter().filter(|r| !r.succeeded()) {
        let reason = record.failure_text();
        match groups.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, ids)) => ids.push(&record.id),
            None => groups.push((reason, vec![&record.id])),
        }
    }
    let mut parts: Vec<String> = groups
        .iter()
        .take(FAILURES_NAMED)
        .map(|(reason, ids)| format!("{reason} ({})", some_of(ids)))
        .collect();
    if groups.len() > FAILURES_NAMED {
        parts.push(format!(
            "and {} other reasons",
            groups.len() - FAILURES_NAMED
        ));
    }
    parts.join("; ")
}

/// The first few items, and how many more there are.
fn some_of(items: &[&str]) -> String {
    let mut shown: Vec<String> = items
        .iter()
        .take(FAILURES_NAMED)
        .map(|s| s.to_string())
        .collect();
    if items.len() > FAILURES_NAMED {
        shown.push(format!("and {} more", items.len() - FAILURES_NAMED));
    }
    shown.join(", ")
}

/// A queueing answer, or the error it means (the gateway's own: queueing
/// never reaches the function).
fn accepted(
    client: &Client,
    name: &str,
    mut response: Response<Body>,
    path: &str,
) -> Result<Response<Body>> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    if status == 405 {
        // A gateway from before asynchronous calls.
        return Err(Error::new(format!(
            "the gateway at {} does not take asynchronous calls (POST {path} answered 405)",
            client.gateway()
        )));
    }
    let body = crate::client::read_error_body(&mut response);
    Err(status_error(status, &body, Subject::Function(name)))
}

/// The payload file's text and how to name it in messages.
fn read_payloads(file: &Path) -> Result<(String, String)> {
    let (source, bytes) = if file == Path::new("-") {
        let mut bytes = Vec::new();
        std::io::stdin()
            .lock()
            .read_to_end(&mut bytes)
            .map_err(|e| Error::new(format!("cannot read standard input: {}", io_reason(&e))))?;
        ("standard input".to_string(), bytes)
    } else {
        (
            file.display().to_string(),
            crate::read_file(&file.to_path_buf())?,
        )
    };
    match String::from_utf8(bytes) {
        Ok(text) => Ok((source, text)),
        Err(e) => {
            let bytes = e.as_bytes();
            let line = 1 + bytes[..e.utf8_error().valid_up_to()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            Err(Error::new(format!(
                "{source} line {line}: not UTF-8 text (JSON Lines are UTF-8)"
            )))
        }
    }
}

/// The JSON array of every non-empty line's value, each line's text kept as
/// written, and how many there are. A line that is not exactly one JSON
/// value is refused by its number before anything is sent.
fn bulk_body(text: &str, source: &str) -> Result<(String, usize)> {
    let mut array = String::with_capacity(text.len() + 2);
    array.push('[');
    let mut count = 0;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(line) {
            let full = e.to_string();
            let position = format!(" at line {} column {}", e.line(), e.column());
            let reason = full.strip_suffix(&position).unwrap_or(&full);
            return Err(Error::new(format!(
                "{source} line {}: not a JSON value ({reason} at column {})",
                n + 1,
                e.column()
            )));
        }
        if count > 0 {
            array.push(',');
        }
        array.push_str(line);
        count += 1;
    }
    array.push(']');
    if count == 0 {
        return Err(Error::new(format!(
            "{source} has no payloads (expected one JSON value per line)"
        )));
    }
    Ok((array, count))
}

/// Polls the records of `ids` until every call has finished; `None` when
/// `timeout` passes first. A gateway that stops answering (restarting:
/// queued calls survive it) is retried until then.
fn until_finished(
    client: &Client,
    ids: &[String],
    timeout: Duration,
) -> Result<Option<Vec<Execution>>> {
    let started = Instant::now();
    let spinner = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner())
                .tick_strings(&["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏", " "]),
        );
        bar.set_message("waiting");
        bar.enable_steady_tick(Duration::from_millis(100));
        bar
    });
    let outcome = poll_until_finished(client, ids, timeout, started, spinner.as_ref());
    if let Some(bar) = spinner {
        bar.finish_and_clear();
    }
    outcome
}

fn poll_until_finished(
    client: &Client,
    ids: &[String],
    timeout: Duration,
    started: Instant,
    spinner: Option<&ProgressBar>,
) -> Result<Option<Vec<Execution>>> {
    let mut records: Vec<Option<Execution>> = vec![None; ids.len()];
    loop {
        // Only the unfinished are read again.
        let pending: Vec<usize> = (0..ids.len())
            .filter(|&i| !records[i].as_ref().is_some_and(Execution::finished))
            .collect();
        let pending_ids: Vec<String> = pending.iter().map(|&i| ids[i].clone()).collect();
        match read_records(client, &pending_ids) {
            Ok(fresh) => {
                for (i, record) in pending.into_iter().zip(fresh) {
                    records[i] = Some(record);
                }
                if let Some(bar) = spinner {
                    bar.set_message(progress_text(&records));
                }
            }
            Err(Error::Unreachable(why)) => {
                if started.elapsed() >= timeout {
                    return Err(Error::Unreachable(why));
                }
                if let Some(bar) = spinner {
                    bar.set_message("the gateway does not answer; retrying");
                }
            }
            Err(e) => return Err(e),
        }
        if records
            .iter()
            .all(|r| r.as_ref().is_some_and(Execution::finished))
        {
            return Ok(Some(records.into_iter().flatten().collect()));
        }
        if started.elapsed() >= timeout {
            return Ok(None);
        }
        std::thread::sleep(POLL);
    }
}

/// The records of `ids`, in order: one `GET` for one id, bulk reads for
/// more. An id the gateway does not know (any more) is an error.
fn read_records(client: &Client, ids: &[String]) -> Result<Vec<Execution>> {
    if let [id] = ids {
        return Ok(vec![executions::fetch(client, id)?]);
    }
    executions::fetch_many(client, ids)?
        .into_iter()
        .zip(ids)
        .map(|(record, id)| record.ok_or_else(|| Error::new(format!("execution {id:?} not found"))))
        .collect()
}

/// The spinner's message: one call's status, or how many have finished.
fn progress_text(records: &[Option<Execution>]) -> String {
    if let [Some(record)] = records {
        return match record.attempts {
            Some(n) if n > 1 => format!("{} {} (attempt {n})", record.id, record.status),
            _ => format!("{} {}", record.id, record.status),
        };
    }
    let known: Vec<Execution> = records.iter().flatten().cloned().collect();
    let finished = known.iter().filter(|r| r.finished()).count();
    let counts: Vec<String> = executions::status_counts(&known)
        .into_iter()
        .map(|(status, n)| format!("{n} {status}"))
        .collect();
    format!(
        "{finished}/{} finished: {}",
        records.len(),
        counts.join(", ")
    )
}

/// `STATUS  CALLS` rows, one per status that has calls.
fn summary_table(records: &[Execution]) -> String {
    let rows: Vec<Vec<String>> = executions::status_counts(records)
        .into_iter()
        .map(|(status, n)| vec![status, n.to_string()])
        .collect();
    table(&["STATUS", "CALLS"], &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, status: &str) -> Execution {
        Execution {
            id: id.into(),
            status: status.into(),
            ..Default::default()
        }
    }

    #[test]
    fn each_non_empty_line_is_one_element_kept_as_written() {
        let text = "\"a\"\n\n{\"n\": 1.50, \"b\": [1, 2]}\r\n   \n42\ntrue\n";
        let (array, count) = bulk_body(text, "p.jsonl").unwrap();
        assert_eq!(count, 4);
        assert_eq!(array, "[\"a\",{\"n\": 1.50, \"b\": [1, 2]},42,true]");
        let parsed: Vec<serde_json::Value> = serde_json::from_str(&array).unwrap();
        assert_eq!(parsed.len(), 4);
    }

    #[test]
    fn a_malformed_line_is_named_by_its_number() {
        let text = "1\n\n{\"a\": }\n3\n";
        let e = bulk_body(text, "p.jsonl").unwrap_err().to_string();
        assert_eq!(
            e,
            "p.jsonl line 3: not a JSON value (expected value at column 7)"
        );
        // Two values on one line are not one value.
        let e = bulk_body("1 2\n", "p.jsonl").unwrap_err().to_string();
        assert!(e.starts_with("p.jsonl line 1: not a JSON value"), "{e}");
        let e = bulk_body("hello\n", "standard input")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("standard input line 1:"), "{e}");
    }

    #[test]
    fn a_file_without_payloads_is_refused() {
        let e = bulk_body("\n  \n", "p.jsonl").unwrap_err().to_string();
        assert!(e.contains("p.jsonl has no payloads"), "{e}");
    }

    #[test]
    fn a_non_utf8_file_is_named_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.jsonl");
        std::fs::write(&path, b"1\n\"\xff\"\n").unwrap();
        let e = read_payloads(&path).unwrap_err().to_string();
        assert!(
            e.ends_with("p.jsonl line 2: not UTF-8 text (JSON Lines are UTF-8)"),
            "{e}"
        );
    }

    #[test]
    fn progress_shows_one_call_or_counts() {
        let retrying = Execution {
            attempts: Some(2),
            ..record("c0ffee", "running")
        };
        assert_eq!(
            progress_text(&[Some(retrying)]),
            "c0ffee running (attempt 2)"
        );
        assert_eq!(
            progress_text(&[
                Some(record("a", "succeeded")),
                Some(record("b", "queued")),
                None
            ]),
            "1/3 finished: 1 queued, 1 succeeded"
        );
    }

    #[test]
    fn failures_are_grouped_by_reason() {
        let failed = |id: &str| Execution {
            status_code: Some(500),
            error: Some("exit status 1".into()),
            ..record(id, "failed")
        };
        let records = [
            failed("a"),
            record("ok", "succeeded"),
            failed("b"),
            record("d", "dead"),
            failed("c"),
            failed("e"),
        ];
        assert_eq!(
            failures_text(&records),
            "failed, status code 500: exit status 1 (a, b, c, and 1 more); dead (d)"
        );
    }

    #[test]
    fn the_summary_counts_calls_per_status() {
        let records = [
            record("a", "succeeded"),
            record("b", "failed"),
            record("c", "succeeded"),
        ];
        assert_eq!(
            summary_table(&records),
            "STATUS      CALLS\nsucceeded   2\nfailed      1\n"
        );
    }
}
