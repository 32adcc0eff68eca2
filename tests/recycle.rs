//! Rule 7: recycle after age. Connections older than `recycle_after` are
//! closed on return or while idle, never while checked out; each one's age
//! limit is spread a little so a pool filled at once is not recycled at
//! once.

mod common;

use std::time::Duration;

use cistern::testing::FaultManager;
use cistern::{Clock, Pool};
use common::{BuildOn, at_rest_with_db as at_rest, eventually, sized};

const AGE: Duration = Duration::from_secs(60);

/// A pool of `size` (no overflow, recycled after `AGE` spread by `spread`,
/// no leak reports) over a new fake database, on a manual clock.
fn manual_pool(size: usize, spread: f64) -> (FaultManager, Clock, Pool<FaultManager>) {
    let db = FaultManager::new();
    let clock = Clock::manual();
    let p = sized(size, 0)
        .recycle_after(AGE)
        .recycle_spread(spread)
        .leak_threshold(None)
        .clock(clock.clone())
        .build_on(&db);
    (db, clock, p)
}

#[test]
fn over_age_connection_is_closed_when_returned() {
    let (db, clock, p) = manual_pool(2, 0.0);
    let g = p.get().unwrap();
    clock.advance(AGE - Duration::from_secs(1));
    drop(g);
    assert_eq!(p.stats().closed_by.recycled, 0, "not yet over age");
    let g = p.get().unwrap();
    clock.advance(Duration::from_secs(1));
    drop(g);
    let s = p.stats();
    assert_eq!((s.open, s.closed_by.recycled), (0, 1));
    at_rest(&p, &db);
}

#[test]
fn over_age_idle_connection_is_closed_by_the_background_thread() {
    let (db, clock, p) = manual_pool(2, 0.0);
    drop(p.get().unwrap());
    clock.advance(AGE);
    eventually("idle connection recycled", || {
        p.stats().closed_by.recycled == 1
    });
    assert_eq!(p.stats().open, 0);
    at_rest(&p, &db);
}

#[test]
fn over_age_idle_connection_is_never_handed_out() {
    let (db, clock, p) = manual_pool(2, 0.0);
    drop(p.get().unwrap());
    clock.advance(AGE * 2);
    // Whether the background thread got to it first or the checkout finds
    // it, the caller gets a new connection.
    let g = p.get().unwrap();
    assert_eq!(g.id(), 2);
    assert_eq!(p.stats().closed_by.recycled, 1);
    drop(g);
    at_rest(&p, &db);
}

#[test]
fn over_age_connection_is_never_closed_while_checked_out() {
    let (db, clock, p) = manual_pool(2, 0.0);
    let mut held = p.get().unwrap();
    let idle = p.get().unwrap();
    drop(idle);
    clock.advance(AGE * 10);
    // The idle one being recycled shows a background round ran.
    eventually("idle connection recycled", || {
        p.stats().closed_by.recycled == 1
    });
    let s = p.stats();
    assert_eq!((s.open, s.in_use), (1, 1));
    assert!(
        held.query().is_ok(),
        "the checked-out connection still works"
    );
    assert_eq!(db.live(), 1);
    drop(held);
    assert_eq!(p.stats().closed_by.recycled, 2, "closed on return");
    at_rest(&p, &db);
}

#[test]
fn recycled_min_idle_connections_are_replaced() {
    let db = FaultManager::new();
    let clock = Clock::manual();
    let p = Pool::builder()
        .pool_size(3)
        .min_idle(2)
        .recycle_after(AGE)
        .recycle_spread(0.0)
        .clock(clock.clone())
        .build_on(&db);
    eventually("min_idle open", || p.stats().idle == 2);
    clock.advance(AGE);
    eventually("replaced", || {
        let s = p.stats();
        s.closed_by.recycled == 2 && s.idle == 2
    });
    assert_eq!(p.stats().created, 4);
    at_rest(&p, &db);
}

#[test]
fn recycle_after_none_keeps_connections_forever() {
    let db = FaultManager::new();
    let clock = Clock::manual();
    let p = Pool::builder()
        .recycle_after(None)
        .clock(clock.clone())
        .build_on(&db);
    let g = p.get().unwrap();
    clock.advance(Duration::from_secs(100 * 24 * 3600));
    drop(g);
    assert_eq!(p.stats().closed_by.recycled, 0);
    assert_eq!(p.get().unwrap().id(), 1);
}

#[test]
fn age_limits_are_spread_so_connections_opened_together_recycle_apart() {
    // recycle_after 1000 s with the default 2.5 % spread: every limit lies
    // in [975 s, 1000 s], and they differ.
    let db = FaultManager::new();
    let clock = Clock::manual();
    let n = 20;
    let p = sized(n, 0)
        .recycle_after(Duration::from_secs(1000))
        .leak_threshold(None)
        .clock(clock.clone())
        .build_on(&db);
    assert_eq!(p.config().recycle_spread, 0.025);
    let guards: Vec<_> = (0..n).map(|_| p.get().unwrap()).collect();
    clock.advance(Duration::from_secs(974));
    drop(guards);
    assert_eq!(
        p.stats().closed_by.recycled,
        0,
        "none below 97.5 % of the age"
    );
    let guards: Vec<_> = (0..n).map(|_| p.get().unwrap()).collect();
    assert_eq!(p.stats().created as usize, n);
    clock.advance(Duration::from_millis(13_500)); // 987.5 s: mid-spread
    drop(guards);
    let recycled = p.stats().closed_by.recycled as usize;
    assert!(
        recycled > 0 && recycled < n,
        "{recycled} of {n} recycled at 98.75 % of the age: the limits are not spread"
    );
    clock.advance(Duration::from_millis(12_500)); // 1000 s: all over age
    eventually("every original connection recycled", || {
        p.stats().closed_by.recycled as usize == n
    });
    at_rest(&p, &db);
}
