//! Panic safety (issue 7, item 3): panics in `Manager::connect`, `ping`,
//! `is_broken`, `init`, the checkout/checkin hooks, event handlers, the
//! driver's close, and user code holding a guard. After each the pool still
//! serves at full capacity, no slot is lost (the counters add up), and
//! nothing deadlocks (every step runs under a watchdog).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cistern::testing::{FaultConn, FaultError, FaultManager};
use cistern::{CloseReason, Error, EventHandler, Manager, Pool, Pooled};
use common::{BuildOn, assert_counters_add_up, quiet_scripted_panics, returns_within, sized};

/// Runs `f` under a watchdog: a deadlock fails the test instead of hanging.
fn no_deadlock<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    returns_within(what, Duration::from_secs(20), f)
}

fn take(n: &AtomicUsize) -> bool {
    n.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1))
        .is_ok()
}

/// Panics scheduled for the hooks FaultManager does not script.
#[derive(Default)]
struct Script {
    init: AtomicUsize,
    on_checkout: AtomicUsize,
    on_checkin: AtomicUsize,
    close: AtomicUsize,
}

/// A FaultManager whose init, hooks and connection close can also panic.
#[derive(Clone)]
struct Panicky {
    db: FaultManager,
    script: Arc<Script>,
}

/// A connection whose close (drop) can panic.
struct Conn {
    inner: FaultConn,
    script: Arc<Script>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        if take(&self.script.close) {
            panic!("scripted panic in the driver's close");
        }
    }
}

impl Manager for Panicky {
    type Connection = Conn;
    type Error = FaultError;

    fn connect(&self) -> Result<Conn, FaultError> {
        Ok(Conn {
            inner: self.db.connect()?,
            script: Arc::clone(&self.script),
        })
    }
    fn init(&self, conn: &mut Conn) -> Result<(), FaultError> {
        if take(&self.script.init) {
            panic!("scripted panic in init");
        }
        self.db.init(&mut conn.inner)
    }
    fn ping(&self, conn: &mut Conn) -> Result<(), FaultError> {
        self.db.ping(&mut conn.inner)
    }
    fn is_broken(&self, conn: &mut Conn) -> bool {
        self.db.is_broken(&mut conn.inner)
    }
    fn on_checkout(&self, _conn: &mut Conn) -> Result<(), FaultError> {
        if take(&self.script.on_checkout) {
            panic!("scripted panic in on_checkout");
        }
        Ok(())
    }
    fn on_checkin(&self, conn: &mut Conn) -> Result<(), FaultError> {
        if take(&self.script.on_checkin) {
            panic!("scripted panic in on_checkin");
        }
        self.db.on_checkin(&mut conn.inner)
    }
}

const SIZE: usize = 2;
const OVERFLOW: usize = 1;

fn setup(bypass: Duration) -> (Pool<Panicky>, FaultManager, Arc<Script>) {
    quiet_scripted_panics();
    let db = FaultManager::new();
    let script = Arc::new(Script::default());
    let p = sized(SIZE, OVERFLOW)
        .ping_bypass(bypass)
        .checkout_timeout(Duration::from_secs(10))
        .backoff_initial(Duration::from_millis(10))
        .backoff_max(Duration::from_millis(20))
        .build(Panicky {
            db: db.clone(),
            script: Arc::clone(&script),
        })
        .unwrap();
    (p, db, script)
}

/// The pool serves `pool_size + max_overflow` checkouts at once, every
/// connection works, and at rest the counters add up with nothing lost.
fn still_serves_at_full_capacity<M: Manager>(p: &Pool<M>, db: &FaultManager) {
    let p2 = p.clone();
    no_deadlock("full-capacity checkout", move || {
        let guards: Vec<_> = (0..SIZE + OVERFLOW)
            .map(|i| {
                p2.get_timeout(Duration::from_secs(10))
                    .unwrap_or_else(|e| panic!("checkout {i} after the panic: {e}"))
            })
            .collect();
        assert!(
            p2.get_timeout(Duration::ZERO).is_err(),
            "more than the maximum open"
        );
        drop(guards);
    });
    let s = p.stats();
    assert_counters_add_up(&s);
    assert_eq!((s.in_use, s.waiting), (0, 0), "{s:?}");
    assert_eq!(db.live(), s.open, "{s:?}");
    p.check_invariants().unwrap();
}

/// A checkout under the watchdog: the id of the connection it got.
fn get_id(p: &Pool<Panicky>) -> Result<u64, Error> {
    let p2 = p.clone();
    no_deadlock("get", move || p2.get().map(|g| g.inner.id()))
}

/// Returns `g` under the watchdog.
fn give_back(g: Pooled<Panicky>) {
    no_deadlock("return", move || drop(g));
}

#[test]
fn panic_in_connect() {
    let (p, db, _) = setup(Duration::from_millis(500));
    db.panic_next_connects(3);
    let g = get_id(&p);
    assert!(g.is_ok(), "{g:?}");
    assert_eq!(p.stats().connect_errors, 3);
    still_serves_at_full_capacity(&p, &db);
}

#[test]
fn panic_in_init() {
    let (p, db, script) = setup(Duration::from_millis(500));
    script.init.store(2, Ordering::SeqCst);
    assert!(get_id(&p).is_ok());
    assert_eq!(p.stats().closed_by.failed_init, 2);
    still_serves_at_full_capacity(&p, &db);
}

#[test]
fn panic_in_ping() {
    let (p, db, _) = setup(Duration::ZERO);
    drop(p.get().unwrap());
    db.panic_next_pings(1);
    let id = get_id(&p).unwrap();
    assert_eq!(id, 2, "the connection whose ping panicked was closed");
    assert_eq!(p.stats().closed_by.failed_ping, 1);
    still_serves_at_full_capacity(&p, &db);
}

#[test]
fn panic_in_is_broken_on_checkin() {
    let (p, db, _) = setup(Duration::from_millis(500));
    let g = p.get().unwrap();
    db.panic_next_is_broken(1);
    give_back(g);
    assert_eq!(p.stats().closed_by.broken, 1);
    still_serves_at_full_capacity(&p, &db);
}

#[test]
fn panic_in_is_broken_on_checkout() {
    let (p, db, _) = setup(Duration::from_secs(3600));
    drop(p.get().unwrap());
    db.panic_next_is_broken(1);
    let id = get_id(&p).unwrap();
    assert_eq!(id, 2);
    assert_eq!(p.stats().closed_by.broken, 1);
    still_serves_at_full_capacity(&p, &db);
}

#[test]
fn panic_in_on_checkout() {
    let (p, db, script) = setup(Duration::from_millis(500));
    drop(p.get().unwrap());
    script.on_checkout.store(1, Ordering::SeqCst);
    let id = get_id(&p).unwrap();
    assert_eq!(id, 2);
    assert_eq!(p.stats().closed_by.broken, 1);
    still_serves_at_full_capacity(&p, &db);
}

#[test]
fn panic_in_on_checkin() {
    let (p, db, script) = setup(Duration::from_millis(500));
    let g = p.get().unwrap();
    script.on_checkin.store(1, Ordering::SeqCst);
    give_back(g);
    assert_eq!(p.stats().closed_by.broken, 1);
    still_serves_at_full_capacity(&p, &db);
}

#[test]
fn panic_in_the_drivers_close() {
    let (p, db, script) = setup(Duration::from_millis(500));
    let mut g = p.get().unwrap();
    script.close.store(1, Ordering::SeqCst);
    Pooled::mark_broken(&mut g);
    give_back(g);
    assert_eq!(p.stats().closed_by.broken, 1);
    still_serves_at_full_capacity(&p, &db);
}

#[test]
fn panic_in_user_code_holding_a_guard() {
    let (p, db, _) = setup(Duration::from_millis(500));
    // Other threads wait for the connection while its holder panics.
    let holders: Vec<_> = (0..SIZE + OVERFLOW)
        .map(|_| {
            let p = p.clone();
            std::thread::spawn(move || {
                let _g = p.get().unwrap();
                std::thread::sleep(Duration::from_millis(20));
                panic!("scripted panic in user code");
            })
        })
        .collect();
    let waiters: Vec<_> = (0..4)
        .map(|_| {
            let p = p.clone();
            std::thread::spawn(move || p.get().map(|_| ()))
        })
        .collect();
    for h in holders {
        assert!(h.join().is_err());
    }
    for w in waiters {
        no_deadlock("a waiter", move || w.join().unwrap()).unwrap();
    }
    assert_eq!(p.stats().closed_by.panicked, (SIZE + OVERFLOW) as u64);
    still_serves_at_full_capacity(&p, &db);
}

/// An event handler that panics in every callback.
struct PanickingHandler {
    calls: Arc<AtomicUsize>,
}

impl PanickingHandler {
    fn boom(&self, what: &str) -> ! {
        self.calls.fetch_add(1, Ordering::SeqCst);
        panic!("scripted panic in the event handler's {what}");
    }
}

impl EventHandler for PanickingHandler {
    fn on_connect(&self, _: &str, _: u64, _: Duration) {
        self.boom("on_connect")
    }
    fn on_connect_error(&self, _: &str, _: &(dyn std::error::Error + 'static)) {
        self.boom("on_connect_error")
    }
    fn on_checkout(&self, _: &str, _: u64, _: Duration) {
        self.boom("on_checkout")
    }
    fn on_checkin(&self, _: &str, _: u64, _: Duration) {
        self.boom("on_checkin")
    }
    fn on_timeout(&self, _: &str, _: Duration) {
        self.boom("on_timeout")
    }
    fn on_close(&self, _: &str, _: u64, _: CloseReason) {
        self.boom("on_close")
    }
    fn on_leak(&self, _: &str, _: u64, _: Duration) {
        self.boom("on_leak")
    }
}

#[test]
fn panics_in_every_event_handler_callback() {
    quiet_scripted_panics();
    let db = FaultManager::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let p = sized(SIZE, OVERFLOW)
        .checkout_timeout(Duration::from_secs(10))
        .backoff_initial(Duration::from_millis(10))
        .backoff_max(Duration::from_millis(20))
        .leak_threshold(Duration::from_millis(50))
        .event_handler(PanickingHandler {
            calls: Arc::clone(&calls),
        })
        .build_on(&db);
    let p2 = p.clone();
    let db2 = db.clone();
    no_deadlock("a full lifecycle", move || {
        // connect error, connect, checkout
        db2.fail_next_connects(1);
        let mut guards: Vec<_> = (0..SIZE + OVERFLOW).map(|_| p2.get().unwrap()).collect();
        // timeout
        assert!(
            p2.get_timeout(Duration::from_millis(20))
                .unwrap_err()
                .is_timeout()
        );
        // leak report
        std::thread::sleep(Duration::from_millis(300));
        // close (broken), checkin, excess close
        Pooled::mark_broken(&mut guards[0]);
        drop(guards);
    });
    assert!(
        calls.load(Ordering::SeqCst) >= 8,
        "{} callbacks",
        calls.load(Ordering::SeqCst)
    );
    still_serves_at_full_capacity(&p, &db);
    let p2 = p.clone();
    no_deadlock("close", move || p2.close());
    assert_eq!(db.live(), 0);
}
