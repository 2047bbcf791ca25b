//! tinyFaaS's HTTP shapes, for tinyFaaS users who point their scripts and
//! clients here; opt-in (`--tinyfaas`). Its management routes (`/upload`,
//! `/uploadURL`, `/list`, `/delete`, `/logs`, `/wipe`) live on the
//! gateway's own port, behind the same credentials as `/system/*`, and are
//! mapped onto our API: an upload is a build (`build::build`, tinyFaaS's
//! JSON body), a delete a removal, and so on. Its calls (`/{name}` on a
//! listener of their own, tinyFaaS's port 8000) go through the front like
//! any call.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, Request, State};
use axum::response::Response;
use axum::routing::{get, post};
use base64::Engine;
use futures_util::StreamExt;
use http::header::{ACCEPT, CONTENT_TYPE, HOST, HeaderValue};
use http::{StatusCode, Uri};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;

use crate::app::AppState;
use crate::build::BuildQuery;
use crate::provider::LogQuery;
use crate::queue::callback::Resolver;
use crate::reply::text;

/// tinyFaaS's management paths (the API's, not calls, with `--tinyfaas`).
pub const PATHS: [&str; 6] = [
    "/upload",
    "/uploadURL",
    "/list",
    "/delete",
    "/logs",
    "/wipe",
];

pub fn is_management_path(path: &str) -> bool {
    PATHS.contains(&path)
}

/// The management routes, behind the credentials `/system/*` takes.
pub fn routes(state: Arc<AppState>) -> Router<Arc<AppState>> {
    Router::new()
        .route("/upload", post(upload))
        .route("/uploadURL", post(upload_url))
        .route("/list", get(list))
        .route("/delete", post(delete))
        .route("/logs", get(logs))
        .route("/wipe", post(wipe))
        .route_layer(axum::middleware::from_fn_with_state(
            state.credentials.clone(),
            crate::auth::require,
        ))
}

/// `POST /upload`: tinyFaaS's body (`name`, `env`, `threads`, base64
/// `zip`, `envs`), whatever content type curl's `--data` gave it, built
/// and deployed through the build service. Answers where the function is
/// reachable, a line per protocol, as tinyFaaS does.
async fn upload(State(state): State<Arc<AppState>>, mut request: Request) -> Response {
    let host = host_of(&request);
    let headers = request.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.remove(ACCEPT);
    let answer = crate::build::build(
        State(state.clone()),
        Query(BuildQuery::deploying()),
        request,
    )
    .await;
    deployed(&state, answer, &host).await
}

/// A build's answer, turned into tinyFaaS's: the function's addresses.
async fn deployed(state: &AppState, answer: Response, host: &str) -> Response {
    if !answer.status().is_success() {
        return answer;
    }
    let body = answer
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let result: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let Some(name) = result["function"].as_str() else {
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format_args!(
                "the build's answer names no function: {}",
                String::from_utf8_lossy(&body)
            ),
        );
    };
    let ports = state.ports.get().cloned().unwrap_or_default();
    let mut lines = String::new();
    if let Some(port) = ports.tinyfaas {
        lines.push_str(&format!("http://{host}:{port}/{name}\n"));
    }
    if let Some(port) = ports.coap {
        lines.push_str(&format!("coap://{host}:{port}/{name}\n"));
    }
    if let Some(port) = ports.grpc {
        lines.push_str(&format!("grpc://{host}:{port}/{name}\n"));
    }
    plain(StatusCode::OK, Body::from(lines))
}

/// A plain-text answer of several lines (tinyFaaS's shapes).
fn plain(status: StatusCode, body: Body) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// The host the caller reached us by (for the addresses an upload answers).
fn host_of(request: &Request) -> String {
    request
        .headers()
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.parse::<http::uri::Authority>().ok())
        .map_or_else(|| "localhost".to_owned(), |a| a.host().to_owned())
}

#[derive(Deserialize)]
struct UrlUpload {
    name: String,
    env: String,
    #[serde(default)]
    threads: Option<u64>,
    url: String,
    #[serde(default)]
    subfolder_path: String,
    #[serde(default)]
    envs: serde_json::Value,
}

/// `POST /uploadURL`: the zip fetched from `url` (plain `http://`, to the
/// addresses callbacks may reach: public ones unless `--callback-allow`
/// says more; at most `max_build_context`), the `subfolder_path` inside it
/// taken as the function's folder, then built as `/upload` builds.
async fn upload_url(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let host = host_of(&request);
    let limits = state.body_limits(state.config.max_api_body, "max_api_body");
    let body = match crate::body::read(request.into_body(), limits).await {
        Ok(body) => body,
        Err(answer) => return answer,
    };
    let asked: UrlUpload = match serde_json::from_slice(&body.bytes) {
        Ok(asked) => asked,
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                format_args!(
                    "malformed JSON ({{\"name\", \"env\", \"threads\", \"url\", \"subfolder_path\"}}): {e}"
                ),
            );
        }
    };
    let zip = match fetch(&state, &asked.url).await {
        Ok(zip) => zip,
        Err(answer) => return answer,
    };
    let max = state.config.max_build_context.saturating_mul(4);
    let subfolder = asked.subfolder_path.clone();
    let zip = match tokio::task::spawn_blocking(move || subfolder_of(&zip, &subfolder, max)).await {
        Ok(Ok(zip)) => zip,
        Ok(Err(message)) => return text(StatusCode::BAD_REQUEST, message),
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, e),
    };
    let mut upload = serde_json::json!({
        "name": asked.name,
        "env": asked.env,
        "threads": asked.threads.unwrap_or(1),
        "zip": base64::engine::general_purpose::STANDARD.encode(zip),
    });
    if !asked.envs.is_null() {
        upload["envs"] = asked.envs;
    }
    let mut build = Request::new(Body::from(upload.to_string()));
    *build.method_mut() = http::Method::POST;
    build
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let answer =
        crate::build::build(State(state.clone()), Query(BuildQuery::deploying()), build).await;
    deployed(&state, answer, &host).await
}

/// The zip at `url`, within the callback policy and `max_build_context`.
// The error is the answer itself, built only on the error path.
#[allow(clippy::result_large_err)]
async fn fetch(state: &AppState, url: &str) -> Result<Bytes, Response> {
    let refuse = |message: String| text(StatusCode::BAD_REQUEST, message);
    let uri: Uri = url
        .parse()
        .map_err(|_| refuse(format!("url {url:?} is not a URL")))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(refuse(format!(
                "url {url:?} is https: the gateway fetches plain http only; download the zip and use /upload"
            )));
        }
        _ => {
            return Err(refuse(format!(
                "url {url:?} is not an absolute http:// URL"
            )));
        }
    }
    let policy = state.queue.callbacks.clone();
    let host = uri
        .host()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']');
    if let Ok(ip) = host.parse::<std::net::IpAddr>()
        && !policy.allows_ip(ip)
    {
        return Err(refuse(format!(
            "url {url:?} points at {ip}, which the gateway may not reach: public addresses only unless the operator allows more (--callback-allow)"
        )));
    }
    let mut connector = HttpConnector::new_with_resolver(Resolver::new(policy));
    connector.set_connect_timeout(Some(Duration::from_secs(10)));
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    let unreachable = |e: String| text(StatusCode::BAD_GATEWAY, format!("cannot fetch {url}: {e}"));
    let response = tokio::time::timeout(state.config.body_timeout, client.get(uri))
        .await
        .map_err(|_| {
            unreachable(format!(
                "no answer within body_timeout ({:?})",
                state.config.body_timeout
            ))
        })?
        .map_err(|e| unreachable(faas_common::message::error_chain(&e)))?;
    if !response.status().is_success() {
        return Err(unreachable(format!("it answered {}", response.status())));
    }
    let max = state.config.max_build_context;
    let limited = http_body_util::Limited::new(response.into_body(), max as usize);
    match tokio::time::timeout(state.config.body_timeout, limited.collect()).await {
        Ok(Ok(body)) => Ok(body.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("{url} is larger than max_build_context ({max} bytes)"),
        )),
        Ok(Err(e)) => Err(unreachable(e.to_string())),
        Err(_) => Err(unreachable(format!(
            "not fetched within body_timeout ({:?})",
            state.config.body_timeout
        ))),
    }
}

/// A zip of the files under `subfolder` in `zip` (all of it when empty),
/// with the folder's prefix taken off; at most `max` bytes unpacked.
fn subfolder_of(zip: &[u8], subfolder: &str, max: u64) -> Result<Vec<u8>, String> {
    let prefix = subfolder.trim_matches('/');
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip))
        .map_err(|e| format!("the fetched file is not a zip archive: {e}"))?;
    let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default();
    let mut total = 0u64;
    let mut kept = 0usize;
    for i in 0..archive.len() {
        let mut entry = archive
            .by_index(i)
            .map_err(|e| format!("a broken zip entry: {e}"))?;
        if entry.is_dir() {
            continue;
        }
        let name = entry.name().to_owned();
        let inner = if prefix.is_empty() {
            name.as_str()
        } else {
            match name
                .strip_prefix(prefix)
                .and_then(|rest| rest.strip_prefix('/'))
            {
                Some(rest) => rest,
                None => continue,
            }
        };
        // Counted as read (an entry's stated size may lie).
        let mut bytes = Vec::new();
        (&mut entry)
            .take(max - total + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("cannot read {name} in the zip: {e}"))?;
        total += bytes.len() as u64;
        if total > max {
            return Err(format!(
                "the zip unpacks to more than {max} bytes (4 x max_build_context)"
            ));
        }
        out.start_file(inner, options).map_err(|e| e.to_string())?;
        out.write_all(&bytes).map_err(|e| e.to_string())?;
        kept += 1;
    }
    if kept == 0 {
        return Err(format!(
            "no files under subfolder_path {subfolder:?} in the zip"
        ));
    }
    out.finish()
        .map(|c| c.into_inner())
        .map_err(|e| e.to_string())
}

/// `GET /list`: the functions' names, a line each.
async fn list(State(state): State<Arc<AppState>>) -> Response {
    match state.provider.list().await {
        Ok(functions) => {
            let mut names: Vec<String> = functions.into_iter().map(|f| f.name).collect();
            names.sort();
            let mut lines = names.join("\n");
            if !lines.is_empty() {
                lines.push('\n');
            }
            plain(StatusCode::OK, Body::from(lines))
        }
        Err(e) => text(e.status(), e),
    }
}

/// `POST /delete`: the body is the name (tinyFaaS's script sends it bare;
/// its server has also taken `{"name": …}`: both work).
async fn delete(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let limits = state.body_limits(state.config.max_api_body, "max_api_body");
    let body = match crate::body::read(request.into_body(), limits).await {
        Ok(body) => body,
        Err(answer) => return answer,
    };
    let raw = String::from_utf8_lossy(&body.bytes).trim().to_owned();
    let name = serde_json::from_str::<serde_json::Value>(&raw)
        .ok()
        .and_then(|v| v["name"].as_str().map(str::to_owned))
        .unwrap_or(raw);
    if !faas_common::is_valid_function_name(&name) {
        return text(
            StatusCode::BAD_REQUEST,
            format_args!("send the function's name to delete (got {name:?})"),
        );
    }
    match state.provider.remove(&name).await {
        Ok(()) => text(StatusCode::OK, format_args!("deleted {name}")),
        Err(e) => text(e.status(), e),
    }
}

#[derive(Deserialize)]
struct LogsParams {
    name: Option<String>,
}

/// `GET /logs[?name=…]`: the functions' recent output as text, `name
/// instance: line` (at most `log_lines` lines a function).
async fn logs(State(state): State<Arc<AppState>>, Query(params): Query<LogsParams>) -> Response {
    let names = match params.name.filter(|n| !n.is_empty()) {
        Some(name) => vec![name],
        None => match state.provider.list().await {
            Ok(functions) => functions.into_iter().map(|f| f.name).collect(),
            Err(e) => return text(e.status(), e),
        },
    };
    // One function's log is asked for first (so an unknown name is a 404),
    // the rest as the answer streams: nothing is gathered in memory.
    let tail = state.config.log_lines;
    let query = move |name: String| LogQuery {
        name,
        tail: Some(tail),
        since: None,
        follow: false,
    };
    let mut names = names.into_iter();
    let first = match names.next() {
        Some(name) => match state.provider.logs(query(name)).await {
            Ok(entries) => Some(entries),
            Err(e) => return text(e.status(), e),
        },
        None => None,
    };
    let provider = state.provider.clone();
    let rest = futures_util::stream::iter(names)
        .then(move |name| {
            let provider = provider.clone();
            async move { provider.logs(query(name)).await.ok() }
        })
        .filter_map(std::future::ready);
    let lines = futures_util::stream::iter(first)
        .chain(rest)
        .flatten()
        .map(|entry| {
            Ok::<_, std::convert::Infallible>(Bytes::from(format!(
                "{} {}: {}\n",
                entry.name,
                entry.instance,
                entry.text.trim_end()
            )))
        });
    plain(StatusCode::OK, Body::from_stream(lines))
}

/// `POST /wipe`: removes every function the gateway may remove; says, a
/// line each, what went and what stayed (and why).
async fn wipe(State(state): State<Arc<AppState>>) -> Response {
    let functions = match state.provider.list().await {
        Ok(functions) => functions,
        Err(e) => return text(e.status(), e),
    };
    let mut lines = String::new();
    let mut kept = false;
    for function in functions {
        match state.provider.remove(&function.name).await {
            Ok(()) => lines.push_str(&format!("deleted {}\n", function.name)),
            Err(e) => {
                kept = true;
                lines.push_str(&format!(
                    "kept {}: {}\n",
                    function.name,
                    faas_common::message::one_line(&e.to_string())
                ));
            }
        }
    }
    let status = if kept {
        StatusCode::CONFLICT
    } else {
        StatusCode::OK
    };
    plain(status, Body::from(lines))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zip_of(files: &[(&str, &str)]) -> Vec<u8> {
        let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for (name, body) in files {
            out.start_file(*name, zip::write::SimpleFileOptions::default())
                .unwrap();
            out.write_all(body.as_bytes()).unwrap();
        }
        out.finish().unwrap().into_inner()
    }

    fn names(zip: &[u8]) -> Vec<String> {
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip)).unwrap();
        (0..archive.len())
            .map(|i| archive.by_index(i).unwrap().name().to_owned())
            .collect()
    }

    #[test]
    fn a_subfolder_of_a_zip_becomes_the_functions_folder() {
        let zip = zip_of(&[
            ("repo-main/README.md", "x"),
            ("repo-main/fns/sieve/fn.py", "def fn(i, h): return i"),
            ("repo-main/fns/sieve/requirements.txt", ""),
            ("repo-main/fns/other/fn.py", ""),
        ]);
        let inner = subfolder_of(&zip, "repo-main/fns/sieve/", 1 << 20).unwrap();
        assert_eq!(names(&inner), ["fn.py", "requirements.txt"]);
        assert_eq!(names(&subfolder_of(&zip, "", 1 << 20).unwrap()).len(), 4);
        assert!(
            subfolder_of(&zip, "repo-main/none", 1 << 20)
                .unwrap_err()
                .contains("no files")
        );
        assert!(
            subfolder_of(&zip, "", 3)
                .unwrap_err()
                .contains("more than 3 bytes")
        );
        assert!(
            subfolder_of(b"not a zip", "", 10)
                .unwrap_err()
                .contains("not a zip")
        );
    }
}
