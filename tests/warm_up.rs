//! Rule 2: warm-up. `min_idle` connections are opened at build time and
//! kept; `WarmUp::Required` fails fast with `Error::Connect`,
//! `WarmUp::Background` returns at once and keeps trying.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cistern::testing::{FaultConn, FaultError, FaultManager};
use cistern::{Error, Manager, Pool, WarmUp};

/// Polls `cond` until it holds or a generous deadline passes.
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Names of this process's threads (`/proc/self/task/*/comm`, at most 15
/// bytes each).
fn thread_names() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .map(|dir| {
            dir.flatten()
                .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
                .map(|s| s.trim_end().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn min_idle_connections_are_open_when_build_returns() {
    let db = FaultManager::new();
    let p = Pool::builder()
        .pool_size(5)
        .min_idle(3)
        .build(db.clone())
        .unwrap();
    let s = p.stats();
    assert!(s.open >= 3, "{s:?}");
    assert_eq!(s.created, s.open as u64);
    eventually("three idle", || p.stats().idle == 3);
    assert_eq!(db.live(), p.stats().open);
}

#[test]
fn default_min_idle_opens_nothing() {
    let db = FaultManager::new();
    let p = Pool::new(db.clone()).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(p.stats().open, 0);
    assert_eq!(db.connect_attempts(), 0);
}

#[test]
fn min_idle_is_kept_after_connections_are_closed() {
    let db = FaultManager::new();
    let p = Pool::builder()
        .pool_size(4)
        .min_idle(2)
        .build(db.clone())
        .unwrap();
    eventually("two idle", || p.stats().idle == 2);
    let mut a = p.get().unwrap();
    let mut b = p.get().unwrap();
    cistern::Pooled::mark_broken(&mut a);
    cistern::Pooled::mark_broken(&mut b);
    drop((a, b));
    assert_eq!(p.stats().closed_by.broken, 2);
    eventually("min_idle restored", || p.stats().idle >= 2);
    p.check_invariants().unwrap();
}

#[test]
fn required_warm_up_fails_fast_with_connect_error() {
    let db = FaultManager::new();
    db.refuse_connects(true);
    let started = Instant::now();
    let err = Pool::builder()
        .name("wu-req")
        .min_idle(2)
        .warm_up(WarmUp::Required)
        .checkout_timeout(Duration::from_secs(30))
        .backoff_initial(Duration::from_secs(10))
        .backoff_max(Duration::from_secs(10))
        .build(db.clone())
        .unwrap_err();
    match &err {
        Error::Connect {
            pool,
            consecutive_failures,
            source,
        } => {
            assert_eq!(pool, "wu-req");
            assert!(*consecutive_failures >= 1);
            assert!(source.to_string().contains("refused"), "{source}");
        }
        other => panic!("expected Error::Connect, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("wu-req") && msg.contains("database is down"),
        "{msg}"
    );
    // "Fast": long before checkout_timeout; a generous bound, not a speed test.
    assert!(started.elapsed() < Duration::from_secs(25));
    // Nothing stays behind: no connections, no background thread.
    assert_eq!(db.live(), 0);
    eventually("background thread stopped", || {
        !thread_names().iter().any(|n| n == "cistern-wu-req")
    });
}

/// Lets the first `ok` connects through, then refuses every other one.
struct DownAfter {
    db: FaultManager,
    ok: u64,
    attempts: AtomicU64,
}

impl Manager for DownAfter {
    type Connection = FaultConn;
    type Error = FaultError;
    fn connect(&self) -> Result<FaultConn, FaultError> {
        let n = self.attempts.fetch_add(1, Ordering::SeqCst) + 1;
        if n > self.ok {
            return Err(FaultError(format!("connect {n} refused")));
        }
        self.db.connect()
    }
    fn ping(&self, conn: &mut FaultConn) -> Result<(), FaultError> {
        self.db.ping(conn)
    }
}

#[test]
fn required_warm_up_failing_midway_closes_what_it_opened() {
    let db = FaultManager::new();
    let err = Pool::builder()
        .name("wu-mid")
        .pool_size(4)
        .max_overflow(0)
        .min_idle(3)
        .max_connecting(1)
        .backoff_initial(Duration::from_secs(5))
        .backoff_max(Duration::from_secs(5))
        .build(DownAfter {
            db: db.clone(),
            ok: 2,
            attempts: AtomicU64::new(0),
        })
        .unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert!(err.to_string().contains("connect 3 refused"), "{err}");
    assert_eq!(db.connects_ok(), 2);
    eventually("the two opened connections closed", || db.live() == 0);
    eventually("background thread stopped", || {
        !thread_names().iter().any(|n| n == "cistern-wu-mid")
    });
}

#[test]
fn background_warm_up_returns_at_once_and_keeps_trying() {
    let db = FaultManager::new();
    db.refuse_connects(true);
    let p = Pool::builder()
        .pool_size(4)
        .min_idle(2)
        .warm_up(WarmUp::Background)
        .backoff_initial(Duration::from_millis(20))
        .backoff_max(Duration::from_millis(40))
        .build(db.clone())
        .unwrap();
    assert_eq!(p.stats().open, 0);
    eventually("several failed attempts", || db.connect_attempts() >= 3);
    let s = p.stats();
    assert!(s.consecutive_connect_failures >= 3, "{s:?}");
    assert!(
        s.last_connect_error
            .as_deref()
            .is_some_and(|e| e.contains("database is down")),
        "{s:?}"
    );
    db.refuse_connects(false);
    eventually("min_idle opened after the outage", || p.stats().idle == 2);
    let s = p.stats();
    assert_eq!(s.consecutive_connect_failures, 0);
    assert_eq!(s.last_connect_error, None);
    assert_eq!(db.live(), 2);
}

#[test]
fn background_warm_up_serves_checkouts_once_the_database_is_up() {
    let db = FaultManager::new();
    db.refuse_connects(true);
    let p = Pool::builder()
        .pool_size(2)
        .min_idle(1)
        .warm_up(WarmUp::Background)
        .backoff_initial(Duration::from_millis(20))
        .backoff_max(Duration::from_millis(40))
        .checkout_timeout(Duration::from_millis(200))
        .build(db.clone())
        .unwrap();
    let err = p.get().unwrap_err();
    assert!(err.is_timeout(), "{err}");
    db.refuse_connects(false);
    let conn = p.get_timeout(Duration::from_secs(10)).unwrap();
    drop(conn);
    p.check_invariants().unwrap();
}
