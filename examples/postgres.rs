//! A cistern pool over PostgreSQL:
//!
//! ```text
//! cargo run --example postgres --features postgres -- postgres://user@127.0.0.1:5432/db
//! ```
//!
//! The URL comes from the first argument, else `CISTERN_POSTGRES_URL`, else
//! `postgres://postgres@127.0.0.1:5432/test`. Worker threads run queries
//! through a small pool, then the pool's stats are printed. An unreachable
//! server gives a clear error and exit status 1.

#[cfg(not(feature = "postgres"))]
fn main() {
    eprintln!(
        "this example needs the `postgres` feature: cargo run --example postgres --features postgres -- URL"
    );
    std::process::exit(2);
}

#[cfg(feature = "postgres")]
fn main() {
    use std::time::{Duration, Instant};

    use cistern::postgres::PostgresManager;
    use cistern::{Pool, WarmUp};

    let url = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("CISTERN_POSTGRES_URL").ok())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".to_owned());

    // A bad URL is reported with its password masked.
    let manager = match PostgresManager::new(&url) {
        Ok(m) => m
            .connect_timeout(Duration::from_secs(3))
            .init_sql("SET application_name = 'cistern-example'"),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
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
            eprintln!("error: PostgreSQL is unreachable.\n  server: {target}\n  cause: {e}");
            std::process::exit(1);
        }
    };

    let start = Instant::now();
    let workers: Vec<_> = (0..8)
        .map(|w: i32| {
            let pool = pool.clone();
            std::thread::spawn(move || -> Result<i64, String> {
                let mut sum = 0i64;
                for i in 0..50 {
                    let mut conn = pool.get().map_err(|e| e.to_string())?;
                    let row = conn
                        .query_one("SELECT $1::int8 * 2", &[&i64::from(w * 1000 + i)])
                        .map_err(|e| e.to_string())?;
                    sum += row.get::<_, i64>(0);
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
    let version: String = conn
        .query_one("SHOW server_version", &[])
        .expect("version")
        .get(0);
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
