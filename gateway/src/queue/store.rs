//! The durable side of async calls: an embedded redb database holding each
//! call's request, its execution record and, once finished, its output.
//!
//! Durability argument: a call is answered 202 only after the transaction
//! that inserted it has committed with `Durability::Immediate` (fsynced).
//! Every later change of state (running, finished, retry) is its own
//! committed transaction, made before the step it records is acted upon
//! (a call is marked running, durably, before it is sent). So after a crash
//! the database shows each call queued, running or finished; `open` turns
//! running ones back to queued, and they run again: at least once, never
//! lost.
//!
//! Writes go through one writer thread that commits whatever has arrived
//! together in one transaction (group commit): one fsync serves many
//! concurrent enqueues. Reads use redb's MVCC read transactions beside it.
//! An in-memory index of queued calls (due time, arrival order) is rebuilt
//! at open and kept in step with every commit.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use faas_common::api::{CallFigures, CallbackRecord, Execution, ExecutionStatus};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

const RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("records");
const REQUESTS: TableDefinition<&str, &[u8]> = TableDefinition::new("requests");
const OUTPUTS: TableDefinition<&str, &[u8]> = TableDefinition::new("outputs");
/// Records that could not be read at open, kept as they were (never run,
/// never deleted) for a person to look at.
const QUARANTINE: TableDefinition<&str, &[u8]> = TableDefinition::new("quarantine");
/// Most operations one group commit takes.
const GROUP_MAX: usize = 512;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the async queue's database: {0}")]
    Db(String),
    #[error("the async queue's writer has stopped")]
    Stopped,
    #[error("execution {0:?} not found")]
    NotFound(String),
    #[error("execution id {0:?} is taken")]
    Taken(String),
}

fn db<E: std::fmt::Display>(e: E) -> StoreError {
    StoreError::Db(e.to_string())
}

/// A call as it arrived, kept whole until it has run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredRequest {
    pub method: String,
    /// What the function sees: the path after its name, and the query.
    pub path: String,
    pub headers: Vec<(String, String)>,
    #[serde(skip)]
    pub body: Bytes,
}

impl StoredRequest {
    /// `[head length: u32 LE][head JSON][body]`.
    fn encode(&self) -> Vec<u8> {
        let head = serde_json::to_vec(self).expect("plain strings serialize");
        let mut out = Vec::with_capacity(4 + head.len() + self.body.len());
        out.extend_from_slice(&(head.len() as u32).to_le_bytes());
        out.extend_from_slice(&head);
        out.extend_from_slice(&self.body);
        out
    }

    fn decode(bytes: &[u8]) -> Result<StoredRequest, StoreError> {
        let len = bytes
            .get(..4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or_else(|| db("a stored request is truncated"))?;
        let head = bytes
            .get(4..4 + len)
            .ok_or_else(|| db("a stored request is truncated"))?;
        let mut request: StoredRequest = serde_json::from_slice(head).map_err(db)?;
        request.body = Bytes::copy_from_slice(&bytes[4 + len..]);
        Ok(request)
    }
}

/// A finished call's response body, as kept.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub content_type: String,
    pub body: Bytes,
    pub truncated: bool,
}

impl Output {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(2 + self.content_type.len() + self.body.len());
        out.push(u8::from(self.truncated));
        out.extend_from_slice(self.content_type.as_bytes());
        out.push(b'\n');
        out.extend_from_slice(&self.body);
        out
    }

    fn decode(bytes: &[u8]) -> Option<Output> {
        let (&flag, rest) = bytes.split_first()?;
        let newline = rest.iter().position(|&b| b == b'\n')?;
        Some(Output {
            truncated: flag == 1,
            content_type: String::from_utf8_lossy(&rest[..newline]).into_owned(),
            body: Bytes::copy_from_slice(&rest[newline + 1..]),
        })
    }
}

/// What is stored per call: the public record plus the queue's own fields.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    #[serde(flatten)]
    execution: Execution,
    /// Arrival order, unique.
    seq: u64,
    /// Not to be run before (ms since the epoch): retries wait here.
    due_ms: u64,
    /// When it reached a final state (ms), for the retention purge.
    #[serde(default)]
    finished_ms: Option<u64>,
}

fn ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// A call to queue.
pub struct NewCall {
    pub id: String,
    pub function: String,
    pub request: StoredRequest,
    pub callback_url: Option<String>,
}

/// How a delivery attempt ended.
pub enum Outcome {
    /// Final: succeeded (2xx), failed (another answer) or dead (retries spent).
    Finished {
        status: ExecutionStatus,
        status_code: Option<u16>,
        duration: Duration,
        error: Option<String>,
        output: Option<Output>,
        figures: Option<CallFigures>,
    },
    /// Back to the queue until `due`.
    Retry {
        due: SystemTime,
        status_code: Option<u16>,
        error: String,
    },
}

/// `GET /system/executions` filters.
#[derive(Debug, Default, Clone)]
pub struct ListFilter {
    pub function: Option<String>,
    pub status: Option<ExecutionStatus>,
    pub include_completed: bool,
}

/// The queued calls, by (due time, arrival): what the dispatcher reads.
#[derive(Default)]
struct Index {
    queued: BTreeMap<(u64, u64), (String, String)>,
    depth: HashMap<String, u64>,
    next_seq: u64,
}

impl Index {
    fn add(&mut self, record: &Record) {
        let e = &record.execution;
        self.queued.insert(
            (record.due_ms, record.seq),
            (e.id.clone(), e.function.clone()),
        );
        *self.depth.entry(e.function.clone()).or_default() += 1;
    }

    fn remove(&mut self, key: (u64, u64)) -> Option<(String, String)> {
        let (id, function) = self.queued.remove(&key)?;
        if let Some(d) = self.depth.get_mut(&function) {
            *d = d.saturating_sub(1);
        }
        Some((id, function))
    }
}

type Op = Box<dyn FnOnce(&WriteTransaction) -> Result<Box<dyn FnOnce() + Send>, StoreError> + Send>;

struct Job {
    op: Op,
    done: oneshot::Sender<Result<(), StoreError>>,
}

pub struct Store {
    db: Arc<Database>,
    /// The last write's failure, until a write succeeds again: a full disk
    /// or an I/O error (after which redb refuses every write until the
    /// database is opened again, which a restart does).
    failure: Arc<Mutex<Option<String>>>,
    writer: Mutex<Option<mpsc::Sender<Job>>>,
    index: Arc<Mutex<Index>>,
    /// Finished calls whose callback was still pending when the previous
    /// gateway stopped.
    unsent_callbacks: Mutex<Vec<Execution>>,
}

impl Store {
    /// Opens (or creates) the database at `path`; calls left running by a
    /// previous gateway go back to the queue, and callbacks it left
    /// undelivered are kept for [`Store::take_unsent_callbacks`].
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| db(format!("cannot create {}: {e}", dir.display())))?;
        }
        private_file(path).map_err(|e| db(format!("cannot open {}: {e}", path.display())))?;
        let database = Database::create(path)
            .map_err(|e| db(format!("cannot open {}: {e}", path.display())))?;
        let mut index = Index::default();
        let mut unsent = Vec::new();
        let txn = database.begin_write().map_err(db)?;
        {
            let mut records = txn.open_table(RECORDS).map_err(db)?;
            txn.open_table(REQUESTS).map_err(db)?;
            txn.open_table(OUTPUTS).map_err(db)?;
            let mut quarantine = txn.open_table(QUARANTINE).map_err(db)?;
            let mut requeued = Vec::new();
            let mut unreadable: Vec<(String, Vec<u8>, String)> = Vec::new();
            for entry in records.iter().map_err(db)? {
                let (key, value) = entry.map_err(db)?;
                let mut record: Record = match serde_json::from_slice(value.value()) {
                    Ok(record) => record,
                    Err(e) => {
                        unreadable.push((
                            key.value().to_owned(),
                            value.value().to_vec(),
                            e.to_string(),
                        ));
                        continue;
                    }
                };
                index.next_seq = index.next_seq.max(record.seq + 1);
                match record.execution.status {
                    ExecutionStatus::Queued => index.add(&record),
                    ExecutionStatus::Running => {
                        record.execution.status = ExecutionStatus::Queued;
                        record.due_ms = 0;
                        index.add(&record);
                        requeued.push(record);
                    }
                    _ if record
                        .execution
                        .callback
                        .as_ref()
                        .is_some_and(|c| c.status == "pending") =>
                    {
                        unsent.push(record.execution);
                    }
                    _ => {}
                }
            }
            for record in &requeued {
                let bytes = serde_json::to_vec(record).map_err(db)?;
                records
                    .insert(record.execution.id.as_str(), bytes.as_slice())
                    .map_err(db)?;
            }
            if !requeued.is_empty() {
                tracing::warn!(
                    calls = requeued.len(),
                    "async calls were running when the gateway stopped: queued again"
                );
            }
            // One bad record must not keep every other call from running.
            for (id, bytes, error) in unreadable {
                tracing::error!(call_id = %id, %error, "an async call's record cannot be read: moved to the quarantine table, not run");
                quarantine
                    .insert(id.as_str(), bytes.as_slice())
                    .map_err(db)?;
                records.remove(id.as_str()).map_err(db)?;
            }
        }
        txn.commit().map_err(db)?;
        let db = Arc::new(database);
        let (tx, rx) = mpsc::channel::<Job>();
        let writer_db = db.clone();
        let failure = Arc::new(Mutex::new(None));
        let writer_failure = failure.clone();
        std::thread::Builder::new()
            .name("queue-writer".into())
            .spawn(move || write_loop(&writer_db, &rx, &writer_failure))
            .map_err(db_err_io)?;
        Ok(Store {
            db,
            failure,
            writer: Mutex::new(Some(tx)),
            index: Arc::new(Mutex::new(index)),
            unsent_callbacks: Mutex::new(unsent),
        })
    }

    /// `Err` with the reason while writes fail (for `/healthz`).
    pub fn health(&self) -> Result<(), String> {
        match &*self.failure.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Calls queued now (waiting or retrying), over all functions.
    pub fn queued(&self) -> u64 {
        self.index
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .depth
            .values()
            .sum()
    }

    /// The finished calls whose callback the previous gateway did not
    /// deliver (once: later calls get nothing).
    pub fn take_unsent_callbacks(&self) -> Vec<Execution> {
        std::mem::take(
            &mut *self
                .unsent_callbacks
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        )
    }

    /// Runs `op` in the next group commit; returns once it is durable.
    async fn write<F>(&self, op: F) -> Result<(), StoreError>
    where
        F: FnOnce(&WriteTransaction) -> Result<Box<dyn FnOnce() + Send>, StoreError>
            + Send
            + 'static,
    {
        let (done, result) = oneshot::channel();
        let sender = self
            .writer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or(StoreError::Stopped)?;
        sender
            .send(Job {
                op: Box::new(op),
                done,
            })
            .map_err(|_| StoreError::Stopped)?;
        result.await.map_err(|_| StoreError::Stopped)?
    }

    /// Whether an execution with this id exists.
    pub fn contains(&self, id: &str) -> Result<bool, StoreError> {
        let txn = self.db.begin_read().map_err(db)?;
        let records = txn.open_table(RECORDS).map_err(db)?;
        Ok(records.get(id).map_err(db)?.is_some())
    }

    /// Queues calls durably, in order; their records as stored. An id
    /// already stored (a concurrent call given the same `X-Call-Id`)
    /// refuses them all with [`StoreError::Taken`]: nothing accepted is
    /// overwritten.
    pub async fn enqueue(&self, calls: Vec<NewCall>) -> Result<Vec<Execution>, StoreError> {
        let now = SystemTime::now();
        let records: Vec<(Record, Vec<u8>)> = {
            let mut index = self.index.lock().unwrap_or_else(|e| e.into_inner());
            calls
                .into_iter()
                .map(|call| {
                    let seq = index.next_seq;
                    index.next_seq += 1;
                    let record = Record {
                        execution: Execution {
                            id: call.id,
                            function: call.function,
                            status: ExecutionStatus::Queued,
                            created_at: timestamp(now),
                            started_at: None,
                            finished_at: None,
                            attempts: 0,
                            status_code: None,
                            duration_seconds: None,
                            error: None,
                            figures: None,
                            callback: call.callback_url.map(|url| CallbackRecord {
                                url,
                                status: "pending".into(),
                                ..Default::default()
                            }),
                        },
                        seq,
                        due_ms: 0,
                        finished_ms: None,
                    };
                    (record, call.request.encode())
                })
                .collect()
        };
        let executions = records.iter().map(|(r, _)| r.execution.clone()).collect();
        let index = self.index.clone();
        self.write(move |txn| {
            let mut table = txn.open_table(RECORDS).map_err(db)?;
            let mut requests = txn.open_table(REQUESTS).map_err(db)?;
            for (record, _) in &records {
                let id = record.execution.id.as_str();
                if table.get(id).map_err(db)?.is_some() {
                    return Err(StoreError::Taken(id.to_owned()));
                }
            }
            for (record, request) in &records {
                let id = record.execution.id.as_str();
                let bytes = serde_json::to_vec(record).map_err(db)?;
                table.insert(id, bytes.as_slice()).map_err(db)?;
                requests.insert(id, request.as_slice()).map_err(db)?;
            }
            Ok(Box::new(move || {
                let mut index = index.lock().unwrap_or_else(|e| e.into_inner());
                for (record, _) in &records {
                    index.add(record);
                }
            }))
        })
        .await?;
        Ok(executions)
    }

    /// Takes the queued calls that are due, oldest first, for which
    /// `admit(function)` says yes (and counts them in); they leave the
    /// index at once so nothing takes them twice. The next due time of what
    /// stays (for the dispatcher's sleep), if any.
    pub fn take_due(
        &self,
        now: SystemTime,
        mut admit: impl FnMut(&str) -> bool,
    ) -> (Vec<(String, String)>, Option<SystemTime>) {
        let now_ms = ms(now);
        let mut index = self.index.lock().unwrap_or_else(|e| e.into_inner());
        let mut taken = Vec::new();
        let mut keys = Vec::new();
        let mut next = None;
        // Asked once per function and pass once it says no: a deep backlog
        // of a busy function costs a hash lookup per call, not a label read.
        let mut full: std::collections::HashSet<&str> = std::collections::HashSet::new();
        for (&(due, seq), (_, function)) in index.queued.iter() {
            if due > now_ms {
                next = Some(UNIX_EPOCH + Duration::from_millis(due));
                break;
            }
            if full.contains(function.as_str()) {
                continue;
            }
            if admit(function) {
                keys.push((due, seq));
            } else {
                full.insert(function.as_str());
            }
        }
        for key in keys {
            if let Some(entry) = index.remove(key) {
                taken.push(entry);
            }
        }
        (taken, next)
    }

    /// Puts a taken call back in the index (due in a second) after a write
    /// about it failed, so it is not stranded until the next start.
    pub fn restore(&self, id: &str) {
        let record = (|| -> Result<Option<Record>, StoreError> {
            let txn = self.db.begin_read().map_err(db)?;
            let records = txn.open_table(RECORDS).map_err(db)?;
            let value = records.get(id).map_err(db)?;
            value
                .map(|v| serde_json::from_slice::<Record>(v.value()).map_err(db))
                .transpose()
        })();
        match record {
            Ok(Some(mut record)) if !record.execution.status.is_final() => {
                record.due_ms = ms(SystemTime::now() + Duration::from_secs(1));
                self.index
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .add(&record);
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!(call_id = %id, error = %e, "cannot put an async call back in the queue; it runs at the next start");
            }
        }
    }

    /// Queued calls per function.
    pub fn depth(&self) -> HashMap<String, u64> {
        self.index
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .depth
            .clone()
    }

    /// Marks a taken call running (durably) and returns its record and request.
    pub async fn start(&self, id: &str) -> Result<(Execution, StoredRequest), StoreError> {
        let id = id.to_owned();
        let (tx, rx) = std::sync::mpsc::channel();
        self.write(move |txn| {
            let mut records = txn.open_table(RECORDS).map_err(db)?;
            let requests = txn.open_table(REQUESTS).map_err(db)?;
            let mut record = read_record(&records, &id)?;
            let request = requests
                .get(id.as_str())
                .map_err(db)?
                .ok_or_else(|| StoreError::NotFound(id.clone()))
                .and_then(|v| StoredRequest::decode(v.value()))?;
            record.execution.status = ExecutionStatus::Running;
            record.execution.attempts += 1;
            record.execution.started_at = Some(timestamp(SystemTime::now()));
            let bytes = serde_json::to_vec(&record).map_err(db)?;
            records.insert(id.as_str(), bytes.as_slice()).map_err(db)?;
            let _ = tx.send((record.execution, request));
            Ok(Box::new(|| {}))
        })
        .await?;
        rx.try_recv().map_err(|_| db("the writer lost a result"))
    }

    /// Records how an attempt ended: finished (with its output), or queued
    /// again until its retry is due.
    pub async fn finish(&self, id: &str, outcome: Outcome) -> Result<Execution, StoreError> {
        let id = id.to_owned();
        let index = self.index.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        self.write(move |txn| {
            let mut records = txn.open_table(RECORDS).map_err(db)?;
            let mut record = read_record(&records, &id)?;
            let now = SystemTime::now();
            let requeue = match outcome {
                Outcome::Finished {
                    status,
                    status_code,
                    duration,
                    error,
                    output,
                    figures,
                } => {
                    let e = &mut record.execution;
                    e.status = status;
                    e.status_code = status_code;
                    e.duration_seconds = Some(duration.as_secs_f64());
                    e.figures = figures;
                    e.error = error;
                    e.finished_at = Some(timestamp(now));
                    record.finished_ms = Some(ms(now));
                    let mut outputs = txn.open_table(OUTPUTS).map_err(db)?;
                    if let Some(output) = output {
                        outputs
                            .insert(id.as_str(), output.encode().as_slice())
                            .map_err(db)?;
                    }
                    // The request has served its purpose.
                    txn.open_table(REQUESTS)
                        .map_err(db)?
                        .remove(id.as_str())
                        .map_err(db)?;
                    false
                }
                Outcome::Retry {
                    due,
                    status_code,
                    error,
                } => {
                    let e = &mut record.execution;
                    e.status = ExecutionStatus::Queued;
                    e.status_code = status_code;
                    e.error = Some(error);
                    record.due_ms = ms(due);
                    true
                }
            };
            let bytes = serde_json::to_vec(&record).map_err(db)?;
            records.insert(id.as_str(), bytes.as_slice()).map_err(db)?;
            let _ = tx.send(record.execution.clone());
            Ok(Box::new(move || {
                if requeue {
                    index.lock().unwrap_or_else(|e| e.into_inner()).add(&record);
                }
            }))
        })
        .await?;
        rx.try_recv().map_err(|_| db("the writer lost a result"))
    }

    /// Records a callback's delivery state.
    pub async fn set_callback(&self, id: &str, callback: CallbackRecord) -> Result<(), StoreError> {
        let id = id.to_owned();
        self.write(move |txn| {
            let mut records = txn.open_table(RECORDS).map_err(db)?;
            let mut record = read_record(&records, &id)?;
            record.execution.callback = Some(callback);
            let bytes = serde_json::to_vec(&record).map_err(db)?;
            records.insert(id.as_str(), bytes.as_slice()).map_err(db)?;
            Ok(Box::new(|| {}))
        })
        .await
    }

    pub fn get(&self, id: &str) -> Result<Option<Execution>, StoreError> {
        let txn = self.db.begin_read().map_err(db)?;
        let records = txn.open_table(RECORDS).map_err(db)?;
        match records.get(id).map_err(db)? {
            Some(v) => Ok(Some(
                serde_json::from_slice::<Record>(v.value())
                    .map_err(db)?
                    .execution,
            )),
            None => Ok(None),
        }
    }

    pub fn output(&self, id: &str) -> Result<Option<Output>, StoreError> {
        let txn = self.db.begin_read().map_err(db)?;
        let outputs = txn.open_table(OUTPUTS).map_err(db)?;
        Ok(outputs
            .get(id)
            .map_err(db)?
            .and_then(|v| Output::decode(v.value())))
    }

    /// Matching records, oldest first.
    pub fn list(&self, filter: &ListFilter) -> Result<Vec<Execution>, StoreError> {
        let txn = self.db.begin_read().map_err(db)?;
        let records = txn.open_table(RECORDS).map_err(db)?;
        let mut found: Vec<(u64, Execution)> = Vec::new();
        for entry in records.iter().map_err(db)? {
            let (_, value) = entry.map_err(db)?;
            let record: Record = serde_json::from_slice(value.value()).map_err(db)?;
            let e = &record.execution;
            let completed = !matches!(e.status, ExecutionStatus::Queued | ExecutionStatus::Running);
            if filter.function.as_ref().is_some_and(|f| *f != e.function)
                || filter.status.is_some_and(|s| s != e.status)
                || (completed && !filter.include_completed && filter.status.is_none())
            {
                continue;
            }
            found.push((record.seq, record.execution));
        }
        found.sort_by_key(|(seq, _)| *seq);
        Ok(found.into_iter().map(|(_, e)| e).collect())
    }

    /// Forgets finished calls that finished before `before`; how many.
    pub async fn purge(&self, before: SystemTime) -> Result<usize, StoreError> {
        let before_ms = ms(before);
        let old: Vec<String> = {
            let txn = self.db.begin_read().map_err(db)?;
            let records = txn.open_table(RECORDS).map_err(db)?;
            let mut old = Vec::new();
            for entry in records.iter().map_err(db)? {
                let (key, value) = entry.map_err(db)?;
                let record: Record = serde_json::from_slice(value.value()).map_err(db)?;
                if record.finished_ms.is_some_and(|f| f < before_ms) {
                    old.push(key.value().to_owned());
                }
            }
            old
        };
        let count = old.len();
        if count > 0 {
            self.write(move |txn| {
                let mut records = txn.open_table(RECORDS).map_err(db)?;
                let mut outputs = txn.open_table(OUTPUTS).map_err(db)?;
                let mut requests = txn.open_table(REQUESTS).map_err(db)?;
                for id in &old {
                    records.remove(id.as_str()).map_err(db)?;
                    outputs.remove(id.as_str()).map_err(db)?;
                    requests.remove(id.as_str()).map_err(db)?;
                }
                Ok(Box::new(|| {}))
            })
            .await?;
        }
        Ok(count)
    }

    /// Stops the writer once what it has is committed.
    pub fn close(&self) {
        self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

/// Creates `path` readable by its owner only (an existing file is made
/// so): calls' bodies, headers and outputs are nobody else's business.
fn private_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

fn db_err_io(e: std::io::Error) -> StoreError {
    db(format!("cannot start the queue's writer thread: {e}"))
}

fn read_record(records: &redb::Table<&str, &[u8]>, id: &str) -> Result<Record, StoreError> {
    let value = records
        .get(id)
        .map_err(db)?
        .ok_or_else(|| StoreError::NotFound(id.to_owned()))?;
    serde_json::from_slice(value.value()).map_err(db)
}

/// The writer: takes every job waiting, runs them in one transaction,
/// commits once (fsync), then applies their in-memory effects and answers.
fn write_loop(db_: &Database, rx: &mpsc::Receiver<Job>, failure: &Mutex<Option<String>>) {
    let failed = |message: &str| {
        let mut failure = failure.lock().unwrap_or_else(|e| e.into_inner());
        if failure.is_none() {
            tracing::error!(error = %message, "the async queue cannot write: async calls are refused (503) and /healthz reports it");
        }
        *failure = Some(message.to_owned());
    };
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < GROUP_MAX {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let txn = match db_.begin_write() {
            Ok(txn) => txn,
            Err(e) => {
                let message = e.to_string();
                failed(&message);
                for job in jobs {
                    let _ = job.done.send(Err(StoreError::Db(message.clone())));
                }
                continue;
            }
        };
        let mut results = Vec::with_capacity(jobs.len());
        for job in jobs {
            let result = (job.op)(&txn);
            results.push((job.done, result));
        }
        match txn.commit() {
            Ok(()) => {
                if failure
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take()
                    .is_some()
                {
                    tracing::info!("the async queue writes again");
                }
                for (done, result) in results {
                    let _ = done.send(result.map(|apply| apply()));
                }
            }
            Err(e) => {
                let message = e.to_string();
                failed(&message);
                for (done, _) in results {
                    let _ = done.send(Err(StoreError::Db(message.clone())));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The durability promise, piece by piece, on a real database file.

    use super::*;
    use std::time::Instant;

    fn call(id: &str, function: &str, callback: Option<&str>) -> NewCall {
        NewCall {
            id: id.to_owned(),
            function: function.to_owned(),
            request: StoredRequest {
                method: "POST".into(),
                path: "/p?q=1".into(),
                headers: vec![("x-call-id".into(), id.into())],
                body: Bytes::from_static(b"body\n\x00\xff"),
            },
            callback_url: callback.map(str::to_owned),
        }
    }

    fn finished(output: &str) -> Outcome {
        Outcome::Finished {
            status: ExecutionStatus::Succeeded,
            status_code: Some(200),
            duration: Duration::from_millis(5),
            error: None,
            output: Some(Output {
                content_type: "text/plain".into(),
                body: Bytes::from(output.to_owned()),
                truncated: false,
            }),
            figures: Some(CallFigures {
                function_seconds: Some(0.004),
                cold_start: true,
                ..Default::default()
            }),
        }
    }

    /// Opens `path` again once the previous store's writer has let go of it.
    fn reopen(path: &Path) -> Store {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match Store::open(path) {
                Ok(store) => return store,
                // The old writer thread still holds the file for a moment.
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("cannot reopen: {e}"),
            }
        }
    }

    fn take_all(store: &Store) -> Vec<String> {
        store
            .take_due(SystemTime::now(), |_| true)
            .0
            .into_iter()
            .map(|(id, _)| id)
            .collect()
    }

    #[test]
    fn requests_and_outputs_round_trip_their_encoding() {
        let request = call("a", "f", None).request;
        assert_eq!(StoredRequest::decode(&request.encode()).unwrap(), request);
        let empty = StoredRequest {
            body: Bytes::new(),
            ..request.clone()
        };
        assert_eq!(StoredRequest::decode(&empty.encode()).unwrap(), empty);
        let bytes = request.encode();
        for cut in [0, 3, 10] {
            assert!(StoredRequest::decode(&bytes[..cut]).is_err(), "{cut}");
        }
        let output = Output {
            content_type: "application/json; charset=utf-8".into(),
            body: Bytes::from_static(b"line\nline\n"),
            truncated: true,
        };
        assert_eq!(Output::decode(&output.encode()), Some(output));
        assert_eq!(Output::decode(b""), None);
    }

    #[tokio::test]
    async fn queued_calls_are_taken_once_in_arrival_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("q.redb")).unwrap();
        store
            .enqueue(vec![call("a", "f", None), call("b", "g", None)])
            .await
            .unwrap();
        store.enqueue(vec![call("c", "f", None)]).await.unwrap();
        assert_eq!(store.queued(), 3);
        assert_eq!(store.depth().get("f"), Some(&2));
        // A function that says no keeps its calls; the others are taken.
        let (taken, _) = store.take_due(SystemTime::now(), |f| f == "f");
        let ids: Vec<&str> = taken.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["a", "c"]);
        assert_eq!(take_all(&store), ["b"]);
        assert!(take_all(&store).is_empty(), "nothing is taken twice");
        assert_eq!(store.queued(), 0);
    }

    #[tokio::test]
    async fn a_taken_id_refuses_the_whole_batch() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("q.redb")).unwrap();
        store.enqueue(vec![call("x", "f", None)]).await.unwrap();
        let err = store
            .enqueue(vec![call("z", "f", None), call("x", "f", None)])
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::Taken(ref id) if id == "x"),
            "{err}"
        );
        assert!(!store.contains("z").unwrap(), "half a batch was stored");
        assert_eq!(store.queued(), 1);
    }

    #[tokio::test]
    async fn concurrent_enqueues_all_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("q.redb")).unwrap());
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..64 {
            let store = store.clone();
            tasks
                .spawn(async move { store.enqueue(vec![call(&format!("c{n}"), "f", None)]).await });
        }
        while let Some(result) = tasks.join_next().await {
            result.unwrap().unwrap();
        }
        assert_eq!(store.queued(), 64);
        assert_eq!(
            store
                .list(&ListFilter {
                    include_completed: true,
                    ..Default::default()
                })
                .unwrap()
                .len(),
            64
        );
    }

    #[tokio::test]
    async fn a_retry_waits_until_it_is_due() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("q.redb")).unwrap();
        store.enqueue(vec![call("r", "f", None)]).await.unwrap();
        assert_eq!(take_all(&store), ["r"]);
        store.start("r").await.unwrap();
        let due = SystemTime::now() + Duration::from_secs(3600);
        let record = store
            .finish(
                "r",
                Outcome::Retry {
                    due,
                    status_code: Some(503),
                    error: "busy".into(),
                },
            )
            .await
            .unwrap();
        assert_eq!(record.status, ExecutionStatus::Queued);
        let (taken, next) = store.take_due(SystemTime::now(), |_| true);
        assert!(taken.is_empty());
        let next = next.expect("a due time");
        assert!(next.duration_since(due).unwrap_or_default() < Duration::from_millis(2));
        let (taken, _) = store.take_due(due + Duration::from_secs(1), |_| true);
        assert_eq!(taken.len(), 1);
    }

    /// A crash leaves calls running and callbacks pending: the next open
    /// queues the running ones again (attempts kept) and hands back the
    /// pending callbacks; finished calls keep their output.
    #[tokio::test]
    async fn reopening_requeues_running_calls_and_returns_pending_callbacks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.redb");
        {
            let store = Store::open(&path).unwrap();
            store
                .enqueue(vec![
                    call("running", "f", None),
                    call("done", "f", Some("http://example.com/hook")),
                    call("waiting", "f", None),
                ])
                .await
                .unwrap();
            let (taken, _) = store.take_due(SystemTime::now(), |_| true);
            assert_eq!(taken.len(), 3);
            store.start("running").await.unwrap();
            store.start("done").await.unwrap();
            store.finish("done", finished("out")).await.unwrap();
            store.close();
        }
        let store = reopen(&path);
        let done = store.get("done").unwrap().unwrap();
        let figures = done.figures.expect("the replica's figures are kept");
        assert_eq!(figures.function_seconds, Some(0.004));
        assert!(figures.cold_start);
        let mut queued = take_all(&store);
        queued.sort();
        assert_eq!(queued, ["running", "waiting"]);
        let running = store.get("running").unwrap().unwrap();
        assert_eq!(running.status, ExecutionStatus::Queued);
        assert_eq!(running.attempts, 1, "the interrupted attempt is counted");
        let unsent = store.take_unsent_callbacks();
        assert_eq!(unsent.len(), 1);
        assert_eq!(unsent[0].id, "done");
        assert!(store.take_unsent_callbacks().is_empty(), "handed back once");
        assert_eq!(&store.output("done").unwrap().unwrap().body[..], b"out");
        let (_, request) = store.start("waiting").await.unwrap();
        assert_eq!(request, call("waiting", "f", None).request);
    }

    #[tokio::test]
    async fn purge_removes_only_finished_records_past_the_cutoff() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("q.redb")).unwrap();
        store
            .enqueue(vec![call("old", "f", None), call("pending", "f", None)])
            .await
            .unwrap();
        take_all(&store);
        store.start("old").await.unwrap();
        store.finish("old", finished("x")).await.unwrap();
        assert_eq!(
            store
                .purge(SystemTime::now() - Duration::from_secs(60))
                .await
                .unwrap(),
            0
        );
        assert_eq!(
            store
                .purge(SystemTime::now() + Duration::from_secs(1))
                .await
                .unwrap(),
            1
        );
        assert!(store.get("old").unwrap().is_none());
        assert!(store.output("old").unwrap().is_none());
        assert!(
            store.get("pending").unwrap().is_some(),
            "unfinished records stay"
        );
    }

    #[test]
    fn the_database_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.redb");
        std::fs::write(&path, b"").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let store = Store::open(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(store.health().is_ok());
    }
}
