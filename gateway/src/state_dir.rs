//! The gateway's own directory: generated credentials, the async queue
//! (unless `queue_path` puts it elsewhere) and the process provider's
//! files. It is private to the gateway's user: created 0700, refused when
//! another user owns it or others may write to it (they could have planted
//! files), tightened to 0700 when it was merely readable. Files in it are
//! created 0600.

use std::fs::{DirBuilder, OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Used when neither `state_dir`, `XDG_STATE_HOME` nor `HOME` is set (a
/// container with an empty environment).
const FALLBACK: &str = "/var/lib/faas-gateway";
const NAME: &str = "faas-gateway";

/// `$XDG_STATE_HOME/faas-gateway`, else `~/.local/state/faas-gateway`.
pub fn default_path() -> PathBuf {
    let from = |var: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    if let Some(state) = from("XDG_STATE_HOME") {
        return state.join(NAME);
    }
    if let Some(home) = from("HOME") {
        return home.join(".local/state").join(NAME);
    }
    PathBuf::from(FALLBACK)
}

/// The state directory `config` names, else the default.
pub fn of(config: &crate::config::Config) -> PathBuf {
    config.state_dir.clone().unwrap_or_else(default_path)
}

/// Creates `dir` (0700) or checks that it is ours and private.
pub fn prepare(dir: &Path) -> Result<(), String> {
    if let Some(parent) = dir.parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    match DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("cannot create {}: {e}", dir.display())),
    }
    let meta = std::fs::symlink_metadata(dir)
        .map_err(|e| format!("cannot inspect {}: {e}", dir.display()))?;
    if !meta.is_dir() {
        return Err(format!(
            "{} is not a directory (a symbolic link or a file): choose another --state-dir",
            dir.display()
        ));
    }
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        return Err(format!(
            "{} belongs to user {}, not to the gateway's user {me}: choose another --state-dir",
            dir.display(),
            meta.uid()
        ));
    }
    let mode = meta.mode() & 0o777;
    if mode & 0o022 != 0 {
        return Err(format!(
            "{} is writable by other users (mode {mode:o}), who could have planted files in it: remove it or choose another --state-dir",
            dir.display()
        ));
    }
    if mode & 0o077 != 0 {
        tracing::warn!(dir = %dir.display(), mode = format_args!("{mode:o}"), "state directory was readable by others: now 0700");
        std::fs::set_permissions(dir, Permissions::from_mode(0o700))
            .map_err(|e| format!("cannot make {} private: {e}", dir.display()))?;
    }
    Ok(())
}

/// Writes a new file readable only by the gateway's user (refusing to
/// follow or replace anything already there).
pub fn write_private(path: &Path, content: &[u8]) -> std::io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(content)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().mode() & 0o777
    }

    #[test]
    fn created_private_and_loose_ones_refused_or_tightened() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b/state");
        prepare(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        prepare(&dir).unwrap();

        std::fs::set_permissions(&dir, Permissions::from_mode(0o755)).unwrap();
        prepare(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);

        std::fs::set_permissions(&dir, Permissions::from_mode(0o777)).unwrap();
        let err = prepare(&dir).unwrap_err();
        assert!(err.contains("writable by other users"), "{err}");

        let file = root.path().join("file");
        std::fs::write(&file, "x").unwrap();
        assert!(prepare(&file).unwrap_err().contains("not a directory"));
        let link = root.path().join("link");
        std::os::unix::fs::symlink(root.path(), &link).unwrap();
        assert!(prepare(&link).unwrap_err().contains("not a directory"));
    }

    #[test]
    fn private_files_are_0600_and_never_overwritten() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("secret");
        write_private(&path, b"pw").unwrap();
        assert_eq!(mode(&path), 0o600);
        assert!(write_private(&path, b"other").is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"pw");
    }
}
