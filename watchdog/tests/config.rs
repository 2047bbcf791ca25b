//! Bad configuration stops start-up with a message naming the variable.

use crate::util;

use util::*;

fn refused(vars: &[(&str, &str)], variable: &str) {
    let (status, stderr) = run_to_exit(vars, &[]);
    assert_eq!(
        status.code(),
        Some(2),
        "{vars:?} should stop start-up; stderr:\n{stderr}"
    );
    assert!(
        stderr.contains("configuration error") && stderr.contains(variable),
        "{vars:?}: message should name {variable}:\n{stderr}"
    );
    assert!(!stderr.contains("listening"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn missing_fprocess() {
    refused(&[], "fprocess is required");
}

#[test]
fn empty_fprocess() {
    refused(&[("fprocess", "   ")], "fprocess is required");
}

#[test]
fn unknown_mode() {
    refused(
        &[("fprocess", "cat"), ("mode", "afterburner")],
        "mode=\"afterburner\"",
    );
}

#[test]
fn unparsable_durations() {
    for var in [
        "exec_timeout",
        "read_timeout",
        "write_timeout",
        "healthcheck_interval",
    ] {
        refused(&[("fprocess", "cat"), (var, "ten seconds")], var);
    }
}

#[test]
fn unparsable_numbers() {
    refused(
        &[("fprocess", "cat"), ("max_inflight", "many")],
        "max_inflight",
    );
    refused(&[("fprocess", "cat"), ("port", "70000")], "port");
    refused(
        &[("fprocess", "cat"), ("metrics_port", "-1")],
        "metrics_port",
    );
    refused(
        &[("fprocess", "cat"), ("max_body_bytes", "1.5m")],
        "max_body_bytes",
    );
    refused(
        &[("fprocess", "cat"), ("max_output_bytes", "0")],
        "max_output_bytes",
    );
}

#[test]
fn unparsable_booleans() {
    for var in [
        "combine_output",
        "cgi_headers",
        "write_debug",
        "suppress_lock",
    ] {
        refused(&[("fprocess", "cat"), (var, "perhaps")], var);
    }
}

#[test]
fn bad_upstream_url() {
    refused(
        &[
            ("fprocess", "srv"),
            ("mode", "http"),
            ("upstream_url", "localhost:8082"),
        ],
        "upstream_url",
    );
}

#[test]
fn a_port_in_use_is_named() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let (status, stderr) = run_to_exit(&[("fprocess", "cat"), ("port", &port)], &[]);
    assert_eq!(status.code(), Some(1));
    assert!(
        stderr.contains("cannot listen") && stderr.contains("(port)"),
        "{stderr}"
    );
}

#[test]
fn unwritable_lock_directory_is_named() {
    let (status, stderr) =
        run_to_exit(&[("fprocess", "cat"), ("TMPDIR", "/proc/no-such-dir")], &[]);
    assert_eq!(status.code(), Some(1));
    assert!(
        stderr.contains("lock file") && stderr.contains("suppress_lock"),
        "{stderr}"
    );
}

#[test]
fn unknown_argument_is_refused_with_usage() {
    let (status, stderr) = run_to_exit(&[("fprocess", "cat")], &["--frobnicate"]);
    assert_eq!(status.code(), Some(2));
    assert!(
        stderr.contains("unknown argument") && stderr.contains("Usage"),
        "{stderr}"
    );
}
