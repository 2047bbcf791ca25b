//! The command run for a request: `fprocess` exec'd without a shell, with
//! the request described to it in CGI-style `Http_*` environment variables.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::process::Command;

use http::request::Parts;

use crate::config::Config;

/// Builds the command for one request (`None`: the long-lived `http`-mode
/// process). The reaper sets up its standard streams.
pub fn command(config: &Config, request: Option<&Parts>) -> Command {
    let mut cmd = Command::new(&config.fprocess[0]);
    cmd.args(&config.fprocess[1..]);
    if let (true, Some(parts)) = (config.cgi_headers, request) {
        for (name, value) in environment(parts) {
            cmd.env(name, value);
        }
    }
    cmd
}

/// One `Http_<Header_Name>` per header (`X-Call-Id` becomes
/// `Http_X_Call_Id`; repeated headers are joined with ", "; values are
/// passed as raw bytes), then `Http_Method`, `Http_Path` and `Http_Query`,
/// last so that no header can pose as them.
pub fn environment(parts: &Parts) -> Vec<(String, OsString)> {
    let mut vars: Vec<(String, OsString)> = Vec::with_capacity(parts.headers.keys_len() + 3);
    for name in parts.headers.keys() {
        let mut value: Vec<u8> = Vec::new();
        for (i, v) in parts.headers.get_all(name).iter().enumerate() {
            if i > 0 {
                value.extend_from_slice(b", ");
            }
            value.extend_from_slice(v.as_bytes());
        }
        vars.push((
            env_name(name.as_str()),
            OsStr::from_bytes(&value).to_owned(),
        ));
    }
    vars.push(("Http_Method".into(), parts.method.as_str().into()));
    vars.push(("Http_Path".into(), parts.uri.path().into()));
    if let Some(query) = parts.uri.query() {
        vars.push(("Http_Query".into(), query.into()));
    }
    vars
}

/// `x-custom-header` → `Http_X_Custom_Header`.
fn env_name(header: &str) -> String {
    let mut out = String::with_capacity(header.len() + 5);
    out.push_str("Http_");
    let mut upper = true;
    for c in header.chars() {
        if c == '-' {
            out.push('_');
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names_become_title_case_with_underscores() {
        assert_eq!(env_name("x-custom-header"), "Http_X_Custom_Header");
        assert_eq!(env_name("content-length"), "Http_Content_Length");
        assert_eq!(env_name("host"), "Http_Host");
    }

    #[test]
    fn describes_method_path_query_and_headers() {
        let req = http::Request::post("/some/path?a=1&b=two")
            .header("X-Thing", "one")
            .header("x-thing", "two")
            .header("Content-Length", "5")
            .body(())
            .unwrap();
        let (parts, ()) = req.into_parts();
        let env = environment(&parts);
        let get = |k: &str| {
            env.iter()
                .rev()
                .find(|(n, _)| n == k)
                .and_then(|(_, v)| v.to_str())
        };
        assert_eq!(get("Http_Method"), Some("POST"));
        assert_eq!(get("Http_Path"), Some("/some/path"));
        assert_eq!(get("Http_Query"), Some("a=1&b=two"));
        assert_eq!(get("Http_X_Thing"), Some("one, two"));
        assert_eq!(get("Http_Content_Length"), Some("5"));
    }

    #[test]
    fn headers_cannot_pose_as_the_request_line() {
        let req = http::Request::get("/real?x=1")
            .header("Method", "DELETE")
            .header("Path", "/evil")
            .header("Query", "admin=1")
            .body(())
            .unwrap();
        let (parts, ()) = req.into_parts();
        let env = environment(&parts);
        let last = |k: &str| {
            env.iter()
                .rev()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(last("Http_Method"), Some("GET".into()));
        assert_eq!(last("Http_Path"), Some("/real".into()));
        assert_eq!(last("Http_Query"), Some("x=1".into()));
    }

    #[test]
    fn no_query_no_variable() {
        let (parts, ()) = http::Request::get("/").body(()).unwrap().into_parts();
        assert!(environment(&parts).iter().all(|(n, _)| n != "Http_Query"));
    }
}
