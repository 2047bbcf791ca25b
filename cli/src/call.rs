//! Sending a function call, what `faas invoke` (sync) and `--async` /
//! `invoke-bulk` (queued) share: the call's arguments, the request built
//! from them, credentials sent only when the gateway asks, and the answer
//! streamed to stdout.

use std::io::{Read, Write};
use std::time::Duration;

use clap::Args;
use ureq::Body;
use ureq::http::{HeaderName, HeaderValue, Method, Request, Response, header};

use crate::client::{Client, Wait, query_string, transport_error};
use crate::error::{Error, Result};

/// A call may legitimately take long; the gateway's own upstream timeout
/// (60s by default) answers 504 well before this.
pub const INVOKE_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, Args)]
pub struct InvokeArgs {
    /// The function
    pub name: String,

    /// A request header (repeatable)
    #[arg(short = 'H', long = "header", value_name = "KEY=VALUE", value_parser = key_value)]
    pub headers: Vec<(String, String)>,

    /// The HTTP method (--async calls are always POST)
    #[arg(short, long, default_value = "POST", value_parser = method)]
    pub method: Method,

    /// A query string parameter (repeatable), URL-encoded for you
    #[arg(long = "query", value_name = "KEY=VALUE", value_parser = key_value)]
    pub query: Vec<(String, String)>,

    /// A parameter (repeatable), sent as one JSON object instead of
    /// stdin, as FaaSpot does: -p name=user1 -p n=3 sends
    /// {"name":"user1","n":3} (a value that reads as JSON stays JSON)
    #[arg(short = 'p', long = "param", value_name = "KEY=VALUE", value_parser = key_value)]
    pub params: Vec<(String, String)>,

    /// The request's Content-Type (a -H Content-Type=… wins) [default:
    /// text/plain; application/json with -p]
    #[arg(long, value_name = "TYPE")]
    pub content_type: Option<String>,

    /// Queue the call and print its execution id instead of waiting for
    /// the answer
    #[arg(long = "async")]
    pub async_call: bool,

    /// With --async: the gateway POSTs the function's answer to this URL
    /// when the call finishes (X-Callback-Url)
    #[arg(long, value_name = "URL", requires = "async_call")]
    pub callback: Option<String>,

    /// With --async: wait for the call to finish (see --timeout), then
    /// print its output; exit 1 when it failed
    #[arg(long, requires = "async_call")]
    pub wait: bool,
}

impl InvokeArgs {
    /// The Content-Type asked for, else the one that fits the body.
    pub fn content_type(&self) -> &str {
        match &self.content_type {
            Some(given) => given,
            None if self.params.is_empty() => "text/plain",
            None => "application/json",
        }
    }

    /// The `-p` parameters as a JSON object, or `None` without any.
    pub fn params_body(&self) -> Result<Option<Vec<u8>>> {
        params_json(&self.params)
    }

    /// The query string, encoded (with its `?`), or nothing.
    pub fn query_string(&self) -> String {
        query_string(self.query.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }
}

/// On the gateway's own 401 only (it removes the header from functions'
/// answers).
const GATEWAY_AUTH_HEADER: &str = "x-faas-auth";

/// Sends a function call (sync, async or bulk), with credentials only
/// where the gateway itself asks for them (`auth_invoke`: its 401 carries
/// `X-Faas-Auth`, which no function's answer can): otherwise the function
/// would receive the admin password. `request` builds the request around
/// a body, twice when the gateway asks for credentials.
pub fn send_call(
    client: &Client,
    request: impl Fn(Vec<u8>) -> Result<Request<Vec<u8>>>,
    mut body: Vec<u8>,
) -> Result<Response<Body>> {
    // Keep a copy for the retry only when there can be one.
    let first = if client.has_credentials() {
        body.clone()
    } else {
        std::mem::take(&mut body)
    };
    let response = client.exchange(request(first)?, false, Wait::Headers)?;
    if response.status() == 401
        && response.headers().contains_key(GATEWAY_AUTH_HEADER)
        && client.has_credentials()
    {
        return client.exchange(request(body)?, true, Wait::Headers);
    }
    Ok(response)
}

/// The request for a call with `args`' method, headers and content type,
/// plus `extra` headers, to `path`.
pub fn call_request(
    client: &Client,
    args: &InvokeArgs,
    path: &str,
    extra: &[(HeaderName, HeaderValue)],
    body: Vec<u8>,
) -> Result<Request<Vec<u8>>> {
    let mut builder = client.request(args.method.clone(), path);
    let has_content_type = args
        .headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
    if !has_content_type {
        builder = builder.header(header::CONTENT_TYPE, content_value(args.content_type())?);
    }
    for (key, value) in &args.headers {
        let name = HeaderName::from_bytes(key.as_bytes())
            .map_err(|_| Error::new(format!("-H {key}=…: not a valid header name")))?;
        builder = builder.header(name, content_value(value)?);
    }
    for (name, value) in extra {
        builder = builder.header(name, value);
    }
    builder
        .body(body)
        .map_err(|e| Error::new(format!("cannot build the request: {e}")))
}

pub fn content_value(value: &str) -> Result<HeaderValue> {
    HeaderValue::from_str(value)
        .map_err(|_| Error::new(format!("{value:?} is not a valid header value")))
}

/// Streams the answer to stdout, telling a cut-short answer from a closed
/// stdout.
pub fn copy_body(client: &Client, response: Response<Body>) -> Result<()> {
    let mut reader = response.into_body().into_reader();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let _ = out.flush();
                let why = transport_error(ureq::Error::from(e), client.gateway(), client.timeout());
                return Err(Error::new(format!("the answer was cut short: {why}")));
            }
        };
        out.write_all(&buf[..n]).map_err(Error::stdout)?;
    }
    out.flush().map_err(Error::stdout)
}

/// `-p` parameters as one JSON object: a value that parses as JSON (a
/// number, `true`, `null`, `[1,2]`, `"quoted"`) is kept as such, any other
/// is a string. A key given twice is an error, not a silent overwrite.
fn params_json(params: &[(String, String)]) -> Result<Option<Vec<u8>>> {
    if params.is_empty() {
        return Ok(None);
    }
    let mut object = serde_json::Map::new();
    for (key, value) in params {
        let value = serde_json::from_str::<serde_json::Value>(value)
            .unwrap_or_else(|_| serde_json::Value::String(value.clone()));
        if object.insert(key.clone(), value).is_some() {
            return Err(Error::new(format!("-p {key}=…: given twice")));
        }
    }
    let body = serde_json::to_vec(&serde_json::Value::Object(object))
        .map_err(|e| Error::new(format!("cannot encode the parameters: {e}")))?;
    Ok(Some(body))
}

/// `KEY=VALUE` (also `KEY: VALUE`, as curl writes headers).
pub fn key_value(arg: &str) -> std::result::Result<(String, String), String> {
    let at = arg
        .find(['=', ':'])
        .ok_or_else(|| format!("expected KEY=VALUE, got {arg:?}"))?;
    let key = arg[..at].trim();
    if key.is_empty() {
        return Err(format!("expected KEY=VALUE, got {arg:?}"));
    }
    Ok((key.to_string(), arg[at + 1..].trim_start().to_string()))
}

fn method(arg: &str) -> std::result::Result<Method, String> {
    Method::from_bytes(arg.to_ascii_uppercase().as_bytes())
        .map_err(|_| format!("{arg:?} is not an HTTP method"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_split_at_the_first_separator() {
        assert_eq!(key_value("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert_eq!(key_value("X-Trace: 1"), Ok(("X-Trace".into(), "1".into())));
        assert_eq!(key_value("empty="), Ok(("empty".into(), String::new())));
        assert_eq!(key_value("X: a=b"), Ok(("X".into(), "a=b".into())));
        assert!(key_value("novalue").is_err());
        assert!(key_value("=v").is_err());
    }

    #[test]
    fn parameters_become_one_json_object_keeping_json_values() {
        let params = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<Vec<_>>()
        };
        assert_eq!(params_json(&[]).unwrap(), None);
        let body = params_json(&params(&[
            ("name", "user1"),
            ("n", "3"),
            ("on", "true"),
            ("list", "[1, 2]"),
            ("quoted", "\"7\""),
            ("text", "hello world"),
        ]))
        .unwrap()
        .unwrap();
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"name": "user1", "n": 3, "on": true, "list": [1, 2], "quoted": "7", "text": "hello world"})
        );
        let twice = params_json(&params(&[("n", "1"), ("n", "2")])).unwrap_err();
        assert!(twice.to_string().contains("-p n=…: given twice"), "{twice}");
    }

    #[test]
    fn methods_are_case_insensitive() {
        assert_eq!(method("get"), Ok(Method::GET));
        assert_eq!(method("PROPFIND").unwrap().as_str(), "PROPFIND");
        assert!(method("BAD METHOD").is_err());
    }
}
