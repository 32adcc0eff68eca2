//! The pool's one lock and everything it protects: idle connections,
//! open/opening counts, the FIFO of waiters, the holder table, counters.
//!
//! Methods here only move data; none calls driver code, a hook or a logger,
//! and none drops a connection (closing one can block on the network).
//! Connections to close are handed back to the caller in a [`Closing`] list
//! and dropped after the lock is released.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::sync::{Condvar, Mutex};

use crate::clock::Tick;
use crate::config::Config;
use crate::entry::{Entry, Meta};
use crate::error::{PoolState, SharedError};
use crate::stats::{CloseReason, Counters};

/// How long after a shortage (a checkout that waited, or found only parked
/// connections) returns stop pinning connections to their threads (see
/// `State::last_shortage`).
/// Measured at 64 threads on 10 connections: pinning whenever nobody waits
/// let threads steal from each other instead of queueing, and a few threads
/// kept their connections (fairness min/max 0.1-0.4 instead of 0.8).
pub(crate) const PIN_HOLDOFF: Duration = Duration::from_millis(100);

/// Connections to close once the lock is released, with the reason for each.
pub(crate) type Closing<C> = Vec<(Entry<C>, CloseReason)>;

/// What a waiter finds when it looks.
pub(crate) enum Poll<C> {
    Ready(Entry<C>),
    Closed,
    Pending,
}

/// What a waiter is handed.
pub(crate) enum Handoff<C> {
    Conn(Entry<C>),
    Closed,
}

/// A thread parked in `get()`.
pub(crate) struct Waiter<C> {
    pub(crate) id: u64,
    pub(crate) since: Instant,
    /// Signalled (with the pool's lock) when `outcome` is set or when an idle
    /// connection was pushed for it to take.
    pub(crate) cv: Condvar,
    /// Written and read only while the pool's lock is held.
    pub(crate) outcome: Mutex<Option<Handoff<C>>>,
}

/// A connect attempt counted against capacity.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Attempt {
    pub(crate) id: u64,
    pub(crate) started: Instant,
    /// The `retire_all` generation it started in: a connection it opens
    /// after a later `retire_all` may reach the old server, and is closed.
    pub(crate) generation: u64,
}

/// Connect failures and the backoff they impose.
#[derive(Default)]
pub(crate) struct ConnectHealth {
    /// Failures in a row; 0 after a success.
    pub(crate) failures: u64,
    /// No attempt before this.
    pub(crate) retry_at: Option<Instant>,
    pub(crate) last_error: Option<SharedError>,
}

pub(crate) struct State<C> {
    /// Idle connections, least recently returned first; checkouts take from
    /// the end (newest first, so extras idle out). Parked (pinned)
    /// connections are idle too but live in their cells, see `pinned`.
    /// Invariant: `idle.len() + pinned.len() <= pool_size`.
    pub(crate) idle: Vec<Entry<C>>,
    /// Connections open: idle + checked out + being validated.
    /// Invariant: `open + opening <= pool_size + max_overflow`.
    pub(crate) open: usize,
    /// Connect attempts in flight that count against capacity
    /// (`opening == attempts.len()`). An attempt running longer than
    /// `connect_timeout` is abandoned: removed here, its slot freed.
    pub(crate) opening: usize,
    pub(crate) attempts: Vec<Attempt>,
    /// Threads running connect loops (abandoned ones excluded).
    pub(crate) connect_threads: usize,
    /// Waiters, oldest first.
    pub(crate) waiters: VecDeque<Arc<Waiter<C>>>,
    /// The waiter told that an idle connection is there for it (at most one
    /// at a time, so a return wakes at most one thread).
    pub(crate) woken: Option<u64>,
    pub(crate) closed: bool,
    /// `retire_all` generation; connections of older ones are closed.
    pub(crate) generation: u64,
    pub(crate) next_conn_id: u64,
    pub(crate) next_waiter_id: u64,
    pub(crate) next_attempt_id: u64,
    /// Slots pinned to the thread that returned their connection last (see
    /// `slots.rs`): each connection is parked in its cell or out with a
    /// guard. Counted in `open`, not in `idle`.
    /// Invariants: `idle.len() + pinned.len() <= pool_size`; empty while
    /// `waiters` is not.
    pub(crate) pinned: Vec<u32>,
    /// When a checkout last found the shared store empty: it waited, or found
    /// only parked connections (`None`: never). Returns do not pin for
    /// [`PIN_HOLDOFF`] after it: a pool short of connections
    /// serves its checkouts from the shared store, waiters first come first
    /// served, until it has had no shortage for that long.
    pub(crate) last_shortage: Option<Tick>,
    /// Slots (`pool_size + max_overflow`, one cell each in `slots.rs`).
    pub(crate) slot_count: usize,
    /// Slots not owned by an open connection.
    /// Invariant: `free_slots.len() + open == slot_count`.
    pub(crate) free_slots: Vec<u32>,
    pub(crate) connect: ConnectHealth,
    pub(crate) counters: Counters,
}

impl<C> State<C> {
    pub(crate) fn new(max_open: usize) -> State<C> {
        State {
            idle: Vec::with_capacity(max_open),
            open: 0,
            opening: 0,
            attempts: Vec::new(),
            connect_threads: 0,
            waiters: VecDeque::new(),
            woken: None,
            closed: false,
            generation: 0,
            next_conn_id: 1,
            next_waiter_id: 1,
            next_attempt_id: 1,
            pinned: Vec::with_capacity(max_open),
            last_shortage: None,
            slot_count: max_open,
            // Reversed, so slot 0 is used first.
            free_slots: (0..max_open as u32).rev().collect(),
            connect: ConnectHealth::default(),
            counters: Counters::default(),
        }
    }

    pub(crate) fn in_use(&self) -> usize {
        self.open - self.idle.len()
    }

    pub(crate) fn snapshot(&self, cfg: &Config) -> PoolState {
        PoolState {
            in_use: self.in_use(),
            idle: self.idle.len(),
            open: self.open,
            opening: self.opening,
            waiting: self.waiters.len(),
            pool_size: cfg.pool_size,
            max_overflow: cfg.max_overflow,
        }
    }

    /// `max_waiting`, when that many waiters already queue: a new one is
    /// turned away.
    pub(crate) fn queue_full(&self, cfg: &Config) -> Option<usize> {
        cfg.max_waiting.filter(|&max| self.waiters.len() >= max)
    }

    /// Whether a thread arriving at `now` may take an idle connection ahead
    /// of the waiters (bounded barging). Callers read `now` before taking
    /// the lock (so the window is measured to when the checkout or return
    /// began, before any wait for the lock): a precise clock read is a large
    /// part of a short critical section (perf, 64 threads on 10 connections:
    /// 12 % of all cycles).
    pub(crate) fn may_barge(&self, window: Duration, now: Instant) -> bool {
        match self.waiters.front() {
            None => true,
            Some(w) => !window.is_zero() && now.saturating_duration_since(w.since) < window,
        }
    }

    /// Takes the newest usable idle connection; expired or retired ones met
    /// on the way go to `closing`.
    pub(crate) fn pop_idle(&mut self, now: Tick, closing: &mut Closing<C>) -> Option<Entry<C>> {
        while let Some(e) = self.idle.pop() {
            if e.meta.generation < self.generation {
                self.forget(&e.meta, CloseReason::Retired);
                closing.push((e, CloseReason::Retired));
            } else if e.meta.is_expired(now) {
                self.forget(&e.meta, CloseReason::Recycled);
                closing.push((e, CloseReason::Recycled));
            } else {
                return Some(e);
            }
        }
        None
    }

    /// Accounts for a connection leaving the pool for good (closed or
    /// detached): frees its slot and capacity.
    pub(crate) fn forget(&mut self, meta: &Meta, reason: CloseReason) {
        self.release_slot(meta);
        self.counters.closed(reason);
    }

    /// The slot must not be pinned (`Slots::unpin_leaving` first).
    pub(crate) fn release_slot(&mut self, meta: &Meta) {
        debug_assert!(!self.pinned.contains(&meta.slot));
        self.free_slots.push(meta.slot);
        self.open -= 1;
    }

    /// Adds an idle connection where its last return puts it (the store is
    /// ordered by last return, oldest first; idle timeout relies on it).
    pub(crate) fn insert_idle(&mut self, e: Entry<C>) {
        let at = self
            .idle
            .partition_point(|x| x.meta.last_used <= e.meta.last_used);
        self.idle.insert(at, e);
    }

    /// Whether a connection (`meta`) coming back at `now` may be pinned to
    /// its thread: it is of the current generation, nobody waits or has
    /// waited for [`PIN_HOLDOFF`], and the idle ones, pinned included, leave
    /// room.
    pub(crate) fn may_pin(&self, cfg: &Config, meta: &Meta, now: Tick) -> bool {
        !self.closed
            && meta.generation == self.generation
            && self.waiters.is_empty()
            && self
                .last_shortage
                .is_none_or(|t| now.since(t) >= PIN_HOLDOFF)
            && self.idle.len() + self.pinned.len() < cfg.pool_size
    }

    /// Registers a newly opened connection; `None` when there is no room
    /// (a late result of an abandoned attempt when the pool has filled up).
    pub(crate) fn admit(&mut self, cfg: &Config, now: Tick) -> Option<Meta> {
        if self.open + self.opening >= cfg.max_open() || self.closed {
            return None;
        }
        let slot = self.free_slots.pop()?;
        let id = self.next_conn_id;
        self.next_conn_id += 1;
        self.open += 1;
        Some(Meta::new(
            id,
            slot,
            now,
            cfg.recycle_after,
            cfg.recycle_spread,
            self.generation,
        ))
    }

    /// Reserves capacity for a connect attempt starting now.
    pub(crate) fn start_attempt(&mut self, started: Instant) -> Attempt {
        let attempt = Attempt {
            id: self.next_attempt_id,
            started,
            generation: self.generation,
        };
        self.next_attempt_id += 1;
        self.attempts.push(attempt);
        self.opening += 1;
        attempt
    }

    /// Releases an attempt's reservation; false when it had been abandoned
    /// (its reservation was released then).
    pub(crate) fn end_attempt(&mut self, id: u64) -> bool {
        match self.attempts.iter().position(|a| a.id == id) {
            Some(i) => {
                self.attempts.swap_remove(i);
                self.opening -= 1;
                true
            }
            None => false,
        }
    }

    /// A new connection from `attempt` (already ended): counted as created,
    /// then handed to the oldest waiter, kept idle, or (no room: a late
    /// result, or idle full) closed. `Err` gives back a connection that was
    /// never admitted (retired generation, or no room), counted as closed so
    /// that `created - closed - detached == open` holds.
    pub(crate) fn admit_new(
        &mut self,
        cfg: &Config,
        attempt: Attempt,
        conn: C,
        now: Tick,
        closing: &mut Closing<C>,
    ) -> Result<u64, C> {
        self.counters.created += 1;
        // Started before a retire_all: it may be connected to the retired
        // server, so it is closed, not handed out.
        let retired = attempt.generation < self.generation;
        let admitted = if retired { None } else { self.admit(cfg, now) };
        match admitted {
            Some(meta) => {
                let id = meta.id;
                let entry = Entry::new(conn, meta);
                self.place(cfg, entry, None, closing);
                Ok(id)
            }
            None => {
                self.counters.closed(if retired {
                    CloseReason::Retired
                } else {
                    CloseReason::Excess
                });
                Err(conn)
            }
        }
    }

    /// Gives a connection that is staying in the pool to the oldest waiter,
    /// or keeps it idle (waking one waiter to take it), or returns it when
    /// `pool_size` connections are already idle. `returned`: when a
    /// connection came back (the barging window is measured to it); `None`
    /// forces hand-off to the oldest waiter (fresh connections).
    pub(crate) fn place(
        &mut self,
        cfg: &Config,
        entry: Entry<C>,
        returned: Option<Instant>,
        closing: &mut Closing<C>,
    ) {
        // Also hand over directly when the idle store is full: keeping the
        // connection is impossible, and closing it as excess while a waiter
        // queues would make that waiter wait for a new connect.
        let direct = self.idle.len() >= cfg.pool_size
            || returned.is_none_or(|now| !self.may_barge(cfg.barging_window, now));
        if direct {
            if let Some(w) = self.waiters.pop_front() {
                let was_told = self.woken == Some(w.id);
                *w.outcome.lock() = Some(Handoff::Conn(entry));
                w.cv.notify_one();
                if was_told {
                    // It had been told about an idle connection it will now
                    // not take: tell the next waiter, or that connection
                    // would sit idle until the next waiter's deadline.
                    self.woken = None;
                    self.wake_front();
                }
                return;
            }
        }
        if self.idle.len() >= cfg.pool_size {
            self.forget(&entry.meta, CloseReason::Excess);
            closing.push((entry, CloseReason::Excess));
            return;
        }
        self.idle.push(entry);
        self.wake_front();
    }

    /// The locked part of a return: keeps the connection (to the oldest
    /// waiter or the idle store) unless `reason` says to close it, or the
    /// pool is closed, or its generation was retired, or `pool_size` are
    /// already idle; what must be closed goes to `closing`.
    pub(crate) fn check_in(
        &mut self,
        cfg: &Config,
        entry: Entry<C>,
        reason: Option<CloseReason>,
        now: Instant,
        closing: &mut Closing<C>,
    ) {
        let reason = reason.or(if self.closed {
            Some(CloseReason::PoolClosed)
        } else if entry.meta.generation < self.generation {
            Some(CloseReason::Retired)
        } else {
            None
        });
        match reason {
            None => {
                self.place(cfg, entry, Some(now), closing);
            }
            Some(r) => {
                self.forget(&entry.meta, r);
                closing.push((entry, r));
            }
        }
    }

    /// The locked part of `close()`: marks the pool closed, takes the idle
    /// connections out (to be closed) and tells every waiter. Returns the
    /// waiters so their last references drop outside the lock.
    pub(crate) fn close(&mut self) -> (Closing<C>, Vec<Arc<Waiter<C>>>) {
        self.closed = true;
        let idle = std::mem::take(&mut self.idle);
        let closing: Closing<C> = idle
            .into_iter()
            .map(|e| {
                self.forget(&e.meta, CloseReason::PoolClosed);
                (e, CloseReason::PoolClosed)
            })
            .collect();
        let waiters: Vec<_> = self.waiters.drain(..).collect();
        for w in &waiters {
            *w.outcome.lock() = Some(Handoff::Closed);
            w.cv.notify_one();
        }
        self.woken = None;
        (closing, waiters)
    }

    /// Tells the oldest waiter that an idle connection is there, unless one
    /// has been told already.
    pub(crate) fn wake_front(&mut self) {
        if self.woken.is_none() && !self.idle.is_empty() {
            if let Some(w) = self.waiters.front() {
                self.woken = Some(w.id);
                w.cv.notify_one();
            }
        }
    }

    /// Queues a new waiter, last in line.
    pub(crate) fn enqueue(&mut self, since: Instant) -> Arc<Waiter<C>> {
        let id = self.next_waiter_id;
        self.next_waiter_id += 1;
        let me = Arc::new(Waiter {
            id,
            since,
            cv: Condvar::new(),
            outcome: Mutex::new(None),
        });
        self.waiters.push_back(Arc::clone(&me));
        me
    }

    /// What a queued waiter finds when it looks (lock held): a connection
    /// handed to it, the pool closed, or, when it is the oldest waiter, an
    /// idle connection it may take. `Pending`: wait on `me.cv`, then call
    /// [`State::woke`].
    pub(crate) fn poll_waiter(
        &mut self,
        me: &Waiter<C>,
        now: Tick,
        closing: &mut Closing<C>,
    ) -> Poll<C> {
        let handed = me.outcome.lock().take();
        match handed {
            Some(Handoff::Conn(e)) => return Poll::Ready(e),
            Some(Handoff::Closed) => return Poll::Closed,
            None => {}
        }
        if self.closed {
            self.remove_waiter(me.id);
            return Poll::Closed;
        }
        if self.waiters.front().is_some_and(|w| w.id == me.id) && !self.idle.is_empty() {
            if let Some(e) = self.pop_idle(now, closing) {
                self.remove_waiter(me.id);
                // Another idle connection for the next waiter: tell it (a
                // thread past its barging limit queued behind it instead of
                // taking that connection).
                self.wake_front();
                return Poll::Ready(e);
            }
        }
        Poll::Pending
    }

    /// After a waiter wakes: the notification, if it was the one told about
    /// an idle connection, is used up (another may be told next).
    pub(crate) fn woke(&mut self, id: u64) {
        if self.woken == Some(id) {
            self.woken = None;
        }
    }

    /// The waiter gives up (its deadline passed). Call it under the same lock
    /// as a `poll_waiter` that returned `Pending`, so no hand-off is lost.
    pub(crate) fn cancel_waiter(&mut self, id: u64) {
        self.remove_waiter(id);
    }

    pub(crate) fn remove_waiter(&mut self, id: u64) {
        if let Some(i) = self.waiters.iter().position(|w| w.id == id) {
            self.waiters.remove(i);
        }
        if self.woken == Some(id) {
            self.woken = None;
            self.wake_front();
        }
    }

    /// How many connect attempts the pool wants in flight now.
    pub(crate) fn wanted_attempts(&self, cfg: &Config) -> usize {
        if self.closed {
            return 0;
        }
        // Pinned connections may be idle: count them as idle, so this never
        // opens more than min_idle asks (maintenance settles, then is exact).
        let min_idle_deficit = cfg
            .min_idle
            .saturating_sub(self.idle.len() + self.pinned.len());
        // Waiters not about to be served by an idle connection.
        let unserved = self.waiters.len().saturating_sub(self.idle.len());
        let demand = unserved + min_idle_deficit;
        let room = cfg.max_open().saturating_sub(self.open);
        let limit = if self.connect.failures > 0 {
            1
        } else {
            cfg.max_connecting
        };
        demand.min(room).min(limit)
    }

    /// Connect threads to start now (already counted in `connect_threads`).
    pub(crate) fn plan_connect_threads(&mut self, cfg: &Config) -> usize {
        let wanted = self.wanted_attempts(cfg);
        let start = wanted.saturating_sub(self.connect_threads);
        self.connect_threads += start;
        start
    }

    /// Abandons attempts running longer than `connect_timeout`: their
    /// capacity is freed and they count as failures.
    pub(crate) fn reap_hung_attempts(&mut self, cfg: &Config, now: Instant) -> usize {
        let before = self.attempts.len();
        self.attempts
            .retain(|a| now.duration_since(a.started) < cfg.connect_timeout);
        let reaped = before - self.attempts.len();
        if reaped > 0 {
            self.opening -= reaped;
            self.connect_threads = self.connect_threads.saturating_sub(reaped);
            self.counters.connect_errors += reaped as u64;
            self.connect.failures += reaped as u64;
            // A hung attempt is a failure like any other: back off before
            // the next one, or a blackholed database gets a new attempt
            // (and a new blocked thread) every connect_timeout.
            let delay = crate::connector::backoff_delay(
                cfg,
                self.connect.failures,
                crate::connector::jitter_unit(self.next_attempt_id),
            );
            self.connect.retry_at = Some(now + delay);
            self.connect.last_error = Some(Arc::new(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "a connect attempt did not finish within connect_timeout ({})",
                    crate::fmt_duration(cfg.connect_timeout)
                ),
            )));
        }
        reaped
    }

    /// The database is known to be down: the last connect failed and no
    /// connection is idle.
    pub(crate) fn known_down(&self) -> bool {
        self.connect.failures > 0 && self.idle.is_empty()
    }

    /// Checks the invariants (tests and debug assertions).
    pub(crate) fn check_invariants(&self, cfg: &Config) -> Result<(), String> {
        if self.idle.len() + self.pinned.len() > cfg.pool_size {
            return Err(format!(
                "idle {} + pinned {} > pool_size {}",
                self.idle.len(),
                self.pinned.len(),
                cfg.pool_size
            ));
        }
        if !self.waiters.is_empty() && !self.pinned.is_empty() {
            return Err(format!(
                "{} slots pinned while {} threads wait",
                self.pinned.len(),
                self.waiters.len()
            ));
        }
        if self.open + self.opening > cfg.max_open() {
            return Err(format!(
                "open {} + opening {} > max {}",
                self.open,
                self.opening,
                cfg.max_open()
            ));
        }
        if self.idle.len() > self.open {
            return Err(format!("idle {} > open {}", self.idle.len(), self.open));
        }
        if self.opening != self.attempts.len() {
            return Err(format!(
                "opening {} != attempts {}",
                self.opening,
                self.attempts.len()
            ));
        }
        if self.free_slots.len() + self.open != self.slot_count {
            return Err(format!(
                "free slots {} + open {} != slots {}",
                self.free_slots.len(),
                self.open,
                self.slot_count
            ));
        }
        Ok(())
    }
}
