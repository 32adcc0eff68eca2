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

#[cfg(feature = "mysql")]
mod common;

#[cfg(not(feature = "mysql"))]
fn main() {
    eprintln!(
        "this example needs the `mysql` feature: cargo run --example mysql --features mysql -- URL"
    );
    std::process::exit(2);
}

#[cfg(feature = "mysql")]
fn main() {
    use std::time::Duration;

    use cistern::mysql::MysqlManager;
    use cistern::mysql::mysql::prelude::Queryable;

    let url = common::url("CISTERN_MYSQL_URL", "mysql://root@127.0.0.1:3306/test");
    // A bad URL is reported with its password masked.
    let manager = MysqlManager::new(&url).map(|m| {
        m.connect_timeout(Duration::from_secs(3))
            .init_sql("SET SESSION sql_mode = 'STRICT_ALL_TABLES'")
    });
    common::run(
        "the MySQL server",
        manager,
        common::Queries {
            double: |conn, n| {
                let doubled: Option<i64> = conn
                    .exec_first("SELECT ? * 2", (n,))
                    .map_err(|e| e.to_string())?;
                Ok(doubled.unwrap_or(0))
            },
            version: |conn| {
                let version: Option<String> =
                    conn.query_first("SELECT VERSION()").expect("version");
                version.unwrap_or_default()
            },
        },
    );
}
