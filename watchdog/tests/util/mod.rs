//! Shared helpers: start the real `fwatchdog` binary on ephemeral loopback
//! ports, talk HTTP to it, and inspect its processes through /proc.

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

pub const BIN: &str = env!("CARGO_BIN_EXE_fwatchdog");

/// A running watchdog, killed when dropped.
pub struct Watchdog {
    child: Child,
    pub addr: SocketAddr,
    pub metrics: SocketAddr,
    pub dir: tempfile::TempDir,
    log: Arc<Mutex<String>>,
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
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start fwatchdog");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if line.contains("listening") {
                        let _ = tx.send(line.clone());
                    }
                    let mut log = log.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
            });
        }
        let line = match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!("fwatchdog did not start:\n{}", log.lock().unwrap());
            }
        };
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
        self.log.lock().unwrap().clone()
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: plain syscall on our own child.
        unsafe { libc::kill(self.pid(), signal) };
    }

    /// Waits for the watchdog to exit, up to `limit`.
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

    /// The watchdog's direct child processes.
    pub fn children(&self) -> Vec<i32> {
        children_of(self.pid())
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

impl Drop for Watchdog {
    fn drop(&mut self) {
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

pub fn children_of(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        if let Ok(list) = std::fs::read_to_string(task.path().join("children")) {
            out.extend(
                list.split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok()),
            );
        }
    }
    out
}

/// Whether `pid` exists at all (a zombie still exists).
pub fn process_exists(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Polls `cond` every 10 ms for up to `limit`, letting other tasks run.
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
    request
        .headers_mut()
        .insert(http::header::HOST, addr.to_string().parse().unwrap());
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
    let request = Request::post(path).body(Full::new(body.into())).unwrap();
    send(addr, request).await.unwrap()
}

pub async fn get(addr: SocketAddr, path: &str) -> Reply {
    let request = Request::get(path).body(Full::new(Bytes::new())).unwrap();
    send(addr, request).await.unwrap()
}

/// A chunked request body of `count` chunks of `size` bytes, generated on
/// the fly (no length is declared). Byte `i` of the stream is `i % 251`.
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

/// The byte at `offset` of a [`Chunks`] stream.
pub fn pattern_byte(offset: u64) -> u8 {
    (offset % 251) as u8
}

/// `len` bytes of the [`Chunks`] stream starting at `offset` (len ≤ 1 MiB),
/// by slicing a precomputed buffer: cheap even in debug builds.
pub fn pattern(offset: u64, len: usize) -> &'static [u8] {
    static PATTERN: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let all = PATTERN.get_or_init(|| (0..251 + (1 << 20) as u64).map(pattern_byte).collect());
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
        let start = self.offset;
        let chunk: Vec<u8> = (0..self.size as u64)
            .map(|i| pattern_byte(start + i))
            .collect();
        self.offset += self.size as u64;
        std::task::Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from(chunk)))))
    }
}
