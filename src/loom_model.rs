//! Model checking of the hand-off and accounting with loom.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test --release --lib loom_`
//! (`.ci/run` does). The models drive the same `State` methods the pool
//! uses under its lock (`check_in`, `poll_waiter`, `cancel_waiter`, `close`,
//! `start_attempt` / `end_attempt` / `admit_new`, `reap_hung_attempts`) and
//! the cells' fast paths (`Slots::try_take`, `park`, `pin`, `steal`,
//! `settle`) through the `sync` shim, so loom explores every interleaving of the lock,
//! the waiters' condition variables and their hand-off slots.
//!
//! loom has no time: a waiter's timeout is modelled as the waiter giving up
//! (poll once, then cancel) at whatever point loom schedules it, racing the
//! hand-off. Not covered here (covered by the stress, soak and model tests
//! instead): the driver calls made outside the lock, real deadlines and
//! backoff delays, the connect and maintenance threads' loops, and
//! `parking_lot` itself (loom's mutex and condvar stand in for it).

use std::sync::Arc;
use std::time::{Duration, Instant};

use loom::thread;

use crate::clock::Tick;
use crate::config::{Builder, Config};
use crate::entry::{Entry, PingRules};
use crate::idle::{Closing, Poll, State, Waiter};
use crate::leak::Checkout;
use crate::slots::Slots;
use crate::sync::Mutex;

type Shared = Arc<Mutex<State<u32>>>;

fn config(barging_window: Duration) -> Arc<Config> {
    Arc::new(
        Builder::<()>::new()
            .pool_size(1)
            .max_overflow(0)
            .barging_window(barging_window)
            .validate()
            .expect("valid config"),
    )
}

/// Windows that make barging deterministic: never, and always.
const WINDOWS: [Duration; 2] = [Duration::ZERO, Duration::from_secs(3600)];

/// One open connection, checked out.
fn checked_out(st: &Shared, cfg: &Config) -> Entry<u32> {
    let mut g = st.lock();
    g.counters.created += 1;
    let meta = g.admit(cfg, Tick(1)).expect("room for one");
    Entry::new(7, meta)
}

/// A checkout that waits without a deadline: `Err(())` when the pool closes.
fn checkout_waiting(st: &Shared, cfg: &Config) -> Result<Entry<u32>, ()> {
    let mut closing: Closing<u32> = Vec::new();
    let now = Instant::now();
    let mut g = st.lock();
    if g.closed {
        return Err(());
    }
    if g.may_barge(cfg.barging_window, now) {
        if let Some(e) = g.pop_idle(Tick(2), &mut closing) {
            return Ok(e);
        }
    }
    let me = g.enqueue(Instant::now());
    loop {
        match g.poll_waiter(&me, Tick(2), &mut closing) {
            Poll::Ready(e) => return Ok(e),
            Poll::Closed => return Err(()),
            Poll::Pending => {
                me.cv.wait_until(&mut g, Instant::now());
                g.woke(me.id);
            }
        }
    }
}

/// A waiter that queues, lets the others run, then looks once and gives up
/// if nothing came: a timeout at an arbitrary moment.
fn checkout_then_time_out(st: &Shared) -> Option<Entry<u32>> {
    let me = st.lock().enqueue(Instant::now());
    look_once_then_give_up(st, &me)
}

/// A queued waiter looks once; if nothing came, it gives up (its deadline).
fn look_once_then_give_up(st: &Shared, me: &Waiter<u32>) -> Option<Entry<u32>> {
    let mut closing: Closing<u32> = Vec::new();
    let mut g = st.lock();
    match g.poll_waiter(me, Tick(2), &mut closing) {
        Poll::Ready(e) => Some(e),
        Poll::Closed => None,
        Poll::Pending => {
            g.cancel_waiter(me.id);
            None
        }
    }
}

fn check_in(st: &Shared, cfg: &Config, entry: Entry<u32>) -> Closing<u32> {
    let mut closing = Vec::new();
    st.lock()
        .check_in(cfg, entry, None, Instant::now(), &mut closing);
    closing
}

/// A pool of one connection, checked out, that another thread returns.
fn one_connection_being_returned(
    window: Duration,
) -> (Arc<Config>, Shared, thread::JoinHandle<()>) {
    let cfg = config(window);
    let st: Shared = Arc::new(Mutex::new(State::new(1)));
    let entry = checked_out(&st, &cfg);
    let returner = {
        let (st, cfg) = (Arc::clone(&st), Arc::clone(&cfg));
        thread::spawn(move || assert!(check_in(&st, &cfg, entry).is_empty()))
    };
    (cfg, st, returner)
}

fn assert_at_rest(st: &Shared, cfg: &Config) {
    let g = st.lock();
    g.check_invariants(cfg).expect("invariants");
    assert!(g.waiters.is_empty(), "no waiter left behind");
    assert_eq!(g.woken, None, "no stale wake-up");
    let c = &g.counters;
    let closed: u64 = c.closed.iter().sum();
    assert_eq!(
        c.created - closed - c.detached,
        g.open as u64,
        "counters add up"
    );
}

#[test]
fn loom_get_return_race_never_loses_a_wake_up() {
    for window in WINDOWS {
        loom::model(move || {
            let (cfg, st, returner) = one_connection_being_returned(window);
            // Waits until the returned connection reaches it (loom reports a
            // deadlock if a wake-up is lost).
            let got = checkout_waiting(&st, &cfg).expect("not closed");
            assert_eq!(got.conn, 7);
            returner.join().unwrap();
            assert!(st.lock().idle.is_empty());
            assert_at_rest(&st, &cfg);
        });
    }
}

#[test]
fn loom_waiter_timing_out_as_a_connection_returns_loses_nothing() {
    for window in WINDOWS {
        loom::model(move || {
            let (cfg, st, returner) = one_connection_being_returned(window);
            let got = checkout_then_time_out(&st);
            returner.join().unwrap();
            // Either the waiter got it, or it is idle: never both, never lost.
            let idle = st.lock().idle.len();
            assert_eq!(usize::from(got.is_some()) + idle, 1);
            assert_eq!(st.lock().open, 1);
            assert_at_rest(&st, &cfg);
        });
    }
}

#[test]
fn loom_close_racing_get_and_return_closes_everything_once() {
    loom::model(|| {
        let cfg = config(Duration::ZERO);
        let st: Shared = Arc::new(Mutex::new(State::new(1)));
        let entry = checked_out(&st, &cfg);
        let returner = {
            let (st, cfg) = (Arc::clone(&st), Arc::clone(&cfg));
            thread::spawn(move || drop(check_in(&st, &cfg, entry)))
        };
        let closer = {
            let st = Arc::clone(&st);
            thread::spawn(move || {
                let (closing, waiters) = st.lock().close();
                drop((closing, waiters));
            })
        };
        if let Ok(e) = checkout_waiting(&st, &cfg) {
            // The caller is done with it: its return meets a closed pool or
            // an open one that close() then empties.
            drop(check_in(&st, &cfg, e));
        }
        returner.join().unwrap();
        closer.join().unwrap();
        let g = st.lock();
        assert!(g.closed);
        assert_eq!((g.open, g.idle.len()), (0, 0));
        assert_eq!(
            g.counters.closed.iter().sum::<u64>(),
            1,
            "closed exactly once"
        );
        drop(g);
        assert_at_rest(&st, &cfg);
    });
}

#[test]
fn loom_connect_finishing_after_its_waiter_gave_up_is_kept() {
    loom::model(|| {
        let cfg = config(Duration::ZERO);
        let st: Shared = Arc::new(Mutex::new(State::new(1)));
        let (me, attempt) = {
            let mut g = st.lock();
            let me = g.enqueue(Instant::now());
            let attempt = g.start_attempt(Instant::now());
            (me, attempt)
        };
        let connector = {
            let (st, cfg) = (Arc::clone(&st), Arc::clone(&cfg));
            thread::spawn(move || {
                let mut closing = Vec::new();
                let mut g = st.lock();
                assert!(g.end_attempt(attempt.id));
                assert!(g.admit_new(&cfg, attempt, 9, Tick(3), &mut closing).is_ok());
                assert!(closing.is_empty());
            })
        };
        let got = look_once_then_give_up(&st, &me);
        assert!(!st.lock().closed);
        connector.join().unwrap();
        let g = st.lock();
        assert_eq!((g.open, g.opening), (1, 0));
        assert_eq!(usize::from(got.is_some()) + g.idle.len(), 1);
        drop(g);
        assert_at_rest(&st, &cfg);
    });
}

#[test]
fn loom_hung_attempt_reaped_while_its_result_arrives_is_counted_once() {
    loom::model(|| {
        let cfg = config(Duration::ZERO);
        let st: Shared = Arc::new(Mutex::new(State::new(1)));
        let attempt = st.lock().start_attempt(Instant::now());
        let reaper = {
            let (st, cfg) = (Arc::clone(&st), Arc::clone(&cfg));
            thread::spawn(move || {
                // Far past connect_timeout: the attempt is given up on.
                let later = Instant::now() + Duration::from_secs(3600);
                st.lock().reap_hung_attempts(&cfg, later);
            })
        };
        let late = {
            let mut closing = Vec::new();
            let mut g = st.lock();
            g.end_attempt(attempt.id);
            let kept = g.admit_new(&cfg, attempt, 5, Tick(3), &mut closing);
            assert!(closing.is_empty());
            kept.err()
        };
        reaper.join().unwrap();
        let g = st.lock();
        assert_eq!(g.opening, 0);
        assert!(g.attempts.is_empty());
        // Reaped or not, there was room: the connection is kept, never leaked.
        assert!(late.is_none());
        assert_eq!((g.open, g.idle.len()), (1, 1));
        assert_eq!(g.counters.closed.iter().sum::<u64>(), 0);
        drop(g);
        assert_at_rest(&st, &cfg);
    });
}

// ---- the fast path: pinned connections and their cells -------------------

type Cells = Arc<Slots<u32>>;

const NO_PING: PingRules = PingRules {
    pre_ping: false,
    bypass: Duration::ZERO,
    suspect_before: Tick(0),
};

fn record(conn_id: u64) -> Checkout {
    Checkout {
        conn_id,
        taken: Tick(2),
        thread: 0,
        site: std::panic::Location::caller(),
        backtrace: None,
        reported: false,
    }
}

/// A pool of one connection, pinned on an earlier return and parked in its
/// cell (slot 0) for the thread that returned it.
fn one_pinned_connection() -> (Arc<Config>, Shared, Cells) {
    let cfg = config(Duration::ZERO);
    let st: Shared = Arc::new(Mutex::new(State::new(1)));
    let cells: Cells = Arc::new(Slots::new(1));
    let entry = checked_out(&st, &cfg);
    let mut g = st.lock();
    assert!(g.may_pin(&cfg, &entry.meta, Tick(2)));
    cells.pin(&mut g, entry, 1);
    drop(g);
    (cfg, st, cells)
}

/// A return as the guard makes it: parked in its cell while the slot is
/// pinned, otherwise through the lock (pinned again, or to a waiter).
fn give_back(st: &Shared, cells: &Cells, cfg: &Config, entry: Entry<u32>) {
    let (_, Err(entry)) = cells.park(entry, 0) else {
        return;
    };
    let mut closing = Vec::new();
    let mut g = st.lock();
    if g.may_pin(cfg, &entry.meta, Tick(2)) {
        cells.pin(&mut g, entry, 1);
    } else {
        cells.settle(&mut g);
        g.check_in(cfg, entry, None, Instant::now(), &mut closing);
    }
    assert!(closing.is_empty());
}

/// A checkout as the pool makes it: the hinted cell first, then the shared
/// store, a steal, and finally a settle and a wait without deadline.
fn checkout_like_the_pool(st: &Shared, cells: &Cells, hint: Option<u32>) -> Entry<u32> {
    if let Some(slot) = hint {
        if let Some(t) = cells.try_take(slot, Tick(2), &NO_PING, |m| record(m.id)) {
            return t.entry;
        }
    }
    let mut closing: Closing<u32> = Vec::new();
    let mut g = st.lock();
    let mut idle = g.pop_idle(Tick(2), &mut closing);
    while idle.is_none() && cells.steal(&mut g, 2) {
        idle = g.pop_idle(Tick(2), &mut closing);
    }
    if let Some(e) = idle {
        cells.hold(e.meta.slot, record(e.meta.id));
        return e;
    }
    cells.settle(&mut g);
    let me = g.enqueue(Instant::now());
    loop {
        match g.poll_waiter(&me, Tick(2), &mut closing) {
            Poll::Ready(e) => {
                drop(g);
                cells.hold(e.meta.slot, record(e.meta.id));
                return e;
            }
            Poll::Closed => unreachable!("the pool is not closed"),
            Poll::Pending => {
                me.cv.wait_until(&mut g, Instant::now());
                g.woke(me.id);
            }
        }
    }
}

/// At rest: after a settle, one connection, idle, every invariant holds.
fn assert_one_idle_at_rest(st: &Shared, cells: &Cells, cfg: &Config) {
    let mut g = st.lock();
    cells.settle(&mut g);
    cells.check_invariants(&g).expect("cell invariants");
    assert_eq!((g.open, g.idle.len()), (1, 1));
    drop(g);
    assert_at_rest(st, cfg);
}

#[test]
fn loom_fast_return_racing_a_waiter_reaches_the_waiter() {
    loom::model(|| {
        let (cfg, st, cells) = one_pinned_connection();
        // Its thread has it out (taken back from the cell without the lock).
        let out = checkout_like_the_pool(&st, &cells, Some(0));
        let owner = {
            let (st, cells, cfg) = (Arc::clone(&st), Arc::clone(&cells), Arc::clone(&cfg));
            thread::spawn(move || give_back(&st, &cells, &cfg, out))
        };
        // Another thread, with no hint, finds nothing idle and waits: the
        // return must reach it whichever of the two takes the cell first
        // (loom reports a deadlock if it is lost).
        let got = checkout_like_the_pool(&st, &cells, None);
        assert_eq!(got.conn, 7);
        owner.join().unwrap();
        give_back(&st, &cells, &cfg, got);
        assert_one_idle_at_rest(&st, &cells, &cfg);
    });
}

#[test]
fn loom_owner_and_thief_share_one_pinned_connection_without_loss() {
    loom::model(|| {
        let (cfg, st, cells) = one_pinned_connection();
        let owner = {
            let (st, cells, cfg) = (Arc::clone(&st), Arc::clone(&cells), Arc::clone(&cfg));
            thread::spawn(move || {
                let e = checkout_like_the_pool(&st, &cells, Some(0));
                assert_eq!(e.conn, 7);
                give_back(&st, &cells, &cfg, e);
            })
        };
        let e = checkout_like_the_pool(&st, &cells, None);
        assert_eq!(e.conn, 7);
        give_back(&st, &cells, &cfg, e);
        owner.join().unwrap();
        assert_one_idle_at_rest(&st, &cells, &cfg);
    });
}
