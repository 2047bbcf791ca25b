//! `faas experiment`: FaaSET's workflow on this platform. `run` makes the
//! calls an experiment file describes and writes every call's figures
//! (measured by the platform: the watchdog's and the gateway's headers)
//! to `calls.csv`, their statistics to `summary.csv` and the resolved
//! experiment to `experiment.json`.

mod compare;
mod http;
mod record;
mod report;
mod run;
mod spec;
mod stats;

use clap::Subcommand;

use crate::Context;
use crate::error::Result;

#[derive(Debug, Subcommand)]
pub enum ExperimentCommand {
    /// Run an experiment file: sweeps of calls over payloads, memory and
    /// CPU settings, warm or cold, closed loop or at a fixed rate
    #[command(after_help = "Examples:
  faas experiment run hello.yml
  faas experiment run sweep.json --out results/sweep

The file (YAML, or FaaS Runner's JSON):
  function: hello            # or a list
  payloads: [{name: Bob}, plain text]
  memorySettings: [128m, 256m]   # plain numbers are MB
  runs: 20                   # calls per iteration, payloads in turn
  threads: 4                 # concurrent callers
  iterations: 1
  warmup: 2                  # unrecorded calls before each sweep
  mode: warm                 # warm, cold or both
  rate: 50                   # calls/s, open loop, instead of threads
  async: false               # through the queue, timed to completion
  timeout: 30s

Ctrl-C stops the calls, puts the functions' settings back and keeps what
was measured.")]
    Run(run::RunArgs),

    /// Plot a run's results (PNG and SVG) and write report.html with them
    /// and the summary table
    #[command(after_help = "Examples:
  faas experiment report results/hello
  faas experiment report results/hello --font /usr/share/fonts/truetype/noto/NotoSans-Regular.ttf

Plots: runtime-by-memory (box plots), cpu-by-memory (user and kernel time,
stacked), latency-histogram, latency-cdf, latency-over-time (cold starts
marked), throughput-over-time; each as .png and .svg in the folder.")]
    Report(report::ReportArgs),

    /// Compare two runs: each summary figure before and after, the change,
    /// and whether it is more than noise
    #[command(after_help = "Examples:
  faas experiment compare results/before results/after
  faas experiment compare results/before results/after --alpha 0.01 --json

Groups (function, memory, cpu, payload, cold/warm) measured in both runs are
compared over their calls that succeeded: means by Welch's t-test, medians
and 95th percentiles by the Mann-Whitney U test, two-sided.")]
    Compare(compare::CompareArgs),
}

pub fn command(ctx: &Context, command: ExperimentCommand) -> Result<()> {
    match command {
        ExperimentCommand::Run(args) => run::run(ctx, args),
        ExperimentCommand::Report(args) => report::report(args),
        ExperimentCommand::Compare(args) => compare::compare(args),
    }
}
