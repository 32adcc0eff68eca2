//! Event hooks: each fires with the right data, outside the pool's lock, and
//! a panicking hook is contained and logged.

mod common;

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use cistern::testing::FaultManager;
use cistern::{Clock, CloseReason, EventHandler, Pool, Pooled};
use common::{
    BuildOn, EVENTUALLY, assert_counters_add_up, eventually, log_capture, poll_until, sized,
};

#[derive(Debug, Clone, PartialEq)]
enum Event {
    Connect { conn: u64, took: Duration },
    ConnectError(String),
    Checkout { conn: u64, waited: Duration },
    Checkin { conn: u64, held: Duration },
    Timeout(Duration),
    Close { conn: u64, reason: CloseReason },
    Leak { conn: u64, held: Duration },
}

/// Records every event; optionally calls back into the pool from each hook
/// (which deadlocks if a hook runs under the pool's lock).
#[derive(Default)]
struct Inner {
    events: Mutex<Vec<(String, Event)>>,
    reenter: Mutex<Option<Pool<FaultManager>>>,
}

#[derive(Clone, Default)]
struct Recorder(Arc<Inner>);

impl Recorder {
    fn push(&self, pool: &str, e: Event) {
        // Clone the handle out first: the pool may call us again from
        // inside what we call.
        let reenter = self.0.reenter.lock().unwrap().clone();
        if let Some(p) = reenter {
            let s = p.stats();
            assert_eq!(s.name, pool);
            let _ = p.health();
            let _ = p.holders();
            let _ = p.prometheus();
        }
        self.0.events.lock().unwrap().push((pool.to_owned(), e));
    }

    fn events(&self) -> Vec<Event> {
        self.0
            .events
            .lock()
            .unwrap()
            .iter()
            .map(|(_, e)| e.clone())
            .collect()
    }

    /// The first recorded event that matches `pred`, waiting for it (20 s
    /// at most).
    fn wait_for(&self, what: &str, pred: impl Fn(&Event) -> bool) -> Event {
        let mut found = None;
        let seen = poll_until(EVENTUALLY, || {
            found = self.events().into_iter().find(|e| pred(e));
            found.is_some()
        });
        assert!(seen, "no {what} event in {:#?}", self.events());
        found.unwrap()
    }
}

impl EventHandler for Recorder {
    fn on_connect(&self, pool: &str, conn: u64, took: Duration) {
        self.push(pool, Event::Connect { conn, took });
    }
    fn on_connect_error(&self, pool: &str, error: &(dyn std::error::Error + 'static)) {
        self.push(pool, Event::ConnectError(error.to_string()));
    }
    fn on_checkout(&self, pool: &str, conn: u64, waited: Duration) {
        self.push(pool, Event::Checkout { conn, waited });
    }
    fn on_checkin(&self, pool: &str, conn: u64, held: Duration) {
        self.push(pool, Event::Checkin { conn, held });
    }
    fn on_timeout(&self, pool: &str, waited: Duration) {
        self.push(pool, Event::Timeout(waited));
    }
    fn on_close(&self, pool: &str, conn: u64, reason: CloseReason) {
        self.push(pool, Event::Close { conn, reason });
    }
    fn on_leak(&self, pool: &str, conn: u64, held: Duration) {
        self.push(pool, Event::Leak { conn, held });
    }
}

fn pool_with(
    name: &str,
    rec: &Recorder,
    db: &FaultManager,
    f: impl FnOnce(cistern::Builder<FaultManager>) -> cistern::Builder<FaultManager>,
) -> Pool<FaultManager> {
    let b = Pool::builder()
        .name(name)
        .backoff_initial(Duration::from_millis(5))
        .backoff_max(Duration::from_millis(20))
        .event_handler(rec.clone());
    f(b).build_on(db)
}

#[test]
fn connect_hook_reports_the_connection_and_how_long_it_took() {
    let (rec, db) = (Recorder::default(), FaultManager::new());
    db.connect_delay(Duration::from_millis(30));
    let pool = pool_with("events-connect", &rec, &db, |b| b);
    let conn = pool.get().unwrap();
    let id = Pooled::id(&conn);
    match rec.wait_for("connect", |e| matches!(e, Event::Connect { .. })) {
        Event::Connect { conn, took } => {
            assert_eq!(conn, id);
            assert!(took >= Duration::from_millis(30), "took {took:?}");
        }
        other => unreachable!("{other:?}"),
    }
}

#[test]
fn connect_error_hook_gets_the_drivers_error() {
    let (rec, db) = (Recorder::default(), FaultManager::new());
    let pool = pool_with("events-connect-error", &rec, &db, |b| b);
    db.fail_next_connects(2);
    let conn = pool.get().unwrap();
    let errors = || -> Vec<String> {
        rec.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::ConnectError(m) => Some(m),
                _ => None,
            })
            .collect()
    };
    // The hook runs on the connect thread: wait for the second report.
    rec.wait_for("the second connect error", |_| errors().len() >= 2);
    let errors = errors();
    assert_eq!(errors.len(), 2, "every failed attempt: {errors:?}");
    assert!(errors[0].contains("failed (scripted)"), "{errors:?}");
    let id = Pooled::id(&conn);
    rec.wait_for(
        "the connect that worked",
        |e| matches!(e, Event::Connect { conn, .. } if *conn == id),
    );
}

#[test]
fn checkout_hook_reports_how_long_the_checkout_waited() {
    let (rec, db) = (Recorder::default(), FaultManager::new());
    let pool = pool_with("events-checkout", &rec, &db, |b| {
        b.pool_size(1).max_overflow(0)
    });
    let first = pool.get().unwrap();
    drop(first);
    let held = pool.get().unwrap();
    let id = Pooled::id(&held);
    let immediate = rec
        .events()
        .into_iter()
        .filter(|e| matches!(e, Event::Checkout { .. }))
        .nth(1)
        .unwrap();
    assert_eq!(
        immediate,
        Event::Checkout {
            conn: id,
            waited: Duration::ZERO
        },
        "an idle connection is handed out without waiting"
    );
    let waiter = {
        let pool = pool.clone();
        thread::spawn(move || drop(pool.get().unwrap()))
    };
    eventually("a waiter", || pool.stats().waiting > 0);
    thread::sleep(Duration::from_millis(10));
    drop(held);
    waiter.join().unwrap();
    let waited: Vec<Duration> = rec
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Checkout { conn, waited } if conn == id => Some(waited),
            _ => None,
        })
        .collect();
    assert_eq!(waited.len(), 3);
    assert!(
        waited[2] >= Duration::from_millis(10),
        "the third checkout waited for the return: {waited:?}"
    );
}

#[test]
fn checkin_hook_reports_how_long_the_guard_was_held() {
    let (rec, db) = (Recorder::default(), FaultManager::new());
    let clock = Clock::manual();
    let pool = pool_with("events-checkin", &rec, &db, |b| b.clock(clock.clone()));
    let conn = pool.get().unwrap();
    let id = Pooled::id(&conn);
    clock.advance(Duration::from_secs(5));
    drop(conn);
    assert!(rec.events().contains(&Event::Checkin {
        conn: id,
        held: Duration::from_secs(5)
    }));
}

#[test]
fn timeout_hook_reports_the_wait() {
    let (rec, db) = (Recorder::default(), FaultManager::new());
    let pool = pool_with("events-timeout", &rec, &db, |b| {
        b.pool_size(1).max_overflow(0)
    });
    let held = pool.get().unwrap();
    assert!(
        pool.get_timeout(Duration::from_millis(50))
            .unwrap_err()
            .is_timeout()
    );
    let timeouts: Vec<Duration> = rec
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Timeout(w) => Some(w),
            _ => None,
        })
        .collect();
    assert_eq!(timeouts.len(), 1);
    assert!(timeouts[0] >= Duration::from_millis(50), "{timeouts:?}");
    drop(held);
}

#[test]
fn close_hook_reports_the_reason() {
    let (rec, db) = (Recorder::default(), FaultManager::new());
    let clock = Clock::manual();
    let pool = pool_with("events-close", &rec, &db, |b| {
        b.pool_size(1)
            .max_overflow(1)
            .clock(clock.clone())
            .recycle_after(Duration::from_secs(60))
            .ping_bypass(Duration::ZERO)
    });
    let closed = |id: u64, reason: CloseReason| {
        rec.wait_for(&format!("close of {id} ({reason})"), |e| {
            *e == Event::Close { conn: id, reason }
        });
    };
    // Broken.
    let mut conn = pool.get().unwrap();
    let id = Pooled::id(&conn);
    Pooled::mark_broken(&mut conn);
    drop(conn);
    closed(id, CloseReason::Broken);
    // Excess: two out, the second returned while the base is idle.
    let a = pool.get().unwrap();
    let b = pool.get().unwrap();
    let (a_id, b_id) = (Pooled::id(&a), Pooled::id(&b));
    drop(a);
    drop(b);
    closed(b_id, CloseReason::Excess);
    // Failed ping of the idle one.
    db.fail_next_pings(1);
    let conn = pool.get().unwrap();
    closed(a_id, CloseReason::FailedPing);
    // Recycled on return.
    let id = Pooled::id(&conn);
    clock.advance(Duration::from_secs(120));
    drop(conn);
    closed(id, CloseReason::Recycled);
    // Retired.
    let id = Pooled::id(&pool.get().unwrap());
    pool.retire_all();
    closed(id, CloseReason::Retired);
    // Pool closed.
    let id = Pooled::id(&pool.get().unwrap());
    pool.close();
    closed(id, CloseReason::PoolClosed);
}

#[test]
fn close_hook_reports_idle_timeouts() {
    let (rec, db) = (Recorder::default(), FaultManager::new());
    let clock = Clock::manual();
    let pool = pool_with("events-idle-timeout", &rec, &db, |b| {
        b.clock(clock.clone())
            .idle_timeout(Duration::from_millis(40))
            .recycle_after(None)
    });
    let id = Pooled::id(&pool.get().unwrap());
    clock.advance(Duration::from_secs(3600));
    rec.wait_for("idle timeout close", |e| {
        *e == Event::Close {
            conn: id,
            reason: CloseReason::IdleTimeout,
        }
    });
}

#[test]
fn leak_hook_reports_the_guard_and_how_long_it_was_held() {
    let (rec, db) = (Recorder::default(), FaultManager::new());
    let clock = Clock::manual();
    let pool = pool_with("events-leak", &rec, &db, |b| {
        b.clock(clock.clone())
            .leak_threshold(Duration::from_millis(40))
            .recycle_after(None)
    });
    let conn = pool.get().unwrap();
    clock.advance(Duration::from_secs(60));
    match rec.wait_for("leak", |e| matches!(e, Event::Leak { .. })) {
        Event::Leak { conn: id, held } => {
            assert_eq!(id, Pooled::id(&conn));
            assert!(held >= Duration::from_secs(60), "{held:?}");
        }
        other => unreachable!("{other:?}"),
    }
    let leaks = rec
        .events()
        .iter()
        .filter(|e| matches!(e, Event::Leak { .. }))
        .count();
    assert_eq!(leaks, 1, "each guard is reported once");
    drop(conn);
}

/// Drives a pool through every kind of event.
fn every_event(pool: &Pool<FaultManager>, db: &FaultManager, clock: &Clock) {
    db.fail_next_connects(1);
    let a = pool.get().unwrap();
    let b = pool.get().unwrap();
    assert!(
        pool.get_timeout(Duration::from_millis(20))
            .unwrap_err()
            .is_timeout()
    );
    let waiter = {
        let pool = pool.clone();
        thread::spawn(move || pool.get().map(drop))
    };
    eventually("the waiter to queue", || pool.stats().waiting > 0);
    drop(a);
    waiter.join().unwrap().unwrap();
    clock.advance(Duration::from_secs(600));
    eventually("a leak report", || pool.stats().leaks_reported > 0);
    let mut b = b;
    Pooled::mark_broken(&mut b);
    drop(b);
    pool.close();
}

fn every_hook_fired(events: &[Event]) {
    let fired = |f: fn(&Event) -> bool| events.iter().any(f);
    assert!(fired(|e| matches!(e, Event::Connect { .. })), "{events:#?}");
    assert!(
        fired(|e| matches!(e, Event::ConnectError(_))),
        "{events:#?}"
    );
    assert!(
        fired(|e| matches!(e, Event::Checkout { .. })),
        "{events:#?}"
    );
    assert!(fired(|e| matches!(e, Event::Checkin { .. })), "{events:#?}");
    assert!(fired(|e| matches!(e, Event::Timeout(_))), "{events:#?}");
    assert!(fired(|e| matches!(e, Event::Close { .. })), "{events:#?}");
    assert!(fired(|e| matches!(e, Event::Leak { .. })), "{events:#?}");
}

fn full_pool(
    name: &str,
    handler: impl EventHandler,
    db: &FaultManager,
    clock: &Clock,
) -> Pool<FaultManager> {
    sized(2, 0)
        .name(name)
        .clock(clock.clone())
        .leak_threshold(Duration::from_millis(40))
        .backoff_initial(Duration::from_millis(5))
        .backoff_max(Duration::from_millis(20))
        .event_handler(handler)
        .build_on(db)
}

#[test]
fn hooks_run_outside_the_lock_so_they_may_call_the_pool() {
    let (rec, db, clock) = (Recorder::default(), FaultManager::new(), Clock::manual());
    let pool = full_pool("events-reentrant", rec.clone(), &db, &clock);
    *rec.0.reenter.lock().unwrap() = Some(pool.clone());
    let (done_tx, done_rx) = mpsc::channel();
    {
        let (pool, db, clock) = (pool.clone(), db.clone(), clock.clone());
        thread::spawn(move || {
            every_event(&pool, &db, &clock);
            let _ = done_tx.send(());
        });
    }
    let finished = done_rx.recv_timeout(Duration::from_secs(60));
    // Break the pool -> handler -> pool cycle.
    rec.0.reenter.lock().unwrap().take();
    assert!(
        finished.is_ok(),
        "a hook that calls pool.stats() deadlocked: hooks must run outside the lock"
    );
    every_hook_fired(&rec.events());
}

/// Panics in every hook.
struct Panicky;

impl EventHandler for Panicky {
    fn on_connect(&self, _: &str, _: u64, _: Duration) {
        panic!("hook panic (expected by the test): on_connect");
    }
    fn on_connect_error(&self, _: &str, _: &(dyn std::error::Error + 'static)) {
        panic!("hook panic (expected by the test): on_connect_error");
    }
    fn on_checkout(&self, _: &str, _: u64, _: Duration) {
        panic!("hook panic (expected by the test): on_checkout");
    }
    fn on_checkin(&self, _: &str, _: u64, _: Duration) {
        panic!("hook panic (expected by the test): on_checkin");
    }
    fn on_timeout(&self, _: &str, _: Duration) {
        panic!("hook panic (expected by the test): on_timeout");
    }
    fn on_close(&self, _: &str, _: u64, _: CloseReason) {
        panic!("hook panic (expected by the test): on_close");
    }
    fn on_leak(&self, _: &str, _: u64, _: Duration) {
        panic!("hook panic (expected by the test): on_leak");
    }
}

#[test]
fn a_panicking_hook_is_contained_and_logged() {
    log_capture::install();
    let (db, clock) = (FaultManager::new(), Clock::manual());
    let pool = full_pool("events-panicky", Panicky, &db, &clock);
    // Before closing: the pool keeps serving, with consistent numbers.
    db.fail_next_connects(1);
    let a = pool.get().unwrap();
    let b = pool.get().unwrap();
    assert!(
        pool.get_timeout(Duration::from_millis(20))
            .unwrap_err()
            .is_timeout()
    );
    drop(a);
    let mut b = b;
    Pooled::mark_broken(&mut b);
    drop(b);
    for _ in 0..5 {
        drop(pool.get().unwrap());
    }
    pool.check_invariants().unwrap();
    let s = pool.stats();
    assert_counters_add_up(&s);
    assert_eq!((s.in_use, s.closed_by.broken), (0, 1));
    assert_eq!(s.held.count, s.checkouts);
    drop(pool);
    // Then every other hook, on a fresh pool.
    let (db, clock) = (FaultManager::new(), Clock::manual());
    let pool = full_pool("events-panicky-all", Panicky, &db, &clock);
    every_event(&pool, &db, &clock);
    pool.check_invariants().unwrap();
    assert_eq!(pool.stats().open, 0);

    let lines = log_capture::of_pool("events-panicky-all");
    for hook in [
        "on_connect",
        "on_connect_error",
        "on_checkout",
        "on_checkin",
        "on_timeout",
        "on_close",
        "on_leak",
    ] {
        let wanted = format!("event handler panicked in {hook};");
        assert!(
            lines
                .iter()
                .any(|l| l.level == log::Level::Error && l.text.contains(&wanted)),
            "no error line for {hook}: {lines:#?}"
        );
    }
}
