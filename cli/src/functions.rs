//! `faas list`, `describe`, `remove` and `scale`: the management API's view
//! of deployed functions.

use clap::Args;
use faas_common::api::{DeleteFunction, FunctionStatus, ScaleRequest};
use ureq::http::Method;

use crate::Context;
use crate::client::{DEFAULT_TIMEOUT, Subject, check_function_name};
use crate::error::Result;
use crate::output::{self, fields, table};
use crate::wait::{self, Target};

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Also show each function's image and creation time
    #[arg(short, long)]
    verbose: bool,
    /// Print the gateway's JSON
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct DescribeArgs {
    /// The function
    name: String,
    /// Print the function's status as JSON, with its URLs
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// The function
    name: String,
}

#[derive(Debug, Args)]
pub struct ScaleArgs {
    /// The function
    name: String,
    /// The number of replicas wanted
    #[arg(short, long, value_name = "N")]
    replicas: u64,
    /// Wait until exactly N replicas are available (see --timeout)
    #[arg(long)]
    wait: bool,
}

pub fn list(ctx: &Context, args: ListArgs) -> Result<()> {
    let client = ctx.client()?;
    let mut functions: Vec<FunctionStatus> =
        client.get_json("/system/functions", Subject::Gateway)?;
    functions.sort_by(|a, b| a.name.cmp(&b.name));
    if args.json {
        return output::print_json(&functions);
    }
    output::print(&list_table(&functions, args.verbose))
}

fn list_table(functions: &[FunctionStatus], verbose: bool) -> String {
    let mut headers = vec!["NAME", "INVOCATIONS", "REPLICAS"];
    if verbose {
        headers.extend(["IMAGE", "CREATED"]);
    }
    let rows: Vec<Vec<String>> = functions
        .iter()
        .map(|f| {
            let mut row = vec![
                f.name.clone(),
                f.invocation_count.to_string(),
                format!("{}/{}", f.available_replicas, f.replicas),
            ];
            if verbose {
                row.push(or_dash(&f.image));
                row.push(or_dash(f.created_at.as_deref().unwrap_or_default()));
            }
            row
        })
        .collect();
    table(&headers, &rows)
}

pub fn describe(ctx: &Context, args: DescribeArgs) -> Result<()> {
    check_function_name(&args.name)?;
    let client = ctx.client()?;
    let status: FunctionStatus = client.get_json(
        &format!("/system/function/{}", args.name),
        Subject::Function(&args.name),
    )?;
    let url = format!("{}/function/{}", client.gateway(), status.name);
    let async_url = format!("{}/async-function/{}", client.gateway(), status.name);
    if args.json {
        let mut value = serde_json::to_value(&status)
            .map_err(|e| crate::error::Error::new(format!("cannot encode JSON output: {e}")))?;
        if let Some(object) = value.as_object_mut() {
            object.insert("url".into(), url.into());
            object.insert("asyncUrl".into(), async_url.into());
        }
        return output::print_json(&value);
    }
    output::print(&describe_text(&status, &url, &async_url))
}

fn describe_text(status: &FunctionStatus, url: &str, async_url: &str) -> String {
    let ready = status.available_replicas >= 1;
    let pairs = |map: &std::collections::BTreeMap<String, String>| {
        map.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    fields(&[
        ("Name", status.name.clone()),
        (
            "Status",
            if ready { "Ready" } else { "Not ready" }.to_string(),
        ),
        ("Replicas", status.replicas.to_string()),
        ("Available", status.available_replicas.to_string()),
        ("Invocations", status.invocation_count.to_string()),
        ("Scaling", scaling_text(status)),
        (
            "Last scaling",
            status
                .scaling
                .as_ref()
                .and_then(|s| s.last_decision.as_ref())
                .map_or("-".to_string(), |d| {
                    format!("{} -> {} at {}\n{}", d.from, d.to, d.at, d.reason)
                }),
        ),
        (
            "Scaling now",
            or_dash(
                status
                    .scaling
                    .as_ref()
                    .and_then(|s| s.current.as_deref())
                    .unwrap_or_default(),
            ),
        ),
        ("Image", or_dash(&status.image)),
        (
            "Function process",
            or_dash(status.env_process.as_deref().unwrap_or_default()),
        ),
        ("Labels", pairs(&status.labels)),
        ("Annotations", pairs(&status.annotations)),
        (
            "Created",
            or_dash(status.created_at.as_deref().unwrap_or_default()),
        ),
        ("URL", url.to_string()),
        ("Async URL", async_url.to_string()),
    ])
}

/// The autoscaler's settings, a line each.
fn scaling_text(status: &FunctionStatus) -> String {
    let Some(s) = &status.scaling else {
        return "-".to_string();
    };
    let per = if s.metric == "rps" {
        "calls/s"
    } else {
        "in flight"
    };
    let seconds = |v: f64| output::duration_text(std::time::Duration::from_secs_f64(v.max(0.0)));
    let mut lines = vec![format!(
        "{}-{} replicas, target {} {per} per replica",
        s.min, s.max, s.target
    )];
    lines.push(format!(
        "scales down after a {} window",
        seconds(s.window_seconds)
    ));
    lines.push(if s.zero {
        format!("to zero after {} idle", seconds(s.zero_after_seconds))
    } else {
        "never to zero (faas.scale.zero=true to allow)".to_string()
    });
    if !s.enabled {
        lines.push("autoscaler off (gateway autoscale=false): manual scaling only".to_string());
    }
    if let Some(problem) = &s.problem {
        lines.push(format!("label problem, defaults used: {problem}"));
    }
    lines.join("\n")
}

pub fn remove(ctx: &Context, args: RemoveArgs) -> Result<()> {
    check_function_name(&args.name)?;
    let client = ctx.client()?;
    client.send_json(
        Method::DELETE,
        "/system/functions",
        &DeleteFunction {
            function_name: args.name.clone(),
        },
        Subject::Function(&args.name),
    )?;
    output::print(&format!("Removed {}\n", args.name))
}

pub fn scale(ctx: &Context, args: ScaleArgs) -> Result<()> {
    check_function_name(&args.name)?;
    let client = ctx.client()?;
    client.send_json(
        Method::POST,
        &format!("/system/scale-function/{}", args.name),
        &ScaleRequest {
            service_name: args.name.clone(),
            replicas: args.replicas,
        },
        Subject::Function(&args.name),
    )?;
    let plural = if args.replicas == 1 {
        "replica"
    } else {
        "replicas"
    };
    output::print(&format!(
        "Scaled {} to {} {plural}\n",
        args.name, args.replicas
    ))?;
    if args.wait {
        wait::until_ready(
            &client,
            &[(args.name.clone(), Target::Exactly(args.replicas))],
            ctx.timeout_or(DEFAULT_TIMEOUT),
        )?;
    }
    Ok(())
}

fn or_dash(text: &str) -> String {
    if text.is_empty() {
        "-".to_string()
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cat() -> FunctionStatus {
        FunctionStatus {
            name: "catservice".into(),
            image: "faas/catservice:latest".into(),
            env_process: Some("cat".into()),
            labels: [("faas.function".to_string(), "catservice".to_string())].into(),
            replicas: 2,
            available_replicas: 1,
            invocation_count: 12,
            created_at: Some("2026-11-22T14:00:00Z".into()),
            scaling: Some(faas_common::api::ScalingStatus {
                enabled: true,
                min: 1,
                max: 4,
                target: 2.0,
                metric: "capacity".into(),
                zero: true,
                zero_after_seconds: 300.0,
                window_seconds: 60.0,
                problem: None,
                current: Some("0.0 in flight: steady".into()),
                last_decision: Some(faas_common::api::ScalingDecision {
                    at: "2026-11-22T14:01:00Z".into(),
                    from: 1,
                    to: 2,
                    reason: "panic: 4.0 in flight".into(),
                }),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_list_shows_available_over_desired_replicas() {
        assert_eq!(
            list_table(&[cat()], false),
            "NAME         INVOCATIONS   REPLICAS\ncatservice   12            1/2\n"
        );
        let verbose = list_table(&[cat()], true);
        assert!(
            verbose.starts_with("NAME         INVOCATIONS   REPLICAS   IMAGE"),
            "{verbose}"
        );
        assert!(
            verbose.contains("faas/catservice:latest   2026-11-22T14:00:00Z"),
            "{verbose}"
        );
    }

    #[test]
    fn describe_reads_as_key_value_lines() {
        let text = describe_text(
            &cat(),
            "http://gw/function/catservice",
            "http://gw/async-function/catservice",
        );
        for line in [
            "Name:              catservice",
            "Status:            Ready",
            "Replicas:          2",
            "Available:         1",
            "Invocations:       12",
            "Function process:  cat",
            "Labels:            faas.function=catservice",
            "Annotations:\n",
            "Scaling:           1-4 replicas, target 2 in flight per replica\n                   scales down after a 1m window\n                   to zero after 5m idle\n",
            "Last scaling:      1 -> 2 at 2026-11-22T14:01:00Z\n                   panic: 4.0 in flight\n",
            "Scaling now:       0.0 in flight: steady",
            "URL:               http://gw/function/catservice",
            "Async URL:         http://gw/async-function/catservice",
        ] {
            assert!(text.contains(line), "{line:?} not in\n{text}");
        }
    }
}
