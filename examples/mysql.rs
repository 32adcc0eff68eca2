//! A cistern pool over MySQL or MariaDB:
//!
//! ```text
//! cargo run --example mysql --features mysql -- mysql://root@127.0.0.1:3306/test
//! ```
//!
//! The URL comes from the first argument, else `CISTERN_MYSQL_URL`, else
//! `mysql://root@127.0.0.1:3306/test`. Worker threads run queries through a
//! small pool, then the pool's stats are printed. An unreachable server
//! gives a clear error and exit status 1.

#[cfg(not(feature = "mysql"))]
fn main() {
    eprintln!(
        "this example needs the `mysql` feature: cargo run --example mysql --features mysql -- URL"
    );
    std::process::exit(2);
}

#[cfg(feature = "mysql")]
fn main() {
    use std::time::{Duration, Instant};

    use cistern::mysql::MysqlManager;
    use cistern::mysql::mysql::prelude::Queryable;
    use cistern::{Pool, WarmUp};

    let url = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("CISTERN_MYSQL_URL").ok())
        .unwrap_or_else(|| "mysql://root@127.0.0.1:3306/test".to_owned());

    // A bad URL is reported with its password masked.
    let manager = match MysqlManager::new(&url) {
        Ok(m) => m
            .connect_timeout(Duration::from_secs(3))
            .init_sql("SET SESSION sql_mode = 'STRICT_ALL_TABLES'"),
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
            eprintln!("error: the MySQL server is unreachable.\n  server: {target}\n  cause: {e}");
            std::process::exit(1);
        }
    };

    let start = Instant::now();
    let workers: Vec<_> = (0..8)
        .map(|w: i64| {
            let pool = pool.clone();
            std::thread::spawn(move || -> Result<i64, String> {
                let mut sum = 0i64;
                for i in 0..50 {
                    let mut conn = pool.get().map_err(|e| e.to_string())?;
                    let n: Option<i64> = conn
                        .exec_first("SELECT ? * 2", (w * 1000 + i,))
                        .map_err(|e| e.to_string())?;
                    sum += n.unwrap_or(0);
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
    let version: Option<String> = conn.query_first("SELECT VERSION()").expect("version");
    drop(conn);
    let s = pool.stats();
    println!(
        "server version {}: 400 queries by 8 threads in {elapsed:.2?} (checksum {total})",
        version.unwrap_or_default()
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
