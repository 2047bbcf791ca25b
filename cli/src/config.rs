//! Stored logins: one username and password per gateway URL, in a JSON
//! file only its owner can read (`0600` in a `0700` directory), found at
//! `$FAAS_CONFIG`, else `$XDG_CONFIG_HOME/faas/config.json`, else
//! `~/.config/faas/config.json`. `FAAS_USERNAME`/`FAAS_PASSWORD` override
//! it, so scripts and CI need no file at all.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, io_reason};

pub const CONFIG_ENV: &str = "FAAS_CONFIG";
pub const USERNAME_ENV: &str = "FAAS_USERNAME";
pub const PASSWORD_ENV: &str = "FAAS_PASSWORD";
pub const DEFAULT_USERNAME: &str = "admin";

/// HTTP basic auth credentials for a gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

/// The whole file.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ConfigFile {
    /// Keyed by the normalised gateway URL.
    #[serde(default)]
    pub gateways: BTreeMap<String, Credentials>,
}

/// Where the file lives, from the environment (see the module docs).
pub fn path() -> Result<PathBuf> {
    path_from(|name| std::env::var_os(name).filter(|v| !v.is_empty()))
}

fn path_from(var: impl Fn(&str) -> Option<std::ffi::OsString>) -> Result<PathBuf> {
    if let Some(file) = var(CONFIG_ENV) {
        return Ok(PathBuf::from(file));
    }
    // The XDG spec says to ignore a relative XDG_CONFIG_HOME.
    if let Some(dir) = var("XDG_CONFIG_HOME").map(PathBuf::from)
        && dir.is_absolute()
    {
        return Ok(dir.join("faas").join("config.json"));
    }
    match var("HOME") {
        Some(home) => Ok(PathBuf::from(home).join(".config/faas/config.json")),
        None => Err(Error::new(format!(
            "cannot tell where to keep logins: set {CONFIG_ENV} or HOME"
        ))),
    }
}

/// Reads the file; a missing file is an empty one.
pub fn load(path: &Path) -> Result<ConfigFile> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            Error::new(format!(
                "{} is not a valid faas config file: {e}",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ConfigFile::default()),
        Err(e) => Err(Error::new(format!(
            "cannot read {}: {}",
            path.display(),
            io_reason(&e)
        ))),
    }
}

/// Writes the file atomically (temporary file, then rename), readable by
/// its owner only, whatever the mode of an older copy was.
pub fn save(path: &Path, config: &ConfigFile) -> Result<()> {
    let failed = |what: &Path, e: std::io::Error| {
        Error::new(format!(
            "cannot write {}: {}",
            what.display(),
            io_reason(&e)
        ))
    };
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    create_private_dir(&dir).map_err(|e| failed(&dir, e))?;
    let mut json = serde_json::to_vec_pretty(config)
        .map_err(|e| Error::new(format!("cannot encode the config file: {e}")))?;
    json.push(b'\n');
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "config.json".into());
    let temp = dir.join(format!(".{file_name}.{}.tmp", std::process::id()));
    let written = (|| {
        let mut file = private_file(&temp)?;
        file.write_all(&json)?;
        file.sync_all()?;
        fs::rename(&temp, path)
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&temp);
        return Err(failed(path, e));
    }
    Ok(())
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    fs::create_dir_all(dir)
}

#[cfg(unix)]
fn private_file(path: &Path) -> std::io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn private_file(path: &Path) -> std::io::Result<fs::File> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

/// The credentials for `gateway`: `FAAS_PASSWORD` (with `FAAS_USERNAME`,
/// default `admin`) when set, else the stored login, else none.
pub fn credentials_for(gateway: &str) -> Result<Option<Credentials>> {
    if let Some(env) = from_env(|name| std::env::var(name).ok()) {
        return Ok(Some(env));
    }
    let path = path()?;
    Ok(load(&path)?.gateways.remove(gateway))
}

fn from_env(var: impl Fn(&str) -> Option<String>) -> Option<Credentials> {
    let password = var(PASSWORD_ENV).filter(|p| !p.is_empty())?;
    let username = var(USERNAME_ENV)
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| DEFAULT_USERNAME.to_string());
    Some(Credentials { username, password })
}

/// Remembers a login; returns the file it went to.
pub fn store(gateway: &str, credentials: Credentials) -> Result<PathBuf> {
    let path = path()?;
    let mut config = load(&path)?;
    config.gateways.insert(gateway.to_string(), credentials);
    save(&path, &config)?;
    Ok(path)
}

/// Forgets a login; says whether there was one.
pub fn forget(gateway: &str) -> Result<bool> {
    let path = path()?;
    let mut config = load(&path)?;
    if config.gateways.remove(gateway).is_none() {
        return Ok(false);
    }
    save(&path, &config)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn the_file_is_found_like_other_xdg_tools() {
        assert_eq!(
            path_from(env(&[(CONFIG_ENV, "/x/c.json"), ("HOME", "/h")])).unwrap(),
            PathBuf::from("/x/c.json")
        );
        assert_eq!(
            path_from(env(&[("XDG_CONFIG_HOME", "/xdg"), ("HOME", "/h")])).unwrap(),
            PathBuf::from("/xdg/faas/config.json")
        );
        assert_eq!(
            path_from(env(&[("XDG_CONFIG_HOME", "rel"), ("HOME", "/h")])).unwrap(),
            PathBuf::from("/h/.config/faas/config.json")
        );
        assert!(path_from(env(&[])).is_err());
    }

    #[test]
    fn environment_credentials_default_to_admin() {
        let get = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(
            from_env(get(&[(PASSWORD_ENV, "pw")])),
            Some(Credentials {
                username: "admin".into(),
                password: "pw".into()
            })
        );
        assert_eq!(
            from_env(get(&[(PASSWORD_ENV, "pw"), (USERNAME_ENV, "bob")]))
                .unwrap()
                .username,
            "bob"
        );
        assert_eq!(from_env(get(&[(USERNAME_ENV, "bob")])), None);
    }

    #[test]
    #[cfg(unix)]
    fn saved_files_are_private_and_replace_older_ones() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/faas/config.json");
        let mut config = ConfigFile::default();
        config.gateways.insert(
            "http://gw".into(),
            Credentials {
                username: "admin".into(),
                password: "one".into(),
            },
        );
        save(&path, &config).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);

        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        config.gateways.get_mut("http://gw").unwrap().password = "two".into();
        save(&path, &config).unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(load(&path).unwrap().gateways["http://gw"].password, "two");
    }

    #[test]
    fn a_missing_file_is_empty_and_a_broken_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        assert!(load(&path).unwrap().gateways.is_empty());
        fs::write(&path, "{not json").unwrap();
        let e = load(&path).unwrap_err().to_string();
        assert!(
            e.contains("config.json") && e.contains("not a valid"),
            "{e}"
        );
    }
}
