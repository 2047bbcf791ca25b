//! Waiting for functions to become ready after a deploy or a scale, with a
//! spinner per function on a terminal and plain lines otherwise (CI logs
//! should not fill with redraws).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use faas_common::api::FunctionStatus;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use ureq::http::StatusCode;

use crate::client::{Client, Subject, check};
use crate::error::{Error, Result};
use crate::output::duration_text;

const POLL: Duration = Duration::from_millis(250);

/// What "ready" means for one function.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    /// Every desired replica is available, and there is at least one.
    AllReplicas,
    /// Exactly this many desired and available (scaling, down to zero).
    Exactly(u64),
    /// Every desired replica available, at least one, and none of an
    /// earlier version still serving: after an update, calls reach only
    /// the new version.
    AllCurrent,
}

impl Target {
    pub fn reached(self, status: &FunctionStatus) -> bool {
        match self {
            Target::AllReplicas => {
                status.available_replicas >= 1 && status.available_replicas == status.replicas
            }
            Target::Exactly(n) => status.replicas == n && status.available_replicas == n,
            Target::AllCurrent => Target::AllReplicas.reached(status) && status.stale_replicas == 0,
        }
    }
}

/// One function being waited for.
struct Waiting {
    name: String,
    target: Target,
    /// The last answer, for progress and for the timeout message.
    last: Option<(u64, u64)>,
    done: bool,
    bar: Option<ProgressBar>,
}

impl Waiting {
    fn counts(&self) -> String {
        match self.last {
            Some((available, desired)) => format!("{available}/{desired}"),
            None => "0/?".to_string(),
        }
    }
}

/// Polls every function until each reaches its target or `timeout` passes;
/// the error names the functions that did not make it.
pub fn until_ready(
    client: &Client,
    functions: &[(String, Target)],
    timeout: Duration,
) -> Result<()> {
    if functions.is_empty() {
        return Ok(());
    }
    let started = Instant::now();
    let terminal = std::io::stderr().is_terminal();
    let multi = MultiProgress::with_draw_target(if terminal {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    });
    let width = functions.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    let style = ProgressStyle::with_template(&format!("{{spinner}} {{prefix:{width}}}  {{msg}}"))
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
        .tick_strings(&["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏", "✓"]);
    let mut waiting: Vec<Waiting> = functions
        .iter()
        .map(|(name, target)| Waiting {
            name: name.clone(),
            target: *target,
            last: None,
            done: false,
            bar: terminal.then(|| {
                let bar = multi.add(ProgressBar::new_spinner());
                bar.set_style(style.clone());
                bar.set_prefix(name.clone());
                bar.set_message("waiting for replicas");
                bar.enable_steady_tick(Duration::from_millis(100));
                bar
            }),
        })
        .collect();
    if !terminal {
        let names: Vec<&str> = functions.iter().map(|(n, _)| n.as_str()).collect();
        eprintln!(
            "Waiting up to {} for {} to become ready",
            duration_text(timeout),
            names.join(", ")
        );
    }

    loop {
        let mut failed = None;
        for w in waiting.iter_mut().filter(|w| !w.done) {
            let status = match poll(client, &w.name) {
                Ok(status) => status,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            };
            if let Some(status) = status {
                w.last = Some((status.available_replicas, status.replicas));
                if w.target.reached(&status) {
                    w.done = true;
                    let message = format!(
                        "ready ({} replicas) in {}",
                        w.counts(),
                        duration_text(round_tenths(started.elapsed()))
                    );
                    match &w.bar {
                        Some(bar) => bar.finish_with_message(message),
                        None => eprintln!("{}: {message}", w.name),
                    }
                    continue;
                }
            }
            if let Some(bar) = &w.bar {
                bar.set_message(format!("{} replicas available", w.counts()));
            }
        }
        if let Some(e) = failed {
            for bar in waiting
                .iter()
                .filter(|w| !w.done)
                .filter_map(|w| w.bar.as_ref())
            {
                bar.abandon_with_message("failed");
            }
            return Err(e);
        }
        if waiting.iter().all(|w| w.done) {
            return Ok(());
        }
        if started.elapsed() >= timeout {
            let late: Vec<String> = waiting
                .iter()
                .filter(|w| !w.done)
                .map(|w| {
                    if let Some(bar) = &w.bar {
                        bar.abandon_with_message(format!(
                            "not ready ({} replicas available)",
                            w.counts()
                        ));
                    }
                    format!("{:?} ({} replicas available)", w.name, w.counts())
                })
                .collect();
            return Err(Error::new(format!(
                "timed out after {} waiting for {} to become ready",
                duration_text(timeout),
                late.join(", ")
            )));
        }
        std::thread::sleep(POLL);
    }
}

/// A function's status; `None` while the gateway does not know it yet (a
/// provider may publish a new function a moment after accepting it).
fn poll(client: &Client, name: &str) -> Result<Option<FunctionStatus>> {
    let mut response = client.send(
        ureq::http::Method::GET,
        &format!("/system/function/{name}"),
        None,
    )?;
    if response.status() == StatusCode::NOT_FOUND {
        return Ok(None);
    }
    response = check(response, Subject::Function(name))?;
    let bytes = response
        .body_mut()
        .with_config()
        .limit(1 << 20)
        .read_to_vec()
        .map_err(|e| crate::client::transport_error(e, client.gateway(), client.timeout()))?;
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        Error::new(format!(
            "the gateway sent a status for {name:?} that faas does not understand: {e}"
        ))
    })
}

fn round_tenths(d: Duration) -> Duration {
    Duration::from_millis((d.as_millis() as u64).div_ceil(100) * 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(replicas: u64, available: u64) -> FunctionStatus {
        FunctionStatus {
            name: "f".into(),
            replicas,
            available_replicas: available,
            ..Default::default()
        }
    }

    #[test]
    fn a_deploy_is_ready_when_every_replica_is() {
        assert!(!Target::AllReplicas.reached(&status(1, 0)));
        assert!(Target::AllReplicas.reached(&status(1, 1)));
        assert!(!Target::AllReplicas.reached(&status(2, 1)));
        assert!(Target::AllReplicas.reached(&status(2, 2)));
        assert!(!Target::AllReplicas.reached(&status(0, 0)));
    }

    #[test]
    fn an_update_is_in_place_when_no_older_replica_serves() {
        let rolling = FunctionStatus {
            stale_replicas: 1,
            ..status(1, 1)
        };
        assert!(Target::AllReplicas.reached(&rolling));
        assert!(!Target::AllCurrent.reached(&rolling));
        assert!(Target::AllCurrent.reached(&status(1, 1)));
        assert!(!Target::AllCurrent.reached(&status(1, 0)));
    }

    #[test]
    fn a_scale_is_done_at_the_exact_count() {
        assert!(Target::Exactly(0).reached(&status(0, 0)));
        assert!(!Target::Exactly(0).reached(&status(0, 1)));
        assert!(!Target::Exactly(3).reached(&status(1, 1)));
        assert!(Target::Exactly(3).reached(&status(3, 3)));
    }
}
