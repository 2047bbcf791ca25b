//! `faas executions get|list|output`: the records the gateway keeps of
//! asynchronous calls, and the reads of them that `invoke --async --wait`
//! and `invoke-bulk --wait` share.
//!
//! The record type lives here until the gateway's lands in `faas-common`;
//! every field but `id` and `status` may be missing or null, so an older
//! or newer gateway's records still display.

use clap::{Args, Subcommand};
use faas_common::message::one_line_cut;
use serde::Deserialize;
use serde_json::Value;
use ureq::http::{Method, StatusCode};

use crate::Context;
use crate::client::{
    Client, Subject, Wait, check, check_function_name, encode_component, query_string,
    read_error_body, status_error,
};
use crate::error::{Error, Result};
use crate::output::{self, duration_text, fields, table};

/// The statuses a call ends in; `queued` and `running` are the others.
pub const FINISHED: [&str; 3] = ["succeeded", "failed", "dead"];
/// Every status, in the order a call goes through them.
pub const STATUSES: [&str; 5] = ["queued", "running", "succeeded", "failed", "dead"];
/// Ids per `POST /system/executions/bulk`, well under `max_api_body`.
const BULK_CHUNK: usize = 500;
/// The most of an error shown in a one-line message.
const ONE_LINE_LIMIT: usize = 300;

/// One asynchronous call, as `GET /system/executions/{id}` describes it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Execution {
    pub id: String,
    pub function: String,
    pub status: String,
    pub created_at: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub attempts: Option<u64>,
    pub status_code: Option<u16>,
    pub duration_seconds: Option<f64>,
    pub error: Option<String>,
    pub callback: Option<CallbackOutcome>,
}

/// What became of a call's `X-Callback-Url`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CallbackOutcome {
    pub url: String,
    pub status: String,
    pub attempts: Option<u64>,
    pub status_code: Option<u16>,
    pub error: Option<String>,
}

impl Execution {
    pub fn finished(&self) -> bool {
        FINISHED.contains(&self.status.as_str())
    }

    pub fn succeeded(&self) -> bool {
        self.status == "succeeded"
    }

    /// One line on why a call did not succeed: its status, the function's
    /// status code, the attempts it took and the error, as far as known.
    pub fn failure_text(&self) -> String {
        let mut parts = vec![self.status.clone()];
        if let Some(code) = self.status_code {
            parts.push(format!("status code {code}"));
        }
        if let Some(n) = self.attempts.filter(|&n| n > 1) {
            parts.push(format!("{n} attempts"));
        }
        let mut text = parts.join(", ");
        if let Some(error) = self
            .error
            .as_deref()
            .map(|text| one_line_cut(text, ONE_LINE_LIMIT))
            .filter(|e| !e.is_empty())
        {
            text.push_str(": ");
            text.push_str(&error);
        }
        text
    }
}

#[derive(Debug, Subcommand)]
pub enum ExecutionsCommand {
    /// Show asynchronous calls' records: status, attempts, status code, timing
    #[command(after_help = "Examples:
  faas executions get 0f8c2a64-5d0e-4c36-9a57-2b8f0a9e1c11
  faas executions get $(faas invoke-bulk wordcount --file payloads.jsonl)
  faas executions get 0f8c2a64-5d0e-4c36-9a57-2b8f0a9e1c11 --json")]
    Get(GetArgs),

    /// List asynchronous calls, oldest first (by default those queued or running)
    #[command(
        visible_alias = "ls",
        after_help = "Examples:
  faas executions list
  faas executions list --function wordcount --all
  faas executions list --status dead --json"
    )]
    List(ListArgs),

    /// Print a finished call's output (the function's response body) raw
    #[command(after_help = "Examples:
  faas executions output 0f8c2a64-5d0e-4c36-9a57-2b8f0a9e1c11
  faas executions output $ID > result.json")]
    Output(OutputArgs),
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// Execution ids, as `faas invoke --async` printed them
    #[arg(required = true, value_name = "ID")]
    ids: Vec<String>,
    /// Print the gateway's JSON record (an array for several ids)
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this function's calls
    #[arg(long, value_name = "NAME")]
    function: Option<String>,
    /// Only calls in this status (a finished status implies --all)
    #[arg(short, long, value_name = "STATUS", value_parser = STATUSES)]
    status: Option<String>,
    /// Include finished calls (kept for the gateway's async_retention)
    #[arg(short, long)]
    all: bool,
    /// Print the gateway's JSON
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct OutputArgs {
    /// The execution id
    id: String,
}

pub fn run(ctx: &Context, command: ExecutionsCommand) -> Result<()> {
    match command {
        ExecutionsCommand::Get(args) => get(ctx, args),
        ExecutionsCommand::List(args) => list(ctx, args),
        ExecutionsCommand::Output(args) => output(ctx, args),
    }
}

fn get(ctx: &Context, args: GetArgs) -> Result<()> {
    for id in &args.ids {
        check_id(id)?;
    }
    let client = ctx.client()?;
    if let [id] = args.ids.as_slice() {
        let value = fetch_value(&client, id)?;
        if args.json {
            return output::print_json(&value);
        }
        return output::print(&record_text(&decode(value)?));
    }
    let values = fetch_values(&client, &args.ids)?;
    if args.json {
        output::print_json(&values)?;
    } else {
        let records = values
            .iter()
            .flatten()
            .map(|v| decode(v.clone()))
            .collect::<Result<Vec<_>>>()?;
        output::print(&list_table(&records))?;
    }
    let unknown: Vec<String> = args
        .ids
        .iter()
        .zip(&values)
        .filter(|(_, v)| v.is_none())
        .map(|(id, _)| format!("{id:?}"))
        .collect();
    match unknown.len() {
        0 => Ok(()),
        1 => Err(Error::new(format!("execution {} not found", unknown[0]))),
        _ => Err(Error::new(format!(
            "executions {} not found",
            unknown.join(", ")
        ))),
    }
}

fn list(ctx: &Context, args: ListArgs) -> Result<()> {
    if let Some(function) = &args.function {
        check_function_name(function)?;
    }
    let finished_status = args
        .status
        .as_deref()
        .is_some_and(|s| FINISHED.contains(&s));
    let include_completed = if args.all || finished_status {
        "true"
    } else {
        "false"
    };
    let mut query = Vec::new();
    if let Some(function) = &args.function {
        query.push(("function", function.as_str()));
    }
    if let Some(status) = &args.status {
        query.push(("status", status.as_str()));
    }
    query.push(("include_completed", include_completed));
    let path = format!("/system/executions{}", query_string(query));
    let client = ctx.client()?;
    let values: Vec<Value> = client.get_json(&path, Subject::Gateway)?;
    if args.json {
        return output::print_json(&values);
    }
    let records = values.into_iter().map(decode).collect::<Result<Vec<_>>>()?;
    output::print(&list_table(&records))
}

fn output(ctx: &Context, args: OutputArgs) -> Result<()> {
    check_id(&args.id)?;
    let client = ctx.client()?;
    print_output(&client, &args.id)
}

/// Streams a finished call's output to stdout. The gateway answers 404
/// both for an unknown id and an unfinished call: the record tells which.
pub fn print_output(client: &Client, id: &str) -> Result<()> {
    let path = format!("{}/output", record_path(id));
    let request = client
        .request(Method::GET, &path)
        .body(Vec::new())
        .map_err(|e| Error::new(format!("cannot build a request for {path}: {e}")))?;
    let mut response = client.exchange(request, true, Wait::Headers)?;
    if response.status() == StatusCode::NOT_FOUND {
        let record = fetch(client, id)?;
        if !record.finished() {
            return Err(Error::new(format!(
                "execution {id:?} has not finished (it is {}); faas executions get {id} shows its progress",
                record.status
            )));
        }
        let body = read_error_body(&mut response);
        return Err(status_error(response.status(), &body, Subject::Gateway));
    }
    let response = check(response, Subject::Execution(id))?;
    let truncated = response
        .headers()
        .get("x-output-truncated")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true"));
    crate::call::copy_body(client, response)?;
    if truncated {
        eprintln!(
            "faas: warning: the gateway kept only the start of this output (its async_max_output)"
        );
    }
    Ok(())
}

/// `/system/executions/{id}`, the id encoded (callers may choose ids via
/// `X-Call-Id`).
fn record_path(id: &str) -> String {
    format!("/system/executions/{}", encode_component(id))
}

fn check_id(id: &str) -> Result<()> {
    if id.trim().is_empty() {
        return Err(Error::new("an execution id is empty"));
    }
    Ok(())
}

/// One record, as the gateway sent it.
fn fetch_value(client: &Client, id: &str) -> Result<Value> {
    client.get_json(&record_path(id), Subject::Execution(id))
}

/// One record.
pub fn fetch(client: &Client, id: &str) -> Result<Execution> {
    decode(fetch_value(client, id)?)
}

/// Records in the order of `ids`, `None` for ids the gateway does not know.
fn fetch_values(client: &Client, ids: &[String]) -> Result<Vec<Option<Value>>> {
    let mut values = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(BULK_CHUNK) {
        let answer: Vec<Option<Value>> =
            client.post_json("/system/executions/bulk", &chunk, Subject::Gateway)?;
        if answer.len() != chunk.len() {
            return Err(Error::new(format!(
                "the gateway at {} answered {} records for {} ids",
                client.gateway(),
                answer.len(),
                chunk.len()
            )));
        }
        values.extend(answer.into_iter().map(|v| v.filter(|v| !v.is_null())));
    }
    Ok(values)
}

/// Records in the order of `ids`, `None` for ids the gateway does not know.
pub fn fetch_many(client: &Client, ids: &[String]) -> Result<Vec<Option<Execution>>> {
    fetch_values(client, ids)?
        .into_iter()
        .map(|v| v.map(decode).transpose())
        .collect()
}

fn decode(value: Value) -> Result<Execution> {
    serde_json::from_value(value).map_err(|e| {
        Error::new(format!(
            "the gateway sent an execution record that faas does not understand: {e}"
        ))
    })
}

/// One record as `Key: value` lines.
fn record_text(record: &Execution) -> String {
    let opt = |v: &Option<String>| or_dash(v.as_deref().unwrap_or_default());
    let mut pairs = vec![
        ("ID", record.id.clone()),
        ("Function", or_dash(&record.function)),
        ("Status", or_dash(&record.status)),
        ("Attempts", number(record.attempts)),
        ("Status code", number(record.status_code)),
        ("Duration", seconds_text(record.duration_seconds)),
        ("Created", opt(&record.created_at)),
        ("Started", opt(&record.started_at)),
        ("Finished", opt(&record.finished_at)),
        ("Error", opt(&record.error)),
    ];
    if let Some(callback) = &record.callback {
        let mut text = format!("{} ({}", callback.url, or_dash(&callback.status));
        if let Some(code) = callback.status_code {
            text.push_str(&format!(", status code {code}"));
        }
        if let Some(n) = callback.attempts {
            text.push_str(&format!(", {n} attempt{}", if n == 1 { "" } else { "s" }));
        }
        text.push(')');
        if let Some(error) = callback.error.as_deref().filter(|e| !e.is_empty()) {
            text.push('\n');
            text.push_str(error);
        }
        pairs.push(("Callback", text));
    }
    fields(&pairs)
}

/// Records as the table `executions list` and `get ID…` print.
pub fn list_table(records: &[Execution]) -> String {
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|r| {
            vec![
                r.id.clone(),
                or_dash(&r.function),
                or_dash(&r.status),
                number(r.attempts),
                number(r.status_code),
                or_dash(r.created_at.as_deref().unwrap_or_default()),
                seconds_text(r.duration_seconds),
            ]
        })
        .collect();
    table(
        &[
            "ID", "FUNCTION", "STATUS", "ATTEMPTS", "CODE", "CREATED", "DURATION",
        ],
        &rows,
    )
}

/// How many calls are in each status, statuses in their usual order
/// (unexpected ones last), only those with calls.
pub fn status_counts(records: &[Execution]) -> Vec<(String, usize)> {
    let mut counts: Vec<(String, usize)> = STATUSES.iter().map(|s| (s.to_string(), 0)).collect();
    for record in records {
        match counts.iter_mut().find(|(s, _)| *s == record.status) {
            Some((_, n)) => *n += 1,
            None => counts.push((record.status.clone(), 1)),
        }
    }
    counts.retain(|(_, n)| *n > 0);
    counts
}

fn seconds_text(seconds: Option<f64>) -> String {
    seconds
        .and_then(|s| std::time::Duration::try_from_secs_f64(s).ok())
        .map(duration_text)
        .unwrap_or_else(|| "-".to_string())
}

fn number<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_string(), |v| v.to_string())
}

fn or_dash(text: &str) -> String {
    if text.is_empty() {
        "-".to_string()
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's example record.
    const RECORD: &str = r#"{"id": "c0ffee", "function": "sleep", "status": "succeeded",
        "createdAt": "2026-11-22T15:00:00.123Z", "startedAt": "2026-11-22T15:00:00.200Z",
        "finishedAt": "2026-11-22T15:00:01.204Z", "attempts": 1, "statusCode": 200,
        "durationSeconds": 1.004, "error": null,
        "callback": {"url": "http://cb:9000/done", "status": "delivered", "attempts": 1,
                     "statusCode": 200, "error": null}}"#;

    fn record(status: &str) -> Execution {
        Execution {
            id: format!("id-{status}"),
            function: "f".into(),
            status: status.into(),
            ..Default::default()
        }
    }

    #[test]
    fn the_documented_record_decodes() {
        let r: Execution = serde_json::from_str(RECORD).unwrap();
        assert_eq!(r.id, "c0ffee");
        assert!(r.succeeded() && r.finished());
        assert_eq!(r.attempts, Some(1));
        assert_eq!(r.status_code, Some(200));
        assert_eq!(r.duration_seconds, Some(1.004));
        let callback = r.callback.unwrap();
        assert_eq!(callback.url, "http://cb:9000/done");
        assert_eq!(callback.status, "delivered");
    }

    #[test]
    fn missing_and_unknown_fields_are_tolerated() {
        let r: Execution =
            serde_json::from_str(r#"{"id": "x", "status": "paused", "attempts": null, "new": 1}"#)
                .unwrap();
        assert_eq!(r.status, "paused");
        assert!(!r.finished());
        assert_eq!(r.attempts, None);
        assert!(r.callback.is_none());
    }

    #[test]
    fn only_succeeded_failed_and_dead_are_finished() {
        for status in ["queued", "running"] {
            assert!(!record(status).finished(), "{status}");
        }
        for status in FINISHED {
            assert!(record(status).finished(), "{status}");
        }
    }

    #[test]
    fn a_failure_reads_as_one_line_with_status_code_and_error() {
        let failed = Execution {
            status_code: Some(500),
            error: Some("exit status 1\n\n  stack trace\n".into()),
            attempts: Some(1),
            ..record("failed")
        };
        assert_eq!(
            failed.failure_text(),
            "failed, status code 500: exit status 1 stack trace"
        );
        let dead = Execution {
            attempts: Some(6),
            error: Some("connection refused".into()),
            ..record("dead")
        };
        assert_eq!(dead.failure_text(), "dead, 6 attempts: connection refused");
        let long = Execution {
            error: Some("x".repeat(1000)),
            ..record("failed")
        };
        assert!(long.failure_text().chars().count() < 320);
    }

    #[test]
    fn the_list_table_has_the_documented_columns() {
        let r: Execution = serde_json::from_str(RECORD).unwrap();
        let running = Execution {
            attempts: Some(2),
            ..record("running")
        };
        let text = list_table(&[r, running]);
        let lines: Vec<Vec<&str>> = text
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(
            lines[0],
            [
                "ID", "FUNCTION", "STATUS", "ATTEMPTS", "CODE", "CREATED", "DURATION"
            ]
        );
        assert_eq!(
            lines[1],
            [
                "c0ffee",
                "sleep",
                "succeeded",
                "1",
                "200",
                "2026-11-22T15:00:00.123Z",
                "1.0s"
            ]
        );
        assert_eq!(lines[2], ["id-running", "f", "running", "2", "-", "-", "-"]);
    }

    #[test]
    fn one_record_reads_as_key_value_lines() {
        let text = record_text(&serde_json::from_str(RECORD).unwrap());
        for line in [
            "ID:           c0ffee",
            "Status:       succeeded",
            "Attempts:     1",
            "Status code:  200",
            "Duration:     1.0s",
            "Error:        -",
            "Callback:     http://cb:9000/done (delivered, status code 200, 1 attempt)",
        ] {
            assert!(text.contains(line), "{line:?} not in\n{text}");
        }
        assert!(!record_text(&record("queued")).contains("Callback"));
    }

    #[test]
    fn statuses_are_counted_in_their_usual_order() {
        let records = [
            record("dead"),
            record("succeeded"),
            record("succeeded"),
            record("paused"),
            record("queued"),
        ];
        assert_eq!(
            status_counts(&records),
            [
                ("queued".to_string(), 1),
                ("succeeded".to_string(), 2),
                ("dead".to_string(), 1),
                ("paused".to_string(), 1),
            ]
        );
    }

    #[test]
    fn ids_are_encoded_in_paths() {
        assert_eq!(record_path("c0ffee-1"), "/system/executions/c0ffee-1");
        assert_eq!(record_path("a/b c"), "/system/executions/a%2Fb%20c");
        assert!(check_id(" ").is_err());
    }
}
