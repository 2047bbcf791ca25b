//! `http` mode: one long-lived `fprocess` that is itself an HTTP server at
//! `upstream_url`. The supervisor starts it, reports the instance healthy
//! only once it accepts connections, and restarts it with backoff when it
//! dies. Requests are forwarded over pooled keep-alive connections.

use std::ops::Not;
use std::sync::Arc;
use std::time::{Duration, Instant};

use faas_common::headers::strip_hop_by_hop;
use faas_common::message::error_chain;
use faas_common::shutdown::Shutdown;
use http::header;
use http::request::Parts;
use http::uri::Scheme;
use http::{HeaderValue, Request, Response, StatusCode, Uri};

use crate::body::{BodyError, RequestBody, find_body_error};
use crate::cgi;
use crate::config::Config;
use crate::health::Health;
use crate::limits::ProcFiles;
use crate::process::{Reaper, Stdio3};
use crate::response::{
    ResponseBody, X_CPU_SYSTEM_SECONDS, X_CPU_USER_SECONDS, X_MAX_RSS_BYTES, body_failure, seconds,
    text,
};
use crate::state::State;

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// A child that stayed up this long is healthy again: the next crash
/// restarts it without delay carried over from earlier ones.
const STABLE_AFTER: Duration = Duration::from_secs(30);
const PROBE_EVERY: Duration = Duration::from_millis(10);
pub async fn invoke(state: &Arc<State>, parts: Parts, body: RequestBody) -> Response<ResponseBody> {
    let client = state.upstream.as_ref().expect("http mode has a client");
    if !state.health.upstream_ready() {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "function is not ready: its upstream process is starting or restarting",
        );
    }
    let mut parts = parts;
    let path = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    parts.uri = match Uri::builder()
        .scheme(Scheme::HTTP)
        .authority(client.authority.clone())
        .path_and_query(path)
        .build()
    {
        Ok(uri) => uri,
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                format_args!("cannot forward this request path: {e}"),
            );
        }
    };
    strip_hop_by_hop(&mut parts.headers);
    let request = Request::from_parts(parts, body);
    // /proc is read around the call only for a runner not known to report
    // its own figures (ours do: after their first answer, no call pays for
    // the reads): its CPU time before, CPU time and peak memory after.
    let files = state
        .upstream_reports_figures
        .load(std::sync::atomic::Ordering::Relaxed)
        .not()
        .then(|| state.upstream_proc_files())
        .flatten();
    let before = files.as_ref().and_then(|f| f.cpu());
    if files.is_some() && before.is_none() {
        state.forget_proc_files();
    }

    let sent = client.pool().request(request);
    let answered = match state.config.exec_timeout {
        Some(limit) => match tokio::time::timeout(limit, sent).await {
            Ok(answered) => answered,
            Err(_) => {
                return text(
                    StatusCode::GATEWAY_TIMEOUT,
                    format_args!(
                        "function did not answer within exec_timeout ({}s)",
                        limit.as_secs_f64()
                    ),
                );
            }
        },
        None => sent.await,
    };
    match answered {
        Ok(response) => {
            let (mut parts, body) = response.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            if parts.headers.contains_key(X_CPU_USER_SECONDS) {
                state
                    .upstream_reports_figures
                    .store(true, std::sync::atomic::Ordering::Relaxed);
            } else {
                measured_around(&mut parts.headers, files.as_deref(), before);
            }
            if let Some(content_type) = &state.config.content_type {
                parts
                    .headers
                    .insert(header::CONTENT_TYPE, content_type.clone());
            }
            Response::from_parts(parts, ResponseBody::upstream(body))
        }
        Err(e) => {
            if let Some(body_error) = find_body_error(&e) {
                return body_failure(match body_error {
                    BodyError::TooLarge { limit } => BodyError::TooLarge { limit: *limit },
                    BodyError::TimedOut(d) => BodyError::TimedOut(*d),
                    BodyError::Read(_) => return text(StatusCode::BAD_REQUEST, body_error),
                });
            }
            let cause = error_chain(&e);
            if e.is_connect() {
                text(
                    StatusCode::BAD_GATEWAY,
                    format_args!(
                        "function upstream {} is unreachable: {cause}",
                        client.authority
                    ),
                )
            } else {
                text(
                    StatusCode::BAD_GATEWAY,
                    format_args!("function upstream {} failed: {cause}", client.authority),
                )
            }
        }
    }
}

/// A runner that reports its own per-call figures (the templates' runners
/// measure around the handler, per thread) keeps them; for any other
/// upstream the watchdog fills them from `/proc` samples of the runner
/// taken around the call until its response head: CPU in clock ticks (so
/// 10 ms steps), and including any calls that overlapped this one.
fn measured_around(
    headers: &mut http::HeaderMap,
    files: Option<&ProcFiles>,
    before: Option<(f64, f64)>,
) {
    let (Some((user, system)), Some(after)) = (before, files.and_then(ProcFiles::sample)) else {
        return;
    };
    let delta = |a: f64, b: f64| Duration::from_secs_f64((a - b).max(0.0));
    headers.insert(X_CPU_USER_SECONDS, seconds(delta(after.user_seconds, user)));
    headers.insert(
        X_CPU_SYSTEM_SECONDS,
        seconds(delta(after.system_seconds, system)),
    );
    headers.insert(X_MAX_RSS_BYTES, HeaderValue::from(after.peak_rss_bytes));
}

/// Runs the upstream process until `stop` turns true: starts it, waits
/// until it accepts connections, restarts it with exponential backoff when
/// it exits, and finally stops it (SIGTERM, then SIGKILL after
/// `write_timeout`).
pub async fn supervise(
    config: Config,
    reaper: &'static Reaper,
    health: Arc<Health>,
    mut stop: Shutdown,
) {
    let target = config
        .upstream_url
        .authority()
        .map(|a| format!("{}:{}", a.host(), a.port_u16().unwrap_or(80)))
        .expect("validated at start-up");
    let mut backoff = FIRST_BACKOFF;
    loop {
        let started = Instant::now();
        let mut cmd = cgi::command(&config, None);
        // The upstream must not outlive the watchdog, even one killed outright.
        // SAFETY: prctl is async-signal-safe; the child only arms its parent-death signal.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        match reaper.spawn(&mut cmd, Stdio3::Inherit) {
            Err(e) => tracing::error!(
                fprocess = %config.fprocess.join(" "),
                error = %e,
                "cannot exec the upstream process"
            ),
            Ok(mut child) => {
                tracing::info!(pid = child.pid(), upstream = %target, "upstream process started");
                let came_up = tokio::select! {
                    () = wait_accepting(&target) => true,
                    exit = child.wait() => {
                        tracing::error!(status = %exit.status, "upstream process exited before accepting connections");
                        false
                    }
                    () = stop.wait() => {
                        terminate(&mut child, config.write_timeout).await;
                        return;
                    }
                };
                if came_up {
                    tracing::info!(
                        pid = child.pid(),
                        after = ?started.elapsed(),
                        "upstream accepts connections; instance ready"
                    );
                    health.set_upstream_pid(Some(child.pid()));
                    health.set_upstream_ready(true);
                    tokio::select! {
                        exit = child.wait() => {
                            health.set_upstream_ready(false);
                            health.set_upstream_pid(None);
                            tracing::error!(status = %exit.status, "upstream process exited");
                        }
                        () = stop.wait() => {
                            health.set_upstream_ready(false);
                            health.set_upstream_pid(None);
                            terminate(&mut child, config.write_timeout).await;
                            return;
                        }
                    }
                }
            }
        }
        if started.elapsed() >= STABLE_AFTER {
            backoff = FIRST_BACKOFF;
        }
        tracing::info!(after = ?backoff, "restarting the upstream process");
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = stop.wait() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

async fn wait_accepting(target: &str) {
    loop {
        if tokio::net::TcpStream::connect(target).await.is_ok() {
            return;
        }
        tokio::time::sleep(PROBE_EVERY).await;
    }
}

async fn terminate(child: &mut crate::process::Child, grace: Duration) {
    child.signal(libc::SIGTERM);
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        tracing::warn!(pid = child.pid(), "upstream ignored SIGTERM; killing it");
        child.kill();
        child.wait().await;
    }
}
