//! Logging set-up for both programs: to stderr, at the level `RUST_LOG`
//! names (`error` … `trace`, default `info`), coloured only on a terminal.

use std::io::IsTerminal;

use tracing_subscriber::filter::LevelFilter;

/// Installs the global subscriber; call once, first thing in `main`.
pub fn init() {
    let level = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::INFO);
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}
