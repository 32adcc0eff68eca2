//! The PostgreSQL adapter against the real server, failing on purpose:
//! load, sessions killed idle and in use, connects refused, network faults
//! through a proxy, recycling, transactions left open, and the known-down
//! fast path (issue 4, scenarios a-h).
//!
//! Each test uses its own role (`cistern_t_<random>`), so counting and
//! killing sessions never touches a test running beside it.

#![cfg(feature = "postgres")]

mod common_servers;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cistern::postgres::postgres::error::SqlState;
use cistern::postgres::{PostgresManager, Reset};
use cistern::testing::proxy::FaultProxy;
use cistern::{Error, Manager, Pool, WarmUp};
use common_servers::pg::{self, Role};
use common_servers::{wait_until, within};

/// A manager connecting as `role`, with short pings for the fault tests.
fn manager(server: &pg::Server, role: &Role) -> PostgresManager {
    PostgresManager::from_config(server.config_for(&role.name))
        .ping_timeout(Duration::from_millis(500))
}

/// A manager connecting as `role` through `proxy`.
fn proxied(server: &pg::Server, role: &Role, proxy: &FaultProxy) -> PostgresManager {
    let base = server.config_for(&role.name);
    let mut config = cistern::postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(proxy.port())
        .user(&role.name)
        .dbname(base.get_dbname().unwrap_or("test"));
    PostgresManager::from_config(config)
        .ping_timeout(Duration::from_millis(300))
        .connect_timeout(Duration::from_secs(1))
}

fn pid(conn: &mut cistern::Pooled<PostgresManager>) -> i32 {
    conn.query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0)
}

/// `now()` is the transaction's start: in a simple query it equals the
/// statement's start only when no transaction was left open before it.
fn in_transaction(conn: &mut cistern::Pooled<PostgresManager>) -> bool {
    use cistern::postgres::postgres::SimpleQueryMessage;
    let rows = conn
        .simple_query("SELECT now() = statement_timestamp()")
        .unwrap();
    let fresh = rows.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(r) => r.get(0).map(|v| v == "t"),
        _ => None,
    });
    fresh != Some(true)
}

fn target(server: &pg::Server) -> std::net::SocketAddr {
    let config = server.config_for("x");
    let port = config.get_ports().first().copied().unwrap_or(5432);
    std::net::SocketAddr::from(([127, 0, 0, 1], port))
}

// a. Load.
#[test]
fn load_of_16_threads_never_opens_more_than_size_plus_overflow_on_the_server() {
    let Some(server) = pg::server("postgres a") else {
        return;
    };
    let role = Arc::new(server.role(-1));
    let pool = Pool::builder()
        .name("pg-load")
        .pool_size(4)
        .max_overflow(4)
        .checkout_timeout(Duration::from_secs(30))
        .build(manager(&server, &role))
        .unwrap();

    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (role, done) = (Arc::clone(&role), Arc::clone(&done));
        std::thread::spawn(move || {
            let mut max = 0;
            while !done.load(Ordering::SeqCst) {
                max = max.max(role.sessions());
                std::thread::sleep(Duration::from_millis(5));
            }
            max.max(role.sessions())
        })
    };
    let wrong = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..16)
        .map(|t: i32| {
            let (pool, wrong) = (pool.clone(), Arc::clone(&wrong));
            std::thread::spawn(move || {
                for i in 0..40 {
                    let mut conn = pool.get().unwrap();
                    let n = t * 1000 + i;
                    let row = conn
                        .query_one("SELECT $1::int4 * 2, pg_sleep(0.001)::text", &[&n])
                        .unwrap();
                    if row.get::<_, i32>(0) != n * 2 {
                        wrong.fetch_add(1, Ordering::SeqCst);
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    done.store(true, Ordering::SeqCst);
    let max_seen = watcher.join().unwrap();

    assert_eq!(wrong.load(Ordering::SeqCst), 0, "wrong query results");
    assert!(
        max_seen <= 8,
        "the server saw {max_seen} sessions, more than pool_size + max_overflow = 8"
    );
    assert!(
        wait_until(Duration::from_secs(20), || role.sessions() == 4),
        "after the load the server shows {} sessions, expected pool_size = 4",
        role.sessions()
    );
    let s = pool.stats();
    assert_eq!((s.open, s.idle), (4, 4), "{s:?}");
    pool.check_invariants().unwrap();
}

// b. Idle connections killed by the server.
#[test]
fn idle_connections_killed_by_the_server_are_replaced_without_errors() {
    let Some(server) = pg::server("postgres b") else {
        return;
    };
    let role = server.role(-1);
    let pool = Pool::builder()
        .name("pg-killed-idle")
        .pool_size(4)
        .max_overflow(0)
        .min_idle(4)
        .ping_bypass(Duration::ZERO)
        .build(manager(&server, &role))
        .unwrap();
    assert_eq!(role.kill_all(), 4);

    // Held four at a time: the first four checkouts take (and check)
    // every idle connection, whatever the order they are handed out in.
    let mut held = Vec::new();
    for i in 0..20 {
        let mut conn = pool
            .get()
            .unwrap_or_else(|e| panic!("checkout {i} failed: {e}"));
        let one: i32 = conn
            .query_one("SELECT 1", &[])
            .unwrap_or_else(|e| panic!("query {i}: {e}"))
            .get(0);
        assert_eq!(one, 1);
        held.push(conn);
        if held.len() == 4 {
            held.clear();
        }
    }
    let s = pool.stats();
    assert_eq!(s.closed_by.failed_ping + s.closed_by.broken, 4, "{s:?}");
}

#[test]
fn killed_connections_returned_moments_ago_are_not_handed_out() {
    let Some(server) = pg::server("postgres b2") else {
        return;
    };
    let role = server.role(-1);
    let pool = Pool::builder()
        .name("pg-killed-bypass")
        .pool_size(4)
        .max_overflow(0)
        // Every checkout below falls inside the bypass window: only
        // is_broken stands between a killed connection and the user.
        .ping_bypass(Duration::from_secs(3600))
        // One connect at a time, so each finds its socket unambiguously.
        .max_connecting(1)
        .build(manager(&server, &role))
        .unwrap();
    let guards: Vec<_> = (0..4).map(|_| pool.get().unwrap()).collect();
    for g in &guards {
        assert!(
            g.has_socket_probe(),
            "the connection's socket was not found"
        );
    }
    drop(guards);
    assert_eq!(role.kill_all(), 4);

    // Held four at a time: the first four checkouts take (and check)
    // every idle connection, whatever the order they are handed out in.
    let mut held = Vec::new();
    for i in 0..20 {
        let mut conn = pool
            .get()
            .unwrap_or_else(|e| panic!("checkout {i} failed: {e}"));
        let one: i32 = conn
            .query_one("SELECT 1", &[])
            .unwrap_or_else(|e| panic!("query {i}: {e}"))
            .get(0);
        assert_eq!(one, 1);
        held.push(conn);
        if held.len() == 4 {
            held.clear();
        }
    }
    let s = pool.stats();
    assert_eq!(s.closed_by.broken, 4, "{s:?}");
}

#[test]
fn is_broken_notices_a_server_side_kill_without_a_round_trip() {
    let Some(server) = pg::server("postgres is_broken") else {
        return;
    };
    let role = server.role(-1);
    let m = manager(&server, &role);
    let mut conn = m.connect().unwrap();
    assert!(conn.has_socket_probe());
    assert!(!conn.is_closed());

    let rounds = 20_000u32;
    let start = Instant::now();
    for _ in 0..rounds {
        assert!(!m.is_broken(&mut conn));
    }
    let each = start.elapsed() / rounds;
    let start = Instant::now();
    for _ in 0..200 {
        m.ping(&mut conn).unwrap();
    }
    let ping = start.elapsed() / 200;
    println!("is_broken on a healthy connection: {each:?} per call; ping: {ping:?}");

    // What finding the socket adds to a connect (printed, not asserted).
    let connects = |m: &PostgresManager| {
        let start = Instant::now();
        for _ in 0..20 {
            drop(m.connect().unwrap());
        }
        start.elapsed() / 20
    };
    let with_probe = connects(&m);
    let without = connects(&manager(&server, &role).socket_probe(false));
    println!("connect with socket discovery: {with_probe:?}; without: {without:?}");

    role.kill_all();
    // The driver has not noticed: only the peek can tell.
    assert!(!conn.is_closed());
    assert!(m.is_broken(&mut conn));
}

#[test]
fn unix_socket_connections_find_their_socket() {
    let Some(server) = pg::server("postgres unix") else {
        return;
    };
    let dir = std::path::Path::new("/var/run/postgresql");
    let port = server
        .config_for("x")
        .get_ports()
        .first()
        .copied()
        .unwrap_or(5432);
    if !dir.join(format!(".s.PGSQL.{port}")).exists() {
        eprintln!(
            "postgres unix: skipped: no server socket in {}",
            dir.display()
        );
        return;
    }
    let role = server.role(-1);
    let mut config = cistern::postgres::Config::new();
    config
        .host_path(dir)
        .port(port)
        .user(&role.name)
        .dbname(server.config_for("x").get_dbname().unwrap_or("test"));
    let m = PostgresManager::from_config(config);
    // Several connects at once: the manager takes turns to tell them apart.
    let m = Arc::new(m);
    let conns: Vec<_> = (0..3)
        .map(|_| {
            let m = Arc::clone(&m);
            std::thread::spawn(move || m.connect().unwrap())
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    let mut conns = conns;
    for c in &mut conns {
        assert!(c.has_socket_probe());
        assert!(!m.is_broken(c));
    }
    role.kill_all();
    for c in &mut conns {
        assert!(m.is_broken(c));
    }
}

// Per-connection init.
#[test]
fn init_sql_and_closure_run_on_every_new_connection() {
    let Some(server) = pg::server("postgres init") else {
        return;
    };
    let role = server.role(-1);
    let m = manager(&server, &role)
        .init_sql("SET application_name = 'cistern-init'")
        .init_with(|c| c.batch_execute("SET statement_timeout = '7s'"));
    let pool = Pool::builder().name("pg-init").build(m).unwrap();
    let guards: Vec<_> = (0..3).map(|_| pool.get().unwrap()).collect();
    for mut g in guards {
        let row = g
            .query_one(
                "SELECT current_setting('application_name'), current_setting('statement_timeout')",
                &[],
            )
            .unwrap();
        assert_eq!(row.get::<_, String>(0), "cistern-init");
        assert_eq!(row.get::<_, String>(1), "7s");
    }
}

#[test]
fn failing_init_fails_the_connect_with_its_error_and_nothing_reaches_a_user() {
    let Some(server) = pg::server("postgres init fails") else {
        return;
    };
    let role = server.role(-1);
    let m = manager(&server, &role).init_sql("SET no_such_setting_anywhere = 1");
    let pool = Pool::builder()
        .name("pg-init-fails")
        .checkout_timeout(Duration::from_millis(800))
        .build(m)
        .unwrap();
    let err = pool.get().unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(
        err.to_string().contains("no_such_setting_anywhere"),
        "{err}"
    );
    let s = pool.stats();
    assert!(s.closed_by.failed_init >= 1, "{s:?}");
    assert_eq!(s.open, 0, "{s:?}");
}

// c. A connection killed while checked out.
#[test]
fn connection_killed_while_checked_out_fails_the_query_and_is_closed_on_return() {
    let Some(server) = pg::server("postgres c") else {
        return;
    };
    let role = server.role(-1);
    let pool = Pool::builder()
        .name("pg-killed-in-use")
        .pool_size(2)
        .max_overflow(0)
        .build(manager(&server, &role))
        .unwrap();
    let mut conn = pool.get().unwrap();
    let before = pid(&mut conn);
    role.kill(&[before]);

    // The driver's own error: the server's goodbye (57P01), or the I/O
    // error / closed connection that follows it.
    let err = conn.query_one("SELECT 1", &[]).unwrap_err();
    let io = std::error::Error::source(&err).is_some_and(|s| s.is::<std::io::Error>());
    assert!(
        err.is_closed() || io || err.code() == Some(&SqlState::ADMIN_SHUTDOWN),
        "expected the driver's error for a killed session, got {err:?}"
    );
    drop(conn);
    assert_eq!(pool.stats().closed_by.broken, 1, "{:?}", pool.stats());

    let mut conn = pool.get().unwrap();
    assert_ne!(pid(&mut conn), before);
    pool.check_invariants().unwrap();
}

// d. The server refuses connections.
fn refused(server: &pg::Server, user: &str, expected: &str) {
    let backoff_initial = Duration::from_millis(100);
    let backoff_max = Duration::from_millis(400);
    let mut config = server.config_for(user);
    config.connect_timeout(Duration::from_secs(2));
    let pool = Pool::builder()
        .name("pg-refused")
        .checkout_timeout(Duration::from_secs(2))
        .backoff_initial(backoff_initial)
        .backoff_max(backoff_max)
        .build(PostgresManager::from_config(config))
        .unwrap();
    let start = Instant::now();
    let err = pool.get().unwrap_err();
    let waited = start.elapsed();
    assert!(err.is_timeout(), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(expected),
        "the error does not carry the server's message: {text}"
    );

    // Attempts: one at once, then one per backoff delay (jitter shortens a
    // delay by at most 20 %), plus one in flight when the wait ended.
    let attempts = pool.stats().connect_errors;
    let mut allowed = 1u64;
    let mut elapsed = Duration::ZERO;
    let mut delay = backoff_initial;
    loop {
        elapsed += delay.mul_f64(0.8);
        if elapsed > waited {
            break;
        }
        allowed += 1;
        delay = (delay * 2).min(backoff_max);
    }
    assert!(attempts >= 2, "the pool did not retry: {attempts} attempts");
    assert!(
        attempts <= allowed + 1,
        "{attempts} connect attempts in {waited:?}: more than the backoff schedule allows ({allowed} + 1)"
    );
}

#[test]
fn role_at_its_connection_limit_fails_checkout_with_the_server_message() {
    let Some(server) = pg::server("postgres d1") else {
        return;
    };
    let role = server.role(0);
    refused(&server, &role.name, "too many connections for role");
}

#[test]
fn unknown_role_fails_checkout_with_the_server_message() {
    let Some(server) = pg::server("postgres d2") else {
        return;
    };
    let name = common_servers::unique_name();
    refused(&server, &name, "does not exist");
}

// e. Network faults through a proxy.
#[test]
fn every_checkout_after_all_connections_are_cut_succeeds() {
    let Some(server) = pg::server("postgres e1") else {
        return;
    };
    let role = server.role(-1);
    let proxy = FaultProxy::start(target(&server)).unwrap();
    let pool = Pool::builder()
        .name("pg-cut")
        .pool_size(4)
        .max_overflow(0)
        .max_connecting(1)
        .checkout_timeout(Duration::from_secs(10))
        .build(proxied(&server, &role, &proxy))
        .unwrap();
    let guards: Vec<_> = (0..4).map(|_| pool.get().unwrap()).collect();
    drop(guards);
    assert_eq!(proxy.cut_all(), 4);

    // Returned moments ago and cut: each checkout must still succeed.
    // Held four at a time: the first four checkouts take (and check)
    // every idle connection, whatever the order they are handed out in.
    let mut held = Vec::new();
    for i in 0..20 {
        let mut conn = pool
            .get()
            .unwrap_or_else(|e| panic!("checkout {i} after the cut failed: {e}"));
        conn.query_one("SELECT 1", &[])
            .unwrap_or_else(|e| panic!("query {i} after the cut: {e}"));
        held.push(conn);
        if held.len() == 4 {
            held.clear();
        }
    }
    let s = pool.stats();
    assert_eq!(s.closed_by.broken + s.closed_by.failed_ping, 4, "{s:?}");
}

#[test]
fn blackholed_new_connections_time_out_checkouts_and_the_pool_recovers_after_heal() {
    let Some(server) = pg::server("postgres e2") else {
        return;
    };
    let role = server.role(-1);
    let proxy = Arc::new(FaultProxy::start(target(&server)).unwrap());
    let checkout = Duration::from_millis(800);
    let pool = Pool::builder()
        .name("pg-blackhole-new")
        .pool_size(2)
        .max_overflow(0)
        .checkout_timeout(checkout)
        .connect_timeout(Duration::from_secs(1))
        .backoff_initial(Duration::from_millis(100))
        .backoff_max(Duration::from_millis(300))
        .build(proxied(&server, &role, &proxy))
        .unwrap();
    proxy.blackhole_new();

    // Margin: none is needed here (nothing idle to ping); the watchdog is
    // generous so that only a hang fails the test.
    let watchdog = checkout + Duration::from_secs(20);
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let pool = pool.clone();
            std::thread::spawn(move || {
                within(watchdog, "get() during a blackhole", move || {
                    pool.get().map(|_| ())
                })
            })
        })
        .collect();
    for t in threads {
        let err = t.join().unwrap().unwrap_err();
        assert!(err.is_timeout(), "{err}");
    }
    assert!(proxy.accepted() >= 1, "the pool never tried to connect");

    proxy.heal();
    let pool2 = pool.clone();
    let mut conn = within(watchdog, "get() after heal", move || {
        pool2.get_timeout(Duration::from_secs(10))
    })
    .expect("the pool serves again once the proxy heals");
    conn.query_one("SELECT 1", &[]).unwrap();
}

#[test]
fn blackholed_established_connections_fail_their_ping_and_recover_after_heal() {
    let Some(server) = pg::server("postgres e3") else {
        return;
    };
    let role = server.role(-1);
    let proxy = FaultProxy::start(target(&server)).unwrap();
    let checkout = Duration::from_secs(2);
    let pool = Pool::builder()
        .name("pg-blackhole-established")
        .pool_size(2)
        .max_overflow(1)
        .checkout_timeout(checkout)
        .ping_bypass(Duration::ZERO)
        .backoff_initial(Duration::from_millis(100))
        .backoff_max(Duration::from_millis(300))
        .build(proxied(&server, &role, &proxy))
        .unwrap();
    let guards: Vec<_> = (0..2).map(|_| pool.get().unwrap()).collect();
    drop(guards);
    // A query in flight when the network stalls.
    let mut busy = pool.get().unwrap();
    let in_flight = std::thread::spawn(move || {
        let r = busy
            .query_one("SELECT pg_sleep(0.3)::text", &[])
            .map(|_| ());
        drop(busy);
        r
    });
    std::thread::sleep(Duration::from_millis(50));
    // The busy connection and the idle one.
    assert_eq!(proxy.blackhole_established(), 2);

    // The idle one fails its ping (300 ms); a fresh connection gets
    // through. Margin over checkout_timeout: one ping_timeout.
    let watchdog = checkout + Duration::from_secs(20);
    let p = pool.clone();
    let mut conn = within(watchdog, "get() with stalled connections", move || p.get())
        .expect("a new connection gets through while the old ones are stalled");
    conn.query_one("SELECT 1", &[]).unwrap();
    drop(conn);
    assert_eq!(pool.stats().closed_by.failed_ping, 1, "{:?}", pool.stats());

    proxy.heal();
    // The stalled query completes once the network is back.
    within(watchdog, "the stalled query", move || {
        in_flight.join().unwrap()
    })
    .expect("the stalled query completes after heal");
    let p = pool.clone();
    let mut conn = within(watchdog, "get() after heal", move || p.get()).unwrap();
    conn.query_one("SELECT 1", &[]).unwrap();
}

#[test]
fn a_checkout_stops_pinging_stalled_connections_at_its_deadline() {
    let Some(server) = pg::server("postgres e4") else {
        return;
    };
    let role = server.role(-1);
    let proxy = FaultProxy::start(target(&server)).unwrap();
    let checkout = Duration::from_secs(1);
    let pool = Pool::builder()
        .name("pg-stalled-idle")
        .pool_size(8)
        .max_overflow(0)
        .checkout_timeout(checkout)
        .ping_bypass(Duration::ZERO)
        .build(proxied(&server, &role, &proxy))
        .unwrap();
    let guards: Vec<_> = (0..8).map(|_| pool.get().unwrap()).collect();
    drop(guards);
    proxy.blackhole_new();
    assert_eq!(proxy.blackhole_established(), 8);

    // Eight stalled idle connections, 300 ms per failed ping: pinging them
    // all would take 2.4 s. The checkout gives up at its deadline, after at
    // most checkout / ping_timeout + 1 pings (a count, not a clock).
    let p = pool.clone();
    let err = within(
        checkout + Duration::from_secs(20),
        "get() with stalled idle connections",
        move || p.get().map(|_| ()),
    )
    .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    let pings = pool.stats().closed_by.failed_ping;
    assert!(
        pings <= 1 + 1000 / 300,
        "the checkout went on pinging past its deadline: {pings} pings"
    );
    proxy.heal();
}

// f. Short recycle_after.
#[test]
fn short_recycle_after_replaces_backends_and_never_closes_a_busy_connection() {
    let Some(server) = pg::server("postgres f") else {
        return;
    };
    let role = server.role(-1);
    let pool = Pool::builder()
        .name("pg-recycle")
        .pool_size(2)
        .max_overflow(0)
        .recycle_after(Duration::from_millis(200))
        .build(manager(&server, &role))
        .unwrap();
    let pids = Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
    let errors = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..3)
        .map(|_| {
            let (pool, pids, errors, stop) = (
                pool.clone(),
                Arc::clone(&pids),
                Arc::clone(&errors),
                Arc::clone(&stop),
            );
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let mut conn = pool.get().unwrap();
                    match conn.query_one("SELECT pg_backend_pid(), pg_sleep(0.03)::text", &[]) {
                        Ok(row) => {
                            pids.lock().unwrap().insert(row.get::<_, i32>(0));
                        }
                        Err(e) => {
                            eprintln!("query failed: {e}");
                            errors.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
            })
        })
        .collect();
    let changed = wait_until(Duration::from_secs(30), || pids.lock().unwrap().len() >= 6);
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.join().unwrap();
    }
    assert!(
        changed,
        "backends did not change: {:?}",
        pids.lock().unwrap()
    );
    assert_eq!(
        errors.load(Ordering::SeqCst),
        0,
        "a query failed under recycling"
    );
    assert!(pool.stats().closed_by.recycled >= 4, "{:?}", pool.stats());
}

// g. Transactions.
#[test]
fn reset_on_return_rolls_back_a_raw_begin_left_open() {
    let Some(server) = pg::server("postgres g1") else {
        return;
    };
    let role = server.role(-1);
    let table = role.table("items", "v int");
    for reset in [Reset::Rollback, Reset::DiscardAll] {
        let pool = Pool::builder()
            .name("pg-reset")
            .pool_size(1)
            .max_overflow(0)
            .build(
                manager(&server, &role)
                    .init_sql("SET statement_timeout = '12s'")
                    .reset_on_return(reset),
            )
            .unwrap();
        let mut conn = pool.get().unwrap();
        let first = pid(&mut conn);
        conn.batch_execute(&format!("BEGIN; INSERT INTO {table} VALUES (1)"))
            .unwrap();
        drop(conn);

        let mut conn = pool.get().unwrap();
        assert_eq!(
            pid(&mut conn),
            first,
            "{reset:?}: the connection was not reused"
        );
        assert!(
            !in_transaction(&mut conn),
            "{reset:?}: the transaction leaked"
        );
        let n: i64 = conn
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .unwrap()
            .get(0);
        assert_eq!(n, 0, "{reset:?}: the uncommitted write is visible");
        assert_eq!(role.count(&table), 0);
        // The init's session setting survives the reset (DISCARD ALL runs
        // the init again).
        let timeout: String = conn
            .query_one("SHOW statement_timeout", &[])
            .unwrap()
            .get(0);
        assert_eq!(timeout, "12s", "{reset:?}");
    }
}

#[test]
fn guard_dropped_during_a_panic_mid_transaction_is_closed_not_reused() {
    let Some(server) = pg::server("postgres g2") else {
        return;
    };
    let role = server.role(-1);
    let table = role.table("items", "v int");
    let pool = Pool::builder()
        .name("pg-panic")
        .pool_size(1)
        .max_overflow(0)
        .build(manager(&server, &role))
        .unwrap();
    let first = pid(&mut pool.get().unwrap());
    let p = pool.clone();
    let t = table.clone();
    let panicked = catch_unwind(AssertUnwindSafe(move || {
        let mut conn = p.get().unwrap();
        conn.batch_execute(&format!("BEGIN; INSERT INTO {t} VALUES (1)"))
            .unwrap();
        panic!("boom mid-transaction");
    }));
    assert!(panicked.is_err());
    assert_eq!(pool.stats().closed_by.panicked, 1);

    let mut conn = pool.get().unwrap();
    assert_ne!(pid(&mut conn), first);
    assert!(!in_transaction(&mut conn));
    let n: i64 = conn
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
    assert_eq!(role.count(&table), 0);
}

#[test]
fn driver_transaction_dropped_uncommitted_rolls_back_and_the_connection_is_reused() {
    let Some(server) = pg::server("postgres g3") else {
        return;
    };
    let role = server.role(-1);
    let table = role.table("items", "v int");
    let pool = Pool::builder()
        .name("pg-transaction")
        .pool_size(1)
        .max_overflow(0)
        .build(manager(&server, &role))
        .unwrap();
    let mut conn = pool.get().unwrap();
    let first = pid(&mut conn);
    {
        let mut tx = conn.transaction().unwrap();
        tx.execute(&format!("INSERT INTO {table} VALUES (1)"), &[])
            .unwrap();
        // Dropped without commit.
    }
    drop(conn);

    let mut conn = pool.get().unwrap();
    assert_eq!(pid(&mut conn), first);
    assert!(!in_transaction(&mut conn));
    let n: i64 = conn
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
    assert_eq!(role.count(&table), 0);
}

// h. Known-down fast path.
fn down_pool(server: &pg::Server, role: &Role, fail_fast: bool) -> Pool<PostgresManager> {
    let pool = Pool::builder()
        .name("pg-down")
        .pool_size(2)
        .max_overflow(0)
        .min_idle(1)
        .warm_up(WarmUp::Background)
        .fail_fast_when_down(fail_fast)
        .checkout_timeout(Duration::from_secs(60))
        // Long backoff: no attempt is in flight while the test asks.
        .backoff_initial(Duration::from_secs(20))
        .backoff_max(Duration::from_secs(20))
        .build(manager(server, role))
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || pool
            .stats()
            .consecutive_connect_failures
            > 0),
        "the first connect did not fail"
    );
    pool
}

#[test]
fn known_down_fast_path_fails_at_once_with_the_last_connect_error() {
    let Some(server) = pg::server("postgres h1") else {
        return;
    };
    let role = server.role(0);
    let pool = down_pool(&server, &role, true);
    // The checkout timeout is 60 s: a watchdog of 20 s proves it did not wait.
    let p = pool.clone();
    let err = within(
        Duration::from_secs(20),
        "get() while known down",
        move || p.get().map(|_| ()),
    )
    .unwrap_err();
    assert!(
        matches!(err, Error::Connect { .. }),
        "expected Error::Connect, got {err}"
    );
    assert!(err.to_string().contains("too many connections"), "{err}");
}

#[test]
fn known_down_fast_path_is_off_by_default() {
    let Some(server) = pg::server("postgres h2") else {
        return;
    };
    let role = server.role(0);
    let pool = down_pool(&server, &role, false);
    let err = pool.get_timeout(Duration::from_millis(300)).unwrap_err();
    assert!(
        err.is_timeout(),
        "expected a timeout (it waited), got {err}"
    );
}
