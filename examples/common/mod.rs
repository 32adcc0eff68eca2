//! What the `postgres` and `mysql` examples share (a module, not an
//! example of its own): the server's URL, a small pool that must connect
//! at start, eight threads of queries through it, and the pool's stats.

use std::fmt::Debug;
use std::time::{Duration, Instant};

use cistern::{Manager, Pool, WarmUp};

/// The URL from the first argument, else the env var `env`, else
/// `default`.
pub fn url(env: &str, default: &str) -> String {
    std::env::args()
        .nth(1)
        .or_else(|| std::env::var(env).ok())
        .unwrap_or_else(|| default.to_owned())
}

/// What the server computes for the example, in its own SQL.
pub struct Queries<C> {
    /// `n * 2`.
    pub double: fn(&mut C, i64) -> Result<i64, String>,
    /// The server's version.
    pub version: fn(&mut C) -> String,
}

/// Builds a pool over `manager` (4 connections + 4 overflow, 2 kept idle,
/// all required at start), runs 400 queries from 8 threads through it,
/// then prints the server's version and the pool's stats. A bad URL (the
/// `manager` error, its password masked), an unreachable `server` or a
/// failed query is printed and exits with status 1.
pub fn run<M: Manager + Debug>(
    server: &str,
    manager: Result<M, cistern::Error>,
    queries: Queries<M::Connection>,
) {
    let manager = manager.unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(1);
    });
    let target = format!("{manager:?}"); // never shows the password
    let pool = match Pool::builder()
        .name("example")
        .pool_size(4)
        .max_overflow(4)
        .min_idle(2)
        .warm_up(WarmUp::Required) // fail here, not at the first query
        .checkout_timeout(Duration::from_secs(5))
        .build(manager)
    {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {server} is unreachable.\n  server: {target}\n  cause: {e}");
            std::process::exit(1);
        }
    };

    let start = Instant::now();
    let workers: Vec<_> = (0..8)
        .map(|w: i64| {
            let pool = pool.clone();
            let double = queries.double;
            std::thread::spawn(move || -> Result<i64, String> {
                let mut sum = 0i64;
                for i in 0..50 {
                    let mut conn = pool.get().map_err(|e| e.to_string())?;
                    sum += double(&mut conn, w * 1000 + i)?;
                }
                Ok(sum)
            })
        })
        .collect();
    let mut total = 0;
    for w in workers {
        match w.join().expect("worker thread panicked") {
            Ok(sum) => total += sum,
            Err(e) => {
                eprintln!("error: a query failed: {e}");
                std::process::exit(1);
            }
        }
    }
    let elapsed = start.elapsed();

    let mut conn = pool.get().expect("a connection");
    let version = (queries.version)(&mut conn);
    drop(conn);
    let s = pool.stats();
    println!(
        "server version {version}: 400 queries by 8 threads in {elapsed:.2?} (checksum {total})"
    );
    println!(
        "pool: open {} (idle {}, in use {}), created {}, checkouts {}, waited {}, timeouts {}, pings {}, closed {:?}",
        s.open,
        s.idle,
        s.in_use,
        s.created,
        s.checkouts,
        s.waited,
        s.timeouts,
        s.pings,
        s.closed_by
    );
}
