//! `faas login` and `faas logout`: check credentials against the gateway
//! before storing them, so a typo is caught now rather than on the next
//! deploy.

use std::io::{IsTerminal, Read};

use clap::Args;
use ureq::http::{Method, StatusCode};

use crate::Context;
use crate::client::{Client, Subject, Wait, check};
use crate::config::{self, Credentials, DEFAULT_USERNAME};
use crate::error::{Error, Result, io_reason};
use crate::output;

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The gateway's basic-auth user
    #[arg(short, long, default_value = DEFAULT_USERNAME)]
    username: String,

    /// Read the password from stdin (the safe way to script it)
    #[arg(long, conflicts_with = "password")]
    password_stdin: bool,

    /// The password (visible to other users in the process list; prefer
    /// --password-stdin). Without either, faas asks for it
    #[arg(short, long)]
    password: Option<String>,
}

pub fn login(ctx: &Context, args: LoginArgs) -> Result<()> {
    let gateway = ctx.gateway(None)?;
    let password = match (args.password, args.password_stdin) {
        (Some(p), _) => {
            eprintln!(
                "faas: warning: --password is visible to other users of this machine; prefer --password-stdin"
            );
            p
        }
        (None, true) => read_password_stdin()?,
        (None, false) if std::io::stdin().is_terminal() => prompt_password()?,
        (None, false) => read_password_stdin()?,
    };
    if password.is_empty() {
        return Err(Error::new("the password is empty"));
    }
    let credentials = Credentials {
        username: args.username,
        password,
    };
    let client = Client::new(
        gateway.clone(),
        Some(&credentials),
        ctx.timeout_or(crate::client::DEFAULT_TIMEOUT),
    );
    check_credentials(&client)?;
    let username = credentials.username.clone();
    let path = config::store(&gateway, credentials)?;
    output::print(&format!(
        "Logged in to {gateway} as {username} (credentials saved in {})\n",
        path.display()
    ))
}

pub fn logout(ctx: &Context) -> Result<()> {
    let gateway = ctx.gateway(None)?;
    if config::forget(&gateway)? {
        output::print(&format!("Logged out of {gateway}\n"))
    } else {
        output::print(&format!("Not logged in to {gateway}\n"))
    }
}

/// Any authenticated route will do; listing functions is what OpenFaaS's
/// own CLI asks for, so it works against either gateway.
fn check_credentials(client: &Client) -> Result<()> {
    let request = client
        .request(Method::GET, "/system/functions")
        .body(Vec::new())
        .map_err(|e| Error::new(format!("cannot build the request: {e}")))?;
    let response = client.exchange(request, true, Wait::Whole)?;
    if response.status() == StatusCode::UNAUTHORIZED {
        return Err(Error::new(
            "authentication failed: wrong username or password",
        ));
    }
    check(response, Subject::Gateway).map(drop)
}

/// The whole of stdin without its trailing newline (`echo pw |`, files).
fn read_password_stdin() -> Result<String> {
    let mut text = String::new();
    std::io::stdin()
        .lock()
        .read_to_string(&mut text)
        .map_err(|e| {
            Error::new(format!(
                "cannot read the password from stdin: {}",
                io_reason(&e)
            ))
        })?;
    Ok(trim_newline(&text).to_string())
}

fn prompt_password() -> Result<String> {
    let term = console::Term::stderr();
    term.write_str("Password: ")
        .and_then(|()| term.read_secure_line())
        .map_err(|e| Error::new(format!("cannot read the password: {}", io_reason(&e))))
}

/// Drops one trailing line ending, the one `echo` or an editor adds.
pub fn trim_newline(text: &str) -> &str {
    text.strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_final_line_ending_is_dropped() {
        assert_eq!(trim_newline("pw\n"), "pw");
        assert_eq!(trim_newline("pw\r\n"), "pw");
        assert_eq!(trim_newline("pw\n\n"), "pw\n");
        assert_eq!(trim_newline(" pw "), " pw ");
    }
}
