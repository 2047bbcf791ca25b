//! The experiment file: YAML (or JSON, FaaS Runner's shape), read into a
//! checked [`Experiment`]. Every mistake is one error naming the field.
//!
//! Keys follow FaaS Runner where it has them (`function`, `payloads`,
//! `parentPayload`, `shufflePayloads`, `randomSeed`, `memorySettings`,
//! `runs`, `threads`, `iterations`, `sleepTime`, `warmupBuffer`,
//! `callAsync`); ours add `cpuSettings`, `warmup`, `mode`, `async`,
//! `timeout`, `rate`, `method`, `path`, `headers` and `name`. FaaS
//! Runner's report and CLI keys (`outputGroups`, `callWithCLI`, …) are
//! accepted and ignored, so its files run unchanged.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use faas_common::parse::{parse_bytes, parse_cpus, parse_duration};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};

/// FaaS Runner keys that shape its own reports or CLI use: accepted, not used.
const IGNORED: &[&str] = &[
    "callWithCLI",
    "outputGroups",
    "outputRawOfGroup",
    "showAsList",
    "showAsSum",
    "ignoreFromAll",
    "ignoreFromGroups",
    "ignoreByGroup",
    "invalidators",
    "removeDuplicateContainers",
    "overlapFilter",
    "openCSV",
    "combineSheets",
    "payloadFirstFunction",
    "transitions",
    "platform",
    "source",
    "endpoint",
];

/// The file as written (keys not named here land in `ignored`, and are
/// refused unless FaaS Runner has them).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct File {
    name: Option<String>,
    function: Option<OneOrMany>,
    #[serde(default)]
    payloads: Vec<Value>,
    parent_payload: Option<serde_json::Map<String, Value>>,
    #[serde(default)]
    shuffle_payloads: bool,
    random_seed: Option<u64>,
    #[serde(default)]
    memory_settings: Vec<Setting>,
    #[serde(default)]
    cpu_settings: Vec<Setting>,
    runs: Option<u64>,
    threads: Option<u64>,
    iterations: Option<u64>,
    #[serde(default)]
    warmup: u64,
    #[serde(default)]
    warmup_buffer: u64,
    sleep_time: Option<Setting>,
    mode: Option<Mode>,
    #[serde(rename = "async", default)]
    is_async: bool,
    #[serde(default)]
    call_async: bool,
    timeout: Option<Setting>,
    rate: Option<f64>,
    method: Option<String>,
    path: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(flatten)]
    ignored: BTreeMap<String, Value>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// A setting written as a number or as text (`256` or `"256m"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Setting {
    Number(f64),
    Text(String),
}

/// Whether calls find their function warm, cold, or both in turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Warm,
    Cold,
    Both,
}

impl Mode {
    /// The phases a sweep runs, in order.
    pub fn phases(self) -> &'static [Phase] {
        match self {
            Mode::Warm => &[Phase::Warm],
            Mode::Cold => &[Phase::Cold],
            Mode::Both => &[Phase::Cold, Phase::Warm],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Warm,
    Cold,
}

/// One memory setting: as written (the CSV's `memory` column) and in bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Memory {
    pub label: String,
    pub bytes: u64,
}

/// One CPU setting: as written and in billionths of a CPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cpu {
    pub label: String,
    pub nanos: u64,
}

/// One payload: the body sent and its content type.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Payload {
    /// As written in the file.
    pub value: Value,
    #[serde(skip)]
    pub body: Vec<u8>,
    pub content_type: &'static str,
}

/// A checked experiment: what [`super::run`] does.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Experiment {
    pub name: String,
    pub functions: Vec<String>,
    pub payloads: Vec<Payload>,
    pub shuffle_payloads: bool,
    pub random_seed: u64,
    /// Empty: the functions' memory is left as it is.
    pub memory_settings: Vec<Memory>,
    pub cpu_settings: Vec<Cpu>,
    pub runs: u64,
    pub threads: u64,
    pub iterations: u64,
    pub warmup: u64,
    pub warmup_buffer: u64,
    #[serde(with = "seconds")]
    pub sleep_time: Duration,
    pub mode: Mode,
    #[serde(rename = "async")]
    pub is_async: bool,
    #[serde(with = "seconds")]
    pub timeout: Duration,
    /// Calls per second, open loop (`None`: closed loop over `threads`).
    pub rate: Option<f64>,
    pub method: String,
    pub path: String,
    pub headers: BTreeMap<String, String>,
    /// FaaS Runner keys the file had that are not used here.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ignored: Vec<String>,
}

mod seconds {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

/// Default per-call timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// The most concurrent callers (and, open loop, calls in flight).
pub const MAX_THREADS: u64 = 4096;
/// The most calls one experiment may make (its rows are kept in memory).
pub const MAX_CALLS: u64 = 10_000_000;

impl Experiment {
    /// Reads and checks the file at `path`.
    pub fn load(path: &Path) -> Result<Experiment> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::new(format!(
                "cannot read the experiment file {}: {}",
                path.display(),
                crate::error::io_reason(&e)
            ))
        })?;
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("experiment");
        Experiment::parse(&text, stem)
            .map_err(|e| Error::new(format!("experiment file {}: {e}", path.display())))
    }

    /// Checks an experiment's text; `default_name` names it when it does not.
    pub fn parse(text: &str, default_name: &str) -> std::result::Result<Experiment, String> {
        // YAML holds JSON, so FaaS Runner's JSON files read the same way.
        let value: Value = serde_saphyr::from_str(text).map_err(|e| one_line(&e.to_string()))?;
        if !value.is_object() {
            return Err("expected a mapping of settings (function, payloads, runs, …)".into());
        }
        let file: File = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            if path == "." || path.is_empty() {
                inner
            } else {
                format!("{path}: {inner}")
            }
        })?;
        file.check(default_name)
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl File {
    fn check(self, default_name: &str) -> std::result::Result<Experiment, String> {
        let unknown: Vec<&String> = self
            .ignored
            .keys()
            .filter(|k| !IGNORED.contains(&k.as_str()))
            .collect();
        if let Some(first) = unknown.first() {
            return Err(format!(
                "unknown field `{first}`; the fields are name, function, payloads, parentPayload, shufflePayloads, randomSeed, memorySettings, cpuSettings, runs, threads, iterations, warmup, warmupBuffer, sleepTime, mode, async, timeout, rate, method, path, headers"
            ));
        }
        let payloads = self.payloads_checked()?;
        let functions = match self.function {
            None => {
                return Err("function: missing: name the function (or functions) to call".into());
            }
            Some(OneOrMany::One(f)) => vec![f],
            Some(OneOrMany::Many(fs)) => fs,
        };
        if functions.is_empty() {
            return Err("function: empty: name at least one function".into());
        }
        for f in &functions {
            if !faas_common::is_valid_function_name(f) {
                return Err(format!(
                    "function: {f:?} is not a function name (letters, digits, '_', '.' and '-')"
                ));
            }
        }
        let memory_settings = self
            .memory_settings
            .iter()
            .enumerate()
            .map(|(i, s)| memory(s).map_err(|e| format!("memorySettings[{i}]: {e}")))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let cpu_settings = self
            .cpu_settings
            .iter()
            .enumerate()
            .map(|(i, s)| cpu(s).map_err(|e| format!("cpuSettings[{i}]: {e}")))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let count = |field: &str, v: Option<u64>, default: u64, max: u64| match v {
            None => Ok(default),
            Some(0) => Err(format!("{field}: must be at least 1")),
            Some(v) if v > max => Err(format!("{field}: {v} is more than the {max} allowed")),
            Some(v) => Ok(v),
        };
        let runs = count("runs", self.runs, 1, MAX_CALLS)?;
        // Open loop, `threads` caps the calls in flight.
        let threads = count(
            "threads",
            self.threads,
            if self.rate.is_some() { 1024 } else { 1 },
            MAX_THREADS,
        )?;
        let iterations = count("iterations", self.iterations, 1, MAX_CALLS)?;
        let sweeps = functions.len() as u64
            * memory_settings.len().max(1) as u64
            * cpu_settings.len().max(1) as u64;
        let mode = self.mode.unwrap_or(Mode::Warm);
        let calls = sweeps
            .saturating_mul(iterations)
            .saturating_mul(runs.saturating_add(self.warmup))
            .saturating_mul(mode.phases().len() as u64);
        if calls > MAX_CALLS {
            return Err(format!(
                "runs: the experiment makes {calls} calls, more than the {MAX_CALLS} one run may make"
            ));
        }
        if self.warmup_buffer >= iterations {
            return Err(format!(
                "warmupBuffer: {} leaves none of the {iterations} iterations to keep",
                self.warmup_buffer
            ));
        }
        let sleep_time = match &self.sleep_time {
            None => Duration::ZERO,
            Some(s) => duration(s).map_err(|e| format!("sleepTime: {e}"))?,
        };
        let timeout = match &self.timeout {
            None => DEFAULT_TIMEOUT,
            Some(s) => match duration(s).map_err(|e| format!("timeout: {e}"))? {
                d if d.is_zero() => return Err("timeout: must be more than zero".into()),
                d => d,
            },
        };
        if let Some(rate) = self.rate {
            if !(rate.is_finite() && rate > 0.0 && rate <= 1e6) {
                return Err(format!(
                    "rate: {rate} is not a rate of calls per second (more than 0, at most 1000000)"
                ));
            }
            if mode != Mode::Warm {
                return Err(
                    "rate: an open-loop rate needs mode: warm (a cold call waits for the function to be scaled to zero first)".into(),
                );
            }
        }
        let method = self
            .method
            .unwrap_or_else(|| "POST".into())
            .to_ascii_uppercase();
        if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(format!("method: {method:?} is not an HTTP method"));
        }
        let path = self.path.unwrap_or_default();
        if !(path.is_empty() || path.starts_with('/')) || path.contains(char::is_whitespace) {
            return Err(format!(
                "path: {path:?} must start with '/' and hold no spaces (it follows /function/<name>)"
            ));
        }
        for (name, value) in &self.headers {
            if http::HeaderName::from_bytes(name.as_bytes()).is_err()
                || http::HeaderValue::from_str(value).is_err()
            {
                return Err(format!(
                    "headers: {name:?}: {value:?} is not a valid header"
                ));
            }
        }
        let is_async = self.is_async || self.call_async;
        if is_async && self.rate.is_some() {
            return Err(
                "rate: async calls run closed loop over threads; drop rate or async".into(),
            );
        }
        let name = self.name.unwrap_or_else(|| default_name.to_owned());
        if name.is_empty() || name.contains(['\n', '\r']) {
            return Err("name: must be one non-empty line".into());
        }
        Ok(Experiment {
            name,
            functions,
            payloads,
            shuffle_payloads: self.shuffle_payloads,
            random_seed: self.random_seed.unwrap_or(42),
            memory_settings,
            cpu_settings,
            runs,
            threads,
            iterations,
            warmup: self.warmup,
            warmup_buffer: self.warmup_buffer,
            sleep_time,
            mode,
            is_async,
            timeout,
            rate: self.rate,
            method,
            path,
            headers: self.headers,
            ignored: self.ignored.into_keys().collect(),
        })
    }

    /// The payloads, with `parentPayload` merged into each object (the
    /// payload's own keys win); none at all is one empty body.
    fn payloads_checked(&self) -> std::result::Result<Vec<Payload>, String> {
        if self.payloads.is_empty() {
            return Ok(vec![Payload {
                value: Value::String(String::new()),
                body: Vec::new(),
                content_type: "text/plain",
            }]);
        }
        self.payloads
            .iter()
            .enumerate()
            .map(|(i, value)| {
                let value = match (&self.parent_payload, value) {
                    (Some(parent), Value::Object(own)) => {
                        let mut merged = parent.clone();
                        merged.extend(own.clone());
                        Value::Object(merged)
                    }
                    (Some(_), Value::Null) => {
                        return Err(format!("payloads[{i}]: null is not a payload"));
                    }
                    (_, v) => v.clone(),
                };
                Ok(match &value {
                    Value::String(text) => Payload {
                        body: text.clone().into_bytes(),
                        content_type: "text/plain",
                        value,
                    },
                    other => Payload {
                        body: serde_json::to_vec(other).expect("a JSON value encodes"),
                        content_type: "application/json",
                        value,
                    },
                })
            })
            .collect()
    }
}

fn memory(s: &Setting) -> std::result::Result<Memory, String> {
    let (label, bytes) = match s {
        // FaaS Runner writes MB as plain numbers.
        Setting::Number(mb) if mb.fract() == 0.0 && *mb > 0.0 => {
            (format!("{mb}m"), (*mb as u64) << 20)
        }
        Setting::Number(n) => return Err(format!("{n} is not a whole number of MB")),
        Setting::Text(t) => (t.trim().to_owned(), parse_bytes(t)?),
    };
    if bytes < 6 << 20 {
        return Err(format!("{label} is less than the 6m a function needs"));
    }
    Ok(Memory { label, bytes })
}

fn cpu(s: &Setting) -> std::result::Result<Cpu, String> {
    let label = match s {
        Setting::Number(n) => format!("{n}"),
        Setting::Text(t) => t.trim().to_owned(),
    };
    Ok(Cpu {
        nanos: parse_cpus(&label)?,
        label,
    })
}

/// Seconds as a number (FaaS Runner's `sleepTime`) or a duration text.
fn duration(s: &Setting) -> std::result::Result<Duration, String> {
    match s {
        Setting::Number(n) if n.is_finite() && *n >= 0.0 => Ok(Duration::from_secs_f64(*n)),
        Setting::Number(n) => Err(format!("{n} is not a number of seconds")),
        Setting::Text(t) => parse_duration(t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> std::result::Result<Experiment, String> {
        Experiment::parse(text, "file")
    }

    #[test]
    fn faas_runners_json_shape_runs_as_is() {
        let e = parse(
            r#"{
                "callWithCLI": true,
                "function": "hello",
                "memorySettings": [256, 512],
                "payloads": [{"name": "Bob"}, {"name": "Joe"}],
                "parentPayload": {"greeting": "hi", "name": "x"},
                "runs": 50, "threads": 10, "iterations": 3,
                "sleepTime": 1, "randomSeed": 7, "warmupBuffer": 1,
                "outputGroups": ["containerID"], "shufflePayloads": true
            }"#,
        )
        .unwrap();
        assert_eq!(e.name, "file");
        assert_eq!(e.functions, ["hello"]);
        assert_eq!(
            e.memory_settings[0],
            Memory {
                label: "256m".into(),
                bytes: 256 << 20
            }
        );
        assert_eq!((e.runs, e.threads, e.iterations), (50, 10, 3));
        assert_eq!(e.sleep_time, Duration::from_secs(1));
        assert_eq!(e.warmup_buffer, 1);
        assert!(e.shuffle_payloads);
        assert_eq!(e.random_seed, 7);
        assert_eq!(
            e.payloads[0].body,
            br#"{"greeting":"hi","name":"Bob"}"#.to_vec(),
            "the parent's keys are merged, the payload's own win"
        );
        assert_eq!(e.payloads[0].content_type, "application/json");
        assert_eq!(e.ignored, ["callWithCLI", "outputGroups"]);
        assert_eq!(e.mode, Mode::Warm);
        assert!(!e.is_async);
    }

    #[test]
    fn our_yaml_keys_are_read() {
        let e = parse(
            "name: sweep\nfunction: [a, b]\npayloads: [text, {n: 2}, 3]\nmemorySettings: [128m, 256Mi]\n\
             cpuSettings: [0.5, 1000m]\nmode: both\nasync: true\ntimeout: 5s\nwarmup: 2\n\
             method: put\npath: /sub?x=1\nheaders: {X-Trace: '1'}\n",
        )
        .unwrap();
        assert_eq!(e.name, "sweep");
        assert_eq!(e.functions, ["a", "b"]);
        assert_eq!(e.payloads[0].body, b"text");
        assert_eq!(e.payloads[0].content_type, "text/plain");
        assert_eq!(e.payloads[2].body, b"3");
        assert_eq!(e.memory_settings[1].bytes, 256 << 20);
        assert_eq!(e.cpu_settings[1].nanos, 1_000_000_000);
        assert_eq!(e.mode.phases(), &[Phase::Cold, Phase::Warm]);
        assert!(e.is_async);
        assert_eq!(e.timeout, Duration::from_secs(5));
        assert_eq!(e.method, "PUT");
        assert_eq!(e.path, "/sub?x=1");
    }

    #[test]
    fn each_mistake_is_one_error_naming_its_field() {
        let cases = [
            ("runs: 3", "function: missing"),
            ("function: f\nthreds: 3", "unknown field `threds`"),
            ("function: f\nruns: many", "runs: "),
            ("function: f\nruns: 0", "runs: must be at least 1"),
            ("function: f\nthreads: 99999", "threads: 99999 is more than"),
            (
                "function: 'bad name'",
                "function: \"bad name\" is not a function name",
            ),
            (
                "function: f\nmemorySettings: [128m, lots]",
                "memorySettings[1]: ",
            ),
            (
                "function: f\nmemorySettings: [1m]",
                "memorySettings[0]: 1m is less than",
            ),
            ("function: f\ncpuSettings: [-1]", "cpuSettings[0]: "),
            ("function: f\nmode: tepid", "mode: "),
            ("function: f\nrate: -5", "rate: -5 is not a rate"),
            (
                "function: f\nrate: 5\nmode: cold",
                "rate: an open-loop rate needs mode: warm",
            ),
            ("function: f\ntimeout: soon", "timeout: "),
            (
                "function: f\npath: nope",
                "path: \"nope\" must start with '/'",
            ),
            (
                "function: f\niterations: 2\nwarmupBuffer: 2",
                "warmupBuffer: 2 leaves none",
            ),
            (
                "function: f\nruns: 10000000\niterations: 2",
                "the experiment makes 20000000 calls",
            ),
            ("- just\n- a list", "expected a mapping"),
        ];
        for (text, expected) in cases {
            let error = parse(text).expect_err(text);
            assert!(
                error.contains(expected),
                "{text:?}: {error:?} lacks {expected:?}"
            );
            assert!(!error.contains('\n'), "one line: {error:?}");
        }
    }
}
