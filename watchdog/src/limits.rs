//! What the instance may use, and what an `http`-mode runner used during a
//! call, read from the kernel so the figures come from the platform rather
//! than from the function.
//!
//! The memory limit is the one the function really runs under: its
//! cgroup's (v2 `memory.max`, v1 `memory.limit_in_bytes`; inside a
//! container that is the container's), else an address-space limit
//! (`RLIMIT_AS`, which the process provider sets where it cannot have a
//! cgroup). It is read once at start: a new limit means new replicas.

use std::path::{Path, PathBuf};

/// Limits at or above this are "no limit" (cgroup v1 reports
/// `PAGE_COUNTER_MAX` pages, about 2^63, when unlimited).
const UNLIMITED: u64 = 1 << 60;

/// Where a memory limit came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    Cgroup,
    AddressSpace,
}

impl LimitKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LimitKind::Cgroup => "cgroup",
            LimitKind::AddressSpace => "address-space",
        }
    }
}

/// The memory limit this process runs under, if any: the tighter of its
/// cgroup's and its address-space limit.
pub fn memory_limit() -> Option<(u64, LimitKind)> {
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let cgroup = cgroup_memory_limit(Path::new("/sys/fs/cgroup"), &cgroups)
        .map(|bytes| (bytes, LimitKind::Cgroup));
    let address_space = address_space_limit().map(|bytes| (bytes, LimitKind::AddressSpace));
    match (cgroup, address_space) {
        (Some(c), Some(a)) => Some(if a.0 < c.0 { a } else { c }),
        (c, a) => c.or(a),
    }
}

/// The memory limit of the cgroup `proc_self_cgroup` names, under `root`
/// (the cgroup file system's mount point). A container sees its own
/// cgroup at the root of the mount, the host at its path: both are tried.
pub fn cgroup_memory_limit(root: &Path, proc_self_cgroup: &str) -> Option<u64> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    for line in proc_self_cgroup.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let relative = path.trim_start_matches('/');
        if controllers.is_empty() {
            // cgroup v2: one unified hierarchy.
            candidates.push(root.join(relative).join("memory.max"));
        } else if controllers.split(',').any(|c| c == "memory") {
            candidates.push(
                root.join("memory")
                    .join(relative)
                    .join("memory.limit_in_bytes"),
            );
        }
    }
    candidates.push(root.join("memory.max"));
    candidates.push(root.join("memory").join("memory.limit_in_bytes"));
    candidates
        .iter()
        .find_map(|file| std::fs::read_to_string(file).ok())
        .and_then(|text| parse_limit(&text))
}

/// A cgroup limit file's value: bytes, or `max` / a huge number for none.
fn parse_limit(text: &str) -> Option<u64> {
    let bytes: u64 = text.trim().parse().ok()?;
    (bytes < UNLIMITED).then_some(bytes)
}

fn address_space_limit() -> Option<u64> {
    // SAFETY: getrlimit fills the struct it is given.
    let mut limit: libc::rlimit = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut limit) };
    (rc == 0 && limit.rlim_cur != libc::RLIM_INFINITY && limit.rlim_cur < UNLIMITED)
        .then_some(limit.rlim_cur)
}

/// A process's cumulative CPU time (its own and its reaped children's,
/// every thread, live or ended) and peak memory, from `/proc/<pid>`.
/// The kernel reports CPU time there in clock ticks (10 ms on most
/// systems), so a figure from two samples is that coarse.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcSample {
    pub user_seconds: f64,
    pub system_seconds: f64,
    pub peak_rss_bytes: u64,
}

/// `/proc/<pid>/stat` and `/proc/<pid>/status` of one process, kept open:
/// the kernel renders each afresh when it is read from offset 0, so a
/// sample is one `pread` per file instead of an open, reads and a close.
#[derive(Debug)]
pub struct ProcFiles {
    pid: i32,
    stat: std::fs::File,
    status: std::fs::File,
    /// The last peak read from `status` and when: the kernel renders that
    /// whole file (about 1.4 KB, several µs) to give one line, and a
    /// life's peak moves rarely, so it is read again at most every
    /// [`PEAK_REFRESH`].
    peak: std::sync::Mutex<Option<(std::time::Instant, u64)>>,
}

/// How stale the runner's peak memory in a call's figures may be.
pub const PEAK_REFRESH: std::time::Duration = std::time::Duration::from_secs(1);

/// Room for either file: `stat` is one line; `status` is about 1.4 KB,
/// more with many supplementary groups listed before `VmHWM`.
const PROC_READ: usize = 16 * 1024;

impl ProcFiles {
    pub fn open(pid: i32) -> Option<ProcFiles> {
        Some(ProcFiles {
            pid,
            stat: std::fs::File::open(format!("/proc/{pid}/stat")).ok()?,
            status: std::fs::File::open(format!("/proc/{pid}/status")).ok()?,
            peak: std::sync::Mutex::new(None),
        })
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// CPU time so far (user, system), in seconds; `None` once the
    /// process is gone.
    pub fn cpu(&self) -> Option<(f64, f64)> {
        let mut buf = [0u8; PROC_READ];
        let stat = read_at_start(&self.stat, &mut buf)?;
        parse_cpu(&stat, clock_ticks())
    }

    /// CPU time and peak memory (the peak as read within [`PEAK_REFRESH`]).
    pub fn sample(&self) -> Option<ProcSample> {
        let (user_seconds, system_seconds) = self.cpu()?;
        Some(ProcSample {
            user_seconds,
            system_seconds,
            peak_rss_bytes: self.peak_rss(std::time::Instant::now())?,
        })
    }

    fn peak_rss(&self, now: std::time::Instant) -> Option<u64> {
        let mut kept = self.peak.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((read, bytes)) = *kept
            && now.saturating_duration_since(read) < PEAK_REFRESH
        {
            return Some(bytes);
        }
        let mut buf = [0u8; PROC_READ];
        let bytes = parse_peak_rss(&read_at_start(&self.status, &mut buf)?);
        *kept = Some((now, bytes));
        Some(bytes)
    }
}

/// The file as text (a command name need not be UTF-8: it is replaced,
/// and the numbers after it are still read).
fn read_at_start<'b>(file: &std::fs::File, buf: &'b mut [u8]) -> Option<std::borrow::Cow<'b, str>> {
    use std::os::unix::fs::FileExt;
    let n = file.read_at(buf, 0).ok().filter(|&n| n > 0)?;
    Some(String::from_utf8_lossy(&buf[..n]))
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// User and system CPU seconds (the process's and its reaped children's)
/// from `/proc/<pid>/stat`.
fn parse_cpu(stat: &str, ticks_per_second: f64) -> Option<(f64, f64)> {
    // The command name (field 2) may hold spaces and parentheses: the
    // fields after it start after its last ')', with field 3 (state).
    let rest = &stat[stat.rfind(')')? + 1..];
    // utime is field 14, stime 15, cutime 16, cstime 17.
    let mut fields = rest.split_whitespace().skip(14 - 3);
    let mut next = || fields.next()?.parse::<f64>().ok();
    let (utime, stime, cutime, cstime) = (next()?, next()?, next()?, next()?);
    Some((
        (utime + cutime) / ticks_per_second,
        (stime + cstime) / ticks_per_second,
    ))
}

/// `VmHWM` from `/proc/<pid>/status`, in bytes (0 when absent).
fn parse_peak_rss(status: &str) -> u64 {
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    kib * 1024
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_v1_host_cgroup_is_read_at_its_path_and_a_container_one_at_the_root() {
        let root = tempfile::tempdir().unwrap();
        let own = root.path().join("memory/faas/fn-1");
        std::fs::create_dir_all(&own).unwrap();
        std::fs::write(own.join("memory.limit_in_bytes"), "134217728\n").unwrap();
        std::fs::write(
            root.path().join("memory/memory.limit_in_bytes"),
            "9223372036854771712\n",
        )
        .unwrap();
        let host = "4:memory:/faas/fn-1\n3:cpu,cpuacct:/\n0::/\n";
        assert_eq!(cgroup_memory_limit(root.path(), host), Some(128 << 20));
        // In a container the path names the host's view; the mount is its own.
        let container = "4:memory:/docker/0123abcd\n";
        assert_eq!(cgroup_memory_limit(root.path(), container), None);
        std::fs::write(root.path().join("memory/memory.limit_in_bytes"), "67108864").unwrap();
        assert_eq!(cgroup_memory_limit(root.path(), container), Some(64 << 20));
    }

    #[test]
    fn a_v2_limit_is_memory_max_and_max_means_none() {
        let root = tempfile::tempdir().unwrap();
        let own = root.path().join("faas/fn-1");
        std::fs::create_dir_all(&own).unwrap();
        std::fs::write(own.join("memory.max"), "max\n").unwrap();
        assert_eq!(cgroup_memory_limit(root.path(), "0::/faas/fn-1\n"), None);
        std::fs::write(own.join("memory.max"), "268435456\n").unwrap();
        assert_eq!(
            cgroup_memory_limit(root.path(), "0::/faas/fn-1\n"),
            Some(256 << 20)
        );
    }

    #[test]
    fn proc_figures_add_reaped_children_and_survive_odd_command_names() {
        let stat = "4242 (my (odd) runner) S 1 4242 4242 0 -1 4194560 500 0 0 0 \
                    150 30 7 3 20 0 4 0 100 1000000 2000 18446744073709551615";
        let status = "Name:\trunner\nVmPeak:\t  30000 kB\nVmHWM:\t   12345 kB\nVmRSS:\t 10000 kB\n";
        assert_eq!(parse_cpu(stat, 100.0), Some((1.57, 0.33)));
        assert_eq!(parse_peak_rss(status), 12345 * 1024);
        assert_eq!(parse_cpu("garbage", 100.0), None);
        assert_eq!(parse_cpu("1 (x) S 1 2 3", 100.0), None);
        assert_eq!(parse_peak_rss("Name:\tx\n"), 0);
    }

    #[test]
    fn kept_open_files_give_fresh_figures_each_time() {
        let files = ProcFiles::open(std::process::id() as i32).expect("/proc is readable");
        let first = files.sample().expect("a sample");
        assert!(first.peak_rss_bytes > 0);
        // Burn CPU until the kept-open stat file shows it: a stale read
        // would never change.
        let started = std::time::Instant::now();
        let mut spun = 0u64;
        loop {
            for i in 0..100_000u64 {
                spun = std::hint::black_box(spun.wrapping_add(i));
            }
            let (user, system) = files.cpu().expect("cpu");
            if user + system >= first.user_seconds + first.system_seconds + 0.05 {
                break;
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(20),
                "the CPU figure never moved: {first:?}"
            );
        }
        assert!(ProcFiles::open(-1).is_none());
    }

    #[test]
    fn the_peak_is_read_again_only_once_it_is_stale() {
        let files = ProcFiles::open(std::process::id() as i32).expect("/proc is readable");
        let start = std::time::Instant::now();
        let first = files.peak_rss(start).expect("a peak");
        assert!(first > 0);
        // Grow this process's peak by 64 MiB, touched page by page.
        let grown: Vec<u8> = vec![1; 64 << 20];
        std::hint::black_box(&grown);
        let fresh = ProcFiles::open(std::process::id() as i32)
            .and_then(|f| f.peak_rss(start))
            .expect("a peak");
        assert_eq!(files.peak_rss(start + PEAK_REFRESH / 2), Some(first));
        let later = files.peak_rss(start + PEAK_REFRESH).expect("a peak");
        assert!(
            later >= fresh,
            "{later} read again, {fresh} read fresh before"
        );
    }
}
