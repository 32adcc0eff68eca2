//! SQLite integration: file and shared in-memory databases through
//! `SqliteManager`, pragmas applied on connect, concurrent writers under WAL
//! with `busy_timeout`, and an open transaction rolled back on return.

#![cfg(feature = "sqlite")]

use std::path::PathBuf;
use std::time::Duration;

use cistern::Pool;
use cistern::sqlite::{SqliteManager, rusqlite};

/// A fresh directory for one test, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "cistern-sqlite-{test}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn pragma<T: rusqlite::types::FromSql>(c: &rusqlite::Connection, name: &str) -> T {
    c.query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))
        .unwrap()
}

#[test]
fn file_database_gets_the_default_pragmas() {
    let dir = TempDir::new("pragmas");
    let p = Pool::builder()
        .pool_size(2)
        .build(SqliteManager::file(dir.file("app.db")))
        .unwrap();
    let c = p.get().unwrap();
    let mode: String = pragma(&c, "journal_mode");
    assert_eq!(mode.to_lowercase(), "wal");
    assert_eq!(pragma::<i64>(&c, "synchronous"), 1, "NORMAL");
    assert_eq!(pragma::<i64>(&c, "busy_timeout"), 5000);
    assert_eq!(pragma::<i64>(&c, "foreign_keys"), 1);
    drop(c);
    assert!(dir.file("app.db").exists());
}

#[test]
fn custom_pragmas_and_init_sql_apply_to_every_connection() {
    let dir = TempDir::new("custom");
    let p = Pool::builder()
        .pool_size(3)
        .max_overflow(0)
        .build(
            SqliteManager::file(dir.file("c.db"))
                .pragma("busy_timeout", "1234")
                .pragma("cache_size", "-2000")
                .init_sql("CREATE TABLE IF NOT EXISTS t (x INTEGER)"),
        )
        .unwrap();
    // Three distinct connections, each configured.
    let conns: Vec<_> = (0..3).map(|_| p.get().unwrap()).collect();
    for c in &conns {
        assert_eq!(pragma::<i64>(c, "busy_timeout"), 1234);
        assert_eq!(pragma::<i64>(c, "cache_size"), -2000);
        let n: i64 = c
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0);
    }
}

#[test]
fn bad_pragma_fails_the_connect_with_the_drivers_error() {
    let p = Pool::builder()
        .checkout_timeout(Duration::from_millis(300))
        .backoff_initial(Duration::from_millis(20))
        .backoff_max(Duration::from_millis(40))
        .build(SqliteManager::memory("bad_pragma").pragma("busy_timeout", "soon"))
        .unwrap();
    let err = p.get().unwrap_err();
    let msg = err.to_string();
    assert!(err.is_timeout(), "{msg}");
    assert!(msg.contains("busy_timeout"), "{msg}");
    assert!(p.stats().closed_by.failed_init >= 1);
}

#[test]
fn shared_memory_database_is_seen_by_every_connection() {
    let p = Pool::builder()
        .pool_size(3)
        .max_overflow(0)
        .min_idle(1)
        .build(SqliteManager::memory("it_shared_mem"))
        .unwrap();
    let a = p.get().unwrap();
    a.execute_batch(
        "CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT); INSERT INTO kv VALUES ('a', '1');",
    )
    .unwrap();
    let b = p.get().unwrap();
    let v: String = b
        .query_row("SELECT v FROM kv WHERE k = 'a'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, "1");
    assert_eq!(pragma::<i64>(&b, "foreign_keys"), 1);
}

#[test]
fn separately_named_memory_databases_are_separate() {
    let p1 = Pool::new(SqliteManager::memory("it_sep_one")).unwrap();
    let p2 = Pool::new(SqliteManager::memory("it_sep_two")).unwrap();
    let a = p1.get().unwrap();
    a.execute_batch("CREATE TABLE only_here (x INTEGER)")
        .unwrap();
    let b = p2.get().unwrap();
    let n: i64 = b
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name = 'only_here'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 0);
}

#[test]
fn concurrent_writers_succeed_under_wal_and_busy_timeout() {
    let dir = TempDir::new("writers");
    let p = Pool::builder()
        .pool_size(4)
        .max_overflow(4)
        .checkout_timeout(Duration::from_secs(30))
        .build(
            SqliteManager::file(dir.file("w.db"))
                .init_sql("CREATE TABLE IF NOT EXISTS log (thread INTEGER, n INTEGER)"),
        )
        .unwrap();
    let threads = 8;
    let rows = 50;
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let p = p.clone();
            std::thread::spawn(move || {
                for n in 0..rows {
                    let mut c = p.get().unwrap();
                    // Write transactions, so writers contend for the lock.
                    let tx = c
                        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                        .unwrap();
                    tx.execute("INSERT INTO log VALUES (?1, ?2)", [t, n])
                        .unwrap();
                    tx.commit().unwrap();
                    // And readers alongside.
                    let _: i64 = c
                        .query_row("SELECT count(*) FROM log", [], |r| r.get(0))
                        .unwrap();
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("a writer failed (SQLITE_BUSY?)");
    }
    let c = p.get().unwrap();
    let total: i64 = c
        .query_row("SELECT count(*) FROM log", [], |r| r.get(0))
        .unwrap();
    assert_eq!(total, (threads * rows) as i64);
    let s = p.stats();
    assert_eq!(s.closed_by.broken, 0, "{s:?}");
    assert!(s.open <= 8);
}

#[test]
fn open_transaction_is_rolled_back_when_the_connection_returns() {
    let p = Pool::builder()
        .pool_size(1)
        .max_overflow(0)
        .min_idle(1)
        .build(SqliteManager::memory("it_rollback"))
        .unwrap();
    let c = p.get().unwrap();
    c.execute_batch("CREATE TABLE t (x INTEGER)").unwrap();
    c.execute_batch("BEGIN; INSERT INTO t VALUES (1);").unwrap();
    assert!(!c.is_autocommit());
    drop(c); // returned mid-transaction
    let c = p.get().unwrap();
    assert_eq!(cistern::Pooled::id(&c), 1, "the same connection, reused");
    assert!(
        c.is_autocommit(),
        "the transaction was rolled back on return"
    );
    let n: i64 = c
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 0, "the uncommitted row is gone");
    assert_eq!(p.stats().closed_by.broken, 0);
}

#[test]
fn connection_dropped_mid_transaction_while_panicking_is_closed() {
    let dir = TempDir::new("panic");
    let p = Pool::builder()
        .pool_size(1)
        .max_overflow(0)
        .build(
            SqliteManager::file(dir.file("p.db"))
                .init_sql("CREATE TABLE IF NOT EXISTS t (x INTEGER)"),
        )
        .unwrap();
    let p2 = p.clone();
    let r = std::thread::spawn(move || {
        let c = p2.get().unwrap();
        c.execute_batch("BEGIN; INSERT INTO t VALUES (1);").unwrap();
        panic!("handler failed mid-transaction");
    })
    .join();
    assert!(r.is_err());
    assert_eq!(p.stats().closed_by.panicked, 1);
    let c = p.get().unwrap();
    let n: i64 = c
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 0);
}

#[test]
fn ping_validates_an_idle_connection() {
    let clock = cistern::Clock::manual();
    let p = Pool::builder()
        .clock(clock.clone())
        .build(SqliteManager::memory("it_ping"))
        .unwrap();
    drop(p.get().unwrap());
    assert_eq!(p.stats().pings, 0, "a fresh connection is not pinged");
    clock.advance(Duration::from_secs(1));
    let c = p.get().unwrap();
    assert_eq!(cistern::Pooled::id(&c), 1);
    let s = p.stats();
    assert_eq!((s.pings, s.closed_by.failed_ping), (1, 0), "{s:?}");
}
