//! Rule 9: `close()` and dropping the last handle. Rule 10: background work
//! runs on few threads and holds no strong reference to the pool.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use cistern::testing::{FaultConn, FaultError, FaultManager};
use cistern::{Error, Manager, Pool, WarmUp};
use common::{
    BuildOn, assert_counters_add_up, down_database, eventually, returns_without_hanging, sized,
    thread_names, threads_named,
};

/// The tests here run one at a time: some count this process's threads.
static THREADS: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    THREADS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Waits until the background thread of pool `name` has ended.
fn background_thread_gone(name: &str) {
    let thread = format!("cistern-{name}");
    eventually(&format!("{thread} gone"), || threads_named(&thread) == 0);
}

fn pool(db: &FaultManager, name: &str, size: usize) -> Pool<FaultManager> {
    sized(size, 0)
        .name(name)
        .checkout_timeout(Duration::from_secs(30))
        .build_on(db)
}

#[test]
fn close_fails_new_checkouts_with_closed() {
    let _serial = serial();
    let db = FaultManager::new();
    let p = pool(&db, "c-new", 2);
    drop(p.get().unwrap());
    p.close();
    assert!(p.is_closed());
    let err = p.get().unwrap_err();
    assert!(err.is_closed(), "{err}");
    assert!(matches!(&err, Error::Closed { pool } if pool == "c-new"));
    assert!(err.to_string().contains("c-new"));
    assert!(p.get_timeout(Duration::ZERO).unwrap_err().is_closed());
    assert!(p.try_get().is_none());
    assert!(p.stats().closed);
    // Idempotent.
    p.close();
}

#[test]
fn close_wakes_every_waiter_with_closed() {
    let _serial = serial();
    let db = FaultManager::new();
    let p = pool(&db, "c-wake", 1);
    let held = p.get().unwrap();
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let p = p.clone();
            std::thread::spawn(move || p.get().map(|_| ()))
        })
        .collect();
    eventually("waiters queued", || p.stats().waiting >= 3);
    p.close();
    for w in waiters {
        let err = returns_without_hanging("a waiter", move || w.join().unwrap()).unwrap_err();
        assert!(err.is_closed(), "{err}");
    }
    assert_eq!(p.stats().waiting, 0);
    drop(held);
}

#[test]
fn close_closes_idle_now_and_checked_out_on_return() {
    let _serial = serial();
    let db = FaultManager::new();
    let p = pool(&db, "c-idle", 3);
    let guards: Vec<_> = (0..3).map(|_| p.get().unwrap()).collect();
    let mut guards = guards.into_iter();
    let mut out = guards.next().unwrap();
    drop(guards);
    assert_eq!(p.stats().idle, 2);
    p.close();
    assert_eq!(db.live(), 1, "idle connections closed at once");
    let s = p.stats();
    assert_eq!(
        (s.open, s.idle, s.in_use, s.closed_by.pool_closed),
        (1, 0, 1, 2)
    );
    // The checked-out one still works until it is returned.
    assert!(out.query().is_ok());
    drop(out);
    assert_eq!(db.live(), 0);
    let s = p.stats();
    assert_eq!((s.open, s.closed_by.pool_closed), (0, 3));
    assert_counters_add_up(&s);
}

#[test]
fn close_timeout_waits_for_checked_out_connections() {
    let _serial = serial();
    let db = FaultManager::new();
    let p = pool(&db, "c-ct", 2);
    let g = p.get().unwrap();
    let returner = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        drop(g);
    });
    let p2 = p.clone();
    let left = returns_without_hanging("close_timeout", move || {
        p2.close_timeout(Duration::from_secs(10))
    });
    assert_eq!(left, 0);
    assert_eq!(db.live(), 0);
    returner.join().unwrap();
}

#[test]
fn close_timeout_gives_up_at_its_deadline() {
    let _serial = serial();
    let db = FaultManager::new();
    let p = pool(&db, "c-ct2", 2);
    let g = p.get().unwrap();
    drop(p.get().unwrap()); // and one idle
    let p2 = p.clone();
    let left = returns_without_hanging("close_timeout", move || {
        p2.close_timeout(Duration::from_millis(100))
    });
    assert_eq!(left, 1, "one connection still checked out");
    drop(g);
    assert_eq!(db.live(), 0);
}

#[test]
fn close_timeout_counts_a_detached_connection_as_gone() {
    let _serial = serial();
    let db = FaultManager::new();
    let p = pool(&db, "c-ct3", 2);
    let g = p.get().unwrap();
    let detacher = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        cistern::Pooled::detach(g)
    });
    let p2 = p.clone();
    let left = returns_without_hanging("close_timeout", move || {
        p2.close_timeout(Duration::from_secs(10))
    });
    assert_eq!(left, 0);
    drop(detacher.join().unwrap());
}

#[test]
fn dropping_the_last_handle_closes_idle_connections_and_stops_the_thread() {
    let _serial = serial();
    let db = FaultManager::new();
    let p = Pool::builder()
        .name("c-drop")
        .pool_size(3)
        .min_idle(2)
        .build_on(&db);
    eventually("min_idle open", || p.stats().idle == 2);
    eventually("the background thread named", || {
        threads_named("cistern-c-drop") == 1
    });
    let clone = p.clone();
    drop(p);
    // A clone keeps it open.
    assert!(!clone.is_closed());
    assert_eq!(db.live(), 2);
    drop(clone);
    assert_eq!(db.live(), 0, "idle connections closed with the last handle");
    background_thread_gone("c-drop");
}

#[test]
fn dropping_the_last_handle_with_a_guard_out_closes_it_on_return() {
    let _serial = serial();
    let db = FaultManager::new();
    let p = pool(&db, "c-gout", 2);
    let mut g = p.get().unwrap();
    drop(p.get().unwrap());
    assert_eq!(db.live(), 2);
    drop(p);
    assert_eq!(db.live(), 1, "the idle one closed");
    background_thread_gone("c-gout");
    assert!(g.query().is_ok());
    drop(g);
    assert_eq!(db.live(), 0);
}

/// A manager that records when it is dropped: the pool's shared state (which
/// owns it) is gone.
struct Tracked {
    db: FaultManager,
    dropped: Arc<AtomicBool>,
}

impl Tracked {
    /// A manager over `db`, and the flag its drop sets.
    fn new(db: &FaultManager) -> (Tracked, Arc<AtomicBool>) {
        let dropped = Arc::new(AtomicBool::new(false));
        let manager = Tracked {
            db: db.clone(),
            dropped: Arc::clone(&dropped),
        };
        (manager, dropped)
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.dropped.store(true, Ordering::SeqCst);
    }
}

impl Manager for Tracked {
    type Connection = FaultConn;
    type Error = FaultError;
    fn connect(&self) -> Result<FaultConn, FaultError> {
        self.db.connect()
    }
    fn ping(&self, conn: &mut FaultConn) -> Result<(), FaultError> {
        self.db.ping(conn)
    }
}

#[test]
fn background_work_keeps_no_dropped_pool_alive() {
    let _serial = serial();
    let db = FaultManager::new();
    let (manager, dropped) = Tracked::new(&db);
    let p = Pool::builder()
        .name("c-weak")
        .min_idle(1)
        .idle_timeout(Duration::from_secs(60))
        .build(manager)
        .unwrap();
    drop(p.get().unwrap());
    drop(p);
    eventually("the pool's state freed", || dropped.load(Ordering::SeqCst));
    background_thread_gone("c-weak");
    assert_eq!(db.live(), 0);
}

#[test]
fn a_pool_backing_off_from_a_down_database_is_freed_when_dropped() {
    let _serial = serial();
    let db = down_database();
    let (manager, dropped) = Tracked::new(&db);
    // A connect thread is parked in a long backoff when the pool is dropped.
    let p = Pool::builder()
        .name("c-back")
        .min_idle(1)
        .warm_up(WarmUp::Background)
        .backoff_initial(Duration::from_secs(60))
        .backoff_max(Duration::from_secs(60))
        .build(manager)
        .unwrap();
    eventually("a failed attempt", || db.connect_attempts() >= 1);
    drop(p);
    eventually("the pool's state freed", || dropped.load(Ordering::SeqCst));
    background_thread_gone("c-back");
    assert_eq!(db.connect_attempts(), 1);
}

#[test]
fn each_pool_at_rest_runs_one_background_thread_and_no_connect_threads() {
    let _serial = serial();
    let db = FaultManager::new();
    let pools: Vec<_> = (0..10)
        .map(|i| {
            Pool::builder()
                .name(format!("few{i}"))
                .pool_size(3)
                .min_idle(2)
                .build_on(&db)
        })
        .collect();
    for p in &pools {
        let g = p.get().unwrap();
        drop(g);
        eventually("min_idle open", || p.stats().idle >= 2);
    }
    // A thread names itself once it runs, and a listing of
    // /proc/self/task can miss a thread while others exit: poll.
    for i in 0..10 {
        let name = format!("cistern-few{i}");
        eventually(&format!("one {name} thread"), || threads_named(&name) == 1);
    }
    // Connect threads end as soon as there is nothing to open
    // (their names are cut to "cistern-connect" by the kernel).
    eventually("connect threads ended", || {
        threads_named("cistern-connect") == 0
    });
    drop(pools);
    eventually("every background thread gone", || {
        !thread_names().iter().any(|n| n.starts_with("cistern-few"))
    });
    assert_eq!(db.live(), 0);
}

#[test]
fn a_dropped_pool_closes_its_connections_at_once_even_if_other_threads_used_it() {
    let _serial = serial();
    let db = FaultManager::new();
    let (manager, dropped) = Tracked::new(&db);
    let p = Pool::builder().name("c-threads").build(manager).unwrap();
    // A worker uses the pool, then stays alive: it keeps a reference to the
    // pool's state for its next checkout (never a connection).
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let (used_tx, used_rx) = std::sync::mpsc::channel::<()>();
    let worker = {
        let p = p.clone();
        std::thread::spawn(move || {
            drop(p.get().unwrap());
            drop(p);
            used_tx.send(()).unwrap();
            done_rx.recv().unwrap();
        })
    };
    used_rx.recv().unwrap();
    drop(p);
    // Closed at once: no connection stays open, the background thread stops.
    assert_eq!(db.live(), 0);
    background_thread_gone("c-threads");
    // The rest of its state goes when the worker exits.
    done_tx.send(()).unwrap();
    worker.join().unwrap();
    eventually("the pool's state freed", || dropped.load(Ordering::SeqCst));
}
