//! A replica's `limits` on the process provider. Memory and CPU limits
//! hold through a cgroup of the replica's own when the gateway can make
//! one (cgroup v2, or v1's `memory` and `cpu` hierarchies: it must run as
//! root, or own a delegated cgroup); otherwise memory is an address-space
//! limit (`RLIMIT_AS`, which counts reserved as well as used memory, so
//! runtimes that reserve much, such as Node.js, need more of it) and CPU
//! is not limited. [`Confinement::describe`] says which, in the log and in
//! `/system/info`.
//!
//! The cgroups live under `faas-gateway-<pid>` in the gateway's own
//! cgroup; each replica's is removed when it stops, and those a killed
//! gateway left behind are removed at the next start.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};

use faas_common::api::Resources;
use faas_common::parse::{parse_bytes, parse_cpus};

use crate::provider::ProviderError;

const ROOT: &str = "/sys/fs/cgroup";
/// CFS period for a CPU quota, in µs (Docker's).
const CPU_PERIOD_US: u64 = 100_000;
/// The smallest memory limit accepted (Docker's minimum, too).
const MIN_MEMORY: u64 = 6 << 20;

/// A function's limits, checked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub memory_bytes: Option<u64>,
    /// CPUs in billionths.
    pub nano_cpus: Option<u64>,
}

impl Limits {
    /// `limits` of a deployment, or why they are not usable.
    pub fn parse(limits: Option<&Resources>) -> Result<Limits, ProviderError> {
        let Some(r) = limits else {
            return Ok(Limits::default());
        };
        let value = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let memory_bytes = value(&r.memory)
            .map(|v| {
                let bytes = parse_bytes(&v)
                    .map_err(|e| ProviderError::Invalid(format!("limits.memory {v:?}: {e}")))?;
                if bytes < MIN_MEMORY {
                    return Err(ProviderError::Invalid(format!(
                        "limits.memory {v:?}: at least 6m is needed"
                    )));
                }
                Ok(bytes)
            })
            .transpose()?;
        let nano_cpus = value(&r.cpu)
            .map(|v| {
                parse_cpus(&v).map_err(|e| ProviderError::Invalid(format!("limits.cpu {v:?}: {e}")))
            })
            .transpose()?;
        Ok(Limits {
            memory_bytes,
            nano_cpus,
        })
    }

    fn is_empty(&self) -> bool {
        self.memory_bytes.is_none() && self.nano_cpus.is_none()
    }
}

/// How this gateway confines replicas.
#[derive(Debug)]
pub enum Confinement {
    /// cgroup v2: `base` (with the memory and cpu controllers enabled for
    /// its children) holds one cgroup per replica.
    V2 { base: PathBuf },
    /// cgroup v1: one base per hierarchy (`cpu` when it could be had).
    V1 {
        memory: PathBuf,
        cpu: Option<PathBuf>,
    },
    /// No writable cgroup: an address-space limit; `why` says what failed.
    AddressSpace { why: String },
}

impl Confinement {
    /// Finds (and prepares) where replicas' cgroups go; clears away those
    /// earlier gateways left behind.
    pub fn detect() -> Confinement {
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let name = format!("faas-gateway-{}", std::process::id());
        let root = Path::new(ROOT);
        let attempt = if root.join("cgroup.controllers").is_file() {
            v2(root, &own, &name)
        } else {
            v1(root, &own, &name)
        };
        attempt.unwrap_or_else(|why| Confinement::AddressSpace { why })
    }

    /// One line for the log and `/system/info`.
    pub fn describe(&self) -> String {
        match self {
            Confinement::V2 { base } => format!("cgroup v2 ({})", base.display()),
            Confinement::V1 { memory, cpu } => format!(
                "cgroup v1 ({}{})",
                memory.display(),
                match cpu {
                    Some(cpu) => format!(", {}", cpu.display()),
                    None => ", no CPU limits: the cpu hierarchy is not writable".into(),
                }
            ),
            Confinement::AddressSpace { why } => {
                format!("address-space limit (RLIMIT_AS) for memory, no CPU limits: {why}")
            }
        }
    }

    /// Makes `replica`'s cgroups with `limits`; what the replica's process
    /// must do before it execs is in the returned placement.
    pub fn place(&self, replica: &str, limits: Limits) -> io::Result<Placement> {
        let mut placement = Placement::default();
        if limits.is_empty() {
            return Ok(placement);
        }
        match self {
            Confinement::V2 { base } => {
                let dir = base.join(replica);
                placement.make(&dir)?;
                if let Some(bytes) = limits.memory_bytes {
                    std::fs::write(dir.join("memory.max"), bytes.to_string())?;
                    // No swapping around the limit.
                    let _ = std::fs::write(dir.join("memory.swap.max"), "0");
                }
                if let Some(nanos) = limits.nano_cpus {
                    std::fs::write(
                        dir.join("cpu.max"),
                        format!("{} {CPU_PERIOD_US}", quota(nanos)),
                    )?;
                }
                placement.join(&dir)?;
            }
            Confinement::V1 { memory, cpu } => {
                if let Some(bytes) = limits.memory_bytes {
                    let dir = memory.join(replica);
                    placement.make(&dir)?;
                    std::fs::write(dir.join("memory.limit_in_bytes"), bytes.to_string())?;
                    let _ = std::fs::write(dir.join("memory.swappiness"), "0");
                    placement.join(&dir)?;
                }
                if let (Some(nanos), Some(cpu)) = (limits.nano_cpus, cpu) {
                    let dir = cpu.join(replica);
                    placement.make(&dir)?;
                    std::fs::write(dir.join("cpu.cfs_period_us"), CPU_PERIOD_US.to_string())?;
                    std::fs::write(dir.join("cpu.cfs_quota_us"), quota(nanos).to_string())?;
                    placement.join(&dir)?;
                }
            }
            Confinement::AddressSpace { .. } => placement.address_space = limits.memory_bytes,
        }
        Ok(placement)
    }
}

/// The CFS quota, in µs per period, for `nanos` billionths of a CPU.
fn quota(nanos: u64) -> u64 {
    (nanos.saturating_mul(CPU_PERIOD_US) / 1_000_000_000).max(1_000)
}

/// The cgroup path of this process in hierarchy `controller` ("" for v2),
/// from `/proc/self/cgroup`.
fn own_path(proc_self_cgroup: &str, controller: &str) -> Option<String> {
    proc_self_cgroup.lines().find_map(|line| {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        let matches = if controller.is_empty() {
            controllers.is_empty()
        } else {
            controllers.split(',').any(|c| c == controller)
        };
        matches.then(|| path.trim_start_matches('/').to_owned())
    })
}

/// The folder for this gateway's cgroups in the hierarchy mounted at
/// `mount`: under our own cgroup when it is visible there (a host), else
/// at the mount's root (a container sees its own cgroup there).
fn base_in(mount: &Path, own: Option<String>, name: &str) -> io::Result<PathBuf> {
    let parent = own
        .map(|own| mount.join(own))
        .filter(|p| p.is_dir())
        .unwrap_or_else(|| mount.to_path_buf());
    sweep(&parent);
    let base = parent.join(name);
    match std::fs::create_dir(&base) {
        Ok(()) => Ok(base),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(base),
        Err(e) => Err(e),
    }
}

fn v1(root: &Path, own: &str, name: &str) -> Result<Confinement, String> {
    let memory_mount = root.join("memory");
    if !memory_mount.join("memory.limit_in_bytes").is_file() {
        return Err(format!(
            "no cgroup v1 memory hierarchy at {}",
            memory_mount.display()
        ));
    }
    let memory = base_in(&memory_mount, own_path(own, "memory"), name)
        .map_err(|e| format!("cannot create a cgroup in {}: {e}", memory_mount.display()))?;
    let cpu_mount = [root.join("cpu"), root.join("cpu,cpuacct")]
        .into_iter()
        .find(|m| m.join("cpu.cfs_quota_us").is_file());
    let cpu = cpu_mount.and_then(|m| base_in(&m, own_path(own, "cpu"), name).ok());
    Ok(Confinement::V1 { memory, cpu })
}

fn v2(root: &Path, own: &str, name: &str) -> Result<Confinement, String> {
    let base = base_in(root, own_path(own, ""), name)
        .map_err(|e| format!("cannot create a cgroup under {}: {e}", root.display()))?;
    // Children may be limited only where the parent hands the controllers down.
    std::fs::write(base.join("cgroup.subtree_control"), "+memory +cpu")
        .or_else(|_| std::fs::write(base.join("cgroup.subtree_control"), "+memory"))
        .map_err(|e| {
            let _ = std::fs::remove_dir(&base);
            format!(
                "the memory controller is not delegated to {}: {e}",
                base.display()
            )
        })?;
    Ok(Confinement::V2 { base })
}

/// Removes the cgroups of gateways that are gone (their replicas are gone
/// too: they die with their gateway).
fn sweep(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("faas-gateway-"))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let base = entry.path();
        if let Ok(children) = std::fs::read_dir(&base) {
            for child in children.flatten().filter(|c| c.path().is_dir()) {
                let _ = std::fs::remove_dir(child.path());
            }
        }
        let _ = std::fs::remove_dir(&base);
    }
}

/// What one replica's process does before it execs (join its cgroups, or
/// set its address-space limit); its cgroups are removed when dropped,
/// once the replica's processes are gone.
#[derive(Debug, Default)]
pub struct Placement {
    dirs: Vec<PathBuf>,
    procs: Vec<File>,
    address_space: Option<u64>,
}

impl Placement {
    fn make(&mut self, dir: &Path) -> io::Result<()> {
        match std::fs::create_dir(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        self.dirs.push(dir.to_path_buf());
        Ok(())
    }

    fn join(&mut self, dir: &Path) -> io::Result<()> {
        self.procs.push(
            std::fs::OpenOptions::new()
                .write(true)
                .open(dir.join("cgroup.procs"))?,
        );
        Ok(())
    }

    /// What the child must do, as plain values a `pre_exec` hook can use
    /// after fork (no allocation there).
    pub fn before_exec(&self) -> BeforeExec {
        BeforeExec {
            procs: self.procs.iter().map(|f| f.as_raw_fd()).collect(),
            address_space: self.address_space,
        }
    }
}

impl Placement {
    /// Removes the replica's cgroups once its processes are gone (the
    /// kernel refuses while any is left; the watchdog has been reaped by
    /// now, its children go with it), trying for a while.
    pub async fn release(mut self) {
        for _ in 0..100 {
            self.dirs.retain(|dir| match std::fs::remove_dir(dir) {
                Ok(()) => false,
                Err(e) => e.kind() != io::ErrorKind::NotFound,
            });
            if self.dirs.is_empty() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        tracing::warn!(cgroups = ?self.dirs, "cannot remove a stopped replica's cgroups: processes are left in them");
    }
}

/// [`Placement::before_exec`]'s values.
#[derive(Debug, Clone)]
pub struct BeforeExec {
    procs: Vec<RawFd>,
    address_space: Option<u64>,
}

impl BeforeExec {
    /// Runs in the forked child: joins the cgroups ("0" is the writer
    /// itself) and sets the address-space limit. Only async-signal-safe
    /// calls.
    pub fn apply(&self) -> io::Result<()> {
        for &fd in &self.procs {
            // SAFETY: writing two bytes from a static buffer to an open descriptor.
            if unsafe { libc::write(fd, b"0\n".as_ptr().cast(), 2) } < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        if let Some(bytes) = self.address_space {
            let limit = libc::rlimit {
                rlim_cur: bytes as libc::rlim_t,
                rlim_max: bytes as libc::rlim_t,
            };
            // SAFETY: setrlimit reads the struct it is given.
            if unsafe { libc::setrlimit(libc::RLIMIT_AS, &limit) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_checked_with_the_field_named() {
        let limits = |memory: &str, cpu: &str| {
            Limits::parse(Some(&Resources {
                memory: Some(memory.into()),
                cpu: Some(cpu.into()),
            }))
        };
        assert_eq!(
            limits("128m", "0.5").unwrap(),
            Limits {
                memory_bytes: Some(128 << 20),
                nano_cpus: Some(500_000_000)
            }
        );
        assert_eq!(limits("", " ").unwrap(), Limits::default());
        assert_eq!(Limits::parse(None).unwrap(), Limits::default());
        let error = limits("lots", "1").unwrap_err().to_string();
        assert!(error.contains("limits.memory \"lots\""), "{error}");
        let error = limits("1m", "1").unwrap_err().to_string();
        assert!(error.contains("at least 6m"), "{error}");
        let error = limits("64m", "-1").unwrap_err().to_string();
        assert!(error.contains("limits.cpu \"-1\""), "{error}");
    }

    #[test]
    fn the_own_cgroup_is_found_per_hierarchy() {
        let own = "9:name=systemd:/\n4:memory:/process_api/abc\n2:cpu,cpuacct:/x\n0::/unified\n";
        assert_eq!(own_path(own, "memory").as_deref(), Some("process_api/abc"));
        assert_eq!(own_path(own, "cpu").as_deref(), Some("x"));
        assert_eq!(own_path(own, "").as_deref(), Some("unified"));
        assert_eq!(own_path(own, "pids"), None);
    }

    #[test]
    fn a_cpu_quota_is_per_period_with_a_floor() {
        assert_eq!(quota(500_000_000), 50_000);
        assert_eq!(quota(2_000_000_000), 200_000);
        assert_eq!(quota(1), 1_000);
    }

    #[test]
    fn a_dead_gateways_cgroups_are_swept_and_a_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let dead = dir.path().join("faas-gateway-4000000000");
        std::fs::create_dir_all(dead.join("fn-1")).unwrap();
        let live = dir
            .path()
            .join(format!("faas-gateway-{}", std::process::id()));
        std::fs::create_dir_all(&live).unwrap();
        let other = dir.path().join("something-else");
        std::fs::create_dir_all(&other).unwrap();
        sweep(dir.path());
        assert!(!dead.exists());
        assert!(live.exists() && other.exists());
    }
}
