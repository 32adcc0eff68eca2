//! Rule 1: base plus overflow (QueuePool semantics), idle timeout.

use std::time::Duration;

use cistern::testing::FaultManager;
use cistern::{Clock, Pool};

fn pool(db: &FaultManager, size: usize, overflow: usize) -> Pool<FaultManager> {
    Pool::builder()
        .pool_size(size)
        .max_overflow(overflow)
        .checkout_timeout(Duration::from_secs(10))
        .build(db.clone())
        .unwrap()
}

#[test]
fn never_more_than_pool_size_plus_overflow_open() {
    let db = FaultManager::new();
    let p = pool(&db, 2, 1);
    let a = p.get().unwrap();
    let b = p.get().unwrap();
    let c = p.get().unwrap();
    assert_eq!(p.stats().open, 3);
    let err = p.get_timeout(Duration::from_millis(50)).unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert_eq!(db.live(), 3);
    drop((a, b, c));
    p.check_invariants().unwrap();
}

#[test]
fn overflow_connection_closed_when_base_is_idle() {
    let db = FaultManager::new();
    let p = pool(&db, 2, 2);
    let guards: Vec<_> = (0..4).map(|_| p.get().unwrap()).collect();
    assert_eq!(p.stats().open, 4);
    drop(guards);
    let s = p.stats();
    assert_eq!((s.open, s.idle), (2, 2));
    assert_eq!(s.closed_by.excess, 2);
    assert_eq!(db.live(), 2);
}

#[test]
fn steady_load_above_base_keeps_overflow_open() {
    let db = FaultManager::new();
    let p = pool(&db, 2, 2);
    // Three in use all the time: one is always returned while fewer than
    // pool_size are idle, so nothing is closed and nothing reopened.
    let mut held: Vec<_> = (0..3).map(|_| p.get().unwrap()).collect();
    for _ in 0..100 {
        held.remove(0);
        held.push(p.get().unwrap());
    }
    drop(held);
    let s = p.stats();
    assert_eq!(s.created, 3);
    assert_eq!(s.closed_by.excess, 1, "only the final drop leaves 3 idle > pool_size 2");
}

#[test]
fn idle_timeout_closes_idle_above_min_idle() {
    let db = FaultManager::new();
    let clock = Clock::manual();
    let p = Pool::builder()
        .pool_size(4)
        .min_idle(1)
        .idle_timeout(Duration::from_secs(60))
        .clock(clock.clone())
        .build(db.clone())
        .unwrap();
    let guards: Vec<_> = (0..3).map(|_| p.get().unwrap()).collect();
    drop(guards);
    assert_eq!(p.stats().idle, 3);
    clock.advance(Duration::from_secs(61));
    // The maintenance thread runs every 1 s at most (a quarter of the
    // shortest rule, capped); wait for it without asserting on time.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while p.stats().idle > 1 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let s = p.stats();
    assert_eq!(s.idle, 1);
    assert_eq!(s.closed_by.idle_timeout, 2);
    assert_eq!(s.created - s.closed_by.total() - s.detached, s.open as u64);
}
