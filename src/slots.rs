//! One cell per connection slot: the fast path's parking spot, the holder
//! record, and counters kept per slot and summed on read.
//!
//! Every open connection owns a slot (`Meta::slot`) from open to close. Its
//! cell, behind a lock of its own, holds:
//! - the [`Checkout`] record while the connection is checked out (leak
//!   tracking, `Pool::holders`, the timeout error);
//! - the connection itself while it is *parked*: idle, kept for the thread
//!   that returned it last (HikariCP's thread-local list, in a cell);
//! - a [`Tally`] of the checkouts and returns that went through the cell.
//!
//! ## Pinning
//!
//! A return that finds no waiter, no shortage in the last 100 ms
//! (`PIN_HOLDOFF`) and room among the idle connections *pins* the
//! connection: its slot is listed in `State::pinned`, the connection is
//! parked in its cell, and the returning thread remembers the slot
//! ([`local`]). That thread's next `get()` takes the connection back from the
//! cell, and its next return parks it there again, touching only the cell's
//! lock: a line no other thread writes, so checkouts on different threads do
//! not contend. The pool's lock is taken on that path only for a due ping.
//!
//! A pinned connection stays pinned while it goes back and forth between the
//! cell and its guard; the pool's locked state counts it as open, and as
//! idle only in the bound `idle + pinned <= pool_size`. Everything that needs
//! exact figures or a connection *settles* first ([`Slots::settle`], pool
//! lock held): every pinned slot is unpinned and what is parked moves to the
//! shared idle store. That happens when a thread is about to wait (so
//! waiters are served first come, first served, and a pinned connection out
//! with its guard comes back through the locked return to the oldest
//! waiter), on every maintenance round (so idle timeout and recycling see
//! every idle connection within one period), and for stats, `close`,
//! `retire_all`, new connections and returns that do not pin. A thread that
//! finds the shared store empty takes back a connection it parked itself,
//! if any; otherwise it settles too (threads compete: see [`Slots::steal`]).
//!
//! Invariants (cell locks are taken after the pool's lock, never before):
//! - `cell.pinned` if and only if the slot is in `State::pinned`; both change
//!   only with the pool's lock and the cell's lock held;
//! - `cell.parked.is_some()` implies `cell.pinned`;
//! - `State::waiters` non-empty implies `State::pinned` empty;
//! - `State::idle.len() + State::pinned.len() <= pool_size`;
//! - `cell.holder` is `Some` only while the slot's connection is checked out.

use std::cell::Cell as ThreadCell;

use crate::clock::Tick;
use crate::entry::{Entry, Meta, PingRules};
use crate::idle::State;
use crate::leak::Checkout;
use crate::stats::Counters;
use crate::sync::Mutex;

/// Checkouts and returns counted in one cell; [`Slots::tally`] sums them.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Tally {
    pub(crate) checkouts: u64,
    pub(crate) held_count: u64,
    /// A slot's connection is out with one guard at a time, so this sum is
    /// at most the pool's age (u64 nanoseconds: 584 years). A u128 here
    /// would make the cell 16-byte aligned and 256 bytes instead of 128.
    pub(crate) held_sum_ns: u64,
    pub(crate) held_max_ns: u64,
}

impl Tally {
    /// Counts a return after `ns` nanoseconds held.
    #[inline]
    pub(crate) fn record_held_ns(&mut self, ns: u64) {
        self.held_count += 1;
        self.held_sum_ns = self.held_sum_ns.saturating_add(ns);
        self.held_max_ns = self.held_max_ns.max(ns);
    }

    /// Adds this tally into the pool's counters (stats, at read time).
    pub(crate) fn add_to(&self, c: &mut Counters) {
        c.checkouts += self.checkouts;
        c.held_count += self.held_count;
        c.held_sum_ns += u128::from(self.held_sum_ns);
        c.held_max_ns = c.held_max_ns.max(self.held_max_ns);
    }
}

/// What one slot's lock protects (see the module docs for the invariants).
pub(crate) struct Cell<C> {
    /// The slot's connection, parked for the thread that returned it.
    pub(crate) parked: Option<Entry<C>>,
    /// Listed in `State::pinned`: returns park here without the pool's lock.
    pub(crate) pinned: bool,
    /// The thread that pinned it (its leak-tracking tag): a steal by that
    /// thread takes its own parked connections first, newest first.
    pub(crate) owner: u64,
    /// The checkout in progress, if the connection is out.
    pub(crate) holder: Option<Checkout>,
    pub(crate) tally: Tally,
}

impl<C> Cell<C> {
    /// Ends the checkout record and counts the return; `true` when the
    /// checkout had been reported as a leak.
    #[inline]
    fn end_checkout(&mut self, held_ns: u64) -> bool {
        self.tally.record_held_ns(held_ns);
        self.holder.take().is_some_and(|h| h.reported)
    }
}

/// A cell on cache lines of its own, so that threads using neighbouring
/// slots do not write to the same line.
#[repr(align(128))]
struct Padded<C>(Mutex<Cell<C>>);

/// The cells of a pool, one per slot (`pool_size + max_overflow`).
pub(crate) struct Slots<C> {
    cells: Box<[Padded<C>]>,
}

/// What a fast-path checkout took from its cell.
pub(crate) struct Taken<C> {
    pub(crate) entry: Entry<C>,
    /// The connection must be pinged before it is handed out (it was not
    /// counted as a checkout yet: the ping decides).
    pub(crate) ping: bool,
}

impl<C> Slots<C> {
    pub(crate) fn new(n: usize) -> Slots<C> {
        Slots {
            cells: (0..n)
                .map(|_| {
                    Padded(Mutex::new(Cell {
                        parked: None,
                        pinned: false,
                        owner: 0,
                        holder: None,
                        tally: Tally::default(),
                    }))
                })
                .collect(),
        }
    }

    fn cell(&self, slot: u32) -> &Mutex<Cell<C>> {
        &self.cells[slot as usize].0
    }

    /// The fast checkout (no pool lock): takes the connection parked in
    /// `slot` if there is one and it is not over age, records the checkout
    /// (`record`) and, when no ping is due, counts it. `None`: take the slow
    /// path (nothing parked, the cell busy, or over age: it stays parked
    /// until a steal, a settle or the next maintenance round closes it).
    #[inline]
    pub(crate) fn try_take(
        &self,
        slot: u32,
        now: Tick,
        rules: &PingRules,
        record: impl FnOnce(&Meta) -> Checkout,
    ) -> Option<Taken<C>> {
        let mut cell = self.cell(slot).try_lock()?;
        let meta = &cell.parked.as_ref()?.meta;
        if meta.is_expired(now) {
            return None;
        }
        let ping = meta.needs_ping(now, rules);
        let cell = &mut *cell;
        let entry = cell.parked.take()?;
        // Written in place: a return always ends the record, so there is
        // none to drop here (measured: building it aside and moving it in
        // cost 25 instructions a checkout).
        debug_assert!(cell.holder.is_none());
        cell.holder = None;
        cell.holder.get_or_insert_with(|| record(&entry.meta));
        if !ping {
            cell.tally.checkouts += 1;
        }
        Some(Taken { entry, ping })
    }

    /// The fast return (no pool lock): ends the checkout record and counts
    /// the return (both in the cell), then parks the connection there if the
    /// slot is still pinned. The `bool` tells whether the checkout had been
    /// reported as a leak; `Err` gives the connection back for the locked
    /// return (the slot was unpinned).
    #[inline]
    pub(crate) fn park(&self, entry: Entry<C>, held_ns: u64) -> (bool, Result<(), Entry<C>>) {
        let mut cell = self.cell(entry.meta.slot).lock();
        let reported = cell.end_checkout(held_ns);
        if !cell.pinned {
            return (reported, Err(entry));
        }
        cell.parked = Some(entry);
        (reported, Ok(()))
    }

    /// Records the checkout of the slot's connection (slow path, after the
    /// pool's lock is released).
    pub(crate) fn hold(&self, slot: u32, record: Checkout) {
        self.cell(slot).lock().holder = Some(record);
    }

    /// Ends the checkout record of the slot's connection and counts the
    /// return (a return that will close it); `true` when it had been
    /// reported as a leak.
    pub(crate) fn release(&self, slot: u32, held_ns: u64) -> bool {
        self.cell(slot).lock().end_checkout(held_ns)
    }

    /// Unpins `slot` (pool lock held, the caller updates `State::pinned`)
    /// and takes the connection parked there, if any.
    fn unpin(&self, slot: u32) -> Option<Entry<C>> {
        let mut cell = self.cell(slot).lock();
        cell.pinned = false;
        cell.parked.take()
    }

    /// Pins a returned connection (pool lock held; `may_pin` said yes): it
    /// is parked in its cell for the returning thread, which the caller
    /// records with [`local::set_slot`].
    pub(crate) fn pin(&self, st: &mut State<C>, entry: Entry<C>, owner: u64) {
        let slot = entry.meta.slot;
        let mut cell = self.cell(slot).lock();
        debug_assert!(!cell.pinned && cell.parked.is_none());
        cell.pinned = true;
        cell.owner = owner;
        cell.parked = Some(entry);
        st.pinned.push(slot);
    }

    /// Unpins every pinned slot (pool lock held): parked connections move to
    /// the shared idle store, kept in order of their last return, and those
    /// out with a guard will come back through the locked return.
    pub(crate) fn settle(&self, st: &mut State<C>) {
        if st.pinned.is_empty() {
            return;
        }
        // In the order they were pinned: with equal return times (a coarse
        // clock) the one pinned last ends up newest.
        let mut pinned = std::mem::take(&mut st.pinned);
        for slot in pinned.drain(..) {
            if let Some(e) = self.unpin(slot) {
                st.insert_idle(e);
            }
        }
        st.pinned = pinned;
    }

    /// For thread `me`, which found the shared store empty (pool lock held):
    /// moves parked connections to the shared store; `false` when none was
    /// free to take, and then no slot is pinned any more.
    ///
    /// The thread's own parked connection, newest first, when it has one
    /// (what the shared store would have handed it: a thread that returned
    /// several gets them back in LIFO order). Otherwise threads are competing
    /// for connections, and per-thread parking is over until the shortage
    /// passes: every slot is unpinned ([`Slots::settle`]), so a connection
    /// out with its guard comes back through the locked return instead of
    /// staying with a thread that keeps taking it back on the fast path
    /// (measured: 64 threads starting at once on 10 connections, where the
    /// first 10 threads pinned theirs, got a fewest/most operations ratio of
    /// 0.03 to 0.16 when a steal took one connection at a time). The scan
    /// for the thread's own only tries the cells (`try_lock`): a cell busy
    /// with a checkout, a return, `holders()` or `stats()` is skipped rather
    /// than waited for under the pool's lock.
    pub(crate) fn steal(&self, st: &mut State<C>, me: u64) -> bool {
        let mut own: Option<(usize, Tick)> = None;
        for (i, slot) in st.pinned.iter().enumerate() {
            let Some(cell) = self.cell(*slot).try_lock() else {
                continue;
            };
            if let Some(e) = cell.parked.as_ref().filter(|_| cell.owner == me) {
                let t = e.meta.last_used;
                if own.is_none_or(|(_, o)| t >= o) {
                    own = Some((i, t));
                }
            }
        }
        let Some((i, _)) = own else {
            let before = st.idle.len();
            self.settle(st);
            return st.idle.len() > before;
        };
        let slot = st.pinned.remove(i);
        // Taken by a fast checkout since the scan: the slot is unpinned all
        // the same (its return takes the locked path); look again.
        match self.unpin(slot) {
            Some(e) => {
                st.insert_idle(e);
                true
            }
            None => self.steal(st, me),
        }
    }

    /// Unpins one slot whose connection is out with its guard and about to
    /// leave the pool (closed or detached), and ends its checkout record
    /// (pool lock held).
    pub(crate) fn unpin_leaving(&self, st: &mut State<C>, slot: u32) {
        let was_pinned = {
            let mut cell = self.cell(slot).lock();
            cell.holder = None;
            std::mem::replace(&mut cell.pinned, false)
        };
        if was_pinned {
            if let Some(i) = st.pinned.iter().position(|s| *s == slot) {
                st.pinned.remove(i);
            }
        }
    }

    /// Runs `f` on every cell in turn (each under its own lock).
    pub(crate) fn each(&self, mut f: impl FnMut(&mut Cell<C>)) {
        for padded in self.cells.iter() {
            f(&mut padded.0.lock());
        }
    }

    /// The current checkout records.
    pub(crate) fn holders(&self) -> Vec<Checkout> {
        let mut out = Vec::new();
        self.each(|c| out.extend(c.holder.clone()));
        out
    }

    /// The tallies of every cell, added into `counters`.
    pub(crate) fn add_tallies(&self, counters: &mut Counters) {
        self.each(|c| c.tally.add_to(counters));
    }

    /// The cell-side invariants, checked after a settle (pool lock held).
    pub(crate) fn check_invariants(&self, st: &State<C>) -> Result<(), String> {
        let mut problem = None;
        let mut held = 0;
        let mut pinned = 0;
        self.each(|c| {
            held += usize::from(c.holder.is_some());
            pinned += usize::from(c.pinned);
            if c.parked.is_some() && !c.pinned {
                problem = Some("a connection is parked in an unpinned cell".to_owned());
            }
        });
        if pinned != st.pinned.len() {
            problem = Some(format!(
                "{pinned} cells pinned, {} slots listed as pinned",
                st.pinned.len()
            ));
        }
        if held > st.in_use() {
            problem = Some(format!("{held} holder records > in use {}", st.in_use()));
        }
        problem.map_or(Ok(()), Err)
    }
}

/// What a thread remembers of the pool it used last, so that its next
/// checkout touches nothing shared: the slot it pinned, and its reference to
/// the pool (a guard needs an `Arc` to its pool; taking this one instead of
/// cloning the pool's saves two writes to one reference count that every
/// thread shares, measured as most of the cost of a checkout at 64 threads).
///
/// One pool at a time: a thread that alternates between pools takes the
/// slow path and clones. The reference keeps the pool's shared state (its
/// settings and manager, never a connection) allocated after the pool is
/// closed, until the thread exits or uses another pool. A guard returned to
/// a pool already closed does not keep it, and the thread that drops the
/// last `Pool` handle lets go of its own at once.
pub(crate) mod local {
    use std::any::Any;
    use std::cell::RefCell;
    use std::sync::Arc;

    use super::ThreadCell;

    type Home = (u64, Arc<dyn Any + Send + Sync>);

    thread_local! {
        /// `(pool id, slot)`; pool ids start at 1.
        static SLOT: ThreadCell<(u64, u32)> = const { ThreadCell::new((0, 0)) };
        /// This thread's reference to the pool it used last.
        static HOME: RefCell<Option<Home>> = const { RefCell::new(None) };
    }

    /// The slot this thread pinned last in pool `pool`.
    #[inline]
    pub(crate) fn slot(pool: u64) -> Option<u32> {
        let (p, slot) = SLOT.try_with(ThreadCell::get).unwrap_or((0, 0));
        (p == pool).then_some(slot)
    }

    /// Remembers that this thread pinned `slot` in pool `pool`.
    #[inline]
    pub(crate) fn set_slot(pool: u64, slot: u32) {
        let _ = SLOT.try_with(|c| c.set((pool, slot)));
    }

    /// This thread's reference to pool `pool`, if it keeps one (moved out:
    /// a guard holds it until it is returned with [`keep`]).
    #[inline]
    pub(crate) fn take<T: Any + Send + Sync>(pool: u64) -> Option<Arc<T>> {
        let home = HOME
            .try_with(|h| {
                let mut h = h.try_borrow_mut().ok()?;
                match &*h {
                    Some((p, _)) if *p == pool => h.take().map(|(_, home)| home),
                    _ => None,
                }
            })
            .ok()
            .flatten()?;
        home.downcast::<T>().ok()
    }

    /// Keeps `home` (pool `pool`) for this thread's next checkout, in place
    /// of any other pool's reference.
    #[inline]
    pub(crate) fn keep<T: Any + Send + Sync>(pool: u64, home: Arc<T>) {
        let old = HOME.try_with(|h| match h.try_borrow_mut() {
            Ok(mut h) => h.replace((pool, home)),
            Err(_) => None,
        });
        // Dropped outside the borrow: it may be a pool's last reference.
        drop(old);
    }

    /// Lets go of this thread's reference to pool `pool`, if it keeps one.
    pub(crate) fn forget(pool: u64) {
        let old = HOME.try_with(|h| match h.try_borrow_mut() {
            Ok(mut h) if h.as_ref().is_some_and(|(p, _)| *p == pool) => h.take(),
            _ => None,
        });
        drop(old);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::config::{Builder, Config};

    fn setup(size: usize) -> (Config, State<u32>, Slots<u32>) {
        let cfg = Builder::<()>::new()
            .pool_size(size)
            .max_overflow(0)
            .validate()
            .unwrap();
        (cfg, State::new(size), Slots::new(size))
    }

    /// A connection opened at `at`, as if checked out and returned then.
    fn returned_at(st: &mut State<u32>, cfg: &Config, at: u64) -> Entry<u32> {
        let meta = st.admit(cfg, Tick(at)).unwrap();
        Entry::new(meta.id as u32, meta)
    }

    /// A connection of the pool's current generation (what `may_pin` looks
    /// at besides the pool's state).
    fn any_meta(st: &State<u32>) -> Meta {
        Meta::new(99, 0, Tick(0), None, 0.0, st.generation)
    }

    fn record(conn_id: u64) -> Checkout {
        Checkout {
            conn_id,
            taken: Tick(0),
            thread: 0,
            site: std::panic::Location::caller(),
            backtrace: None,
            reported: false,
        }
    }

    const NO_PING: PingRules = PingRules {
        pre_ping: false,
        bypass: std::time::Duration::ZERO,
        suspect_before: Tick(0),
    };

    #[test]
    fn a_pinned_connection_goes_back_and_forth_through_its_cell() {
        let (cfg, mut st, slots) = setup(2);
        let e = returned_at(&mut st, &cfg, 1);
        let slot = e.meta.slot;
        assert!(st.may_pin(&cfg, &any_meta(&st), Tick(2)));
        slots.pin(&mut st, e, 1);
        for _ in 0..3 {
            let t = slots
                .try_take(slot, Tick(2), &NO_PING, |m| record(m.id))
                .unwrap();
            assert!(!t.ping);
            assert!(
                slots
                    .try_take(slot, Tick(2), &NO_PING, |m| record(m.id))
                    .is_none()
            );
            assert_eq!(slots.holders().len(), 1);
            assert!(matches!(slots.park(t.entry, 5), (false, Ok(()))));
        }
        let mut counters = Counters::default();
        slots.add_tallies(&mut counters);
        assert_eq!((counters.checkouts, counters.held_count), (3, 3));
        assert_eq!(st.idle.len(), 0, "parked, not in the shared store");
        slots.settle(&mut st);
        assert_eq!((st.idle.len(), st.pinned.len()), (1, 0));
        slots.check_invariants(&st).unwrap();
        st.check_invariants(&cfg).unwrap();
    }

    #[test]
    fn returns_do_not_pin_for_a_while_after_a_shortage() {
        let (cfg, mut st, _) = setup(2);
        let t0 = Tick(1_000_000_000);
        assert!(st.may_pin(&cfg, &any_meta(&st), t0), "never short: pins");
        st.last_shortage = Some(t0);
        let almost = t0.plus(crate::idle::PIN_HOLDOFF - std::time::Duration::from_nanos(1));
        assert!(!st.may_pin(&cfg, &any_meta(&st), almost));
        assert!(st.may_pin(&cfg, &any_meta(&st), t0.plus(crate::idle::PIN_HOLDOFF)));
    }

    #[test]
    fn a_return_to_an_unpinned_cell_takes_the_locked_path() {
        let (cfg, mut st, slots) = setup(1);
        let e = returned_at(&mut st, &cfg, 1);
        slots.pin(&mut st, e, 1);
        let t = slots
            .try_take(0, Tick(2), &NO_PING, |m| record(m.id))
            .unwrap();
        // A waiter arrives: it settles, which unpins the slot.
        slots.settle(&mut st);
        assert!(slots.park(t.entry, 0).1.is_err());
    }

    #[test]
    fn a_cell_fills_one_pair_of_cache_lines() {
        // Checked in CI rather than timed: a field that grows the cell past
        // 128 bytes doubles every slot's memory.
        assert_eq!(std::mem::size_of::<Padded<u64>>(), 128);
        // Any connection type: the cell holds it boxed.
        assert_eq!(std::mem::size_of::<Padded<[u8; 4096]>>(), 128);
    }

    #[test]
    fn a_steal_from_another_thread_settles_every_slot_in_return_order() {
        let (cfg, mut st, slots) = setup(3);
        let old = returned_at(&mut st, &cfg, 10);
        let new = returned_at(&mut st, &cfg, 30);
        let mid = returned_at(&mut st, &cfg, 20);
        let (old_id, mid_id, new_id) = (old.meta.id, mid.meta.id, new.meta.id);
        for e in [old, new, mid] {
            slots.pin(&mut st, e, 1);
        }
        assert!(
            !st.may_pin(&cfg, &any_meta(&st), Tick(2)),
            "idle + pinned = pool_size"
        );
        // Thread 2 has none of its own parked: every slot is unpinned and
        // the shared store holds all three, newest last (handed out first).
        assert!(slots.steal(&mut st, 2));
        assert!(st.pinned.is_empty());
        let ids: Vec<u64> = st.idle.iter().map(|e| e.meta.id).collect();
        assert_eq!(ids, [old_id, mid_id, new_id]);
        assert!(!slots.steal(&mut st, 2), "nothing parked any more");
    }

    #[test]
    fn a_steal_unpins_slots_whose_connection_is_out() {
        let (cfg, mut st, slots) = setup(2);
        let e = returned_at(&mut st, &cfg, 10);
        let slot = e.meta.slot;
        slots.pin(&mut st, e, 1);
        let t = slots
            .try_take(slot, Tick(12), &NO_PING, |m| record(m.id))
            .unwrap();
        assert!(!slots.steal(&mut st, 2), "nothing parked to take");
        assert!(st.pinned.is_empty());
        // Its owner's return takes the locked path (to the waiters).
        assert!(slots.park(t.entry, 0).1.is_err());
    }

    #[test]
    fn a_thread_steals_its_own_parked_connections_first_newest_first() {
        let (cfg, mut st, slots) = setup(3);
        let mine_old = returned_at(&mut st, &cfg, 10);
        let theirs = returned_at(&mut st, &cfg, 5);
        let mine_new = returned_at(&mut st, &cfg, 20);
        let (old_id, new_id) = (mine_old.meta.id, mine_new.meta.id);
        slots.pin(&mut st, mine_old, 7);
        slots.pin(&mut st, theirs, 8);
        slots.pin(&mut st, mine_new, 7);
        assert!(slots.steal(&mut st, 7));
        assert_eq!(st.idle.pop().unwrap().meta.id, new_id);
        assert!(slots.steal(&mut st, 7));
        assert_eq!(st.idle.pop().unwrap().meta.id, old_id);
        // None of its own left: the other thread's goes back too.
        assert!(slots.steal(&mut st, 7));
        assert_eq!((st.idle.len(), st.pinned.len()), (1, 0));
    }

    #[test]
    fn an_over_age_parked_connection_is_left_for_the_slow_path() {
        let cfg = Builder::<()>::new()
            .pool_size(1)
            .recycle_after(std::time::Duration::from_secs(1))
            .recycle_spread(0.0)
            .validate()
            .unwrap();
        let (mut st, slots) = (State::new(1), Slots::new(1));
        let e = returned_at(&mut st, &cfg, 0);
        slots.pin(&mut st, e, 1);
        let late = Tick(2_000_000_000);
        assert!(
            slots
                .try_take(0, late, &NO_PING, |m| record(m.id))
                .is_none()
        );
        assert!(slots.steal(&mut st, 2));
        let mut closing = Vec::new();
        assert!(st.pop_idle(late, &mut closing).is_none());
        assert_eq!(closing.len(), 1, "closed as recycled");
    }
}
