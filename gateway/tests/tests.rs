//! Every integration test of the gateway crate, in one binary (each test
//! binary links the whole crate again; on a two-core machine linking
//! dominates). Shared helpers are in `util` and the `testkit` crate.

mod api;
mod async_calls;
mod autoscaling;
mod coap;
mod forwarding;
mod grpc;
mod retry;
mod routing;
mod security;
mod swarm;
mod swarm_api;
mod swarm_async;
mod swarm_scaling;
mod swarm_util;
mod util;
