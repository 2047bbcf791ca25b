//! `rawspawn`: the physical limit for fwatchdog's fork mode.
//!
//! Each thread loops: spawn the command with stdin, stdout and stderr
//! piped, write the body, close stdin, read stdout and stderr to EOF, wait.
//! Nothing else: no HTTP, no async runtime. It prints per-spawn latency
//! percentiles (from the sorted samples of every thread) and the total rate
//! as `key=value` lines, easy to parse from a shell script.

use std::io::{Read, Write};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const USAGE: &str = "\
rawspawn: spawn a command with piped stdio in a loop and report latency

Usage: rawspawn [OPTIONS] [--] [COMMAND [ARGS...]]

Options:
  --threads N        concurrent spawning threads (default 1)
  --duration SECS    measured duration, fractions allowed (default 10)
  --warmup SECS      unmeasured run before the measurement (default 1)
  --body TEXT        written to the command's stdin (default \"hello world\\n\")
  --process-group    put every child in a process group of its own, as fwatchdog does
  -h, --help         this message

COMMAND defaults to /bin/busybox cat.

Output (one key=value per line): threads, duration_s, spawns, errors,
rate_per_s, min_us, p50_us, p90_us, p99_us, max_us, mean_us.";

struct Options {
    threads: usize,
    duration: Duration,
    warmup: Duration,
    body: Vec<u8>,
    process_group: bool,
    command: Vec<String>,
}

fn parse_args() -> Result<Option<Options>, String> {
    let mut options = Options {
        threads: 1,
        duration: Duration::from_secs(10),
        warmup: Duration::from_secs(1),
        body: b"hello world\n".to_vec(),
        process_group: false,
        command: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--threads" => {
                let v = value("--threads")?;
                options.threads = v
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("--threads: not a positive integer: {v:?}"))?;
            }
            "--duration" => options.duration = seconds("--duration", &value("--duration")?)?,
            "--warmup" => options.warmup = seconds("--warmup", &value("--warmup")?)?,
            "--body" => options.body = value("--body")?.into_bytes(),
            "--process-group" => options.process_group = true,
            "--" => {
                options.command.extend(args.by_ref());
            }
            other if other.starts_with('-') => return Err(format!("unknown option {other:?}")),
            _ => {
                options.command.push(arg);
                options.command.extend(args.by_ref());
            }
        }
    }
    if options.command.is_empty() {
        options.command = vec!["/bin/busybox".into(), "cat".into()];
    }
    Ok(Some(options))
}

fn seconds(name: &str, v: &str) -> Result<Duration, String> {
    v.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("{name}: not a number of seconds: {v:?}"))
}

/// One spawn, write, read, wait cycle. Returns whether the command
/// succeeded and echoed something.
fn spawn_once(options: &Options, out: &mut Vec<u8>, err: &mut Vec<u8>) -> std::io::Result<bool> {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(&options.command[0]);
    cmd.args(&options.command[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if options.process_group {
        cmd.process_group(0);
    }
    let mut child = cmd.spawn()?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    // A small body fits in the pipe buffer: write it all, then read.
    stdin.write_all(&options.body)?;
    drop(stdin);
    out.clear();
    err.clear();
    child
        .stdout
        .take()
        .expect("stdout is piped")
        .read_to_end(out)?;
    child
        .stderr
        .take()
        .expect("stderr is piped")
        .read_to_end(err)?;
    let status = child.wait()?;
    Ok(status.success() && out.len() == options.body.len())
}

struct Tally {
    samples: Vec<u64>,
    errors: u64,
}

/// Spawns until `stop` is set, recording each cycle's latency in
/// nanoseconds when `record` is true.
fn worker(options: &Options, stop: &AtomicBool, record: bool) -> Tally {
    let mut tally = Tally {
        samples: Vec::with_capacity(if record { 1 << 16 } else { 0 }),
        errors: 0,
    };
    let (mut out, mut err) = (Vec::with_capacity(4096), Vec::with_capacity(4096));
    while !stop.load(Ordering::Relaxed) {
        let start = Instant::now();
        let ok = matches!(spawn_once(options, &mut out, &mut err), Ok(true));
        let elapsed = start.elapsed();
        if !ok {
            tally.errors += 1;
        } else if record {
            tally.samples.push(elapsed.as_nanos() as u64);
        }
    }
    tally
}

/// Runs `options.threads` workers for `duration`; returns the merged
/// tally and the wall time actually elapsed.
fn run(options: &Arc<Options>, duration: Duration, record: bool) -> (Tally, Duration) {
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let handles: Vec<_> = (0..options.threads)
        .map(|_| {
            let options = Arc::clone(options);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || worker(&options, &stop, record))
        })
        .collect();
    std::thread::sleep(duration);
    stop.store(true, Ordering::Relaxed);
    let mut total = Tally {
        samples: Vec::new(),
        errors: 0,
    };
    for handle in handles {
        let tally = handle.join().expect("worker thread panicked");
        total.samples.extend(tally.samples);
        total.errors += tally.errors;
    }
    (total, start.elapsed())
}

/// Nearest-rank percentile of sorted samples, in microseconds.
fn percentile_us(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    let index = rank.clamp(1, sorted.len()) - 1;
    sorted[index] as f64 / 1000.0
}

fn main() -> ExitCode {
    let options = match parse_args() {
        Ok(Some(options)) => Arc::new(options),
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("rawspawn: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    // Fail fast on a command that cannot run at all.
    let (mut out, mut err) = (Vec::new(), Vec::new());
    match spawn_once(&options, &mut out, &mut err) {
        Ok(true) => {}
        Ok(false) => {
            eprintln!(
                "rawspawn: {:?} did not echo the body back (stderr: {})",
                options.command,
                String::from_utf8_lossy(&err).trim()
            );
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("rawspawn: cannot run {:?}: {e}", options.command);
            return ExitCode::FAILURE;
        }
    }
    if !options.warmup.is_zero() {
        run(&options, options.warmup, false);
    }
    let (mut tally, elapsed) = run(&options, options.duration, true);
    tally.samples.sort_unstable();
    let s = &tally.samples;
    let count = s.len();
    let mean_us = if count == 0 {
        0.0
    } else {
        s.iter().map(|&n| n as f64).sum::<f64>() / count as f64 / 1000.0
    };
    println!("command={}", options.command.join(" "));
    println!("threads={}", options.threads);
    println!("duration_s={:.3}", elapsed.as_secs_f64());
    println!("spawns={count}");
    println!("errors={}", tally.errors);
    println!("rate_per_s={:.1}", count as f64 / elapsed.as_secs_f64());
    println!("min_us={:.1}", percentile_us(s, 0.0));
    println!("p50_us={:.1}", percentile_us(s, 50.0));
    println!("p90_us={:.1}", percentile_us(s, 90.0));
    println!("p99_us={:.1}", percentile_us(s, 99.0));
    println!("max_us={:.1}", percentile_us(s, 100.0));
    println!("mean_us={mean_us:.1}");
    if tally.errors > 0 {
        eprintln!("rawspawn: {} spawns failed", tally.errors);
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
