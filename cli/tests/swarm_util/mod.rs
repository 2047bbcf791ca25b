//! Helpers for the `faas` CLI on the real Swarm stack of `./build.sh up`:
//! the stack's gateway and credentials, the CLI aimed at it with a private
//! config file, test stack files made from `sample-functions/stack.yml`, a
//! guard that removes whatever a test deployed, plain HTTP calls and a load
//! generator.
//!
//! The gateway is `FAAS_GATEWAY_URL` (default `http://127.0.0.1:8080`); the
//! credentials are `.secrets/basic-auth-user` and
//! `.secrets/basic-auth-password` at the repository's root.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use faas_common::stack::Stack;

use crate::util::{FAAS, Faas, Run};
use testkit::swarm;
pub use testkit::swarm::{service_ps, try_docker};

/// The sample images the tests deploy; `./build.sh up` builds them.
pub const IMAGES: &[&str] = &[
    "faas/catservice:latest",
    "faas/env:latest",
    "faas/wordcount:latest",
];
/// Longest any single HTTP call may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// The stack under test, and a scratch directory holding this test's CLI
/// config and stack files.
pub struct Swarm {
    pub gateway: String,
    pub user: String,
    password: String,
    pub cli: Cli,
    pub http: Http,
    dir: tempfile::TempDir,
    /// Held for the whole test: the tests time deploys and count failed
    /// calls on a shared two-CPU machine, so they run one at a time.
    _serial: MutexGuard<'static, ()>,
}

impl Swarm {
    /// The stack, once Docker, Swarm, the images, the gateway and its
    /// credentials are all there; else a panic saying what is missing.
    pub fn connect() -> Swarm {
        let serial = swarm::serial();
        let gateway = swarm::gateway_url();
        let http = Http::new(&gateway);
        let (user, password) =
            swarm::require(swarm::check(&gateway, IMAGES).and_then(|()| swarm::credentials()));
        let dir = tempfile::tempdir().expect("a scratch directory");
        let cli = Cli {
            dir: dir.path().to_owned(),
            gateway: gateway.clone(),
        };
        Swarm {
            gateway,
            user,
            password,
            cli,
            http,
            dir,
            _serial: serial,
        }
    }

    /// `faas login` with the stack's credentials on stdin; insists it
    /// worked.
    pub fn login(&self) -> Run {
        let run = self.faas_stdin(
            &["login", "--username", &self.user, "--password-stdin"],
            format!("{}\n", self.password).as_bytes(),
        );
        run.assert_ok();
        run
    }

    /// `faas args…` with an empty stdin.
    pub fn faas(&self, args: &[&str]) -> Run {
        self.cli.command().args(args).run()
    }

    /// `faas args…` with `stdin`.
    pub fn faas_stdin(&self, args: &[&str], stdin: &[u8]) -> Run {
        self.cli.command().args(args).stdin(stdin).run()
    }

    /// Writes a file into the scratch directory; returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write into the scratch directory");
        path
    }

    /// A guard removing what a test deploys, even when it fails.
    pub fn cleanup(&self) -> Cleanup {
        Cleanup {
            cli: self.cli.clone(),
            functions: Vec::new(),
            secrets: Vec::new(),
        }
    }
}

/// Where the `faas` binary's environment comes from: the gateway and the
/// scratch directory (HOME, and the private `FAAS_CONFIG`).
#[derive(Debug, Clone)]
pub struct Cli {
    dir: PathBuf,
    gateway: String,
}

impl Cli {
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("faas-config.json")
    }

    /// `faas` with a clean environment aimed at the stack's gateway.
    pub fn command(&self) -> Faas {
        Faas::new(&self.dir)
            .env("FAAS_GATEWAY", &self.gateway)
            .env("FAAS_CONFIG", self.config_path())
    }
}

/// A prefix for this test's names: unique per process and per call, so
/// concurrent runs and leftovers of killed ones never collide.
pub fn unique_prefix() -> String {
    static N: Mutex<u32> = Mutex::new(0);
    let mut n = N.lock().unwrap_or_else(|e| e.into_inner());
    *n += 1;
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    format!("e2e{}{}x{:03x}", std::process::id(), *n, nanos % 0xfff)
}

/// One function of a test stack file.
#[derive(Debug, Clone)]
pub struct TestFunction {
    pub name: String,
    pub image: String,
    pub fprocess: Option<String>,
    pub environment: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub secrets: Vec<String>,
}

impl TestFunction {
    /// `sample` of `sample-functions/stack.yml` (image, fprocess,
    /// environment) under a new name, labelled `faas.test=swarm`.
    pub fn from_sample(sample: &str, name: &str) -> TestFunction {
        let path = Path::new(REPO).join("sample-functions/stack.yml");
        let stack = Stack::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let spec = stack
            .functions
            .get(sample)
            .unwrap_or_else(|| panic!("no function {sample:?} in {}", path.display()));
        let mut function = TestFunction::new(
            name,
            spec.image
                .as_deref()
                .unwrap_or_else(|| panic!("{sample} has no image")),
        );
        function.fprocess = spec.fprocess.clone();
        function.environment = spec.environment.clone();
        function
    }

    /// A function running `image`, labelled `faas.test=swarm`.
    pub fn new(name: &str, image: &str) -> TestFunction {
        TestFunction {
            name: name.to_owned(),
            image: image.to_owned(),
            fprocess: None,
            environment: BTreeMap::new(),
            labels: [("faas.test".to_owned(), "swarm".to_owned())].into(),
            secrets: Vec::new(),
        }
    }
}

/// A stack file in faas-cli's format. Scalars are written as JSON strings,
/// which YAML reads as double-quoted scalars, so no value needs escaping
/// rules of its own.
pub fn stack_yaml(gateway: &str, functions: &[TestFunction]) -> String {
    let q = |s: &str| serde_json::to_string(s).expect("a string encodes");
    let mut out = format!(
        "version: 1.0\nprovider:\n  name: faas\n  gateway: {}\nfunctions:\n",
        q(gateway)
    );
    for f in functions {
        out.push_str(&format!("  {}:\n    image: {}\n", q(&f.name), q(&f.image)));
        if let Some(fprocess) = &f.fprocess {
            out.push_str(&format!("    fprocess: {}\n", q(fprocess)));
        }
        for (section, map) in [("environment", &f.environment), ("labels", &f.labels)] {
            if !map.is_empty() {
                out.push_str(&format!("    {section}:\n"));
                for (k, v) in map {
                    out.push_str(&format!("      {}: {}\n", q(k), q(v)));
                }
            }
        }
        if !f.secrets.is_empty() {
            out.push_str("    secrets:\n");
            for s in &f.secrets {
                out.push_str(&format!("      - {}\n", q(s)));
            }
        }
    }
    out
}

/// Removes a test's functions and secrets when dropped, whatever state the
/// test left them in: `faas remove`, then `docker service rm` in case the
/// CLI or the gateway could not; secrets after the functions using them.
/// Never panics (it runs while a failed test unwinds).
pub struct Cleanup {
    cli: Cli,
    functions: Vec<String>,
    secrets: Vec<String>,
}

impl Cleanup {
    pub fn function(&mut self, name: &str) {
        self.functions.push(name.to_owned());
    }

    pub fn secret(&mut self, name: &str) {
        self.secrets.push(name.to_owned());
    }

    /// The test removed it itself.
    pub fn removed(&mut self, name: &str) {
        self.functions.retain(|f| f != name);
        self.secrets.retain(|s| s != name);
    }

    fn quietly(&self, args: &[&str]) -> bool {
        Command::new(FAAS)
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", &self.cli.dir)
            .env("FAAS_GATEWAY", &self.cli.gateway)
            .env("FAAS_CONFIG", self.cli.config_path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for name in &self.functions {
            self.quietly(&["remove", name]);
            if try_docker(&["service", "inspect", "--format", "{{.ID}}", name]).is_ok()
                && try_docker(&["service", "rm", name]).is_ok()
            {
                eprintln!("cleanup: faas remove left {name}; removed it with docker service rm");
            }
        }
        for name in &self.secrets {
            if !self.quietly(&["secret", "remove", name]) {
                let _ = try_docker(&["secret", "rm", name]);
            }
        }
    }
}

/// Whether Swarm has finished rolling out a service's update and only one
/// container of it is left (the replaced one has stopped).
pub fn rollout_done(service: &str) -> bool {
    let state = try_docker(&[
        "service",
        "inspect",
        service,
        "--format",
        "{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}",
    ])
    .unwrap_or_default();
    let containers = try_docker(&[
        "ps",
        "--quiet",
        "--filter",
        &format!("label=com.docker.swarm.service.name={service}"),
    ])
    .unwrap_or_default();
    state.trim() == "completed" && containers.lines().count() == 1
}

/// One answer of a function call.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub served_by: Option<String>,
    pub body: String,
}

/// Plain HTTP to the gateway, over pooled keep-alive connections (what a
/// client of the functions does, without the CLI in between).
#[derive(Clone)]
pub struct Http {
    base: String,
    agent: ureq::Agent,
}

impl Http {
    pub fn new(base: &str) -> Http {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(CALL_TIMEOUT))
            .build()
            .into();
        Http {
            base: base.trim_end_matches('/').to_owned(),
            agent,
        }
    }

    /// `POST /function/{name}` with `headers` and `body`.
    pub fn call(&self, name: &str, headers: &[(&str, &str)], body: &str) -> Result<Answer, String> {
        let mut request = self.agent.post(format!("{}/function/{name}", self.base));
        for (key, value) in headers {
            request = request.header(*key, *value);
        }
        let mut response = request.send(body).map_err(|e| e.to_string())?;
        let served_by = response
            .headers()
            .get("x-served-by")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response
            .body_mut()
            .read_to_string()
            .map_err(|e| e.to_string())?;
        Ok(Answer {
            status: response.status().as_u16(),
            served_by,
            body,
        })
    }
}

/// The outcome of one call made under load: `Err` says what was wrong (no
/// answer, a status other than 200, or a 200 the check refused).
#[derive(Debug, Clone)]
pub struct Outcome {
    pub at: Instant,
    pub result: Result<(), String>,
}

/// Judges a 200 answer: `Err` says what is wrong with it.
pub type Check = Arc<dyn Fn(&Answer) -> Result<(), String> + Send + Sync>;

/// `callers` threads calling a function in a loop until stopped, each
/// pausing `pause` between calls (the machine is shared: enough calls to
/// catch a dropped one, not so many that other work starves). Dropped
/// without [`Load::stop`] (a failing test), the callers just stop.
pub struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Vec<Outcome>>>,
}

impl Load {
    pub fn start(http: &Http, name: &str, callers: usize, pause: Duration, check: Check) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..callers)
            .map(|caller| {
                let http = http.clone();
                let stop = stop.clone();
                let check = check.clone();
                let name = name.to_owned();
                std::thread::spawn(move || {
                    let mut outcomes = Vec::new();
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let body = format!("caller {caller} call {n}");
                        n += 1;
                        let result = match http.call(&name, &[], &body) {
                            Ok(a) if a.status == 200 => check(&a),
                            Ok(a) => Err(format!(
                                "{} from {:?}: {:?}",
                                a.status,
                                a.served_by,
                                a.body.trim()
                            )),
                            Err(e) => Err(e),
                        };
                        outcomes.push(Outcome {
                            at: Instant::now(),
                            result,
                        });
                        std::thread::sleep(pause);
                    }
                    outcomes
                })
            })
            .collect();
        Load { stop, threads }
    }

    /// Stops the callers and returns every outcome, in time order.
    pub fn stop(mut self) -> Vec<Outcome> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all: Vec<Outcome> = std::mem::take(&mut self.threads)
            .into_iter()
            .flat_map(|t| t.join().expect("a load thread"))
            .collect();
        all.sort_by_key(|o| o.at);
        all
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The failed outcomes, one per line, timed from `since`.
pub fn failures(outcomes: &[Outcome], since: Instant) -> String {
    outcomes
        .iter()
        .filter_map(|o| {
            let t = o.at.saturating_duration_since(since).as_secs_f64();
            o.result.as_ref().err().map(|e| format!("  {t:.2}s: {e}"))
        })
        .collect::<Vec<_>>()
        .join("\n")
}
