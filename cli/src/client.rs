//! Talking to the gateway: one blocking HTTP agent (plain HTTP, no TLS, to
//! keep the binary small), basic auth, and the mapping from transport
//! failures and HTTP statuses to one sentence a user can act on.

use std::io::Read;
use std::time::Duration;

use base64::Engine;
use serde::Serialize;
use serde::de::DeserializeOwned;
use ureq::http::{self, HeaderValue, Method, Request, Response, StatusCode};
use ureq::{Agent, Body};

use crate::config::Credentials;
use crate::error::{Error, Result, io_reason};
use crate::output::duration_text;

/// Where the gateway is when nothing says otherwise.
pub const DEFAULT_GATEWAY: &str = "http://127.0.0.1:8080";
/// How long a management call may take when `--timeout` is not given.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Connecting is quick or it is not going to happen.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The most of an error body worth reading: it is meant to be one line.
const ERROR_BODY_LIMIT: u64 = 64 * 1024;
/// The most of a JSON answer we accept (thousands of functions fit).
const JSON_LIMIT: u64 = 64 * 1024 * 1024;

/// What a request is about, so a 404 can name it.
#[derive(Debug, Clone, Copy)]
pub enum Subject<'a> {
    Gateway,
    Function(&'a str),
    Secret(&'a str),
    Execution(&'a str),
}

/// How long a request may take.
#[derive(Debug, Clone, Copy)]
pub enum Wait {
    /// The whole exchange, body included (management calls).
    Whole,
    /// Only until the response headers; the body may stream for ever
    /// (function calls, `logs --follow`).
    Headers,
}

/// A gateway and the credentials to use on it.
pub struct Client {
    agent: Agent,
    gateway: String,
    authorization: Option<HeaderValue>,
    timeout: Duration,
}

impl Client {
    pub fn new(gateway: String, credentials: Option<&Credentials>, timeout: Duration) -> Client {
        let agent: Agent = Agent::config_builder()
            // Statuses are answers, mapped below with their bodies.
            .http_status_as_error(false)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            // `faas invoke --method PROPFIND` is the function's business.
            .allow_non_standard_methods(true)
            .user_agent(format!("faas/{}", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        let authorization = credentials.and_then(|c| {
            let token = base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", c.username, c.password));
            HeaderValue::from_str(&format!("Basic {token}")).ok()
        });
        Client {
            agent,
            gateway,
            authorization,
            timeout,
        }
    }

    /// The gateway's base URL, without a trailing slash.
    pub fn gateway(&self) -> &str {
        &self.gateway
    }

    pub fn has_credentials(&self) -> bool {
        self.authorization.is_some()
    }

    /// The `Authorization` value management calls carry, if any.
    pub fn authorization(&self) -> Option<&HeaderValue> {
        self.authorization.as_ref()
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sends a request and returns whatever the gateway answered; only
    /// transport failures are errors. Credentials go along only when
    /// `authenticate` says so.
    pub fn exchange(
        &self,
        mut request: Request<Vec<u8>>,
        authenticate: bool,
        wait: Wait,
    ) -> Result<Response<Body>> {
        if authenticate && let Some(value) = &self.authorization {
            request
                .headers_mut()
                .insert(http::header::AUTHORIZATION, value.clone());
        }
        let config = self.agent.configure_request(request);
        let request = match wait {
            Wait::Whole => config.timeout_global(Some(self.timeout)),
            Wait::Headers => config
                .timeout_global(None)
                .timeout_recv_response(Some(self.timeout)),
        }
        .build();
        self.agent
            .run(request)
            .map_err(|e| transport_error(e, &self.gateway, self.timeout))
    }

    /// Builds a request to `path` on the gateway; `path` starts with `/`
    /// and carries its query string, already encoded.
    pub fn request(&self, method: Method, path: &str) -> http::request::Builder {
        Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.gateway))
    }

    /// A management call, authenticated; only transport failures are
    /// errors, so a caller can act on particular statuses.
    pub fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Response<Body>> {
        let mut builder = self.request(method, path);
        if body.is_some() {
            builder = builder.header(http::header::CONTENT_TYPE, "application/json");
        }
        let request = builder
            .body(body.unwrap_or_default())
            .map_err(|e| Error::new(format!("cannot build a request for {path}: {e}")))?;
        self.exchange(request, true, Wait::Whole)
    }

    /// A management call with every non-2xx answer turned into its error.
    fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        subject: Subject,
    ) -> Result<Response<Body>> {
        check(self.send(method, path, body)?, subject)
    }

    /// `GET path` and decode its JSON answer.
    pub fn get_json<T: DeserializeOwned>(&self, path: &str, subject: Subject) -> Result<T> {
        let response = self.call(Method::GET, path, None, subject)?;
        self.read_json(response, "GET", path)
    }

    /// `POST body` as JSON to `path` and decode its JSON answer.
    pub fn post_json<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        subject: Subject,
    ) -> Result<T> {
        let response = self.call(Method::POST, path, Some(to_json(body)?), subject)?;
        self.read_json(response, "POST", path)
    }

    /// Decodes a (checked) JSON answer to `method path`.
    pub fn read_json<T: DeserializeOwned>(
        &self,
        mut response: Response<Body>,
        method: &str,
        path: &str,
    ) -> Result<T> {
        let bytes = response
            .body_mut()
            .with_config()
            .limit(JSON_LIMIT)
            .read_to_vec()
            .map_err(|e| transport_error(e, &self.gateway, self.timeout))?;
        serde_json::from_slice(&bytes).map_err(|e| {
            Error::new(format!(
                "the gateway at {} sent an answer to {method} {path} that faas does not understand: {e}",
                self.gateway
            ))
        })
    }

    /// Sends `body` as JSON; returns the gateway's (text) answer.
    pub fn send_json<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: &B,
        subject: Subject,
    ) -> Result<String> {
        let mut response = self.call(method, path, Some(to_json(body)?), subject)?;
        Ok(read_error_body(&mut response))
    }

    /// `GET path`, checked, with a body that may stream for ever.
    pub fn get_stream(&self, path: &str, subject: Subject) -> Result<Response<Body>> {
        let request = self
            .request(Method::GET, path)
            .body(Vec::new())
            .map_err(|e| Error::new(format!("cannot build a request for {path}: {e}")))?;
        let response = self.exchange(request, true, Wait::Headers)?;
        check(response, subject)
    }
}

/// A request body as JSON.
pub fn to_json<B: Serialize>(body: &B) -> Result<Vec<u8>> {
    serde_json::to_vec(body).map_err(|e| Error::new(format!("cannot encode the request: {e}")))
}

/// Turns a non-2xx answer into the error it means; passes 2xx through.
pub fn check(mut response: Response<Body>, subject: Subject) -> Result<Response<Body>> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body = read_error_body(&mut response);
    Err(status_error(status, &body, subject))
}

/// At most [`ERROR_BODY_LIMIT`] of a body, as text; empty when unreadable.
pub fn read_error_body(response: &mut Response<Body>) -> String {
    let mut bytes = Vec::new();
    let _ = response
        .body_mut()
        .as_reader()
        .take(ERROR_BODY_LIMIT)
        .read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The sentence for a gateway's refusal: our own for the statuses a user
/// acts on the same way every time, else the gateway's one-line message.
pub fn status_error(status: StatusCode, body: &str, subject: Subject) -> Error {
    match (status, subject) {
        (StatusCode::UNAUTHORIZED, _) => {
            Error::new("authentication failed; run faas login".to_string())
        }
        (StatusCode::NOT_FOUND, Subject::Function(name)) => {
            Error::new(format!("function {name:?} not found"))
        }
        (StatusCode::NOT_FOUND, Subject::Secret(name)) => {
            Error::new(format!("secret {name:?} not found"))
        }
        (StatusCode::NOT_FOUND, Subject::Execution(id)) => {
            Error::new(format!("execution {id:?} not found"))
        }
        _ => Error::new(gateway_message(status, body)),
    }
}

/// The gateway's own message (its first non-empty line), or the status
/// when it sent none.
pub fn gateway_message(status: StatusCode, body: &str) -> String {
    match body.lines().map(str::trim).find(|l| !l.is_empty()) {
        Some(line) => line.to_string(),
        None => format!(
            "the gateway answered {} {}",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        )
        .trim_end()
        .to_string(),
    }
}

/// The sentence for a request that got no answer.
pub fn transport_error(e: ureq::Error, gateway: &str, timeout: Duration) -> Error {
    let reason = match e {
        ureq::Error::Timeout(_) => {
            return Error::new(format!(
                "the gateway at {gateway} did not answer within {} (see --timeout)",
                duration_text(timeout)
            ));
        }
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => {
            return Error::new(format!(
                "the gateway at {gateway} did not answer within {} (see --timeout)",
                duration_text(timeout)
            ));
        }
        ureq::Error::Io(io) => io_reason(&io),
        ureq::Error::HostNotFound => "host not found".to_string(),
        ureq::Error::ConnectionFailed => "connection failed".to_string(),
        ureq::Error::BadUri(uri) => format!("invalid URL {uri}"),
        ureq::Error::Protocol(p) => format!("it does not speak HTTP/1.1 ({p})"),
        ureq::Error::BodyExceedsLimit(_) => {
            return Error::new(format!("the gateway at {gateway} sent too large an answer"));
        }
        other => other.to_string(),
    };
    Error::Unreachable(format!("cannot reach the gateway at {gateway}: {reason}"))
}

/// Checks and normalises a gateway URL: `http://` added when no scheme is
/// given, trailing slashes dropped (they are the same gateway, and stored
/// logins are keyed by it).
pub fn normalize_gateway(raw: &str) -> Result<String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err(Error::new("the gateway URL is empty"));
    }
    let url = if raw.contains("://") {
        raw.to_string()
    } else {
        format!("http://{raw}")
    };
    if url.starts_with("https://") {
        return Err(Error::new(format!(
            "{url}: this faas is built without TLS; use http:// (or a local TLS-terminating proxy)"
        )));
    }
    let Some(rest) = url.strip_prefix("http://") else {
        return Err(Error::new(format!(
            "{url}: not an http:// URL (expected something like {DEFAULT_GATEWAY})"
        )));
    };
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() || rest.contains(['?', '#', ' ']) {
        return Err(Error::new(format!(
            "{raw}: not a gateway URL (expected something like {DEFAULT_GATEWAY})"
        )));
    }
    let normalized = format!("http://{rest}");
    normalized
        .parse::<http::Uri>()
        .map_err(|e| Error::new(format!("{raw}: not a valid URL: {e}")))?;
    Ok(normalized)
}

/// Refuses a name that could not be a function before it reaches a URL.
pub fn check_function_name(name: &str) -> Result<()> {
    if faas_common::is_valid_function_name(name) {
        Ok(())
    } else {
        Err(Error::new(format!(
            "invalid function name {name:?}: use letters, digits, '_', '.' and '-'"
        )))
    }
}

/// Percent-encodes a query component (everything but RFC 3986's unreserved
/// characters).
pub fn encode_component(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `?k=v&…` from pairs, or nothing when there are none.
pub fn query_string<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let encoded: Vec<String> = pairs
        .into_iter()
        .map(|(k, v)| format!("{}={}", encode_component(k), encode_component(v)))
        .collect();
    if encoded.is_empty() {
        String::new()
    } else {
        format!("?{}", encoded.join("&"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_urls_are_normalised() {
        for (raw, want) in [
            ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
            ("http://127.0.0.1:8080/", "http://127.0.0.1:8080"),
            ("http://gw:8080//", "http://gw:8080"),
            ("127.0.0.1:8080", "http://127.0.0.1:8080"),
            (" http://gw/prefix/ ", "http://gw/prefix"),
        ] {
            assert_eq!(normalize_gateway(raw).unwrap(), want, "{raw}");
        }
    }

    #[test]
    fn unusable_gateway_urls_are_refused_with_a_reason() {
        let tls = normalize_gateway("https://gw").unwrap_err().to_string();
        assert!(tls.contains("TLS"), "{tls}");
        let ftp = normalize_gateway("ftp://gw").unwrap_err().to_string();
        assert!(ftp.contains("not an http:// URL"), "{ftp}");
        assert!(normalize_gateway("").is_err());
        assert!(normalize_gateway("http://").is_err());
        assert!(normalize_gateway("http://gw?x=1").is_err());
    }

    #[test]
    fn statuses_map_to_sentences() {
        let gone = status_error(StatusCode::NOT_FOUND, "whatever", Subject::Function("x"));
        assert_eq!(gone.to_string(), "function \"x\" not found");
        let secret = status_error(StatusCode::NOT_FOUND, "", Subject::Secret("k"));
        assert_eq!(secret.to_string(), "secret \"k\" not found");
        let call = status_error(StatusCode::NOT_FOUND, "", Subject::Execution("c0ffee"));
        assert_eq!(call.to_string(), "execution \"c0ffee\" not found");
        let auth = status_error(StatusCode::UNAUTHORIZED, "no", Subject::Gateway);
        assert_eq!(auth.to_string(), "authentication failed; run faas login");
        let own = status_error(
            StatusCode::BAD_REQUEST,
            "\n  image is required\n",
            Subject::Function("x"),
        );
        assert_eq!(own.to_string(), "image is required");
        let bare = status_error(StatusCode::BAD_GATEWAY, "", Subject::Gateway);
        assert_eq!(bare.to_string(), "the gateway answered 502 Bad Gateway");
    }

    #[test]
    fn refused_connections_name_the_gateway() {
        let e = ureq::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(
            transport_error(e, "http://127.0.0.1:1", DEFAULT_TIMEOUT).to_string(),
            "cannot reach the gateway at http://127.0.0.1:1: connection refused"
        );
        let slow = transport_error(
            ureq::Error::Timeout(ureq::Timeout::Global),
            "http://gw",
            Duration::from_secs(5),
        );
        assert!(slow.to_string().contains("within 5s"), "{slow}");
    }

    #[test]
    fn query_components_are_encoded() {
        assert_eq!(encode_component("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
        assert_eq!(
            query_string([("name", "cat"), ("since", "2026-01-01T00:00:00+01:00")]),
            "?name=cat&since=2026-01-01T00%3A00%3A00%2B01%3A00"
        );
        assert_eq!(query_string([]), "");
    }

    #[test]
    fn function_names_are_checked_before_they_reach_a_url() {
        assert!(check_function_name("cat.service-1_x").is_ok());
        assert!(check_function_name("../system").is_err());
        assert!(check_function_name("a b").is_err());
    }
}
