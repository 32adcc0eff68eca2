//! `SELECT 1` per request, in one run per database: cistern (defaults, and
//! with pre-ping off), r2d2 (defaults: its manager validates every
//! checkout), one raw connection held by each thread (the floor), and a new
//! connection per request; at 1 and 8 threads.
//!
//! SQLite (a temporary file) always; PostgreSQL and MariaDB when the crate's
//! `postgres` / `mysql` features are on and the server answers
//! (`CISTERN_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/test`;
//! `CISTERN_MYSQL_URL`, default `mysql://root@127.0.0.1:3306/test`).
//!
//! r2d2's driver crates are not dependencies: the minimal managers below do
//! what they do by default (r2d2_sqlite: `execute_batch("")` on checkout;
//! r2d2_postgres: `simple_query("")` on checkout; r2d2_mysql: a ping on
//! checkout and another in `has_broken` on return).
//!
//! ```text
//! cargo bench --bench queries --features postgres,mysql
//! CISTERN_BENCH_SECS=0.5 cargo bench --bench queries --features postgres,mysql
//! ```
//! `CISTERN_BENCH_SECS` sets each run (default 2 s), `CISTERN_BENCH_ROUNDS`
//! the rounds (median shown), `CISTERN_BENCH_ONLY` a filter on the case label
//! (e.g. `sqlite`, `postgres/8t`).

mod support;

use std::path::PathBuf;
use std::time::Duration;

use support::{Run, drive, fmt_rate, fmt_ratio};

fn fatal(msg: &str) -> ! {
    eprintln!("queries bench: {msg}");
    std::process::exit(1)
}

/// One database's ways of running `SELECT 1`.
struct Target<CM, RM, C, MkC, MkR, Raw>
where
    CM: cistern::Manager,
    RM: r2d2::ManageConnection<Connection = C>,
    MkC: Fn() -> CM,
    MkR: Fn() -> RM,
    Raw: Fn() -> Result<C, String> + Sync,
{
    name: &'static str,
    cistern_manager: MkC,
    r2d2_manager: MkR,
    /// Opens a connection with the driver alone.
    connect: Raw,
    /// Runs `SELECT 1` and reads the row.
    query: fn(&mut C) -> Result<(), String>,
    /// The driver connection inside cistern's connection.
    inner: fn(&mut CM::Connection) -> &mut C,
}

const VARIANTS: [&str; 5] = [
    "held connection (floor)",
    "cistern (defaults)",
    "cistern (pre_ping off)",
    "r2d2 (defaults)",
    "connect per request",
];

fn run_target<CM, RM, C, MkC, MkR, Raw>(t: &Target<CM, RM, C, MkC, MkR, Raw>)
where
    CM: cistern::Manager,
    RM: r2d2::ManageConnection<Connection = C>,
    C: Send,
    MkC: Fn() -> CM,
    MkR: Fn() -> RM,
    Raw: Fn() -> Result<C, String> + Sync,
{
    let duration = support::run_duration(Duration::from_secs(2));
    let warm = (duration / 4).min(Duration::from_millis(300));
    let rounds = support::rounds();
    println!("| database | threads | variant | throughput | vs held | cistern/r2d2 |");
    println!("|---|---|---|---|---|---|");
    for threads in [1usize, 8] {
        let label = format!("{}/{threads}t", t.name);
        if !support::selected(&label) {
            continue;
        }
        let defaults = cistern::Pool::builder()
            .name(format!("{}-defaults", t.name))
            .build((t.cistern_manager)())
            .unwrap_or_else(|e| fatal(&format!("{}: cistern pool: {e}", t.name)));
        let no_ping = cistern::Pool::builder()
            .name(format!("{}-no-pre-ping", t.name))
            .pre_ping(false)
            .build((t.cistern_manager)())
            .unwrap_or_else(|e| fatal(&format!("{}: cistern pool: {e}", t.name)));
        let r2d2 = r2d2::Pool::new((t.r2d2_manager)())
            .unwrap_or_else(|e| fatal(&format!("{}: r2d2 pool: {e}", t.name)));
        let query = t.query;
        let inner = t.inner;
        let connect = &t.connect;
        let name = t.name;
        let fail = |what: &str, e: String| -> ! { fatal(&format!("{name}: {what}: {e}")) };

        let held = |d: Duration| {
            drive(
                threads,
                d,
                |_| connect().unwrap_or_else(|e| fail("connect", e)),
                |c: &mut C| query(c).unwrap_or_else(|e| fail("held query", e)),
            )
            .0
        };
        let pooled = |pool: &cistern::Pool<CM>, d: Duration| {
            drive(
                threads,
                d,
                |_| (),
                |_: &mut ()| {
                    let mut c = pool
                        .get()
                        .unwrap_or_else(|e| fail("cistern get", e.to_string()));
                    query(inner(&mut c)).unwrap_or_else(|e| fail("cistern query", e));
                },
            )
            .0
        };
        let via_r2d2 = |d: Duration| {
            drive(
                threads,
                d,
                |_| (),
                |_: &mut ()| {
                    let mut c = r2d2
                        .get()
                        .unwrap_or_else(|e| fail("r2d2 get", e.to_string()));
                    query(&mut c).unwrap_or_else(|e| fail("r2d2 query", e));
                },
            )
            .0
        };
        let per_request = |d: Duration| {
            drive(
                threads,
                d,
                |_| (),
                |_: &mut ()| {
                    let mut c = connect().unwrap_or_else(|e| fail("connect per request", e));
                    query(&mut c).unwrap_or_else(|e| fail("per-request query", e));
                },
            )
            .0
        };
        let run = |v: usize, d: Duration| -> Run {
            match v {
                0 => held(d),
                1 => pooled(&defaults, d),
                2 => pooled(&no_ping, d),
                3 => via_r2d2(d),
                _ => per_request(d),
            }
        };
        let mut results: Vec<Vec<f64>> = vec![Vec::new(); VARIANTS.len()];
        for _ in 0..rounds {
            for (v, out) in results.iter_mut().enumerate() {
                run(v, warm);
                out.push(run(v, duration).throughput());
            }
        }
        let rates: Vec<f64> = results.iter_mut().map(|r| support::median(r)).collect();
        let floor = rates[0];
        for (v, name) in VARIANTS.iter().enumerate() {
            println!(
                "| {} | {threads} | {name} | {} | {} | {} |",
                t.name,
                fmt_rate(rates[v]),
                fmt_ratio(Some(rates[v]), Some(floor)),
                if v == 1 {
                    fmt_ratio(Some(rates[1]), Some(rates[3]))
                } else {
                    String::new()
                },
            );
        }
        let s = defaults.stats();
        eprintln!(
            "  {label}: cistern (defaults) {} checkouts, {} pings, {} connections opened; \
             cistern/held {}, cistern/r2d2 {}",
            s.checkouts,
            s.pings,
            s.created,
            fmt_ratio(Some(rates[1]), Some(floor)),
            fmt_ratio(Some(rates[1]), Some(rates[3])),
        );
    }
}

// ---- SQLite ------------------------------------------------------------------

/// r2d2_sqlite's file manager, as it behaves by default.
struct SqliteR2d2 {
    path: PathBuf,
}

impl r2d2::ManageConnection for SqliteR2d2 {
    type Connection = rusqlite::Connection;
    type Error = rusqlite::Error;
    fn connect(&self) -> Result<rusqlite::Connection, rusqlite::Error> {
        rusqlite::Connection::open(&self.path)
    }
    fn is_valid(&self, conn: &mut rusqlite::Connection) -> Result<(), rusqlite::Error> {
        conn.execute_batch("")
    }
    fn has_broken(&self, _conn: &mut rusqlite::Connection) -> bool {
        false
    }
}

/// `SELECT 1` as rusqlite's `query_row` runs it: the statement is prepared
/// on every call (about 0.9 µs here; the workload of the issue's reference
/// figures, where a pool without checks did 1.17 M/s).
fn sqlite_select_1(c: &mut rusqlite::Connection) -> Result<(), String> {
    let one: i64 = c
        .query_row("SELECT 1", [], |r| r.get(0))
        .map_err(|e| e.to_string())?;
    check_one(one)
}

/// `SELECT 1` from the connection's statement cache (about 0.1 µs here): the
/// pool's own cost is the largest share of a request.
fn sqlite_select_1_cached(c: &mut rusqlite::Connection) -> Result<(), String> {
    let one: i64 = c
        .prepare_cached("SELECT 1")
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .map_err(|e| e.to_string())?;
    check_one(one)
}

fn check_one(one: i64) -> Result<(), String> {
    if one == 1 {
        Ok(())
    } else {
        Err(format!("SELECT 1 returned {one}"))
    }
}

type SqliteQuery = fn(&mut rusqlite::Connection) -> Result<(), String>;

/// Both SQLite workloads: `sqlite` (prepared per call) and `sqlite-cached`.
fn sqlite() {
    let workloads: [(&'static str, SqliteQuery); 2] = [
        ("sqlite", sqlite_select_1),
        ("sqlite-cached", sqlite_select_1_cached),
    ];
    let chosen = |name: &str| {
        support::selected(&format!("{name}/1t")) || support::selected(&format!("{name}/8t"))
    };
    if !workloads.iter().any(|(name, _)| chosen(name)) {
        return;
    }
    let dir = std::env::temp_dir().join(format!("cistern-bench-queries-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        fatal(&format!("cannot create {}: {e}", dir.display()));
    }
    let path = dir.join("select1.db");
    // Create the file in WAL mode (what cistern's manager sets) first.
    {
        use cistern::Manager;
        let m = cistern::sqlite::SqliteManager::file(&path);
        let mut c = m
            .connect()
            .unwrap_or_else(|e| fatal(&format!("sqlite: {e}")));
        m.init(&mut c)
            .unwrap_or_else(|e| fatal(&format!("sqlite: {e}")));
    }
    println!("SQLite file {}:\n", path.display());
    for (name, query) in workloads {
        if !chosen(name) {
            continue;
        }
        let target = Target {
            name,
            cistern_manager: || cistern::sqlite::SqliteManager::file(&path),
            r2d2_manager: || SqliteR2d2 { path: path.clone() },
            connect: || rusqlite::Connection::open(&path).map_err(|e| e.to_string()),
            query,
            inner: |c| c,
        };
        run_target(&target);
        println!();
    }
    let _ = std::fs::remove_dir_all(&dir);
}

// ---- PostgreSQL ----------------------------------------------------------------

#[cfg(feature = "postgres")]
mod pg {
    use cistern::postgres::{Client, Config, NoTls};

    /// r2d2_postgres's manager, as it behaves by default.
    pub(crate) struct PgR2d2 {
        pub(crate) config: Config,
    }

    impl r2d2::ManageConnection for PgR2d2 {
        type Connection = Client;
        type Error = cistern::postgres::postgres::Error;
        fn connect(&self) -> Result<Client, Self::Error> {
            self.config.connect(NoTls)
        }
        fn is_valid(&self, conn: &mut Client) -> Result<(), Self::Error> {
            conn.simple_query("").map(|_| ())
        }
        fn has_broken(&self, conn: &mut Client) -> bool {
            conn.is_closed()
        }
    }

    pub(crate) fn select_1(c: &mut Client) -> Result<(), String> {
        let row = c.query_one("SELECT 1", &[]).map_err(|e| e.to_string())?;
        let one: i32 = row.try_get(0).map_err(|e| e.to_string())?;
        if one == 1 {
            Ok(())
        } else {
            Err(format!("SELECT 1 returned {one}"))
        }
    }

    pub(crate) fn run() {
        let url = std::env::var("CISTERN_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
        let shown = super::support::redact(&url);
        let mut config: Config = match url.parse() {
            Ok(c) => c,
            Err(e) => {
                println!(
                    "\npostgres: skipped: CISTERN_POSTGRES_URL = {shown} does not parse ({e})"
                );
                return;
            }
        };
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(std::time::Duration::from_secs(5));
        }
        if let Err(e) = config.connect(NoTls) {
            println!("\npostgres: skipped: {shown} not reachable ({e})");
            return;
        }
        if let Err(e) = cistern::postgres::PostgresManager::new(&url) {
            println!("\npostgres: skipped: {e}");
            return;
        }
        println!("\nPostgreSQL at {shown}:\n");
        let target = super::Target {
            name: "postgres",
            cistern_manager: || {
                cistern::postgres::PostgresManager::new(&url)
                    .unwrap_or_else(|e| super::fatal(&e.to_string()))
            },
            r2d2_manager: || PgR2d2 {
                config: config.clone(),
            },
            connect: || config.connect(NoTls).map_err(|e| e.to_string()),
            query: select_1,
            inner: |c| c.client_mut(),
        };
        super::run_target(&target);
    }
}

// ---- MariaDB / MySQL -------------------------------------------------------------

#[cfg(feature = "mysql")]
mod my {
    use cistern::mysql::mysql::prelude::Queryable;
    use cistern::mysql::{Conn, Opts};

    /// r2d2_mysql's manager, as it behaves by default: a ping on checkout
    /// (`is_valid`) and another on return (`has_broken` pings too).
    pub(crate) struct MyR2d2 {
        pub(crate) opts: Opts,
    }

    impl r2d2::ManageConnection for MyR2d2 {
        type Connection = Conn;
        type Error = cistern::mysql::mysql::Error;
        fn connect(&self) -> Result<Conn, Self::Error> {
            Conn::new(self.opts.clone())
        }
        fn is_valid(&self, conn: &mut Conn) -> Result<(), Self::Error> {
            conn.ping()
        }
        fn has_broken(&self, conn: &mut Conn) -> bool {
            conn.ping().is_err()
        }
    }

    pub(crate) fn select_1(c: &mut Conn) -> Result<(), String> {
        let one: Option<i64> = c.query_first("SELECT 1").map_err(|e| e.to_string())?;
        if one == Some(1) {
            Ok(())
        } else {
            Err(format!("SELECT 1 returned {one:?}"))
        }
    }

    pub(crate) fn run() {
        let url = std::env::var("CISTERN_MYSQL_URL")
            .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".to_owned());
        let shown = super::support::redact(&url);
        let opts = match Opts::from_url(&url) {
            Ok(o) => o,
            Err(e) => {
                println!("\nmysql: skipped: CISTERN_MYSQL_URL = {shown} does not parse ({e})");
                return;
            }
        };
        if let Err(e) = Conn::new(opts.clone()) {
            println!("\nmysql: skipped: {shown} not reachable ({e})");
            return;
        }
        let manager = match cistern::mysql::MysqlManager::new(&url) {
            Ok(m) => m,
            Err(e) => {
                println!("\nmysql: skipped: {e}");
                return;
            }
        };
        println!("\nMariaDB/MySQL at {shown}:\n");
        let target = super::Target {
            name: "mysql",
            cistern_manager: || manager.clone(),
            r2d2_manager: || MyR2d2 { opts: opts.clone() },
            connect: || Conn::new(opts.clone()).map_err(|e| e.to_string()),
            query: select_1,
            inner: |c| c,
        };
        super::run_target(&target);
    }
}

fn main() {
    println!("### SELECT 1 per request\n");
    println!("Machine: {}.", support::machine());
    println!(
        "Each row is one run of {:.1} s (median of {} round(s)); vs held = throughput / the \
         held connection's at the same thread count.\n",
        support::run_duration(Duration::from_secs(2)).as_secs_f64(),
        support::rounds()
    );
    sqlite();
    #[cfg(feature = "postgres")]
    pg::run();
    #[cfg(not(feature = "postgres"))]
    println!("\npostgres: not built (add `--features postgres`)");
    #[cfg(feature = "mysql")]
    my::run();
    #[cfg(not(feature = "mysql"))]
    println!("\nmysql: not built (add `--features mysql`)");
}
