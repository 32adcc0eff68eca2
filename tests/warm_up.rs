//! Rule 2: warm-up. `min_idle` connections are opened at build time and
//! kept; `WarmUp::Required` fails fast with `Error::Connect`,
//! `WarmUp::Background` returns at once and keeps trying.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cistern::testing::{FaultConn, FaultError, FaultManager};
use cistern::{Builder, Error, Manager, Pool, WarmUp};
use common::{BuildOn, connect_error, down_database, eventually, sized, threads_named};

#[test]
fn min_idle_connections_are_open_when_build_returns() {
    let db = FaultManager::new();
    let p = Pool::builder().pool_size(5).min_idle(3).build_on(&db);
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
    let p = Pool::builder().pool_size(4).min_idle(2).build_on(&db);
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
    let db = down_database();
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
    let (pool, consecutive_failures, source) = connect_error(&err);
    assert_eq!(pool, "wu-req");
    assert!(consecutive_failures >= 1);
    assert!(source.contains("refused"), "{source}");
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
        threads_named("cistern-wu-req") == 0
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
    let err = sized(4, 0)
        .name("wu-mid")
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
        threads_named("cistern-wu-mid") == 0
    });
}

/// `size` connections, `min_idle` of them opened in the background, and a
/// quick backoff (20 to 40 ms).
fn background_warm_up(size: usize, min_idle: usize) -> Builder<FaultManager> {
    Pool::builder()
        .pool_size(size)
        .min_idle(min_idle)
        .warm_up(WarmUp::Background)
        .backoff_initial(Duration::from_millis(20))
        .backoff_max(Duration::from_millis(40))
}

#[test]
fn background_warm_up_returns_at_once_and_keeps_trying() {
    let db = down_database();
    let p = background_warm_up(4, 2).build_on(&db);
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
    let db = down_database();
    let p = background_warm_up(2, 1)
        .checkout_timeout(Duration::from_millis(200))
        .build_on(&db);
    let err = p.get().unwrap_err();
    assert!(err.is_timeout(), "{err}");
    db.refuse_connects(false);
    let conn = p.get_timeout(Duration::from_secs(10)).unwrap();
    drop(conn);
    p.check_invariants().unwrap();
}
