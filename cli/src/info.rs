//! `faas info` and `faas version`: what the gateway runs on, and which
//! versions are talking.

use std::time::Duration;

use clap::Args;
use faas_common::api::SystemInfo;

use crate::Context;
use crate::client::Subject;
use crate::error::Result;
use crate::output::{self, fields};

const CLI_VERSION: &str = env!("CARGO_PKG_VERSION");
/// `version` must answer promptly even when the gateway does not.
const VERSION_PROBE_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// Print JSON: the gateway's answer plus the CLI's version
    #[arg(long)]
    json: bool,
}

pub fn info(ctx: &Context, args: InfoArgs) -> Result<()> {
    let client = ctx.client()?;
    let info: SystemInfo = client.get_json("/system/info", Subject::Gateway)?;
    if args.json {
        return output::print_json(&serde_json::json!({
            "gateway": client.gateway(),
            "info": info,
            "cli": {"version": CLI_VERSION},
        }));
    }
    output::print(&info_text(client.gateway(), &info))
}

fn info_text(gateway: &str, info: &SystemInfo) -> String {
    let mut release = info.version.release.clone();
    if !info.version.sha.is_empty() {
        release.push_str(&format!(" ({})", info.version.sha));
    }
    fields(&[
        ("Gateway", gateway.to_string()),
        ("Provider", info.provider.provider.clone()),
        ("Orchestration", info.provider.orchestration.clone()),
        (
            "Limits",
            info.provider
                .resource_limits
                .clone()
                .unwrap_or_else(|| "-".into()),
        ),
        ("Gateway version", release),
        ("Architecture", info.arch.clone()),
        ("CLI version", CLI_VERSION.to_string()),
    ])
}

/// Never fails because of the gateway: the CLI's version is the answer,
/// the gateway's a bonus.
pub fn version(ctx: &Context) -> Result<()> {
    let mut text = format!("faas {CLI_VERSION}\n");
    let gateway = ctx
        .client_with(None, VERSION_PROBE_TIMEOUT)
        .and_then(|client| {
            let info: SystemInfo = client.get_json("/system/info", Subject::Gateway)?;
            Ok((client.gateway().to_string(), info))
        });
    match gateway {
        Ok((url, info)) => text.push_str(&format!(
            "gateway {} ({}) at {url}\n",
            info.version.release, info.provider.orchestration
        )),
        Err(e) => eprintln!("faas: gateway version unknown: {e}"),
    }
    output::print(&text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use faas_common::api::{ProviderInfo, VersionInfo};

    #[test]
    fn info_names_provider_orchestration_and_both_versions() {
        let version = VersionInfo {
            release: "0.1.0".into(),
            sha: "abc123".into(),
            ..Default::default()
        };
        let info = SystemInfo {
            provider: ProviderInfo {
                provider: "faas".into(),
                orchestration: "process".into(),
                version: version.clone(),
                resource_limits: Some("cgroup v2 (/sys/fs/cgroup/x)".into()),
            },
            version,
            arch: "x86_64".into(),
        };
        let text = info_text("http://gw", &info);
        assert!(text.contains("Orchestration:    process"), "{text}");
        assert!(text.contains("Limits:           cgroup v2"), "{text}");
        assert!(text.contains("Gateway version:  0.1.0 (abc123)"), "{text}");
        assert!(
            text.contains(&format!("CLI version:      {CLI_VERSION}")),
            "{text}"
        );
    }
}
