//! Every integration test of the watchdog crate, in one binary (each test
//! binary links the whole crate again; on a two-core machine linking
//! dominates). Shared helpers are in `util` and the `testkit` crate.

mod config;
mod docker;
mod fork;
mod http_mode;
mod lifecycle;
mod metrics;
mod reaper_thread;
mod stream;
mod timeouts;
mod util;
