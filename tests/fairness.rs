//! Rule 4: fair waiting. Waiters are served first come, first served; no
//! waiter starves; `max_waiting` bounds the queue; idle connections are
//! handed out newest first.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use cistern::testing::FaultManager;
use cistern::{Error, Pool};
use common::{BuildOn, pool, sized, wait_for_waiters};

/// Queues `n` waiters one after the other (each is in the queue before the
/// next starts) and returns the order in which they were served.
fn serve_order(p: &Pool<FaultManager>, n: usize) -> Vec<usize> {
    let held = p.get().unwrap();
    let (tx, rx) = mpsc::channel();
    let mut threads = Vec::new();
    for i in 0..n {
        let pool = p.clone();
        let tx = tx.clone();
        threads.push(std::thread::spawn(move || {
            let g = pool.get().unwrap();
            tx.send(i).unwrap();
            std::thread::sleep(Duration::from_millis(2));
            drop(g);
        }));
        wait_for_waiters(p, i + 1);
    }
    drop(held);
    for t in threads {
        t.join().unwrap();
    }
    drop(tx);
    rx.iter().collect()
}

#[test]
fn waiters_are_served_in_arrival_order() {
    let db = FaultManager::new();
    let p = pool(&db, 1, 0);
    assert_eq!(serve_order(&p, 8), (0..8).collect::<Vec<_>>());
}

#[test]
fn waiters_are_served_in_arrival_order_with_strict_handoff() {
    let db = FaultManager::new();
    let p = sized(1, 0).barging_window(Duration::ZERO).build_on(&db);
    assert_eq!(serve_order(&p, 8), (0..8).collect::<Vec<_>>());
}

#[test]
fn returned_connection_goes_to_the_longest_waiter_not_a_newcomer() {
    let db = FaultManager::new();
    let p = pool(&db, 1, 0);
    let held = p.get().unwrap();
    let p2 = p.clone();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let waiter = std::thread::spawn(move || {
        let g = p2.get().unwrap();
        done_rx.recv().ok();
        g.id()
    });
    wait_for_waiters(&p, 1);
    // Well past the barging window (1 ms).
    std::thread::sleep(Duration::from_millis(20));
    drop(held);
    // Arriving right after the return: the connection is already the
    // waiter's.
    assert!(p.try_get().is_none());
    done_tx.send(()).unwrap();
    assert_eq!(waiter.join().unwrap(), 1);
}

#[test]
fn no_waiter_starves_behind_greedy_threads() {
    let db = FaultManager::new();
    let p = sized(2, 0)
        .checkout_timeout(Duration::from_secs(5))
        .build_on(&db);
    let stop = Arc::new(AtomicBool::new(false));
    let greedy_timeouts = Arc::new(AtomicU64::new(0));
    // Greedy threads take the connection back the moment they return it.
    let greedy: Vec<_> = (0..4)
        .map(|_| {
            let p = p.clone();
            let stop = Arc::clone(&stop);
            let timeouts = Arc::clone(&greedy_timeouts);
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match p.get() {
                        Ok(g) => {
                            std::thread::sleep(Duration::from_micros(200));
                            drop(g);
                        }
                        Err(_) => {
                            timeouts.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    // Polite threads ask now and then; each must always be served.
    let polite: Vec<_> = (0..3)
        .map(|_| {
            let p = p.clone();
            std::thread::spawn(move || {
                let mut served = 0;
                for _ in 0..30 {
                    match p.get() {
                        Ok(g) => {
                            served += 1;
                            drop(g);
                        }
                        Err(e) => panic!("a polite thread starved: {e}"),
                    }
                    std::thread::sleep(Duration::from_millis(3));
                }
                served
            })
        })
        .collect();
    for t in polite {
        assert_eq!(t.join().unwrap(), 30);
    }
    stop.store(true, Ordering::Relaxed);
    for t in greedy {
        t.join().unwrap();
    }
    assert_eq!(greedy_timeouts.load(Ordering::Relaxed), 0);
    let s = p.stats();
    assert_eq!(s.timeouts, 0, "{s:?}");
    assert_eq!((s.waiting, s.in_use), (0, 0));
}

#[test]
fn queue_beyond_max_waiting_fails_at_once_with_queue_full() {
    let db = FaultManager::new();
    let p = sized(1, 0)
        .name("qf")
        .max_waiting(2)
        .checkout_timeout(Duration::from_secs(3600))
        .build_on(&db);
    let held = p.get().unwrap();
    let waiters: Vec<_> = (0..2)
        .map(|_| {
            let p = p.clone();
            std::thread::spawn(move || p.get().map(|g| g.id()))
        })
        .collect();
    wait_for_waiters(&p, 2);
    // Fails at once although checkout_timeout is an hour (a hang would fail
    // the test through the channel's timeout).
    let (tx, rx) = mpsc::channel();
    let p3 = p.clone();
    std::thread::spawn(move || tx.send(p3.get().map(|g| g.id())).unwrap());
    let err = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("get() waited instead of failing")
        .unwrap_err();
    match &err {
        Error::QueueFull {
            pool,
            max_waiting,
            state,
        } => {
            assert_eq!(pool, "qf");
            assert_eq!(*max_waiting, 2);
            assert_eq!(state.waiting, 2);
        }
        other => panic!("expected QueueFull, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("max_waiting = 2"), "{msg}");
    assert_eq!(p.stats().queue_full, 1);
    drop(held);
    for w in waiters {
        assert!(w.join().unwrap().is_ok());
    }
}

#[test]
fn max_waiting_zero_never_queues_but_serves_idle() {
    let db = FaultManager::new();
    let p = sized(1, 0).max_waiting(0).build_on(&db);
    // Nothing idle and room to connect: connecting needs a wait, refused.
    let err = p.get().unwrap_err();
    assert!(matches!(err, Error::QueueFull { .. }), "{err:?}");
    // A pool with max_waiting 0 still hands out idle connections (warmed
    // through min_idle).
    let warm = sized(1, 0).min_idle(1).max_waiting(0).build_on(&db);
    let g = warm.get().unwrap();
    assert!(matches!(warm.get().unwrap_err(), Error::QueueFull { .. }));
    drop(g);
    assert!(warm.get().is_ok());
}

#[test]
fn idle_connections_are_handed_out_newest_first() {
    let db = FaultManager::new();
    let p = pool(&db, 3, 0);
    let a = p.get().unwrap();
    let b = p.get().unwrap();
    let c = p.get().unwrap();
    let (ia, ib, ic) = (a.id(), b.id(), c.id());
    drop(a);
    drop(b);
    drop(c);
    let first = p.get().unwrap();
    assert_eq!(first.id(), ic, "the last returned comes out first");
    let second = p.get().unwrap();
    assert_eq!(second.id(), ib);
    drop(second);
    // A return goes on top again.
    assert_eq!(p.get().unwrap().id(), ib);
    let third = p.get().unwrap();
    assert_eq!(third.id(), ib);
    let fourth = p.get().unwrap();
    assert_eq!(fourth.id(), ia);
}

#[test]
fn returns_to_several_waiters_are_not_closed_as_excess() {
    // With a long barging window a return is parked in the idle store for
    // the front waiter; a second return arriving before that waiter woke
    // up must still go to the second waiter, not be closed as excess
    // (pool_size is 1: the idle store is "full" with the first one).
    for round in 0..20 {
        let db = FaultManager::new();
        let p = sized(1, 1)
            .barging_window(Duration::from_secs(10))
            .checkout_timeout(Duration::from_secs(60))
            .build_on(&db);
        let a = p.get().unwrap();
        let b = p.get().unwrap();
        let (served_tx, served_rx) = mpsc::channel();
        let release = Arc::new(std::sync::Barrier::new(3));
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let p = p.clone();
                let served = served_tx.clone();
                let release = Arc::clone(&release);
                std::thread::spawn(move || {
                    let g = p.get();
                    served.send(g.is_ok()).unwrap();
                    release.wait();
                    drop(g);
                })
            })
            .collect();
        wait_for_waiters(&p, 2);
        drop(a);
        drop(b);
        for _ in 0..2 {
            // A waiter left asleep next to an idle connection would only
            // take it at its 60 s deadline: the watchdog catches that.
            let ok = served_rx
                .recv_timeout(Duration::from_secs(15))
                .unwrap_or_else(|_| panic!("round {round}: a waiter was not woken"));
            assert!(ok, "round {round}: a waiter timed out");
        }
        let s = p.stats();
        assert_eq!(
            (s.created, s.closed_by.excess, s.in_use),
            (2, 0, 2),
            "round {round}: a returned connection was closed while a waiter waited: {s:?}"
        );
        release.wait();
        for w in waiters {
            w.join().unwrap();
        }
    }
}

/// How many `get()`s the test thread completes, each taking the only
/// connection ahead of a queued waiter inside a barging window that never
/// closes, before that waiter is served.
fn overtakes_before_the_waiter_is_served(limit: u32) -> u64 {
    let db = FaultManager::new();
    let p = sized(1, 0)
        .barging_window(Duration::from_secs(3600))
        .barging_limit(limit)
        .build_on(&db);
    let held = p.get().unwrap();
    let done = Arc::new(AtomicU64::new(0));
    let waiter = {
        let (p, done) = (p.clone(), Arc::clone(&done));
        std::thread::spawn(move || {
            let g = p.get().unwrap();
            let seen = done.load(Ordering::SeqCst);
            drop(g);
            seen
        })
    };
    wait_for_waiters(&p, 1);
    drop(held);
    // Past its limit this thread queues behind the waiter, so the loop
    // cannot outrun it.
    for i in 1..=10_000 {
        drop(p.get().unwrap());
        done.store(i, Ordering::SeqCst);
        if waiter.is_finished() {
            break;
        }
    }
    let seen = waiter.join().unwrap();
    assert!(p.stats().waited >= 1);
    seen
}

#[test]
fn a_thread_overtakes_a_waiter_at_most_barging_limit_times_in_a_row() {
    let seen = overtakes_before_the_waiter_is_served(3);
    assert!(seen <= 3, "served after {seen} overtaking checkouts");
}

#[test]
fn barging_limit_zero_never_overtakes_a_waiter() {
    assert_eq!(overtakes_before_the_waiter_is_served(0), 0);
}

#[test]
fn a_second_idle_connection_is_told_to_the_next_waiter() {
    // Both returns land inside a barging window that never closes, so both
    // connections go idle and only the oldest waiter is told. Once it takes
    // one, the next waiter must be told about the other, not left to find it
    // at its deadline (60 s here).
    let db = FaultManager::new();
    let p = sized(2, 0)
        .checkout_timeout(Duration::from_secs(60))
        .barging_window(Duration::from_secs(3600))
        .build_on(&db);
    let held = [p.get().unwrap(), p.get().unwrap()];
    // Each waiter keeps its connection until both are served: a return
    // would tell the next waiter by itself.
    let both_served = Arc::new(std::sync::Barrier::new(2));
    let waiters: Vec<_> = (0..2)
        .map(|i| {
            let pool = p.clone();
            let both_served = Arc::clone(&both_served);
            let w = std::thread::spawn(move || {
                let g = pool.get()?;
                both_served.wait();
                Ok::<u64, Error>(g.id())
            });
            wait_for_waiters(&p, i + 1);
            w
        })
        .collect();
    drop(held);
    let ids = common::returns_without_hanging("two waiters served", move || {
        waiters
            .into_iter()
            .map(|w| w.join().unwrap().unwrap())
            .collect::<Vec<_>>()
    });
    assert_eq!(ids.len(), 2);
}
