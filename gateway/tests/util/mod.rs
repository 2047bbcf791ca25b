//! Shared helpers: start the real `gateway` binary with the process
//! provider on an ephemeral loopback port, and talk HTTP to it.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus};
use std::time::Duration;

pub use testkit::fixtures::DENY_PY;
pub use testkit::http::*;
use testkit::proc::{Log, field, start_until};
pub use testkit::proc::{children_of, process_exists};
pub use testkit::wait::{eventually, eventually_async};

pub const BIN: &str = env!("CARGO_BIN_EXE_gateway");

/// A running gateway, killed (with its functions) when dropped.
pub struct Gateway {
    child: Child,
    pub addr: SocketAddr,
    /// The CoAP endpoint (UDP), unless `--coap-port off`.
    pub coap: Option<SocketAddr>,
    /// The gRPC endpoint, unless `--grpc-port off`.
    pub grpc: Option<SocketAddr>,
    pub dir: tempfile::TempDir,
    log: Log,
    /// What it was started with, for [`Gateway::restart`].
    flags: Vec<String>,
    env: Vec<(String, String)>,
}

impl Gateway {
    /// Starts a gateway running `stack` (a stack file's text, written into a
    /// fresh directory together with `files`) and extra flags.
    pub fn start(stack: &str, files: &[(&str, &str)], flags: &[&str]) -> Gateway {
        Gateway::start_with_env(stack, files, flags, &[])
    }

    /// [`Gateway::start`] with extra environment variables (the gateway
    /// otherwise gets only `PATH` and `RUST_LOG`).
    pub fn start_with_env(
        stack: &str,
        files: &[(&str, &str)],
        flags: &[&str],
        env: &[(&str, &str)],
    ) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        for (name, body) in files {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, body).unwrap();
        }
        std::fs::write(dir.path().join("stack.yml"), stack).unwrap();
        let flags: Vec<String> = flags.iter().map(|f| (*f).to_owned()).collect();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let log = Log::default();
        let (child, addr, [coap, grpc]) = launch(dir.path(), &flags, &env, &log);
        Gateway {
            child,
            addr,
            coap,
            grpc,
            dir,
            log,
            flags,
            env,
        }
    }

    /// Kills the gateway with SIGKILL (unless it has exited already) and
    /// starts it again on the same directory: same stack, same queue file,
    /// same flags. It listens on a new port (`addr` changes).
    pub fn restart(&mut self) {
        self.kill();
        self.log.note("---- restarted ----");
        let (child, addr, [coap, grpc]) =
            launch(self.dir.path(), &self.flags, &self.env, &self.log);
        self.child = child;
        self.addr = addr;
        self.coap = coap;
        self.grpc = grpc;
    }

    /// SIGKILL, and waits until it is gone (its functions get SIGTERM from
    /// their parent-death signal).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn log(&self) -> String {
        self.log.text()
    }

    pub fn signal(&self, signal: i32) {
        testkit::proc::signal(self.pid(), signal);
    }

    pub async fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        testkit::proc::wait_exit(&mut self.child, limit).await
    }

    /// The gateway's child processes (the function replicas).
    pub fn children(&self) -> Vec<i32> {
        children_of(self.pid())
    }

    pub fn rss_kib(&self, field: &str) -> u64 {
        testkit::proc::memory_kib(self.pid(), field)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        // Children die with it (their parent-death signal).
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the gateway binary on `dir`'s stack.yml and queue.redb, and
/// waits until it listens; its stderr is appended to `log`.
fn launch(
    dir: &Path,
    flags: &[String],
    env: &[(String, String)],
    log: &Log,
) -> (Child, SocketAddr, [Option<SocketAddr>; 2]) {
    // Tests that do not set up authentication (credentials or `--auth`)
    // choose an open API, as an operator would, explicitly.
    let configures_auth = flags.iter().any(|f| {
        f == "--auth"
            || f.starts_with("--auth=")
            || f.starts_with("--basic-auth")
            || f == "--secret-mount-path"
    }) || env
        .iter()
        .any(|(k, _)| k.starts_with("basic_auth") || k == "auth" || k == "secret_mount_path");
    let open: &[&str] = if configures_auth {
        &[]
    } else {
        &["--auth", "none"]
    };
    let mut cmd = Command::new(BIN);
    cmd.args(testkit::proc::LOCAL_GATEWAY)
        .arg("--queue-path")
        .arg(dir.join("queue.redb"))
        .arg("--state-dir")
        .arg(dir.join("state"))
        .args(open)
        .arg("-f")
        .arg(dir.join("stack.yml"))
        .args(flags)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "info")
        .envs(env.iter().map(|(k, v)| (k, v)));
    let (child, line) = start_until(cmd, "gateway: listening", Duration::from_secs(30), log);
    let addr: SocketAddr = field(&line, "addr=").parse().unwrap();
    let other = |name: &str| {
        field(&line, name)
            .parse::<SocketAddr>()
            .ok()
            .map(|a| SocketAddr::from(([127, 0, 0, 1], a.port())))
    };
    (
        child,
        SocketAddr::from(([127, 0, 0, 1], addr.port())),
        [other("coap="), other("grpc=")],
    )
}

/// `gateway_function_invocation_total` for `function` and `code`, from
/// the gateway's `/metrics` (0 when it has no such line).
pub async fn invocations(addr: SocketAddr, function: &str, code: u16) -> u64 {
    let metrics = get(addr, "/metrics").await.text();
    let labels = [
        format!("function_name=\"{function}\""),
        format!("code=\"{code}\""),
    ];
    metrics
        .lines()
        .filter(|l| l.starts_with("gateway_function_invocation_total{"))
        .filter(|l| labels.iter().all(|label| l.contains(label.as_str())))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

/// A program from the Python venv `./build.sh test` fills
/// (`target/python-client`), or the one `variable` names; `what` says
/// which package to install when it is missing.
pub fn python_tool(variable: &str, program: &str, what: &str) -> std::path::PathBuf {
    let path = std::env::var_os(variable)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../target/python-client/bin")
                .join(program)
        });
    assert!(
        path.exists(),
        "no {program} at {}: run ./build.sh test (it pip-installs {what} into target/python-client) or set {variable}",
        path.display()
    );
    path
}
