//! Rule 5: connects run outside the lock and never block other pool work;
//! a failed, panicking or hung connect gives its slot back; a late result
//! is kept or closed, never leaked; failures back off exponentially and the
//! pool keeps trying while there is demand, without a connect storm.

mod common;

use std::time::{Duration, Instant};

use cistern::testing::FaultManager;
use cistern::{Builder, Error, Pool, Stats};
use common::{
    BuildOn, Gated, at_rest, connect_error, down_database, eventually, pool,
    returns_without_hanging, sized,
};

/// The shortest gap the backoff schedule allows after the `failures`-th
/// failure in a row: the delay with the most jitter (-20 %), and a hair of
/// rounding slack.
fn min_delay(initial: Duration, cap: Duration, failures: u32) -> Duration {
    let full = initial
        .saturating_mul(2u32.saturating_pow(failures - 1))
        .min(cap);
    full.mul_f64(0.79)
}

#[test]
fn slow_connect_blocks_no_stats_returns_or_checkouts() {
    let db = FaultManager::new();
    let p = pool(&db, 2, 1);
    let a = p.get().unwrap();
    let a_id = a.id();
    db.hang_connects(Duration::from_secs(60));
    let p2 = p.clone();
    let waiter = std::thread::spawn(move || {
        let g = p2.get().unwrap();
        let id = g.id();
        drop(g);
        id
    });
    eventually("a connect in flight", || p.stats().connecting == 1);
    // While the connect hangs: stats, a zero-wait checkout, and a return
    // all go through.
    let p3 = p.clone();
    let s = returns_without_hanging("stats()", move || p3.stats());
    assert_eq!((s.connecting, s.waiting, s.in_use), (1, 1, 1));
    let p3 = p.clone();
    assert!(returns_without_hanging("try_get()", move || p3
        .try_get()
        .is_none()));
    // The returned connection serves the waiter at once, although the
    // connect started for it is still in flight.
    returns_without_hanging("a return", move || drop(a));
    let served = returns_without_hanging("the waiter", move || waiter.join().unwrap());
    assert_eq!(served, a_id);
    // Its connection is idle again: a checkout takes it without waiting
    // for the hung connect.
    let p3 = p.clone();
    let id = returns_without_hanging("get()", move || p3.get().unwrap().id());
    assert_eq!(id, a_id);
    // The late result of the hung connect is kept as idle.
    db.release();
    eventually("late connection kept", || p.stats().idle == 2);
    assert_eq!(db.live(), 2);
    at_rest(&p);
}

/// `size` connections, no overflow, a quick backoff (20 to 40 ms) and a
/// 10 s checkout timeout.
fn quick_retry<M>(size: usize) -> Builder<M> {
    sized(size, 0)
        .backoff_initial(Duration::from_millis(20))
        .backoff_max(Duration::from_millis(40))
        .checkout_timeout(Duration::from_secs(10))
}

/// Checks out the connection of a quick-retry pool of one over `db` (whose
/// faults the caller scripted); returns the stats and the live connections
/// of that moment. The pool is at rest once the connection is back.
fn one_checkout(db: &FaultManager) -> (Stats, usize) {
    let p = quick_retry(1).build_on(db);
    let g = p.get().unwrap();
    let seen = (p.stats(), db.live());
    drop(g);
    at_rest(&p);
    seen
}

/// A quick-retry pool of `size` whose first connect hangs until the gate
/// opens; the pool gives up on it after 200 ms.
fn first_connect_hangs(size: usize) -> (FaultManager, Gated, Pool<Gated>) {
    let db = FaultManager::new();
    let m = Gated::new(&db, &[1]);
    let p = quick_retry(size)
        .connect_timeout(Duration::from_millis(200))
        .build_on(&m);
    (db, m, p)
}

#[test]
fn failed_connect_gives_its_slot_back() {
    let db = FaultManager::new();
    db.fail_next_connects(2);
    let (s, _) = one_checkout(&db);
    assert_eq!(
        (s.open, s.connecting, s.connect_errors, s.created),
        (1, 0, 2, 1)
    );
}

#[test]
fn panicking_connect_gives_its_slot_back() {
    let db = FaultManager::new();
    db.panic_next_connects(2);
    let (s, _) = one_checkout(&db);
    assert_eq!((s.open, s.connecting, s.connect_errors), (1, 0, 2));
}

#[test]
fn failed_init_closes_the_new_connection_and_gives_its_slot_back() {
    let db = FaultManager::new();
    db.fail_next_inits(1);
    let (s, live) = one_checkout(&db);
    assert_eq!((s.open, s.created, s.closed_by.failed_init), (1, 2, 1));
    assert_eq!(live, 1, "the connection that failed init was closed");
}

#[test]
fn hung_connect_gives_its_slot_back_and_a_late_result_without_room_is_closed() {
    let (db, m, p) = first_connect_hangs(1);
    // Attempt 1 hangs; after connect_timeout its slot is given back and
    // attempt 2 serves the checkout (the pool has room for one only).
    let g = p.get().unwrap();
    assert_eq!(m.attempts(), 2);
    assert_eq!(p.stats().open, 1);
    // Attempt 1 finishes late: no room, so it is closed, not leaked.
    m.open();
    eventually("late result closed", || {
        db.connects_ok() == 2 && db.live() == 1
    });
    let s = p.stats();
    assert_eq!(s.open, 1);
    assert!(s.open <= 1);
    drop(g);
    at_rest(&p);
    assert_eq!(db.live(), p.stats().open);
}

#[test]
fn late_result_of_a_hung_connect_is_kept_when_there_is_room() {
    let (db, m, p) = first_connect_hangs(2);
    let g = p.get().unwrap();
    m.open();
    eventually("late result kept as idle", || p.stats().idle == 1);
    assert_eq!(db.live(), 2);
    drop(g);
    assert_eq!(p.stats().idle, 2);
    at_rest(&p);
}

#[test]
fn connect_outliving_its_waiter_is_kept_as_idle() {
    let db = FaultManager::new();
    let m = Gated::new(&db, &[1]);
    let p = sized(1, 0)
        .checkout_timeout(Duration::from_secs(30))
        .build_on(&m);
    let err = p.get_timeout(Duration::from_millis(150)).unwrap_err();
    assert!(err.is_timeout(), "{err}");
    m.open();
    eventually("late result kept", || p.stats().idle == 1);
    assert_eq!(p.get().unwrap().id(), 1);
    at_rest(&p);
}

#[test]
fn close_does_not_wait_for_a_hung_connect_and_its_late_result_is_closed() {
    let db = FaultManager::new();
    let m = Gated::new(&db, &[1]);
    let p = sized(1, 0).build_on(&m);
    let p2 = p.clone();
    let waiter = std::thread::spawn(move || p2.get_timeout(Duration::from_secs(30)).map(|_| ()));
    eventually("a connect in flight", || p.stats().connecting == 1);
    let p3 = p.clone();
    returns_without_hanging("close()", move || p3.close());
    let err = returns_without_hanging("the waiter", move || waiter.join().unwrap()).unwrap_err();
    assert!(err.is_closed(), "{err}");
    m.open();
    eventually("late result closed", || {
        db.connects_ok() == 1 && db.live() == 0
    });
    assert_eq!(p.stats().open, 0);
}

#[test]
fn at_most_max_connecting_attempts_run_at_once() {
    let db = FaultManager::new();
    db.connect_delay(Duration::from_millis(50));
    let p = sized(8, 0)
        .max_connecting(2)
        .checkout_timeout(Duration::from_secs(20))
        .build_on(&db);
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let p = p.clone();
            std::thread::spawn(move || {
                let g = p.get().unwrap();
                std::thread::sleep(Duration::from_millis(400));
                drop(g);
            })
        })
        .collect();
    let mut peak = 0;
    while !threads.iter().all(|t| t.is_finished()) {
        peak = peak.max(p.stats().connecting);
        std::thread::sleep(Duration::from_millis(2));
    }
    for t in threads {
        t.join().unwrap();
    }
    assert!(peak <= 2, "{peak} connects in flight at once");
    assert!(peak >= 1);
    at_rest(&p);
}

#[test]
fn failed_connects_back_off_exponentially_while_the_database_is_down() {
    let initial = Duration::from_millis(20);
    let cap = Duration::from_millis(160);
    let db = down_database();
    let p = sized(4, 4)
        .backoff_initial(initial)
        .backoff_max(cap)
        .build_on(&db);
    // Sixteen threads keep asking for ~1.2 s: plenty of demand.
    let until = Instant::now() + Duration::from_millis(1200);
    let threads: Vec<_> = (0..16)
        .map(|_| {
            let p = p.clone();
            std::thread::spawn(move || {
                while Instant::now() < until {
                    let err = p.get_timeout(Duration::from_millis(150)).unwrap_err();
                    assert!(err.is_timeout(), "{err}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let times = db.attempt_times();
    assert!(
        times.len() >= 3,
        "the pool kept trying: {} attempts",
        times.len()
    );
    // The first round may run max_connecting (2) attempts at once; after
    // that one at a time, each after the backoff delay of the failures so
    // far (jitter only shortens a delay, by at most 20 %).
    for i in 1..times.len() - 1 {
        let gap = times[i + 1] - times[i];
        let min = min_delay(initial, cap, (i + 1) as u32);
        assert!(
            gap >= min,
            "attempt {} came {gap:?} after attempt {}, the schedule allows {min:?} at least \
             ({} attempts in all)",
            i + 2,
            i + 1,
            times.len()
        );
    }
    let s = p.stats();
    assert_eq!(s.connect_errors, times.len() as u64);
    assert_eq!(s.open, 0);
    // The database comes back: the pool recovers.
    db.refuse_connects(false);
    assert!(p.get_timeout(Duration::from_secs(10)).is_ok());
    at_rest(&p);
}

#[test]
fn hung_connects_back_off_like_failed_ones() {
    // A database that accepts nothing and answers nothing (a blackhole):
    // each attempt is given up at connect_timeout, which counts as a
    // failure and must be followed by the backoff delay, not a new attempt
    // at once.
    let initial = Duration::from_millis(50);
    let cap = Duration::from_millis(200);
    let connect_timeout = Duration::from_millis(100);
    let db = FaultManager::new();
    db.hang_connects(Duration::from_secs(30));
    let p = sized(1, 0)
        .connect_timeout(connect_timeout)
        .backoff_initial(initial)
        .backoff_max(cap)
        .build_on(&db);
    let err = p.get_timeout(Duration::from_millis(1500)).unwrap_err();
    assert!(err.is_timeout(), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("connect_timeout"), "{msg}");
    let times = db.attempt_times();
    assert!(times.len() >= 2, "{} attempts", times.len());
    for i in 0..times.len() - 1 {
        let gap = times[i + 1] - times[i];
        let min = connect_timeout + min_delay(initial, cap, (i + 1) as u32);
        assert!(
            gap >= min,
            "attempt {} came {gap:?} after attempt {}, expected at least {min:?} \
             (connect_timeout + backoff; {} attempts in all)",
            i + 2,
            i + 1,
            times.len()
        );
    }
    db.release();
    eventually("hung attempts finished", || {
        db.connects_ok() == times.len() as u64
    });
    eventually("late results kept or closed", || {
        db.live() == p.stats().open
    });
    assert!(p.stats().open <= 1);
    at_rest(&p);
}

#[test]
fn no_attempts_without_demand() {
    let db = down_database();
    let p = Pool::builder()
        .backoff_initial(Duration::from_millis(10))
        .backoff_max(Duration::from_millis(10))
        .build_on(&db);
    assert!(
        p.get_timeout(Duration::from_millis(100))
            .unwrap_err()
            .is_timeout()
    );
    eventually("no connect in flight", || p.stats().connecting == 0);
    let before = db.connect_attempts();
    // Twenty backoff periods with nobody asking.
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        db.connect_attempts() <= before + 1,
        "the pool retried with no demand"
    );
}

#[test]
fn keeps_trying_while_a_waiter_waits() {
    let db = down_database();
    let p = Pool::builder()
        .backoff_initial(Duration::from_millis(10))
        .backoff_max(Duration::from_millis(20))
        .checkout_timeout(Duration::from_secs(20))
        .build_on(&db);
    let p2 = p.clone();
    let waiter = std::thread::spawn(move || p2.get().map(|g| g.id()));
    // Well past the cap: a pool that gives up would stop here.
    eventually("many attempts", || db.connect_attempts() >= 10);
    db.refuse_connects(false);
    let id = returns_without_hanging("the waiter", move || waiter.join().unwrap()).unwrap();
    assert_eq!(id, 1);
    assert_eq!(p.stats().consecutive_connect_failures, 0);
    at_rest(&p);
}

#[test]
fn fail_fast_when_down_fails_at_once_with_the_connect_error() {
    let db = down_database();
    let p = Pool::builder()
        .name("ffwd")
        .fail_fast_when_down(true)
        .checkout_timeout(Duration::from_millis(200))
        // Long enough that no retry is in flight during the test.
        .backoff_initial(Duration::from_secs(30))
        .backoff_max(Duration::from_secs(30))
        .build_on(&db);
    // Nothing known yet: the first checkout waits and times out.
    assert!(p.get().unwrap_err().is_timeout());
    assert_eq!(db.connect_attempts(), 1);
    // Now the database is known to be down: fail at once, even with a long
    // timeout, with the driver's error.
    let p2 = p.clone();
    let err = returns_without_hanging("get()", move || {
        p2.get_timeout(Duration::from_secs(3600)).unwrap_err()
    });
    let (pool, consecutive_failures, source) = connect_error(&err);
    assert_eq!(pool, "ffwd");
    assert_eq!(consecutive_failures, 1);
    assert!(source.contains("database is down"), "{source}");
    assert_eq!(
        db.connect_attempts(),
        1,
        "failing fast starts no connect storm"
    );
}

#[test]
fn fail_fast_when_down_still_serves_idle_connections() {
    let db = FaultManager::new();
    let p = Pool::builder()
        .pool_size(2)
        .fail_fast_when_down(true)
        .checkout_timeout(Duration::from_millis(200))
        .backoff_initial(Duration::from_secs(30))
        .backoff_max(Duration::from_secs(30))
        .build_on(&db);
    let a = p.get().unwrap();
    db.refuse_connects(true);
    // A second connection fails to open: the database is down.
    assert!(p.get().unwrap_err().is_timeout());
    drop(a);
    // The idle connection still serves.
    let g = p.get().unwrap();
    assert_eq!(g.id(), 1);
}

#[test]
fn fail_fast_when_down_recovers_once_the_database_is_back() {
    let db = down_database();
    let p = Pool::builder()
        .fail_fast_when_down(true)
        .checkout_timeout(Duration::from_millis(200))
        .backoff_initial(Duration::from_millis(20))
        .backoff_max(Duration::from_millis(40))
        .build_on(&db);
    assert!(p.get().unwrap_err().is_timeout());
    // Later checkouts fail fast while a backoff delay runs. One that comes
    // when no delay runs (or while an attempt is in flight: a busy machine
    // can be slow to run the connect thread) waits for the attempt its
    // demand starts, and times out while the database stays down; the
    // next one then finds a delay running.
    let mut tries = Vec::new();
    while tries.len() < 20 {
        let e = p.get().unwrap_err();
        let fast = matches!(e, Error::Connect { .. });
        tries.push(e.to_string());
        if fast {
            break;
        }
    }
    assert!(
        tries.len() < 20,
        "no checkout failed fast while the database was down: {tries:#?}"
    );
    db.refuse_connects(false);
    // Failing fast must not mean never trying again.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match p.get_timeout(Duration::from_secs(1)) {
            Ok(_) => break,
            Err(e) => assert!(
                Instant::now() < deadline,
                "the pool never retried after the outage ({} attempts): {e}",
                db.connect_attempts()
            ),
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    at_rest(&p);
}

#[test]
fn a_hung_attempt_that_fails_late_is_counted_once() {
    // Each attempt hangs 300 ms and then fails; the pool gives up on it at
    // connect_timeout (100 ms), which counts it as failed. Its late failure
    // must not count a second time.
    let db = down_database();
    db.hang_connects(Duration::from_millis(300));
    let p = sized(1, 0)
        .connect_timeout(Duration::from_millis(100))
        .backoff_initial(Duration::from_millis(50))
        .backoff_max(Duration::from_millis(50))
        .build_on(&db);
    assert!(
        p.get_timeout(Duration::from_millis(500))
            .unwrap_err()
            .is_timeout()
    );
    // Every hung attempt has come back (each returns after 300 ms; no new
    // one starts once the waiter is gone).
    std::thread::sleep(Duration::from_millis(1000));
    let s = p.stats();
    assert_eq!(
        s.connect_errors,
        db.connect_attempts(),
        "failed attempts counted more than once: {s:?}"
    );
    assert_eq!(s.consecutive_connect_failures, db.connect_attempts());
    db.release();
}
