//! HTTP basic auth for `/system/*` (and, with `auth_invoke`, for calls).
//!
//! Credentials come from the secret files `basic-auth-user` and
//! `basic-auth-password` under `secret_mount_path` (where Swarm mounts
//! secrets), else from `basic_auth_user` / `basic_auth_password`. Without
//! any, the API is open. Comparison is constant-time; credentials are never
//! logged or echoed.

use std::path::Path;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::header::{AUTHORIZATION, HeaderValue, WWW_AUTHENTICATE};
use http::{HeaderMap, StatusCode};
use subtle::ConstantTimeEq;

use crate::AppState;
use crate::config::Config;
use crate::forward::text;

const USER_FILE: &str = "basic-auth-user";
const PASSWORD_FILE: &str = "basic-auth-password";

/// The one user allowed in.
pub struct Credentials {
    user: Vec<u8>,
    password: Vec<u8>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials(<redacted>)")
    }
}

impl Credentials {
    /// The configured credentials, if any. Half a pair (a user without a
    /// password, or the reverse) is a configuration error, not an open API.
    pub fn load(config: &Config) -> Result<Option<Credentials>, String> {
        let dir = &config.secret_mount_path;
        let user = read_secret(dir, USER_FILE)?;
        let password = read_secret(dir, PASSWORD_FILE)?;
        let (user, password, names) = match (user, password) {
            (Some(u), Some(p)) => (
                Some(u),
                Some(p),
                [
                    dir.join(USER_FILE).display().to_string(),
                    dir.join(PASSWORD_FILE).display().to_string(),
                ],
            ),
            (None, None) => (
                config.basic_auth_user.clone(),
                config.basic_auth_password.clone(),
                [
                    "basic_auth_user".to_owned(),
                    "basic_auth_password".to_owned(),
                ],
            ),
            (Some(_), None) => {
                return Err(format!(
                    "{} exists but {} does not",
                    dir.join(USER_FILE).display(),
                    dir.join(PASSWORD_FILE).display()
                ));
            }
            (None, Some(_)) => {
                return Err(format!(
                    "{} exists but {} does not",
                    dir.join(PASSWORD_FILE).display(),
                    dir.join(USER_FILE).display()
                ));
            }
        };
        let [user_name, password_name] = names;
        match (user, password) {
            (None, None) => Ok(None),
            (Some(u), Some(p)) if !u.is_empty() && !p.is_empty() => Ok(Some(Credentials {
                user: u.into_bytes(),
                password: p.into_bytes(),
            })),
            (Some(u), _) if !u.is_empty() => Err(format!(
                "{user_name} is set but {password_name} is missing or empty: both are needed"
            )),
            (_, Some(p)) if !p.is_empty() => Err(format!(
                "{password_name} is set but {user_name} is missing or empty: both are needed"
            )),
            _ => Err(format!("{user_name} and {password_name} are empty")),
        }
    }

    #[cfg(test)]
    fn new(user: &str, password: &str) -> Credentials {
        Credentials {
            user: user.as_bytes().to_vec(),
            password: password.as_bytes().to_vec(),
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
        // Both compared, always: no early exit tells which half was wrong.
        let user_ok = user.as_slice().ct_eq(&self.user);
        let password_ok = password.as_slice().ct_eq(&self.password);
        (user_ok & password_ok).into()
    }
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
    response.headers_mut().insert(
        WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"faas\""),
    );
    response
}

/// Whether a request may pass, given the gateway's credentials.
pub fn allowed(state: &AppState, headers: &HeaderMap) -> bool {
    state.credentials.as_ref().is_none_or(|c| c.admits(headers))
}

/// Middleware for the `/system/*` routes.
pub async fn require(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    if allowed(&state, request.headers()) {
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
        let c = Credentials::new("admin", "s3:cret");
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

    #[test]
    fn secret_files_win_and_half_a_pair_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = <Config as clap::Parser>::try_parse_from(["gateway"]).unwrap();
        config.secret_mount_path = dir.path().to_owned();
        assert!(Credentials::load(&config).unwrap().is_none());

        config.basic_auth_user = Some("env-user".into());
        assert!(Credentials::load(&config).is_err());
        config.basic_auth_password = Some("env-pass".into());
        let c = Credentials::load(&config).unwrap().unwrap();
        assert!(c.admits(&basic("env-user:env-pass")));

        std::fs::write(dir.path().join(USER_FILE), "admin\n").unwrap();
        let err = Credentials::load(&config).unwrap_err();
        assert!(err.contains(PASSWORD_FILE), "{err}");
        std::fs::write(dir.path().join(PASSWORD_FILE), "pw\n").unwrap();
        let c = Credentials::load(&config).unwrap().unwrap();
        assert!(c.admits(&basic("admin:pw")));
        assert!(!c.admits(&basic("env-user:env-pass")));
        assert_eq!(format!("{c:?}"), "Credentials(<redacted>)");
    }
}
