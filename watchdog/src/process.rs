//! Spawning function processes, killing their process groups, and reaping
//! every child with its resource use.
//!
//! Every child runs in a process group of its own, led by itself. When the
//! leader exits, whatever it left in the group is killed while the zombie
//! still pins the group id, and only then is the leader reaped with `wait4`,
//! which also yields its `rusage`. The watchdog is a child subreaper, so
//! orphaned grandchildren come back to it and are reaped too: no zombies,
//! whether or not it is PID 1.
//!
//! Who reaps: on Linux 5.3+ each child gets a pidfd, registered with Tokio,
//! so the task that owns the child learns of its exit straight from epoll
//! and reaps it itself: no other thread is woken on the way. A sweeper
//! thread reaps, once a second, what no task owns (orphans, abandoned
//! children). Where pidfds are unavailable, a reaper thread blocks in
//! `waitid(P_ALL, WNOWAIT)` and hands each exit to its owner instead.
//!
//! The registry (`children`) decides ownership. A spawner holds the gate
//! shared from fork until its pid is registered; a sweep holds it
//! exclusively. So a fresh child is never mistaken for an orphan. Every
//! child gets a serial that is never reused, and every handle acts on
//! (pid, serial): reaping, unregistering and signalling happen under the
//! registry lock and only while that very child is registered, so a handle
//! that outlives its child can never touch a newer one with the same pid,
//! and a group is signalled only while its unreaped leader pins its id.

use std::collections::HashMap;
use std::future::Future as _;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::{Condvar, Mutex, OnceLock, RwLock};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::net::unix::pipe;
use tokio::sync::oneshot;

/// How often the sweeper looks for zombies nobody owns.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

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

/// How the child's standard streams are set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stdio3 {
    /// stdin, stdout and stderr are pipes to us.
    Piped,
    /// stdin is a pipe; stdout and stderr share one pipe (`combine_output`).
    Combined,
    /// stdin is /dev/null; stdout and stderr are the watchdog's own.
    Inherit,
}

/// What the registry knows of a child.
struct Entry {
    /// Unique for the life of the process: a pid is reused, a serial never,
    /// so a stale handle can never act on a newer child with the same pid.
    serial: u64,
    /// The owner waits here when another thread reaps (the thread strategy).
    exit: Option<oneshot::Sender<Exit>>,
    /// The owner dropped its `Child` unreaped: the sweeper reaps it.
    abandoned: bool,
}

/// How exits are learnt of (configured by `reaper`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Pidfds where the kernel allows them, else the thread.
    Auto,
    /// Owners reap through pidfds; a sweeper reaps the rest.
    Pidfd,
    /// A reaper thread reaps everything and hands exits to owners.
    Thread,
}

pub struct Reaper {
    strategy: Strategy,
    gate: RwLock<()>,
    children: Mutex<HashMap<libc::pid_t, Entry>>,
    next_serial: std::sync::atomic::AtomicU64,
    /// Thread strategy: bumped on every spawn, so a reaper with no children
    /// knows when to look again.
    generation: Mutex<u64>,
    spawned: Condvar,
}

static REAPER: OnceLock<&'static Reaper> = OnceLock::new();

impl Reaper {
    /// The process-wide reaper, started on first use with `Strategy::Auto`.
    pub fn global() -> &'static Reaper {
        Reaper::start(Strategy::Auto)
    }

    /// Starts the process-wide reaper with `strategy` (the first call
    /// decides) and returns it.
    pub fn start(strategy: Strategy) -> &'static Reaper {
        REAPER.get_or_init(|| {
            // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes an integer flag.
            unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
            let strategy = match strategy {
                Strategy::Auto | Strategy::Pidfd if pidfds_work() => Strategy::Pidfd,
                Strategy::Pidfd => {
                    tracing::warn!("reaper=pidfd asked for, but pidfd_open is unavailable: using the reaper thread");
                    Strategy::Thread
                }
                Strategy::Auto | Strategy::Thread => Strategy::Thread,
            };
            tracing::debug!(?strategy, "reaper started");
            // An inherited SIGCHLD=SIG_IGN would make the kernel reap our
            // children itself, and we would never learn how they ended.
            // SAFETY: restoring the default disposition of one signal.
            unsafe { libc::signal(libc::SIGCHLD, libc::SIG_DFL) };
            let reaper: &'static Reaper = Box::leak(Box::new(Reaper {
                strategy,
                gate: RwLock::new(()),
                children: Mutex::new(HashMap::new()),
                next_serial: std::sync::atomic::AtomicU64::new(1),
                generation: Mutex::new(0),
                spawned: Condvar::new(),
            }));
            let (name, body): (&str, fn(&'static Reaper)) = match strategy {
                Strategy::Thread => ("reaper", Reaper::reap_forever),
                _ => ("sweeper", Reaper::sweep_forever),
            };
            std::thread::Builder::new()
                .name(name.into())
                .spawn(move || body(reaper))
                .expect("cannot start the reaper thread");
            reaper
        })
    }

    /// Spawns `cmd` in a process group of its own, with its standard streams
    /// set up as `stdio` says. Must run inside a Tokio runtime.
    pub fn spawn(&'static self, cmd: &mut Command, stdio: Stdio3) -> io::Result<Child> {
        cmd.process_group(0);
        let mut ours = Pipes::default();
        match stdio {
            Stdio3::Inherit => {
                cmd.stdin(Stdio::null());
            }
            Stdio3::Piped | Stdio3::Combined => {
                let (theirs, mine) = pipe(End::Write)?;
                cmd.stdin(Stdio::from(theirs));
                ours.stdin = Some(mine);
                let (mine, theirs) = pipe(End::Read)?;
                if stdio == Stdio3::Combined {
                    cmd.stderr(Stdio::from(theirs.try_clone()?));
                } else {
                    let (err_mine, err_theirs) = pipe(End::Read)?;
                    cmd.stderr(Stdio::from(err_theirs));
                    ours.stderr = Some(err_mine);
                }
                cmd.stdout(Stdio::from(theirs));
                ours.stdout = Some(mine);
            }
        }
        reset_peak_rss();

        let gate = self.gate.read().unwrap_or_else(|e| e.into_inner());
        let spawned = cmd.spawn();
        // Our copies of the child's pipe ends close here, so EOF comes when it exits.
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let std_child = spawned?;
        let pid = std_child.id() as libc::pid_t;
        drop(std_child);
        let pidfd = match self.strategy {
            Strategy::Pidfd => match pidfd_open(pid) {
                Ok(fd) => Some(fd),
                Err(e) => {
                    // Unwatchable: do not leave it running. It is unregistered, so the sweeper reaps it.
                    // SAFETY: our own child, not yet reaped.
                    unsafe { libc::kill(-pid, libc::SIGKILL) };
                    return Err(io::Error::new(
                        e.kind(),
                        format!("cannot watch the process: {e}"),
                    ));
                }
            },
            _ => None,
        };
        let (tx, rx) = oneshot::channel();
        let serial = self
            .next_serial
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.lock().insert(
            pid,
            Entry {
                serial,
                exit: Some(tx),
                abandoned: false,
            },
        );
        drop(gate);
        if self.strategy == Strategy::Thread {
            *self.generation.lock().unwrap_or_else(|e| e.into_inner()) += 1;
            self.spawned.notify_one();
        }

        let watch = match pidfd {
            // SAFETY: the AsyncFd owns the OwnedFd, which stays open, and the same, until dropped.
            Some(fd) => match unsafe { AsyncFd::register(fd) } {
                Ok(fd) => Some(fd),
                Err(e) => {
                    self.abandon(pid, serial);
                    return Err(e.into());
                }
            },
            None => None,
        };
        let mut child = Child {
            pid,
            serial,
            reaper: self,
            stdin: None,
            stdout: None,
            stderr: None,
            pidfd: watch,
            exit: rx,
            exited: None,
        };
        // SAFETY (all three): fresh pipe ends, set non-blocking by `pipe`.
        child.stdin = ours.stdin.map(Stdin::new);
        child.stdout = ours
            .stdout
            .map(pipe::Receiver::from_owned_fd_unchecked)
            .transpose()?;
        child.stderr = ours
            .stderr
            .map(pipe::Receiver::from_owned_fd_unchecked)
            .transpose()?;
        Ok(child)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<libc::pid_t, Entry>> {
        self.children.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends `signal` to the process group led by child `(pid, serial)`, if
    /// that very child is still registered (so unreaped, and the group id
    /// still its own).
    fn signal_group(&self, pid: libc::pid_t, serial: u64, signal: libc::c_int) -> bool {
        let children = self.lock();
        if children.get(&pid).is_none_or(|e| e.serial != serial) {
            return false;
        }
        // SAFETY: plain syscall; the registered, unreaped leader pins the group id.
        unsafe { libc::kill(-pid, signal) == 0 }
    }

    /// SIGKILLs every registered group: the last act of a watchdog told
    /// twice to stop.
    pub fn kill_all(&self) {
        for pid in self.lock().keys() {
            // SAFETY: registered, unreaped leaders pin their group ids.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
        }
    }

    /// Reaps `pid` if it is registered (as `serial`, when given) and has
    /// exited: kills its group's leftovers, collects its status and
    /// unregisters it, all under the registry lock.
    fn reap_registered(
        &self,
        pid: libc::pid_t,
        serial: Option<u64>,
    ) -> Option<(Exit, Option<oneshot::Sender<Exit>>)> {
        let mut children = self.lock();
        let registered = children
            .get(&pid)
            .is_some_and(|e| serial.is_none_or(|s| e.serial == s));
        if !registered || !is_zombie(pid) {
            return None;
        }
        // SAFETY: the zombie leader pins the group id.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
        let exit = wait4_nohang(pid)?;
        let entry = children.remove(&pid);
        Some((exit, entry.and_then(|e| e.exit)))
    }

    /// The owner is gone: kill the group, and reap now if possible, else
    /// leave it to the sweeper (or the reaper thread).
    fn abandon(&self, pid: libc::pid_t, serial: u64) {
        self.signal_group(pid, serial, libc::SIGKILL);
        if self.reap_registered(pid, Some(serial)).is_none()
            && let Some(entry) = self.lock().get_mut(&pid)
            && entry.serial == serial
        {
            entry.abandoned = true;
        }
    }

    /// Pidfd strategy: every second, reap zombies that no task will: orphans
    /// and abandoned children.
    fn sweep_forever(&'static self) {
        loop {
            std::thread::sleep(SWEEP_EVERY);
            self.sweep();
        }
    }

    fn sweep(&self) {
        // waitid reports one zombie at a time: walk them by pid instead,
        // so an owned zombie (reaped by its task any moment now) cannot
        // hide an orphan behind it. /proc is read without the gate; each
        // candidate is checked again under it, so spawning is held up only
        // while something is actually reaped.
        let candidates = zombie_children();
        if candidates.is_empty() {
            return;
        }
        let _gate = self.gate.write().unwrap_or_else(|e| e.into_inner());
        for pid in candidates {
            let owned = self.lock().get(&pid).map(|e| !e.abandoned);
            match owned {
                Some(true) => {}
                Some(false) => {
                    self.reap_registered(pid, None);
                }
                None if is_zombie(pid) => {
                    wait4_nohang(pid);
                }
                None => {}
            }
        }
    }

    /// Thread strategy: reap every child as it exits and hand the exit to
    /// its owner.
    fn reap_forever(&'static self) {
        loop {
            let seen = *self.generation.lock().unwrap_or_else(|e| e.into_inner());
            match wait_any_nowait() {
                Ok(pid) => {
                    let _gate = self.gate.write().unwrap_or_else(|e| e.into_inner());
                    if let Some((exit, Some(owner))) = self.reap_registered(pid, None) {
                        let _ = owner.send(exit);
                    } else if !self.lock().contains_key(&pid) {
                        // An orphan (or a child std already reaped after a failed exec).
                        wait4_nohang(pid);
                    }
                }
                Err(e) if e.raw_os_error() == Some(libc::ECHILD) => {
                    let mut generation = self.generation.lock().unwrap_or_else(|e| e.into_inner());
                    while *generation == seen {
                        generation = self
                            .spawned
                            .wait(generation)
                            .unwrap_or_else(|e| e.into_inner());
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
}

#[derive(Default)]
struct Pipes {
    stdin: Option<OwnedFd>,
    stdout: Option<OwnedFd>,
    stderr: Option<OwnedFd>,
}

/// Which end of a pipe is ours.
#[derive(Clone, Copy, PartialEq, Eq)]
enum End {
    Read,
    Write,
}

/// A close-on-exec pipe; our end is non-blocking, the child's stays
/// blocking (programs expect that of their stdio). Returns (read, write).
fn pipe(ours: End) -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors we then own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: freshly created, owned by nobody else.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let mine = if ours == End::Read { &read } else { &write };
    // SAFETY: setting a flag on a descriptor we own.
    if unsafe { libc::fcntl(mine.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((read, write))
}

/// The write end of a child's stdin. Small bodies are written straight
/// into the fresh pipe, which has room for 64 KiB: registering with the
/// reactor (and waiting for its first readiness event) happens only when a
/// write would block.
pub struct Stdin {
    direct: Option<OwnedFd>,
    registered: Option<pipe::Sender>,
}

impl Stdin {
    /// `fd` must be the non-blocking write end of a pipe.
    fn new(fd: OwnedFd) -> Stdin {
        Stdin {
            direct: Some(fd),
            registered: None,
        }
    }

    pub async fn write_all(&mut self, mut data: &[u8]) -> io::Result<()> {
        if let Some(fd) = &self.direct {
            while !data.is_empty() {
                // SAFETY: writing from a valid slice to a descriptor we own.
                let n = unsafe { libc::write(fd.as_raw_fd(), data.as_ptr().cast(), data.len()) };
                if n >= 0 {
                    data = &data[n as usize..];
                    continue;
                }
                let err = io::Error::last_os_error();
                match err.kind() {
                    io::ErrorKind::Interrupted => continue,
                    io::ErrorKind::WouldBlock => break,
                    _ => return Err(err),
                }
            }
            if data.is_empty() {
                return Ok(());
            }
            let fd = self.direct.take().expect("checked above");
            self.registered = Some(pipe::Sender::from_owned_fd_unchecked(fd)?);
        }
        use tokio::io::AsyncWriteExt;
        match &mut self.registered {
            Some(sender) => sender.write_all(data).await,
            None => Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "stdin already failed",
            )),
        }
    }
}

/// A spawned function process. Dropping it before its exit was observed
/// kills its whole process group, so an abandoned request leaves nothing
/// running.
pub struct Child {
    pid: libc::pid_t,
    serial: u64,
    reaper: &'static Reaper,
    pub stdin: Option<Stdin>,
    pub stdout: Option<pipe::Receiver>,
    pub stderr: Option<pipe::Receiver>,
    pidfd: Option<AsyncFd<OwnedFd>>,
    exit: oneshot::Receiver<Exit>,
    exited: Option<Exit>,
}

/// A copyable handle that kills a child's group, for code running beside
/// the one that waits for it.
#[derive(Clone, Copy)]
pub struct Group {
    pid: libc::pid_t,
    serial: u64,
    reaper: &'static Reaper,
}

impl Group {
    /// SIGKILLs the whole process group; a no-op once this child is reaped
    /// (even if its pid now belongs to another). Returns whether it was sent.
    pub fn kill(self) -> bool {
        self.reaper
            .signal_group(self.pid, self.serial, libc::SIGKILL)
    }
}

impl Child {
    pub fn pid(&self) -> libc::pid_t {
        self.pid
    }

    pub fn group(&self) -> Group {
        Group {
            pid: self.pid,
            serial: self.serial,
            reaper: self.reaper,
        }
    }

    /// SIGKILLs the child's whole process group (a no-op once it exited).
    pub fn kill(&self) {
        self.signal(libc::SIGKILL);
    }

    /// Signals the child's whole process group (a no-op once it exited).
    pub fn signal(&self, signal: libc::c_int) {
        if self.exited.is_none() {
            self.reaper.signal_group(self.pid, self.serial, signal);
        }
    }

    /// Waits for the child to exit and be reaped. Cancel-safe.
    pub async fn wait(&mut self) -> Exit {
        std::future::poll_fn(|cx| self.poll_wait(cx)).await
    }

    pub fn poll_wait(&mut self, cx: &mut Context<'_>) -> Poll<Exit> {
        if let Some(exit) = self.exited {
            return Poll::Ready(exit);
        }
        let exit = match &self.pidfd {
            Some(pidfd) => loop {
                // Readable once the process has exited.
                let Ok(mut ready) = ready!(pidfd.poll_read_ready(cx)) else {
                    // The reactor is gone (runtime shutdown): leave it to the sweeper.
                    self.reaper.abandon(self.pid, self.serial);
                    break lost_exit();
                };
                if let Some((exit, _)) = self.reaper.reap_registered(self.pid, Some(self.serial)) {
                    break exit;
                }
                let still_ours = self
                    .reaper
                    .lock()
                    .get(&self.pid)
                    .is_some_and(|e| e.serial == self.serial);
                if !still_ours {
                    // Reaped elsewhere (cannot happen while we own it); do not hang.
                    break lost_exit();
                }
                ready.clear_ready();
            },
            None => {
                let received = ready!(std::pin::Pin::new(&mut self.exit).poll(cx));
                received.unwrap_or_else(|_| lost_exit())
            }
        };
        self.exited = Some(exit);
        Poll::Ready(exit)
    }
}

/// Stands in for an exit whose status was lost (a reaper that died).
fn lost_exit() -> Exit {
    Exit {
        status: ExitStatus::Signal(libc::SIGKILL),
        usage: Usage::default(),
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.exited.is_some() {
            return;
        }
        // The reaper thread may have reaped it already: then its exit is
        // waiting here, and the pid may belong to someone else by now.
        if self.exit.try_recv().is_ok() {
            return;
        }
        self.reaper.abandon(self.pid, self.serial);
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

fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Whether this kernel (and any seccomp filter) lets us use pidfds, and
/// lists children in /proc (the sweeper finds orphans there).
fn pidfds_work() -> bool {
    // SAFETY: getpid cannot fail.
    pidfd_open(unsafe { libc::getpid() }).is_ok()
        && std::path::Path::new("/proc/thread-self/children").exists()
}

/// Whether our child `pid` has exited and awaits reaping.
fn is_zombie(pid: libc::pid_t) -> bool {
    // SAFETY: siginfo_t is plain data; waitid fills it.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let rc = unsafe {
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    // SAFETY: on success with WEXITED, si_pid is set (0 when not exited).
    rc == 0 && unsafe { info.si_pid() } == pid
}

/// Our children that have exited, found through /proc (the kernel lists a
/// thread's children in /proc/self/task/TID/children).
fn zombie_children() -> Vec<libc::pid_t> {
    let mut found = Vec::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return found;
    };
    for task in tasks.flatten() {
        let Ok(list) = std::fs::read_to_string(task.path().join("children")) else {
            continue;
        };
        found.extend(
            list.split_whitespace()
                .filter_map(|p| p.parse::<libc::pid_t>().ok())
                .filter(|&pid| is_zombie(pid)),
        );
    }
    found
}

/// Blocks until some child is a zombie and returns its pid without reaping it.
fn wait_any_nowait() -> io::Result<libc::pid_t> {
    loop {
        // SAFETY: siginfo_t is plain data; waitid fills it.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::waitid(libc::P_ALL, 0, &mut info, libc::WEXITED | libc::WNOWAIT) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: waitid succeeded with WEXITED, so si_pid is set.
        let pid = unsafe { info.si_pid() };
        if pid != 0 {
            return Ok(pid);
        }
    }
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
    use tokio::io::AsyncReadExt;

    fn sh(script: &str) -> Command {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]);
        cmd
    }

    #[tokio::test]
    async fn reports_exit_code_and_usage() {
        let mut child = Reaper::global()
            .spawn(&mut sh("exit 3"), Stdio3::Inherit)
            .unwrap();
        let exit = child.wait().await;
        assert_eq!(exit.status, ExitStatus::Code(3));
        assert!(exit.usage.max_rss_bytes > 0);
    }

    #[tokio::test]
    async fn pipes_stdin_to_stdout() {
        let mut child = Reaper::global()
            .spawn(&mut Command::new("cat"), Stdio3::Piped)
            .unwrap();
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
    async fn combined_output_interleaves_both_streams() {
        let mut child = Reaper::global()
            .spawn(
                &mut sh("echo out; echo err >&2; echo out2"),
                Stdio3::Combined,
            )
            .unwrap();
        assert!(child.stderr.is_none());
        let mut out = Vec::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_end(&mut out)
            .await
            .unwrap();
        assert_eq!(out, b"out\nerr\nout2\n");
        assert!(child.wait().await.status.success());
    }

    #[tokio::test]
    async fn kill_reaches_the_whole_group() {
        let mut child = Reaper::global()
            .spawn(&mut sh("sleep 30 & wait"), Stdio3::Inherit)
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        child.kill();
        let exit = child.wait().await;
        assert_eq!(exit.status, ExitStatus::Signal(libc::SIGKILL));
    }

    #[tokio::test]
    async fn a_stale_handle_never_signals_a_newer_child_with_the_same_pid() {
        let reaper = Reaper::global();
        let mut first = reaper.spawn(&mut sh("exit 0"), Stdio3::Inherit).unwrap();
        let stale = first.group();
        let pid = first.pid();
        first.wait().await;
        assert!(!stale.kill(), "a reaped child's group was signalled");

        // Make the kernel hand the same pid to the next child (root only:
        // ns_last_pid), and check the stale handle still cannot touch it.
        let mut reused = None;
        for _ in 0..200 {
            if std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string()).is_err() {
                eprintln!(
                    "ns_last_pid is not writable here: pid reuse checked through the registry only"
                );
                return;
            }
            let next = reaper.spawn(&mut sh("sleep 5"), Stdio3::Inherit).unwrap();
            if next.pid() == pid {
                reused = Some(next);
                break;
            }
        }
        // Other tests spawn too and may win the race for the pid every time.
        let Some(mut second) = reused else {
            eprintln!(
                "the kernel did not hand the pid out again: checked through the registry only"
            );
            return;
        };
        assert!(!stale.kill(), "a stale handle signalled the newer child");
        tokio::time::sleep(Duration::from_millis(50)).await;
        second.kill();
        assert_eq!(
            second.wait().await.status,
            ExitStatus::Signal(libc::SIGKILL)
        );
    }

    #[tokio::test]
    async fn a_failed_exec_is_an_error_and_leaves_nothing_registered() {
        let reaper = Reaper::global();
        let err = reaper
            .spawn(&mut Command::new("/no/such/program"), Stdio3::Piped)
            .err()
            .unwrap();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
