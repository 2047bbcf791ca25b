//! `faas experiment` against a real gateway (process provider): the rows a
//! sweep yields, every column, the statistics (recomputed here), cold,
//! async and open-loop calls, every watchdog mode, a failing function,
//! Ctrl-C, and bad experiment files.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use crate::util::{Gateway, eventually};

type Row = BTreeMap<String, String>;

fn read_csv(path: &Path) -> Vec<Row> {
    let mut reader = csv::Reader::from_path(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    reader.deserialize().map(|r| r.unwrap()).collect()
}

fn number(row: &Row, column: &str) -> f64 {
    row[column]
        .parse()
        .unwrap_or_else(|_| panic!("{column} is not a number in {row:?}"))
}

/// Allocates as many MiB as the body says, then prints how many bytes.
const HOG: &str =
    "import sys\nn = int(sys.stdin.read() or 1)\nblock = bytearray(n << 20)\nprint(len(block))\n";

/// Runs `faas experiment run` on `text` (written as `name`) into `out`.
fn run(gw: &Gateway, name: &str, text: &str, out: &str) -> crate::util::Run {
    let file = gw.write(name, text);
    gw.faas(&[
        "experiment",
        "run",
        file.to_str().unwrap(),
        "--out",
        gw.dir.path().join(out).to_str().unwrap(),
    ])
}

/// The quantile `q` of `values`, interpolated between ranks (numpy's
/// default), computed here independently of the CLI.
fn quantile(values: &[f64], q: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let h = (v.len() - 1) as f64 * q;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(v.len() - 1);
    v[lo] + (h - lo as f64) * (v[hi] - v[lo])
}

#[test]
fn a_sweep_yields_one_full_row_per_call_and_statistics_that_check_out() {
    let gw = Gateway::start();
    gw.write("hog.py", HOG);
    gw.deploy("  hog:\n    fprocess: python3 hog.py\n    labels:\n      faas.scale.min: 2\n    limits:\n      memory: 300m\n");
    let experiment =
        "function: hog\npayloads: ['1', '80']\nmemorySettings: [48m, 256m]\nruns: 20\nthreads: 4\n";
    let ran = run(&gw, "sweep.yml", experiment, "sweep");
    ran.assert_ok();
    let out = gw.dir.path().join("sweep");
    let rows = read_csv(&out.join("calls.csv"));
    assert_eq!(rows.len(), 2 * 20, "{}", ran.stderr());

    for memory in ["48m", "256m"] {
        let setting: Vec<&Row> = rows.iter().filter(|r| r["memory"] == memory).collect();
        assert_eq!(setting.len(), 20, "{memory}");
        // Payloads in turn: ten calls each.
        for payload in ["0", "1"] {
            assert_eq!(
                setting
                    .iter()
                    .filter(|r| r["payload_id"] == payload)
                    .count(),
                10
            );
        }
        // Four callers, each numbering its own calls from 1.
        let threads: BTreeSet<&str> = setting.iter().map(|r| r["thread"].as_str()).collect();
        assert_eq!(threads, BTreeSet::from(["1", "2", "3", "4"]), "{memory}");
        for thread in threads {
            let mut seqs: Vec<u64> = setting
                .iter()
                .filter(|r| r["thread"] == thread)
                .map(|r| r["seq"].parse().unwrap())
                .collect();
            seqs.sort();
            assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
        }
        // New replicas for each setting: each one's first call is cold.
        let replicas: BTreeSet<&str> = setting.iter().map(|r| r["served_by"].as_str()).collect();
        let cold = setting.iter().filter(|r| r["cold_start"] == "true").count();
        assert_eq!(cold, replicas.len(), "{memory}: {replicas:?}");
        assert!(
            replicas.iter().all(|r| r.starts_with("hog-")),
            "{replicas:?}"
        );
    }
    fn succeeded(r: &&&Row) -> bool {
        r["status"] == "200"
    }
    for row in &rows {
        assert_eq!(row["experiment"], "sweep");
        assert_eq!(row["function"], "hog");
        assert_eq!(row["iteration"], "1");
        assert_eq!(row["cpu"], "");
        assert!(number(row, "start_unix_ns") > 1.7e18);
        // 80 MiB does not fit in 48m: the kernel kills the function, and
        // the row says so; everything else succeeds.
        let too_big = row["memory"] == "48m" && row["payload_id"] == "1";
        if too_big {
            assert_eq!(row["status"], "500", "{row:?}");
            assert!(row["error"].contains("killed by signal 9"), "{row:?}");
        } else {
            assert_eq!(row["status"], "200", "{row:?}");
            assert_eq!(row["error"], "", "{row:?}");
            let mib: f64 = if row["payload_id"] == "0" { 1.0 } else { 80.0 };
            assert_eq!(
                number(row, "bytes_out"),
                format!("{}\n", (mib as u64) << 20).len() as f64
            );
        }
        assert_eq!(
            number(row, "bytes_in"),
            if row["payload_id"] == "0" { 1.0 } else { 2.0 }
        );
        for column in [
            "client_ms",
            "connect_ms",
            "function_ms",
            "gateway_ms",
            "cpu_user_ms",
            "cpu_kernel_ms",
            "max_rss_bytes",
        ] {
            assert!(number(row, column) >= 0.0, "{column} in {row:?}");
        }
        let (client, gateway, function) = (
            number(row, "client_ms"),
            number(row, "gateway_ms"),
            number(row, "function_ms"),
        );
        assert!(function <= gateway && gateway <= client, "{row:?}");
        if !too_big {
            // The function's own 80 MiB show in its peak memory.
            let floor = if row["payload_id"] == "1" {
                80.0 * 1048576.0
            } else {
                1.0
            };
            assert!(number(row, "max_rss_bytes") >= floor, "{row:?}");
        }
    }
    assert_eq!(rows.iter().filter(|r| r["status"] == "200").count(), 30);

    // summary.csv, against the same figures computed here.
    let summary = read_csv(&out.join("summary.csv"));
    let groups: BTreeSet<(String, String, String)> = rows
        .iter()
        .map(|r| {
            (
                r["memory"].clone(),
                r["payload_id"].clone(),
                r["cold_start"].clone(),
            )
        })
        .collect();
    assert_eq!(summary.len(), groups.len());
    for line in &summary {
        let members: Vec<&Row> = rows
            .iter()
            .filter(|r| {
                r["memory"] == line["memory"]
                    && r["payload_id"] == line["payload_id"]
                    && r["cold_start"] == line["cold_start"]
            })
            .collect();
        assert_eq!(number(line, "n"), members.len() as f64);
        let ok: Vec<&&Row> = members.iter().filter(succeeded).collect();
        assert_eq!(number(line, "failures"), (members.len() - ok.len()) as f64);
        assert_eq!(
            number(line, "cold_starts"),
            members.iter().filter(|r| r["cold_start"] == "true").count() as f64
        );
        if ok.is_empty() {
            assert_eq!(line["client_mean_ms"], "", "{line:?}");
            continue;
        }
        for (prefix, column) in [("client", "client_ms"), ("function", "function_ms")] {
            let values: Vec<f64> = ok.iter().map(|r| number(r, column)).collect();
            let n = values.len() as f64;
            let mean = values.iter().sum::<f64>() / n;
            let close = |name: &str, expected: f64| {
                let got = number(line, &format!("{prefix}_{name}"));
                assert!(
                    (got - expected).abs() < 1e-3,
                    "{prefix}_{name}: {got} vs {expected} in {line:?}"
                );
            };
            close("mean_ms", mean);
            close("median_ms", quantile(&values, 0.5));
            close("p90_ms", quantile(&values, 0.9));
            close("p95_ms", quantile(&values, 0.95));
            close("p99_ms", quantile(&values, 0.99));
            if values.len() > 1 {
                let stdev =
                    (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
                close("stdev_ms", stdev);
                close("cv", stdev / mean);
                // Student's t, 97.5th percentile, for the degrees of freedom these groups have.
                let t: f64 = match values.len() - 1 {
                    1 => 12.7062,
                    2 => 4.3027,
                    3 => 3.1824,
                    4 => 2.7764,
                    5 => 2.5706,
                    6 => 2.4469,
                    7 => 2.3646,
                    8 => 2.3060,
                    9 => 2.2622,
                    10 => 2.2281,
                    df => panic!("no t value here for {df} degrees of freedom"),
                };
                let half = t * stdev / n.sqrt();
                let low = number(line, &format!("{prefix}_ci95_low_ms"));
                assert!(
                    (low - (mean - half)).abs() < 1e-3 * half.max(1.0),
                    "{low} vs {}",
                    mean - half
                );
            }
        }
        let rss: Vec<f64> = ok.iter().map(|r| number(r, "max_rss_bytes")).collect();
        assert_eq!(
            number(line, "rss_max_bytes"),
            rss.iter().cloned().fold(0.0, f64::max)
        );
    }

    // experiment.json: the resolved experiment, the gateway, the
    // function's settings before the run, times, the tool.
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("experiment.json")).unwrap()).unwrap();
    assert_eq!(record["experiment"]["runs"], 20);
    assert_eq!(record["experiment"]["memorySettings"][0]["bytes"], 48 << 20);
    assert_eq!(
        record["gatewayInfo"]["provider"]["orchestration"],
        "process"
    );
    assert_eq!(record["functions"][0]["limits"]["memory"], "300m");
    assert_eq!(record["calls"], 40);
    assert_eq!(record["failures"], 10);
    assert_eq!(record["interrupted"], false);
    assert_eq!(record["tool"]["name"], "faas");
    assert!(record["startedAt"].as_str().unwrap() <= record["finishedAt"].as_str().unwrap());

    // The function is as it was: its own limit, its replicas.
    let status = gw.faas(&["describe", "hog", "--json"]);
    status.assert_ok();
    let status: serde_json::Value = serde_json::from_str(&status.stdout()).unwrap();
    assert_eq!(status["limits"]["memory"], "300m");
    assert_eq!(status["replicas"], 2);

    // The same folder is not written over.
    run(&gw, "sweep.yml", experiment, "sweep").assert_fails_with("earlier run's results");

    // The plots: PNGs that decode at their size, SVGs with their titles,
    // and a page showing them all with the summary.
    let report = gw.faas(&["experiment", "report", out.to_str().unwrap()]);
    report.assert_ok();
    assert_eq!(
        report.stdout().trim(),
        out.join("report.html").to_str().unwrap()
    );
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    for (stem, title) in [
        (
            "runtime-by-memory",
            "Runtime in the function by memory setting",
        ),
        ("cpu-by-memory", "CPU time per call, user and kernel"),
        ("latency-histogram", "Client latency, histogram"),
        ("latency-cdf", "Client latency, cumulative distribution"),
        (
            "latency-over-time",
            "Client latency over the run, cold starts marked",
        ),
        ("throughput-over-time", "Calls completed per second"),
    ] {
        let decoder =
            png::Decoder::new(std::fs::File::open(out.join(format!("{stem}.png"))).unwrap());
        let mut reader = decoder.read_info().unwrap();
        let mut pixels = vec![0; reader.output_buffer_size()];
        let frame = reader.next_frame(&mut pixels).unwrap();
        assert_eq!((frame.width, frame.height), (1200, 700), "{stem}");
        // Drawn on: not a blank canvas.
        assert!(pixels.iter().any(|&b| b < 128), "{stem} is blank");
        let svg = std::fs::read_to_string(out.join(format!("{stem}.svg"))).unwrap();
        assert!(
            svg.starts_with("<svg") && svg.contains(title),
            "{stem}: {}",
            &svg[..200.min(svg.len())]
        );
        assert!(html.contains(&format!("src=\"{stem}.svg\"")), "{stem}");
    }
    for label in [
        "48m",
        "256m",
        "setting (memory, CPU, payload)",
        "client latency (ms",
    ] {
        assert!(
            std::fs::read_to_string(out.join("runtime-by-memory.svg"))
                .unwrap()
                .contains(label)
                || std::fs::read_to_string(out.join("latency-cdf.svg"))
                    .unwrap()
                    .contains(label),
            "{label}"
        );
    }
    assert!(
        html.contains("<td>hog</td><td>48m</td>"),
        "the summary table"
    );

    // A run compared with itself: every figure the same, nothing significant.
    let same = gw.faas(&[
        "experiment",
        "compare",
        out.to_str().unwrap(),
        out.to_str().unwrap(),
        "--json",
    ]);
    same.assert_ok();
    for line in same.stdout().lines() {
        let change: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(change["a"], change["b"], "{line}");
        assert_eq!(change["significant"], false, "{line}");
    }
}

#[test]
fn compare_says_whether_a_change_is_more_than_noise() {
    let gw = Gateway::start();
    gw.write("nap.sh", "sleep $(cat)\n");
    gw.deploy("  nap:\n    fprocess: sh nap.sh\n");
    // The same payload slot, a slower payload: B is slower for sure.
    run(
        &gw,
        "a.yml",
        "function: nap\npayloads: ['0.01']\nruns: 12\nwarmup: 1\n",
        "a",
    )
    .assert_ok();
    run(
        &gw,
        "b.yml",
        "function: nap\npayloads: ['0.08']\nruns: 12\nwarmup: 1\n",
        "b",
    )
    .assert_ok();
    let (a, b) = (gw.dir.path().join("a"), gw.dir.path().join("b"));
    let compared = gw.faas(&[
        "experiment",
        "compare",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
    ]);
    compared.assert_ok();
    let table = compared.stdout();
    let line = table
        .lines()
        .find(|l| l.contains("function mean ms"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(line.contains("higher"), "{table}");
    let json = gw.faas(&[
        "experiment",
        "compare",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--json",
    ]);
    let mean: serde_json::Value = json
        .stdout()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|c| c["figure"] == "function mean ms" && c["coldStart"] == false)
        .unwrap();
    assert!(mean["p"].as_f64().unwrap() < 0.001, "{mean}");
    assert!(
        mean["b"].as_f64().unwrap() > mean["a"].as_f64().unwrap() + 50.0,
        "{mean}"
    );
    assert_eq!(mean["test"], "welch");

    let missing = gw.faas(&["experiment", "compare", a.to_str().unwrap(), "nowhere"]);
    missing.assert_fails_with("cannot read nowhere/calls.csv");
    let report = gw.faas(&["experiment", "report", "nowhere"]);
    report.assert_fails_with("cannot read nowhere/calls.csv");
}

#[test]
fn cold_async_and_open_loop_calls_each_fill_their_rows() {
    let gw = Gateway::start();
    gw.deploy("  echo:\n    fprocess: cat\n");

    let cold = run(
        &gw,
        "cold.yml",
        "function: echo\npayloads: [{n: 1}]\nruns: 3\nmode: cold\n",
        "cold",
    );
    cold.assert_ok();
    let rows = read_csv(&gw.dir.path().join("cold/calls.csv"));
    assert_eq!(rows.len(), 3);
    let replicas: BTreeSet<&str> = rows.iter().map(|r| r["served_by"].as_str()).collect();
    for row in &rows {
        assert_eq!(
            row["cold_start"], "true",
            "every call a cold start: {row:?}"
        );
        assert_eq!(row["status"], "200");
        assert_eq!(row["bytes_out"], "7", "{{\"n\":1}}");
    }
    assert_eq!(replicas.len(), 3, "a new replica for each: {replicas:?}");

    let both = run(
        &gw,
        "both.yml",
        "function: echo\nruns: 2\nmode: both\n",
        "both",
    );
    both.assert_ok();
    let rows = read_csv(&gw.dir.path().join("both/calls.csv"));
    let cold: Vec<&str> = rows.iter().map(|r| r["cold_start"].as_str()).collect();
    assert_eq!(
        cold,
        ["true", "true", "false", "false"],
        "cold phase, then warm"
    );

    let queued = run(
        &gw,
        "async.yml",
        "function: echo\npayloads: [abc]\nruns: 6\nthreads: 3\nasync: true\n",
        "async",
    );
    queued.assert_ok();
    let rows = read_csv(&gw.dir.path().join("async/calls.csv"));
    assert_eq!(rows.len(), 6);
    for row in &rows {
        assert_eq!(row["status"], "200", "{row:?}");
        assert_eq!(row["bytes_out"], "3", "the output's size: {row:?}");
        assert!(row["served_by"].starts_with("echo-"), "{row:?}");
        for column in [
            "client_ms",
            "function_ms",
            "gateway_ms",
            "cpu_user_ms",
            "max_rss_bytes",
        ] {
            assert!(number(row, column) >= 0.0, "{column}: {row:?}");
        }
        assert!(
            number(row, "client_ms") >= number(row, "function_ms"),
            "{row:?}"
        );
    }

    // Open loop: calls start on schedule, 20 ms apart, whatever the answers do.
    let open = run(
        &gw,
        "rate.yml",
        "function: echo\nruns: 25\nrate: 50\n",
        "rate",
    );
    open.assert_ok();
    let rows = read_csv(&gw.dir.path().join("rate/calls.csv"));
    assert_eq!(rows.len(), 25);
    let starts: Vec<f64> = rows.iter().map(|r| number(r, "start_unix_ns")).collect();
    for (i, pair) in starts.windows(2).enumerate() {
        let gap_ms = (pair[1] - pair[0]) / 1e6;
        assert!(
            (gap_ms - 20.0).abs() < 0.5,
            "call {}: {gap_ms} ms after the one before",
            i + 2
        );
    }
    assert!(
        rows.iter()
            .all(|r| r["status"] == "200" && r["thread"] == "0")
    );
    let seqs: Vec<&str> = rows.iter().map(|r| r["seq"].as_str()).collect();
    assert_eq!(seqs.first(), Some(&"1"));
    assert_eq!(seqs.last(), Some(&"25"));
}

/// An `http`-mode runner that is not ours: it reports no figures itself.
const SERVER: &str = r#"import os
from http.server import BaseHTTPRequestHandler, HTTPServer
class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        sum(i * i for i in range(200000))
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"#;

#[test]
fn every_watchdog_mode_fills_every_column() {
    let gw = Gateway::start();
    gw.write("server.py", SERVER);
    gw.deploy(
        "  forked:\n    fprocess: cat\n  streamed:\n    fprocess: cat\n    environment:\n      mode: stream\n  \
         served:\n    fprocess: python3 server.py\n    environment:\n      mode: http\n",
    );
    let ran = run(
        &gw,
        "modes.yml",
        "function: [forked, streamed, served]\npayloads: [hello]\nruns: 4\n",
        "modes",
    );
    ran.assert_ok();
    let rows = read_csv(&gw.dir.path().join("modes/calls.csv"));
    assert_eq!(rows.len(), 12);
    for row in &rows {
        assert_eq!(row["status"], "200", "{row:?}\n{}", gw.log());
        assert_eq!(row["bytes_out"], "5", "{row:?}");
        for column in [
            "client_ms",
            "connect_ms",
            "function_ms",
            "gateway_ms",
            "cpu_user_ms",
            "cpu_kernel_ms",
            "max_rss_bytes",
        ] {
            assert!(
                !row[column].is_empty(),
                "{column} empty for {}: {row:?}",
                row["function"]
            );
        }
        assert!(number(row, "max_rss_bytes") > 0.0, "{row:?}");
    }
    // The runner's CPU is read from /proc in clock ticks: its loop shows.
    let served: f64 = rows
        .iter()
        .filter(|r| r["function"] == "served")
        .map(|r| number(r, "cpu_user_ms") + number(r, "cpu_kernel_ms"))
        .sum();
    assert!(served > 0.0, "{rows:?}");
}

#[test]
fn interrupting_a_run_keeps_what_was_measured_and_puts_the_settings_back() {
    let gw = Gateway::start();
    gw.write("slow.sh", "sleep 0.1\ncat\n");
    gw.deploy("  slow:\n    fprocess: sh slow.sh\n    limits:\n      memory: 200m\n");
    let file = gw.write(
        "long.yml",
        "function: slow\nmemorySettings: [100m]\nruns: 10000\nthreads: 2\n",
    );
    let out = gw.dir.path().join("long");
    let child = gw
        .faas_cmd()
        .args(&[
            "experiment",
            "run",
            file.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .spawn();
    // Some calls made: the function counts them.
    let calls = || {
        let run = gw.faas(&["describe", "slow", "--json"]);
        serde_json::from_str::<serde_json::Value>(&run.stdout())
            .ok()
            .and_then(|s| s["invocationCount"].as_u64())
            .unwrap_or(0)
    };
    assert!(
        eventually(Duration::from_secs(30), || calls() >= 6),
        "no calls made"
    );
    testkit::proc::signal(child.id() as i32, SIGINT);
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    let rows = read_csv(&out.join("calls.csv"));
    assert!(rows.len() >= 4 && rows.len() < 10000, "{} rows", rows.len());
    assert!(
        rows.iter().all(|r| r["status"] == "200"),
        "calls in flight finished"
    );
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("experiment.json")).unwrap()).unwrap();
    assert_eq!(record["interrupted"], true);
    let status = gw.faas(&["describe", "slow", "--json"]);
    let status: serde_json::Value = serde_json::from_str(&status.stdout()).unwrap();
    assert_eq!(
        status["limits"]["memory"], "200m",
        "the setting is put back"
    );
}

/// What Ctrl-C sends.
const SIGINT: i32 = 2;

#[test]
fn bad_experiments_are_refused_with_one_error_naming_the_problem() {
    let gw = Gateway::start();
    gw.deploy("  echo:\n    fprocess: cat\n");
    for (text, expected) in [
        ("function: echo\nthreds: 2\n", "unknown field `threds`"),
        ("function: echo\nruns: lots\n", "runs: invalid type"),
        (
            "function: echo\nmemorySettings: [128m, 1m]\n",
            "memorySettings[1]: 1m is less than",
        ),
        (
            "function: echo\nmode: lukewarm\n",
            "mode: unknown variant `lukewarm`",
        ),
        ("runs: 3\n", "function: missing"),
        ("function: ghost\n", "function \"ghost\" not found"),
        ("function: [echo\n", "experiment file"),
    ] {
        let ran = run(&gw, "bad.yml", text, "bad");
        ran.assert_fails_with(expected);
        assert_eq!(ran.stderr().lines().count(), 1, "{}", ran.stderr());
        assert!(!gw.dir.path().join("bad/calls.csv").exists(), "{text}");
    }
    let missing = gw.faas(&["experiment", "run", "nowhere.yml"]);
    missing.assert_fails_with("cannot read the experiment file nowhere.yml");
}
