//! [`Pooled`], the RAII guard, and the return rules.
//!
//! On drop the connection goes back to the pool, or is closed when: its
//! thread is panicking (it may be mid-transaction), it was marked broken,
//! `Manager::is_broken` or `on_checkin` says so, it is over age, it belongs to
//! a retired generation, the pool is closed, or `pool_size` connections are
//! already idle (an overflow connection).

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::clock::Tick;
use crate::entry::Entry;
use crate::events::emit;
use crate::manager::Manager;
use crate::pool::Shared;
use crate::slots::local;
use crate::stats::CloseReason;

/// A checked-out connection. Derefs to the driver's connection; returns it
/// to the pool when dropped.
///
/// Extras are associated functions (`Pooled::detach(guard)`), so they never
/// shadow a method of the connection.
///
/// ```
/// # #[cfg(feature = "sqlite")] {
/// use cistern::{Pool, Pooled, sqlite::SqliteManager};
///
/// let pool = Pool::new(SqliteManager::memory("doc_guard"))?;
/// let mut conn = pool.get()?;
/// conn.execute_batch("CREATE TABLE t (x INTEGER)").unwrap();
/// assert!(Pooled::held(&conn) < std::time::Duration::from_secs(5));
/// // Something went wrong mid-transaction: do not reuse this one.
/// Pooled::mark_broken(&mut conn);
/// drop(conn);
/// assert_eq!(pool.stats().closed_by.broken, 1);
/// # }
/// # Ok::<(), cistern::Error>(())
/// ```
pub struct Pooled<M: Manager> {
    /// `Some` until dropped or detached.
    entry: Option<Entry<M::Connection>>,
    /// `Some` until dropped: on drop the reference goes back to the
    /// thread's memory for its next checkout (`slots::local`).
    shared: Option<Arc<Shared<M>>>,
    taken: Tick,
    broken: bool,
}

impl<M: Manager> Pooled<M> {
    pub(crate) fn new(shared: Arc<Shared<M>>, entry: Entry<M::Connection>, taken: Tick) -> Self {
        Pooled {
            entry: Some(entry),
            shared: Some(shared),
            taken,
            broken: false,
        }
    }

    fn shared(this: &Self) -> &Arc<Shared<M>> {
        this.shared
            .as_ref()
            .expect("a guard holds its pool until dropped")
    }

    fn entry(this: &Self) -> &Entry<M::Connection> {
        this.entry
            .as_ref()
            .expect("a guard holds its connection until dropped")
    }

    /// Takes the connection out of the pool for good: the pool forgets it
    /// and frees its slot (a new connection may replace it).
    pub fn detach(mut this: Self) -> M::Connection {
        let entry = this
            .entry
            .take()
            .expect("a guard holds its connection until dropped");
        let shared = Self::shared(&this);
        let spawn = {
            let mut st = shared.state.lock();
            shared.slots.unpin_leaving(&mut st, entry.meta.slot);
            st.release_slot(&entry.meta);
            st.counters.detached += 1;
            st.plan_connect_threads(&shared.config)
        };
        if spawn > 0 {
            shared.spawn_connectors(spawn);
        }
        shared.changed.notify_all();
        entry.into_conn()
    }

    /// Marks the connection broken: it is closed instead of returned.
    pub fn mark_broken(this: &mut Self) {
        this.broken = true;
    }

    /// The connection's age (since it was opened).
    pub fn age(this: &Self) -> Duration {
        Self::shared(this)
            .config
            .clock
            .now()
            .since(Self::entry(this).meta.created)
    }

    /// How long this guard has held the connection.
    pub fn held(this: &Self) -> Duration {
        Self::shared(this).config.clock.now().since(this.taken)
    }

    /// The connection's id within its pool (stable for its lifetime).
    pub fn id(this: &Self) -> u64 {
        Self::entry(this).meta.id
    }
}

impl<M: Manager> Deref for Pooled<M> {
    type Target = M::Connection;
    fn deref(&self) -> &M::Connection {
        &Self::entry(self).conn
    }
}

impl<M: Manager> DerefMut for Pooled<M> {
    fn deref_mut(&mut self) -> &mut M::Connection {
        &mut self
            .entry
            .as_mut()
            .expect("a guard holds its connection until dropped")
            .conn
    }
}

impl<M: Manager> std::fmt::Debug for Pooled<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Pooled");
        d.field("pool", &Self::shared(self).config.name);
        if let Some(e) = &self.entry {
            d.field("id", &e.meta.id);
        }
        d.field("held", &Pooled::held(self)).finish_non_exhaustive()
    }
}

impl<M: Manager> Drop for Pooled<M> {
    fn drop(&mut self) {
        let Some(shared) = self.shared.take() else {
            return;
        };
        if let Some(entry) = self.entry.take() {
            shared.checkin(entry, self.taken, self.broken);
        }
        if !shared.closed.load(Ordering::Relaxed) {
            local::keep(shared.id, shared);
        }
    }
}

impl<M: Manager> Shared<M> {
    /// The return path: decide, outside the lock, whether the connection can
    /// be reused (driver code runs here); then park it in its cell if its
    /// slot is pinned (no pool lock), or, under the lock, pin it, hand it to
    /// a waiter, keep it idle, or close it.
    #[inline]
    pub(crate) fn checkin(
        self: &Arc<Self>,
        mut entry: Entry<M::Connection>,
        taken: Tick,
        marked_broken: bool,
    ) {
        let now = self.config.clock.now();
        let m = &self.manager;
        let mut reason = if std::thread::panicking() {
            Some(CloseReason::Panicked)
        } else if marked_broken {
            Some(CloseReason::Broken)
        } else {
            let id = entry.meta.id;
            let broken = self.contain("is_broken or on_checkin", id, || {
                m.is_broken(&mut entry.conn) || m.on_checkin(&mut entry.conn).is_err()
            });
            broken.unwrap_or(true).then_some(CloseReason::Broken)
        };
        if reason.is_none() && entry.meta.is_expired(now) {
            reason = Some(CloseReason::Recycled);
        }
        entry.meta.last_used = now;
        // Nanoseconds, not a Duration, on the hot path (no division).
        let held_ns = now.0.saturating_sub(taken.0);
        let id = entry.meta.id;
        // The checkout record ends and the return is counted in the cell,
        // outside the pool's lock, whichever way the connection goes; a
        // pinned connection stays there for this thread's next checkout.
        let (reported, entry) = match reason {
            None => match self.slots.park(entry, held_ns) {
                (reported, Ok(())) => {
                    self.returned(id, held_ns, reported);
                    return;
                }
                (reported, Err(entry)) => (reported, entry),
            },
            Some(_) => (self.slots.release(entry.meta.slot, held_ns), entry),
        };
        self.checkin_locked(entry, reason, now, (held_ns, reported));
    }

    /// The locked return: pins the connection to this thread, or gives it to
    /// `check_in` (a waiter, the idle store, or closing).
    #[inline(never)]
    fn checkin_locked(
        self: &Arc<Self>,
        entry: Entry<M::Connection>,
        reason: Option<CloseReason>,
        now: Tick,
        (held_ns, reported): (u64, bool),
    ) {
        let (id, slot) = (entry.meta.id, entry.meta.slot);
        let mut closing = Vec::new();
        // Outside the lock (see `State::may_barge`).
        let at = std::time::Instant::now();
        let spawn = {
            let mut st = self.state.lock();
            if reason.is_none() && st.may_pin(&self.config, &entry.meta, now) {
                self.slots.pin(&mut st, entry, crate::leak::thread_tag());
                local::set_slot(self.id, slot);
            } else {
                // Exact idle figures for the rules of `check_in` (this also
                // unpins this connection's slot if it is leaving).
                self.slots.settle(&mut st);
                st.check_in(&self.config, entry, reason, at, &mut closing);
            }
            if closing.is_empty() {
                0
            } else {
                st.plan_connect_threads(&self.config)
            }
        };
        self.returned(id, held_ns, reported);
        self.finish(closing);
        if spawn > 0 {
            self.spawn_connectors(spawn);
        }
    }

    /// What every return ends with: the leak report's follow-up, the event.
    #[inline]
    fn returned(&self, id: u64, held_ns: u64, reported: bool) {
        if reported {
            self.reported_back(id, held_ns);
        }
        if let Some(events) = &self.config.events {
            emit(&self.config.name, "on_checkin", || {
                events.on_checkin(&self.config.name, id, Duration::from_nanos(held_ns))
            });
        }
    }

    /// A guard reported as held too long came back: say so once more.
    #[cold]
    #[inline(never)]
    fn reported_back(&self, id: u64, held_ns: u64) {
        log::info!(
            "pool '{}': connection {id}, reported as held too long, came back after {}",
            self.config.name,
            crate::fmt_duration(Duration::from_nanos(held_ns))
        );
    }
}
