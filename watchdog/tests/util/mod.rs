//! Shared helpers: start the real `fwatchdog` binary on ephemeral loopback
//! ports, talk HTTP to it, and inspect its processes through /proc.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub use testkit::http::*;
use testkit::proc::{Log, field, start_until};
pub use testkit::proc::{children_of, process_exists};
pub use testkit::wait::eventually;

pub const BIN: &str = env!("CARGO_BIN_EXE_fwatchdog");

/// A running watchdog, killed when dropped.
pub struct Watchdog {
    child: Child,
    pub addr: SocketAddr,
    pub metrics: SocketAddr,
    pub dir: tempfile::TempDir,
    log: Log,
}

/// The environment every test watchdog starts from: loopback, ephemeral
/// ports, its own temporary directory (so each has its own lock file) and
/// no drain delay unless a test asks for one.
fn base_command(dir: &Path, vars: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("TMPDIR", dir)
        .env("bind_address", "127.0.0.1")
        .env("port", "0")
        .env("metrics_port", "0")
        .env("healthcheck_interval", "0s")
        .env("RUST_LOG", "debug");
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd
}

impl Watchdog {
    pub fn start(vars: &[(&str, &str)]) -> Watchdog {
        let dir = tempfile::tempdir().unwrap();
        Watchdog::start_in(dir, vars)
    }

    /// Starts in a prepared directory (for tests that put scripts in it).
    pub fn start_in(dir: tempfile::TempDir, vars: &[(&str, &str)]) -> Watchdog {
        Watchdog::start_custom(dir, vars, |_| {})
    }

    /// Starts with SIGCHLD ignored, as some process managers leave it.
    pub fn start_ignoring_sigchld(vars: &[(&str, &str)]) -> Watchdog {
        use std::os::unix::process::CommandExt;
        Watchdog::start_custom(tempfile::tempdir().unwrap(), vars, |cmd| {
            // SAFETY: signal() is async-signal-safe.
            unsafe {
                cmd.pre_exec(|| {
                    libc::signal(libc::SIGCHLD, libc::SIG_IGN);
                    Ok(())
                });
            }
        })
    }

    fn start_custom(
        dir: tempfile::TempDir,
        vars: &[(&str, &str)],
        customize: impl FnOnce(&mut Command),
    ) -> Watchdog {
        let mut cmd = base_command(dir.path(), vars);
        customize(&mut cmd);
        let log = Log::default();
        let (child, line) = start_until(cmd, "listening", Duration::from_secs(10), &log);
        Watchdog {
            addr: field(&line, "addr=").parse().unwrap(),
            metrics: field(&line, "metrics_addr=").parse().unwrap(),
            child,
            dir,
            log,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn lock_path(&self) -> PathBuf {
        self.dir.path().join(".lock")
    }

    pub fn log(&self) -> String {
        self.log.text()
    }

    pub fn signal(&self, signal: i32) {
        testkit::proc::signal(self.pid(), signal);
    }

    /// Waits for the watchdog to exit, up to `limit`.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        testkit::proc::wait_exit(&mut self.child, limit).await
    }

    /// The watchdog's direct child processes.
    pub fn children(&self) -> Vec<i32> {
        children_of(self.pid())
    }

    pub fn rss_kib(&self, field: &str) -> u64 {
        testkit::proc::memory_kib(self.pid(), field)
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the binary to completion with `vars` (for configuration errors):
/// returns its exit status and stderr.
pub fn run_to_exit(vars: &[(&str, &str)], args: &[&str]) -> (ExitStatus, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = base_command(dir.path(), vars);
    cmd.args(args);
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            return (status, err);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("fwatchdog {args:?} with {vars:?} did not exit");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A free loopback port (bound then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Writes an executable shell script into `dir`.
pub fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    path
}
