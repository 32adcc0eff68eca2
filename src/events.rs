//! Event hooks, for observing a pool (metrics, tracing). Work on connections
//! belongs to the [`Manager`](crate::Manager) instead.
//!
//! The pool calls a handler outside its lock, on the thread where the event
//! happened. A panicking handler is caught and logged; the pool carries on.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use crate::stats::CloseReason;

/// Observes a pool. Every method has a no-op default; implement the ones you
/// need.
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use std::time::Duration;
///
/// #[derive(Default)]
/// struct SlowCheckouts(AtomicU64);
///
/// impl cistern::EventHandler for SlowCheckouts {
///     fn on_checkout(&self, _pool: &str, _conn: u64, waited: Duration) {
///         if waited > Duration::from_millis(100) {
///             self.0.fetch_add(1, Ordering::Relaxed);
///         }
///     }
/// }
/// ```
pub trait EventHandler: Send + Sync + 'static {
    /// A connection was opened, taking `took`.
    fn on_connect(&self, pool: &str, conn: u64, took: Duration) {
        let _ = (pool, conn, took);
    }
    /// A connect attempt failed.
    fn on_connect_error(&self, pool: &str, error: &(dyn std::error::Error + 'static)) {
        let _ = (pool, error);
    }
    /// A connection was handed out after waiting `waited`.
    fn on_checkout(&self, pool: &str, conn: u64, waited: Duration) {
        let _ = (pool, conn, waited);
    }
    /// A connection came back after being held `held`.
    fn on_checkin(&self, pool: &str, conn: u64, held: Duration) {
        let _ = (pool, conn, held);
    }
    /// A `get()` timed out after waiting `waited`.
    fn on_timeout(&self, pool: &str, waited: Duration) {
        let _ = (pool, waited);
    }
    /// A connection was closed for `reason`.
    fn on_close(&self, pool: &str, conn: u64, reason: CloseReason) {
        let _ = (pool, conn, reason);
    }
    /// A guard has been held longer than the leak threshold.
    fn on_leak(&self, pool: &str, conn: u64, held: Duration) {
        let _ = (pool, conn, held);
    }
}

/// Calls a handler, containing a panic.
pub(crate) fn emit(pool: &str, what: &str, f: impl FnOnce()) {
    if catch_unwind(AssertUnwindSafe(f)).is_err() {
        log::error!("pool '{pool}': event handler panicked in {what}; ignored");
    }
}
