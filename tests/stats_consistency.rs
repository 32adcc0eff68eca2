//! Stats add up: `created - closed - detached == open`, counters never go
//! backwards, and the wait histogram counts every checkout exactly once.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use cistern::testing::FaultManager;
use cistern::{CloseReason, Pool, Pooled, Stats};
use common::{BuildOn, assert_counters_add_up, eventually, sized};

/// The accounting identity and the histogram's shape, which hold in every
/// snapshot (`stats()` reads the pool's counters under its lock and adds the
/// per-connection cells' counts, each under its cell's lock).
fn assert_adds_up(s: &Stats) {
    assert_counters_add_up(s);
    assert_eq!(s.open, s.idle + s.in_use, "{s:#?}");
    let buckets = &s.wait.buckets;
    assert!(
        buckets
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
        "buckets must be cumulative with growing bounds: {buckets:?}"
    );
    let (last_bound, last_count) = *buckets.last().expect("at least the +Inf bucket");
    assert!(last_bound.is_infinite());
    assert_eq!(
        last_count, s.checkouts,
        "the histogram counts every checkout once: {s:#?}"
    );
    assert!(
        s.waited <= s.checkouts,
        "waited {} > checkouts {}",
        s.waited,
        s.checkouts
    );
}

/// Every counter of `later` is at least the same counter of `earlier`.
fn assert_not_backwards(earlier: &Stats, later: &Stats) {
    let pairs = [
        ("created", earlier.created, later.created),
        ("detached", earlier.detached, later.detached),
        (
            "connect_errors",
            earlier.connect_errors,
            later.connect_errors,
        ),
        ("checkouts", earlier.checkouts, later.checkouts),
        ("waited", earlier.waited, later.waited),
        ("timeouts", earlier.timeouts, later.timeouts),
        ("queue_full", earlier.queue_full, later.queue_full),
        ("pings", earlier.pings, later.pings),
        (
            "leaks_reported",
            earlier.leaks_reported,
            later.leaks_reported,
        ),
        ("held.count", earlier.held.count, later.held.count),
    ];
    for (name, a, b) in pairs {
        assert!(b >= a, "{name} went backwards: {a} -> {b}");
    }
    for r in CloseReason::ALL {
        let (a, b) = (earlier.closed_by.get(r), later.closed_by.get(r));
        assert!(b >= a, "closed_by.{r} went backwards: {a} -> {b}");
    }
    for (x, y) in earlier.wait.buckets.iter().zip(&later.wait.buckets) {
        assert!(
            y.1 >= x.1,
            "wait bucket le={} went backwards: {} -> {}",
            x.0,
            x.1,
            y.1
        );
    }
    let durations = [
        ("wait sum", earlier.wait.sum, later.wait.sum),
        ("wait max", earlier.wait.max, later.wait.max),
        ("held sum", earlier.held.sum, later.held.sum),
        ("held max", earlier.held.max, later.held.max),
    ];
    for (name, a, b) in durations {
        assert!(b >= a, "{name} went backwards: {a:?} -> {b:?}");
    }
}

fn at_rest(pool: &Pool<FaultManager>) -> Stats {
    let mut s = pool.stats();
    eventually("the pool to come to rest", || {
        s = pool.stats();
        s.in_use == 0 && s.connecting == 0 && s.waiting == 0
    });
    s
}

#[test]
fn counters_add_up_at_rest_after_every_kind_of_close() {
    let db = FaultManager::new();
    let pool = sized(2, 2)
        .name("consistency-mixed")
        .ping_bypass(Duration::ZERO)
        .checkout_timeout(Duration::from_secs(10))
        .backoff_initial(Duration::from_millis(5))
        .backoff_max(Duration::from_millis(10))
        .build_on(&db);

    // Overflow: four out, four back, two closed as excess.
    let guards: Vec<_> = (0..4).map(|_| pool.get().unwrap()).collect();
    drop(guards);
    // Marked broken.
    let mut g = pool.get().unwrap();
    Pooled::mark_broken(&mut g);
    drop(g);
    // Detached.
    let kept = Pooled::detach(pool.get().unwrap());
    // A failed pre-ping: the checkout goes on with another connection.
    db.fail_next_pings(1);
    drop(pool.get().unwrap());
    // A failed initialiser, then a failed connect, on the way to a new one.
    let out: Vec<_> = (0..2).map(|_| pool.get().unwrap()).collect();
    db.fail_next_inits(1);
    db.fail_next_connects(1);
    let extra = pool.get().unwrap();
    drop((out, extra));
    // Retired, then a timeout with everything held.
    pool.retire_all();
    let all: Vec<_> = (0..4).map(|_| pool.get().unwrap()).collect();
    assert!(
        pool.get_timeout(Duration::from_millis(20))
            .unwrap_err()
            .is_timeout()
    );
    drop(all);

    let s = at_rest(&pool);
    assert_adds_up(&s);
    let c = &s.closed_by;
    assert!(c.excess >= 2, "{c:?}");
    assert!(
        c.broken >= 1 && c.failed_ping >= 1 && c.failed_init >= 1,
        "{c:?}"
    );
    assert!(c.retired >= 1, "{c:?}");
    assert_eq!(s.detached, 1);
    assert!(s.connect_errors >= 1);
    assert_eq!(s.timeouts, 1);
    // Every connection handed out came back or was detached.
    assert_eq!(s.held.count + s.detached, s.checkouts, "{s:#?}");
    eventually("closed connections to be dropped", || {
        db.live() as u64 == s.open as u64 + s.detached
    });

    pool.close();
    let s = pool.stats();
    assert_adds_up(&s);
    assert_eq!(s.open, 0);
    assert!(s.closed_by.pool_closed >= 1);
    drop(kept);
}

#[test]
fn wait_histogram_counts_only_checkouts_that_were_handed_out() {
    // Every ping fails: a waiter is handed connection after connection, each
    // fails its ping, and the call finally times out without a checkout.
    let db = FaultManager::new();
    let pool = sized(1, 0)
        .name("consistency-failing-pings")
        .ping_bypass(Duration::ZERO)
        .checkout_timeout(Duration::from_millis(300))
        .build_on(&db);
    let held = pool.get().unwrap();
    let before = pool.stats();
    db.pings_failing(true);
    let waiter = {
        let pool = pool.clone();
        thread::spawn(move || pool.get())
    };
    eventually("the waiter to queue", || pool.stats().waiting == 1);
    drop(held);
    assert!(waiter.join().unwrap().unwrap_err().is_timeout());
    let s = at_rest(&pool);
    assert!(s.closed_by.failed_ping >= 1, "{s:#?}");
    assert_eq!(
        s.checkouts, before.checkouts,
        "the waiter got no connection"
    );
    assert_adds_up(&s);
    assert_eq!(
        s.waited, before.waited,
        "the waiter's waits are not checkouts: {s:#?}"
    );
    assert_eq!(s.wait.buckets, before.wait.buckets);
}

#[test]
fn counters_never_go_backwards_under_concurrent_load() {
    let db = FaultManager::new();
    db.connect_delay(Duration::from_millis(1));
    let pool = sized(3, 2)
        .name("consistency-load")
        .ping_bypass(Duration::ZERO)
        .checkout_timeout(Duration::from_millis(50))
        .backoff_initial(Duration::from_millis(1))
        .backoff_max(Duration::from_millis(5))
        .build_on(&db);
    let stop = Arc::new(AtomicBool::new(false));

    let sampler = {
        let pool = pool.clone();
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            let mut prev = pool.stats();
            let mut snapshots = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let s = pool.stats();
                assert_adds_up(&s);
                assert_not_backwards(&prev, &s);
                prev = s;
                snapshots += 1;
            }
            snapshots
        })
    };
    let chaos = {
        let db = db.clone();
        let pool = pool.clone();
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            let mut round = 0u32;
            while !stop.load(Ordering::SeqCst) {
                match round % 4 {
                    0 => db.fail_next_pings(1),
                    1 => db.fail_next_connects(1),
                    2 => db.fail_next_inits(1),
                    _ => pool.retire_all(),
                }
                round += 1;
                thread::sleep(Duration::from_millis(3));
            }
        })
    };
    let workers: Vec<_> = (0..6)
        .map(|w| {
            let pool = pool.clone();
            thread::spawn(move || {
                for i in 0..300u32 {
                    match pool.get() {
                        Ok(mut conn) => {
                            conn.query().unwrap_or_default();
                            if (i + w) % 17 == 0 {
                                Pooled::mark_broken(&mut conn);
                            } else if (i + w) % 97 == 0 {
                                drop(Pooled::detach(conn));
                                continue;
                            }
                            if i % 5 == 0 {
                                thread::yield_now();
                            }
                        }
                        Err(e) => assert!(e.is_timeout(), "{e}"),
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    chaos.join().unwrap();
    let snapshots = sampler.join().unwrap();
    assert!(snapshots > 0);

    let s = at_rest(&pool);
    assert_adds_up(&s);
    assert!(s.checkouts > 0 && s.closed_by.total() > 0, "{s:#?}");
    assert_eq!(s.held.count + s.detached, s.checkouts, "{s:#?}");
    pool.check_invariants().unwrap();
}
