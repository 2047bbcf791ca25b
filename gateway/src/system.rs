//! The management API, `/system/*`, in OpenFaaS's shapes: list, inspect,
//! deploy, update, remove and scale functions, read their logs, manage
//! secrets, describe the gateway. Handlers check what the caller sent and
//! hand the rest to the [`Provider`](crate::provider::Provider); every
//! error is a one-line text answer with the status that fits.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use base64::Engine;
use faas_common::api::{
    DeleteFunction, Deployment, FunctionStatus, ProviderInfo, Secret, SystemInfo, VersionInfo,
};
use futures_util::StreamExt;
use http::StatusCode;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::app::AppState;
use crate::provider::{
    LogQuery, ProviderError, min_replicas, reserved_label, validate_secret_name,
};
use faas_common::message::one_line;

use crate::reply::text;

/// The `/system/*` routes, behind basic auth when credentials exist.
pub fn routes(state: Arc<AppState>) -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/system/functions",
            get(list).post(deploy).put(update).delete(remove),
        )
        .route("/system/function/{name}", get(describe))
        .route("/system/scale-function/{name}", post(scale))
        .route("/system/info", get(info))
        .route("/system/alert", post(alert))
        .route("/system/logs", get(logs))
        .route("/system/builds", post(crate::build::build))
        .route(
            "/system/secrets",
            get(secrets)
                .post(create_secret)
                .put(update_secret)
                .delete(remove_secret),
        )
        .route("/system/namespaces", get(namespaces))
        .merge(crate::queue::api::system_routes())
        .route_layer(axum::middleware::from_fn(in_our_namespace))
        .route_layer(axum::middleware::from_fn_with_state(
            state.credentials.clone(),
            crate::auth::require,
        ))
}

/// `GET /system/namespaces`: the one namespace there is, as OpenFaaS
/// lists its namespaces (`faas-cli namespaces`).
async fn namespaces() -> Response {
    Json([faas_common::api::NAMESPACE]).into_response()
}

/// OpenFaaS's clients add `namespace=…` to the query of most `/system/*`
/// calls: ours (or OpenFaaS's default, or none) is the one namespace there
/// is; any other is a namespace this gateway does not have (404), never
/// silently the same functions.
async fn in_our_namespace(request: Request, next: axum::middleware::Next) -> Response {
    #[derive(Deserialize)]
    struct Namespace {
        namespace: Option<String>,
    }
    let asked = Query::<Namespace>::try_from_uri(request.uri())
        .ok()
        .and_then(|Query(q)| q.namespace);
    match asked {
        Some(ns) if !faas_common::api::is_our_namespace(&ns) => text(
            StatusCode::NOT_FOUND,
            format_args!(
                "namespace {ns:?} not found: this gateway has one, {:?} (also accepted as {:?} or left out)",
                faas_common::api::NAMESPACE,
                faas_common::api::OPENFAAS_NAMESPACE
            ),
        ),
        _ => next.run(request).await,
    }
}

/// A provider's failure as an answer: one line, the status that fits.
fn failed(e: ProviderError) -> Response {
    text(e.status(), one_line(&e.to_string()))
}

fn bad_request(message: impl std::fmt::Display) -> Response {
    text(StatusCode::BAD_REQUEST, message)
}

/// A request body, read up to `max_api_body` (then 413), counted against
/// `max_buffered` until the handler is done with it. axum's own body
/// extractors stop at a fixed 2 MiB whatever `max_api_body` says.
struct ApiBody(crate::body::Buffered);

impl FromRequest<Arc<AppState>> for ApiBody {
    type Rejection = Response;

    async fn from_request(request: Request, state: &Arc<AppState>) -> Result<Self, Response> {
        let limits = state.body_limits(state.config.max_api_body, "max_api_body");
        crate::body::read(request.into_body(), limits)
            .await
            .map(ApiBody)
    }
}

/// A JSON body, with a message naming what is wrong with it.
// The error is the answer itself, built only on the error path.
#[allow(clippy::result_large_err)]
fn parse<T: DeserializeOwned>(body: &Bytes, what: &str) -> Result<T, Response> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(bad_request(format_args!(
            "empty request body: expected {what} as JSON"
        )));
    }
    serde_json::from_slice(body)
        .map_err(|e| bad_request(format_args!("malformed JSON ({what}): {e}")))
}

/// The invocation count comes from the gateway's own counters, the
/// scaling from the autoscaler.
fn with_counts(state: &AppState, mut status: FunctionStatus) -> FunctionStatus {
    if let Some(function) = state.table.get(&status.name) {
        status.invocation_count = function.metrics.started.get();
        status.scaling = Some(state.scaler.status(&function));
    }
    status
}

async fn list(State(state): State<Arc<AppState>>) -> Response {
    match state.provider.list().await {
        Ok(functions) => {
            let mut functions: Vec<FunctionStatus> = functions
                .into_iter()
                .map(|f| with_counts(&state, f))
                .collect();
            functions.sort_by(|a, b| a.name.cmp(&b.name));
            Json(functions).into_response()
        }
        Err(e) => failed(e),
    }
}

async fn describe(State(state): State<Arc<AppState>>, Path(name): Path<String>) -> Response {
    if !faas_common::is_valid_function_name(&name) {
        return bad_request(invalid_name(&name));
    }
    match state.provider.list().await {
        Ok(functions) => match functions.into_iter().find(|f| f.name == name) {
            Some(f) => Json(with_counts(&state, f)).into_response(),
            None => failed(ProviderError::NotFound(name)),
        },
        Err(e) => failed(e),
    }
}

fn invalid_name(name: &str) -> String {
    format!("invalid function name {name:?}: use letters, digits, '_', '.' and '-'")
}

/// What every provider needs of a deployment: a valid name, readable
/// resource values, and no more replicas to start than `max_replicas`.
/// Engine-specific needs (an image, a command) are the provider's to check.
#[allow(clippy::result_large_err)]
pub fn check_deployment(d: &Deployment, max_replicas: u64) -> Result<(), Response> {
    if d.service.is_empty() {
        return Err(bad_request(
            "missing \"service\": the function's name is required",
        ));
    }
    if !faas_common::is_valid_function_name(&d.service) {
        return Err(bad_request(invalid_name(&d.service)));
    }
    if let Some(label) = reserved_label(d.labels.keys()) {
        return Err(bad_request(format_args!(
            "label {label:?} is reserved for the gateway and Docker: remove it (reserved: faas.role, faas.function, com.openfaas.function, faas.port, faas.deployed-by, faas.secret, com.docker.*)"
        )));
    }
    for (section, resources) in [("limits", &d.limits), ("requests", &d.requests)] {
        let Some(r) = resources else { continue };
        if let Some(memory) = &r.memory
            && let Err(hint) = faas_common::parse::parse_bytes(memory)
        {
            return Err(bad_request(format_args!(
                "{section}.memory {memory:?}: {hint}"
            )));
        }
        if let Some(cpu) = &r.cpu
            && let Err(hint) = faas_common::parse::parse_cpus(cpu)
        {
            return Err(bad_request(format_args!("{section}.cpu {cpu:?}: {hint}")));
        }
    }
    // A deployment must not start more replicas than a scale request may ask for.
    match min_replicas(&d.labels) {
        Err(e) => return Err(failed(e)),
        Ok(min) if min > max_replicas => {
            return Err(bad_request(format_args!(
                "faas.scale.min {min} is out of range: 0 to {max_replicas} (max_replicas)"
            )));
        }
        Ok(_) => {}
    }
    if let Err(e) = crate::scaling::policy::Settings::from_labels(
        &d.labels,
        crate::scaling::policy::Defaults {
            max_replicas,
            ..Default::default()
        },
    ) {
        return Err(bad_request(e));
    }
    if let Some(bad) = d.secrets.iter().find(|s| validate_secret_name(s).is_err()) {
        return Err(bad_request(format_args!("invalid secret name {bad:?}")));
    }
    Ok(())
}

async fn deploy(State(state): State<Arc<AppState>>, ApiBody(body): ApiBody) -> Response {
    let deployment: Deployment = match parse(&body, "a deployment") {
        Ok(d) => d,
        Err(answer) => return answer,
    };
    if let Err(answer) = check_deployment(&deployment, state.config.max_replicas) {
        return answer;
    }
    let name = deployment.service.clone();
    match state.provider.deploy(deployment).await {
        Ok(()) => {
            tracing::info!(function = %name, "deployed");
            text(StatusCode::ACCEPTED, format_args!("deployed {name}"))
        }
        Err(e) => failed(e),
    }
}

async fn update(State(state): State<Arc<AppState>>, ApiBody(body): ApiBody) -> Response {
    let deployment: Deployment = match parse(&body, "a deployment") {
        Ok(d) => d,
        Err(answer) => return answer,
    };
    if let Err(answer) = check_deployment(&deployment, state.config.max_replicas) {
        return answer;
    }
    let name = deployment.service.clone();
    match state.provider.update(deployment).await {
        Ok(()) => {
            tracing::info!(function = %name, "updated");
            text(StatusCode::ACCEPTED, format_args!("updated {name}"))
        }
        Err(e) => failed(e),
    }
}

async fn remove(State(state): State<Arc<AppState>>, ApiBody(body): ApiBody) -> Response {
    let request: DeleteFunction = match parse(&body, "{\"functionName\": \"...\"}") {
        Ok(r) => r,
        Err(answer) => return answer,
    };
    let name = request.function_name;
    if name.is_empty() {
        return bad_request("missing \"functionName\": which function to remove");
    }
    if !faas_common::is_valid_function_name(&name) {
        return bad_request(invalid_name(&name));
    }
    match state.provider.remove(&name).await {
        Ok(()) => {
            tracing::info!(function = %name, "removed");
            text(StatusCode::OK, format_args!("removed {name}"))
        }
        Err(e) => failed(e),
    }
}

/// `{"serviceName", "replicas"}`, read loosely so that a negative or
/// fractional count gets a message about the range, not about JSON types.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ScaleBody {
    #[serde(default)]
    service_name: String,
    replicas: Option<serde_json::Number>,
}

async fn scale(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    ApiBody(body): ApiBody,
) -> Response {
    if !faas_common::is_valid_function_name(&name) {
        return bad_request(invalid_name(&name));
    }
    let request: ScaleBody = match parse(&body, "{\"serviceName\", \"replicas\"}") {
        Ok(r) => r,
        Err(answer) => return answer,
    };
    if !request.service_name.is_empty() && request.service_name != name {
        return bad_request(format_args!(
            "serviceName {:?} does not match the function in the path, {name:?}",
            request.service_name
        ));
    }
    let max = state.config.max_replicas;
    let replicas = match request.replicas {
        None => return bad_request("missing \"replicas\": how many replicas to run"),
        Some(n) => match n.as_u64() {
            Some(r) if r <= max => r,
            _ => {
                return bad_request(format_args!(
                    "replicas {n} is out of range: 0 to {max} (max_replicas)"
                ));
            }
        },
    };
    match state.scaler.scale(&name, replicas).await {
        Ok(()) => {
            tracing::info!(function = %name, replicas, "scaled");
            text(
                StatusCode::ACCEPTED,
                format_args!("scaling {name} to {replicas} replicas"),
            )
        }
        Err(e) => failed(e),
    }
}

async fn alert(State(state): State<Arc<AppState>>, ApiBody(body): ApiBody) -> Response {
    crate::scaling::alert::handle(&state, &body).await
}

async fn info(State(state): State<Arc<AppState>>) -> Response {
    let version = VersionInfo {
        release: env!("CARGO_PKG_VERSION").to_owned(),
        sha: option_env!("FAAS_GIT_SHA").unwrap_or_default().to_owned(),
        commit_message: String::new(),
    };
    Json(SystemInfo {
        provider: ProviderInfo {
            provider: "faas".to_owned(),
            orchestration: state.provider.name().to_owned(),
            version: version.clone(),
            resource_limits: Some(state.provider.limits()),
        },
        version,
        arch: std::env::consts::ARCH.to_owned(),
    })
    .into_response()
}

#[derive(Deserialize)]
struct LogParams {
    name: Option<String>,
    tail: Option<String>,
    since: Option<String>,
    follow: Option<String>,
}

/// `since`: an RFC 3339 time, or a duration ago (`5m`).
fn parse_since(v: &str) -> Result<SystemTime, String> {
    if let Ok(t) = humantime::parse_rfc3339_weak(v) {
        return Ok(t);
    }
    let ago: Duration = faas_common::parse::parse_duration(v).map_err(|_| {
        format!(
            "since {v:?}: expected an RFC 3339 time (2026-11-22T10:00:00Z) or a duration such as 5m"
        )
    })?;
    Ok(SystemTime::now()
        .checked_sub(ago)
        .unwrap_or(SystemTime::UNIX_EPOCH))
}

fn log_query(params: LogParams) -> Result<LogQuery, String> {
    let name = params
        .name
        .filter(|n| !n.is_empty())
        .ok_or("missing ?name=: which function's logs")?;
    if !faas_common::is_valid_function_name(&name) {
        return Err(invalid_name(&name));
    }
    let tail = match params.tail.as_deref() {
        None | Some("") => None,
        // OpenFaaS's CLI sends -1 for "all".
        Some(t) if t.trim().starts_with('-') => None,
        Some(t) => Some(
            t.trim()
                .parse::<usize>()
                .map_err(|_| format!("tail {t:?}: expected a number of lines"))?,
        ),
    };
    let since = match params.since.as_deref() {
        None | Some("") => None,
        Some(s) => Some(parse_since(s)?),
    };
    let follow = match params.follow.as_deref() {
        None | Some("") => false,
        Some(f) => {
            faas_common::parse::parse_bool(f).map_err(|hint| format!("follow {f:?}: {hint}"))?
        }
    };
    Ok(LogQuery {
        name,
        tail,
        since,
        follow,
    })
}

async fn logs(State(state): State<Arc<AppState>>, Query(params): Query<LogParams>) -> Response {
    let query = match log_query(params) {
        Ok(q) => q,
        Err(message) => return bad_request(message),
    };
    let stream = match state.provider.logs(query).await {
        Ok(stream) => stream,
        Err(e) => return failed(e),
    };
    let lines = stream.map(|entry| {
        let mut line = serde_json::to_vec(&entry).unwrap_or_default();
        line.push(b'\n');
        Ok::<_, Infallible>(Bytes::from(line))
    });
    let mut response = Response::new(Body::from_stream(lines));
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[derive(serde::Serialize)]
struct SecretName {
    name: String,
}

async fn secrets(State(state): State<Arc<AppState>>) -> Response {
    match state.provider.secrets().await {
        Ok(mut names) => {
            names.sort();
            Json(
                names
                    .into_iter()
                    .map(|name| SecretName { name })
                    .collect::<Vec<_>>(),
            )
            .into_response()
        }
        Err(e) => failed(e),
    }
}

/// A secret's name and value from a create or update body.
#[allow(clippy::result_large_err)]
fn secret_of(body: &Bytes) -> Result<(String, Vec<u8>), Response> {
    let secret: Secret = parse(body, "{\"name\", \"value\"}")?;
    validate_secret_name(&secret.name).map_err(failed)?;
    let value = match (secret.value, secret.raw_value) {
        (Some(v), None) => v.into_bytes(),
        (None, Some(raw)) => match base64::engine::general_purpose::STANDARD.decode(raw.trim()) {
            Ok(bytes) => bytes,
            Err(e) => return Err(bad_request(format_args!("rawValue is not base64: {e}"))),
        },
        (Some(_), Some(_)) => {
            return Err(bad_request(
                "give either \"value\" or \"rawValue\", not both",
            ));
        }
        (None, None) => {
            return Err(bad_request(
                "missing \"value\" (text) or \"rawValue\" (base64)",
            ));
        }
    };
    if value.is_empty() {
        return Err(bad_request("the secret's value is empty"));
    }
    Ok((secret.name, value))
}

async fn create_secret(State(state): State<Arc<AppState>>, ApiBody(body): ApiBody) -> Response {
    let (name, value) = match secret_of(&body.bytes) {
        Ok(secret) => secret,
        Err(answer) => return answer,
    };
    let secret = Secret {
        name,
        ..Default::default()
    };
    match state.provider.create_secret(&secret.name, value).await {
        Ok(()) => {
            tracing::info!(secret = %secret.name, "secret created");
            text(
                StatusCode::CREATED,
                format_args!("created secret {}", secret.name),
            )
        }
        Err(e) => failed(e),
    }
}

/// `PUT /system/secrets` (`faas-cli secret update`): a new value for an
/// existing secret. Swarm's secrets cannot change in place, so neither
/// does ours: one a function mounts is refused (409, naming them) until
/// it mounts it no more.
async fn update_secret(State(state): State<Arc<AppState>>, ApiBody(body): ApiBody) -> Response {
    let (name, value) = match secret_of(&body.bytes) {
        Ok(secret) => secret,
        Err(answer) => return answer,
    };
    match state.provider.secrets().await {
        Ok(names) if !names.contains(&name) => return failed(ProviderError::SecretNotFound(name)),
        Ok(_) => {}
        Err(e) => return failed(e),
    }
    if let Err(e) = state.provider.remove_secret(&name).await {
        return failed(e);
    }
    match state.provider.create_secret(&name, value).await {
        Ok(()) => {
            tracing::info!(secret = %name, "secret updated");
            text(StatusCode::OK, format_args!("updated secret {name}"))
        }
        Err(e) => text(
            e.status(),
            format_args!(
                "secret {name} was removed for its update but could not be created again ({}): create it again",
                one_line(&e.to_string())
            ),
        ),
    }
}

async fn remove_secret(State(state): State<Arc<AppState>>, ApiBody(body): ApiBody) -> Response {
    let secret: Secret = match parse(&body, "{\"name\"}") {
        Ok(s) => s,
        Err(answer) => return answer,
    };
    if secret.name.is_empty() {
        return bad_request("missing \"name\": which secret to remove");
    }
    match state.provider.remove_secret(&secret.name).await {
        Ok(()) => {
            tracing::info!(secret = %secret.name, "secret removed");
            text(
                StatusCode::OK,
                format_args!("removed secret {}", secret.name),
            )
        }
        Err(e) => failed(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(name: &str, tail: &str, since: &str, follow: &str) -> LogParams {
        let opt = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        LogParams {
            name: opt(name),
            tail: opt(tail),
            since: opt(since),
            follow: opt(follow),
        }
    }

    #[test]
    fn log_queries_are_checked() {
        let q = log_query(params("fn", "10", "", "true")).unwrap();
        assert_eq!((q.tail, q.follow), (Some(10), true));
        let q = log_query(params("fn", "-1", "2026-11-22T10:00:00Z", "")).unwrap();
        assert_eq!(q.tail, None);
        assert_eq!(
            q.since.unwrap(),
            humantime::parse_rfc3339("2026-11-22T10:00:00Z").unwrap()
        );
        let q = log_query(params("fn", "", "5m", "")).unwrap();
        let ago = SystemTime::now().duration_since(q.since.unwrap()).unwrap();
        assert!(ago >= Duration::from_secs(299) && ago < Duration::from_secs(310));
        for (p, needle) in [
            (params("", "", "", ""), "missing ?name="),
            (params("a b", "", "", ""), "invalid function name"),
            (params("fn", "ten", "", ""), "tail"),
            (params("fn", "", "yesterday", ""), "since"),
            (params("fn", "", "", "maybe"), "follow"),
        ] {
            let err = log_query(p).err().unwrap();
            assert!(err.contains(needle), "{err}");
        }
    }

    #[test]
    fn deployments_are_checked_before_the_provider() {
        let ok = Deployment {
            service: "fn".into(),
            limits: Some(faas_common::api::Resources {
                memory: Some("128m".into()),
                cpu: Some("0.5".into()),
            }),
            ..Default::default()
        };
        assert!(check_deployment(&ok, 100).is_ok());
        for bad in [
            Deployment::default(),
            Deployment {
                service: "a/b".into(),
                ..Default::default()
            },
            Deployment {
                limits: Some(faas_common::api::Resources {
                    memory: Some("lots".into()),
                    cpu: None,
                }),
                ..ok.clone()
            },
            Deployment {
                requests: Some(faas_common::api::Resources {
                    memory: None,
                    cpu: Some("-1".into()),
                }),
                ..ok.clone()
            },
            Deployment {
                labels: [("faas.scale.min".to_owned(), "101".to_owned())].into(),
                ..ok.clone()
            },
        ] {
            let answer = check_deployment(&bad, 100).unwrap_err();
            assert_eq!(answer.status(), StatusCode::BAD_REQUEST);
        }
    }
}
