//! Which `fwatchdog` a replica runs, and where a function's program is.

use std::path::{Path, PathBuf};

/// How to start a watchdog.
#[derive(Debug, Clone)]
pub enum Launcher {
    /// An `fwatchdog` binary.
    Binary(PathBuf),
    /// This executable, which runs the watchdog when its first argument is
    /// `fwatchdog` (for `cargo run -p gateway`, where no `fwatchdog` is built).
    Embedded(PathBuf),
}

impl Launcher {
    /// `fwatchdog` beside this executable, else on PATH, else this
    /// executable itself.
    pub fn find() -> Launcher {
        let exe = std::env::current_exe().ok();
        if let Some(beside) = exe
            .as_ref()
            .and_then(|e| e.parent())
            .map(|d| d.join("fwatchdog"))
            && beside.is_file()
        {
            return Launcher::Binary(beside);
        }
        if let Some(on_path) = find_on_path("fwatchdog") {
            return Launcher::Binary(on_path);
        }
        Launcher::Embedded(exe.unwrap_or_else(|| PathBuf::from("gateway")))
    }

    pub(super) fn command(&self) -> tokio::process::Command {
        match self {
            Launcher::Binary(path) => tokio::process::Command::new(path),
            Launcher::Embedded(exe) => {
                let mut cmd = tokio::process::Command::new(exe);
                cmd.arg("fwatchdog");
                cmd
            }
        }
    }
}

pub(super) fn find_on_path(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// Why `fprocess` cannot run from `workdir`, if it cannot: its program is
/// not a file (a path), or not in the folder, on PATH or beside the
/// gateway (a bare name). Checked before each start, so a program built
/// later is picked up.
pub(super) fn missing_program(fprocess: &str, workdir: &Path) -> Option<String> {
    let resolved = resolve_fprocess(fprocess, workdir);
    let program = resolved.split_whitespace().next()?;
    let found = if program.contains('/') {
        workdir.join(program).is_file()
    } else {
        workdir.join(program).is_file() || find_on_path(program).is_some()
    };
    // No server path in it: anyone who may call the function reads it.
    (!found).then(|| format!("its program {program:?} is not in its folder or on PATH"))
}

/// A bare program name that is neither in the function's folder nor on
/// PATH but sits beside the gateway (`markdown` under `cargo run`) is
/// given by its full path.
pub(super) fn resolve_fprocess(fprocess: &str, workdir: &Path) -> String {
    let mut words = fprocess.split_whitespace();
    let Some(program) = words.next() else {
        return fprocess.to_owned();
    };
    if program.contains('/') || workdir.join(program).is_file() || find_on_path(program).is_some() {
        return fprocess.to_owned();
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join(program)))
        .filter(|p| p.is_file());
    match beside {
        Some(path) => std::iter::once(path.display().to_string())
            .chain(words.map(str::to_owned))
            .collect::<Vec<_>>()
            .join(" "),
        None => fprocess.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_program_that_is_nowhere_is_named() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(missing_program("sh handler.sh", dir.path()), None);
        std::fs::write(dir.path().join("run.sh"), "").unwrap();
        assert_eq!(missing_program("./run.sh -x", dir.path()), None);
        let missing = missing_program("no-such-program-xyz --port 8081", dir.path()).unwrap();
        assert!(
            missing.starts_with("its program \"no-such-program-xyz\" is not in its folder"),
            "{missing}"
        );
        assert!(missing_program("./gone.sh", dir.path()).is_some());
    }

    #[test]
    fn bare_programs_on_path_are_left_alone() {
        assert_eq!(
            resolve_fprocess("sh handler.sh", Path::new("/")),
            "sh handler.sh"
        );
        assert_eq!(
            resolve_fprocess("./run.sh -x", Path::new("/")),
            "./run.sh -x"
        );
    }
}
