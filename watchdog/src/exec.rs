//! Running `fprocess` for one request, what `fork` and `stream` modes
//! share: spawning it (with the request as CGI variables), feeding it the
//! body, and killing it at `exec_timeout`.

use http::request::Parts;
use http::{Response, StatusCode};
use http_body_util::BodyExt;

use crate::body::{BodyError, RequestBody};
use crate::cgi;
use crate::process::{Child, Stdin, Stdio3};
use crate::response::{ResponseBody, add_usage, text};
use crate::state::State;

/// How long the output pipes may stay open after the leader exited (held
/// by a process that left its group) before the answer is sent anyway.
pub const EXIT_GRACE: std::time::Duration = std::time::Duration::from_millis(200);
/// How long a killed process may take to be reaped before the answer goes
/// without its resource use.
pub const REAP_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Kills the process group of a run over `exec_timeout` and answers 504
/// once the process is reaped (waiting a bounded while for that).
pub async fn timed_out(state: &State, child: &mut Child) -> Response<ResponseBody> {
    let limit = state.config.exec_timeout.unwrap_or_default();
    child.kill();
    let exit = tokio::time::timeout(REAP_WAIT, child.wait()).await.ok();
    tracing::warn!(pid = child.pid(), timeout = ?limit, "exec_timeout exceeded, process group killed");
    let mut response = text(
        StatusCode::GATEWAY_TIMEOUT,
        format_args!(
            "function exceeded exec_timeout ({}s) and was killed",
            limit.as_secs_f64()
        ),
    );
    if let Some(exit) = exit {
        add_usage(&mut response, &exit.usage);
    }
    response
}

/// Spawns `fprocess` for a request, or says why it could not. With
/// `combine_output`, stdout and stderr share one pipe.
pub fn spawn(state: &State, parts: Option<&Parts>) -> Result<Child, Box<Response<ResponseBody>>> {
    let config = &state.config;
    let stdio = if config.combine_output {
        Stdio3::Combined
    } else {
        Stdio3::Piped
    };
    state
        .reaper
        .spawn(&mut cgi::command(config, parts), stdio)
        .map_err(|e| {
            Box::new(if e.raw_os_error() == Some(libc::E2BIG) {
                // One Http_* variable over the kernel's 128 KiB limit: the caller's doing.
                text(
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "a request header is too large to pass to the function as an environment variable",
                )
            } else {
                tracing::error!(fprocess = %config.fprocess.join(" "), error = %e, "cannot exec fprocess");
                text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format_args!("cannot exec fprocess {:?}: {e}", config.fprocess.join(" ")),
                )
            })
        })
}

/// Copies the request body into the child's stdin, then closes it. A child
/// that stops reading (exits early) is not an error: the rest is dropped.
/// With `debug` (write_debug), each chunk is logged (its first KiB).
pub async fn feed_stdin(
    mut body: RequestBody,
    mut stdin: Stdin,
    debug: bool,
) -> Result<u64, BodyError> {
    let mut total = 0u64;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        if debug {
            tracing::info!(
                bytes = data.len(),
                head = %String::from_utf8_lossy(&data[..data.len().min(1024)]),
                "function input"
            );
        }
        total += data.len() as u64;
        if let Err(e) = stdin.write_all(&data).await {
            tracing::debug!(error = %e, "function stopped reading stdin");
            break;
        }
    }
    Ok(total)
}
