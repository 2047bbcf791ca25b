//! The gateway's configuration: every flag, its environment variable and
//! its default, parsed once at start-up. A bad value stops start-up with a
//! message naming the flag.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProviderKind {
    /// Swarm when the Docker socket answers, else process.
    Auto,
    /// Docker Swarm services.
    Swarm,
    /// Local fwatchdog processes on loopback ports.
    Process,
}

/// Who may use `/system/*` (and, with `auth_invoke`, call functions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthMode {
    /// HTTP basic auth: the configured credentials, else ones generated on
    /// first start and kept in the state directory.
    Basic,
    /// No authentication at all: anyone who reaches the port can deploy
    /// and run code. Logged loudly at start.
    None,
}

/// faas gateway: routes calls to functions on Docker Swarm (or to local
/// processes), balances across replicas, and exposes Prometheus metrics.
#[derive(Debug, Clone, Parser)]
#[command(name = "gateway", version, after_help = EXAMPLES)]
pub struct Config {
    /// Which engine runs the functions.
    #[arg(long, env = "provider", value_enum, default_value = "auto")]
    pub provider: ProviderKind,

    /// Stack file (faas-cli format) whose functions the process provider runs at start.
    #[arg(short = 'f', long = "file", env = "stack_file")]
    pub stack_file: Option<PathBuf>,

    /// Port for calls, the API and metrics.
    #[arg(long, env = "port", default_value_t = 8080)]
    pub port: u16,

    /// Address to listen on.
    #[arg(long, env = "bind_address", default_value = "0.0.0.0")]
    pub bind_address: IpAddr,

    /// The attachable overlay network functions join (swarm).
    #[arg(long, env = "functions_network", default_value = "functions")]
    pub functions_network: String,

    /// Longest wait for a function's response headers (then 504).
    #[arg(long, env = "upstream_timeout", default_value = "60s", value_parser = duration)]
    pub upstream_timeout: Duration,

    /// Longest a call waits for a replica when none is ready (then 503).
    #[arg(long, env = "replica_wait", default_value = "5s", value_parser = duration)]
    pub replica_wait: Duration,

    /// Largest body buffered to look for an Alexa intent (then 413).
    #[arg(long, env = "max_alexa_body", default_value = "1m", value_parser = bytes)]
    pub max_alexa_body: u64,

    /// Longest wait for a request's headers.
    #[arg(long, env = "read_timeout", default_value = "10s", value_parser = duration)]
    pub read_timeout: Duration,

    /// How often the swarm provider re-reads services and tasks, besides
    /// reacting to Docker events.
    #[arg(long, env = "resync_interval", default_value = "2s", value_parser = duration)]
    pub resync_interval: Duration,

    /// Docker API endpoint (swarm), e.g. unix:///var/run/docker.sock.
    #[arg(long, env = "DOCKER_HOST")]
    pub docker_host: Option<String>,

    /// A registry (HOST[:PORT]) the swarm provider pushes the images it
    /// builds from source to, deploying them by digest so every node can
    /// pull them; without it images stay on the building node.
    #[arg(long, env = "registry", value_parser = registry)]
    pub registry: Option<String>,

    /// The fwatchdog binary for the process provider (default: beside the
    /// gateway, else on PATH, else the gateway itself).
    #[arg(long, env = "fwatchdog")]
    pub fwatchdog: Option<PathBuf>,

    /// Where the basic-auth-user and basic-auth-password files are looked
    /// for (Swarm mounts secrets here).
    #[arg(long, env = "secret_mount_path", default_value = "/run/secrets")]
    pub secret_mount_path: PathBuf,

    /// User name for basic auth on /system/* (when no secret files exist).
    #[arg(long, env = "basic_auth_user", hide_env_values = true)]
    pub basic_auth_user: Option<String>,

    /// Password for basic auth on /system/* (when no secret files exist).
    /// Prefer the environment or a secret file: flags show in `ps`.
    #[arg(long, env = "basic_auth_password", hide_env_values = true)]
    pub basic_auth_password: Option<String>,

    /// `basic`: /system/* needs credentials (the configured ones, else
    /// generated on first start into the state directory); `none`: the API
    /// is open to anyone who reaches the port.
    #[arg(long, env = "auth", value_enum, default_value = "basic")]
    pub auth: AuthMode,

    /// The gateway's own directory (mode 0700): generated credentials, the
    /// async queue, the process provider's files. Default:
    /// $XDG_STATE_HOME/faas-gateway, else ~/.local/state/faas-gateway.
    #[arg(long, env = "state_dir")]
    pub state_dir: Option<PathBuf>,

    /// Require basic auth for function calls too (when credentials exist).
    #[arg(long, env = "auth_invoke", value_parser = boolean, default_value = "false",
          num_args = 0..=1, default_missing_value = "true")]
    pub auth_invoke: bool,

    /// Most replicas a scale request may ask for (then 400).
    #[arg(long, env = "max_replicas", default_value_t = 100)]
    pub max_replicas: u64,

    /// Largest /system/* request body (deployments, secrets; then 413).
    #[arg(long, env = "max_api_body", default_value = "1m", value_parser = bytes)]
    pub max_api_body: u64,

    /// Largest build context POST /system/builds takes, compressed (then
    /// 413); unpacked, a context may be four times this.
    #[arg(long, env = "max_build_context", default_value = "50m", value_parser = bytes)]
    pub max_build_context: u64,

    /// Longest a build may run (then it is stopped and answered 504).
    #[arg(long, env = "build_timeout", default_value = "10m", value_parser = positive_duration)]
    pub build_timeout: Duration,

    /// Builds that run at once; more wait their turn (one function's
    /// builds always run one at a time).
    #[arg(long, env = "max_builds", default_value_t = 2,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_builds: u32,

    /// Log lines the process provider keeps per function for /system/logs.
    #[arg(long, env = "log_lines", default_value_t = 1000)]
    pub log_lines: usize,

    /// Longest function output line the process provider keeps (the rest
    /// of the line is dropped, and the line says so).
    #[arg(long, env = "log_line_bytes", default_value = "16k", value_parser = bytes)]
    pub log_line_bytes: u64,

    /// The async queue's database file, created when missing, mode 0600
    /// (default: <state_dir>/queue-<port>.redb). Keep it on a volume so
    /// queued calls survive the gateway.
    #[arg(long, env = "queue_path")]
    pub queue_path: Option<PathBuf>,

    /// Largest async call body (then 413).
    #[arg(long, env = "max_async_body", default_value = "10m", value_parser = bytes)]
    pub max_async_body: u64,

    /// Largest async response body kept for /system/executions/{id}/output.
    #[arg(long, env = "async_max_output", default_value = "1m", value_parser = bytes)]
    pub async_max_output: u64,

    /// How long finished async calls' records are kept.
    #[arg(long, env = "async_retention", default_value = "24h", value_parser = duration)]
    pub async_retention: Duration,

    /// Async calls of one function running at once (label faas.async.concurrency).
    #[arg(long, env = "async_concurrency", default_value_t = 4)]
    pub async_concurrency: usize,

    /// Retries after the first attempt (label faas.async.max-retries).
    #[arg(long, env = "async_max_retries", default_value_t = 5)]
    pub async_max_retries: u32,

    /// First retry's wait; doubles per retry, with jitter.
    #[arg(long, env = "async_retry_base", default_value = "1s", value_parser = duration)]
    pub async_retry_base: Duration,

    /// Longest wait between retries.
    #[arg(long, env = "async_retry_max", default_value = "60s", value_parser = duration)]
    pub async_retry_max: Duration,

    /// Scale functions with their load (between faas.scale.min and max).
    /// Off, functions are still started from zero when a call comes.
    #[arg(long, env = "autoscale", value_parser = boolean, default_value = "true",
          num_args = 0..=1, default_missing_value = "true")]
    pub autoscale: bool,

    /// How often the autoscaler looks at every function.
    #[arg(long, env = "scale_tick", default_value = "1s", value_parser = positive_duration)]
    pub scale_tick: Duration,

    /// How long demand must last before a scale-up that is not a panic
    /// (a burst of 2x the capacity or more scales up at once).
    #[arg(long, env = "scale_up_window", default_value = "3s", value_parser = duration)]
    pub scale_up_window: Duration,

    /// Scale-down (stable) window: a function scales down only to what
    /// every tick of this window needed (label faas.scale.window).
    #[arg(long, env = "scale_down_window", default_value = "60s", value_parser = window)]
    pub scale_down_window: Duration,

    /// Idle time before a function with faas.scale.zero=true goes to zero
    /// (label faas.scale.zero-after).
    #[arg(long, env = "scale_zero_after", default_value = "5m", value_parser = positive_duration)]
    pub scale_zero_after: Duration,

    /// Longest a call waits while its function starts from zero (then 503).
    #[arg(long, env = "scale_from_zero_wait", default_value = "30s", value_parser = duration)]
    pub scale_from_zero_wait: Duration,

    /// Where callbacks may go besides public addresses: CIDRs
    /// (10.0.0.0/8, 127.0.0.1/32) and host names, comma-separated.
    #[arg(long, env = "callback_allow", value_delimiter = ',', value_parser = callback_allow)]
    pub callback_allow: Vec<crate::queue::callback::Allowed>,

    /// Callback deliveries in flight at once (the rest wait their turn).
    #[arg(long, env = "callback_concurrency", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    pub callback_concurrency: u32,

    /// Most async calls waiting in the queue at once, over all functions
    /// (then 507).
    #[arg(long, env = "max_queued", default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_queued: u64,

    /// Most elements in one /bulk-function request (then 413).
    #[arg(long, env = "max_bulk_items", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_bulk_items: u64,

    /// Threads serving HTTP connections, each its own event loop; a
    /// connection stays on the one it was handed to (default: one per CPU).
    #[arg(long, env = "serve_threads", default_value_t = faas_common::serve::default_threads() as u32, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub serve_threads: u32,

    /// Open client connections at once; more wait in the kernel's backlog.
    #[arg(long, env = "max_connections", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// Longest time to receive a request body the gateway buffers (async,
    /// bulk, Alexa, /system/*; then 408).
    #[arg(long, env = "body_timeout", default_value = "30s", value_parser = positive_duration)]
    pub body_timeout: Duration,

    /// Most bytes of request bodies buffered at once, over all requests
    /// (async, bulk, Alexa, /system/*; then 503).
    #[arg(long, env = "max_buffered", default_value = "256m", value_parser = bytes)]
    pub max_buffered: u64,

    /// Longest wait for a callback URL's answer.
    #[arg(long, env = "callback_timeout", default_value = "10s", value_parser = duration)]
    pub callback_timeout: Duration,

    /// UDP port of the CoAP endpoint (`coap://host/{name}`); `off` or -1:
    /// none; 0: any free port.
    #[arg(long, env = "coap_port", default_value = "5683", value_parser = port_or_off,
          allow_negative_numbers = true)]
    pub coap_port: MaybePort,

    /// Largest CoAP request or response payload (block-wise, RFC 7959;
    /// then 4.13, or 5.00 for a function's answer).
    #[arg(long, env = "coap_max_body", default_value = "1m", value_parser = bytes)]
    pub coap_max_body: u64,

    /// CoAP calls running at once; more are answered 5.03 with Max-Age 1.
    #[arg(long, env = "coap_max_inflight", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub coap_max_inflight: u32,

    /// CoAP exchanges remembered so a retransmitted request is answered
    /// again, not run again (oldest forgotten first; each at most one
    /// datagram).
    #[arg(long, env = "coap_exchanges", default_value_t = 16384, value_parser = clap::value_parser!(u32).range(16..))]
    pub coap_exchanges: u32,

    /// Block-wise transfers (a payload arriving or leaving in blocks) open
    /// at once; more are answered 5.03.
    #[arg(long, env = "coap_max_transfers", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub coap_max_transfers: u32,

    /// How long a confirmable CoAP call may run before its request is
    /// acknowledged empty and the answer sent separately (RFC 7252 5.2.2).
    #[arg(long, env = "coap_ack_delay", default_value = "1s", value_parser = duration)]
    pub coap_ack_delay: Duration,

    /// TCP port of the gRPC endpoint (tinyFaaS's service and ours);
    /// `off` or -1: none; 0: any free port.
    #[arg(long, env = "grpc_port", default_value = "9000", value_parser = port_or_off,
          allow_negative_numbers = true)]
    pub grpc_port: MaybePort,

    /// Largest gRPC request message, and largest answer a unary gRPC call
    /// returns (then RESOURCE_EXHAUSTED; CallStream streams any size).
    #[arg(long, env = "grpc_max_body", default_value = "4m", value_parser = bytes)]
    pub grpc_max_body: u64,

    /// gRPC calls in flight on one connection (HTTP/2 streams); more wait.
    #[arg(long, env = "grpc_max_streams", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub grpc_max_streams: u32,

    /// tinyFaaS's HTTP shapes: its management routes (/upload, /uploadURL,
    /// /list, /delete, /logs, /wipe) on this port, behind the same
    /// credentials as /system/*, and its calls (/{name}) on --tinyfaas-port.
    #[arg(long, env = "tinyfaas", value_parser = boolean, default_value = "false",
          num_args = 0..=1, default_missing_value = "true")]
    pub tinyfaas: bool,

    /// With --tinyfaas: the port of tinyFaaS's call listener (/{name});
    /// `off` or -1: none; 0: any free port.
    #[arg(long, env = "tinyfaas_port", default_value = "8000", value_parser = port_or_off,
          allow_negative_numbers = true, requires = "tinyfaas")]
    pub tinyfaas_port: MaybePort,

    /// Exit 0 if the local gateway's /healthz answers 200, else 1 (for
    /// Docker's HEALTHCHECK).
    #[arg(long)]
    pub healthcheck: bool,
}

const EXAMPLES: &str = "\
Examples:
  gateway                                          # Swarm if Docker answers, else processes
  gateway --provider process -f sample-functions/stack.yml
  curl -d hi localhost:8080/function/catservice";

fn duration(v: &str) -> Result<Duration, String> {
    faas_common::parse::parse_duration(v)
}

fn positive_duration(v: &str) -> Result<Duration, String> {
    match duration(v)? {
        d if d.is_zero() => Err("must be more than 0".to_owned()),
        d => Ok(d),
    }
}

/// A scale-down window: 1 s to 1 h (the autoscaler keeps a sample per
/// tick of it).
fn window(v: &str) -> Result<Duration, String> {
    match duration(v)? {
        d if d < Duration::from_secs(1) || d > crate::scaling::policy::MAX_WINDOW => {
            Err("must be from 1s to 1h".to_owned())
        }
        d => Ok(d),
    }
}

fn callback_allow(v: &str) -> Result<crate::queue::callback::Allowed, String> {
    v.parse()
}

/// `HOST[:PORT]`, as Docker names a registry in an image reference.
fn registry(v: &str) -> Result<String, String> {
    let v = v.trim().trim_end_matches('/');
    let (host, port) = match v.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (v, None),
    };
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'));
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0));
    if host_ok && port_ok {
        Ok(v.to_owned())
    } else {
        Err(format!(
            "{v:?} is not HOST[:PORT] (a registry's address, as in an image name: 10.0.0.5:5000)"
        ))
    }
}

/// A port a listener may have, or `None`: switched off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaybePort(pub Option<u16>);

/// A port, or `off` / `-1` for none.
fn port_or_off(v: &str) -> Result<MaybePort, String> {
    match v.trim() {
        "off" | "-1" | "false" | "none" => Ok(MaybePort(None)),
        port => port
            .parse::<u16>()
            .map(|p| MaybePort(Some(p)))
            .map_err(|_| format!("{v:?} is not a port (0-65535) or off")),
    }
}

fn bytes(v: &str) -> Result<u64, String> {
    faas_common::parse::parse_bytes(v)
}

fn boolean(v: &str) -> Result<bool, String> {
    faas_common::parse::parse_bool(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registries_are_host_and_port() {
        for good in ["10.0.0.5:5000", "registry.local", "127.0.0.1:5000/"] {
            assert!(registry(good).is_ok(), "{good}");
        }
        for bad in ["http://r:5000", "r:0", "r:port", "", "r/path:5000"] {
            assert!(registry(bad).unwrap_err().contains("HOST[:PORT]"), "{bad}");
        }
    }

    #[test]
    fn defaults_follow_the_brief() {
        let c = Config::try_parse_from(["gateway"]).unwrap();
        assert_eq!(c.provider, ProviderKind::Auto);
        assert_eq!(c.port, 8080);
        assert_eq!(c.functions_network, "functions");
        assert_eq!(c.upstream_timeout, Duration::from_secs(60));
        assert_eq!(c.max_alexa_body, 1 << 20);
        assert_eq!(c.secret_mount_path, PathBuf::from("/run/secrets"));
        assert!(!c.auth_invoke);
        assert_eq!(c.max_replicas, 100);
        assert!(c.autoscale);
        assert_eq!(c.scale_tick, Duration::from_secs(1));
        assert_eq!(c.scale_down_window, Duration::from_secs(60));
        assert_eq!(c.scale_zero_after, Duration::from_secs(300));
        assert_eq!(c.scale_from_zero_wait, Duration::from_secs(30));
        assert_eq!(c.coap_port, MaybePort(Some(5683)));
        assert_eq!(c.grpc_port, MaybePort(Some(9000)));
        for off in ["off", "-1"] {
            let c = Config::try_parse_from(["gateway", "--coap-port", off]).unwrap();
            assert_eq!(c.coap_port, MaybePort(None), "{off}");
        }
        let err = Config::try_parse_from(["gateway", "--tinyfaas-port", "8001"]).unwrap_err();
        assert!(err.to_string().contains("--tinyfaas"), "{err}");
        let c =
            Config::try_parse_from(["gateway", "--tinyfaas", "--tinyfaas-port", "8001"]).unwrap();
        assert_eq!(c.tinyfaas_port, MaybePort(Some(8001)));
        let err = Config::try_parse_from(["gateway", "--coap-port", "70000"]).unwrap_err();
        assert!(err.to_string().contains("--coap-port"), "{err}");
        let c =
            Config::try_parse_from(["gateway", "--auth-invoke", "--autoscale", "false"]).unwrap();
        assert!(c.auth_invoke);
        assert!(!c.autoscale);
        for (flag, bad) in [
            ("--scale-tick", "0s"),
            ("--scale-zero-after", "0"),
            ("--scale-down-window", "2h"),
            ("--scale-down-window", "100ms"),
            ("--scale-from-zero-wait", "soon"),
        ] {
            let err = Config::try_parse_from(["gateway", flag, bad]).unwrap_err();
            assert!(err.to_string().contains(flag), "{flag} {bad}: {err}");
        }
    }

    #[test]
    fn bad_values_name_the_flag() {
        let err = Config::try_parse_from(["gateway", "--upstream-timeout", "soon"]).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("--upstream-timeout") && msg.contains("duration"),
            "{msg}"
        );
        let err = Config::try_parse_from(["gateway", "--provider", "k8s"]).unwrap_err();
        assert!(err.to_string().contains("--provider"));
    }
}
