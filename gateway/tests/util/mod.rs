//! Shared helpers: start the real `gateway` binary with the process
//! provider on an ephemeral loopback port, and talk HTTP to it.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

pub const BIN: &str = env!("CARGO_BIN_EXE_gateway");

/// A running gateway, killed (with its functions) when dropped.
pub struct Gateway {
    child: Child,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    log: Arc<Mutex<String>>,
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
        let log = Arc::new(Mutex::new(String::new()));
        let (child, addr) = launch(dir.path(), &flags, &env, &log);
        Gateway {
            child,
            addr,
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
        self.log.lock().unwrap().push_str("---- restarted ----\n");
        let (child, addr) = launch(self.dir.path(), &self.flags, &self.env, &self.log);
        self.child = child;
        self.addr = addr;
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
        self.log.lock().unwrap().clone()
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: plain syscall on our own child.
        unsafe { libc::kill(self.pid(), signal) };
    }

    pub async fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        None
    }

    /// The gateway's child processes (the function replicas).
    pub fn children(&self) -> Vec<i32> {
        let mut out = Vec::new();
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", self.pid())) {
            for task in tasks.flatten() {
                if let Ok(list) = std::fs::read_to_string(task.path().join("children")) {
                    out.extend(
                        list.split_whitespace()
                            .filter_map(|p| p.parse::<i32>().ok()),
                    );
                }
            }
        }
        out
    }

    pub fn rss_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find(|l| l.starts_with(field))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        // Children die with it (their parent-death signal).
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn field<'a>(line: &'a str, name: &str) -> &'a str {
    let start = line
        .find(name)
        .unwrap_or_else(|| panic!("no {name} in {line:?}"))
        + name.len();
    line[start..].split_whitespace().next().unwrap()
}

/// Starts the gateway binary on `dir`'s stack.yml and queue.redb, and
/// waits until it listens; its stderr is appended to `log`.
fn launch(
    dir: &Path,
    flags: &[String],
    env: &[(String, String)],
    log: &Arc<Mutex<String>>,
) -> (Child, SocketAddr) {
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
    let mut child = Command::new(BIN)
        .args([
            "--provider",
            "process",
            "--port",
            "0",
            "--bind-address",
            "127.0.0.1",
        ])
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
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start gateway");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    {
        let log = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains("gateway: listening") {
                    let _ = tx.send(line.clone());
                }
                let mut log = log.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
    }
    let line = match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(line) => line,
        Err(_) => {
            let _ = child.kill();
            panic!("gateway did not start:\n{}", log.lock().unwrap());
        }
    };
    let addr: SocketAddr = field(&line, "addr=").parse().unwrap();
    (child, SocketAddr::from(([127, 0, 0, 1], addr.port())))
}

pub fn process_exists(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

pub async fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub fn path_in(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Sends one request on a fresh connection and reads the whole answer.
pub async fn send<B>(addr: SocketAddr, request: Request<B>) -> Result<Reply, String>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let mut request = request;
    if !request.headers().contains_key(http::header::HOST) {
        request
            .headers_mut()
            .insert(http::header::HOST, addr.to_string().parse().unwrap());
    }
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok(Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

pub async fn post(addr: SocketAddr, path: &str, body: impl Into<Bytes>) -> Reply {
    send(
        addr,
        Request::post(path).body(Full::new(body.into())).unwrap(),
    )
    .await
    .unwrap()
}

pub async fn get(addr: SocketAddr, path: &str) -> Reply {
    send(
        addr,
        Request::get(path).body(Full::new(Bytes::new())).unwrap(),
    )
    .await
    .unwrap()
}

/// The value of one Prometheus series in `/metrics` text.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// A chunked request body of `count` chunks of `size` bytes; byte `i` of
/// the stream is `i % 251`.
pub struct Chunks {
    left: u64,
    size: usize,
    offset: u64,
}

impl Chunks {
    pub fn new(count: u64, size: usize) -> Chunks {
        Chunks {
            left: count,
            size,
            offset: 0,
        }
    }
}

/// `len` bytes of the [`Chunks`] stream from `offset` (len ≤ 1 MiB).
pub fn pattern(offset: u64, len: usize) -> &'static [u8] {
    static PATTERN: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let all = PATTERN.get_or_init(|| (0..251 + (1u64 << 20)).map(|i| (i % 251) as u8).collect());
    let start = (offset % 251) as usize;
    &all[start..start + len]
}

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        if self.left == 0 {
            return std::task::Poll::Ready(None);
        }
        self.left -= 1;
        let chunk = Bytes::copy_from_slice(pattern(self.offset, self.size));
        self.offset += self.size as u64;
        std::task::Poll::Ready(Some(Ok(http_body::Frame::data(chunk))))
    }
}
