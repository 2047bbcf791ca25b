//! Spawning function processes, killing their process groups, and reaping
//! every child with its resource use.
//!
//! One reaper thread owns `wait`: it blocks in `waitid(P_ALL, WNOWAIT)`, so
//! it learns of an exit without consuming it, kills what is left of the
//! child's process group while the zombie still pins the group id, and only
//! then reaps it with `wait4`, which also yields the child's `rusage`. The
//! watchdog marks itself a child subreaper, so orphaned grandchildren come
//! back to it and are reaped too: no zombies, whether or not it is PID 1.
//!
//! A read/write gate makes spawning and reaping exclusive: a spawner holds
//! it shared from fork until its pid is registered, and the reaper holds it
//! exclusively while it reaps, so a fresh child can never be mistaken for an
//! orphan, and a group is never signalled after its leader was reaped (when
//! its id could belong to someone else).

use std::collections::HashMap;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::{Condvar, Mutex, OnceLock, RwLock};
use std::time::Duration;

use tokio::net::unix::pipe;
use tokio::sync::oneshot;

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Code(i32),
    Signal(i32),
}

impl ExitStatus {
    pub fn success(self) -> bool {
        self == ExitStatus::Code(0)
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitStatus::Code(c) => write!(f, "exit status {c}"),
            ExitStatus::Signal(s) => write!(f, "killed by signal {s}"),
        }
    }
}

/// What the kernel accounted to the child (and the descendants it waited for).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    pub user: Duration,
    pub system: Duration,
    pub max_rss_bytes: u64,
}

#[derive(Debug, Clone, Copy)]
pub struct Exit {
    pub status: ExitStatus,
    pub usage: Usage,
}

pub struct Reaper {
    gate: RwLock<()>,
    waiters: Mutex<HashMap<libc::pid_t, oneshot::Sender<Exit>>>,
    /// Bumped on every spawn, so a reaper with no children knows when to look again.
    generation: Mutex<u64>,
    spawned: Condvar,
}

static REAPER: OnceLock<&'static Reaper> = OnceLock::new();

impl Reaper {
    /// The process-wide reaper, started on first use.
    pub fn global() -> &'static Reaper {
        REAPER.get_or_init(|| {
            // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes an integer flag.
            unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
            let reaper: &'static Reaper = Box::leak(Box::new(Reaper {
                gate: RwLock::new(()),
                waiters: Mutex::new(HashMap::new()),
                generation: Mutex::new(0),
                spawned: Condvar::new(),
            }));
            std::thread::Builder::new()
                .name("reaper".into())
                .spawn(move || reaper.reap_forever())
                .expect("cannot start the reaper thread");
            reaper
        })
    }

    /// Spawns `cmd` in a process group of its own. Its piped stdio handles
    /// become non-blocking pipes on the current Tokio runtime.
    pub fn spawn(&'static self, cmd: &mut Command) -> io::Result<Child> {
        cmd.process_group(0);
        reset_peak_rss();
        let gate = self.gate.read().unwrap_or_else(|e| e.into_inner());
        let mut std_child = cmd.spawn()?;
        let pid = std_child.id() as libc::pid_t;
        let (tx, rx) = oneshot::channel();
        self.waiters.lock().unwrap().insert(pid, tx);
        drop(gate);
        {
            let mut generation = self.generation.lock().unwrap();
            *generation += 1;
        }
        self.spawned.notify_one();

        let mut child = Child {
            pid,
            reaper: self,
            stdin: None,
            stdout: None,
            stderr: None,
            exit: rx,
            exited: None,
        };
        // On error the Child is dropped, which kills the group.
        child.stdin = std_child
            .stdin
            .take()
            .map(|s| pipe::Sender::from_owned_fd(OwnedFd::from(s)))
            .transpose()?;
        child.stdout = std_child
            .stdout
            .take()
            .map(|s| pipe::Receiver::from_owned_fd(OwnedFd::from(s)))
            .transpose()?;
        child.stderr = std_child
            .stderr
            .take()
            .map(|s| pipe::Receiver::from_owned_fd(OwnedFd::from(s)))
            .transpose()?;
        Ok(child)
    }

    /// Sends `signal` to the process group led by `pid`, if that child has
    /// not been reaped yet. Returns whether it was sent.
    pub fn signal_group(&self, pid: libc::pid_t, signal: libc::c_int) -> bool {
        let _gate = self.gate.read().unwrap_or_else(|e| e.into_inner());
        if !self.waiters.lock().unwrap().contains_key(&pid) {
            return false;
        }
        // SAFETY: plain syscall; the registered, unreaped leader pins the group id.
        unsafe { libc::kill(-pid, signal) == 0 }
    }

    fn reap_forever(&self) {
        loop {
            let seen = *self.generation.lock().unwrap();
            match wait_any_nowait() {
                Ok(Some(pid)) => self.reap(pid),
                Ok(None) => {}
                Err(e) if e.raw_os_error() == Some(libc::ECHILD) => {
                    let mut generation = self.generation.lock().unwrap();
                    while *generation == seen {
                        generation = self.spawned.wait(generation).unwrap();
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::error!(error = %e, "waitid failed");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }

    fn reap(&self, pid: libc::pid_t) {
        let _gate = self.gate.write().unwrap_or_else(|e| e.into_inner());
        let waiter = self.waiters.lock().unwrap().remove(&pid);
        if waiter.is_some() {
            // Whatever the leader left running dies with it: leftovers would
            // hold the output pipe open and outlive the request.
            // SAFETY: the zombie leader still pins the group id.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
        }
        let Some(exit) = wait4_nohang(pid) else {
            return;
        };
        if let Some(waiter) = waiter {
            let _ = waiter.send(exit);
        }
    }
}

/// A spawned function process. Dropping it before its exit was observed
/// kills its whole process group, so an abandoned request leaves nothing
/// running.
pub struct Child {
    pid: libc::pid_t,
    reaper: &'static Reaper,
    pub stdin: Option<pipe::Sender>,
    pub stdout: Option<pipe::Receiver>,
    pub stderr: Option<pipe::Receiver>,
    exit: oneshot::Receiver<Exit>,
    exited: Option<Exit>,
}

impl Child {
    pub fn pid(&self) -> libc::pid_t {
        self.pid
    }

    /// SIGKILLs the child's whole process group.
    pub fn kill(&self) {
        self.reaper.signal_group(self.pid, libc::SIGKILL);
    }

    /// Signals the child's whole process group.
    pub fn signal(&self, signal: libc::c_int) {
        self.reaper.signal_group(self.pid, signal);
    }

    /// Waits for the child to exit and be reaped. Cancel-safe.
    pub async fn wait(&mut self) -> Exit {
        std::future::poll_fn(|cx| self.poll_wait(cx)).await
    }

    pub fn poll_wait(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Exit> {
        use std::future::Future;
        if let Some(exit) = self.exited {
            return std::task::Poll::Ready(exit);
        }
        let exit = std::task::ready!(std::pin::Pin::new(&mut self.exit).poll(cx)).unwrap_or(Exit {
            // The reaper never drops a registered sender without sending;
            // this only guards against a poisoned reaper.
            status: ExitStatus::Signal(libc::SIGKILL),
            usage: Usage::default(),
        });
        self.exited = Some(exit);
        std::task::Poll::Ready(exit)
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.exited.is_none() {
            self.kill();
        }
    }
}

/// Linux charges a spawned child with its parent's peak RSS: the child
/// starts life in the parent's address space, and exec records that
/// space's high-water mark in the child's `ru_maxrss`. Resetting our own
/// high-water mark to the current RSS before each spawn keeps an earlier
/// spike (a large buffered output) out of every later child's figure, so
/// `X-Max-Rss-Bytes` is max(watchdog's current RSS, the function's peak).
fn reset_peak_rss() {
    use std::os::unix::fs::FileExt;
    static CLEAR_REFS: OnceLock<Option<std::fs::File>> = OnceLock::new();
    let file = CLEAR_REFS.get_or_init(|| {
        std::fs::OpenOptions::new()
            .write(true)
            .open("/proc/self/clear_refs")
            .ok()
    });
    if let Some(file) = file {
        let _ = file.write_at(b"5", 0);
    }
}

/// Builds a pipe whose write end can serve as both stdout and stderr of a
/// child, for `combine_output`.
pub fn combined_output_pipe() -> io::Result<(pipe::Receiver, Stdio, Stdio)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors we then own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    use std::os::fd::FromRawFd;
    // SAFETY: freshly created, owned by nobody else.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let write2 = write.try_clone()?;
    Ok((
        pipe::Receiver::from_owned_fd(read)?,
        Stdio::from(write),
        Stdio::from(write2),
    ))
}

/// Blocks until some child is a zombie and returns its pid without reaping it.
fn wait_any_nowait() -> io::Result<Option<libc::pid_t>> {
    // SAFETY: siginfo_t is plain data; waitid fills it.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::waitid(libc::P_ALL, 0, &mut info, libc::WEXITED | libc::WNOWAIT) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: waitid succeeded with WEXITED, so si_pid is set.
    let pid = unsafe { info.si_pid() };
    Ok((pid != 0).then_some(pid))
}

fn wait4_nohang(pid: libc::pid_t) -> Option<Exit> {
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        let rc = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if rc == pid {
            break;
        }
        if rc < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        }
        // Already reaped elsewhere (std reaps a child whose exec failed) or
        // not exited: nothing to report.
        return None;
    }
    let status = if libc::WIFEXITED(status) {
        ExitStatus::Code(libc::WEXITSTATUS(status))
    } else {
        ExitStatus::Signal(libc::WTERMSIG(status))
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Some(Exit {
        status,
        usage: Usage {
            user: tv(usage.ru_utime),
            system: tv(usage.ru_stime),
            // Linux reports ru_maxrss in KiB.
            max_rss_bytes: usage.ru_maxrss as u64 * 1024,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn reports_exit_code_and_usage() {
        let reaper = Reaper::global();
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "exit 3"]);
        let mut child = reaper.spawn(&mut cmd).unwrap();
        let exit = child.wait().await;
        assert_eq!(exit.status, ExitStatus::Code(3));
        assert!(exit.usage.max_rss_bytes > 0);
    }

    #[tokio::test]
    async fn pipes_stdin_to_stdout() {
        let reaper = Reaper::global();
        let mut cmd = Command::new("cat");
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
        let mut child = reaper.spawn(&mut cmd).unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"hello").await.unwrap();
        drop(stdin);
        let mut out = Vec::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_end(&mut out)
            .await
            .unwrap();
        assert_eq!(out, b"hello");
        assert!(child.wait().await.status.success());
    }

    #[tokio::test]
    async fn kill_reaches_the_whole_group() {
        let reaper = Reaper::global();
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "sleep 30 & wait"]);
        let mut child = reaper.spawn(&mut cmd).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        child.kill();
        let exit = child.wait().await;
        assert_eq!(exit.status, ExitStatus::Signal(libc::SIGKILL));
    }
}
