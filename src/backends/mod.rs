//! Driver adapters: one [`Manager`](crate::Manager) per driver, each behind
//! its cargo feature.

#[cfg(feature = "mysql")]
pub mod mysql;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "r2d2")]
pub mod r2d2;
#[cfg(feature = "sqlite")]
pub mod sqlite;

/// Socket peeking shared by the network adapters.
#[cfg(any(feature = "postgres", feature = "mysql"))]
mod peek;
/// Password redaction shared by the network adapters.
#[cfg(any(feature = "postgres", feature = "mysql"))]
mod redact;
