//! A load tool for sizing a pool: runs a query from many worker threads
//! through a cistern pool and/or with a new connection per request, and
//! prints throughput, latency percentiles, the pool's stats and the ratio of
//! the two.
//!
//! ```text
//! cargo run --release --example loadtest -- --workers 16 --duration 10s
//! cargo run --release --example loadtest --features postgres -- \
//!     --url postgres://postgres@127.0.0.1:5432/test --workers 8 --pool-size 8 --max-overflow 0
//! cargo run --release --example loadtest --features mysql -- \
//!     --url mysql://root@127.0.0.1:3306/test --requests 20000 --mode pooled
//! ```
//!
//! Run with `--help` for every option. Bad arguments print what was wrong
//! and the usage, and exit with code 2; a failed run exits with 1.

#[path = "../benches/support/mod.rs"]
mod support;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use support::{Histogram, fmt_latency};

const USAGE: &str = "usage: loadtest [--url URL] [--workers N] [--duration D | --requests N] \
[--pool-size N] [--max-overflow N] [--checkout-timeout D] [--query SQL] \
[--mode pooled|per-request|both]";

const HELP: &str = "
Options:
  --url URL              what to connect to (default: a SQLite file in the temp directory)
                           sqlite:PATH, sqlite://PATH or a plain file path
                           postgres://user:password@host:port/db  (feature `postgres`)
                           mysql://user:password@host:port/db     (feature `mysql`)
  --workers N            concurrent worker threads (default 8)
  --duration D           how long each mode runs: 10s, 500ms, 1m, 2.5 (default 10s)
  --requests N           run N requests per mode instead of a duration
  --pool-size N          the pool's pool_size (default 10)
  --max-overflow N       the pool's max_overflow (default 10)
  --checkout-timeout D   the pool's checkout_timeout (default 30s)
  --query SQL            the query each request runs (default SELECT 1)
  --mode M               pooled, per-request or both (default both)
  -h, --help             this help

Before the pooled run starts, min(workers, pool-size) connections are opened,
so the figures are the steady state. Progress is printed to stderr each second.
";

// ---- arguments ------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Pooled,
    PerRequest,
    Both,
}

#[derive(Debug, Clone, Copy)]
enum Stop {
    After(Duration),
    Requests(u64),
}

#[derive(Debug)]
struct Args {
    url: Option<String>,
    workers: usize,
    stop: Stop,
    pool_size: usize,
    max_overflow: usize,
    checkout_timeout: Duration,
    query: String,
    mode: Mode,
}

/// What `parse_args` can end with besides arguments.
enum ArgsError {
    Help,
    Bad(String),
}

fn parse_count(flag: &str, value: &str, min: u64, max: u64) -> Result<u64, ArgsError> {
    match value.trim().parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(ArgsError::Bad(format!(
            "{flag} {value:?}: expected a whole number from {min} to {max}"
        ))),
    }
}

fn parse_time(flag: &str, value: &str) -> Result<Duration, ArgsError> {
    match cistern::parse_duration(flag, value, false) {
        Ok(Some(d)) if !d.is_zero() => Ok(d),
        Ok(_) => Err(ArgsError::Bad(format!(
            "{flag} {value:?}: expected a duration above zero"
        ))),
        Err(_) => Err(ArgsError::Bad(format!(
            "{flag} {value:?}: expected a duration such as 10s, 500ms, 1m or a number of seconds"
        ))),
    }
}

fn parse_args(raw: impl IntoIterator<Item = String>) -> Result<Args, ArgsError> {
    let mut args = Args {
        url: None,
        workers: 8,
        stop: Stop::After(Duration::from_secs(10)),
        pool_size: 10,
        max_overflow: 10,
        checkout_timeout: Duration::from_secs(30),
        query: "SELECT 1".to_owned(),
        mode: Mode::Both,
    };
    let (mut duration_set, mut requests_set) = (false, false);
    let mut it = raw.into_iter();
    while let Some(arg) = it.next() {
        if arg == "-h" || arg == "--help" {
            return Err(ArgsError::Help);
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        if !flag.starts_with("--") {
            return Err(ArgsError::Bad(format!(
                "unexpected argument {arg:?}: options start with --"
            )));
        }
        let known = [
            "--url",
            "--workers",
            "--duration",
            "--requests",
            "--pool-size",
            "--max-overflow",
            "--checkout-timeout",
            "--query",
            "--mode",
        ];
        if !known.contains(&flag.as_str()) {
            return Err(ArgsError::Bad(format!("unknown option {flag}")));
        }
        let value = match inline.or_else(|| it.next()) {
            Some(v) => v,
            None => return Err(ArgsError::Bad(format!("{flag} needs a value"))),
        };
        match flag.as_str() {
            "--url" => {
                if value.trim().is_empty() {
                    return Err(ArgsError::Bad(
                        "--url \"\": expected a URL or a file path".to_owned(),
                    ));
                }
                args.url = Some(value);
            }
            "--workers" => args.workers = parse_count(&flag, &value, 1, 10_000)? as usize,
            "--duration" => {
                args.stop = Stop::After(parse_time(&flag, &value)?);
                duration_set = true;
            }
            "--requests" => {
                args.stop = Stop::Requests(parse_count(&flag, &value, 1, u64::MAX / 2)?);
                requests_set = true;
            }
            "--pool-size" => args.pool_size = parse_count(&flag, &value, 1, 100_000)? as usize,
            "--max-overflow" => {
                args.max_overflow = parse_count(&flag, &value, 0, 100_000)? as usize
            }
            "--checkout-timeout" => args.checkout_timeout = parse_time(&flag, &value)?,
            "--query" => {
                if value.trim().is_empty() {
                    return Err(ArgsError::Bad(
                        "--query \"\": expected an SQL statement".to_owned(),
                    ));
                }
                args.query = value;
            }
            "--mode" => {
                args.mode = match value.as_str() {
                    "pooled" => Mode::Pooled,
                    "per-request" => Mode::PerRequest,
                    "both" => Mode::Both,
                    other => {
                        return Err(ArgsError::Bad(format!(
                            "--mode {other:?}: expected pooled, per-request or both"
                        )));
                    }
                }
            }
            _ => return Err(ArgsError::Bad(format!("unknown option {flag}"))),
        }
    }
    if duration_set && requests_set {
        return Err(ArgsError::Bad(
            "--duration and --requests: give one or the other".to_owned(),
        ));
    }
    Ok(args)
}

// ---- databases -------------------------------------------------------------------

/// What the tool needs from a database: a pool manager, a raw connect, and
/// running the query on either kind of connection.
trait Backend: Sync {
    type Manager: cistern::Manager;
    type Raw;
    fn manager(&self) -> Result<Self::Manager, String>;
    fn connect(&self) -> Result<Self::Raw, String>;
    fn query_pooled(
        &self,
        conn: &mut <Self::Manager as cistern::Manager>::Connection,
        sql: &str,
    ) -> Result<(), String>;
    fn query_raw(&self, conn: &mut Self::Raw, sql: &str) -> Result<(), String>;
}

struct Sqlite {
    path: PathBuf,
}

fn sqlite_query(conn: &mut cistern::sqlite::rusqlite::Connection, sql: &str) -> Result<(), String> {
    let mut stmt = conn.prepare_cached(sql).map_err(|e| e.to_string())?;
    let mut rows = stmt.query([]).map_err(|e| e.to_string())?;
    while rows.next().map_err(|e| e.to_string())?.is_some() {}
    Ok(())
}

impl Backend for Sqlite {
    type Manager = cistern::sqlite::SqliteManager;
    type Raw = cistern::sqlite::rusqlite::Connection;
    fn manager(&self) -> Result<Self::Manager, String> {
        Ok(cistern::sqlite::SqliteManager::file(&self.path))
    }
    fn connect(&self) -> Result<Self::Raw, String> {
        let conn =
            cistern::sqlite::rusqlite::Connection::open(&self.path).map_err(|e| e.to_string())?;
        // As the pool's connections have it: wait for a writer instead of
        // failing with SQLITE_BUSY.
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(|e| e.to_string())?;
        Ok(conn)
    }
    fn query_pooled(&self, conn: &mut Self::Raw, sql: &str) -> Result<(), String> {
        sqlite_query(conn, sql)
    }
    fn query_raw(&self, conn: &mut Self::Raw, sql: &str) -> Result<(), String> {
        sqlite_query(conn, sql)
    }
}

#[cfg(feature = "postgres")]
struct Postgres {
    url: String,
    config: cistern::postgres::Config,
}

#[cfg(feature = "postgres")]
fn pg_query(client: &mut cistern::postgres::Client, sql: &str) -> Result<(), String> {
    client
        .query(sql, &[])
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[cfg(feature = "postgres")]
impl Backend for Postgres {
    type Manager = cistern::postgres::PostgresManager;
    type Raw = cistern::postgres::Client;
    fn manager(&self) -> Result<Self::Manager, String> {
        cistern::postgres::PostgresManager::new(&self.url).map_err(|e| e.to_string())
    }
    fn connect(&self) -> Result<Self::Raw, String> {
        self.config
            .connect(cistern::postgres::NoTls)
            .map_err(|e| e.to_string())
    }
    fn query_pooled(
        &self,
        conn: &mut cistern::postgres::PostgresConnection,
        sql: &str,
    ) -> Result<(), String> {
        pg_query(conn.client_mut(), sql)
    }
    fn query_raw(&self, conn: &mut Self::Raw, sql: &str) -> Result<(), String> {
        pg_query(conn, sql)
    }
}

#[cfg(feature = "mysql")]
struct Mysql {
    url: String,
    opts: cistern::mysql::Opts,
}

#[cfg(feature = "mysql")]
fn my_query(conn: &mut cistern::mysql::Conn, sql: &str) -> Result<(), String> {
    use cistern::mysql::mysql::prelude::Queryable;
    conn.query_drop(sql).map_err(|e| e.to_string())
}

#[cfg(feature = "mysql")]
impl Backend for Mysql {
    type Manager = cistern::mysql::MysqlManager;
    type Raw = cistern::mysql::Conn;
    fn manager(&self) -> Result<Self::Manager, String> {
        cistern::mysql::MysqlManager::new(&self.url).map_err(|e| e.to_string())
    }
    fn connect(&self) -> Result<Self::Raw, String> {
        cistern::mysql::Conn::new(self.opts.clone()).map_err(|e| e.to_string())
    }
    fn query_pooled(&self, conn: &mut Self::Raw, sql: &str) -> Result<(), String> {
        my_query(conn, sql)
    }
    fn query_raw(&self, conn: &mut Self::Raw, sql: &str) -> Result<(), String> {
        my_query(conn, sql)
    }
}

// ---- running -----------------------------------------------------------------------

/// One worker's counters, on a cache line of its own so the progress
/// reader does not slow the workers down.
#[repr(align(128))]
#[derive(Default)]
struct Progress {
    done: AtomicU64,
    errors: AtomicU64,
}

/// What one mode measured.
struct Outcome {
    ok: u64,
    errors: u64,
    elapsed: Duration,
    latency: Histogram,
    last_error: Option<String>,
}

impl Outcome {
    fn throughput(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Runs `request` on `workers` threads until the stop condition, printing
/// progress (and `status()`, e.g. the pool's state) every second.
fn run_workers(
    label: &str,
    workers: usize,
    stop: Stop,
    request: &(dyn Fn() -> Result<(), String> + Sync),
    status: &dyn Fn() -> String,
) -> Result<Outcome, String> {
    let progress: Vec<Progress> = (0..workers).map(|_| Progress::default()).collect();
    let finished = AtomicBool::new(false);
    let tickets = AtomicU64::new(0);
    let start = Instant::now();
    let result = std::thread::scope(|s| {
        let mut handles = Vec::with_capacity(workers);
        for slot in &progress {
            let (finished, tickets) = (&finished, &tickets);
            let spawned = std::thread::Builder::new()
                .name("loadtest-worker".to_owned())
                .spawn_scoped(s, move || {
                    let mut hist = Histogram::new();
                    let mut last_error = None;
                    loop {
                        match stop {
                            Stop::After(_) if finished.load(Ordering::Relaxed) => break,
                            Stop::Requests(n) if tickets.fetch_add(1, Ordering::Relaxed) >= n => {
                                break;
                            }
                            _ => {}
                        }
                        let t0 = Instant::now();
                        match request() {
                            Ok(()) => {
                                hist.record(t0.elapsed());
                                slot.done.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => {
                                slot.errors.fetch_add(1, Ordering::Relaxed);
                                last_error = Some(e);
                            }
                        }
                    }
                    (hist, last_error)
                });
            match spawned {
                Ok(h) => handles.push(h),
                Err(e) => {
                    finished.store(true, Ordering::Relaxed);
                    tickets.store(u64::MAX / 2, Ordering::Relaxed);
                    return Err(format!("cannot start worker thread: {e}"));
                }
            }
        }
        // Progress, once a second, until the end.
        let mut next = Duration::from_secs(1);
        let mut last_done = 0;
        loop {
            let all_done = handles.iter().all(|h| h.is_finished());
            let elapsed = start.elapsed();
            if let Stop::After(d) = stop {
                if elapsed >= d {
                    finished.store(true, Ordering::Relaxed);
                }
            }
            if all_done || finished.load(Ordering::Relaxed) {
                break;
            }
            if elapsed >= next {
                let done: u64 = progress
                    .iter()
                    .map(|p| p.done.load(Ordering::Relaxed))
                    .sum();
                let errors: u64 = progress
                    .iter()
                    .map(|p| p.errors.load(Ordering::Relaxed))
                    .sum();
                eprintln!(
                    "  {label:<11} {:>5.1}s {:>10} ok {:>10.0}/s (last second) {:>6} errors  {}",
                    elapsed.as_secs_f64(),
                    done,
                    (done - last_done) as f64,
                    errors,
                    status()
                );
                last_done = done;
                next += Duration::from_secs(1);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut latency = Histogram::new();
        let mut last_error = None;
        for h in handles {
            match h.join() {
                Ok((hist, err)) => {
                    latency.merge(&hist);
                    if err.is_some() {
                        last_error = err;
                    }
                }
                Err(_) => last_error = Some("a worker thread panicked".to_owned()),
            }
        }
        Ok((latency, last_error))
    });
    let elapsed = start.elapsed();
    let (latency, last_error) = result?;
    Ok(Outcome {
        ok: progress
            .iter()
            .map(|p| p.done.load(Ordering::Relaxed))
            .sum(),
        errors: progress
            .iter()
            .map(|p| p.errors.load(Ordering::Relaxed))
            .sum(),
        elapsed,
        latency,
        last_error,
    })
}

fn report(label: &str, o: &Outcome) {
    println!(
        "  requests    {} ok, {} errors in {:.2} s",
        o.ok,
        o.errors,
        o.elapsed.as_secs_f64()
    );
    println!("  throughput  {:.1} requests/s", o.throughput());
    let l = &o.latency;
    println!(
        "  latency     p50 {}  p95 {}  p99 {}  max {}",
        fmt_latency(l.quantile(0.50)),
        fmt_latency(l.quantile(0.95)),
        fmt_latency(l.quantile(0.99)),
        fmt_latency(l.max()),
    );
    if let Some(e) = &o.last_error {
        println!("  last error  ({label}) {e}");
    }
}

fn pool_summary(s: &cistern::Stats) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "  pool        open {} (idle {}, in use {}, overflow {}), waiting {}, pool_size {}, max_overflow {}",
        s.open, s.idle, s.in_use, s.overflow_open, s.waiting, s.pool_size, s.max_overflow
    );
    let _ = writeln!(
        out,
        "              created {}, closed {} (excess {}, broken {}, failed ping {}, recycled {}, idle timeout {}), connect errors {}",
        s.created,
        s.closed_by.total(),
        s.closed_by.excess,
        s.closed_by.broken,
        s.closed_by.failed_ping,
        s.closed_by.recycled,
        s.closed_by.idle_timeout,
        s.connect_errors
    );
    let _ = writeln!(
        out,
        "              checkouts {}, waited {} (wait mean {}, p99 {}, max {}), timeouts {}, pings {}",
        s.checkouts,
        s.waited,
        fmt_latency(s.wait.mean),
        fmt_latency(s.wait.p99),
        fmt_latency(s.wait.max),
        s.timeouts,
        s.pings
    );
    let _ = write!(
        out,
        "              held mean {}, max {} (coarse clock)",
        fmt_latency(s.held.mean),
        fmt_latency(s.held.max)
    );
    out
}

fn run<B: Backend>(backend: &B, args: &Args, shown_url: &str) -> Result<(), String> {
    let stop_text = match args.stop {
        Stop::After(d) => format!("{:.1} s", d.as_secs_f64()),
        Stop::Requests(n) => format!("{n} requests"),
    };
    println!("loadtest: {shown_url}");
    println!(
        "  query {:?}, {} workers, {stop_text} per mode, pool_size {}, max_overflow {}",
        args.query, args.workers, args.pool_size, args.max_overflow
    );
    let sql = args.query.as_str();
    let mut pooled = None;
    if args.mode != Mode::PerRequest {
        let manager = backend.manager()?;
        let warm = args.workers.min(args.pool_size);
        let pool = cistern::Pool::builder()
            .name("loadtest")
            .pool_size(args.pool_size)
            .max_overflow(args.max_overflow)
            .checkout_timeout(args.checkout_timeout)
            .build(manager)
            .map_err(|e| format!("cannot start the pool: {e}"))?;
        // Open the connections the workers will use and check the query
        // once, before the clock starts.
        {
            let mut held = Vec::with_capacity(warm);
            for _ in 0..warm {
                held.push(
                    pool.get()
                        .map_err(|e| format!("cannot open a connection: {e}"))?,
                );
            }
            if let Some(conn) = held.first_mut() {
                backend
                    .query_pooled(conn, sql)
                    .map_err(|e| format!("the query fails: {e}"))?;
            }
        }
        println!("\n== pooled ({warm} connections opened before the start)");
        let request = || -> Result<(), String> {
            let mut conn = pool.get().map_err(|e| e.to_string())?;
            backend.query_pooled(&mut conn, sql)
        };
        let status = || {
            let s = pool.stats();
            format!(
                "in use {}/{}, idle {}, waiting {}",
                s.in_use,
                s.max_open(),
                s.idle,
                s.waiting
            )
        };
        let outcome = run_workers("pooled", args.workers, args.stop, &request, &status)?;
        report("pooled", &outcome);
        println!("{}", pool_summary(&pool.stats()));
        pooled = Some(outcome);
    }
    let mut per_request = None;
    if args.mode != Mode::Pooled {
        {
            let mut conn = backend
                .connect()
                .map_err(|e| format!("cannot connect: {e}"))?;
            backend
                .query_raw(&mut conn, sql)
                .map_err(|e| format!("the query fails: {e}"))?;
        }
        println!("\n== per-request (a new connection for every request)");
        let request = || -> Result<(), String> {
            let mut conn = backend.connect()?;
            backend.query_raw(&mut conn, sql)
        };
        let outcome = run_workers("per-request", args.workers, args.stop, &request, &|| {
            String::new()
        })?;
        report("per-request", &outcome);
        per_request = Some(outcome);
    }
    if let (Some(p), Some(r)) = (&pooled, &per_request) {
        let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(1e-12);
        println!("\n== pooled vs per-request");
        println!(
            "  throughput  {:.2}x",
            p.throughput() / r.throughput().max(1e-9)
        );
        for (name, q) in [("p50", 0.5), ("p99", 0.99)] {
            let (a, b) = (p.latency.quantile(q), r.latency.quantile(q));
            println!(
                "  latency {name} {} pooled vs {} per-request ({:.1}x lower)",
                fmt_latency(a),
                fmt_latency(b),
                ratio(b, a)
            );
        }
    }
    let failed = [&pooled, &per_request]
        .iter()
        .any(|o| o.as_ref().is_some_and(|o| o.ok == 0 && o.errors > 0));
    if failed {
        return Err("every request of a mode failed".to_owned());
    }
    Ok(())
}

/// Picks the backend for `url` and runs; `Err((message, exit code))`.
fn dispatch(args: &Args) -> Result<(), (String, i32)> {
    let default_path = std::env::temp_dir().join("cistern-loadtest.db");
    let url = args
        .url
        .clone()
        .unwrap_or_else(|| format!("sqlite:{}", default_path.display()));
    let shown = support::redact(&url);
    let lower = url.to_ascii_lowercase();
    let runtime = |e: String| (e, 1);
    if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
        #[cfg(feature = "postgres")]
        {
            let config: cistern::postgres::Config = url
                .parse()
                .map_err(|e| (format!("--url {shown}: not a PostgreSQL URL ({e})"), 2))?;
            let backend = Postgres {
                url: url.clone(),
                config,
            };
            return run(&backend, args, &shown).map_err(runtime);
        }
        #[cfg(not(feature = "postgres"))]
        return Err((
            format!(
                "--url {shown}: PostgreSQL needs the `postgres` feature \
                 (cargo run --release --example loadtest --features postgres -- ...)"
            ),
            2,
        ));
    }
    if lower.starts_with("mysql://") || lower.starts_with("mariadb://") {
        #[cfg(feature = "mysql")]
        {
            let url = if lower.starts_with("mariadb://") {
                format!("mysql://{}", &url["mariadb://".len()..])
            } else {
                url.clone()
            };
            let opts = cistern::mysql::Opts::from_url(&url)
                .map_err(|e| (format!("--url {shown}: not a MySQL URL ({e})"), 2))?;
            let backend = Mysql { url, opts };
            return run(&backend, args, &shown).map_err(runtime);
        }
        #[cfg(not(feature = "mysql"))]
        return Err((
            format!(
                "--url {shown}: MySQL/MariaDB needs the `mysql` feature \
                 (cargo run --release --example loadtest --features mysql -- ...)"
            ),
            2,
        ));
    }
    let path = if let Some(p) = url.strip_prefix("sqlite://") {
        p
    } else if let Some(p) = url.strip_prefix("sqlite:") {
        p
    } else if url.contains("://") {
        return Err((
            format!(
                "--url {shown}: expected sqlite:PATH, a file path, postgres://... or mysql://..."
            ),
            2,
        ));
    } else {
        url.as_str()
    };
    if path.is_empty() {
        return Err((format!("--url {shown}: the SQLite file path is empty"), 2));
    }
    let backend = Sqlite {
        path: PathBuf::from(path),
    };
    run(&backend, args, &shown).map_err(runtime)
}

fn main() {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(ArgsError::Help) => {
            println!("{USAGE}\n{HELP}");
            return;
        }
        Err(ArgsError::Bad(msg)) => {
            eprintln!("loadtest: {msg}\n{USAGE}\n(--help for details)");
            std::process::exit(2);
        }
    };
    if let Err((msg, code)) = dispatch(&args) {
        eprintln!("loadtest: {msg}");
        if code == 2 {
            eprintln!("{USAGE}");
        }
        std::process::exit(code);
    }
}
