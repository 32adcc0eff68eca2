//! Logging through `log`: connect failures at warn, one line per backoff
//! step; timeouts at warn; recycle and idle closes at debug; every line
//! names its pool; no password in any line.

mod common;

use std::net::TcpStream;
use std::thread;
use std::time::Duration;

use cistern::testing::FaultManager;
use cistern::{Clock, Manager, Pool, Pooled};
use common::{BuildOn, log_capture, sized};
use log::Level;

/// Polls `cond` until it holds, failing after 30 s.
fn eventually(what: &str, cond: impl FnMut() -> bool) {
    common::eventually_within(what, Duration::from_secs(30), cond);
}

fn connect_failure_lines(pool: &str) -> Vec<log_capture::Line> {
    log_capture::of_pool(pool)
        .into_iter()
        .filter(|l| l.text.contains("connect failed"))
        .collect()
}

#[test]
fn connect_failures_are_logged_once_per_backoff_step() {
    log_capture::install();
    let name = "log-connect-steps";
    let db = FaultManager::new();
    let pool = sized(4, 0)
        .name(name)
        .max_connecting(4)
        .backoff_initial(Duration::from_millis(200))
        .backoff_max(Duration::from_millis(200))
        .build_on(&db);
    db.refuse_connects(true);
    // Four attempts in flight at once, all failing together: one step.
    db.hang_connects(Duration::from_secs(60));
    let getters: Vec<_> = (0..4)
        .map(|_| {
            let pool = pool.clone();
            thread::spawn(move || pool.get().map(drop))
        })
        .collect();
    eventually("four concurrent attempts", || db.connect_attempts() == 4);
    db.release();
    // Then retries, one per backoff step.
    eventually("more retries", || db.connect_attempts() >= 8);
    pool.close();
    for g in getters {
        assert!(g.join().unwrap().unwrap_err().is_closed());
    }
    eventually("the last attempt to end", || pool.stats().connecting == 0);
    let attempts = db.connect_attempts() as usize;
    // The first four failures share a line; each later attempt is a step.
    let expected = 1 + (attempts - 4);
    eventually("one line per step", || {
        connect_failure_lines(name).len() >= expected
    });
    let lines = connect_failure_lines(name);
    assert_eq!(
        lines.len(),
        expected,
        "{attempts} attempts, {} lines: {lines:#?}",
        lines.len()
    );
    for l in &lines {
        assert_eq!(l.level, Level::Warn, "{l:?}");
        assert!(l.text.contains("in a row, next try in"), "{l:?}");
        assert!(
            l.text.contains("database is down"),
            "the driver's error: {l:?}"
        );
    }
    assert!(lines[0].text.contains("(1 in a row"), "{:?}", lines[0]);
    assert_eq!(
        pool.stats().connect_errors as usize,
        attempts,
        "every attempt is counted"
    );
}

#[test]
fn timeouts_are_logged_at_warn() {
    log_capture::install();
    let name = "log-timeouts";
    let pool = sized(1, 0).name(name).build(FaultManager::new()).unwrap();
    let held = pool.get().unwrap();
    let err = pool.get_timeout(Duration::from_millis(30)).unwrap_err();
    assert!(err.is_timeout());
    let lines: Vec<_> = log_capture::of_pool(name)
        .into_iter()
        .filter(|l| l.text.contains("no connection became available"))
        .collect();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert_eq!(lines[0].level, Level::Warn);
    assert_eq!(
        lines[0].text,
        err.to_string(),
        "the line is the error's message"
    );
    drop(held);
}

#[test]
fn recycle_and_idle_closes_are_logged_at_debug() {
    log_capture::install();
    let clock = Clock::manual();
    let name = "log-recycle";
    let pool = Pool::builder()
        .name(name)
        .clock(clock.clone())
        .recycle_after(Duration::from_secs(60))
        .build(FaultManager::new())
        .unwrap();
    let conn = pool.get().unwrap();
    let id = Pooled::id(&conn);
    clock.advance(Duration::from_secs(120));
    drop(conn);
    let wanted = format!("pool '{name}': closing connection {id} (recycled)");
    let line = log_capture::of_pool(name)
        .into_iter()
        .find(|l| l.text == wanted)
        .unwrap_or_else(|| panic!("no line {wanted:?}"));
    assert_eq!(line.level, Level::Debug);

    let name = "log-idle";
    let pool = Pool::builder()
        .name(name)
        .clock(clock.clone())
        .idle_timeout(Duration::from_millis(40))
        .recycle_after(None)
        .build(FaultManager::new())
        .unwrap();
    let id = Pooled::id(&pool.get().unwrap());
    clock.advance(Duration::from_secs(3600));
    let wanted = format!("pool '{name}': closing connection {id} (idle_timeout)");
    eventually("the idle close line", || {
        log_capture::of_pool(name).iter().any(|l| l.text == wanted)
    });
    let line = log_capture::of_pool(name)
        .into_iter()
        .find(|l| l.text == wanted)
        .unwrap();
    assert_eq!(line.level, Level::Debug);
}

/// A manager whose URL holds a password; its connects really fail (nothing
/// listens on loopback port 1).
#[derive(Debug, Clone)]
struct SecretManager {
    url: String,
}

const PASSWORD: &str = "hunter2-secret";

impl Manager for SecretManager {
    type Connection = TcpStream;
    type Error = std::io::Error;

    fn connect(&self) -> Result<TcpStream, std::io::Error> {
        // The URL (with its password) is there to be leaked by a careless
        // log line printing the manager; the pool must never print it.
        debug_assert!(self.url.contains(PASSWORD));
        TcpStream::connect_timeout(&"127.0.0.1:1".parse().unwrap(), Duration::from_secs(2))
    }

    fn ping(&self, _: &mut TcpStream) -> Result<(), std::io::Error> {
        Ok(())
    }
}

/// A pool `name` over `manager`, whose connects fail: a checkout gives up
/// after `wait` with an error that does not show the password, and the
/// failures are logged.
fn failing_pool<M: Manager>(name: &str, manager: M, wait: Duration) -> Pool<M> {
    log_capture::install();
    let pool = Pool::builder()
        .name(name)
        .backoff_initial(Duration::from_millis(10))
        .backoff_max(Duration::from_millis(20))
        .build(manager)
        .unwrap();
    let err = pool.get_timeout(wait).unwrap_err();
    assert!(!err.to_string().contains(PASSWORD), "{err}");
    eventually("connect failure lines", || {
        !connect_failure_lines(name).is_empty()
    });
    pool
}

fn assert_no_password(lines: &[log_capture::Line]) {
    for l in lines {
        assert!(
            !l.text.contains(PASSWORD),
            "a password in a log line: {l:?}"
        );
    }
}

#[test]
fn no_line_shows_a_password_and_every_line_names_its_pool() {
    let manager = SecretManager {
        url: format!("postgres://app:{PASSWORD}@127.0.0.1:1/orders"),
    };
    let pool = failing_pool("log-secret", manager, Duration::from_millis(200));
    assert!(!format!("{pool:?}").contains(PASSWORD));
    pool.close();

    // Lines of every kind, from a pool that does everything.
    let clock = Clock::manual();
    let db = FaultManager::new();
    let busy = sized(1, 1)
        .name("log-busy")
        .clock(clock.clone())
        .leak_threshold(Duration::from_millis(40))
        .ping_bypass(Duration::ZERO)
        .backoff_initial(Duration::from_millis(5))
        .backoff_max(Duration::from_millis(10))
        .build_on(&db);
    db.fail_next_connects(1);
    db.fail_next_inits(1);
    let a = busy.get().unwrap();
    let b = busy.get().unwrap();
    assert!(
        busy.get_timeout(Duration::from_millis(10))
            .unwrap_err()
            .is_timeout()
    );
    clock.advance(Duration::from_secs(60));
    eventually("a leak report", || busy.stats().leaks_reported >= 2);
    drop((a, b));
    db.fail_next_pings(1);
    drop(busy.get().unwrap());
    busy.close();

    let lines = log_capture::all();
    assert!(lines.len() >= 5, "{lines:#?}");
    assert_no_password(&lines);
    for l in &lines {
        // The pool's own lines; an adapter (cistern::backends::*) does not
        // know which pool it serves.
        if l.target.starts_with("cistern") && !l.target.starts_with("cistern::backends") {
            assert!(l.text.contains("pool '"), "a line without its pool: {l:?}");
        }
    }
    let busy_lines = log_capture::of_pool("log-busy");
    let has = |level: Level, text: &str| {
        busy_lines
            .iter()
            .any(|l| l.level == level && l.text.contains(text))
    };
    assert!(has(Level::Warn, "connect failed"), "{busy_lines:#?}");
    assert!(has(Level::Warn, "has been held for"), "{busy_lines:#?}");
    assert!(has(Level::Warn, "no connection became available"));
    assert!(has(Level::Info, "failed its pre-ping"), "{busy_lines:#?}");
    assert!(has(Level::Debug, "(pool_closed)"), "{busy_lines:#?}");
}

/// A real adapter whose connects fail (nothing listens on loopback port 1):
/// neither its errors nor the pool's lines may show the URL's password.
#[cfg(any(feature = "postgres", feature = "mysql"))]
fn adapter_lines_hide_the_password<M: Manager>(name: &str, manager: M) {
    let pool = failing_pool(name, manager, Duration::from_millis(300));
    pool.close();
    assert_no_password(&log_capture::of_pool(name));
    let health = pool.health();
    assert!(!health.summary().contains(PASSWORD), "{}", health.summary());
}

#[cfg(feature = "postgres")]
#[test]
fn postgres_connect_failures_never_show_the_password() {
    let url = format!("postgres://app:{PASSWORD}@127.0.0.1:1/orders");
    let manager = cistern::postgres::PostgresManager::new(&url).unwrap();
    assert!(!format!("{manager:?}").contains(PASSWORD));
    adapter_lines_hide_the_password("log-postgres-secret", manager);
}

#[cfg(feature = "mysql")]
#[test]
fn mysql_connect_failures_never_show_the_password() {
    let url = format!("mysql://app:{PASSWORD}@127.0.0.1:1/orders");
    let manager = cistern::mysql::MysqlManager::new(&url).unwrap();
    assert!(!format!("{manager:?}").contains(PASSWORD));
    adapter_lines_hide_the_password("log-mysql-secret", manager);
}
