//! `faas secret create|list|remove`: secrets functions read from
//! `/run/secrets/<name>`. Values are sent once and never shown again.

use std::io::IsTerminal;
use std::path::PathBuf;

use base64::Engine;
use clap::{ArgGroup, Args, Subcommand};
use faas_common::api::Secret;
use ureq::http::Method;

use crate::client::Subject;
use crate::error::{Error, Result};
use crate::output::{self, table};
use crate::{Context, login::trim_newline};

#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Create a secret from a literal, a file, or stdin
    #[command(after_help = "Examples:
  faas secret create api-key --from-literal s3cr3t
  faas secret create tls-key --from-file key.pem
  printf s3cr3t | faas secret create api-key")]
    Create(CreateArgs),

    /// List the secrets' names
    #[command(
        visible_alias = "ls",
        after_help = "Examples:
  faas secret list
  faas secret list --json"
    )]
    List {
        /// Print the gateway's JSON
        #[arg(long)]
        json: bool,
    },

    /// Remove a secret
    #[command(
        visible_alias = "rm",
        after_help = "Example:
  faas secret remove api-key"
    )]
    Remove {
        /// The secret
        name: String,
    },
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("source").args(["from_literal", "from_file"])))]
pub struct CreateArgs {
    /// The secret's name
    name: String,

    /// The value, as given (visible in the process list)
    #[arg(long, value_name = "VALUE")]
    from_literal: Option<String>,

    /// The value is this file's bytes, exactly
    #[arg(long, value_name = "FILE")]
    from_file: Option<PathBuf>,
}

pub fn run(ctx: &Context, command: SecretCommand) -> Result<()> {
    match command {
        SecretCommand::Create(args) => create(ctx, args),
        SecretCommand::List { json } => list(ctx, json),
        SecretCommand::Remove { name } => remove(ctx, &name),
    }
}

fn create(ctx: &Context, args: CreateArgs) -> Result<()> {
    let value = match (args.from_literal, &args.from_file) {
        (Some(literal), _) => literal.into_bytes(),
        (None, Some(file)) => crate::read_file(file)?,
        (None, None) => {
            if std::io::stdin().is_terminal() {
                return Err(Error::new(
                    "give the value with --from-literal, --from-file or on stdin",
                ));
            }
            // `echo value |` adds a newline nobody means as part of it.
            let bytes = crate::read_stdin_unless_tty()?;
            match String::from_utf8(bytes) {
                Ok(text) => trim_newline(&text).as_bytes().to_vec(),
                Err(e) => e.into_bytes(),
            }
        }
    };
    let client = ctx.client()?;
    client.send_json(
        Method::POST,
        "/system/secrets",
        &secret_body(&args.name, value),
        Subject::Gateway,
    )?;
    output::print(&format!("Created secret {}\n", args.name))
}

/// Text travels as `value`; anything else (keys, certificates in DER) as
/// base64 `rawValue`, so no byte is lost.
fn secret_body(name: &str, value: Vec<u8>) -> Secret {
    match String::from_utf8(value) {
        Ok(text) => Secret {
            name: name.to_string(),
            value: Some(text),
            raw_value: None,
        },
        Err(e) => Secret {
            name: name.to_string(),
            value: None,
            raw_value: Some(base64::engine::general_purpose::STANDARD.encode(e.into_bytes())),
        },
    }
}

fn list(ctx: &Context, json: bool) -> Result<()> {
    let client = ctx.client()?;
    let mut secrets: Vec<Secret> = client.get_json("/system/secrets", Subject::Gateway)?;
    secrets.sort_by(|a, b| a.name.cmp(&b.name));
    if json {
        return output::print_json(&secrets);
    }
    let rows: Vec<Vec<String>> = secrets.into_iter().map(|s| vec![s.name]).collect();
    output::print(&table(&["NAME"], &rows))
}

fn remove(ctx: &Context, name: &str) -> Result<()> {
    let client = ctx.client()?;
    client.send_json(
        Method::DELETE,
        "/system/secrets",
        &Secret {
            name: name.to_string(),
            ..Default::default()
        },
        Subject::Secret(name),
    )?;
    output::print(&format!("Removed secret {name}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_goes_as_value_and_bytes_as_base64() {
        let text = serde_json::to_value(secret_body("k", b"s3cr3t".to_vec())).unwrap();
        assert_eq!(text, serde_json::json!({"name": "k", "value": "s3cr3t"}));
        let raw = serde_json::to_value(secret_body("k", vec![0xff, 0x00])).unwrap();
        assert_eq!(raw, serde_json::json!({"name": "k", "rawValue": "/wA="}));
    }
}
