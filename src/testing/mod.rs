//! Tools to test outage handling, with cistern or with your own code
//! (feature `testing`): a fault-injecting [`FaultManager`] whose connects
//! and pings fail, hang or panic on command, and a manual [`Clock`](crate::Clock).
//!
//! Every fault is scripted through a handle owned by the test (no global
//! switches), so tests using them run in parallel.

mod fault;
pub mod proxy;

pub use fault::{FaultConn, FaultError, FaultManager};
