//! `POST /system/alert`: OpenFaaS's AlertManager webhook, for users who
//! scale with Prometheus alerts. Each alert names a function in its
//! `function_name` label; a firing one adds `faas.scale.factor` percent of
//! max (default 20 %), a resolved one returns to min (see
//! [`policy::alert_replicas`](super::policy::alert_replicas)). The count
//! set this way is treated like a manual scale: the built-in autoscaler
//! continues from it.

use std::collections::BTreeMap;

use axum::response::Response;
use http::StatusCode;
use serde::Deserialize;

use super::policy::alert_replicas;
use crate::app::AppState;
use crate::provider::ProviderError;
use faas_common::message::one_line;

use crate::reply::text;

/// The parts of AlertManager's webhook body that matter here.
#[derive(Debug, Deserialize)]
pub struct AlertRequest {
    /// `firing` or `resolved`, for the whole group.
    #[serde(default)]
    pub status: String,
    pub alerts: Vec<Alert>,
}

#[derive(Debug, Deserialize)]
pub struct Alert {
    /// `firing` or `resolved`; the group's when absent.
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// Answers one webhook call (its body read within `max_api_body`).
pub async fn handle(state: &AppState, body: &[u8]) -> Response {
    let request: AlertRequest = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                format_args!(
                    "malformed JSON (an AlertManager webhook with \"alerts\"): {}",
                    one_line(&e.to_string())
                ),
            );
        }
    };
    if request.alerts.is_empty() {
        return text(StatusCode::BAD_REQUEST, "no alerts in the request");
    }
    let mut done = Vec::new();
    let mut failures: Vec<(StatusCode, String)> = Vec::new();
    for (i, alert) in request.alerts.iter().enumerate() {
        let status = if alert.status.is_empty() {
            &request.status
        } else {
            &alert.status
        };
        let firing = match status.as_str() {
            "firing" => true,
            "resolved" => false,
            other => {
                failures.push((
                    StatusCode::BAD_REQUEST,
                    format!("alert {i}: status {other:?} is neither firing nor resolved"),
                ));
                continue;
            }
        };
        let Some(named) = alert.labels.get("function_name") else {
            failures.push((
                StatusCode::BAD_REQUEST,
                format!("alert {i}: no function_name label"),
            ));
            continue;
        };
        match scale(state, named, firing).await {
            Ok(line) => done.push(line),
            Err(failure) => failures.push(failure),
        }
    }
    if failures.is_empty() {
        return text(StatusCode::OK, done.join("; "));
    }
    let status = failures[0].0;
    let message: Vec<String> = failures.into_iter().map(|(_, m)| m).collect();
    text(status, message.join("; "))
}

/// Scales one function for one alert; the line saying what happened.
async fn scale(
    state: &AppState,
    named: &str,
    firing: bool,
) -> Result<String, (StatusCode, String)> {
    // OpenFaaS names functions `name.namespace` in its alerts.
    let function = state
        .table
        .get(named)
        .or_else(|| {
            named
                .rsplit_once('.')
                .and_then(|(name, _)| state.table.get(name))
        })
        .ok_or_else(|| {
            (
                StatusCode::NOT_FOUND,
                format!("function {named:?} not found"),
            )
        })?;
    let name = function.name.clone();
    let current = match state.provider.list().await {
        Ok(list) => list
            .into_iter()
            .find(|f| f.name == name)
            .map(|f| f.replicas)
            .ok_or_else(|| {
                (
                    StatusCode::NOT_FOUND,
                    format!("function {name:?} not found"),
                )
            })?,
        Err(e) => return Err(failure(&name, e)),
    };
    let (settings, _) = state.scaler.settings(&function.labels());
    if settings.factor == 0 {
        return Ok(format!(
            "{name}: alert scaling is off (faas.scale.factor 0), kept {current}"
        ));
    }
    let to = alert_replicas(firing, current, &settings);
    let how = if firing { "firing" } else { "resolved" };
    let Some(to) = to.filter(|to| *to != current) else {
        return Ok(format!("{name}: kept {current} replicas ({how})"));
    };
    state
        .scaler
        .scale(&name, to)
        .await
        .map_err(|e| failure(&name, e))?;
    tracing::info!(function = %name, from = current, to, firing, "scaled by an alert");
    Ok(format!("{name}: {current} -> {to} replicas ({how})"))
}

fn failure(name: &str, e: ProviderError) -> (StatusCode, String) {
    (
        e.status(),
        format!("cannot scale {name:?}: {}", one_line(&e.to_string())),
    )
}
