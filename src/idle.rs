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

use parking_lot::{Condvar, Mutex};

use crate::clock::Tick;
use crate::config::Config;
use crate::entry::{Entry, Meta};
use crate::error::{PoolState, SharedError};
use crate::leak::Checkout;
use crate::stats::{CloseReason, Counters};

/// Connections to close once the lock is released, with the reason for each.
pub(crate) type Closing<C> = Vec<(Entry<C>, CloseReason)>;

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
    /// the end (newest first, so extras idle out).
    /// Invariant: `idle.len() <= pool_size`.
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
    /// Connections validated before this are pinged on next checkout.
    pub(crate) suspect_before: Tick,
    pub(crate) next_conn_id: u64,
    pub(crate) next_waiter_id: u64,
    pub(crate) next_attempt_id: u64,
    /// Holder table, indexed by `Meta::slot`: `Some` while checked out.
    pub(crate) holders: Vec<Option<Checkout>>,
    /// Slots not owned by an open connection.
    /// Invariant: `free_slots.len() + open == holders.len()`.
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
            suspect_before: Tick(0),
            next_conn_id: 1,
            next_waiter_id: 1,
            next_attempt_id: 1,
            holders: vec![None; max_open],
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

    /// Whether a thread arriving now may take an idle connection ahead of
    /// the waiters (bounded barging).
    pub(crate) fn may_barge(&self, window: Duration) -> bool {
        match self.waiters.front() {
            None => true,
            Some(w) => !window.is_zero() && w.since.elapsed() < window,
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

    pub(crate) fn release_slot(&mut self, meta: &Meta) {
        self.holders[meta.slot as usize] = None;
        self.free_slots.push(meta.slot);
        self.open -= 1;
    }

    /// Records a checkout in the holder table.
    pub(crate) fn hold(&mut self, meta: &Meta, record: Checkout) {
        self.holders[meta.slot as usize] = Some(record);
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

    /// Gives a connection that is staying in the pool to the oldest waiter,
    /// or keeps it idle (waking one waiter to take it), or returns it when
    /// `pool_size` connections are already idle. `handoff_directly` forces
    /// hand-off to the oldest waiter (fresh connections, starving waiters).
    pub(crate) fn place(
        &mut self,
        cfg: &Config,
        entry: Entry<C>,
        handoff_directly: bool,
    ) -> Option<Entry<C>> {
        // Also hand over directly when the idle store is full: keeping the
        // connection is impossible, and closing it as excess while a waiter
        // queues would make that waiter wait for a new connect.
        let direct = handoff_directly
            || self.idle.len() >= cfg.pool_size
            || !self.may_barge(cfg.barging_window);
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
                return None;
            }
        }
        if self.idle.len() >= cfg.pool_size {
            return Some(entry);
        }
        self.idle.push(entry);
        self.wake_front();
        None
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
        let min_idle_deficit = cfg.min_idle.saturating_sub(self.idle.len());
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
        if self.idle.len() > cfg.pool_size {
            return Err(format!("idle {} > pool_size {}", self.idle.len(), cfg.pool_size));
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
        if self.free_slots.len() + self.open != self.holders.len() {
            return Err(format!(
                "free slots {} + open {} != slots {}",
                self.free_slots.len(),
                self.open,
                self.holders.len()
            ));
        }
        let held = self.holders.iter().filter(|h| h.is_some()).count();
        if held > self.in_use() {
            return Err(format!("{held} holder records > in use {}", self.in_use()));
        }
        Ok(())
    }
}
