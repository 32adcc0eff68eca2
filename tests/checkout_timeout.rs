//! Rule 3: the checkout timeout and what its error says; a zero timeout
//! never waits.

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use cistern::testing::FaultManager;
use cistern::{Error, Pool};
use common::{BuildOn, down_database, returns_without_hanging, sized, wait_for_waiters};

fn pool(db: &FaultManager, size: usize, overflow: usize, timeout: Duration) -> Pool<FaultManager> {
    sized(size, overflow)
        .name("ct")
        .checkout_timeout(timeout)
        .build_on(db)
}

/// The error of `get_timeout(timeout)`, run on another thread: a hang fails
/// the test (after 10 s) instead of hanging it, and so does a success.
fn get_timeout_error(p: &Pool<FaultManager>, timeout: Duration) -> Error {
    let p2 = p.clone();
    returns_without_hanging("get_timeout()", move || {
        p2.get_timeout(timeout).unwrap_err()
    })
}

#[test]
fn get_fails_with_timeout_after_checkout_timeout() {
    let db = FaultManager::new();
    let p = pool(&db, 1, 0, Duration::from_millis(300));
    let _held = p.get().unwrap();
    let started = Instant::now();
    let err = p.get().unwrap_err();
    let elapsed = started.elapsed();
    match &err {
        Error::Timeout { waited, .. } => {
            assert!(*waited >= Duration::from_millis(300), "waited {waited:?}");
            assert!(elapsed >= *waited);
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(err.is_timeout());
    assert_eq!(p.stats().timeouts, 1);
    assert_eq!(p.stats().waiting, 0, "the timed-out waiter left the queue");
}

#[test]
fn get_timeout_overrides_the_setting() {
    let db = FaultManager::new();
    let p = pool(&db, 1, 0, Duration::from_secs(3600));
    let _held = p.get().unwrap();
    let err = get_timeout_error(&p, Duration::from_millis(100));
    assert!(err.is_timeout(), "{err}");
}

#[test]
fn timeout_message_states_wait_and_pool_state() {
    let db = FaultManager::new();
    let p = pool(&db, 2, 1, Duration::from_millis(250));
    let a = p.get().unwrap();
    let b = p.get().unwrap();
    let c = p.get().unwrap();
    // A second waiter in the queue while the first times out.
    let p2 = p.clone();
    let other = std::thread::spawn(move || p2.get_timeout(Duration::from_secs(5)).map(|g| g.id()));
    wait_for_waiters(&p, 1);
    let err = p.get().unwrap_err();
    let Error::Timeout {
        pool,
        waited,
        state,
        last_connect_error,
        ..
    } = &err
    else {
        panic!("expected a timeout, got {err:?}");
    };
    assert_eq!(pool, "ct");
    assert_eq!((state.in_use, state.idle, state.open), (3, 0, 3));
    assert_eq!((state.pool_size, state.max_overflow), (2, 1));
    assert_eq!(state.waiting, 1, "the other waiter is still queued");
    assert!(last_connect_error.is_none(), "connects did not fail");
    let msg = err.to_string();
    for part in [
        "pool 'ct'",
        "in use 3/3",
        "pool_size 2 + max_overflow 1",
        "idle 0",
        "open 3",
        "waiting 1",
    ] {
        assert!(msg.contains(part), "{part:?} missing from: {msg}");
    }
    // How long it waited, in the message's own format (e.g. "250.3ms").
    let shown = if *waited < Duration::from_secs(1) {
        format!("within {:.1}ms", waited.as_secs_f64() * 1e3)
    } else {
        format!("within {:.2}s", waited.as_secs_f64())
    };
    assert!(
        msg.contains(&shown),
        "wait of {waited:?} missing from: {msg}"
    );
    assert!(!msg.contains("connects are failing"), "{msg}");
    drop(a);
    assert!(other.join().unwrap().is_ok());
    drop((b, c));
}

#[test]
fn timeout_message_names_the_holders_call_site() {
    let db = FaultManager::new();
    let p = pool(&db, 1, 0, Duration::from_millis(200));
    let (taken_tx, taken_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let p2 = p.clone();
    let holder = std::thread::Builder::new()
        .name("the-holder".into())
        .spawn(move || {
            let line = line!() + 1;
            let g = p2.get().unwrap();
            taken_tx.send(line).unwrap();
            done_rx.recv().ok();
            drop(g);
        })
        .unwrap();
    let line = taken_rx.recv().unwrap();
    let err = p.get().unwrap_err();
    let msg = err.to_string();
    let site = format!("{}:{line}", file!());
    assert!(msg.contains(&site), "call site {site} missing from: {msg}");
    assert!(
        msg.contains("the-holder"),
        "holder thread missing from: {msg}"
    );
    done_tx.send(()).unwrap();
    holder.join().unwrap();
}

#[test]
fn timeout_message_includes_the_last_connect_error() {
    let db = down_database();
    let p = Pool::builder()
        .checkout_timeout(Duration::from_millis(300))
        .backoff_initial(Duration::from_millis(20))
        .backoff_max(Duration::from_millis(50))
        .build_on(&db);
    let err = p.get().unwrap_err();
    let Error::Timeout {
        last_connect_error, ..
    } = &err
    else {
        panic!("expected a timeout, got {err:?}");
    };
    let last = last_connect_error.as_ref().expect("the connect error");
    assert!(last.to_string().contains("database is down"), "{last}");
    let msg = err.to_string();
    assert!(msg.contains("connects are failing"), "{msg}");
    assert!(msg.contains("refused: database is down"), "{msg}");
    let source = std::error::Error::source(&err).expect("source is the connect error");
    assert!(source.to_string().contains("database is down"));
    // Once a connect succeeds the error no longer mentions it.
    db.refuse_connects(false);
    let g = p.get_timeout(Duration::from_secs(10)).unwrap();
    let err = p.get_timeout(Duration::ZERO);
    drop(g);
    if let Err(e) = err {
        assert!(!e.to_string().contains("connects are failing"), "{e}");
    }
}

#[test]
fn zero_timeout_hands_out_an_idle_connection() {
    let db = FaultManager::new();
    let p = pool(&db, 1, 0, Duration::from_secs(5));
    drop(p.get().unwrap());
    let g = p.get_timeout(Duration::ZERO).unwrap();
    assert_eq!(g.id(), 1);
}

#[test]
fn zero_timeout_fails_at_once_when_nothing_is_idle() {
    let db = FaultManager::new();
    // Connects hang: a zero-timeout get must not wait for one.
    db.hang_connects(Duration::from_secs(60));
    let p = pool(&db, 1, 1, Duration::from_secs(3600));
    let err = get_timeout_error(&p, Duration::ZERO);
    match &err {
        Error::Timeout { waited, state, .. } => {
            assert_eq!(*waited, Duration::ZERO);
            assert_eq!(state.waiting, 0);
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    db.release();
}

#[test]
fn zero_timeout_fails_at_once_when_all_are_in_use() {
    let db = FaultManager::new();
    let p = pool(&db, 1, 0, Duration::from_secs(3600));
    let _held = p.get().unwrap();
    let err = get_timeout_error(&p, Duration::ZERO);
    assert!(err.is_timeout(), "{err}");
    assert!(p.try_get().is_none());
}

#[test]
fn zero_checkout_timeout_setting_never_waits() {
    let db = FaultManager::new();
    let p = pool(&db, 1, 0, Duration::ZERO);
    let p2 = p.clone();
    let err = returns_without_hanging("get()", move || p2.get().unwrap_err());
    assert!(err.is_timeout(), "{err}");
}
