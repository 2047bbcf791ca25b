//! The gateway's API shapes, as OpenFaaS defines them, shared with the CLI.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `POST`/`PUT /system/functions`: what to run and how.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    /// The function's name (required; missing is reported by the gateway).
    #[serde(default)]
    pub service: String,
    #[serde(default)]
    pub image: String,
    /// The command the watchdog runs (`fprocess`); the image's own when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_process: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env_vars: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Resources>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<Resources>,
    #[serde(default)]
    pub read_only_root_filesystem: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
}

/// `GET /system/functions` and `/system/function/{name}`: a function's state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionStatus {
    pub name: String,
    /// Always [`NAMESPACE`] in the gateway's answers (OpenFaaS's field).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(default)]
    pub image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_process: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env_vars: BTreeMap<String, String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<String>,
    /// The names of the secrets it reads (never their values).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Resources>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<Resources>,
    #[serde(default)]
    pub read_only_root_filesystem: bool,
    /// Desired replicas.
    #[serde(default)]
    pub replicas: u64,
    /// Replicas running and healthy.
    #[serde(default)]
    pub available_replicas: u64,
    /// Replicas of an earlier version still serving calls while an update
    /// rolls out (ours; not in `availableReplicas`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub stale_replicas: u64,
    #[serde(default)]
    pub invocation_count: u64,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// The autoscaler's settings and decisions (ours; OpenFaaS has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaling: Option<ScalingStatus>,
    /// Other services that claim this function's name, and which one
    /// serves it (ours).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conflict: Option<String>,
    /// Why the function cannot start, when it cannot (ours): its calls are
    /// answered 503 with this at once instead of waiting for a replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// Labels a deployment may not set: they decide what the gateway itself
/// treats as its own (`faas.role`, `faas.deployed-by`), which name or port
/// a service serves (`faas.function`, `faas.port`), or belong to Docker
/// (`com.docker.*`).
const RESERVED_LABELS: [&str; 6] = [
    "faas.role",
    "faas.function",
    "com.openfaas.function",
    "faas.port",
    "faas.deployed-by",
    "faas.secret",
];
const RESERVED_PREFIXES: [&str; 1] = ["com.docker."];

/// The one namespace this gateway has, as `GET /system/namespaces`
/// answers it (OpenFaaS's clients list and pass namespaces).
pub const NAMESPACE: &str = "faas";
/// OpenFaaS's default function namespace: stack files and clients written
/// for OpenFaaS name it, and mean the one namespace there is.
pub const OPENFAAS_NAMESPACE: &str = "openfaas-fn";

/// Whether `namespace` (from a `namespace` query parameter or a
/// `name.namespace` call path) means this gateway's one namespace: empty,
/// ours, or OpenFaaS's default.
pub fn is_our_namespace(namespace: &str) -> bool {
    namespace.is_empty() || namespace == NAMESPACE || namespace == OPENFAAS_NAMESPACE
}

/// `name` without the `.namespace` OpenFaaS's callers may append
/// (`/function/hello.openfaas-fn`); `None` when it has none of ours.
pub fn strip_namespace(name: &str) -> Option<&str> {
    let (short, namespace) = name.rsplit_once('.')?;
    (!short.is_empty() && !namespace.is_empty() && is_our_namespace(namespace)).then_some(short)
}

/// Whether a deployment may not set the label `key` (the gateway sets it,
/// or Docker does).
pub fn is_reserved_label(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    RESERVED_LABELS.iter().any(|r| {
        key == *r
            || key
                .strip_prefix(r)
                .is_some_and(|rest| rest.starts_with('.'))
    }) || RESERVED_PREFIXES.iter().any(|p| key.starts_with(p))
}

impl FunctionStatus {
    /// The deployment that runs this function as it is: the body of a
    /// `PUT /system/functions` that changes one setting and keeps the rest
    /// (the labels the gateway and Docker set themselves left out).
    pub fn deployment(&self) -> Deployment {
        Deployment {
            service: self.name.clone(),
            image: self.image.clone(),
            env_process: self.env_process.clone(),
            env_vars: self.env_vars.clone(),
            labels: self
                .labels
                .iter()
                .filter(|(k, _)| !is_reserved_label(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            annotations: self.annotations.clone(),
            constraints: self.constraints.clone(),
            secrets: self.secrets.clone(),
            limits: self.limits.clone(),
            requests: self.requests.clone(),
            read_only_root_filesystem: self.read_only_root_filesystem,
        }
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A function's autoscaling, as `GET /system/function/{name}` reports it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScalingStatus {
    /// Whether the gateway scales with load (`autoscale`); waking from
    /// zero happens either way.
    pub enabled: bool,
    pub min: u64,
    pub max: u64,
    /// Per replica: in-flight calls (`capacity`) or calls per second (`rps`).
    pub target: f64,
    #[serde(rename = "type")]
    pub metric: String,
    pub zero: bool,
    pub zero_after_seconds: f64,
    /// The scale-down window.
    pub window_seconds: f64,
    /// A scaling label that could not be used (the defaults apply).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// The latest tick's reasoning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
    /// The last change of the replica count the autoscaler made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_decision: Option<ScalingDecision>,
}

/// One change of a function's replica count by the autoscaler.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScalingDecision {
    /// RFC 3339.
    pub at: String,
    pub from: u64,
    pub to: u64,
    pub reason: String,
}

/// `DELETE /system/functions`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteFunction {
    pub function_name: String,
}

/// `POST /system/scale-function/{name}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScaleRequest {
    #[serde(default)]
    pub service_name: String,
    pub replicas: u64,
}

/// One line of `GET /system/logs` (ndjson), as OpenFaaS writes it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    /// The function.
    pub name: String,
    #[serde(default)]
    pub namespace: String,
    /// The replica (Swarm task or local process) that wrote the line.
    #[serde(default)]
    pub instance: String,
    /// RFC 3339, with nanoseconds when the engine gives them.
    pub timestamp: String,
    pub text: String,
}

/// `/system/secrets`: `value` (text) or `rawValue` (base64 bytes) on
/// create; only `name` is ever returned.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Secret {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_value: Option<String>,
}

/// `GET /system/info`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SystemInfo {
    pub provider: ProviderInfo,
    pub version: VersionInfo,
    #[serde(default)]
    pub arch: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProviderInfo {
    /// Always `faas`.
    pub provider: String,
    /// `swarm` or `process`.
    pub orchestration: String,
    pub version: VersionInfo,
    /// How functions' `limits` are enforced (ours).
    #[serde(
        default,
        rename = "resourceLimits",
        skip_serializing_if = "Option::is_none"
    )]
    pub resource_limits: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VersionInfo {
    pub release: String,
    #[serde(default)]
    pub sha: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub commit_message: String,
}

/// An async call's state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecutionStatus {
    #[default]
    Queued,
    Running,
    Succeeded,
    Failed,
    Dead,
}

impl ExecutionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionStatus::Queued => "queued",
            ExecutionStatus::Running => "running",
            ExecutionStatus::Succeeded => "succeeded",
            ExecutionStatus::Failed => "failed",
            ExecutionStatus::Dead => "dead",
        }
    }

    /// Whether the call has reached a final state.
    pub fn is_final(self) -> bool {
        !matches!(self, ExecutionStatus::Queued | ExecutionStatus::Running)
    }
}

impl std::str::FromStr for ExecutionStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "queued" => Ok(ExecutionStatus::Queued),
            "running" => Ok(ExecutionStatus::Running),
            "succeeded" => Ok(ExecutionStatus::Succeeded),
            "failed" => Ok(ExecutionStatus::Failed),
            "dead" => Ok(ExecutionStatus::Dead),
            other => Err(format!(
                "unknown status {other:?}: queued, running, succeeded, failed or dead"
            )),
        }
    }
}

/// `GET /system/executions/{id}`: an async call's record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Execution {
    pub id: String,
    pub function: String,
    pub status: ExecutionStatus,
    /// RFC 3339.
    pub created_at: String,
    #[serde(default)]
    pub started_at: Option<String>,
    #[serde(default)]
    pub finished_at: Option<String>,
    #[serde(default)]
    pub attempts: u32,
    #[serde(default)]
    pub status_code: Option<u16>,
    #[serde(default)]
    pub duration_seconds: Option<f64>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback: Option<CallbackRecord>,
    /// What the replica that served the final attempt reported about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub figures: Option<CallFigures>,
}

/// What a function's watchdog reports about one call, in its response
/// headers (and, for a streamed output, its trailers).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallFigures {
    /// `X-Duration-Seconds`: the call inside the replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function_seconds: Option<f64>,
    /// `X-Cpu-User-Seconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_user_seconds: Option<f64>,
    /// `X-Cpu-System-Seconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_system_seconds: Option<f64>,
    /// `X-Max-Rss-Bytes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rss_bytes: Option<u64>,
    /// `X-Cold-Start: true`: the replica's first call.
    #[serde(default)]
    pub cold_start: bool,
    /// `X-Served-By`: the replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_by: Option<String>,
    /// `X-Memory-Limit-Bytes`: the limit the replica ran under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_limit_bytes: Option<u64>,
}

impl CallFigures {
    /// The figures among the headers `get` finds by (lower-case) name;
    /// `None` when there are none at all.
    pub fn from_headers<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Option<CallFigures> {
        let number = |name: &str| get(name).and_then(|v| v.trim().parse::<f64>().ok());
        let figures = CallFigures {
            function_seconds: number("x-duration-seconds"),
            cpu_user_seconds: number("x-cpu-user-seconds"),
            cpu_system_seconds: number("x-cpu-system-seconds"),
            max_rss_bytes: get("x-max-rss-bytes").and_then(|v| v.trim().parse().ok()),
            cold_start: get("x-cold-start").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")),
            served_by: get("x-served-by").map(str::to_owned),
            memory_limit_bytes: get("x-memory-limit-bytes").and_then(|v| v.trim().parse().ok()),
        };
        (figures != CallFigures::default()).then_some(figures)
    }

    /// Fills what `self` lacks from `later` (trailers after headers).
    pub fn merge(&mut self, later: CallFigures) {
        self.function_seconds = self.function_seconds.or(later.function_seconds);
        self.cpu_user_seconds = self.cpu_user_seconds.or(later.cpu_user_seconds);
        self.cpu_system_seconds = self.cpu_system_seconds.or(later.cpu_system_seconds);
        self.max_rss_bytes = self.max_rss_bytes.or(later.max_rss_bytes);
        self.cold_start |= later.cold_start;
        self.served_by = self.served_by.take().or(later.served_by);
        self.memory_limit_bytes = self.memory_limit_bytes.or(later.memory_limit_bytes);
    }
}

/// Where an async call's result goes (`X-Callback-Url`) and how that went.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallbackRecord {
    pub url: String,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    #[serde(default)]
    pub attempts: u32,
    #[serde(default)]
    pub status_code: Option<u16>,
    #[serde(default)]
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_path_may_name_our_namespace_and_no_other() {
        assert_eq!(strip_namespace("hello.faas"), Some("hello"));
        assert_eq!(strip_namespace("hello.openfaas-fn"), Some("hello"));
        assert_eq!(strip_namespace("v1.2.faas"), Some("v1.2"));
        assert_eq!(strip_namespace("hello.staging"), None);
        assert_eq!(strip_namespace("hello"), None);
        assert_eq!(strip_namespace(".faas"), None);
        assert!(is_our_namespace("") && !is_our_namespace("kube-system"));
    }

    #[test]
    fn a_status_becomes_a_deployment_without_the_gateways_own_labels() {
        let status = FunctionStatus {
            name: "f".into(),
            image: "faas/f:1".into(),
            labels: [
                ("faas.function", "f"),
                ("faas.deployed-by", "faas_gateway"),
                ("com.docker.stack.namespace", "faas"),
                ("faas.scale.min", "2"),
                ("team", "lab"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
            limits: Some(Resources {
                memory: Some("128m".into()),
                cpu: None,
            }),
            ..Default::default()
        };
        let d = status.deployment();
        assert_eq!(d.service, "f");
        assert_eq!(
            d.labels.keys().collect::<Vec<_>>(),
            ["faas.scale.min", "team"]
        );
        assert_eq!(d.limits, status.limits);
        assert!(is_reserved_label("FAAS.PORT") && is_reserved_label("faas.secret.x"));
        assert!(!is_reserved_label("faas.portable") && !is_reserved_label("faas.scale.min"));
    }

    #[test]
    fn a_watchdogs_headers_become_figures_and_trailers_fill_the_rest() {
        let headers = [
            ("x-duration-seconds", "0.012500"),
            ("x-served-by", "fn-1"),
            ("x-cold-start", "true"),
            ("x-memory-limit-bytes", "134217728"),
            ("x-cpu-user-seconds", "junk"),
        ];
        let get = |name: &str| headers.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
        let mut figures = CallFigures::from_headers(get).expect("figures");
        assert_eq!(figures.function_seconds, Some(0.0125));
        assert_eq!(figures.served_by.as_deref(), Some("fn-1"));
        assert!(figures.cold_start);
        assert_eq!(figures.memory_limit_bytes, Some(128 << 20));
        assert_eq!(
            figures.cpu_user_seconds, None,
            "an unreadable figure is absent"
        );
        let trailers = [("x-cpu-user-seconds", "0.003"), ("x-max-rss-bytes", "4096")];
        let get = |name: &str| trailers.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
        figures.merge(CallFigures::from_headers(get).expect("trailer figures"));
        assert_eq!(figures.cpu_user_seconds, Some(0.003));
        assert_eq!(figures.max_rss_bytes, Some(4096));
        assert_eq!(figures.function_seconds, Some(0.0125));
        assert_eq!(CallFigures::from_headers(|_| None), None);
    }
}
