//! Any [`r2d2::ManageConnection`] as a cistern manager (feature `r2d2`):
//! `r2d2_postgres`, `r2d2_mysql`, `r2d2_sqlite`, diesel's
//! `ConnectionManager`... as long as its error is `Send + Sync`.
//!
//! ## Migrating from r2d2: one line
//!
//! ```text
//! - let pool = r2d2::Pool::builder().max_size(15).build(manager)?;
//! + let pool = cistern::Pool::builder().pool_size(15).max_overflow(0).build(cistern::r2d2::R2d2Manager::new(manager))?;
//! ```
//!
//! `pool.get()` then returns a guard that derefs to the same connection
//! type (`Pooled` instead of `r2d2::PooledConnection`), and its error is
//! [`cistern::Error`](crate::Error) instead of `r2d2::Error`.
//!
//! | r2d2 | cistern | note |
//! |---|---|---|
//! | `max_size` (10) | `pool_size` + `max_overflow` | r2d2 keeps up to `max_size` open; cistern keeps `pool_size` idle and opens `max_overflow` more under load |
//! | `min_idle` (= max_size) | `min_idle` (0) | |
//! | `connection_timeout` (30 s) | `checkout_timeout` (30 s) | |
//! | `idle_timeout` (10 min) | `idle_timeout` (none) | |
//! | `max_lifetime` (30 min) | `recycle_after` (30 min) | cistern spreads ages by up to 2.5 % |
//! | `test_on_check_out` (true) | `pre_ping` (true) | cistern skips the ping for connections returned less than `ping_bypass` (500 ms) ago, asking `has_broken` instead |
//! | `connection_customizer.on_acquire` | a manager's init, or [`Manager::init`](crate::Manager::init) in a wrapper | |
//! | `error_handler` | `log` output, `Builder::event_handler` | |
//! | `thread_pool` | none: connects run on short-lived threads | |
//!
//! ```
//! use std::convert::Infallible;
//!
//! /// An r2d2 manager (normally from a crate such as `r2d2_postgres`).
//! #[derive(Debug)]
//! struct Numbers;
//! impl r2d2::ManageConnection for Numbers {
//!     type Connection = u64;
//!     type Error = std::io::Error;
//!     fn connect(&self) -> Result<u64, std::io::Error> { Ok(7) }
//!     fn is_valid(&self, _: &mut u64) -> Result<(), std::io::Error> { Ok(()) }
//!     fn has_broken(&self, _: &mut u64) -> bool { false }
//! }
//!
//! let pool = cistern::Pool::builder()
//!     .pool_size(4)
//!     .max_overflow(0)
//!     .build(cistern::r2d2::R2d2Manager::new(Numbers))?;
//! assert_eq!(*pool.get()?, 7);
//! # Ok::<(), cistern::Error>(())
//! ```

use std::fmt;

pub use r2d2;

/// Adapts an [`r2d2::ManageConnection`]: `connect` is `connect`, `ping` is
/// `is_valid`, `is_broken` is `has_broken`.
///
/// Its `Debug` output names the wrapped manager's type only: r2d2 managers
/// often derive `Debug` over options that hold a password.
pub struct R2d2Manager<M> {
    inner: M,
}

impl<M> R2d2Manager<M> {
    /// Wraps an r2d2 manager.
    pub fn new(manager: M) -> R2d2Manager<M> {
        R2d2Manager { inner: manager }
    }

    /// The wrapped manager.
    pub fn inner(&self) -> &M {
        &self.inner
    }

    /// The wrapped manager, taken back.
    pub fn into_inner(self) -> M {
        self.inner
    }
}

impl<M> From<M> for R2d2Manager<M>
where
    M: r2d2::ManageConnection,
{
    fn from(manager: M) -> Self {
        R2d2Manager::new(manager)
    }
}

impl<M> fmt::Debug for R2d2Manager<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("R2d2Manager")
            .field("manager", &std::any::type_name::<M>())
            .finish()
    }
}

impl<M> crate::Manager for R2d2Manager<M>
where
    M: r2d2::ManageConnection,
    M::Error: Send + Sync,
{
    type Connection = M::Connection;
    type Error = M::Error;

    fn connect(&self) -> Result<M::Connection, M::Error> {
        self.inner.connect()
    }

    fn ping(&self, conn: &mut M::Connection) -> Result<(), M::Error> {
        self.inner.is_valid(conn)
    }

    fn is_broken(&self, conn: &mut M::Connection) -> bool {
        self.inner.has_broken(conn)
    }
}
