//! Shared helpers: a real gateway (process provider, ephemeral loopback
//! port) and the real `faas` binary run against it, each test in its own
//! directory with its own config file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

pub use testkit::fixtures::DENY_PY;
use testkit::proc::{Log, field, start_until};

pub const FAAS: &str = env!("CARGO_BIN_EXE_faas");

/// The gateway binary `cargo test --workspace` built beside `faas` (a
/// test never builds it: a missing or stale one is a failure saying so).
pub fn gateway_bin() -> PathBuf {
    testkit::bin::sibling(
        FAAS,
        "gateway",
        &["gateway/src", "watchdog/src", "common/src"],
    )
}

/// A running gateway, killed (with its functions) when dropped, plus a
/// scratch directory for stack files and the CLI's config.
pub struct Gateway {
    child: Child,
    pub url: String,
    pub dir: tempfile::TempDir,
    log: Log,
}

impl Gateway {
    /// An open gateway.
    pub fn start() -> Gateway {
        Gateway::start_with(&[])
    }

    /// A gateway with extra environment (`basic_auth_user`, …).
    pub fn start_with(env: &[(&str, &str)]) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let secrets = dir.path().join("secrets");
        std::fs::create_dir_all(&secrets).unwrap();
        let mut cmd = Command::new(gateway_bin());
        cmd.args(testkit::proc::LOCAL_GATEWAY)
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            // Builds from source run the host's cargo (rustup finds its
            // toolchains from HOME), pip and npm.
            .envs(
                ["HOME", "CARGO_HOME", "RUSTUP_HOME"]
                    .into_iter()
                    .filter_map(|k| Some((k, std::env::var_os(k)?))),
            )
            .env("RUST_LOG", "info")
            .env("secret_mount_path", &secrets)
            // Each gateway its own async queue and state, gone with the test.
            .env("queue_path", dir.path().join("queue.redb"))
            .env("state_dir", dir.path().join("state"))
            // Without credentials, an open API, chosen explicitly.
            .envs(
                env.iter()
                    .all(|(k, _)| !k.starts_with("basic_auth"))
                    .then_some(("auth", "none")),
            )
            .envs(env.iter().copied());
        let log = Log::default();
        let (child, line) = start_until(cmd, "listening", Duration::from_secs(30), &log);
        let addr = field(&line, "addr=");
        let port = addr.rsplit(':').next().unwrap();
        Gateway {
            child,
            url: format!("http://127.0.0.1:{port}"),
            dir,
            log,
        }
    }

    pub fn log(&self) -> String {
        self.log.text()
    }

    /// Writes a file into the scratch directory; returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Writes `stack.yml` with these functions (YAML under `functions:`).
    pub fn stack(&self, functions: &str) -> PathBuf {
        self.write(
            "stack.yml",
            &format!("provider:\n  name: openfaas\nfunctions:\n{functions}"),
        )
    }

    /// The CLI's config file for this test.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("home/.config/faas/config.json")
    }

    /// `faas` aimed at this gateway, with an empty stdin.
    pub fn faas(&self, args: &[&str]) -> Run {
        self.faas_cmd().args(args).run()
    }

    /// `faas` aimed at this gateway, with `stdin`.
    pub fn faas_stdin(&self, args: &[&str], stdin: &[u8]) -> Run {
        self.faas_cmd().args(args).stdin(stdin).run()
    }

    /// A `faas` command with this test's environment, to adjust.
    pub fn faas_cmd(&self) -> Faas {
        Faas::new(self.dir.path()).env("FAAS_GATEWAY", &self.url)
    }

    /// Deploys `stack.yml` and insists it worked.
    pub fn deploy(&self, functions: &str) {
        let stack = self.stack(functions);
        let run = self.faas(&["deploy", "-f", stack.to_str().unwrap()]);
        run.assert_ok();
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `faas` invocation being put together.
pub struct Faas {
    command: Command,
    stdin: Option<Vec<u8>>,
}

impl Faas {
    /// `faas` with a clean environment: HOME in `dir`, no stored login, no
    /// proxies (cargo's and rustup's homes kept, for the rust template).
    pub fn new(dir: &Path) -> Faas {
        let mut command = Command::new(FAAS);
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", dir.join("home"))
            .current_dir(dir);
        // The rust template compiles where faas runs: cargo and rustup keep
        // their toolchains under the real home, not this test's.
        if let Some(home) = std::env::var_os("HOME").map(PathBuf::from) {
            for (var, default) in [("CARGO_HOME", ".cargo"), ("RUSTUP_HOME", ".rustup")] {
                let value = std::env::var_os(var).map_or_else(|| home.join(default), PathBuf::from);
                command.env(var, value);
            }
        }
        Faas {
            command,
            stdin: None,
        }
    }

    pub fn env(mut self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> Faas {
        self.command.env(key, value);
        self
    }

    pub fn args(mut self, args: &[&str]) -> Faas {
        self.command.args(args);
        self
    }

    pub fn stdin(mut self, body: &[u8]) -> Faas {
        self.stdin = Some(body.to_vec());
        self
    }

    pub fn run(mut self) -> Run {
        self.command
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = self.command.spawn().expect("run faas");
        if let Some(body) = self.stdin.take() {
            let mut stdin = child.stdin.take().unwrap();
            std::thread::spawn(move || {
                let _ = stdin.write_all(&body);
            });
        }
        Run(child.wait_with_output().expect("wait for faas"))
    }

    /// Starts `faas` and leaves it running (for `logs --follow`).
    pub fn spawn(mut self) -> Child {
        self.command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start faas")
    }
}

/// A finished `faas` run.
pub struct Run(pub Output);

impl Run {
    pub fn code(&self) -> Option<i32> {
        self.0.status.code()
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }

    /// Exit 0, or a panic showing what went wrong.
    pub fn assert_ok(&self) -> &Run {
        assert_eq!(
            self.code(),
            Some(0),
            "faas failed\nstdout: {}\nstderr: {}",
            self.stdout(),
            self.stderr()
        );
        self
    }

    /// Exit 1 with one `faas: …` line on stderr containing `text`.
    pub fn assert_fails_with(&self, text: &str) -> &Run {
        let stderr = self.stderr();
        assert_eq!(
            self.code(),
            Some(1),
            "expected exit 1\nstdout: {}\nstderr: {stderr}",
            self.stdout()
        );
        assert!(
            stderr.starts_with("faas: ") && stderr.contains(text),
            "expected {text:?} in stderr: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
        self
    }
}

/// Runs `check` (which usually runs `faas`) every 100 ms until it holds
/// or `limit` passes.
pub fn eventually(limit: Duration, check: impl FnMut() -> bool) -> bool {
    testkit::wait::eventually_blocking(limit, Duration::from_millis(100), check)
}

/// The row of `faas list` output for `name`, split into columns.
pub fn list_row(list: &str, name: &str) -> Option<Vec<String>> {
    list.lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .find(|cols| cols.first().map(String::as_str) == Some(name))
}
