//! Helpers shared by the behaviour tests. Each `tests/*.rs` is a crate of
//! its own that includes this with `mod common;` and uses part of it.
//!
//! - waiting without hanging: [`eventually`], [`eventually_within`],
//!   [`poll_until`], [`returns_without_hanging`], [`returns_within`],
//!   [`wait_for_waiters`];
//! - errors: [`connect_error`];
//! - the accounting identity: [`assert_counters_add_up`], [`at_rest`],
//!   [`at_rest_with_db`];
//! - pools: [`sized`], [`pool`] (over the fake database), [`BuildOn`];
//! - the fake database: [`down_database`], [`calm`], and [`Gated`], a
//!   manager whose chosen connects block until the test opens the gate;
//! - panics: [`quiet_scripted_panics`], [`panic_text`];
//! - [`Rng`], [`thread_names`], [`threads_named`], and [`log_capture`] (a
//!   `log::Log` that keeps every line).

#![allow(dead_code)] // each test binary uses part of it

pub mod log_capture;

use std::any::Any;
use std::collections::HashSet;
use std::sync::{Arc, Condvar, Mutex, Once, mpsc};
use std::time::{Duration, Instant};

use cistern::testing::{FaultConn, FaultError, FaultManager};
use cistern::{Builder, Error, Manager, Pool, Stats};

// ---- waiting without hanging -------------------------------------------------

/// How long [`eventually`] waits before it fails the test.
pub const EVENTUALLY: Duration = Duration::from_secs(20);

/// Polls `cond` every 5 ms; true as soon as it holds, false once `limit`
/// has passed without it holding.
pub fn poll_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Polls `cond` until it holds; fails the test naming `what` after a
/// generous deadline ([`EVENTUALLY`]).
pub fn eventually(what: &str, cond: impl FnMut() -> bool) {
    eventually_within(what, EVENTUALLY, cond);
}

/// [`eventually`] with a deadline of `limit`.
pub fn eventually_within(what: &str, limit: Duration, cond: impl FnMut() -> bool) {
    assert!(
        poll_until(limit, cond),
        "timed out after {limit:?} waiting for: {what}"
    );
}

/// Waits (10 s at most) until at least `n` threads wait in `get()`.
pub fn wait_for_waiters<M: Manager>(p: &Pool<M>, n: usize) {
    eventually_within("waiters queued", Duration::from_secs(10), || {
        p.stats().waiting >= n
    });
}

/// Runs `f` on another thread and returns its result; fails the test if
/// none comes within `limit` (a hang or a deadlock becomes a failure, not a
/// stuck test).
pub fn returns_within<T: Send + 'static>(
    what: &str,
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("{what} hung: no result within {limit:?}"))
}

/// [`returns_within`] 10 s.
pub fn returns_without_hanging<T: Send + 'static>(
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    returns_within(what, Duration::from_secs(10), f)
}

/// The pool name, the connect failures in a row and the driver's error (as
/// text) of an `Error::Connect`; any other error fails the test.
pub fn connect_error(err: &Error) -> (&str, u64, String) {
    match err {
        Error::Connect {
            pool,
            consecutive_failures,
            source,
        } => (pool, *consecutive_failures, source.to_string()),
        other => panic!("expected Error::Connect, got {other:?}"),
    }
}

// ---- the accounting identity -------------------------------------------------

/// Every connection the pool created is open, closed or detached.
pub fn assert_counters_add_up(s: &Stats) {
    assert_eq!(
        s.created - s.closed_by.total() - s.detached,
        s.open as u64,
        "counters do not add up (created - closed - detached != open): {s:?}"
    );
}

/// At rest: the counters add up and the pool's invariants hold.
pub fn at_rest<M: Manager>(p: &Pool<M>) {
    assert_counters_add_up(&p.stats());
    p.check_invariants().unwrap();
}

/// [`at_rest`], and the fake database holds exactly the connections the pool
/// counts as open.
pub fn at_rest_with_db<M: Manager>(p: &Pool<M>, db: &FaultManager) {
    let s = p.stats();
    assert_counters_add_up(&s);
    assert_eq!(db.live(), s.open, "live connections vs open: {s:?}");
    p.check_invariants().unwrap();
}

// ---- pools over the fake database --------------------------------------------

/// A builder for `size` base connections plus `overflow`.
pub fn sized<M>(size: usize, overflow: usize) -> Builder<M> {
    Builder::new().pool_size(size).max_overflow(overflow)
}

/// The plain pool of these tests: `size` + `overflow` connections and a
/// 10 s checkout timeout.
pub fn pool(db: &FaultManager, size: usize, overflow: usize) -> Pool<FaultManager> {
    sized(size, overflow)
        .checkout_timeout(Duration::from_secs(10))
        .build_on(db)
}

/// A pool with `settings` over a new fake database, on a manual clock.
pub fn on_manual_clock(
    settings: Builder<FaultManager>,
) -> (FaultManager, cistern::Clock, Pool<FaultManager>) {
    let db = FaultManager::new();
    let clock = cistern::Clock::manual();
    let p = settings.clock(clock.clone()).build_on(&db);
    (db, clock, p)
}

/// Builds a pool over a clone of the manager (the test keeps its own handle
/// to script faults and count connections).
pub trait BuildOn<M: Manager> {
    /// `build(manager.clone())`, which must succeed.
    fn build_on(self, manager: &M) -> Pool<M>;
}

impl<M: Manager + Clone> BuildOn<M> for Builder<M> {
    fn build_on(self, manager: &M) -> Pool<M> {
        self.build(manager.clone()).unwrap()
    }
}

/// A fake database that is down: it refuses every connect until
/// `refuse_connects(false)`.
pub fn down_database() -> FaultManager {
    let db = FaultManager::new();
    db.refuse_connects(true);
    db
}

/// Undoes every fault scripted on `db`.
pub fn calm(db: &FaultManager) {
    db.refuse_connects(false);
    db.release();
    db.connect_delay(Duration::ZERO);
    db.fail_next_connects(0);
    db.fail_next_pings(0);
    db.fail_next_inits(0);
    db.fail_next_checkins(0);
    db.panic_next_connects(0);
    db.panic_next_pings(0);
    db.panic_next_is_broken(0);
}

// ---- a manager whose connects wait for the test ------------------------------

/// A manager whose chosen connect attempts (1-based) block until
/// [`Gated::open`] (or 60 s at most); the other attempts, and pings, go
/// straight to the wrapped [`FaultManager`].
#[derive(Clone)]
pub struct Gated {
    db: FaultManager,
    gate: Arc<Gate>,
}

struct Gate {
    state: Mutex<GateState>,
    opened: Condvar,
}

struct GateState {
    attempts: u64,
    blocked: HashSet<u64>,
    open: bool,
}

impl Gated {
    /// Blocks attempts `blocked` of connects to `db`.
    pub fn new(db: &FaultManager, blocked: &[u64]) -> Gated {
        Gated {
            db: db.clone(),
            gate: Arc::new(Gate {
                state: Mutex::new(GateState {
                    attempts: 0,
                    blocked: blocked.iter().copied().collect(),
                    open: false,
                }),
                opened: Condvar::new(),
            }),
        }
    }

    /// Lets the blocked attempts go on, and every later one through.
    pub fn open(&self) {
        self.gate.state.lock().unwrap().open = true;
        self.gate.opened.notify_all();
    }

    /// Connect attempts so far.
    pub fn attempts(&self) -> u64 {
        self.gate.state.lock().unwrap().attempts
    }
}

impl Manager for Gated {
    type Connection = FaultConn;
    type Error = FaultError;

    fn connect(&self) -> Result<FaultConn, FaultError> {
        let mut st = self.gate.state.lock().unwrap();
        st.attempts += 1;
        if st.blocked.contains(&st.attempts) {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !st.open && Instant::now() < deadline {
                st = self
                    .gate
                    .opened
                    .wait_timeout(st, Duration::from_millis(100))
                    .unwrap()
                    .0;
            }
        }
        drop(st);
        self.db.connect()
    }

    fn ping(&self, conn: &mut FaultConn) -> Result<(), FaultError> {
        self.db.ping(conn)
    }
}

// ---- panics ------------------------------------------------------------------

/// The message of a panic payload (`&str` or `String`; empty otherwise).
pub fn panic_text(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

/// Keeps the panics a test raises on purpose (their message contains
/// "scripted panic") out of the output; every other panic prints as usual.
pub fn quiet_scripted_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !panic_text(info.payload()).contains("scripted panic") {
                default(info);
            }
        }));
    });
}

// ---- randomness and threads ----------------------------------------------------

/// xorshift64*: a small reproducible generator per thread.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// True with probability `percent` %.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// Up to `max` milliseconds, in whole microseconds.
    pub fn millis(&mut self, max: u64) -> Duration {
        Duration::from_micros(self.below(max * 1000 + 1))
    }
}

/// Names of this process's threads (`/proc/self/task/*/comm`: at most 15
/// bytes, so pool names in tests that look for their threads are at most 7
/// bytes). A new thread shows its parent's name until it runs, so callers
/// poll.
pub fn thread_names() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task (Linux)")
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .map(|s| s.trim_end().to_owned())
        .collect()
}

/// How many of this process's threads are named `name`.
pub fn threads_named(name: &str) -> usize {
    thread_names().iter().filter(|n| *n == name).count()
}
