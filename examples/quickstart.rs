//! cistern in one minute, on SQLite (no server needed):
//!
//! ```text
//! cargo run --release --example quickstart
//! ```
//!
//! Creates a table in a temporary database file, runs worker threads that
//! insert and read through the pool, prints the pool's stats, then runs the
//! same work opening a connection per request and compares the two.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use cistern::Pool;
use cistern::sqlite::SqliteManager;
use cistern::sqlite::rusqlite::{self, Connection, params};

const WORKERS: usize = 4;
const REQUESTS_PER_WORKER: u64 = 2_000;

/// One "request": insert a row and read an aggregate back.
fn request(conn: &Connection, worker: usize, i: u64) -> rusqlite::Result<i64> {
    conn.prepare_cached("INSERT INTO events (worker, seq) VALUES (?1, ?2)")?
        .execute(params![worker as i64, i as i64])?;
    conn.prepare_cached("SELECT COUNT(*) FROM events WHERE worker = ?1")?
        .query_row([worker as i64], |r| r.get(0))
}

fn run_workers(
    work: impl Fn(usize, u64) -> Result<i64, String> + Send + Sync + 'static,
) -> Duration {
    let work = Arc::new(work);
    let failures = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let handles: Vec<_> = (0..WORKERS)
        .map(|w| {
            let work = Arc::clone(&work);
            let failures = Arc::clone(&failures);
            thread::spawn(move || {
                for i in 0..REQUESTS_PER_WORKER {
                    if let Err(e) = work(w, i) {
                        failures.fetch_add(1, Ordering::Relaxed);
                        eprintln!("worker {w}: {e}");
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("worker thread panicked");
    }
    let elapsed = start.elapsed();
    let failed = failures.load(Ordering::Relaxed);
    if failed > 0 {
        eprintln!("{failed} requests failed");
    }
    elapsed
}

fn database_path() -> PathBuf {
    std::env::temp_dir().join(format!("cistern-quickstart-{}.db", std::process::id()))
}

fn remove_database(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = database_path();
    let manager = SqliteManager::file(&path).init_sql(
        "CREATE TABLE IF NOT EXISTS events (
             id INTEGER PRIMARY KEY,
             worker INTEGER NOT NULL,
             seq INTEGER NOT NULL
         );
         CREATE INDEX IF NOT EXISTS events_worker ON events (worker);",
    );
    let pool = Pool::builder()
        .name("quickstart")
        .pool_size(WORKERS)
        .max_overflow(2)
        .checkout_timeout(Duration::from_secs(10))
        .build(manager.clone())?;

    println!(
        "cistern quickstart: {WORKERS} workers x {REQUESTS_PER_WORKER} requests (INSERT + SELECT COUNT) on {}",
        path.display()
    );

    // Pooled: every request checks a connection out and drops it.
    let p = pool.clone();
    let pooled = run_workers(move |w, i| {
        let conn = p.get().map_err(|e| e.to_string())?;
        request(&conn, w, i).map_err(|e| e.to_string())
    });

    let stats = pool.stats();
    println!("\npool stats after the pooled run:");
    println!(
        "  open {} (idle {}, in use {}), pool_size {} + max_overflow {}",
        stats.open, stats.idle, stats.in_use, stats.pool_size, stats.max_overflow
    );
    println!(
        "  connections created {}, closed {}, checkouts {}, waited {}, timeouts {}, pings {}",
        stats.created,
        stats.closed_by.total(),
        stats.checkouts,
        stats.waited,
        stats.timeouts,
        stats.pings
    );
    println!(
        "  checkout wait: mean {:?}, p99 {:?}, max {:?}; held: mean {:?}, max {:?}",
        stats.wait.mean, stats.wait.p99, stats.wait.max, stats.held.mean, stats.held.max
    );

    // Connect per request: the same work, a new connection each time (with
    // the same pragmas, as a careful application would).
    let per_request = run_workers(move |w, i| {
        let conn = {
            use cistern::Manager;
            let mut c = manager.connect().map_err(|e| e.to_string())?;
            manager.init(&mut c).map_err(|e| e.to_string())?;
            c
        };
        request(&conn, w, i).map_err(|e| e.to_string())
    });

    let total = (WORKERS as u64 * REQUESTS_PER_WORKER) as f64;
    let rate = |d: Duration| total / d.as_secs_f64();
    println!("\nsame work, two ways:");
    println!(
        "  pooled:              {:>8.0} requests/s  ({:.2?} in all)",
        rate(pooled),
        pooled
    );
    println!(
        "  connect per request: {:>8.0} requests/s  ({:.2?} in all)",
        rate(per_request),
        per_request
    );
    println!(
        "  pooled is {:.1}x faster",
        per_request.as_secs_f64() / pooled.as_secs_f64()
    );

    let rows: i64 = pool
        .get()?
        .query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))?;
    println!("\nrows written: {rows} (expected {})", 2 * total as i64);
    drop(pool);
    remove_database(&path);
    Ok(())
}
