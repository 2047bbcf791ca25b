//! `fork` mode: a process per request. The body is written to stdin while
//! stdout and stderr are read, all concurrently, so no pipe can fill and
//! deadlock whatever the sizes. Output is buffered (up to
//! `max_output_bytes`) so the status can follow the exit code.

use std::sync::Arc;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderValue, Response, StatusCode};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::watch;

use crate::body::RequestBody;
use crate::exec::{EXIT_GRACE, feed_stdin, spawn, timed_out};
use crate::process::Exit;
use crate::response::{ResponseBody, add_usage, body_failure, output_content_type, text};
use crate::state::State;

/// Why reading the output failed.
enum Failure {
    OutputTooLarge(u64),
    Io(std::io::Error),
}

pub async fn invoke(
    state: &Arc<State>,
    parts: &Parts,
    body: RequestBody,
) -> Response<ResponseBody> {
    let config = &state.config;
    let mut child = match spawn(state, Some(parts)) {
        Ok(child) => child,
        Err(response) => return *response,
    };
    let stdin = child.stdin.take().expect("stdin is piped");
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take();
    let cap = config.max_output_bytes;
    let group = child.group();
    let (exited, exited_rx) = watch::channel(false);

    // Waiting for the exit runs beside the readers: reaping the leader kills
    // whatever it left in its group, which lets the pipes reach EOF. A
    // process that left the group (setsid) could hold them open forever, so
    // once the leader is gone the readers get EXIT_GRACE, then the answer is
    // what was read.
    let mut stdout_buf = Vec::new();
    let mut stderr_buf = Vec::new();
    let run = async {
        let feed = async {
            let fed = feed_stdin(body, stdin, config.write_debug).await;
            if fed.is_err() {
                group.kill();
            }
            fed
        };
        let out = async {
            let out = tokio::select! {
                out = read_capped(&mut stdout, cap, &mut stdout_buf) => out,
                () = grace_after_exit(exited_rx.clone()) => Ok(()),
            };
            if out.is_err() {
                group.kill();
            }
            out
        };
        let err = async {
            if let Some(mut stderr) = stderr {
                tokio::select! {
                    () = read_keeping_head(&mut stderr, cap, &mut stderr_buf) => {}
                    () = grace_after_exit(exited_rx.clone()) => {}
                }
            }
        };
        let wait = async {
            let exit = child.wait().await;
            let _ = exited.send(true);
            exit
        };
        tokio::join!(feed, out, err, wait)
    };

    let outcome = match config.exec_timeout {
        Some(limit) => tokio::time::timeout(limit, run).await.ok(),
        None => Some(run.await),
    };
    let Some((fed, out, (), exit)) = outcome else {
        return timed_out(state, &mut child).await;
    };
    let (out, err) = (out.map(|()| stdout_buf), stderr_buf);

    if let Err(e) = fed {
        return body_failure(e);
    }
    let stdout = match out {
        Ok(stdout) => stdout,
        Err(Failure::OutputTooLarge(cap)) => {
            let mut response = text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format_args!(
                    "function output exceeds max_output_bytes ({cap} bytes); use mode=stream for large outputs"
                ),
            );
            add_usage(&mut response, &exit.usage);
            return response;
        }
        Err(Failure::Io(e)) => {
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format_args!("reading the function's output failed: {e}"),
            );
        }
    };
    if config.write_debug {
        tracing::info!(
            stdout = %String::from_utf8_lossy(&stdout[..stdout.len().min(64 * 1024)]),
            "function output"
        );
    }
    finish(state, parts, exit, stdout, err)
}

/// Resolves `EXIT_GRACE` after the leader's exit was observed.
pub async fn grace_after_exit(mut exited: watch::Receiver<bool>) {
    if exited.wait_for(|e| *e).await.is_err() {
        std::future::pending::<()>().await;
    }
    tokio::time::sleep(EXIT_GRACE).await;
}

/// Builds the response once the process has exited.
fn finish(
    state: &State,
    parts: &Parts,
    exit: Exit,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
) -> Response<ResponseBody> {
    let mut response = if exit.status.success() {
        if !stderr.is_empty() {
            tracing::info!(stderr = %String::from_utf8_lossy(&stderr), "function wrote to stderr");
        }
        let mut response = Response::new(ResponseBody::full(Bytes::from(stdout)));
        if let Some(content_type) = output_content_type(&state.config, parts) {
            response
                .headers_mut()
                .insert(http::header::CONTENT_TYPE, content_type);
        }
        response
    } else {
        // With combine_output, stderr went into stdout.
        let detail = if state.config.combine_output {
            stdout
        } else {
            stderr
        };
        tracing::warn!(status = %exit.status, stderr = %String::from_utf8_lossy(&detail), "function failed");
        if detail.is_empty() {
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format_args!("function failed: {}", exit.status),
            )
        } else {
            let mut response = Response::new(ResponseBody::full(Bytes::from(detail)));
            *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            response
        }
    };
    add_usage(&mut response, &exit.usage);
    response
}

/// Reads into `out` until EOF; more than `cap` bytes is an error.
async fn read_capped<R: AsyncRead + Unpin>(
    reader: &mut R,
    cap: u64,
    out: &mut Vec<u8>,
) -> Result<(), Failure> {
    match reader.take(cap.saturating_add(1)).read_to_end(out).await {
        Err(e) => Err(Failure::Io(e)),
        Ok(_) if out.len() as u64 > cap => Err(Failure::OutputTooLarge(cap)),
        Ok(_) => Ok(()),
    }
}

/// Reads to EOF, keeping the first `cap` bytes in `kept`: the pipe is
/// drained so the writer never blocks on it. Allocates nothing when there
/// is nothing.
pub async fn read_keeping_head<R: AsyncRead + Unpin>(reader: &mut R, cap: u64, kept: &mut Vec<u8>) {
    let cap = usize::try_from(cap).unwrap_or(usize::MAX);
    let mut discard = [0u8; 4096];
    loop {
        let read = if kept.len() < cap {
            reader.read_buf(kept).await
        } else {
            reader.read(&mut discard).await
        };
        match read {
            Ok(0) | Err(_) => {
                kept.truncate(cap);
                return;
            }
            Ok(_) => {}
        }
    }
}
