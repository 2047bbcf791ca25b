//! Real binaries: start one, keep its stderr as a log, wait until it says
//! it listens; and look at processes through /proc.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The gateway's flags for a test: the process provider on ephemeral
/// loopback ports (HTTP, CoAP, gRPC), so tests run side by side.
pub const LOCAL_GATEWAY: [&str; 10] = [
    "--provider",
    "process",
    "--port",
    "0",
    "--bind-address",
    "127.0.0.1",
    "--coap-port",
    "0",
    "--grpc-port",
    "0",
];

/// Everything a started binary wrote to stderr, kept as it arrives.
#[derive(Debug, Clone, Default)]
pub struct Log(Arc<Mutex<String>>);

impl Log {
    pub fn text(&self) -> String {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Adds a line of the test's own (a restart marker).
    pub fn note(&self, line: &str) {
        let mut log = self.0.lock().unwrap_or_else(|e| e.into_inner());
        log.push_str(line);
        log.push('\n');
    }
}

/// Starts `cmd` (stdout discarded, stderr into `log`) and waits up to
/// `limit` for a stderr line containing `ready`, which it returns. Panics
/// with the log when the line does not come.
pub fn start_until(mut cmd: Command, ready: &str, limit: Duration, log: &Log) -> (Child, String) {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", cmd.get_program()));
    let stderr = child.stderr.take().expect("stderr is piped");
    let (tx, rx) = mpsc::channel();
    {
        let log = log.clone();
        let ready = ready.to_owned();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains(&ready) {
                    let _ = tx.send(line.clone());
                }
                log.note(&line);
            }
        });
    }
    match rx.recv_timeout(limit) {
        Ok(line) => (child, line),
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{:?} did not log {ready:?} within {limit:?}:\n{}",
                cmd.get_program(),
                log.text()
            );
        }
    }
}

/// The value of `name` (`addr=`) in a log line.
pub fn field<'a>(line: &'a str, name: &str) -> &'a str {
    let start = line
        .find(name)
        .unwrap_or_else(|| panic!("no {name} in {line:?}"))
        + name.len();
    line[start..].split_whitespace().next().unwrap_or_default()
}

/// Waits for `child` to exit, up to `limit`.
pub async fn wait_exit(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("try_wait on our own child") {
            return Some(status);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

/// Sends `signal` to `pid`.
pub fn signal(pid: i32, signal: i32) {
    // SAFETY: a plain syscall on a process the test started.
    unsafe { libc::kill(pid, signal) };
}

/// The direct children of `pid`, from every thread's children list.
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

/// A memory figure of `pid` in KiB (`VmRSS:`, `VmHWM:` …).
pub fn memory_kib(pid: i32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("cannot read /proc/{pid}/status: {e}"));
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}
