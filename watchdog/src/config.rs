//! The watchdog's configuration: every environment variable, its default and
//! its parser, read once at start-up into [`Config`].
//!
//! A bad value stops start-up with a [`ConfigError`] that names the variable,
//! so a typo in a stack file is caught before the container reports healthy.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use faas_common::parse::{parse_bool, parse_bytes, parse_duration};
use http::{HeaderValue, Uri};

pub const FPROCESS: &str = "fprocess";
pub const MODE: &str = "mode";
pub const UPSTREAM_URL: &str = "upstream_url";
pub const BIND_ADDRESS: &str = "bind_address";
pub const PORT: &str = "port";
pub const METRICS_PORT: &str = "metrics_port";
/// Where to write the port actually bound once listening (for a
/// supervisor that starts the watchdog on port 0).
pub const PORT_FILE: &str = "port_file";
pub const READ_TIMEOUT: &str = "read_timeout";
pub const WRITE_TIMEOUT: &str = "write_timeout";
pub const EXEC_TIMEOUT: &str = "exec_timeout";
pub const MAX_INFLIGHT: &str = "max_inflight";
pub const SERVE_THREADS: &str = "serve_threads";
pub const MAX_BODY_BYTES: &str = "max_body_bytes";
pub const MAX_OUTPUT_BYTES: &str = "max_output_bytes";
pub const COMBINE_OUTPUT: &str = "combine_output";
pub const CONTENT_TYPE: &str = "content_type";
pub const CGI_HEADERS: &str = "cgi_headers";
pub const WRITE_DEBUG: &str = "write_debug";
pub const SUPPRESS_LOCK: &str = "suppress_lock";
pub const HEALTHCHECK_INTERVAL: &str = "healthcheck_interval";
pub const REAPER: &str = "reaper";
/// What `X-Served-By` says: Docker sets it to the container's name, the
/// process provider to the replica's id.
pub const HOSTNAME: &str = "HOSTNAME";

/// More serving threads than this is a typo, not a machine.
pub const MAX_SERVE_THREADS: usize = 1024;

pub const DEFAULT_UPSTREAM_URL: &str = "http://127.0.0.1:8082";
pub const DEFAULT_BIND_ADDRESS: &str = "0.0.0.0";
pub const DEFAULT_PORT: u16 = 8080;
pub const DEFAULT_METRICS_PORT: u16 = 8081;
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_EXEC_TIMEOUT: Duration = Duration::from_secs(10);
/// Fork mode buffers a function's whole output; this keeps one runaway
/// function from exhausting the container's memory.
pub const DEFAULT_MAX_OUTPUT_BYTES: u64 = 64 * 1024 * 1024;
/// Name of the health lock file inside the temporary directory (`$TMPDIR`,
/// `/tmp` by default).
pub const LOCK_FILE_NAME: &str = ".lock";

/// How the function's process is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A process per request, output buffered, status from the exit code.
    Fork,
    /// A process per request, request and response bodies streamed.
    Stream,
    /// One long-lived process that is itself an HTTP server.
    Http,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Fork => "fork",
            Mode::Stream => "stream",
            Mode::Http => "http",
        }
    }
}

/// Everything the watchdog needs to know, parsed and validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// Program followed by its arguments.
    pub fprocess: Vec<String>,
    pub mode: Mode,
    /// `http` mode only.
    pub upstream_url: Uri,
    pub bind_address: IpAddr,
    pub port: u16,
    pub metrics_port: u16,
    /// Written with the bound port once listening (`port_file`).
    pub port_file: Option<PathBuf>,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    /// `None` when set to 0: no limit.
    pub exec_timeout: Option<Duration>,
    /// 0: unlimited.
    pub max_inflight: usize,
    /// Threads serving connections, each its own event loop (1: all on
    /// the main runtime). Default: one per CPU in `http` mode, else 1.
    pub serve_threads: usize,
    /// 0: unlimited.
    pub max_body_bytes: u64,
    pub max_output_bytes: u64,
    pub combine_output: bool,
    pub content_type: Option<HeaderValue>,
    pub cgi_headers: bool,
    pub write_debug: bool,
    pub suppress_lock: bool,
    pub healthcheck_interval: Duration,
    pub lock_path: PathBuf,
    /// How process exits are learnt of; `auto` is right everywhere but on
    /// kernels (or seccomp profiles) without pidfds, where it falls back.
    pub reaper: crate::process::Strategy,
    /// `HOSTNAME`, when set (else the host name is asked for).
    pub hostname: Option<String>,
}

/// A configuration problem, naming the variable at fault.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{var} is required: set it to the command to run, e.g. {var}=cat")]
    Missing { var: &'static str },
    #[error("{var}={value:?} is invalid: {reason}")]
    Invalid {
        var: &'static str,
        value: String,
        reason: String,
    },
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads configuration through `lookup`, so tests need not touch the
    /// process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let get = |var: &'static str| lookup(var).filter(|v| !v.trim().is_empty());

        let fprocess: Vec<String> = get(FPROCESS)
            .ok_or(ConfigError::Missing { var: FPROCESS })?
            .split_whitespace()
            .map(str::to_owned)
            .collect();

        let mode = match get(MODE) {
            None => Mode::Fork,
            Some(v) => match v.trim().to_ascii_lowercase().as_str() {
                "fork" => Mode::Fork,
                "stream" | "streaming" => Mode::Stream,
                "http" => Mode::Http,
                _ => return Err(invalid(MODE, &v, "expected one of fork, stream, http")),
            },
        };

        let upstream_url = match get(UPSTREAM_URL) {
            None => Uri::from_static(DEFAULT_UPSTREAM_URL),
            Some(v) => parse_upstream(&v).map_err(|reason| invalid(UPSTREAM_URL, &v, reason))?,
        };

        let bind_address = parse_with(
            get(BIND_ADDRESS),
            BIND_ADDRESS,
            DEFAULT_BIND_ADDRESS.parse().unwrap(),
            |v| {
                v.parse::<IpAddr>()
                    .map_err(|_| "expected an IP address such as 0.0.0.0 or 127.0.0.1".into())
            },
        )?;
        let port = parse_with(get(PORT), PORT, DEFAULT_PORT, parse_port)?;
        let metrics_port = parse_with(
            get(METRICS_PORT),
            METRICS_PORT,
            DEFAULT_METRICS_PORT,
            parse_port,
        )?;
        let read_timeout = parse_with(
            get(READ_TIMEOUT),
            READ_TIMEOUT,
            DEFAULT_READ_TIMEOUT,
            parse_duration,
        )?;
        let write_timeout = parse_with(
            get(WRITE_TIMEOUT),
            WRITE_TIMEOUT,
            DEFAULT_WRITE_TIMEOUT,
            parse_duration,
        )?;
        let exec_timeout = parse_with(
            get(EXEC_TIMEOUT),
            EXEC_TIMEOUT,
            DEFAULT_EXEC_TIMEOUT,
            parse_duration,
        )?;
        let max_inflight = parse_with(get(MAX_INFLIGHT), MAX_INFLIGHT, 0, |v| {
            v.parse::<usize>()
                .map_err(|_| "expected a whole number (0 means unlimited)".into())
        })?;
        // http mode is a proxy: a thread per CPU, like nginx's workers.
        // fork and stream modes spend each call in a child process; one
        // multi-threaded runtime keeps spreading their spawns and pipes
        // over the CPUs, whichever connection they came on.
        let default_threads = match mode {
            Mode::Http => faas_common::serve::default_threads(),
            Mode::Fork | Mode::Stream => 1,
        };
        let serve_threads = parse_with(get(SERVE_THREADS), SERVE_THREADS, default_threads, |v| {
            match v.parse::<usize>() {
                Ok(n) if (1..=MAX_SERVE_THREADS).contains(&n) => Ok(n),
                _ => Err(format!(
                    "expected a whole number from 1 to {MAX_SERVE_THREADS} (default: one per CPU in http mode, else 1)"
                )),
            }
        })?;
        let max_body_bytes = parse_with(get(MAX_BODY_BYTES), MAX_BODY_BYTES, 0, parse_bytes)?;
        let max_output_bytes = parse_with(
            get(MAX_OUTPUT_BYTES),
            MAX_OUTPUT_BYTES,
            DEFAULT_MAX_OUTPUT_BYTES,
            parse_bytes,
        )?;
        let combine_output = parse_with(get(COMBINE_OUTPUT), COMBINE_OUTPUT, false, parse_bool)?;
        let content_type = match get(CONTENT_TYPE) {
            None => None,
            Some(v) => Some(
                HeaderValue::from_str(v.trim())
                    .map_err(|_| invalid(CONTENT_TYPE, &v, "not a valid header value"))?,
            ),
        };
        let cgi_headers = parse_with(get(CGI_HEADERS), CGI_HEADERS, true, parse_bool)?;
        let write_debug = parse_with(get(WRITE_DEBUG), WRITE_DEBUG, false, parse_bool)?;
        let suppress_lock = parse_with(get(SUPPRESS_LOCK), SUPPRESS_LOCK, false, parse_bool)?;
        let healthcheck_interval = parse_with(
            get(HEALTHCHECK_INTERVAL),
            HEALTHCHECK_INTERVAL,
            write_timeout,
            parse_duration,
        )?;

        let reaper = match get(REAPER) {
            None => crate::process::Strategy::Auto,
            Some(v) => match v.trim().to_ascii_lowercase().as_str() {
                "auto" => crate::process::Strategy::Auto,
                "pidfd" => crate::process::Strategy::Pidfd,
                "thread" => crate::process::Strategy::Thread,
                _ => return Err(invalid(REAPER, &v, "expected one of auto, pidfd, thread")),
            },
        };

        if max_output_bytes == 0 {
            return Err(invalid(
                MAX_OUTPUT_BYTES,
                "0",
                "must be above 0 (use mode=stream for unbounded output)",
            ));
        }

        Ok(Config {
            fprocess,
            mode,
            upstream_url,
            bind_address,
            port,
            metrics_port,
            port_file: get(PORT_FILE).map(PathBuf::from),
            read_timeout,
            write_timeout,
            exec_timeout: (!exec_timeout.is_zero()).then_some(exec_timeout),
            max_inflight,
            serve_threads,
            max_body_bytes,
            max_output_bytes,
            combine_output,
            content_type,
            cgi_headers,
            write_debug,
            suppress_lock,
            healthcheck_interval,
            lock_path: std::env::temp_dir().join(LOCK_FILE_NAME),
            reaper,
            hostname: get(HOSTNAME).map(|h| h.trim().to_owned()),
        })
    }
}

fn invalid(var: &'static str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        var,
        value: value.to_owned(),
        reason: reason.into(),
    }
}

fn parse_with<T>(
    value: Option<String>,
    var: &'static str,
    default: T,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<T, ConfigError> {
    match value {
        None => Ok(default),
        Some(v) => parse(v.trim()).map_err(|reason| invalid(var, &v, reason)),
    }
}

/// Where `fwatchdog --healthcheck` asks: `port` on `bind_address`, or on
/// 127.0.0.1 when that is a wildcard. Reads only these two, so the probe
/// works even when the rest of the configuration would not.
pub fn healthcheck_target(
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<std::net::SocketAddr, ConfigError> {
    let present = |var: &'static str| lookup(var).filter(|v| !v.trim().is_empty());
    let port = parse_with(present(PORT), PORT, DEFAULT_PORT, parse_port)?;
    let bind = parse_with(
        present(BIND_ADDRESS),
        BIND_ADDRESS,
        DEFAULT_BIND_ADDRESS.parse().unwrap(),
        |v| {
            v.parse::<IpAddr>()
                .map_err(|_| "expected an IP address such as 0.0.0.0 or 127.0.0.1".into())
        },
    )?;
    let host = if bind.is_unspecified() {
        IpAddr::from([127, 0, 0, 1])
    } else {
        bind
    };
    Ok(std::net::SocketAddr::new(host, port))
}

fn parse_port(v: &str) -> Result<u16, String> {
    v.parse::<u16>()
        .map_err(|_| "expected a TCP port number between 0 and 65535".into())
}

fn parse_upstream(v: &str) -> Result<Uri, String> {
    let uri: Uri = v
        .trim()
        .parse()
        .map_err(|_| "expected a URL such as http://127.0.0.1:8082".to_string())?;
    if uri.scheme_str() != Some("http") {
        return Err("only http:// upstreams are supported".into());
    }
    if uri.host().is_none() {
        return Err("the URL has no host".into());
    }
    if uri.path() != "/" && !uri.path().is_empty() {
        return Err("give only scheme, host and port; the request path is appended".into());
    }
    Ok(uri)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_follow_the_brief() {
        let c = config(&[("fprocess", "cat")]).unwrap();
        assert_eq!(c.fprocess, vec!["cat"]);
        assert_eq!(c.mode, Mode::Fork);
        assert_eq!(c.upstream_url, "http://127.0.0.1:8082");
        assert_eq!((c.port, c.metrics_port), (8080, 8081));
        assert_eq!(c.read_timeout, Duration::from_secs(10));
        assert_eq!(c.write_timeout, Duration::from_secs(10));
        assert_eq!(c.exec_timeout, Some(Duration::from_secs(10)));
        assert_eq!(c.max_inflight, 0);
        assert_eq!(c.serve_threads, 1);
        let http = config(&[("fprocess", "srv"), ("mode", "http")]).unwrap();
        assert_eq!(http.serve_threads, faas_common::serve::default_threads());
        assert!(!c.combine_output && c.cgi_headers && !c.write_debug && !c.suppress_lock);
        assert_eq!(c.content_type, None);
        assert_eq!(c.healthcheck_interval, c.write_timeout);
        assert!(c.lock_path.ends_with(".lock"));
    }

    #[test]
    fn fprocess_is_split_on_whitespace() {
        let c = config(&[("fprocess", "  wc   -l\t-c ")]).unwrap();
        assert_eq!(c.fprocess, vec!["wc", "-l", "-c"]);
    }

    #[test]
    fn missing_or_empty_fprocess_names_the_variable() {
        for vars in [&[][..], &[("fprocess", "   ")][..]] {
            let err = config(vars).unwrap_err();
            assert_eq!(err, ConfigError::Missing { var: FPROCESS });
            assert!(err.to_string().starts_with("fprocess is required"));
        }
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (var, value) in [
            ("mode", "lambda"),
            ("exec_timeout", "soon"),
            ("read_timeout", "10 parsecs"),
            ("write_timeout", "-1s"),
            ("healthcheck_interval", "x"),
            ("port", "80800"),
            ("metrics_port", "http"),
            ("max_inflight", "-3"),
            ("max_body_bytes", "12 bananas"),
            ("combine_output", "maybe"),
            ("cgi_headers", "2"),
            ("upstream_url", "ftp://x:1"),
            ("bind_address", "localhost"),
            ("reaper", "sometimes"),
            ("serve_threads", "0"),
            ("serve_threads", "two"),
            ("serve_threads", "100000"),
        ] {
            let err = config(&[("fprocess", "cat"), (var, value)]).unwrap_err();
            let msg = err.to_string();
            assert!(msg.starts_with(&format!("{var}=")), "{var}: {msg}");
            assert!(msg.contains(value), "{var}: {msg}");
        }
    }

    #[test]
    fn zero_exec_timeout_means_none() {
        let c = config(&[("fprocess", "cat"), ("exec_timeout", "0")]).unwrap();
        assert_eq!(c.exec_timeout, None);
    }

    #[test]
    fn healthcheck_interval_defaults_to_write_timeout() {
        let c = config(&[("fprocess", "cat"), ("write_timeout", "3s")]).unwrap();
        assert_eq!(c.healthcheck_interval, Duration::from_secs(3));
    }

    #[test]
    fn upstream_url_must_be_plain_http() {
        assert!(config(&[("fprocess", "x"), ("upstream_url", "http://127.0.0.1:9000")]).is_ok());
        assert!(config(&[("fprocess", "x"), ("upstream_url", "https://a:1")]).is_err());
        assert!(config(&[("fprocess", "x"), ("upstream_url", "http://a:1/path")]).is_err());
    }
}
