//! HTTP basic auth for `/system/*` (and, with `auth_invoke`, for calls).
//!
//! Credentials come from the secret files `basic-auth-user` and
//! `basic-auth-password` under `secret_mount_path` (where Swarm mounts
//! secrets), else from `basic_auth_user` / `basic_auth_password`, else from
//! the same two files in the state directory, which the gateway writes
//! (random password, mode 0600) on its first start. The API is open only
//! with `--auth none`, an operator's explicit choice. Credentials are kept
//! as SHA-256 digests and compared in constant time (equal lengths, so
//! nothing leaks through timing), never logged or echoed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http::header::{AUTHORIZATION, HeaderValue, WWW_AUTHENTICATE};
use http::{HeaderMap, StatusCode};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{AuthMode, Config};
use crate::reply::text;
use crate::state_dir;

pub const USER_FILE: &str = "basic-auth-user";
pub const PASSWORD_FILE: &str = "basic-auth-password";
/// The user name of generated credentials.
pub const DEFAULT_USER: &str = "admin";
/// Marks the gateway's own 401 (the forwarder removes it from functions'
/// answers, so none can forge it): clients send credentials on a call only
/// when the gateway itself asks for them.
pub const AUTH_REQUIRED_HEADER: &str = "x-faas-auth";
/// [`AUTH_REQUIRED_HEADER`] as a name, built once (the forwarder removes it
/// from every answer).
pub const AUTH_REQUIRED: http::HeaderName = http::HeaderName::from_static(AUTH_REQUIRED_HEADER);

/// The one user allowed in, as digests.
pub struct Credentials {
    user: [u8; 32],
    password: [u8; 32],
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials(<redacted>)")
    }
}

/// Where the credentials in force came from, for the start-up log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    SecretFiles(PathBuf),
    Environment,
    /// Generated at an earlier start, read from the state directory.
    StateDir(PathBuf),
    /// Generated now (the password is shown once); kept in this directory.
    Generated {
        dir: PathBuf,
        password: String,
    },
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

impl Credentials {
    fn new(user: &[u8], password: &[u8]) -> Credentials {
        Credentials {
            user: digest(user),
            password: digest(password),
        }
    }

    /// The credentials in force and where they came from; `None` only with
    /// `--auth none`. Half a pair (a user without a password, or the
    /// reverse) is a configuration error, not an open API.
    pub fn load(
        config: &Config,
        state_dir: &Path,
    ) -> Result<Option<(Credentials, Source)>, String> {
        let configured = Credentials::configured(config)?;
        if config.auth == AuthMode::None {
            return match configured {
                Some((_, Source::SecretFiles(dir))) => Err(format!(
                    "--auth none, but credentials are configured in {}: remove them or drop --auth none",
                    dir.display()
                )),
                Some(_) => Err(
                    "--auth none, but basic_auth_user and basic_auth_password are set: unset them or drop --auth none"
                        .to_owned(),
                ),
                None => Ok(None),
            };
        }
        if let Some(found) = configured {
            return Ok(Some(found));
        }
        let from_state = || -> Result<Option<(Credentials, Source)>, String> {
            Ok(read_generated(state_dir)?.map(|(user, password)| {
                (
                    Credentials::new(user.as_bytes(), password.as_bytes()),
                    Source::StateDir(state_dir.to_owned()),
                )
            }))
        };
        if let Some(found) = from_state()? {
            return Ok(Some(found));
        }
        let password = generate_password()?;
        let failed = |e: std::io::Error| {
            format!(
                "cannot store generated credentials in {}: {e}",
                state_dir.display()
            )
        };
        // The password appears whole or not at all (written aside, then
        // linked into place), and only once: a gateway that loses the race
        // to another on the same directory uses the winner's.
        let aside = state_dir.join(format!(".{PASSWORD_FILE}.{}", std::process::id()));
        let _ = std::fs::remove_file(&aside);
        state_dir::write_private(&aside, password.as_bytes()).map_err(failed)?;
        let linked = std::fs::hard_link(&aside, state_dir.join(PASSWORD_FILE));
        let _ = std::fs::remove_file(&aside);
        match linked {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return from_state()?.map(Some).ok_or_else(|| failed(e));
            }
            Err(e) => return Err(failed(e)),
        }
        match state_dir::write_private(&state_dir.join(USER_FILE), DEFAULT_USER.as_bytes()) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(failed(e)),
            _ => {}
        }
        Ok(Some((
            Credentials::new(DEFAULT_USER.as_bytes(), password.as_bytes()),
            Source::Generated {
                dir: state_dir.to_owned(),
                password,
            },
        )))
    }

    /// Credentials the operator configured: secret files, else variables.
    fn configured(config: &Config) -> Result<Option<(Credentials, Source)>, String> {
        let dir = &config.secret_mount_path;
        if let Some((user, password)) = read_pair(dir)? {
            return Ok(Some((
                Credentials::new(user.as_bytes(), password.as_bytes()),
                Source::SecretFiles(dir.clone()),
            )));
        }
        let (user_name, password_name) = ("basic_auth_user", "basic_auth_password");
        match (&config.basic_auth_user, &config.basic_auth_password) {
            (None, None) => Ok(None),
            (Some(u), Some(p)) if !u.is_empty() && !p.is_empty() => Ok(Some((
                Credentials::new(u.as_bytes(), p.as_bytes()),
                Source::Environment,
            ))),
            (Some(u), _) if !u.is_empty() => Err(format!(
                "{user_name} is set but {password_name} is missing or empty: both are needed"
            )),
            (_, Some(p)) if !p.is_empty() => Err(format!(
                "{password_name} is set but {user_name} is missing or empty: both are needed"
            )),
            _ => Err(format!("{user_name} and {password_name} are empty")),
        }
    }

    /// Whether `headers` carry these credentials.
    pub fn admits(&self, headers: &HeaderMap) -> bool {
        let Some((user, password)) = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(decode_basic)
        else {
            return false;
        };
        // Digests of equal length, both compared, always: neither the
        // length nor which half was wrong shows in the time taken.
        let user_ok = digest(&user).ct_eq(&self.user);
        let password_ok = digest(&password).ct_eq(&self.password);
        (user_ok & password_ok).into()
    }
}

/// The pair of files in `dir`; `None` when neither exists, an error
/// naming the missing one when only one does, or when one is empty.
fn read_pair(dir: &Path) -> Result<Option<(String, String)>, String> {
    let user = read_secret(dir, USER_FILE)?;
    let password = read_secret(dir, PASSWORD_FILE)?;
    let (user_path, password_path) = (dir.join(USER_FILE), dir.join(PASSWORD_FILE));
    match (user, password) {
        (None, None) => Ok(None),
        (Some(u), Some(p)) if !u.is_empty() && !p.is_empty() => Ok(Some((u, p))),
        (Some(_), Some(_)) => Err(format!(
            "{} or {} is empty",
            user_path.display(),
            password_path.display()
        )),
        (Some(_), None) => Err(format!(
            "{} exists but {} does not",
            user_path.display(),
            password_path.display()
        )),
        (None, Some(_)) => Err(format!(
            "{} exists but {} does not",
            password_path.display(),
            user_path.display()
        )),
    }
}

/// Generated credentials in the state directory: the password file, and
/// the user file (`admin` when absent: a start cut short between the two).
fn read_generated(dir: &Path) -> Result<Option<(String, String)>, String> {
    let Some(password) = read_secret(dir, PASSWORD_FILE)? else {
        return Ok(None);
    };
    if password.is_empty() {
        return Err(format!(
            "{} is empty: remove it and a new password is generated",
            dir.join(PASSWORD_FILE).display()
        ));
    }
    let user = read_secret(dir, USER_FILE)?
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| DEFAULT_USER.to_owned());
    Ok(Some((user, password)))
}

/// 24 characters from 18 random bytes (144 bits), safe in a shell.
fn generate_password() -> Result<String, String> {
    let mut bytes = [0u8; 18];
    getrandom::fill(&mut bytes).map_err(|e| format!("no randomness for a password: {e}"))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// `Basic <base64(user:password)>` → (user, password).
fn decode_basic(value: &str) -> Option<(Vec<u8>, Vec<u8>)> {
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD.decode(encoded.trim()).ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    Some((decoded[..colon].to_vec(), decoded[colon + 1..].to_vec()))
}

/// A secret file's content without its trailing newline; `None` when absent.
fn read_secret(dir: &Path, name: &str) -> Result<Option<String>, String> {
    let path = dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(s) => Ok(Some(s.trim_end_matches(['\r', '\n']).to_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// The 401 every refused request gets.
pub fn unauthorized() -> Response {
    let mut response = text(
        StatusCode::UNAUTHORIZED,
        "authentication required: send basic auth credentials (faas login)",
    );
    let headers = response.headers_mut();
    headers.insert(
        WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"faas\""),
    );
    headers.insert(AUTH_REQUIRED, HeaderValue::from_static("basic"));
    response
}

/// Whether a request may pass, given the gateway's credentials (`None`:
/// an open API).
pub fn allowed(credentials: Option<&Credentials>, headers: &HeaderMap) -> bool {
    credentials.is_none_or(|c| c.admits(headers))
}

/// Middleware for the `/system/*` routes.
pub async fn require(
    State(credentials): State<Option<Arc<Credentials>>>,
    request: Request,
    next: Next,
) -> Response {
    if allowed(credentials.as_deref(), request.headers()) {
        next.run(request).await
    } else {
        unauthorized()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        h
    }

    fn basic(user_password: &str) -> HeaderMap {
        headers(&format!("Basic {}", STANDARD.encode(user_password)))
    }

    #[test]
    fn admits_only_the_exact_pair() {
        let c = Credentials::new(b"admin", b"s3:cret");
        assert!(c.admits(&basic("admin:s3:cret")));
        assert!(c.admits(&headers(&format!(
            "basic  {}",
            STANDARD.encode("admin:s3:cret")
        ))));
        for wrong in [
            "admin:s3:cre",
            "admin:s3:cret ",
            "Admin:s3:cret",
            "admin",
            ":",
        ] {
            assert!(!c.admits(&basic(wrong)), "{wrong}");
        }
        assert!(!c.admits(&HeaderMap::new()));
        assert!(!c.admits(&headers("Bearer abc")));
        assert!(!c.admits(&headers("Basic not-base64!")));
    }

    fn config(secrets: &Path) -> Config {
        let mut config = <Config as clap::Parser>::try_parse_from(["gateway"]).unwrap();
        config.secret_mount_path = secrets.to_owned();
        config
    }

    #[test]
    fn secret_files_win_and_half_a_pair_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let mut config = config(dir.path());

        config.basic_auth_user = Some("env-user".into());
        assert!(Credentials::load(&config, state.path()).is_err());
        config.basic_auth_password = Some("env-pass".into());
        let (c, source) = Credentials::load(&config, state.path()).unwrap().unwrap();
        assert_eq!(source, Source::Environment);
        assert!(c.admits(&basic("env-user:env-pass")));

        std::fs::write(dir.path().join(USER_FILE), "admin\n").unwrap();
        let err = Credentials::load(&config, state.path()).unwrap_err();
        assert!(err.contains(PASSWORD_FILE), "{err}");
        std::fs::write(dir.path().join(PASSWORD_FILE), "pw\n").unwrap();
        let (c, source) = Credentials::load(&config, state.path()).unwrap().unwrap();
        assert_eq!(source, Source::SecretFiles(dir.path().to_owned()));
        assert!(c.admits(&basic("admin:pw")));
        assert!(!c.admits(&basic("env-user:env-pass")));
        assert_eq!(format!("{c:?}"), "Credentials(<redacted>)");
        // Nothing was generated while credentials were configured.
        assert!(!state.path().join(PASSWORD_FILE).exists());
    }

    #[test]
    fn without_credentials_a_password_is_generated_once_and_kept() {
        let secrets = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let config = config(secrets.path());
        let (c, source) = Credentials::load(&config, state.path()).unwrap().unwrap();
        let Source::Generated { password, .. } = source else {
            panic!("expected generated credentials, got {source:?}");
        };
        assert_eq!(password.len(), 24);
        assert!(c.admits(&basic(&format!("admin:{password}"))));
        let file = state.path().join(PASSWORD_FILE);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), password);
        use std::os::unix::fs::MetadataExt;
        assert_eq!(std::fs::metadata(&file).unwrap().mode() & 0o777, 0o600);
        // The next start reads the same ones.
        let (again, source) = Credentials::load(&config, state.path()).unwrap().unwrap();
        assert_eq!(source, Source::StateDir(state.path().to_owned()));
        assert!(again.admits(&basic(&format!("admin:{password}"))));
        // A start cut short before the user file: still the same login.
        std::fs::remove_file(state.path().join(USER_FILE)).unwrap();
        let (again, _) = Credentials::load(&config, state.path()).unwrap().unwrap();
        assert!(again.admits(&basic(&format!("admin:{password}"))));
        // A fresh state directory gets a different password.
        let other = tempfile::tempdir().unwrap();
        let (_, source) = Credentials::load(&config, other.path()).unwrap().unwrap();
        assert!(matches!(source, Source::Generated { password: p, .. } if p != password));
    }

    #[test]
    fn auth_none_is_open_but_never_with_credentials_configured() {
        let secrets = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let mut config = config(secrets.path());
        config.auth = AuthMode::None;
        assert!(Credentials::load(&config, state.path()).unwrap().is_none());
        assert!(!state.path().join(PASSWORD_FILE).exists());
        config.basic_auth_user = Some("u".into());
        config.basic_auth_password = Some("p".into());
        let err = Credentials::load(&config, state.path()).unwrap_err();
        assert!(err.contains("--auth none"), "{err}");
    }
}
