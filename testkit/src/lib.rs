//! What the integration tests of every faas crate share, so each helper
//! exists once: HTTP/1.1 to a real server ([`http`]), waiting on a
//! condition instead of sleeping ([`wait`]), starting a real binary and
//! waiting until it listens ([`proc`]), finding a sibling crate's binary
//! ([`bin`]), Docker and the Swarm stack of `./build.sh up` ([`swarm`]),
//! and function sources more than one crate's tests run ([`fixtures`]).

pub mod bin;
pub mod fixtures;
pub mod http;
pub mod proc;
pub mod swarm;
pub mod wait;
