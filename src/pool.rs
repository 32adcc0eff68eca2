//! The [`Pool`] handle and the checkout rules.
//!
//! Checkout, in order: take back the connection this thread parked last, if
//! it is still parked (`slots.rs`); else take the newest idle connection
//! (unless the oldest waiter has been passed over for longer than
//! `barging_window`, or this thread has passed waiters `barging_limit` times
//! in a row), or a connection parked for a thread (`Slots::steal`); otherwise
//! queue as a waiter (FIFO) and ask for a connect; a returned or newly opened
//! connection is handed to the oldest waiter. Before handing a connection
//! out, ping it (outside `ping_bypass`) or at least ask `is_broken`; a
//! connection that fails is closed and the checkout goes on within the same
//! deadline.

use std::panic::{AssertUnwindSafe, Location, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::sync::{Condvar, Mutex, MutexGuard};

use crate::barging;
use crate::clock::Tick;
use crate::config::{Builder, Config, WarmUp};
use crate::entry::{Entry, PingRules};
use crate::error::{Error, PoolState};
use crate::events::emit;
use crate::guard::Pooled;
use crate::idle::{Closing, Poll, State};
use crate::leak::{self, Checkout, Holder};
use crate::maintenance;
use crate::manager::Manager;
use crate::slots::{Slots, Taken, local};
use crate::stats::{self, CloseReason, Stats};

/// Who checks out: the thread's tag, the call site of `get()`, and the
/// backtrace when `leak_backtraces` is on (captured once per checkout).
type Who<'a> = (
    u64,
    &'static Location<'static>,
    &'a Option<Arc<std::backtrace::Backtrace>>,
);

/// The holder record of a checkout of `meta`'s connection taken at `taken`.
#[inline]
fn checkout_record(who: Who<'_>, meta: &crate::entry::Meta, taken: Tick) -> Checkout {
    let (thread, site, backtrace) = who;
    Checkout {
        conn_id: meta.id,
        taken,
        thread,
        site,
        backtrace: backtrace.clone(),
        reported: false,
    }
}

/// What the fast path found in the thread's cell.
enum Parked<M: Manager> {
    /// A validated connection, handed out.
    Out(Pooled<M>),
    /// Nothing to take (or over age: it stays parked until a steal, a
    /// settle or a maintenance round closes it).
    None,
    /// A connection that failed its validation (closed).
    Failed,
}

/// What every handle, guard and background thread of one pool shares.
pub(crate) struct Shared<M: Manager> {
    pub(crate) config: Config,
    pub(crate) manager: M,
    pub(crate) state: Mutex<State<M::Connection>>,
    /// One cell per slot: parked connections, holder records, tallies
    /// (`slots.rs`). Locked after `state`, never before.
    pub(crate) slots: Slots<M::Connection>,
    /// Unique in the process (what threads remember of a pool names it).
    pub(crate) id: u64,
    /// `State::closed`, readable without the lock (set with it held): a
    /// guard returned to a closed pool does not keep it in its thread's
    /// memory (`slots::local`).
    pub(crate) closed: AtomicBool,
    /// A ping failed at this [`Tick`]: connections last validated before it
    /// are pinged on their next checkout. Only grows; written under `state`'s
    /// lock, read by checkouts without it.
    pub(crate) suspect_before: AtomicU64,
    /// Signalled (with `state`'s lock) when a connect finishes, when the
    /// pool closes and when a connection leaves a closed pool: warm-up,
    /// `close_timeout` and connect threads in backoff wait on it.
    pub(crate) changed: Condvar,
    /// Wakes the maintenance thread (which holds only a `Weak`).
    pub(crate) wake: crossbeam_channel::Sender<()>,
}

/// A connection pool: a cheap, cloneable, thread-safe handle.
///
/// When the last `Pool` handle is dropped the pool is closed: idle
/// connections are closed at once, checked-out ones when their guards drop,
/// and the background thread stops.
///
/// ```
/// # #[cfg(feature = "sqlite")] {
/// use cistern::{Pool, sqlite::SqliteManager};
///
/// let pool = Pool::new(SqliteManager::memory("doc_pool"))?;
/// let conn = pool.get()?;
/// let one: i64 = conn.query_row("SELECT 1", [], |r| r.get(0)).unwrap();
/// assert_eq!(one, 1);
/// # }
/// # Ok::<(), cistern::Error>(())
/// ```
pub struct Pool<M: Manager> {
    handle: Arc<Handle<M>>,
}

/// Closes the pool when the last `Pool` clone goes away (guards keep only
/// `Shared` alive).
struct Handle<M: Manager> {
    shared: Arc<Shared<M>>,
}

impl<M: Manager> Drop for Handle<M> {
    fn drop(&mut self) {
        self.shared.close();
        // The last handle is gone: this thread need not keep the pool's
        // state allocated (`slots::local`).
        local::forget(self.shared.id);
    }
}

impl<M: Manager> Clone for Pool<M> {
    fn clone(&self) -> Self {
        Pool {
            handle: Arc::clone(&self.handle),
        }
    }
}

impl<M: Manager> std::fmt::Debug for Pool<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("name", &self.shared().config.name)
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl<M: Manager> Pool<M> {
    /// A pool with every default setting (see [`Builder`]).
    pub fn new(manager: M) -> Result<Pool<M>, Error> {
        Builder::new().build(manager)
    }

    /// A builder to choose settings.
    pub fn builder() -> Builder<M> {
        Builder::new()
    }

    pub(crate) fn start(config: Config, manager: M) -> Result<Pool<M>, Error> {
        let max_open = config.max_open();
        let (wake, woken) = crossbeam_channel::bounded(1);
        static NEXT_POOL: AtomicU64 = AtomicU64::new(1);
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new(max_open)),
            slots: Slots::new(max_open),
            id: NEXT_POOL.fetch_add(1, Ordering::Relaxed),
            closed: AtomicBool::new(false),
            suspect_before: AtomicU64::new(0),
            config,
            manager,
            changed: Condvar::new(),
            wake,
        });
        maintenance::start(&shared, woken)?;
        let pool = Pool {
            handle: Arc::new(Handle { shared }),
        };
        pool.warm_up()?;
        Ok(pool)
    }

    fn warm_up(&self) -> Result<(), Error> {
        let shared = self.shared();
        let cfg = &shared.config;
        if cfg.min_idle == 0 {
            return Ok(());
        }
        shared.request_connects();
        if cfg.warm_up != WarmUp::Required {
            return Ok(());
        }
        let deadline = Instant::now() + cfg.checkout_timeout;
        let mut st = shared.state.lock();
        loop {
            if st.open >= cfg.min_idle {
                return Ok(());
            }
            if let (true, Some(e)) = (st.connect.failures > 0, st.connect.last_error.clone()) {
                let failures = st.connect.failures;
                drop(st);
                shared.close();
                return Err(Error::Connect {
                    pool: cfg.name.clone(),
                    consecutive_failures: failures,
                    source: e,
                });
            }
            if Instant::now() >= deadline {
                drop(st);
                shared.close();
                return Err(Error::Connect {
                    pool: cfg.name.clone(),
                    consecutive_failures: 0,
                    source: Arc::new(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!(
                            "min_idle = {} connections were not opened within {}",
                            cfg.min_idle,
                            crate::fmt_duration(cfg.checkout_timeout)
                        ),
                    )),
                });
            }
            shared.changed.wait_until(&mut st, deadline);
        }
    }

    pub(crate) fn shared(&self) -> &Arc<Shared<M>> {
        &self.handle.shared
    }

    /// Checks out a connection, waiting up to `checkout_timeout`.
    ///
    /// Fails with [`Error::Timeout`] (its message names the longest holders),
    /// [`Error::Closed`], [`Error::QueueFull`] (with `max_waiting`), or
    /// [`Error::Connect`] (with `fail_fast_when_down`).
    #[track_caller]
    #[inline]
    pub fn get(&self) -> Result<Pooled<M>, Error> {
        let site = Location::caller();
        let shared = self.shared();
        shared.checkout(shared.config.checkout_timeout, site, true)
    }

    /// Like [`Pool::get`] with another timeout. Zero never waits.
    #[track_caller]
    #[inline]
    pub fn get_timeout(&self, timeout: Duration) -> Result<Pooled<M>, Error> {
        let site = Location::caller();
        self.shared().checkout(timeout, site, true)
    }

    /// Hands out an idle connection if one is ready; never waits, never
    /// connects (it still validates per `pre_ping`).
    #[track_caller]
    #[inline]
    pub fn try_get(&self) -> Option<Pooled<M>> {
        let site = Location::caller();
        self.shared().checkout(Duration::ZERO, site, false).ok()
    }

    /// A snapshot of sizes and counters.
    pub fn stats(&self) -> Stats {
        self.shared().stats()
    }

    /// The pool's state in brief (no counters).
    pub fn state(&self) -> PoolState {
        let shared = self.shared();
        let mut st = shared.state.lock();
        shared.slots.settle(&mut st);
        st.snapshot(&shared.config)
    }

    /// Current checkouts, oldest first: how long, which thread, which call
    /// site, and the backtrace when `leak_backtraces` is on.
    pub fn holders(&self) -> Vec<Holder> {
        let shared = self.shared();
        let now = shared.config.clock.now();
        leak::holders(&shared.slots.holders(), now)
    }

    /// The validated settings.
    pub fn config(&self) -> &Config {
        &self.shared().config
    }

    /// The manager.
    pub fn manager(&self) -> &M {
        &self.shared().manager
    }

    /// Closes the pool: new checkouts fail with [`Error::Closed`], waiting
    /// ones wake with it, idle connections close now, checked-out ones when
    /// returned.
    pub fn close(&self) {
        self.shared().close();
    }

    /// [`Pool::close`], then waits up to `timeout` for checked-out
    /// connections to come back. Returns how many are still out.
    pub fn close_timeout(&self, timeout: Duration) -> usize {
        let shared = self.shared();
        shared.close();
        let deadline = crate::deadline(Instant::now(), timeout);
        let mut st = shared.state.lock();
        while st.open > 0 && Instant::now() < deadline {
            shared.changed.wait_until(&mut st, deadline);
        }
        st.open
    }

    /// Whether the pool has been closed.
    pub fn is_closed(&self) -> bool {
        self.shared().state.lock().closed
    }

    /// Retires every connection (e.g. for a planned failover): idle ones
    /// close now, checked-out ones when returned; new ones replace them.
    pub fn retire_all(&self) {
        let shared = self.shared();
        let closing: Closing<M::Connection> = {
            let mut st = shared.state.lock();
            shared.slots.settle(&mut st);
            st.generation += 1;
            let idle = std::mem::take(&mut st.idle);
            idle.into_iter()
                .map(|e| {
                    st.forget(&e.meta, CloseReason::Retired);
                    (e, CloseReason::Retired)
                })
                .collect()
        };
        shared.finish(closing);
        shared.request_connects();
    }

    /// Checks the pool's internal invariants; for tests.
    #[doc(hidden)]
    pub fn check_invariants(&self) -> Result<(), String> {
        let shared = self.shared();
        let mut st = shared.state.lock();
        st.check_invariants(&shared.config)?;
        shared.slots.settle(&mut st);
        st.check_invariants(&shared.config)?;
        shared.slots.check_invariants(&st)
    }
}

impl<M: Manager> Shared<M> {
    #[inline]
    fn ping_rules(&self) -> PingRules {
        PingRules {
            pre_ping: self.config.pre_ping,
            bypass: self.config.ping_bypass,
            suspect_before: Tick(self.suspect_before.load(Ordering::Acquire)),
        }
    }

    /// A checkout: the fast path (the connection this thread parked last,
    /// taken back from its cell without the pool's lock, see `slots.rs`),
    /// else the slow one. Small and inlined, so the guard is built in the
    /// caller's frame.
    #[inline]
    pub(crate) fn checkout(
        self: &Arc<Self>,
        timeout: Duration,
        site: &'static Location<'static>,
        may_wait: bool,
    ) -> Result<Pooled<M>, Error> {
        let backtrace = self.config.leak_backtraces.then(leak::capture);
        let thread = leak::thread_tag();
        let who = (thread, site, &backtrace);
        let retry = match local::slot(self.id) {
            Some(slot) => match self.checkout_parked(slot, who) {
                Parked::Out(guard) => return Ok(guard),
                Parked::None => false,
                Parked::Failed => true,
            },
            None => false,
        };
        self.checkout_slow(timeout, who, may_wait, retry)
    }

    /// The fast path: takes the connection parked in `slot` and validates it.
    #[inline]
    fn checkout_parked(self: &Arc<Self>, slot: u32, who: Who<'_>) -> Parked<M> {
        let now = self.config.clock.now();
        let rules = self.ping_rules();
        let Some(Taken { entry, ping }) = self
            .slots
            .try_take(slot, now, &rules, |meta| checkout_record(who, meta, now))
        else {
            return Parked::None;
        };
        match self.validate(entry, ping, now, None) {
            Some(entry) => Parked::Out(self.hand_out(entry, now, None)),
            None => Parked::Failed,
        }
    }

    /// The slow path: the shared idle store (or a steal), else a wait.
    /// `retry`: a parked connection failed its validation just now (the
    /// deadline starts now).
    #[inline(never)]
    fn checkout_slow(
        self: &Arc<Self>,
        timeout: Duration,
        who: Who<'_>,
        may_wait: bool,
        retry: bool,
    ) -> Result<Pooled<M>, Error> {
        let thread = who.0;
        // Set when the checkout first has to wait (or retry after a failed
        // validation): the fast paths read no precise clock.
        let mut started: Option<Instant> = retry.then(Instant::now);
        loop {
            let now = self.config.clock.now();
            // Read outside the lock (see `State::may_barge`).
            let precise = Instant::now();
            let mut closing = Vec::new();
            let mut st = self.state.lock();
            if st.closed {
                drop(st);
                local::forget(self.id);
                return Err(self.closed_error());
            }
            // After a failed validation (`started` is set), a checkout that
            // is past its deadline stops here instead of validating yet
            // another idle connection: with a stalled network each failed
            // ping costs a whole ping timeout. (A zero timeout keeps trying
            // the idle connections, as `try_get` always has.)
            if let Some(start) = started {
                if !timeout.is_zero() && start.elapsed() >= timeout {
                    st.counters.timeouts += 1;
                    let err = self.timeout_error(&st, start.elapsed());
                    drop(st);
                    self.finish(closing);
                    return Err(err);
                }
            }
            let mut idle = None;
            // Taking an idle connection now overtakes these waiters; a
            // checkout that never waits is not held back (barging.rs), nor is
            // one the full queue would turn away.
            let alone = st.waiters.is_empty();
            let overtaking =
                !alone && may_wait && !timeout.is_zero() && st.queue_full(&self.config).is_none();
            if st.may_barge(self.config.barging_window, precise)
                && (!overtaking || barging::may_overtake(self.id, self.config.barging_limit))
            {
                idle = st.pop_idle(now, &mut closing);
                // The shared store is empty: this thread's own parked
                // connection, else every parked one back to the shared store
                // (`Slots::steal`). Either is a shortage. When this finds
                // nothing, no slot is pinned any more: the settle also
                // reached cells busy at the time, so a checkout that will not
                // wait has seen every parked connection before it gives up.
                if idle.is_none() && !st.pinned.is_empty() {
                    st.last_shortage = Some(now);
                }
                while idle.is_none() && self.slots.steal(&mut st, thread) {
                    idle = st.pop_idle(now, &mut closing);
                }
            }
            if idle.is_some() {
                if overtaking {
                    barging::overtook(self.id);
                } else if alone {
                    barging::run_over(self.id);
                }
            }
            let (entry, waited) = match idle {
                Some(e) => (e, None),
                None => {
                    let start = *started.get_or_insert(precise);
                    let end = crate::deadline(start, timeout);
                    match self.wait(&mut st, end, timeout, may_wait, &mut closing) {
                        Ok(e) => {
                            barging::run_over(self.id);
                            (e, Some(start.elapsed()))
                        }
                        Err(err) => {
                            drop(st);
                            self.finish(closing);
                            return Err(err);
                        }
                    }
                }
            };
            // After a wait, `now` is from before it: read the clock again so
            // the hold time (and leak tracking) starts at hand-out and the
            // ping rules see the real idle time. Slow path only.
            let now = if waited.is_some() {
                self.config.clock.now()
            } else {
                now
            };
            let ping = entry.meta.needs_ping(now, &self.ping_rules());
            // A wait is recorded with its checkout, so the histogram counts
            // checkouts only (a pinged one counts once its ping passed).
            if !ping {
                st.counters.count_checkout(waited);
            }
            drop(st);
            // The checkout record, in the connection's cell: outside the
            // pool's lock, which every slow checkout and return queues on.
            self.slots
                .hold(entry.meta.slot, checkout_record(who, &entry.meta, now));
            if !closing.is_empty() {
                self.finish(closing);
            }
            if ping {
                // A ping is a round trip anyway: start the deadline before
                // it, so a failed one counts against the same deadline.
                started.get_or_insert_with(Instant::now);
            }
            if let Some(entry) = self.validate(entry, ping, now, waited) {
                return Ok(self.hand_out(entry, now, waited));
            }
            started.get_or_insert_with(Instant::now);
        }
    }

    /// The guard for a validated connection (and the checkout event).
    #[inline(always)]
    fn hand_out(
        self: &Arc<Self>,
        entry: Entry<M::Connection>,
        now: Tick,
        waited: Option<Duration>,
    ) -> Pooled<M> {
        if let Some(events) = &self.config.events {
            let waited = waited.unwrap_or_default();
            emit(&self.config.name, "on_checkout", || {
                events.on_checkout(&self.config.name, entry.meta.id, waited)
            });
        }
        // This thread's reference to the pool if it keeps one: no write to
        // the reference count every thread shares.
        let home = local::take::<Self>(self.id).unwrap_or_else(|| Arc::clone(self));
        Pooled::new(home, entry, now)
    }

    /// The slow path: queue as a waiter until a connection is handed over,
    /// the deadline passes, or the pool closes. Called and returns with the
    /// lock held (it is released while parked and while spawning threads).
    fn wait(
        self: &Arc<Self>,
        st: &mut MutexGuard<'_, State<M::Connection>>,
        deadline: Instant,
        timeout: Duration,
        may_wait: bool,
        closing: &mut Closing<M::Connection>,
    ) -> Result<Entry<M::Connection>, Error> {
        let cfg = &self.config;
        // Exact figures for the errors below, and no connection parked while
        // a thread waits: those out with their guards now come back through
        // the locked return, to the oldest waiter.
        self.slots.settle(st);
        if !may_wait || timeout.is_zero() {
            // try_get's miss is not a timeout: it never asked to wait.
            if may_wait {
                st.counters.timeouts += 1;
            }
            return Err(self.timeout_error(st, Duration::ZERO));
        }
        // Only while the backoff delay runs: once it is over, this checkout
        // waits like any other and its demand starts the next attempt.
        // Failing fast for good would leave the pool with no demand, so it
        // would never retry and never recover after the outage.
        if cfg.fail_fast_when_down
            && st.known_down()
            && st.opening == 0
            && st.connect.retry_at.is_some_and(|at| Instant::now() < at)
        {
            if let Some(source) = st.connect.last_error.clone() {
                return Err(Error::Connect {
                    pool: cfg.name.clone(),
                    consecutive_failures: st.connect.failures,
                    source,
                });
            }
        }
        if let Some(max) = st.queue_full(cfg) {
            st.counters.queue_full += 1;
            return Err(Error::QueueFull {
                pool: cfg.name.clone(),
                max_waiting: max,
                state: Box::new(st.snapshot(cfg)),
            });
        }
        st.last_shortage = Some(cfg.clock.now());
        let me = st.enqueue(Instant::now());
        // A thread past its barging limit queues while a connection is idle:
        // the oldest waiter (told already, or now) takes it.
        st.wake_front();
        let id = me.id;
        loop {
            let spawn = st.plan_connect_threads(cfg);
            if spawn > 0 {
                MutexGuard::unlocked(st, || self.spawn_connectors(spawn));
            }
            match st.poll_waiter(&me, cfg.clock.now(), closing) {
                Poll::Ready(e) => return Ok(e),
                Poll::Closed => return Err(self.closed_error()),
                Poll::Pending => {}
            }
            let now = Instant::now();
            if now >= deadline {
                // Still under the lock that saw Pending: no hand-off can
                // slip in between, so leaving the queue loses nothing.
                st.cancel_waiter(id);
                st.counters.timeouts += 1;
                // `waiting` in the message counts the others still queued.
                let err = self.timeout_error(st, me.since.elapsed());
                if let Some(events) = &cfg.events {
                    let waited = me.since.elapsed();
                    MutexGuard::unlocked(st, || {
                        emit(&cfg.name, "on_timeout", || {
                            events.on_timeout(&cfg.name, waited)
                        })
                    });
                }
                log::warn!("{err}");
                return Err(err);
            }
            st.reap_hung_attempts(cfg, now);
            me.cv.wait_until(st, deadline);
            st.woke(id);
        }
    }

    fn timeout_error(&self, st: &State<M::Connection>, waited: Duration) -> Error {
        let now = self.config.clock.now();
        Error::Timeout {
            pool: self.config.name.clone(),
            waited,
            state: Box::new(st.snapshot(&self.config)),
            last_connect_error: if st.connect.failures > 0 {
                st.connect.last_error.clone()
            } else {
                None
            },
            holders: leak::summary(&self.slots.holders(), now, 3),
        }
    }

    fn closed_error(&self) -> Error {
        Error::Closed {
            pool: self.config.name.clone(),
        }
    }

    /// Pings (or asks `is_broken`) and runs the checkout hook, outside the
    /// lock. A connection that fails is closed and `None` returned.
    #[inline]
    fn validate(
        self: &Arc<Self>,
        mut entry: Entry<M::Connection>,
        ping: bool,
        now: Tick,
        waited: Option<Duration>,
    ) -> Option<Entry<M::Connection>> {
        let m = &self.manager;
        let id = entry.meta.id;
        let reason = if ping {
            match self.contain("ping", id, || m.ping(&mut entry.conn)) {
                Some(Ok(())) => None,
                Some(Err(e)) => {
                    log::info!(
                        "pool '{}': connection {id} failed its pre-ping ({e}); closing it and \
                         pinging every older connection on its next checkout",
                        self.config.name,
                    );
                    Some(CloseReason::FailedPing)
                }
                None => Some(CloseReason::FailedPing),
            }
        } else if self
            .contain("is_broken", id, || m.is_broken(&mut entry.conn))
            .unwrap_or(true)
        {
            Some(CloseReason::Broken)
        } else {
            None
        };
        let reason = reason.or_else(|| {
            match self.contain("on_checkout", id, || m.on_checkout(&mut entry.conn)) {
                Some(Ok(())) => None,
                Some(Err(e)) => {
                    log::warn!(
                        "pool '{}': Manager::on_checkout failed ({e}); connection {id} closed",
                        self.config.name,
                    );
                    Some(CloseReason::Broken)
                }
                None => Some(CloseReason::Broken),
            }
        });
        match reason {
            None => {
                if ping {
                    entry.meta.validated = now;
                    let mut st = self.state.lock();
                    st.counters.pings += 1;
                    st.counters.count_checkout(waited);
                }
                Some(entry)
            }
            Some(reason) => {
                self.discard(entry, reason, ping, now);
                None
            }
        }
    }

    /// Closes a connection that failed its validation at checkout.
    #[cold]
    #[inline(never)]
    fn discard(
        self: &Arc<Self>,
        entry: Entry<M::Connection>,
        reason: CloseReason,
        ping: bool,
        now: Tick,
    ) {
        let spawn = {
            let mut st = self.state.lock();
            if ping {
                st.counters.pings += 1;
            }
            if reason == CloseReason::FailedPing {
                let after = now.plus(Duration::from_nanos(1)).0;
                self.suspect_before.fetch_max(after, Ordering::Release);
            }
            self.slots.unpin_leaving(&mut st, entry.meta.slot);
            st.forget(&entry.meta, reason);
            st.plan_connect_threads(&self.config)
        };
        self.finish(vec![(entry, reason)]);
        if spawn > 0 {
            self.spawn_connectors(spawn);
        }
    }

    /// Runs a call into the manager, containing a panic: `None` (logged)
    /// when it panicked. The caller then closes connection `conn_id`.
    pub(crate) fn contain<T>(&self, what: &str, conn_id: u64, f: impl FnOnce() -> T) -> Option<T> {
        let out = catch_unwind(AssertUnwindSafe(f)).ok();
        if out.is_none() {
            log::error!(
                "pool '{}': Manager::{what} panicked; connection {conn_id} closed",
                self.config.name
            );
        }
        out
    }

    /// Closes connections (already accounted for) outside the lock and
    /// tells the event handler; wakes `close_timeout` when the pool is empty.
    #[inline]
    pub(crate) fn finish(&self, closing: Closing<M::Connection>) {
        // Nothing to close on the hot paths: no call, no drop glue.
        if !closing.is_empty() {
            self.close_now(closing);
        }
    }

    #[inline(never)]
    fn close_now(&self, closing: Closing<M::Connection>) {
        for (entry, reason) in closing {
            let id = entry.meta.id;
            match reason {
                CloseReason::Recycled | CloseReason::IdleTimeout | CloseReason::Excess => {
                    log::debug!(
                        "pool '{}': closing connection {id} ({reason})",
                        self.config.name
                    )
                }
                _ => log::debug!(
                    "pool '{}': closing connection {id} ({reason})",
                    self.config.name
                ),
            }
            // Dropping the driver's connection closes it; a panic there is
            // contained like any other driver panic.
            if catch_unwind(AssertUnwindSafe(move || drop(entry))).is_err() {
                log::error!(
                    "pool '{}': dropping connection {id} panicked",
                    self.config.name
                );
            }
            if let Some(events) = &self.config.events {
                emit(&self.config.name, "on_close", || {
                    events.on_close(&self.config.name, id, reason)
                });
            }
        }
        self.changed.notify_all();
    }

    /// Starts connect threads if the pool wants more attempts.
    pub(crate) fn request_connects(self: &Arc<Self>) {
        let spawn = self.state.lock().plan_connect_threads(&self.config);
        if spawn > 0 {
            self.spawn_connectors(spawn);
        }
    }

    /// Closes the pool (idempotent).
    pub(crate) fn close(&self) {
        let (closing, waiters) = {
            let mut st = self.state.lock();
            if st.closed {
                return;
            }
            self.slots.settle(&mut st);
            self.closed.store(true, Ordering::Relaxed);
            st.close()
        };
        drop(waiters);
        log::debug!("pool '{}': closed", self.config.name);
        self.finish(closing);
        self.changed.notify_all();
        let _ = self.wake.try_send(());
    }

    pub(crate) fn stats(&self) -> Stats {
        let cfg = &self.config;
        let (snapshot, counters, closed, failures, last_error) = {
            let mut st = self.state.lock();
            self.slots.settle(&mut st);
            let mut counters = st.counters.clone();
            self.slots.add_tallies(&mut counters);
            (
                st.snapshot(cfg),
                counters,
                st.closed,
                st.connect.failures,
                st.connect.last_error.clone(),
            )
        };
        Stats {
            name: cfg.name.clone(),
            pool_size: cfg.pool_size,
            max_overflow: cfg.max_overflow,
            open: snapshot.open,
            idle: snapshot.idle,
            in_use: snapshot.in_use,
            overflow_open: snapshot.open.saturating_sub(cfg.pool_size),
            overflow_in_use: snapshot.in_use.saturating_sub(cfg.pool_size),
            waiting: snapshot.waiting,
            connecting: snapshot.opening,
            closed,
            created: counters.created,
            closed_by: stats::closed_counts(&counters),
            detached: counters.detached,
            connect_errors: counters.connect_errors,
            consecutive_connect_failures: failures,
            last_connect_error: if failures > 0 {
                last_error.map(|e| crate::error::Chain(&*e).to_string())
            } else {
                None
            },
            checkouts: counters.checkouts,
            waited: counters.waited,
            timeouts: counters.timeouts,
            queue_full: counters.queue_full,
            pings: counters.pings,
            leaks_reported: counters.leaks_reported,
            wait: stats::wait_stats(&counters),
            held: stats::held_stats(&counters),
        }
    }
}

impl<M: Manager> Pool<M> {
    /// Runs one round of the background thread's housekeeping (recycling,
    /// idle timeout, hung connects, leak reports, `min_idle`) now, on the
    /// calling thread; for tests that drive a manual clock.
    #[doc(hidden)]
    pub fn run_maintenance(&self) {
        self.shared().housekeeping();
    }
}
