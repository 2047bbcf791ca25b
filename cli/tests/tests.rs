//! Every integration test of the cli crate, in one binary (each test
//! binary links the whole crate again; on a two-core machine linking
//! dominates). Shared helpers are in `util` and the `testkit` crate.

mod async_calls;
mod auth;
mod cli;
mod deploy;
mod experiment;
mod functions;
mod invoke;
mod secrets;
mod source;
mod swarm;
mod swarm_experiment;
mod swarm_source;
mod swarm_util;
mod util;
