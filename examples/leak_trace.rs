//! Leak detection in action:
//!
//! ```text
//! cargo run --example leak_trace
//! ```
//!
//! A request handler "forgets" its guard. The pool reports it once the guard
//! has been held longer than `leak_threshold`, with the file and line of the
//! `get()` that took it (and, in debug builds, the backtrace); `holders()`
//! lists it; and the timeout error of the next starved `get()` names it.

use std::time::Duration;

use cistern::Pool;
use cistern::sqlite::SqliteManager;

type SqlitePool = Pool<SqliteManager>;

/// A handler with a bug: it keeps its connection forever.
fn handle_report_request(pool: &SqlitePool) {
    let conn = pool.get().expect("checkout"); // <- the leak report points here
    let n: i64 = conn
        .query_row("SELECT 40 + 2", [], |r| r.get(0))
        .expect("query");
    println!("report handler computed {n}");
    std::mem::forget(conn); // the bug
}

fn main() -> Result<(), cistern::Error> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .init();

    let pool = Pool::builder()
        .name("leaky")
        .pool_size(1)
        .max_overflow(0)
        .leak_threshold(Duration::from_millis(300))
        .leak_backtraces(cfg!(debug_assertions))
        .checkout_timeout(Duration::from_millis(500))
        .build(SqliteManager::memory("leak_trace"))?;

    handle_report_request(&pool);

    // Give the background thread time to notice (it scans every 75 ms here).
    std::thread::sleep(Duration::from_millis(600));

    println!("\nholders():");
    for h in pool.holders() {
        println!("  {h}");
    }

    println!("\nthe next get() on the exhausted pool:");
    match pool.get() {
        Ok(_) => println!("  unexpectedly got a connection"),
        Err(e) => println!("  error: {e}"),
    }
    Ok(())
}
