//! A small HTTP server over a pool, showing the observability endpoints:
//!
//! - `GET /health/db_pool`: JSON health report (status, utilization,
//!   settings, recommendations, current holders, stats); HTTP 503 when the
//!   pool is `critical` or `down`, 200 otherwise;
//! - `GET /metrics`: Prometheus text exposition;
//! - `GET /query`: runs a query through the pool; `?hold_ms=N` keeps the
//!   connection N more milliseconds (at most 60000), to watch saturation.
//!
//! ```text
//! cargo run --example health_server --features serde -- --port 8080
//! DB_POOL_SIZE=2 DB_MAX_OVERFLOW=0 cargo run --example health_server --features serde
//! ```
//!
//! Options: `--port N` (default 8080; 0 picks a free port), `--url URL`
//! (default: the `DATABASE_URL` variable, else an in-memory SQLite
//! database): `sqlite:PATH`, `sqlite::memory:`, `postgres://...` (feature
//! `postgres`) or `mysql://...` / `mariadb://...` (feature `mysql`);
//! `--threads N` (request threads, default 8). Pool settings come from the `DB_POOL_*` variables. The first
//! line on stdout is the bound address, `http://127.0.0.1:PORT`.
//!
//! The server listens on 127.0.0.1 only.

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use cistern::sqlite::SqliteManager;
use cistern::sqlite::rusqlite::Connection;
use cistern::{Builder, Manager, Pool};
use serde_json::{Value, json};
use tiny_http::{Header, Method, Request, Response, Server};

/// Command-line options.
struct Options {
    port: u16,
    url: Option<String>,
    threads: usize,
}

fn usage() -> &'static str {
    "usage: health_server [--port N] [--url URL] [--threads N]\n\
     URL: sqlite:PATH, sqlite::memory:, postgres://... or mysql://... \
     (default: $DATABASE_URL, else in-memory SQLite)"
}

fn parse_options(args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut opts = Options {
        port: 8080,
        url: std::env::var("DATABASE_URL")
            .ok()
            .filter(|u| !u.trim().is_empty()),
        threads: 8,
    };
    let mut args = args;
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .ok_or_else(|| format!("{name} needs a value\n{}", usage()))
        };
        match arg.as_str() {
            "--port" => {
                let v = value("--port")?;
                opts.port = v
                    .parse()
                    .map_err(|_| format!("--port {v:?}: expected a port number from 0 to 65535"))?;
            }
            "--url" => opts.url = Some(value("--url")?),
            "--threads" => {
                let v = value("--threads")?;
                opts.threads = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=256).contains(n))
                    .ok_or_else(|| format!("--threads {v:?}: expected a number from 1 to 256"))?;
            }
            "--help" | "-h" => return Err(usage().to_owned()),
            other => return Err(format!("unknown argument {other:?}\n{}", usage())),
        }
    }
    Ok(opts)
}

/// How the `/query` route uses a connection of one kind.
trait QueryRoute: Manager {
    /// Runs the demonstration query and describes its result.
    fn run_query(conn: &mut Self::Connection) -> Result<Value, String>;
}

impl QueryRoute for SqliteManager {
    fn run_query(conn: &mut Connection) -> Result<Value, String> {
        conn.execute("INSERT INTO hits (at) VALUES (strftime('%s','now'))", [])
            .map_err(|e| e.to_string())?;
        let (version, hits): (String, i64) = conn
            .query_row("SELECT sqlite_version(), count(*) FROM hits", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .map_err(|e| e.to_string())?;
        Ok(json!({ "database": "sqlite", "version": version, "hits": hits }))
    }
}

#[cfg(feature = "postgres")]
impl QueryRoute for cistern::postgres::PostgresManager {
    fn run_query(conn: &mut cistern::postgres::PostgresConnection) -> Result<Value, String> {
        let row = conn
            .query_one("SELECT version(), pg_backend_pid()", &[])
            .map_err(|e| e.to_string())?;
        let (version, session): (String, i32) = (row.get(0), row.get(1));
        Ok(json!({ "database": "postgres", "version": version, "session": session }))
    }
}

#[cfg(feature = "mysql")]
impl QueryRoute for cistern::mysql::MysqlManager {
    fn run_query(conn: &mut cistern::mysql::mysql::Conn) -> Result<Value, String> {
        use cistern::mysql::mysql::prelude::Queryable;
        let row: Option<(String, u64)> = conn
            .query_first("SELECT VERSION(), CONNECTION_ID()")
            .map_err(|e| e.to_string())?;
        let (version, session) = row.ok_or("the server returned no row")?;
        Ok(json!({ "database": "mysql", "version": version, "session": session }))
    }
}

fn respond(request: Request, status: u16, content_type: &str, body: String) {
    let header = Header::from_bytes("Content-Type", content_type).expect("a static, valid header");
    let response = Response::from_string(body)
        .with_status_code(status)
        .with_header(header);
    if let Err(e) = request.respond(response) {
        eprintln!("health_server: could not send a response: {e}");
    }
}

fn respond_json(request: Request, status: u16, body: &Value) {
    respond(request, status, "application/json", body.to_string());
}

/// The `hold_ms` query parameter, if any.
fn hold_ms(url: &str) -> Result<Option<u64>, String> {
    let Some((_, query)) = url.split_once('?') else {
        return Ok(None);
    };
    for pair in query.split('&') {
        if let Some(v) = pair.strip_prefix("hold_ms=") {
            return v
                .parse::<u64>()
                .ok()
                .filter(|ms| *ms <= 60_000)
                .map(Some)
                .ok_or_else(|| format!("hold_ms={v:?}: expected milliseconds from 0 to 60000"));
        }
    }
    Ok(None)
}

fn health_report<M: Manager>(pool: &Pool<M>) -> (u16, Value) {
    let health = pool.health();
    let body = json!({
        "pool": health.name,
        "status": health.status,
        "utilization": health.utilization,
        "in_use": health.in_use,
        "idle": health.idle,
        "max_open": health.max_open,
        "waiting": health.waiting,
        "recommendations": health.recommendations,
        "config": pool.config().summary(),
        "holders": pool.holders(),
        "stats": pool.stats(),
    });
    (health.status.http_status(), body)
}

fn handle<M: QueryRoute>(pool: &Pool<M>, request: Request) {
    if *request.method() != Method::Get {
        let body = json!({ "error": format!("method {} not allowed: use GET", request.method()) });
        return respond_json(request, 405, &body);
    }
    let url = request.url().to_owned();
    let path = url.split('?').next().unwrap_or_default();
    match path {
        "/health/db_pool" => {
            let (status, body) = health_report(pool);
            respond_json(request, status, &body);
        }
        "/metrics" => respond(
            request,
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            pool.prometheus(),
        ),
        "/query" => {
            let hold = match hold_ms(&url) {
                Ok(h) => h,
                Err(e) => return respond_json(request, 400, &json!({ "error": e })),
            };
            let mut conn = match pool.get() {
                Ok(c) => c,
                Err(e) => return respond_json(request, 503, &json!({ "error": e.to_string() })),
            };
            let result = M::run_query(&mut conn);
            if let Some(ms) = hold {
                std::thread::sleep(Duration::from_millis(ms));
            }
            drop(conn);
            match result {
                Ok(v) => respond_json(request, 200, &v),
                Err(e) => respond_json(request, 500, &json!({ "error": e })),
            }
        }
        _ => {
            let body = json!({
                "error": format!("no route {path}"),
                "routes": ["/health/db_pool", "/metrics", "/query"],
            });
            respond_json(request, 404, &body);
        }
    }
}

/// Serves until the process is stopped.
fn serve<M: QueryRoute>(pool: Pool<M>, opts: &Options) -> Result<(), String> {
    let server = Server::http(("127.0.0.1", opts.port))
        .map_err(|e| format!("could not listen on 127.0.0.1:{}: {e}", opts.port))?;
    let addr = server
        .server_addr()
        .to_ip()
        .ok_or("the server is not on an IP address")?;
    // The first line is for scripts and tests: the bound address.
    let mut out = std::io::stdout().lock();
    writeln!(out, "http://{addr}").map_err(|e| e.to_string())?;
    writeln!(
        out,
        "pool '{}': GET /health/db_pool, /metrics, /query",
        pool.config().name
    )
    .map_err(|e| e.to_string())?;
    out.flush().map_err(|e| e.to_string())?;
    drop(out);

    let server = Arc::new(server);
    let workers: Vec<_> = (0..opts.threads)
        .map(|i| {
            let server = Arc::clone(&server);
            let pool = pool.clone();
            std::thread::Builder::new()
                .name(format!("http-{i}"))
                .spawn(move || {
                    for request in server.incoming_requests() {
                        handle(&pool, request);
                    }
                })
                .map_err(|e| format!("could not start a request thread: {e}"))
        })
        .collect::<Result<_, _>>()?;
    for w in workers {
        let _ = w.join();
    }
    Ok(())
}

fn builder<M>() -> Result<Builder<M>, String> {
    let b = Builder::from_env().map_err(|e| e.to_string())?;
    Ok(b.name("health_server"))
}

/// The message for a URL whose adapter was not compiled in.
#[cfg(any(not(feature = "postgres"), not(feature = "mysql")))]
fn needs_feature(feature: &str) -> String {
    format!(
        "{feature} URLs need cistern's `{feature}` feature: \
         cargo run --example health_server --features serde,{feature} -- --url URL"
    )
}

fn run(opts: Options) -> Result<(), String> {
    let url = opts
        .url
        .clone()
        .unwrap_or_else(|| "sqlite::memory:".to_owned());
    let scheme = url
        .split(':')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    match scheme.as_str() {
        "sqlite" => {
            let target = url.trim_start_matches("sqlite:").trim_start_matches("//");
            let manager = if target.is_empty() || target == ":memory:" {
                SqliteManager::memory("health_server")
            } else {
                SqliteManager::file(target)
            };
            let manager = manager.init_sql("CREATE TABLE IF NOT EXISTS hits (at INTEGER)");
            let pool = builder()?.build(manager).map_err(|e| e.to_string())?;
            serve(pool, &opts)
        }
        #[cfg(feature = "postgres")]
        "postgres" | "postgresql" => {
            let manager =
                cistern::postgres::PostgresManager::new(&url).map_err(|e| e.to_string())?;
            let pool = builder()?.build(manager).map_err(|e| e.to_string())?;
            serve(pool, &opts)
        }
        #[cfg(not(feature = "postgres"))]
        "postgres" | "postgresql" => Err(needs_feature("postgres")),
        #[cfg(feature = "mysql")]
        "mysql" | "mariadb" => {
            let url = url.replacen("mariadb:", "mysql:", 1);
            let manager = cistern::mysql::MysqlManager::new(&url).map_err(|e| e.to_string())?;
            let pool = builder()?.build(manager).map_err(|e| e.to_string())?;
            serve(pool, &opts)
        }
        #[cfg(not(feature = "mysql"))]
        "mysql" | "mariadb" => Err(needs_feature("mysql")),
        // The URL may hold a password: name only its scheme.
        _ => Err(format!(
            "unsupported URL scheme {scheme:?}: expected sqlite:, postgres:// or mysql://\n{}",
            usage()
        )),
    }
}

fn main() -> ExitCode {
    let opts = match parse_options(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match run(opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("health_server: {e}");
            ExitCode::FAILURE
        }
    }
}
