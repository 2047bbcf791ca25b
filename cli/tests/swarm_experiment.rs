//! `faas experiment` on the real Swarm stack of `./build.sh up`: a python
//! function (FaaSET's handler shape) built from source, swept over memory
//! settings (the limit holds: a call needing more than it fails, and every
//! replica that answers says it ran with the setting) and CPU settings
//! (less CPU, longer runtime), the function put back as it was, plotted.
//!
//! Ignored by a plain `cargo test` (it needs the stack); `./build.sh test`
//! runs it on purpose.

use std::collections::BTreeMap;

use crate::swarm_util::{Swarm, unique_prefix};

type Row = BTreeMap<String, String>;

fn read_csv(path: &std::path::Path) -> Vec<Row> {
    csv::Reader::from_path(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
        .deserialize()
        .map(|r| r.unwrap())
        .collect()
}

const SWEEP: &str = "def sweep(request, context):\n    block = bytearray(int(request.get(\"mb\", 0)) << 20)\n    total = 0\n    for i in range(int(request.get(\"loops\", 0))):\n        total += i * i\n    return {\"mb\": len(block) >> 20, \"total\": total}\n";

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    values[values.len() / 2]
}

#[test]
#[ignore = "needs Docker Swarm: ./build.sh up"]
fn a_memory_and_cpu_sweep_on_swarm_shows_the_limits_took_effect() {
    let swarm = Swarm::connect();
    swarm.login();
    let mut cleanup = swarm.cleanup();
    let name = format!("{}-sweep", unique_prefix());
    let source = swarm.write("sweep.py", SWEEP);
    swarm
        .faas(&[
            "deploy",
            &name,
            "--from",
            source.to_str().unwrap(),
            "--lang",
            "python",
            "--timeout",
            "4m",
        ])
        .assert_ok();
    cleanup.function(&name);

    // Memory: 80 MiB fits in 128m and 256m, not in 64m.
    let file = swarm.write(
        "memory.yml",
        &format!("function: {name}\npayloads: [{{mb: 80}}]\nmemorySettings: [64m, 128m, 256m]\nruns: 3\ntimeout: 30s\n"),
    );
    let out = swarm.write("memory-out", "");
    std::fs::remove_file(&out).unwrap();
    let ran = swarm.faas(&[
        "experiment",
        "run",
        file.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--timeout",
        "3m",
    ]);
    ran.assert_ok();
    let rows = read_csv(&out.join("calls.csv"));
    assert_eq!(rows.len(), 9, "{}", ran.stderr());
    for row in &rows {
        if row["memory"] == "64m" {
            assert_ne!(row["status"], "200", "80 MiB in a 64m container: {row:?}");
            assert!(!row["error"].is_empty(), "{row:?}");
        } else {
            // Answered, by a replica that reported the setting as its
            // limit (else the runner would have said so in `error`).
            assert_eq!(
                (row["status"].as_str(), row["error"].as_str()),
                ("200", ""),
                "{row:?}"
            );
            assert!(
                row["max_rss_bytes"].parse::<f64>().unwrap() >= 80.0 * 1048576.0,
                "{row:?}"
            );
            assert!(
                row["served_by"].len() >= 12,
                "a container's host name: {row:?}"
            );
        }
    }

    // CPU: a quarter of a CPU makes the same loop about four times slower.
    let file = swarm.write(
        "cpu.yml",
        &format!("function: {name}\npayloads: [{{loops: 3000000}}]\ncpuSettings: [0.25, 1]\nruns: 5\nwarmup: 1\ntimeout: 60s\n"),
    );
    let out = swarm.write("cpu-out", "");
    std::fs::remove_file(&out).unwrap();
    swarm
        .faas(&[
            "experiment",
            "run",
            file.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--timeout",
            "3m",
        ])
        .assert_ok();
    let rows = read_csv(&out.join("calls.csv"));
    assert_eq!(rows.len(), 10);
    assert!(
        rows.iter()
            .all(|r| r["status"] == "200" && r["error"].is_empty()),
        "{rows:?}"
    );
    let runtime = |cpu: &str| {
        median(
            rows.iter()
                .filter(|r| r["cpu"] == cpu)
                .map(|r| r["function_ms"].parse::<f64>().unwrap())
                .collect(),
        )
    };
    let (quarter, whole) = (runtime("0.25"), runtime("1"));
    assert!(
        quarter > 2.5 * whole,
        "0.25 CPU: {quarter} ms, 1 CPU: {whole} ms"
    );
    eprintln!("{name}: loop at 0.25 CPU {quarter:.0} ms, at 1 CPU {whole:.0} ms");

    // Put back as it was: no limits, one replica.
    let status = swarm.faas(&["describe", &name, "--json"]);
    status.assert_ok();
    let status: serde_json::Value = serde_json::from_str(&status.stdout()).unwrap();
    assert!(status.get("limits").is_none(), "{status}");
    assert_eq!(status["replicas"], 1);

    let report = swarm.faas(&["experiment", "report", out.to_str().unwrap()]);
    report.assert_ok();
    assert!(out.join("cpu-by-memory.png").is_file());
}
