//! One row per call (`calls.csv`), read and written with the csv crate, in
//! the column order the product brief fixes.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One call. Times are milliseconds rounded to the microsecond; a figure
/// the call did not get (no answer, a function that reported none) is
/// empty.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub experiment: String,
    pub iteration: u64,
    pub function: String,
    /// The memory setting as written (empty: left as it was).
    pub memory: String,
    pub cpu: String,
    /// Index into the experiment's payloads.
    pub payload_id: usize,
    /// The caller (closed loop), or 0 (open loop).
    pub thread: u64,
    /// The call's number: within its caller (closed loop), or in the
    /// schedule (open loop).
    pub seq: u64,
    /// When the call started (open loop: when it was due).
    pub start_unix_ns: u64,
    /// From the start to the answer's last byte (async: to the moment the
    /// record was seen finished).
    pub client_ms: Option<f64>,
    /// Opening a connection, when the call opened one (else 0).
    pub connect_ms: Option<f64>,
    /// `X-Duration-Seconds`: the call inside the replica.
    pub function_ms: Option<f64>,
    /// `X-Gateway-Duration-Seconds`: the gateway's own time, from the
    /// call's arrival to the function's response head.
    pub gateway_ms: Option<f64>,
    pub cpu_user_ms: Option<f64>,
    pub cpu_kernel_ms: Option<f64>,
    pub max_rss_bytes: Option<u64>,
    pub cold_start: bool,
    pub served_by: String,
    /// The HTTP status (0: no answer).
    pub status: u16,
    /// The request body's bytes.
    pub bytes_in: u64,
    /// The answer body's bytes.
    pub bytes_out: u64,
    pub error: String,
}

impl Row {
    /// A call that failed: no answer, an error status, or a premise the
    /// answer broke (the replica's memory limit, a cold start that was not).
    pub fn failed(&self) -> bool {
        !self.error.is_empty() || !(200..300).contains(&self.status)
    }
}

/// Seconds (or nothing) as milliseconds rounded to the microsecond.
pub fn ms(seconds: Option<f64>) -> Option<f64> {
    seconds.map(|s| (s * 1e6).round() / 1e3)
}

pub fn write_csv<T: Serialize>(path: &Path, rows: &[T]) -> Result<()> {
    let failed = |e: csv::Error| Error::new(format!("cannot write {}: {e}", path.display()));
    let mut writer = csv::Writer::from_path(path).map_err(failed)?;
    for row in rows {
        writer.serialize(row).map_err(failed)?;
    }
    writer
        .flush()
        .map_err(|e| Error::new(format!("cannot write {}: {e}", path.display())))
}

pub fn read_calls(path: &Path) -> Result<Vec<Row>> {
    let failed = |e: csv::Error| Error::new(format!("cannot read {}: {e}", path.display()));
    let mut reader = csv::Reader::from_path(path).map_err(failed)?;
    reader
        .deserialize()
        .collect::<std::result::Result<Vec<Row>, _>>()
        .map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip_through_csv_with_the_briefs_columns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("calls.csv");
        let rows = vec![
            Row {
                experiment: "e".into(),
                iteration: 1,
                function: "f".into(),
                memory: "128m".into(),
                client_ms: ms(Some(0.0123456789)),
                status: 200,
                error: "with, a comma and \"quotes\"".into(),
                ..Default::default()
            },
            Row::default(),
        ];
        write_csv(&path, &rows).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text.lines().next().unwrap(),
            "experiment,iteration,function,memory,cpu,payload_id,thread,seq,start_unix_ns,\
             client_ms,connect_ms,function_ms,gateway_ms,cpu_user_ms,cpu_kernel_ms,max_rss_bytes,\
             cold_start,served_by,status,bytes_in,bytes_out,error"
        );
        let back = read_calls(&path).unwrap();
        assert_eq!(back, rows);
        assert_eq!(back[0].client_ms, Some(12.346));
        assert!(
            back[0].failed(),
            "an error fails a call whatever its status"
        );
    }
}
