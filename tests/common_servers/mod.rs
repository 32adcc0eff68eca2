#![allow(dead_code)] // each test binary uses part of it

//! Access to the real PostgreSQL and MariaDB servers for the tests that
//! need them, throwaway roles / users so that counting and killing server
//! sessions never disturbs a test running beside, and the failure
//! scenarios of issue 4 written once for both servers ([`scenarios`]).
//!
//! Skip rule: without a reachable server, a test prints that it was
//! skipped and passes, unless `CI=true`, where an unreachable server fails
//! the test.

pub mod backend;
#[cfg(feature = "mysql")]
pub mod my;
#[cfg(feature = "postgres")]
pub mod pg;
pub mod scenarios;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `postgres://...` of the server (env `CISTERN_POSTGRES_URL`).
pub fn postgres_url() -> String {
    std::env::var("CISTERN_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// `mysql://...` of the server (env `CISTERN_MYSQL_URL`).
pub fn mysql_url() -> String {
    std::env::var("CISTERN_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".to_owned())
}

/// `url` with the password of its `user:password@` part masked, for
/// messages.
pub fn shown(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => match rest[..at].split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***{}", &rest[at..]),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// The skip rule for a part of a server test needs (a socket file, say):
/// prints why and lets the test return outside CI; fails the test in CI.
pub fn skip_outside_ci(label: &str, why: &str) {
    assert!(!in_ci(), "{label}: {why} (CI=true: a failure, not a skip)");
    eprintln!("{label}: skipped: {why}");
}

/// Applies the skip rule: `None` (after printing why) when the server is
/// unreachable outside CI; a panic in CI.
fn reachable_or_skip<T, E: std::fmt::Display>(
    test: &str,
    what: &str,
    url: &str,
    attempt: Result<T, E>,
) -> Option<T> {
    let url = shown(url);
    match attempt {
        Ok(v) => Some(v),
        Err(e) if in_ci() => panic!("{test}: {what} at {url} is unreachable with CI=true: {e}"),
        Err(e) => {
            eprintln!(
                "{test}: skipped: {what} at {url} is unreachable ({e}); set CI=true to fail instead"
            );
            None
        }
    }
}

/// A name nobody else uses: `cistern_t_<hex>`.
pub fn unique_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut z = nanos
        ^ (u64::from(std::process::id()) << 32)
        ^ COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    format!("cistern_t_{:012x}", (z ^ (z >> 31)) & 0xffff_ffff_ffff)
}

/// Polls `check` until it is true or `deadline` passes; returns the last
/// answer.
pub fn wait_until(deadline: Duration, mut check: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `f` on a thread and returns its result, or panics if it has not
/// finished within `limit` (a generous watchdog against hangs, not a
/// timing assertion).
pub fn within<T: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(v) => v,
        Err(_) => panic!("{what} did not return within the watchdog's {limit:?}"),
    }
}

/// The administrator connection of a server, shared by its handle and the
/// throwaway accounts made through it (one statement at a time: the lock
/// is held for the whole of `run`).
pub struct Admin<C>(Arc<Mutex<C>>);

impl<C> Clone for Admin<C> {
    fn clone(&self) -> Self {
        Admin(Arc::clone(&self.0))
    }
}

impl<C> Admin<C> {
    /// Wraps the administrator connection.
    pub fn new(conn: C) -> Admin<C> {
        Admin(Arc::new(Mutex::new(conn)))
    }

    /// Runs `f` on the administrator connection (a test that panicked
    /// while holding it does not lock the others out).
    pub fn run<T>(&self, f: impl FnOnce(&mut C) -> T) -> T {
        let mut c = self.0.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut c)
    }
}

/// Names of the tables made for a throwaway account, dropped with it.
#[derive(Default)]
pub struct Tables(Mutex<Vec<String>>);

impl Tables {
    /// `<owner>_<suffix>`, remembered for the cleanup.
    pub fn add(&self, owner: &str, suffix: &str) -> String {
        let table = format!("{owner}_{suffix}");
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(table.clone());
        table
    }

    /// Every table made so far, forgotten here.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}
