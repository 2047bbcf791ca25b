//! `faas`: the command line for the faas gateway. This file holds the
//! command-line grammar (clap) and dispatches each command to its module;
//! every failure comes back as an [`Error`] and leaves as one `faas: …`
//! line on stderr with exit code 1 (clap's own usage errors exit 2).

mod async_calls;
mod call;
mod client;
mod config;
mod deploy;
mod error;
mod executions;
mod experiment;
mod functions;
mod info;
mod invoke;
mod login;
mod logs;
mod new;
mod output;
mod secrets;
mod source;
mod wait;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand};

use crate::client::{Client, DEFAULT_GATEWAY, DEFAULT_TIMEOUT, normalize_gateway};
use crate::error::{Error, Result};

#[derive(Debug, Parser)]
#[command(
    name = "faas",
    version,
    about = "Deploy, call and manage functions on a faas gateway",
    after_help = "Examples:
  faas login --username admin --password-stdin < .secrets/basic-auth-password
  faas new hello --lang python && faas up
  echo Ann | faas invoke hello
  faas deploy -f stack.yml
  faas list

Environment: FAAS_GATEWAY, FAAS_USERNAME, FAAS_PASSWORD, FAAS_CONFIG, FAAS_TIMEOUT."
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
struct Global {
    /// The gateway's URL [default: the stack file's provider.gateway for
    /// deploy, else http://127.0.0.1:8080]
    #[arg(long, global = true, env = "FAAS_GATEWAY", value_name = "URL")]
    gateway: Option<String>,

    /// Longest wait for the gateway's answer, for deploy and scale --wait
    /// until the functions are ready, and for invoke --async --wait and
    /// invoke-bulk --wait until the calls finish (10s, 500ms, 2m) [default:
    /// 60s; 5m for invoke and invoke-bulk]
    #[arg(long, global = true, env = "FAAS_TIMEOUT", value_name = "DURATION",
          value_parser = parse_duration)]
    timeout: Option<Duration>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check credentials against the gateway and remember them
    #[command(after_help = "Examples:
  faas login --username admin --password-stdin < .secrets/basic-auth-password
  faas login --gateway http://10.0.0.5:8080 --password s3cr3t")]
    Login(login::LoginArgs),

    /// Forget the stored credentials for the gateway
    #[command(after_help = "Example:
  faas logout --gateway http://10.0.0.5:8080")]
    Logout,

    /// Deploy the functions of a stack file and wait until they are ready
    #[command(after_help = "Examples:
  faas deploy -f stack.yml
  faas deploy -f stack.yml --filter catservice --update
  faas deploy -f stack.yml --no-wait
  faas deploy hello --from hello-world.py
  faas deploy sieve --from ./sieve-of-eratosthenes --lang nodejs")]
    Deploy(deploy::DeployArgs),

    /// Create a function from a template: its folder and its stack entry
    #[command(after_help = "Examples:
  faas new hello --lang python
  faas new resize --lang node -f functions.yml
  faas up")]
    New(new::NewArgs),

    /// List the templates faas new and the builds know
    #[command(after_help = "Examples:
  faas templates
  faas templates --json")]
    Templates(new::TemplatesArgs),

    /// Build the stack's functions from source and deploy them, then wait
    /// until they are ready
    #[command(after_help = "Examples:
  faas up
  faas up -f stack.yml --filter hello
  faas up --build-arg PIP_INDEX_URL=http://mirror/simple")]
    Up(source::UpArgs),

    /// Build the stack's functions from source without deploying them:
    /// with the Docker engine here, or on the gateway (--remote)
    #[command(after_help = "Examples:
  faas build --filter hello
  faas build --remote --filter hello")]
    Build(source::BuildArgs),

    /// List the deployed functions
    #[command(
        visible_alias = "ls",
        after_help = "Examples:
  faas list
  faas list -v
  faas list --json"
    )]
    List(functions::ListArgs),

    /// Show one function's state, image, labels and URLs
    #[command(after_help = "Examples:
  faas describe catservice
  faas describe catservice --json")]
    Describe(functions::DescribeArgs),

    /// Call a function: stdin is the request body, the answer goes to stdout
    #[command(after_help = "Examples:
  echo hello | faas invoke catservice
  faas invoke env -H X-Trace=1 --query lang=en --method GET < /dev/null
  faas invoke markdown --content-type text/markdown < README.md
  faas invoke hello -p name=user1 -p n=3
  ID=$(echo 3 | faas invoke sleep --async)
  echo 3 | faas invoke sleep --async --callback http://10.0.0.9:9000/done
  echo hello | faas invoke catservice --async --wait")]
    Invoke(call::InvokeArgs),

    /// Queue one asynchronous call per line of a JSON Lines file; print the ids
    #[command(after_help = "Examples:
  faas invoke-bulk wordcount --file payloads.jsonl
  faas invoke-bulk wordcount --file payloads.jsonl --wait --timeout 10m
  printf '%s\\n' '\"a\"' '{\"n\": 2}' | faas invoke-bulk echo --file -

Each non-empty line is one JSON value: one call, whose body is the value's
JSON text (a string's body is the string itself). The ids are printed one
per line, in the file's order; --wait prints how many calls ended in each
status to stderr and exits 1 unless every call succeeded.")]
    InvokeBulk(async_calls::BulkArgs),

    /// Inspect asynchronous calls: their records and outputs
    #[command(after_help = "Examples:
  faas executions list --all
  faas executions get 0f8c2a64-5d0e-4c36-9a57-2b8f0a9e1c11
  faas executions output 0f8c2a64-5d0e-4c36-9a57-2b8f0a9e1c11")]
    Executions {
        #[command(subcommand)]
        command: executions::ExecutionsCommand,
    },

    /// Measure functions: sweeps of calls with every call's figures in
    /// CSV, statistics, plots and comparisons
    #[command(after_help = "Examples:
  faas experiment run hello.yml --out results/hello")]
    Experiment {
        #[command(subcommand)]
        command: experiment::ExperimentCommand,
    },

    /// Remove a function
    #[command(
        visible_alias = "rm",
        after_help = "Example:
  faas remove catservice"
    )]
    Remove(functions::RemoveArgs),

    /// Set a function's number of replicas
    #[command(after_help = "Examples:
  faas scale catservice --replicas 3
  faas scale catservice --replicas 3 --wait")]
    Scale(functions::ScaleArgs),

    /// Show a function's log lines
    #[command(after_help = "Examples:
  faas logs catservice --tail 20
  faas logs catservice --follow --since 5m
  faas logs catservice --since 2026-11-22T14:00:00Z --json")]
    Logs(logs::LogsArgs),

    /// Create, list and remove secrets
    #[command(after_help = "Examples:
  faas secret create api-key --from-literal s3cr3t
  faas secret list
  faas secret remove api-key")]
    Secret {
        #[command(subcommand)]
        command: secrets::SecretCommand,
    },

    /// Show the gateway's provider, orchestration and version
    #[command(after_help = "Examples:
  faas info
  faas info --json")]
    Info(info::InfoArgs),

    /// Show the CLI's version, and the gateway's when it answers
    #[command(after_help = "Example:
  faas version")]
    Version,

    /// Print a shell completion script
    #[command(after_help = "Examples:
  faas completion bash > ~/.local/share/bash-completion/completions/faas
  faas completion zsh > ~/.zfunc/_faas
  faas completion fish > ~/.config/fish/completions/faas.fish")]
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// Global settings, resolved lazily: commands like `completion` never need
/// a gateway.
pub struct Context {
    gateway: Option<String>,
    timeout: Option<Duration>,
}

impl Context {
    /// The gateway to talk to: `--gateway`/`FAAS_GATEWAY`, else
    /// `fallback` (a stack file's), else the default.
    pub fn gateway(&self, fallback: Option<&str>) -> Result<String> {
        let raw = self
            .gateway
            .as_deref()
            .or(fallback)
            .unwrap_or(DEFAULT_GATEWAY);
        normalize_gateway(raw)
    }

    /// `--timeout`, or `default` when not given.
    pub fn timeout_or(&self, default: Duration) -> Duration {
        self.timeout.unwrap_or(default)
    }

    /// A client for the gateway, with its stored or environment credentials.
    pub fn client(&self) -> Result<Client> {
        self.client_with(None, DEFAULT_TIMEOUT)
    }

    pub fn client_with(&self, fallback: Option<&str>, default_timeout: Duration) -> Result<Client> {
        let gateway = self.gateway(fallback)?;
        let credentials = config::credentials_for(&gateway)?;
        Ok(Client::new(
            gateway,
            credentials.as_ref(),
            self.timeout_or(default_timeout),
        ))
    }
}

fn parse_duration(v: &str) -> std::result::Result<Duration, String> {
    faas_common::parse::parse_duration(v)
}

fn run(cli: Cli) -> Result<()> {
    let ctx = Context {
        gateway: cli.global.gateway,
        timeout: cli.global.timeout,
    };
    match cli.command {
        Command::Login(args) => login::login(&ctx, args),
        Command::Logout => login::logout(&ctx),
        Command::Deploy(args) => deploy::deploy(&ctx, args),
        Command::New(args) => new::new(&ctx, args),
        Command::Templates(args) => new::list(args),
        Command::Up(args) => source::up_command(&ctx, args),
        Command::Build(args) => source::build_command(&ctx, args),
        Command::List(args) => functions::list(&ctx, args),
        Command::Describe(args) => functions::describe(&ctx, args),
        Command::Invoke(args) => invoke::invoke(&ctx, args),
        Command::InvokeBulk(args) => async_calls::invoke_bulk(&ctx, args),
        Command::Executions { command } => executions::run(&ctx, command),
        Command::Experiment { command } => experiment::command(&ctx, command),
        Command::Remove(args) => functions::remove(&ctx, args),
        Command::Scale(args) => functions::scale(&ctx, args),
        Command::Logs(args) => logs::logs(&ctx, args),
        Command::Secret { command } => secrets::run(&ctx, command),
        Command::Info(args) => info::info(&ctx, args),
        Command::Version => info::version(&ctx),
        Command::Completion { shell } => completion(shell),
    }
}

fn completion(shell: clap_complete::Shell) -> Result<()> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "faas", &mut script);
    output::print(&String::from_utf8_lossy(&script))
}

fn main() -> ExitCode {
    // Parse errors and --help/--version: clap prints and exits (2 / 0).
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) | Err(Error::BrokenPipe) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("faas: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Reads a whole file named on the command line, naming it on failure.
pub fn read_file(path: &PathBuf) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        Error::new(format!(
            "cannot read {}: {}",
            path.display(),
            error::io_reason(&e)
        ))
    })
}

/// Reads all of stdin, or nothing when it is a terminal (nobody is going
/// to type a request body, and waiting for EOF would look like a hang).
pub fn read_stdin_unless_tty() -> Result<Vec<u8>> {
    use std::io::{IsTerminal, Read};
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return Ok(Vec::new());
    }
    let mut body = Vec::new();
    stdin.lock().read_to_end(&mut body).map_err(|e| {
        Error::new(format!(
            "cannot read standard input: {}",
            error::io_reason(&e)
        ))
    })?;
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grammar_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_command_has_an_example() {
        let cli = Cli::command();
        let mut missing = Vec::new();
        fn walk(cmd: &clap::Command, path: String, missing: &mut Vec<String>) {
            let help = cmd
                .get_after_help()
                .map(|h| h.to_string())
                .unwrap_or_default();
            if !help.contains("Example") && cmd.get_name() != "help" {
                missing.push(path.clone());
            }
            for sub in cmd.get_subcommands() {
                walk(sub, format!("{path} {}", sub.get_name()), missing);
            }
        }
        walk(&cli, "faas".into(), &mut missing);
        assert!(missing.is_empty(), "no example in: {missing:?}");
    }

    #[test]
    fn the_timeout_is_global_and_takes_durations() {
        let cli =
            Cli::try_parse_from(["faas", "deploy", "-f", "s.yml", "--timeout", "90s"]).unwrap();
        assert_eq!(cli.global.timeout, Some(Duration::from_secs(90)));
        assert!(Cli::try_parse_from(["faas", "list", "--timeout", "soon"]).is_err());
    }

    #[test]
    fn callback_and_wait_need_async() {
        assert!(Cli::try_parse_from(["faas", "invoke", "f", "--wait"]).is_err());
        assert!(Cli::try_parse_from(["faas", "invoke", "f", "--callback", "http://x"]).is_err());
        let cli = Cli::try_parse_from([
            "faas",
            "invoke",
            "f",
            "--async",
            "--wait",
            "--callback",
            "http://x",
        ])
        .unwrap();
        let Command::Invoke(args) = cli.command else {
            panic!("not invoke")
        };
        assert!(args.async_call && args.wait);
        assert_eq!(args.callback.as_deref(), Some("http://x"));
    }

    #[test]
    fn executions_get_takes_several_ids_and_list_checks_statuses() {
        assert!(Cli::try_parse_from(["faas", "executions", "get", "a", "b", "--json"]).is_ok());
        assert!(Cli::try_parse_from(["faas", "executions", "get"]).is_err());
        assert!(Cli::try_parse_from(["faas", "executions", "list", "--status", "dead"]).is_ok());
        assert!(Cli::try_parse_from(["faas", "executions", "list", "--status", "gone"]).is_err());
        assert!(Cli::try_parse_from(["faas", "invoke-bulk", "f"]).is_err());
    }

    #[test]
    fn the_gateway_flag_wins_over_a_stack_file() {
        let ctx = Context {
            gateway: Some("http://a:1/".into()),
            timeout: None,
        };
        assert_eq!(ctx.gateway(Some("http://b:2")).unwrap(), "http://a:1");
        let ctx = Context {
            gateway: None,
            timeout: None,
        };
        assert_eq!(ctx.gateway(Some("http://b:2")).unwrap(), "http://b:2");
        assert_eq!(ctx.gateway(None).unwrap(), DEFAULT_GATEWAY);
    }
}
