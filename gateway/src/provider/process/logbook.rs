//! A function's recent output, kept and followed: its watchdogs' lines,
//! each cut at `log_line_bytes`.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::SystemTime;

use faas_common::api::LogEntry;
use futures_util::stream::{self, BoxStream, StreamExt};
use tokio::io::AsyncBufReadExt;
use tokio::sync::broadcast;

use crate::provider::LogQuery;

/// A function's recent output lines (its watchdogs' stdout and stderr),
/// for `/system/logs`: the last `capacity` kept, new ones broadcast to
/// followers.
pub(super) struct LogBook {
    function: String,
    capacity: usize,
    lines: Mutex<VecDeque<(SystemTime, LogEntry)>>,
    new: broadcast::Sender<LogEntry>,
}

impl LogBook {
    pub(super) fn new(function: &str, capacity: usize) -> LogBook {
        LogBook {
            function: function.to_owned(),
            capacity,
            lines: Mutex::new(VecDeque::new()),
            new: broadcast::channel(256).0,
        }
    }

    pub(super) fn write(&self, instance: &str, text: String) {
        let now = SystemTime::now();
        let entry = LogEntry {
            name: self.function.clone(),
            namespace: String::new(),
            instance: instance.to_owned(),
            timestamp: humantime::format_rfc3339_nanos(now).to_string(),
            text,
        };
        let mut lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        if self.capacity == 0 {
            lines.clear();
        } else {
            while lines.len() >= self.capacity {
                lines.pop_front();
            }
            lines.push_back((now, entry.clone()));
        }
        // Sent under the lock: a new follower sees each line exactly once.
        let _ = self.new.send(entry);
    }

    /// The kept lines the query asks for, then (when following) new ones.
    pub(super) fn read(&self, query: &LogQuery) -> BoxStream<'static, LogEntry> {
        let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        let matching: Vec<LogEntry> = lines
            .iter()
            .filter(|(at, _)| query.since.is_none_or(|since| *at >= since))
            .map(|(_, e)| e.clone())
            .collect();
        let skip = query
            .tail
            .map_or(0, |tail| matching.len().saturating_sub(tail));
        let history = stream::iter(matching.into_iter().skip(skip));
        if !query.follow {
            return history.boxed();
        }
        let receiver = self.new.subscribe();
        drop(lines);
        let live = stream::unfold(receiver, |mut receiver| async move {
            loop {
                match receiver.recv().await {
                    Ok(entry) => return Some((entry, receiver)),
                    // A slow follower misses lines rather than stalling the function.
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        history.chain(live).boxed()
    }
}

/// The next line of a function's output, at most `max` bytes of it kept
/// (the rest is read and dropped, and the line says how much): a function
/// that writes without newlines cannot grow the gateway's memory.
pub(super) async fn next_line<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> std::io::Result<Option<String>> {
    let mut kept = Vec::new();
    let mut dropped = 0usize;
    let mut any = false;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            break;
        }
        any = true;
        let (chunk, end) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..i], Some(i + 1)),
            None => (available, None),
        };
        let room = max.saturating_sub(kept.len());
        kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
        dropped += chunk.len().saturating_sub(room);
        let consumed = end.unwrap_or(chunk.len());
        reader.consume(consumed);
        if end.is_some() {
            break;
        }
    }
    if !any {
        return Ok(None);
    }
    if kept.last() == Some(&b'\r') {
        kept.pop();
    }
    let mut line = String::from_utf8_lossy(&kept).into_owned();
    if dropped > 0 {
        line.push_str(&format!(
            " [… {dropped} more bytes dropped: lines are kept up to log_line_bytes, {max}]"
        ));
    }
    Ok(Some(line))
}

#[cfg(test)]
mod tests {
    use tokio::io::BufReader;

    use super::*;

    #[tokio::test]
    async fn output_lines_are_kept_up_to_their_limit() {
        let text = format!("short\r\n{}\nlast", "x".repeat(100));
        let mut reader = BufReader::with_capacity(7, text.as_bytes());
        assert_eq!(next_line(&mut reader, 10).await.unwrap().unwrap(), "short");
        let long = next_line(&mut reader, 10).await.unwrap().unwrap();
        assert!(
            long.starts_with("xxxxxxxxxx [… 90 more bytes dropped"),
            "{long}"
        );
        assert_eq!(next_line(&mut reader, 10).await.unwrap().unwrap(), "last");
        assert_eq!(next_line(&mut reader, 10).await.unwrap(), None);
    }
}
