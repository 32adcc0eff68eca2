//! # cistern
//!
//! A thread-safe, **blocking** connection pool for blocking database drivers
//! (`rusqlite`, `postgres`, `mysql`, and any `r2d2` manager), for plain
//! (non-async) server code: thread-per-request HTTP servers, workers, CLIs.
//!
//! ```
//! # #[cfg(feature = "sqlite")] {
//! use std::time::Duration;
//! use cistern::{Pool, sqlite::SqliteManager};
//!
//! let pool = Pool::builder()
//!     .name("app")
//!     .pool_size(4)
//!     .max_overflow(4)
//!     .checkout_timeout(Duration::from_secs(5))
//!     .build(SqliteManager::memory("crate_docs"))?;
//!
//! let conn = pool.get()?; // a guard: derefs to rusqlite::Connection
//! conn.execute_batch("CREATE TABLE IF NOT EXISTS t (x INTEGER)").unwrap();
//! drop(conn); // back to the pool
//! println!("{:?}", pool.stats());
//! # }
//! # Ok::<(), cistern::Error>(())
//! ```
//!
//! ## Semantics
//!
//! - **Size: base plus overflow.** Up to `pool_size` idle connections are
//!   kept; under load up to `max_overflow` more are opened. A connection
//!   returned while `pool_size` are already idle is closed; one returned while
//!   fewer are idle is kept, so steady load above `pool_size` keeps its
//!   overflow open. Never more than `pool_size + max_overflow` are open.
//! - **Checkout.** `get()` takes the newest idle connection. When none is
//!   idle it waits, first come first served, up to `checkout_timeout`; a
//!   connection returned meanwhile goes to the oldest waiter, and a new one
//!   is opened in the background if there is room. Threads arriving later
//!   may take an idle connection ahead of a waiter only while that waiter has
//!   waited less than `barging_window` (1 ms), and one thread only
//!   `barging_limit` (100) times in a row before it queues itself:
//!   throughput under saturation, without starvation, and turns shared
//!   evenly. `max_waiting` bounds the queue.
//! - **Per-thread fast path.** A connection returned while nobody waits (and
//!   with no shortage in the last 100 ms) is parked for the returning
//!   thread, whose next `get()` takes it back without the pool's lock. It is
//!   still idle: the first thread that finds nothing else idle, or has to
//!   wait (and every maintenance round, and `stats()`), moves every parked
//!   connection back to the shared store and parking stops until 100 ms
//!   pass without a shortage, so waiters are served first come first served.
//! - **The timeout error explains itself:** how long it waited, the pool's
//!   state, the last connect error when connects fail, and the longest-held
//!   checkouts with their call sites.
//! - **Pre-ping.** A connection is pinged before it is handed out unless it
//!   was returned less than `ping_bypass` (500 ms) ago; inside that window the
//!   no-I/O `Manager::is_broken` check still runs (the adapters peek at the
//!   socket: a connection the server closed is never handed out). A failed
//!   ping closes the connection, marks every older one for a ping, and the
//!   checkout goes on within the same deadline.
//! - **Recycle and idle timeout.** Connections older than `recycle_after`
//!   (30 min, spread by up to 2.5 % per connection) are closed on return or
//!   while idle, never while checked out; with `idle_timeout`, idle
//!   connections above `min_idle` are closed after that long.
//! - **Returns.** Dropping the guard returns the connection, or closes it if
//!   it was marked broken, `is_broken` says so, it is over age, the pool is
//!   closed, or its thread is panicking (it may be mid-transaction).
//! - **Connects** run on short-lived background threads, never under the
//!   lock; failures back off exponentially with jitter (0.5 s, x2, 30 s cap)
//!   and the pool keeps trying while there is demand.
//! - **Leaks.** Every checkout records its time, thread and the call site of
//!   `get()` (`#[track_caller]`); with `leak_threshold` set (10 s by default
//!   in debug builds) guards held longer are reported once with a backtrace
//!   (debug builds). [`Pool::holders`] lists the current holders.
//! - **Background work** runs on one thread per pool, plus connect threads
//!   only while connecting. Dropping the last `Pool` handle closes the pool
//!   (each thread keeps a reference to the pool it used last, so that
//!   checkouts write nothing shared: a closed pool's settings and manager,
//!   never a connection, stay allocated until those threads exit or use
//!   another pool).
//!
//! ## Features
//!
//! | feature | default | adds |
//! |---|---|---|
//! | `sqlite` | yes | [`sqlite::SqliteManager`] (rusqlite, bundled SQLite) |
//! | `postgres` | no | `postgres::PostgresManager` |
//! | `mysql` | no | `mysql::MysqlManager` |
//! | `r2d2` | no | `r2d2::R2d2Manager`: any `r2d2::ManageConnection` |
//! | `serde` | no | `Serialize` for stats, health and holders |
//! | `testing` | no | `testing::FaultManager`, `testing::FaultProxy` (TCP fault proxy), manual clock |

// Unsafe code is denied everywhere; the one exception is allowed on the
// smallest item that needs it (the MySQL adapter borrowing its connection's
// socket descriptor, `backends::mysql::socket`), with a SAFETY comment.
#![deny(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]

mod barging;
mod clock;
mod config;
mod connector;
mod entry;
mod env;
mod error;
mod events;
mod guard;
mod health;
mod idle;
mod leak;
#[cfg(all(test, loom))]
mod loom_model;
mod maintenance;
mod manager;
mod pool;
mod prometheus;
mod slots;
mod stats;
mod sync;

pub mod backends;
#[cfg(feature = "testing")]
pub mod testing;

#[cfg(feature = "mysql")]
pub use backends::mysql;
#[cfg(feature = "postgres")]
pub use backends::postgres;
#[cfg(feature = "r2d2")]
pub use backends::r2d2;
#[cfg(feature = "sqlite")]
pub use backends::sqlite;

pub use clock::Clock;
pub use config::{Builder, Config, WarmUp};
pub use env::parse_duration;
pub use error::{Error, PoolState, SharedError};
pub use events::EventHandler;
pub use guard::Pooled;
pub use health::{ConfigSummary, Health, HealthStatus, Recommendation};
pub use leak::{Holder, backtraces_captured};
pub use manager::Manager;
pub use pool::Pool;
pub use prometheus::prometheus_text;
pub use stats::{CloseReason, ClosedCounts, HeldStats, Stats, WAIT_BUCKETS, WaitStats};

use std::time::{Duration, Instant};

/// A duration for messages: `850µs`, `12.5ms`, `3.20s`, `2m 5s`.
pub(crate) fn fmt_duration(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if d < Duration::from_millis(1) {
        format!("{}µs", d.as_micros())
    } else if d < Duration::from_secs(1) {
        format!("{:.1}ms", secs * 1e3)
    } else if d < Duration::from_secs(120) {
        format!("{secs:.2}s")
    } else {
        humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
    }
}

/// The longest duration any setting accepts: 100 years of 365.25 days (what
/// humantime means by `100y`). Far beyond any sane setting, and it fits in
/// deadlines and in nanosecond ticks (u64 nanoseconds last 584 years).
pub(crate) const MAX_SETTING: Duration = Duration::from_secs(3_155_760_000);

/// `start + timeout`, or a century from `start` when that overflows.
pub(crate) fn deadline(start: Instant, timeout: Duration) -> Instant {
    start
        .checked_add(timeout)
        .or_else(|| start.checked_add(MAX_SETTING))
        .unwrap_or(start)
}
