//! Rule 8: the guard. It returns its connection on drop, or closes it when
//! it is broken, over age, in excess of `pool_size` idle, or when the pool
//! is closed; dropped while its thread panics it closes the connection.
//! `detach` takes the connection out for good and frees its slot; `age`,
//! `held` and `id` describe it.

mod common;

use std::sync::mpsc;
use std::time::Duration;

use cistern::testing::FaultManager;
use cistern::{Clock, Pooled};
use common::{BuildOn, at_rest, pool, sized, wait_for_waiters};

#[test]
fn drop_returns_the_connection() {
    let db = FaultManager::new();
    let p = pool(&db, 2, 0);
    let mut g = p.get().unwrap();
    assert_eq!(g.query().unwrap(), 1);
    let id = g.id();
    drop(g);
    let s = p.stats();
    assert_eq!((s.open, s.idle, s.in_use), (1, 1, 0));
    // The same connection, with its state, comes back.
    let mut g = p.get().unwrap();
    assert_eq!(g.id(), id);
    assert_eq!(g.query().unwrap(), 2);
}

#[test]
fn detach_takes_the_connection_out_and_frees_its_slot() {
    let db = FaultManager::new();
    let p = pool(&db, 1, 0);
    let g = p.get().unwrap();
    let mut conn = Pooled::detach(g);
    assert!(conn.query().is_ok(), "the detached connection is usable");
    let s = p.stats();
    assert_eq!((s.open, s.detached, s.in_use), (0, 1, 0));
    assert!(p.holders().is_empty());
    // The slot is free: a new connection fits in a pool of one.
    let g = p.get_timeout(Duration::from_secs(5)).unwrap();
    assert_ne!(g.id(), conn.id());
    assert_eq!(db.live(), 2);
    drop(conn);
    assert_eq!(db.live(), 1);
    drop(g);
    at_rest(&p);
}

#[test]
fn detach_lets_a_waiter_get_a_new_connection() {
    let db = FaultManager::new();
    let p = pool(&db, 1, 0);
    let g = p.get().unwrap();
    let p2 = p.clone();
    let waiter = std::thread::spawn(move || p2.get().map(|g| g.id()));
    wait_for_waiters(&p, 1);
    let conn = Pooled::detach(g);
    let id = waiter.join().unwrap().unwrap();
    assert_ne!(id, conn.id());
    at_rest(&p);
}

#[test]
fn mark_broken_closes_instead_of_returning() {
    let db = FaultManager::new();
    let p = pool(&db, 2, 0);
    let mut g = p.get().unwrap();
    let id = g.id();
    Pooled::mark_broken(&mut g);
    drop(g);
    let s = p.stats();
    assert_eq!((s.open, s.idle, s.closed_by.broken), (0, 0, 1));
    assert_eq!(db.live(), 0);
    assert_ne!(p.get().unwrap().id(), id);
    at_rest(&p);
}

#[test]
fn failed_checkin_hook_closes_the_connection() {
    let db = FaultManager::new();
    let p = pool(&db, 2, 0);
    let g = p.get().unwrap();
    db.fail_next_checkins(1);
    drop(g);
    let s = p.stats();
    assert_eq!((s.open, s.closed_by.broken), (0, 1));
    at_rest(&p);
}

#[test]
fn guard_dropped_while_its_thread_panics_closes_the_connection() {
    let db = FaultManager::new();
    let p = pool(&db, 1, 0);
    let p2 = p.clone();
    let result = std::thread::spawn(move || {
        let mut g = p2.get().unwrap();
        g.query().unwrap();
        panic!("user code fails mid-transaction");
    })
    .join();
    assert!(result.is_err());
    let s = p.stats();
    assert_eq!((s.open, s.idle, s.closed_by.panicked), (0, 0, 1));
    assert_eq!(db.live(), 0, "the connection was closed, not returned");
    // Its slot is free.
    let g = p.get_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(g.id(), 2);
    drop(g);
    at_rest(&p);
}

#[test]
fn guard_dropped_after_the_pool_closed_closes_the_connection() {
    let db = FaultManager::new();
    let p = pool(&db, 2, 0);
    let g = p.get().unwrap();
    p.close();
    drop(g);
    let s = p.stats();
    assert_eq!((s.open, s.closed_by.pool_closed), (0, 1));
    assert_eq!(db.live(), 0);
}

#[test]
fn id_age_and_held_describe_the_connection_and_the_checkout() {
    let db = FaultManager::new();
    let clock = Clock::manual();
    let p = sized(1, 0).clock(clock.clone()).build_on(&db);
    let g = p.get().unwrap();
    assert_eq!(Pooled::id(&g), 1);
    assert_eq!(Pooled::age(&g), Duration::ZERO);
    assert_eq!(Pooled::held(&g), Duration::ZERO);
    clock.advance(Duration::from_secs(5));
    assert_eq!(Pooled::age(&g), Duration::from_secs(5));
    assert_eq!(Pooled::held(&g), Duration::from_secs(5));
    drop(g);
    clock.advance(Duration::from_secs(7));
    let g = p.get().unwrap();
    assert_eq!(Pooled::id(&g), 1, "the same connection");
    assert_eq!(
        Pooled::age(&g),
        Duration::from_secs(12),
        "age counts from open"
    );
    assert_eq!(
        Pooled::held(&g),
        Duration::ZERO,
        "held counts from this checkout"
    );
    let debug = format!("{g:?}");
    assert!(
        debug.contains("Pooled") && debug.contains("id: 1"),
        "{debug}"
    );
}

#[test]
fn held_starts_when_the_connection_is_handed_out_not_when_waiting_began() {
    let db = FaultManager::new();
    let clock = Clock::manual();
    let p = sized(1, 0)
        .clock(clock.clone())
        .checkout_timeout(Duration::from_secs(30))
        .build_on(&db);
    let first = p.get().unwrap();
    let (tx, rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let p2 = p.clone();
    let waiter = std::thread::spawn(move || {
        let g = p2.get().unwrap();
        tx.send(Pooled::held(&g)).unwrap();
        done_rx.recv().ok();
    });
    wait_for_waiters(&p, 1);
    // The waiter waits ten (manual) seconds.
    clock.advance(Duration::from_secs(10));
    drop(first);
    let held = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(held, Duration::ZERO, "time spent waiting counted as held");
    let holders = p.holders();
    assert_eq!(holders.len(), 1);
    assert_eq!(holders[0].held, Duration::ZERO, "{:?}", holders[0]);
    done_tx.send(()).unwrap();
    waiter.join().unwrap();
}
