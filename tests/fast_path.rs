//! The per-thread fast path: a connection returned while nobody waits is
//! parked for the thread that returned it, which takes it back on its next
//! `get()` without the pool's lock. These tests pin down what users can see
//! of it: which connection comes back, that waiters still come first, that
//! parked connections obey every time rule, and that counters add up.

mod common;

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use cistern::testing::FaultManager;
use cistern::{Error, Pooled};

use common::{
    BuildOn, at_rest_with_db, on_manual_clock, pool, returns_within, sized, wait_for_waiters,
};

/// Gets one connection on a new thread, returns it, and reports its id.
fn use_once_on_a_new_thread(p: &cistern::Pool<FaultManager>) -> u64 {
    let p = p.clone();
    thread::spawn(move || Pooled::id(&p.get().unwrap()))
        .join()
        .unwrap()
}

#[test]
fn a_thread_gets_back_the_connection_it_returned() {
    let db = FaultManager::new();
    let p = pool(&db, 2, 0);
    // Two connections, both out at once, then both returned.
    let (a, b) = (p.get().unwrap(), p.get().unwrap());
    let mine = Pooled::id(&b);
    drop(a);
    drop(b);
    let g = p.get().unwrap();
    assert_eq!(Pooled::id(&g), mine, "the one this thread returned last");
    drop(g);
    at_rest_with_db(&p, &db);
}

/// Thread A holds X while this thread holds Y; A returns X, then this
/// thread returns Y, so Y is the newest idle connection; then A asks again.
/// The shared store alone would hand A the newest, Y: only the fast path
/// gives A its own X back. A maintenance round (at most one a second) landing
/// between the returns and A's checkout moves parked connections back to the
/// shared store, which the semantics allow: the caller tries again.
fn a_gets_x_back(p: &cistern::Pool<FaultManager>) -> bool {
    let (to_main, from_a) = mpsc::channel();
    let (to_a, from_main) = mpsc::channel::<()>();
    let a = {
        let p = p.clone();
        thread::spawn(move || {
            let x = p.get().unwrap();
            let id = Pooled::id(&x);
            to_main.send(id).unwrap();
            from_main.recv().unwrap(); // this thread holds Y now
            drop(x);
            to_main.send(id).unwrap();
            from_main.recv().unwrap(); // Y returned, after X
            Pooled::id(&p.get().unwrap()) == id
        })
    };
    let x = from_a.recv().unwrap();
    let y = p.get().unwrap();
    assert_ne!(Pooled::id(&y), x);
    to_a.send(()).unwrap();
    from_a.recv().unwrap();
    drop(y);
    to_a.send(()).unwrap();
    a.join().unwrap()
}

#[test]
fn a_thread_gets_back_its_own_connection_not_the_newest() {
    let db = FaultManager::new();
    // Both connections open before the start: a checkout that waits for a
    // connect is a shortage, after which returns do not park for 100 ms.
    let p = sized(4, 0)
        .min_idle(2)
        .warm_up(cistern::WarmUp::Required)
        .build_on(&db);
    // Three tries: a maintenance round inside the few microseconds between
    // the returns and the checkout is rare; without the fast path every try
    // fails.
    let ok = (0..3).any(|_| a_gets_x_back(&p));
    assert!(
        ok,
        "thread A was handed the newest connection instead of its own, three times"
    );
    at_rest_with_db(&p, &db);
}

#[test]
fn threads_sharing_a_pool_need_no_more_connections_than_threads() {
    let db = FaultManager::new();
    let p = sized(8, 0).build_on(&db);
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let p = p.clone();
            thread::spawn(move || {
                for _ in 0..2000 {
                    drop(p.get().unwrap());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let s = p.stats();
    assert!(s.created <= 4, "one connection per thread at most: {s:?}");
    assert_eq!(s.checkouts, 8000, "{s:?}");
    assert_eq!(s.held.count, 8000, "{s:?}");
    at_rest_with_db(&p, &db);
}

#[test]
fn a_connection_parked_for_another_thread_is_taken_when_none_is_idle() {
    let db = FaultManager::new();
    let p = pool(&db, 1, 0);
    let parked = use_once_on_a_new_thread(&p);
    // That thread is gone; its parked connection serves this one at once.
    let g = returns_within("get", Duration::from_secs(5), {
        let p = p.clone();
        move || Pooled::id(&p.get().unwrap())
    });
    assert_eq!(g, parked);
    assert_eq!(p.stats().created, 1);
    at_rest_with_db(&p, &db);
}

#[test]
fn a_waiter_gets_the_connection_before_the_thread_it_was_parked_for() {
    let db = FaultManager::new();
    let p = sized(1, 0)
        .checkout_timeout(Duration::from_secs(10))
        .barging_window(Duration::ZERO)
        .build_on(&db);
    drop(p.get().unwrap()); // parked for this thread
    let held = p.get().unwrap(); // taken back from its cell
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let (got_tx, got_rx) = mpsc::channel();
    let waiter = {
        let p = p.clone();
        thread::spawn(move || {
            let g = p.get().unwrap();
            got_tx.send(Pooled::id(&g)).unwrap();
            done_rx.recv().unwrap();
        })
    };
    wait_for_waiters(&p, 1);
    let id = Pooled::id(&held);
    drop(held);
    assert_eq!(got_rx.recv().unwrap(), id, "the waiter got it");
    // It did not go back to this thread's cell.
    let err = p.get_timeout(Duration::from_millis(50)).unwrap_err();
    assert!(err.is_timeout(), "{err}");
    done_tx.send(()).unwrap();
    waiter.join().unwrap();
    at_rest_with_db(&p, &db);
}

#[test]
fn parked_connections_idle_out() {
    let (db, clock, p) = on_manual_clock(sized(2, 0).idle_timeout(Duration::from_secs(60)));
    let id = Pooled::id(&p.get().unwrap());
    clock.advance(Duration::from_secs(61));
    p.run_maintenance();
    let s = p.stats();
    assert_eq!((s.open, s.closed_by.idle_timeout), (0, 1), "{s:?}");
    let g = p.get().unwrap();
    assert_ne!(Pooled::id(&g), id, "a new connection");
    drop(g);
    at_rest_with_db(&p, &db);
}

#[test]
fn an_over_age_parked_connection_is_closed_not_handed_out() {
    let (db, clock, p) = on_manual_clock(
        sized(2, 0)
            .recycle_after(Duration::from_secs(60))
            .recycle_spread(0.0),
    );
    let id = Pooled::id(&p.get().unwrap());
    clock.advance(Duration::from_secs(61));
    let g = p.get().unwrap();
    assert_ne!(Pooled::id(&g), id);
    drop(g);
    assert_eq!(p.stats().closed_by.recycled, 1);
    at_rest_with_db(&p, &db);
}

#[test]
fn a_parked_connection_past_the_ping_bypass_is_pinged() {
    let (db, clock, p) = on_manual_clock(sized(1, 0).ping_bypass(Duration::from_millis(500)));
    drop(p.get().unwrap());
    drop(p.get().unwrap());
    assert_eq!(db.pings(), 0, "used moments ago: no ping");
    clock.advance(Duration::from_secs(1));
    db.fail_next_pings(1);
    let g = p.get().unwrap();
    assert_eq!(
        db.pings(),
        2,
        "the parked one failed its ping, the new one passed"
    );
    assert_eq!(p.stats().closed_by.failed_ping, 1);
    drop(g);
    at_rest_with_db(&p, &db);
}

#[test]
fn close_and_retire_all_reach_parked_connections() {
    let db = FaultManager::new();
    let p = pool(&db, 2, 0);
    let first = Pooled::id(&p.get().unwrap());
    p.retire_all();
    assert_eq!(p.stats().closed_by.retired, 1);
    let second = Pooled::id(&p.get().unwrap());
    assert_ne!(first, second);
    p.close();
    let s = p.stats();
    assert_eq!((s.open, s.closed_by.pool_closed), (0, 1), "{s:?}");
    assert_eq!(db.live(), 0);
    assert!(matches!(p.get().unwrap_err(), Error::Closed { .. }));
}

#[test]
fn holders_include_fast_path_checkouts() {
    let db = FaultManager::new();
    let p = pool(&db, 1, 0);
    drop(p.get().unwrap());
    let g = p.get().unwrap(); // from its cell
    let holders = p.holders();
    assert_eq!(holders.len(), 1);
    assert_eq!(holders[0].connection_id, Pooled::id(&g));
    assert!(
        holders[0].location.contains("fast_path.rs"),
        "{:?}",
        holders[0]
    );
    drop(g);
    assert!(p.holders().is_empty());
}
