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

#[cfg(feature = "postgres")]
mod common;

#[cfg(not(feature = "postgres"))]
fn main() {
    eprintln!(
        "this example needs the `postgres` feature: cargo run --example postgres --features postgres -- URL"
    );
    std::process::exit(2);
}

#[cfg(feature = "postgres")]
fn main() {
    use std::time::Duration;

    use cistern::postgres::PostgresManager;

    let url = common::url(
        "CISTERN_POSTGRES_URL",
        "postgres://postgres@127.0.0.1:5432/test",
    );
    // A bad URL is reported with its password masked.
    let manager = PostgresManager::new(&url).map(|m| {
        m.connect_timeout(Duration::from_secs(3))
            .init_sql("SET application_name = 'cistern-example'")
    });
    common::run(
        "PostgreSQL",
        manager,
        common::Queries {
            double: |conn, n| {
                conn.query_one("SELECT $1::int8 * 2", &[&n])
                    .map(|row| row.get(0))
                    .map_err(|e| e.to_string())
            },
            version: |conn| {
                conn.query_one("SHOW server_version", &[])
                    .expect("version")
                    .get(0)
            },
        },
    );
}
