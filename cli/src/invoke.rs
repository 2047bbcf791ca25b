//! `faas invoke`: a synchronous call through the gateway. The request body
//! is stdin, the answer's body goes to stdout byte for byte (streamed, so
//! large answers use constant memory); a refusal goes to stderr with exit
//! code 1. `--async` hands the call to the gateway's queue instead
//! ([`crate::async_calls`]); both send it through [`crate::call`].

use ureq::Body;
use ureq::http::{Method, Response};

use crate::Context;
use crate::call::{INVOKE_TIMEOUT, InvokeArgs, call_request, copy_body, send_call};
use crate::client::{Subject, check_function_name, read_error_body, status_error};
use crate::error::{Error, Result};

/// Watchdogs stamp every answer with this; the gateway's own refusals lack
/// it, which tells a function's error from the gateway's.
const X_SERVED_BY: &str = "x-served-by";

pub fn invoke(ctx: &Context, args: InvokeArgs) -> Result<()> {
    check_function_name(&args.name)?;
    if args.async_call && args.method != Method::POST {
        return Err(Error::new(format!(
            "--async calls are always POST, not {} (the gateway queues POST /async-function/{})",
            args.method, args.name
        )));
    }
    let client = ctx.client_with(None, INVOKE_TIMEOUT)?;
    let body = match args.params_body()? {
        Some(json) => json,
        None => crate::read_stdin_unless_tty()?,
    };
    if args.async_call {
        return crate::async_calls::invoke_async(ctx, &client, &args, body);
    }
    let path = format!("/function/{}{}", args.name, args.query_string());
    let response = send_call(
        &client,
        |body| call_request(&client, &args, &path, &[], body),
        body,
    )?;
    if response.status().is_success() {
        return copy_body(&client, response);
    }
    Err(refusal(&args.name, response))
}

/// The error for a non-2xx answer: the gateway's one-line message, or the
/// function's own status and output.
fn refusal(name: &str, mut response: Response<Body>) -> Error {
    let status = response.status();
    let from_function = response.headers().contains_key(X_SERVED_BY);
    let body = read_error_body(&mut response);
    if !from_function {
        return status_error(status, &body, Subject::Function(name));
    }
    let reason = status.canonical_reason().unwrap_or("");
    let output = body.trim_end();
    if output.is_empty() {
        Error::new(format!(
            "function {name:?} answered {} {reason}",
            status.as_u16()
        ))
    } else {
        Error::new(format!(
            "function {name:?} answered {} {reason}:\n{output}",
            status.as_u16()
        ))
    }
}
