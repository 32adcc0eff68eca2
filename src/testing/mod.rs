//! Tools to test outage handling, with cistern or with your own code
//! (feature `testing`):
//!
//! - [`FaultManager`]: a fake [`Manager`](crate::Manager) whose connects and
//!   pings fail, hang or panic on command, and whose "server" can kill
//!   connections;
//! - [`FaultProxy`]: a TCP proxy on loopback in front of a real database that
//!   cuts every connection at once, blackholes new or established ones, and
//!   heals;
//! - a manual [`Clock`](crate::Clock) (`Clock::manual()`), so recycle, idle
//!   timeout, ping bypass and leak rules run without sleeping.
//!
//! Every fault is scripted through a handle owned by the test (no global
//! switches), so tests using them run in parallel. No other pool among r2d2,
//! bb8, deadpool or HikariCP ships such tools.

mod fault;
pub mod proxy;

pub use fault::{FaultConn, FaultError, FaultManager};
pub use proxy::FaultProxy;
