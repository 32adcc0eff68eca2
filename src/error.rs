//! The one error type of the crate.
//!
//! Every variant carries the numbers a caller needs to act on it, and its
//! message says what happened, what was expected and what to do.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// A driver's error, shared so that one failed connect can be reported to
/// every waiter it disappointed.
pub type SharedError = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// The pool's state at the moment an error was raised: what a timeout message
/// quotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolState {
    /// Connections checked out (including ones being validated).
    pub in_use: usize,
    /// Connections idle in the pool.
    pub idle: usize,
    /// Connections open (`in_use + idle`).
    pub open: usize,
    /// Connect attempts in flight.
    pub opening: usize,
    /// Threads waiting in `get()`.
    pub waiting: usize,
    /// The `pool_size` setting.
    pub pool_size: usize,
    /// The `max_overflow` setting.
    pub max_overflow: usize,
}

impl fmt::Display for PoolState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "in use {}/{} (pool_size {} + max_overflow {}), idle {}, open {}, connecting {}, waiting {}",
            self.in_use,
            self.pool_size + self.max_overflow,
            self.pool_size,
            self.max_overflow,
            self.idle,
            self.open,
            self.opening,
            self.waiting
        )
    }
}

/// Everything that can go wrong in cistern. Match on the variant; print it
/// for a message that explains itself.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Error {
    /// `get()` waited its whole checkout timeout without getting a connection.
    Timeout {
        /// The pool's `name`.
        pool: String,
        /// How long the caller waited.
        waited: Duration,
        /// The pool's state when the wait ended.
        state: Box<PoolState>,
        /// The last connect error, when connects were failing.
        last_connect_error: Option<SharedError>,
        /// A short summary of the longest-held checkouts (age, thread, call
        /// site), empty when nothing was checked out.
        holders: String,
    },
    /// The pool was closed (by `close()` or by dropping its last handle).
    Closed {
        /// The pool's `name`.
        pool: String,
    },
    /// `max_waiting` threads were already waiting: back-pressure, try later.
    QueueFull {
        /// The pool's `name`.
        pool: String,
        /// The `max_waiting` setting.
        max_waiting: usize,
        /// The pool's state.
        state: Box<PoolState>,
    },
    /// A setting has a value that cannot work.
    Config {
        /// The setting's name (a builder method or an environment variable).
        setting: String,
        /// The value given, as text.
        value: String,
        /// What is allowed.
        expected: String,
    },
    /// Opening a connection failed (at build time with a required warm-up,
    /// or at checkout while the database is known to be down).
    Connect {
        /// The pool's `name`.
        pool: String,
        /// How many connects in a row have failed.
        consecutive_failures: u64,
        /// The driver's error.
        source: SharedError,
    },
}

impl Error {
    pub(crate) fn config(
        setting: impl Into<String>,
        value: impl fmt::Display,
        expected: impl Into<String>,
    ) -> Error {
        Error::Config {
            setting: setting.into(),
            value: value.to_string(),
            expected: expected.into(),
        }
    }

    /// True for [`Error::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout { .. })
    }

    /// True for [`Error::Closed`].
    pub fn is_closed(&self) -> bool {
        matches!(self, Error::Closed { .. })
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Timeout {
                pool,
                waited,
                state,
                last_connect_error,
                holders,
            } => {
                write!(
                    f,
                    "pool '{pool}': no connection became available within {} ({state})",
                    crate::fmt_duration(*waited)
                )?;
                if let Some(e) = last_connect_error {
                    write!(f, "; connects are failing, last error: {}", Chain(&**e))?;
                }
                if !holders.is_empty() {
                    write!(f, "; longest held: {holders}")?;
                }
                write!(
                    f,
                    ". Expected a connection within checkout_timeout: raise checkout_timeout, \
                     pool_size or max_overflow, or find the code holding connections (Pool::holders)"
                )
            }
            Error::Closed { pool } => write!(
                f,
                "pool '{pool}' is closed: no new checkouts are possible; build a new pool"
            ),
            Error::QueueFull {
                pool,
                max_waiting,
                state,
            } => write!(
                f,
                "pool '{pool}': {max_waiting} threads are already waiting (max_waiting = {max_waiting}), \
                 refusing to queue another ({state}); retry later or raise max_waiting"
            ),
            Error::Config {
                setting,
                value,
                expected,
            } => write!(
                f,
                "invalid setting {setting} = {value:?}: expected {expected}"
            ),
            Error::Connect {
                pool,
                consecutive_failures,
                source,
            } => write!(
                f,
                "pool '{pool}': could not open a connection ({consecutive_failures} failed in a row): {}; \
                 check that the database is up and the connection settings are right",
                Chain(&**source)
            ),
        }
    }
}

/// Displays an error followed by its sources (`db error: FATAL: too many
/// connections for role "app"`): some drivers (`postgres`) keep the
/// server's message in `source()` only. A source whose text the message
/// already contains is not repeated.
pub(crate) struct Chain<'a>(pub(crate) &'a (dyn std::error::Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = self.0.to_string();
        let mut next = self.0.source();
        while let Some(e) = next {
            let more = e.to_string();
            if !text.contains(&more) {
                text.push_str(": ");
                text.push_str(&more);
            }
            next = e.source();
        }
        f.write_str(&text)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Timeout {
                last_connect_error: Some(e),
                ..
            } => Some(&**e),
            Error::Connect { source, .. } => Some(&**source),
            _ => None,
        }
    }
}
