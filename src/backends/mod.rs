//! Driver adapters: one [`Manager`](crate::Manager) per driver, each behind
//! its cargo feature.

#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
mod init;
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

/// What replaces a secret in output (Debug, errors, logs).
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
pub(crate) const MASK: &str = "***";

/// Defaults the network adapters give every setting the URL or options left
/// unset, so that no blocking step waits without a deadline (one place, so
/// the two drivers never drift apart).
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(crate) mod net_defaults {
    use std::time::Duration;

    /// TCP connect (and, for MySQL, the handshake's reads and writes).
    pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
    /// One pre-ping round trip.
    pub(crate) const PING_TIMEOUT: Duration = Duration::from_secs(5);
    /// TCP keepalive: first probe after this long idle...
    pub(crate) const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
    /// ...then one probe this often...
    pub(crate) const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
    /// ...and the connection is dropped after this many unanswered probes.
    pub(crate) const KEEPALIVE_RETRIES: u32 = 3;
    /// TCP_USER_TIMEOUT: data sent and never acknowledged for this long.
    pub(crate) const TCP_USER_TIMEOUT: Duration = Duration::from_secs(30);
}
