//! `GET /system/logs` on Swarm: a service's log stream from Docker
//! (`/services/{id}/logs`, stdout and stderr, with timestamps and details),
//! one [`LogEntry`] per line.
//!
//! Docker prefixes each line with its timestamp and, asked for details,
//! the task's context (`com.docker.swarm.task.id=…`), which names the
//! instance. bollard's service-log options have no `details` field, so the
//! logs client adds it to the request ([`with_details`]).
//!
//! Docker applies `tail` per task; without `follow` the lines are gathered,
//! put in time order and cut to the last `tail`, so the answer is exactly
//! what was asked. A followed stream is passed through as Docker sends it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use bollard::query_parameters::{ListTasksOptionsBuilder, LogsOptions};
use bollard::{BollardRequest, Docker};
use faas_common::api::LogEntry;
use futures_util::stream::{self, BoxStream};
use futures_util::{FutureExt, StreamExt, future};

use crate::provider::LogQuery;

const TASK_ID_ATTR: &str = "com.docker.swarm.task.id";

/// One line of Docker's service log, split.
#[derive(Debug, PartialEq, Eq)]
pub struct Line<'a> {
    pub timestamp: Option<&'a str>,
    pub task: Option<&'a str>,
    pub text: &'a str,
}

/// Splits `<timestamp> <k=v,…> <text>\n`. `None` for an empty line.
pub fn parse(raw: &str) -> Option<Line<'_>> {
    let raw = raw.strip_suffix('\n').unwrap_or(raw);
    let raw = raw.strip_suffix('\r').unwrap_or(raw);
    let (timestamp, rest) = match raw.split_once(' ') {
        Some((ts, rest)) if looks_like_timestamp(ts) => (Some(ts), rest),
        _ => (None, raw),
    };
    // The details are one word of comma-separated k=v pairs, empty when
    // the line has none.
    let (attrs, text) = match rest.split_once(' ') {
        Some((attrs, text)) if attrs.is_empty() || attrs.split(',').all(|p| p.contains('=')) => {
            (attrs, text)
        }
        _ => ("", rest),
    };
    if text.trim().is_empty() {
        return None;
    }
    let task = attrs
        .split(',')
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| *k == TASK_ID_ATTR)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty());
    Some(Line {
        timestamp,
        task,
        text,
    })
}

/// `2026-11-22T14:00:01.123456789Z`, roughly: Docker's RFC 3339.
fn looks_like_timestamp(s: &str) -> bool {
    s.len() >= 20 && s.as_bytes()[..4].iter().all(u8::is_ascii_digit) && s.as_bytes()[10] == b'T'
}

/// Adds `details=true` to service-log requests (bollard's options lack it).
pub fn with_details(mut request: BollardRequest) -> BollardRequest {
    let uri = request.uri();
    if !(uri.path().contains("/services/") && uri.path().ends_with("/logs")) {
        return request;
    }
    let path_and_query = match uri.query() {
        Some(q) => format!("{}?{q}&details=true", uri.path()),
        None => format!("{}?details=true", uri.path()),
    };
    let mut parts = uri.clone().into_parts();
    let Ok(pq) = path_and_query.parse() else {
        return request;
    };
    parts.path_and_query = Some(pq);
    if let Ok(uri) = http::Uri::from_parts(parts) {
        *request.uri_mut() = uri;
    }
    request
}

/// Task id → task name (`service.slot.id`), looked up once per task.
#[derive(Clone)]
pub struct TaskNames {
    docker: Docker,
    service_name: String,
    names: Arc<Mutex<HashMap<String, String>>>,
}

impl TaskNames {
    /// Knows the service's current tasks; later ones are looked up as met.
    pub async fn load(docker: Docker, service_id: &str, service_name: &str) -> TaskNames {
        let mut filters = HashMap::new();
        filters.insert("service", vec![service_id]);
        let tasks = docker
            .list_tasks(Some(
                ListTasksOptionsBuilder::default().filters(&filters).build(),
            ))
            .await
            .unwrap_or_else(|e| {
                tracing::debug!(error = %e, "listing tasks for log instance names failed");
                Vec::new()
            });
        let names = tasks
            .iter()
            .filter_map(|t| Some((t.id.clone()?, task_name(service_name, t))))
            .collect();
        TaskNames {
            docker,
            service_name: service_name.to_owned(),
            names: Arc::new(Mutex::new(names)),
        }
    }

    async fn name(&self, id: &str) -> String {
        if let Some(name) = self.cached(id) {
            return name;
        }
        let name = match self.docker.inspect_task(id).await {
            Ok(task) => task_name(&self.service_name, &task),
            Err(_) => id.to_owned(),
        };
        self.names
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_owned(), name.clone());
        name
    }

    fn cached(&self, id: &str) -> Option<String> {
        self.names
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }
}

/// As `docker service ps` names tasks: `service.slot.id` (a global
/// service's tasks have a node instead of a slot).
fn task_name(service_name: &str, task: &bollard::models::Task) -> String {
    let id = task.id.as_deref().unwrap_or_default();
    match (task.slot, task.node_id.as_deref()) {
        (Some(slot), _) => format!("{service_name}.{slot}.{id}"),
        (None, Some(node)) => format!("{service_name}.{node}.{id}"),
        (None, None) => id.to_owned(),
    }
}

/// The function's log entries. `docker` must add details ([`with_details`]).
pub fn stream(
    docker: &Docker,
    service_id: &str,
    function: String,
    names: TaskNames,
    query: &LogQuery,
) -> BoxStream<'static, LogEntry> {
    let options = LogsOptions {
        follow: query.follow,
        stdout: true,
        stderr: true,
        since: query.since.map(unix_seconds).unwrap_or(0),
        until: 0,
        timestamps: true,
        tail: query
            .tail
            .map(|n| n.to_string())
            .unwrap_or_else(|| "all".to_owned()),
    };
    let service = service_id.to_owned();
    let entries = docker
        .service_logs(service_id, Some(options))
        .take_while(move |item| {
            if let Err(e) = item {
                tracing::warn!(service = %service, error = %e, "service log stream ended");
            }
            future::ready(item.is_ok())
        })
        .filter_map(move |item| {
            let function = function.clone();
            let names = names.clone();
            async move {
                let output = item.ok()?;
                let raw = String::from_utf8_lossy(output.as_ref());
                let line = parse(&raw)?;
                let instance = match line.task {
                    Some(id) => names.name(id).await,
                    None => String::new(),
                };
                Some(LogEntry {
                    name: function,
                    namespace: String::new(),
                    instance,
                    timestamp: line
                        .timestamp
                        .map(str::to_owned)
                        .unwrap_or_else(|| faas_common::time::rfc3339(SystemTime::now())),
                    text: line.text.to_owned(),
                })
            }
        });
    match (query.follow, query.tail) {
        (false, Some(tail)) => entries
            .collect::<Vec<_>>()
            .map(move |all| stream::iter(last_in_time_order(all, tail)))
            .flatten_stream()
            .boxed(),
        _ => entries.boxed(),
    }
}

/// The `tail` latest entries, oldest first. Docker's timestamps are UTC
/// with fixed-width nanoseconds, so they sort as text.
fn last_in_time_order(mut entries: Vec<LogEntry>, tail: usize) -> Vec<LogEntry> {
    entries.sort_by(|a, b| a.timestamp.cmp(&b.timestamp));
    let skip = entries.len().saturating_sub(tail);
    entries.split_off(skip)
}

/// Docker's `since`: whole seconds (rounded down, so nothing asked for is
/// missed).
fn unix_seconds(t: SystemTime) -> i32 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i32::try_from(d.as_secs()).unwrap_or(i32::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_into_timestamp_task_and_text() {
        let raw = "2026-11-22T13:48:37.382056425Z com.docker.swarm.node.id=lr31,com.docker.swarm.service.id=igtx,com.docker.swarm.task.id=83gv 2026-11-22T13:48:37.381561Z  INFO watchdog: listening fprocess=cat\n";
        assert_eq!(
            parse(raw),
            Some(Line {
                timestamp: Some("2026-11-22T13:48:37.382056425Z"),
                task: Some("83gv"),
                text: "2026-11-22T13:48:37.381561Z  INFO watchdog: listening fprocess=cat",
            })
        );
    }

    #[test]
    fn lines_without_details_keep_their_first_word() {
        let raw = "2026-11-22T13:48:37.382056425Z hello world\r\n";
        assert_eq!(
            parse(raw),
            Some(Line {
                timestamp: Some("2026-11-22T13:48:37.382056425Z"),
                task: None,
                text: "hello world",
            })
        );
        // Empty details (a line with no context).
        let raw = "2026-11-22T13:48:37.382056425Z  a=b is text\n";
        assert_eq!(parse(raw).map(|l| l.text), Some("a=b is text"));
    }

    #[test]
    fn empty_lines_are_skipped() {
        assert_eq!(
            parse("2026-11-22T13:48:37.382056425Z com.docker.swarm.task.id=x \n"),
            None
        );
        assert_eq!(parse("\n"), None);
    }

    #[test]
    fn service_log_requests_ask_for_details() {
        let request = |uri: &str| {
            http::Request::builder()
                .uri(uri)
                .body(http_body_util::Either::Left(http_body_util::Full::new(
                    bytes::Bytes::new(),
                )))
                .expect("request")
        };
        let r = with_details(request(
            "http://localhost/v1.41/services/abc/logs?stdout=true&tail=all",
        ));
        assert_eq!(
            r.uri().to_string(),
            "http://localhost/v1.41/services/abc/logs?stdout=true&tail=all&details=true"
        );
        let r = with_details(request("http://localhost/v1.41/services/abc"));
        assert_eq!(r.uri().to_string(), "http://localhost/v1.41/services/abc");
    }

    #[test]
    fn a_tail_keeps_the_latest_lines_in_time_order() {
        let entry = |ts: &str| LogEntry {
            timestamp: ts.to_owned(),
            ..Default::default()
        };
        let all = vec![
            entry("2026-11-22T14:00:03.000000000Z"),
            entry("2026-11-22T14:00:01.000000000Z"),
            entry("2026-11-22T14:00:02.000000000Z"),
        ];
        let kept: Vec<String> = last_in_time_order(all, 2)
            .into_iter()
            .map(|e| e.timestamp)
            .collect();
        assert_eq!(
            kept,
            [
                "2026-11-22T14:00:02.000000000Z",
                "2026-11-22T14:00:03.000000000Z"
            ]
        );
    }
}
