//! `faas deploy`: each function of a faas-cli stack file becomes an
//! OpenFaaS deployment, sent to the gateway, then waited for.

use std::path::PathBuf;

use clap::Args;
use faas_common::api::Deployment;
use faas_common::stack::{FunctionSpec, Stack};
use ureq::http::{Method, StatusCode};

use crate::client::{Client, DEFAULT_TIMEOUT, Subject, check, to_json};
use crate::error::{Error, Result};
use crate::wait::{self, Target};
use crate::{Context, output};

#[derive(Debug, Args)]
pub struct DeployArgs {
    /// The stack file (faas-cli format)
    #[arg(
        short = 'f',
        long = "file",
        visible_alias = "yaml",
        default_value = "stack.yml"
    )]
    file: PathBuf,

    /// Deploy only the functions whose name matches (`*` matches any run
    /// of characters)
    #[arg(long, value_name = "NAME")]
    filter: Option<String>,

    /// Replace functions that already exist (a rolling update) instead of
    /// refusing them; new ones are created
    #[arg(long)]
    update: bool,

    /// Return once the gateway has accepted the functions, without waiting
    /// for their replicas
    #[arg(long)]
    no_wait: bool,

    /// With --from: the function's name
    #[arg(requires = "from")]
    name: Option<String>,

    /// Build and deploy one folder or file instead of a stack file
    /// (tinyFaaS and FaaSpot style)
    #[arg(long, value_name = "DIR|FILE", requires = "name", conflicts_with_all = ["filter", "update"])]
    from: Option<PathBuf>,

    /// With --from: the template [default: guessed from the files]
    #[arg(long, requires = "from")]
    lang: Option<String>,

    /// With --from: a build argument (KEY=VALUE; repeatable)
    #[arg(long = "build-arg", value_name = "KEY=VALUE", requires = "from")]
    build_arg: Vec<String>,
}

/// What happened to one function.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcome {
    Deployed,
    Updated,
}

pub fn deploy(ctx: &Context, args: DeployArgs) -> Result<()> {
    if let (Some(name), Some(from)) = (&args.name, &args.from) {
        return crate::source::deploy_from(
            ctx,
            name,
            from,
            args.lang.as_deref(),
            &args.build_arg,
            args.no_wait,
        );
    }
    let stack = Stack::load(&args.file).map_err(|e| Error::new(e.to_string()))?;
    let file = args.file.display().to_string();
    let fallback = stack.provider.as_ref().and_then(|p| p.gateway.as_deref());
    let client = ctx.client_with(fallback, DEFAULT_TIMEOUT)?;
    let selected = select(&stack, args.filter.as_deref(), &file)?;

    let mut deployed = Vec::new();
    let mut failures = Vec::new();
    for (name, spec) in selected {
        match deploy_one(&client, &spec.deployment(name), args.update).map_err(|e| naming(e, name))
        {
            Ok(outcome) => {
                output::print(&format!(
                    "{outcome:?} {name}: {}/function/{name}\n",
                    client.gateway()
                ))?;
                deployed.push((name.clone(), Target::AllReplicas));
            }
            // Every other function would fail the same way.
            Err(e @ Error::Unreachable(_)) => return Err(e),
            Err(e) => failures.push(e.to_string()),
        }
    }

    let waited = if args.no_wait {
        Ok(())
    } else {
        wait::until_ready(&client, &deployed, ctx.timeout_or(DEFAULT_TIMEOUT))
    };
    match failures.len() {
        0 => waited,
        1 => Err(Error::new(failures.remove(0))),
        n => Err(Error::new(format!(
            "{n} functions were not deployed: {}",
            failures.join("; ")
        ))),
    }
}

/// The stack's functions that `filter` selects, in name order.
pub fn select<'a>(
    stack: &'a Stack,
    filter: Option<&str>,
    file: &str,
) -> Result<Vec<(&'a String, &'a FunctionSpec)>> {
    if stack.functions.is_empty() {
        return Err(Error::new(format!("{file} has no functions")));
    }
    let selected: Vec<_> = stack
        .functions
        .iter()
        .filter(|(name, _)| filter.is_none_or(|f| glob_match(f, name)))
        .collect();
    if selected.is_empty() {
        let available: Vec<&str> = stack.functions.keys().map(String::as_str).collect();
        return Err(Error::new(format!(
            "no function in {file} matches --filter {} (it has {})",
            filter.unwrap_or_default(),
            available.join(", ")
        )));
    }
    Ok(selected)
}

/// POST, or with `update` PUT falling back to POST for a new function.
pub fn deploy_one(client: &Client, deployment: &Deployment, update: bool) -> Result<Outcome> {
    let name = deployment.service.as_str();
    let body = to_json(deployment)?;
    if update {
        let response = client.send(Method::PUT, "/system/functions", Some(body.clone()))?;
        if response.status() != StatusCode::NOT_FOUND {
            check(response, Subject::Function(name))?;
            return Ok(Outcome::Updated);
        }
    }
    let response = client.send(Method::POST, "/system/functions", Some(body))?;
    if response.status() == StatusCode::CONFLICT {
        return Err(Error::new(format!(
            "function {name:?} already exists; deploy with --update to replace it"
        )));
    }
    check(response, Subject::Function(name))?;
    Ok(Outcome::Deployed)
}

/// Every failure names its function; the gateway's messages may not.
fn naming(e: Error, name: &str) -> Error {
    match e {
        Error::Failed(m) if !m.contains(&format!("{name:?}")) => {
            Error::new(format!("cannot deploy {name:?}: {m}"))
        }
        other => other,
    }
}

/// Shell-style matching with `*` only: `cat*`, `*-api`, `a*b`.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STACK: &str = r#"
provider:
  name: openfaas
  gateway: http://127.0.0.1:8080
functions:
  catservice:
    image: faas/catservice:latest
    fprocess: cat
    environment:
      write_debug: true
    labels:
      faas.scale.min: 2
    annotations:
      topic: demo
    limits:
      memory: 128m
      cpu: 0.5
    requests:
      memory: 64m
    constraints: [node.role == manager]
    secrets: [api-key]
    readonly_root_filesystem: true
  wordcount:
    image: faas/wordcount:latest
"#;

    #[test]
    fn stack_functions_become_openfaas_deployments() {
        let stack = Stack::parse(STACK).unwrap();
        let d = stack.functions["catservice"].deployment("catservice");
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "service": "catservice",
                "image": "faas/catservice:latest",
                "envProcess": "cat",
                "envVars": {"write_debug": "true"},
                "labels": {"faas.scale.min": "2"},
                "annotations": {"topic": "demo"},
                "constraints": ["node.role == manager"],
                "secrets": ["api-key"],
                "limits": {"memory": "128m", "cpu": "0.5"},
                "requests": {"memory": "64m"},
                "readOnlyRootFilesystem": true
            })
        );
        let bare = stack.functions["wordcount"].deployment("wordcount");
        assert_eq!(bare.env_process, None);
        assert!(!bare.read_only_root_filesystem);
    }

    #[test]
    fn filters_select_by_name_or_pattern() {
        let stack = Stack::parse(STACK).unwrap();
        let names = |f: Option<&str>| -> Vec<String> {
            select(&stack, f, "stack.yml")
                .unwrap()
                .into_iter()
                .map(|(n, _)| n.clone())
                .collect()
        };
        assert_eq!(names(None), ["catservice", "wordcount"]);
        assert_eq!(names(Some("wordcount")), ["wordcount"]);
        assert_eq!(names(Some("*service")), ["catservice"]);
        let none = select(&stack, Some("nope"), "stack.yml")
            .unwrap_err()
            .to_string();
        assert!(
            none.contains("--filter nope") && none.contains("catservice"),
            "{none}"
        );
    }

    #[test]
    fn globs_match_whole_names() {
        assert!(glob_match("cat", "cat"));
        assert!(!glob_match("cat", "catservice"));
        assert!(glob_match("cat*", "catservice"));
        assert!(glob_match("*service", "catservice"));
        assert!(glob_match("c*t*e", "catservice"));
        assert!(glob_match("*", "x"));
        assert!(!glob_match("a*a", "a"));
        assert!(!glob_match("*x", "abc"));
    }
}
