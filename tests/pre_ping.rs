//! Rule 6: pre-ping. A connection is pinged before it is handed out unless
//! it came back less than `ping_bypass` ago; inside that window the no-I/O
//! `is_broken` check still runs, so a connection the server closed is never
//! handed out. A failed ping closes the connection, makes every older
//! connection be pinged on its next checkout, and the checkout goes on
//! within the same deadline. `retire_all` replaces every connection.

mod common;

use std::time::{Duration, Instant};

use cistern::testing::FaultManager;
use cistern::{Clock, Pool, Pooled};
use common::{BuildOn, Gated, at_rest_with_db as at_rest, eventually, eventually_within, sized};

const BYPASS: Duration = Duration::from_millis(500);

/// A pool of `size` (no overflow, a 10 s checkout timeout, pings bypassed
/// for `BYPASS`) over a new fake database, on a manual clock.
fn manual_pool(size: usize) -> (FaultManager, Clock, Pool<FaultManager>) {
    let db = FaultManager::new();
    let clock = Clock::manual();
    let p = sized(size, 0)
        .ping_bypass(BYPASS)
        .checkout_timeout(Duration::from_secs(10))
        .clock(clock.clone())
        .build_on(&db);
    (db, clock, p)
}

#[test]
fn connection_idle_past_the_bypass_window_is_pinged() {
    let (db, clock, p) = manual_pool(1);
    drop(p.get().unwrap());
    assert_eq!(db.pings(), 0, "a new connection is not pinged");
    clock.advance(BYPASS);
    drop(p.get().unwrap());
    assert_eq!(db.pings(), 1);
    assert_eq!(p.stats().pings, 1);
}

#[test]
fn connection_returned_inside_the_window_is_checked_without_a_ping() {
    let (db, clock, p) = manual_pool(1);
    drop(p.get().unwrap());
    clock.advance(BYPASS / 2);
    let before = db.is_broken_calls();
    drop(p.get().unwrap());
    assert_eq!(db.pings(), 0);
    assert!(
        db.is_broken_calls() > before,
        "is_broken was asked on checkout"
    );
}

#[test]
fn pre_ping_off_never_pings() {
    let db = FaultManager::new();
    let clock = Clock::manual();
    let p = Pool::builder()
        .pre_ping(false)
        .clock(clock.clone())
        .build_on(&db);
    drop(p.get().unwrap());
    clock.advance(Duration::from_secs(3600));
    drop(p.get().unwrap());
    assert_eq!(db.pings(), 0);
}

#[test]
fn failed_ping_closes_the_connection_and_the_checkout_goes_on_with_another_idle_one() {
    let (db, clock, p) = manual_pool(2);
    let a = p.get().unwrap();
    let b = p.get().unwrap();
    let (ia, ib) = (a.id(), b.id());
    drop(a);
    drop(b);
    clock.advance(Duration::from_secs(5));
    db.fail_next_pings(1);
    // b is newest: pinged first, fails, closed; a is pinged and handed out.
    let g = p.get().unwrap();
    assert_eq!(g.id(), ia);
    let s = p.stats();
    assert_eq!(s.closed_by.failed_ping, 1);
    assert_eq!(s.pings, 2);
    assert_eq!(db.pings(), 2);
    assert!(ib != g.id());
    drop(g);
    at_rest(&p, &db);
}

#[test]
fn failed_ping_of_the_last_idle_connection_opens_a_new_one() {
    let (db, clock, p) = manual_pool(1);
    drop(p.get().unwrap());
    clock.advance(Duration::from_secs(5));
    db.kill(1);
    let g = p.get().unwrap();
    assert_eq!(g.id(), 2, "a new connection replaced the dead one");
    assert_eq!(p.stats().closed_by.failed_ping, 1);
    drop(g);
    at_rest(&p, &db);
}

#[test]
fn caller_never_receives_a_connection_that_failed_its_ping() {
    let (db, clock, p) = manual_pool(4);
    let guards: Vec<_> = (0..4).map(|_| p.get().unwrap()).collect();
    drop(guards);
    clock.advance(Duration::from_secs(5));
    // The "server" restarted: every open connection is dead.
    db.kill_all();
    let mut g = p.get().unwrap();
    assert!(g.id() > 4, "got dead connection {}", g.id());
    assert!(g.query().is_ok());
    drop(g);
    // Each idle dead one was found by a ping (none handed out).
    assert_eq!(p.stats().closed_by.failed_ping, 4);
    at_rest(&p, &db);
}

#[test]
fn killed_connection_returned_moments_ago_is_never_handed_out() {
    let (db, _clock, p) = manual_pool(1);
    let g = p.get().unwrap();
    let id = g.id();
    drop(g);
    // Inside the bypass window (the manual clock has not moved), the
    // server closes it.
    db.kill(id);
    let mut g = p.get().unwrap();
    assert_ne!(g.id(), id, "the killed connection was handed out");
    assert!(g.query().is_ok());
    assert_eq!(db.pings(), 0, "found without a round trip");
    assert_eq!(p.stats().closed_by.broken, 1);
    drop(g);
    at_rest(&p, &db);
}

#[test]
fn connection_killed_while_checked_out_is_closed_on_return() {
    let (db, _clock, p) = manual_pool(1);
    let g = p.get().unwrap();
    db.kill(g.id());
    drop(g);
    let s = p.stats();
    assert_eq!((s.open, s.closed_by.broken), (0, 1));
    at_rest(&p, &db);
}

#[test]
fn after_a_failed_ping_older_connections_are_pinged_inside_the_window() {
    let (db, clock, p) = manual_pool(3);
    // a and b stay checked out; x sits idle long enough to be pinged.
    let a = p.get().unwrap();
    let b = p.get().unwrap();
    let x = p.get().unwrap();
    let (ia, ib) = (a.id(), b.id());
    drop(x);
    clock.advance(Duration::from_secs(10));
    db.fail_next_pings(1);
    // x fails its ping (a sign the server restarted): a new connection
    // serves this checkout.
    let n = p.get().unwrap();
    assert_eq!(p.stats().closed_by.failed_ping, 1);
    drop(n);
    clock.advance(Duration::from_millis(1));
    // a and b come back and are checked out again inside the bypass window:
    // both were opened before the failed ping, so both are pinged.
    drop(a);
    drop(b);
    let pings = db.pings();
    let g1 = p.get().unwrap();
    let g2 = p.get().unwrap();
    let g3 = p.get().unwrap();
    let ids: Vec<u64> = [&g1, &g2, &g3].iter().map(|g| Pooled::id(g)).collect();
    assert!(ids.contains(&ia) && ids.contains(&ib), "{ids:?}");
    assert!(
        db.pings() >= pings + 2,
        "a and b were not pinged after the failed ping ({} pings)",
        db.pings() - pings
    );
    drop((g1, g2, g3));
    // Once pinged successfully they are trusted again inside the window.
    clock.advance(Duration::from_millis(1));
    let pings = db.pings();
    let guards: Vec<_> = (0..3).map(|_| p.get().unwrap()).collect();
    assert_eq!(db.pings(), pings, "validated connections pinged again");
    drop(guards);
    at_rest(&p, &db);
}

#[test]
fn failed_pings_keep_the_checkout_within_its_deadline() {
    let (db, clock, p) = manual_pool(1);
    drop(p.get().unwrap());
    clock.advance(Duration::from_secs(5));
    // Every ping fails and connects hang: the checkout must give up at its
    // deadline instead of looping or hanging.
    db.pings_failing(true);
    db.hang_connects(Duration::from_secs(30));
    let started = Instant::now();
    let err = p.get_timeout(Duration::from_millis(300)).unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the deadline was not kept"
    );
    db.release();
    db.pings_failing(false);
}

#[test]
fn retire_all_closes_idle_now_and_checked_out_on_return() {
    let (db, _clock, p) = manual_pool(3);
    let a = p.get().unwrap();
    let b = p.get().unwrap();
    let c = p.get().unwrap();
    let old: Vec<u64> = [&a, &b, &c].iter().map(|g| Pooled::id(g)).collect();
    drop(b);
    drop(c);
    p.retire_all();
    let s = p.stats();
    assert_eq!((s.closed_by.retired, s.open, s.idle), (2, 1, 0));
    assert_eq!(db.live(), 1);
    // The checked-out one keeps working until it is returned.
    let mut a = a;
    assert!(a.query().is_ok());
    drop(a);
    assert_eq!(p.stats().closed_by.retired, 3);
    // New connections replace them.
    let guards: Vec<_> = (0..3).map(|_| p.get().unwrap()).collect();
    for g in &guards {
        assert!(
            !old.contains(&g.id()),
            "retired connection {} handed out",
            g.id()
        );
    }
    drop(guards);
    at_rest(&p, &db);
}

#[test]
fn retire_all_replaces_min_idle_connections() {
    let db = FaultManager::new();
    let clock = Clock::manual();
    let p = Pool::builder()
        .pool_size(3)
        .min_idle(2)
        .clock(clock.clone())
        .build_on(&db);
    eventually("min_idle open", || p.stats().idle >= 2);
    p.retire_all();
    eventually("min_idle retired and replaced", || {
        let s = p.stats();
        s.idle >= 2 && s.closed_by.retired >= 2
    });
    assert_eq!(p.stats().created, 4);
    at_rest(&p, &db);
}

#[test]
fn connect_in_flight_during_retire_all_is_retired_too() {
    let db = FaultManager::new();
    // Connect attempt 1 blocks until the gate opens.
    let m = Gated::new(&db, &[1]);
    let p = Pool::builder()
        .pool_size(2)
        .checkout_timeout(Duration::from_secs(10))
        .build_on(&m);
    let p2 = p.clone();
    let waiter = std::thread::spawn(move || p2.get().map(|g| g.id()));
    eventually_within("a connect in flight", Duration::from_secs(10), || {
        p.stats().connecting > 0
    });
    // Failover: the attempt in flight is connecting to the old server.
    p.retire_all();
    m.open();
    let id = waiter.join().unwrap().unwrap();
    assert_ne!(
        id, 1,
        "a connection opened before retire_all was handed out"
    );
    let s = p.stats();
    assert_eq!(s.closed_by.retired, 1, "{s:?}");
    at_rest(&p, &db);
}
