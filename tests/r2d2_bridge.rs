//! Any `r2d2::ManageConnection` as a cistern manager: `connect`,
//! `is_valid` as the pre-ping, `has_broken` as `is_broken`, its errors in
//! cistern's messages, and a `Debug` that never shows the inner manager.

#![cfg(feature = "r2d2")]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use cistern::Pool;
use cistern::r2d2::R2d2Manager;

#[derive(Debug)]
struct Failure(String);

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Failure {}

/// A scriptable r2d2 manager; its derived `Debug` shows its password, as
/// many real ones do.
#[derive(Debug, Clone, Default)]
struct Scripted {
    password: String,
    refuse: Arc<AtomicBool>,
    invalid: Arc<AtomicBool>,
    broken: Arc<AtomicBool>,
    connects: Arc<AtomicU64>,
    validations: Arc<AtomicU64>,
}

struct Conn {
    serial: u64,
}

impl r2d2::ManageConnection for Scripted {
    type Connection = Conn;
    type Error = Failure;

    fn connect(&self) -> Result<Conn, Failure> {
        if self.refuse.load(Ordering::SeqCst) {
            return Err(Failure(
                "connection refused by the scripted server".to_owned(),
            ));
        }
        Ok(Conn {
            serial: self.connects.fetch_add(1, Ordering::SeqCst) + 1,
        })
    }

    fn is_valid(&self, _: &mut Conn) -> Result<(), Failure> {
        self.validations.fetch_add(1, Ordering::SeqCst);
        if self.invalid.load(Ordering::SeqCst) {
            return Err(Failure("validation failed".to_owned()));
        }
        Ok(())
    }

    fn has_broken(&self, _: &mut Conn) -> bool {
        self.broken.load(Ordering::SeqCst)
    }
}

fn pool(m: &Scripted) -> Pool<R2d2Manager<Scripted>> {
    Pool::builder()
        .pool_size(2)
        .max_overflow(0)
        .ping_bypass(Duration::ZERO)
        .checkout_timeout(Duration::from_millis(500))
        .build(R2d2Manager::new(m.clone()))
        .unwrap()
}

#[test]
fn connections_come_from_the_r2d2_manager() {
    let m = Scripted::default();
    let pool = pool(&m);
    let conn = pool.get().unwrap();
    assert_eq!(conn.serial, 1);
    assert_eq!(m.connects.load(Ordering::SeqCst), 1);
}

#[test]
fn is_valid_is_the_pre_ping() {
    let m = Scripted::default();
    let pool = pool(&m);
    let first = pool.get().unwrap().serial;
    assert_eq!(pool.get().unwrap().serial, first);
    assert!(m.validations.load(Ordering::SeqCst) >= 1);
    m.invalid.store(true, Ordering::SeqCst);
    // The invalid connection is never handed out: a new one is, or none.
    match pool.get_timeout(Duration::from_millis(100)) {
        Ok(g) => assert_ne!(g.serial, first),
        Err(e) => assert!(e.is_timeout(), "{e}"),
    }
    assert!(
        pool.stats().closed_by.failed_ping >= 1,
        "{:?}",
        pool.stats()
    );
}

#[test]
fn has_broken_closes_the_connection_on_return() {
    let m = Scripted::default();
    let pool = pool(&m);
    let conn = pool.get().unwrap();
    m.broken.store(true, Ordering::SeqCst);
    drop(conn);
    assert_eq!(pool.stats().closed_by.broken, 1);
    assert_eq!(pool.stats().open, 0);
}

#[test]
fn connect_errors_reach_the_timeout_message() {
    let m = Scripted::default();
    m.refuse.store(true, Ordering::SeqCst);
    let pool = pool(&m);
    let err = pool.get().unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(
        err.to_string()
            .contains("connection refused by the scripted server"),
        "{err}"
    );
}

#[test]
fn debug_names_the_manager_type_without_its_fields() {
    let m = Scripted {
        password: "hunter2".to_owned(),
        ..Scripted::default()
    };
    assert!(
        format!("{m:?}").contains("hunter2"),
        "the test manager should leak it"
    );
    let wrapped = R2d2Manager::new(m);
    let text = format!("{wrapped:?}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(text.contains("Scripted"), "{text}");
    let pool = Pool::builder().build(wrapped).unwrap();
    assert!(!format!("{pool:?}").contains("hunter2"));
    assert_eq!(pool.manager().inner().password, "hunter2");
}
