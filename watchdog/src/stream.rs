//! `stream` mode: a process per request with both bodies streamed, so memory
//! stays constant whatever their sizes.
//!
//! The response waits for the first byte of output (or the end of it): a
//! process that fails before writing anything still gets a 500 with its
//! stderr. Once streaming has begun the status is sent, so a later failure
//! (non-zero exit, `exec_timeout`, a bad request body) aborts the response
//! instead of ending it cleanly: the client sees a truncated transfer, never
//! a silently incomplete success.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http::request::Parts;
use http::{Response, StatusCode};
use http_body::{Body, Frame};
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::task::JoinHandle;
use tokio::time::Sleep;

use crate::body::{BodyError, RequestBody};
use crate::exec::{EXIT_GRACE, feed_stdin, spawn, timed_out};
use crate::process::{Child, Exit, ExitStatus};
use crate::response::{
    ResponseBody, add_usage, body_failure, output_content_type, text, usage_headers,
};
use crate::state::State;

const CHUNK: usize = 64 * 1024;
/// How many sent chunks are kept for reuse.
const RECYCLE: usize = 4;

/// Aborts the task when dropped, so a finished or abandoned request leaves
/// no task behind.
struct Task<T>(JoinHandle<T>);

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub async fn invoke(
    state: &Arc<State>,
    parts: &Parts,
    body: RequestBody,
) -> Response<ResponseBody> {
    let config = &state.config;
    let mut run = match Run::start(state, parts, body) {
        Ok(run) => run,
        Err(response) => return *response,
    };
    let content_type = output_content_type(config, parts);
    match run.first_output(state).await {
        Err(response) => response,
        Ok(First::Failed(e)) => {
            run.child.kill();
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format_args!("reading the function's output failed: {e}"),
            )
        }
        Ok(First::Nothing) => run.answer_without_output(state, content_type).await,
        Ok(First::Some) => {
            // Resource use is known only at the end: trailers, for clients that accept them.
            let usage_trailers = accepts_trailers(parts);
            streamed_head(
                run.into_output(usage_trailers),
                content_type,
                usage_trailers,
            )
        }
    }
}

/// How the output began.
enum First {
    /// Bytes are in the buffer.
    Some,
    /// The output ended (or the leader exited and the grace passed) empty.
    Nothing,
    Failed(io::Error),
}

/// One process running for a request, before its answer has a shape.
struct Run {
    child: Child,
    stdout: pipe::Receiver,
    /// Detached on purpose: it ends at EOF, after logging the last lines.
    stderr: Option<JoinHandle<Vec<u8>>>,
    feeder: Option<Task<Result<u64, BodyError>>>,
    deadline: Option<Pin<Box<Sleep>>>,
    buf: BytesMut,
}

impl Run {
    fn start(
        state: &State,
        parts: &Parts,
        body: RequestBody,
    ) -> Result<Run, Box<Response<ResponseBody>>> {
        let config = &state.config;
        let mut child = spawn(state, Some(parts))?;
        let stdin = child.stdin.take().expect("stdin is piped");
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child
            .stderr
            .take()
            .map(|s| tokio::spawn(log_stderr(s, config.max_output_bytes)));
        let feeder = Task(tokio::spawn(feed_stdin(body, stdin, config.write_debug)));
        Ok(Run {
            child,
            stdout,
            stderr,
            feeder: Some(feeder),
            deadline: config.exec_timeout.map(|t| Box::pin(tokio::time::sleep(t))),
            buf: BytesMut::with_capacity(CHUNK),
        })
    }

    /// Waits for the first output, or for an answer that needs none (a bad
    /// request body, `exec_timeout`).
    async fn first_output(&mut self, state: &State) -> Result<First, Response<ResponseBody>> {
        // Watching the exit beside the first read: reaping the leader kills
        // leftovers that would otherwise hold stdout open. A process that
        // left the group could hold stdout open forever: after the leader's
        // exit, EXIT_GRACE, then the output is taken as ended.
        let mut exited = false;
        let mut grace = Box::pin(tokio::time::sleep(EXIT_GRACE));
        loop {
            tokio::select! {
                read = self.stdout.read_buf(&mut self.buf) => return Ok(match read {
                    Ok(0) => First::Nothing,
                    Ok(_) => First::Some,
                    Err(e) => First::Failed(e),
                }),
                _ = self.child.wait(), if !exited => {
                    exited = true;
                    grace.as_mut().reset(tokio::time::Instant::now() + EXIT_GRACE);
                }
                () = &mut grace, if exited => return Ok(First::Nothing),
                fed = async { (&mut self.feeder.as_mut().expect("guarded").0).await }, if self.feeder.is_some() => {
                    self.feeder = None;
                    if let Some(e) = fed_error(fed) {
                        self.child.kill();
                        return Err(body_failure(e));
                    }
                }
                () = async { self.deadline.as_mut().expect("guarded").await }, if self.deadline.is_some() => {
                    return Err(timed_out(state, &mut self.child).await);
                }
            }
        }
    }

    /// No output at all: the exit status decides the answer.
    async fn answer_without_output(
        mut self,
        state: &State,
        content_type: Option<http::HeaderValue>,
    ) -> Response<ResponseBody> {
        let exit = tokio::select! {
            exit = self.child.wait() => exit,
            () = async { self.deadline.as_mut().expect("guarded").await }, if self.deadline.is_some() => {
                return timed_out(state, &mut self.child).await;
            }
        };
        // The process is gone; what it left behind (a feeder waiting on a
        // slow client, stderr held by an escaped process) gets a grace.
        if let Some(mut feeder) = self.feeder.take()
            && let Ok(fed) = tokio::time::timeout(EXIT_GRACE, &mut feeder.0).await
            && let Some(e) = fed_error(fed)
        {
            return body_failure(e);
        }
        let stderr = match self.stderr {
            Some(task) => tokio::time::timeout(EXIT_GRACE, task)
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default(),
            None => Vec::new(),
        };
        empty_output_answer(exit, stderr, content_type)
    }

    fn into_output(mut self, usage_trailers: bool) -> ChildOutput {
        ChildOutput {
            usage_trailers,
            child: self.child,
            stdout: self.stdout,
            first: Some(self.buf.split().freeze()),
            buf: self.buf,
            sent: VecDeque::with_capacity(RECYCLE),
            feeder: self.feeder,
            deadline: self.deadline,
            grace: None,
            phase: Phase::Reading,
        }
    }
}

/// The answer for a process that wrote nothing: empty success, or 500 with
/// its stderr (or its exit status when it said nothing either).
fn empty_output_answer(
    exit: Exit,
    stderr: Vec<u8>,
    content_type: Option<http::HeaderValue>,
) -> Response<ResponseBody> {
    let mut response = if exit.status.success() {
        let mut response = Response::new(ResponseBody::empty());
        if let Some(content_type) = content_type {
            response
                .headers_mut()
                .insert(http::header::CONTENT_TYPE, content_type);
        }
        response
    } else if stderr.is_empty() {
        text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format_args!("function failed: {}", exit.status),
        )
    } else {
        let mut response = text(StatusCode::INTERNAL_SERVER_ERROR, "");
        *response.body_mut() = ResponseBody::full(stderr);
        response
    };
    add_usage(&mut response, &exit.usage);
    response
}

/// The head of a streamed answer: 200 now, the rest as the output comes.
fn streamed_head(
    output: ChildOutput,
    content_type: Option<http::HeaderValue>,
    usage_trailers: bool,
) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::streamed(output));
    if let Some(content_type) = content_type {
        response
            .headers_mut()
            .insert(http::header::CONTENT_TYPE, content_type);
    }
    if usage_trailers {
        response.headers_mut().insert(
            http::header::TRAILER,
            http::HeaderValue::from_static(
                "X-Cpu-User-Seconds, X-Cpu-System-Seconds, X-Max-Rss-Bytes",
            ),
        );
    }
    response
}

/// Whether the client sent `TE: trailers`.
fn accepts_trailers(parts: &Parts) -> bool {
    parts
        .headers
        .get_all(http::header::TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
}

fn fed_error(joined: Result<Result<u64, BodyError>, tokio::task::JoinError>) -> Option<BodyError> {
    match joined {
        Ok(Err(e)) => Some(e),
        _ => None,
    }
}

/// Logs the function's stderr line by line as it arrives, keeping the first
/// `cap` bytes for an error response.
async fn log_stderr(mut stderr: pipe::Receiver, cap: u64) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut pending = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stderr.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let chunk = &buf[..n];
                let room = (cap as usize).saturating_sub(kept.len());
                kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
                pending.extend_from_slice(chunk);
                while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=end).collect();
                    tracing::info!(stderr = %String::from_utf8_lossy(&line[..end]), "function stderr");
                }
                if pending.len() > CHUNK {
                    tracing::info!(stderr = %String::from_utf8_lossy(&pending), "function stderr");
                    pending.clear();
                }
            }
        }
    }
    if !pending.is_empty() {
        tracing::info!(stderr = %String::from_utf8_lossy(&pending), "function stderr");
    }
    kept
}

enum Phase {
    Reading,
    Exiting,
    Done,
}

/// A streamed response body: the child's stdout, then its exit status.
pub struct ChildOutput {
    child: Child,
    stdout: pipe::Receiver,
    first: Option<Bytes>,
    buf: BytesMut,
    /// Clones of the last chunks handed to hyper: once hyper has written and
    /// dropped one, its buffer is ours again. Reusing them keeps a long
    /// stream from allocating (and, with musl, mapping) a buffer per chunk.
    sent: VecDeque<Bytes>,
    feeder: Option<Task<Result<u64, BodyError>>>,
    deadline: Option<Pin<Box<Sleep>>>,
    /// Armed when the process has exited while its pipe is still open.
    grace: Option<Pin<Box<Sleep>>>,
    phase: Phase,
    usage_trailers: bool,
}

impl ChildOutput {
    fn fail(&mut self, message: String) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        self.child.kill();
        self.phase = Phase::Done;
        tracing::warn!(pid = self.child.pid(), "{message}");
        Poll::Ready(Some(Err(io::Error::other(message))))
    }

    /// Makes room for the next chunk, in a recycled buffer when one is free.
    fn make_room(&mut self) {
        if self.buf.capacity() - self.buf.len() >= CHUNK {
            return;
        }
        if self.sent.front().is_some_and(Bytes::is_unique)
            && let Some(done) = self.sent.pop_front()
            && let Ok(mut reused) = done.try_into_mut()
        {
            reused.clear();
            reused.reserve(CHUNK);
            self.buf = reused;
            return;
        }
        self.buf = BytesMut::with_capacity(CHUNK);
    }

    /// Hands a chunk to hyper, keeping a clone to recycle its buffer later.
    fn send(&mut self, chunk: Bytes) -> Bytes {
        if self.sent.len() == RECYCLE {
            self.sent.pop_front();
        }
        self.sent.push_back(chunk.clone());
        chunk
    }

    fn poll_read_chunk(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.stdout.poll_read_ready(cx))?;
            self.make_room();
            match self.stdout.try_read_buf(&mut self.buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                other => return Poll::Ready(other),
            }
        }
    }
}

impl Body for ChildOutput {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = &mut *self;
        if let Some(first) = this.first.take() {
            return Poll::Ready(Some(Ok(Frame::data(first))));
        }
        if matches!(this.phase, Phase::Done) {
            return Poll::Ready(None);
        }
        if let Some(deadline) = this.deadline.as_mut()
            && deadline.as_mut().poll(cx).is_ready()
        {
            return this.fail("function exceeded exec_timeout and was killed mid-response".into());
        }
        if let Some(feeder) = this.feeder.as_mut()
            && let Poll::Ready(fed) = Pin::new(&mut feeder.0).poll(cx)
        {
            this.feeder = None;
            if let Some(e) = fed_error(fed) {
                return this.fail(format!("response aborted: {e}"));
            }
        }
        if let Phase::Reading = this.phase {
            // Reap as soon as the process exits (the result is kept): that
            // kills leftovers that would hold stdout open.
            if this.child.poll_wait(cx).is_ready() {
                // Gone: the pipe gets EXIT_GRACE to end (a process that
                // left the group could hold it open forever).
                let grace = this
                    .grace
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(EXIT_GRACE)));
                if grace.as_mut().poll(cx).is_ready() {
                    this.phase = Phase::Exiting;
                }
            }
        }
        if let Phase::Reading = this.phase {
            match ready!(this.poll_read_chunk(cx)) {
                Ok(0) => this.phase = Phase::Exiting,
                Ok(_) => {
                    let chunk = this.buf.split().freeze();
                    return Poll::Ready(Some(Ok(Frame::data(this.send(chunk)))));
                }
                Err(e) => return this.fail(format!("reading the function's output failed: {e}")),
            }
        }
        let exit = ready!(this.child.poll_wait(cx));
        this.phase = Phase::Done;
        match exit.status {
            ExitStatus::Code(0) if this.usage_trailers => {
                let mut trailers = http::HeaderMap::new();
                usage_headers(&mut trailers, &exit.usage);
                Poll::Ready(Some(Ok(Frame::trailers(trailers))))
            }
            ExitStatus::Code(0) => Poll::Ready(None),
            status => {
                let message = format!("function failed mid-response: {status}");
                tracing::warn!(pid = this.child.pid(), "{message}");
                Poll::Ready(Some(Err(io::Error::other(message))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && matches!(self.phase, Phase::Done)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http_body_util::BodyExt;

    use super::*;
    use crate::process::Usage;

    fn exit(status: ExitStatus) -> Exit {
        Exit {
            status,
            usage: Usage {
                user: Duration::from_millis(3),
                system: Duration::from_millis(1),
                max_rss_bytes: 4096,
            },
        }
    }

    async fn body_of(response: Response<ResponseBody>) -> Vec<u8> {
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec()
    }

    #[tokio::test]
    async fn silent_success_is_an_empty_200_with_the_output_type_and_usage() {
        let json = http::HeaderValue::from_static("application/json");
        let response = empty_output_answer(exit(ExitStatus::Code(0)), b"note".to_vec(), Some(json));
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()[http::header::CONTENT_TYPE],
            "application/json"
        );
        assert_eq!(response.headers()["x-max-rss-bytes"], "4096");
        assert_eq!(response.headers()["x-cpu-user-seconds"], "0.003000");
        assert!(
            body_of(response).await.is_empty(),
            "stderr of a success is only logged"
        );
    }

    #[tokio::test]
    async fn a_silent_failure_answers_500_with_its_stderr_or_its_status() {
        let response =
            empty_output_answer(exit(ExitStatus::Code(3)), b"bad input\n".to_vec(), None);
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            response.headers()[http::header::CONTENT_TYPE],
            "text/plain; charset=utf-8"
        );
        assert_eq!(body_of(response).await, b"bad input\n");

        let response = empty_output_answer(exit(ExitStatus::Signal(9)), Vec::new(), None);
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            body_of(response).await,
            b"function failed: killed by signal 9\n"
        );
    }

    #[test]
    fn trailers_are_sent_only_to_clients_that_accept_them() {
        let parts = |te: Option<&'static str>| {
            let mut request = http::Request::builder();
            if let Some(te) = te {
                request = request.header(http::header::TE, te);
            }
            request.body(()).unwrap().into_parts().0
        };
        assert!(accepts_trailers(&parts(Some("trailers"))));
        assert!(accepts_trailers(&parts(Some("gzip, Trailers"))));
        assert!(!accepts_trailers(&parts(Some("gzip"))));
        assert!(!accepts_trailers(&parts(None)));
    }
}
