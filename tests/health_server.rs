//! The `health_server` example, run as a real process on an ephemeral
//! loopback port and checked with a real HTTP client.
#![cfg(all(feature = "serde", feature = "sqlite"))]

#[path = "common_servers/mod.rs"]
mod common_servers;

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use prometheus_parse::{Scrape, Value};
use serde_json::Value as Json;

/// The cargo features this test was built with, so the example is built
/// against the same (already compiled) library.
fn features() -> String {
    let mut on = Vec::new();
    for (name, enabled) in [
        ("sqlite", cfg!(feature = "sqlite")),
        ("serde", cfg!(feature = "serde")),
        ("postgres", cfg!(feature = "postgres")),
        ("mysql", cfg!(feature = "mysql")),
        ("r2d2", cfg!(feature = "r2d2")),
        ("testing", cfg!(feature = "testing")),
    ] {
        if enabled {
            on.push(name);
        }
    }
    on.join(",")
}

/// Builds the example once per test run and returns its executable.
fn example_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let out = Command::new(env!("CARGO"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args([
                "build",
                "--example",
                "health_server",
                "--message-format=json",
            ])
            .args(["--features", &features()])
            .stderr(Stdio::inherit())
            .output()
            .expect("cargo runs");
        assert!(
            out.status.success(),
            "cargo build --example health_server failed"
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<Json>(l).ok())
            .filter(|m| {
                m["reason"] == "compiler-artifact" && m["target"]["name"] == "health_server"
            })
            .find_map(|m| m["executable"].as_str().map(PathBuf::from))
            .expect("cargo reports the example's executable")
    })
    .clone()
}

/// A running server, killed when dropped.
struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(env: &[(&str, &str)]) -> Server {
    start_with(None, env)
}

fn start_with(url: Option<&str>, env: &[(&str, &str)]) -> Server {
    let mut cmd = Command::new(example_binary());
    cmd.args(["--port", "0", "--threads", "4"])
        .env_remove("DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for var in ["DB_POOL_SIZE", "DB_MAX_OVERFLOW", "DB_POOL_TIMEOUT"] {
        cmd.env_remove(var);
    }
    if let Some(url) = url {
        cmd.args(["--url", url]);
    }
    cmd.envs(env.iter().copied());
    let mut child = cmd.spawn().expect("the example starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut first = String::new();
    let mut reader = BufReader::new(stdout);
    reader
        .read_line(&mut first)
        .expect("the example prints its address");
    // Keep draining stdout so the server never blocks on a full pipe.
    thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = reader.read_to_end(&mut sink);
    });
    let base = first.trim().to_owned();
    assert!(
        base.starts_with("http://127.0.0.1:") && !base.ends_with(":0"),
        "first line is the bound loopback address: {base:?}"
    );
    Server { child, base }
}

fn agent() -> ureq::Agent {
    ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .proxy(None)
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build(),
    )
}

/// Status, content type and body of a GET.
fn get(server: &Server, path: &str) -> (u16, String, String) {
    let mut resp = agent()
        .get(&format!("{}{path}", server.base))
        .call()
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = resp.body_mut().read_to_string().expect("a text body");
    (status, content_type, body)
}

fn get_json(server: &Server, path: &str) -> (u16, Json) {
    let (status, content_type, body) = get(server, path);
    assert_eq!(content_type, "application/json", "{path}");
    let json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
    (status, json)
}

fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn health_route_answers_200_with_the_report_when_healthy() {
    let server = start(&[("DB_POOL_SIZE", "3"), ("DB_MAX_OVERFLOW", "2")]);
    let (status, json) = get_json(&server, "/health/db_pool");
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["status"], "healthy");
    assert_eq!(json["pool"], "health_server");
    assert_eq!(json["utilization"], 0.0);
    assert_eq!(
        json["config"]["pool_size"], 3,
        "settings come from DB_POOL_SIZE"
    );
    assert_eq!(json["config"]["max_overflow"], 2);
    assert_eq!(json["config"]["max_open"], 5);
    assert!(json["config"]["checkout_timeout_secs"].is_number());
    assert!(
        json["recommendations"].as_array().unwrap().is_empty(),
        "{json}"
    );
    assert!(json["holders"].as_array().unwrap().is_empty());
    assert!(json["stats"]["created"].is_u64());
}

#[test]
fn health_route_answers_503_when_every_connection_is_held() {
    let server = start(&[("DB_POOL_SIZE", "1"), ("DB_MAX_OVERFLOW", "0")]);
    let hold = {
        let base = server.base.clone();
        thread::spawn(move || {
            let mut resp = agent()
                .get(&format!("{base}/query?hold_ms=4000"))
                .call()
                .expect("the holding query runs");
            (
                resp.status().as_u16(),
                resp.body_mut().read_to_string().unwrap(),
            )
        })
    };
    let mut report = Json::Null;
    // The connection counts as in use from the moment it is handed to the
    // waiting request; its holder record appears once that thread takes it.
    eventually("the health route to answer 503 with the holder", || {
        let (status, json) = get_json(&server, "/health/db_pool");
        let held = json["holders"].as_array().is_some_and(|h| !h.is_empty());
        report = json;
        status == 503 && held
    });
    assert_eq!(report["status"], "critical", "{report}");
    assert_eq!(report["utilization"], 1.0);
    let holders = report["holders"].as_array().unwrap();
    assert_eq!(holders.len(), 1, "{report}");
    assert!(
        holders[0]["location"]
            .as_str()
            .unwrap()
            .contains("health_server.rs"),
        "the holder's call site is in the example: {report}"
    );
    let codes: Vec<&str> = report["recommendations"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["code"].as_str())
        .collect();
    assert!(codes.contains(&"saturated"), "{report}");

    let (status, body) = hold.join().unwrap();
    assert_eq!(status, 200, "{body}");
    eventually("the pool to be healthy again", || {
        get_json(&server, "/health/db_pool").0 == 200
    });
}

#[test]
fn metrics_route_serves_parsable_prometheus_text() {
    let server = start(&[]);
    assert_eq!(get_json(&server, "/query").0, 200);
    let (status, content_type, body) = get(&server, "/metrics");
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let scrape = Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let checkouts = scrape
        .samples
        .iter()
        .find(|s| s.metric == "cistern_checkouts_total")
        .expect("a checkout counter");
    assert_eq!(checkouts.labels.get("pool"), Some("health_server"));
    assert!(
        matches!(checkouts.value, Value::Counter(v) if v >= 1.0),
        "{checkouts:?}"
    );
    assert!(
        scrape
            .samples
            .iter()
            .any(|s| s.metric == "cistern_checkout_wait_seconds"
                && matches!(s.value, Value::Histogram(_)))
    );
}

#[test]
fn query_route_uses_the_pool() {
    let server = start(&[]);
    let (status, first) = get_json(&server, "/query");
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["database"], "sqlite");
    let (_, second) = get_json(&server, "/query");
    assert_eq!(
        second["hits"].as_i64().unwrap(),
        first["hits"].as_i64().unwrap() + 1,
        "both queries reached the same database"
    );
    let (_, health) = get_json(&server, "/health/db_pool");
    assert!(
        health["stats"]["checkouts"].as_u64().unwrap() >= 2,
        "{health}"
    );
}

#[test]
fn bad_requests_get_clear_errors() {
    let server = start(&[]);
    let (status, json) = get_json(&server, "/nowhere");
    assert_eq!(status, 404);
    assert!(json["error"].as_str().unwrap().contains("/nowhere"));
    let (status, json) = get_json(&server, "/query?hold_ms=soon");
    assert_eq!(status, 400);
    assert!(
        json["error"].as_str().unwrap().contains("hold_ms"),
        "{json}"
    );
}

#[test]
fn unsupported_url_fails_without_echoing_the_password() {
    let out = Command::new(example_binary())
        .args([
            "--port",
            "0",
            "--url",
            "oracle://app:hunter2-secret@127.0.0.1/db",
        ])
        .output()
        .expect("the example runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unsupported URL scheme \"oracle\""),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).is_empty());
}

#[test]
fn bad_pool_variable_is_reported_by_name() {
    let out = Command::new(example_binary())
        .args(["--port", "0"])
        .env("DB_POOL_SIZE", "lots")
        .output()
        .expect("the example runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("DB_POOL_SIZE") && stderr.contains("lots"),
        "{stderr}"
    );
}

/// `/query` twice through a one-connection pool: the same server session.
fn check_network_database(url: &str, database: &str) {
    let server = start_with(
        Some(url),
        &[("DB_POOL_SIZE", "1"), ("DB_MAX_OVERFLOW", "0")],
    );
    let (status, first) = get_json(&server, "/query");
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["database"], database);
    let (_, second) = get_json(&server, "/query");
    assert_eq!(
        first["session"], second["session"],
        "the pool reused its connection"
    );
    let (status, health) = get_json(&server, "/health/db_pool");
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["config"]["pool_size"], 1);
    assert_eq!(health["stats"]["created"], 1);
    let (status, _, metrics) = get(&server, "/metrics");
    assert_eq!(status, 200);
    assert!(
        metrics.contains("cistern_checkouts_total{pool=\"health_server\"} 2\n"),
        "{metrics}"
    );
}

#[cfg(feature = "postgres")]
#[test]
fn postgres_url_is_served_through_a_postgres_pool() {
    if common_servers::pg::server("postgres_url_is_served_through_a_postgres_pool").is_none() {
        return;
    }
    check_network_database(&common_servers::postgres_url(), "postgres");
}

#[cfg(feature = "mysql")]
#[test]
fn mysql_url_is_served_through_a_mysql_pool() {
    if common_servers::my::server("mysql_url_is_served_through_a_mysql_pool").is_none() {
        return;
    }
    check_network_database(&common_servers::mysql_url(), "mysql");
}
