//! The MySQL / MariaDB adapter against the real server, failing on
//! purpose: load, sessions killed idle and in use, connects refused,
//! network faults through a proxy, recycling, transactions left open, and
//! the known-down fast path (issue 4, scenarios a-h).
//!
//! Each test uses its own user (`cistern_t_<random>`), so counting and
//! killing sessions never touches a test running beside it.

#![cfg(feature = "mysql")]

mod common_servers;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cistern::mysql::MysqlManager;
use cistern::mysql::mysql::prelude::Queryable;
use cistern::mysql::mysql::{Conn, TxOpts};
use cistern::testing::proxy::FaultProxy;
use cistern::{Error, Manager, Pool, Pooled, WarmUp};
use common_servers::my::{self, User};
use common_servers::{wait_until, within};

/// A manager connecting as `user` (over TCP), with short pings.
fn manager(server: &my::Server, user: &User) -> MysqlManager {
    MysqlManager::from_opts(server.opts_for(&user.name)).ping_timeout(Duration::from_millis(500))
}

/// A manager connecting as `user` through `proxy`.
fn proxied(server: &my::Server, user: &User, proxy: &FaultProxy) -> MysqlManager {
    let opts = server
        .opts_for(&user.name)
        .ip_or_hostname(Some("127.0.0.1"))
        .tcp_port(proxy.port());
    MysqlManager::from_opts(opts)
        .ping_timeout(Duration::from_millis(300))
        .connect_timeout(Duration::from_secs(1))
}

fn target() -> std::net::SocketAddr {
    let opts = cistern::mysql::Opts::from_url(&common_servers::mysql_url()).unwrap();
    std::net::SocketAddr::from(([127, 0, 0, 1], opts.get_tcp_port()))
}

fn id(conn: &mut Pooled<MysqlManager>) -> u64 {
    conn.query_first("SELECT CONNECTION_ID()").unwrap().unwrap()
}

fn in_transaction(conn: &mut Conn) -> bool {
    let v: i64 = conn
        .query_first("SELECT @@in_transaction")
        .unwrap()
        .unwrap();
    v != 0
}

fn count(conn: &mut Conn, table: &str) -> i64 {
    conn.query_first(format!("SELECT count(*) FROM {table}"))
        .unwrap()
        .unwrap()
}

// a. Load.
#[test]
fn load_of_16_threads_never_opens_more_than_size_plus_overflow_on_the_server() {
    let Some(server) = my::server("mysql a") else {
        return;
    };
    let user = Arc::new(server.user(0));
    let pool = Pool::builder()
        .name("my-load")
        .pool_size(4)
        .max_overflow(4)
        .checkout_timeout(Duration::from_secs(30))
        .build(manager(&server, &user))
        .unwrap();

    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (user, done) = (Arc::clone(&user), Arc::clone(&done));
        std::thread::spawn(move || {
            let mut max = 0;
            while !done.load(Ordering::SeqCst) {
                max = max.max(user.sessions());
                std::thread::sleep(Duration::from_millis(5));
            }
            max.max(user.sessions())
        })
    };
    let wrong = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..16)
        .map(|t: i64| {
            let (pool, wrong) = (pool.clone(), Arc::clone(&wrong));
            std::thread::spawn(move || {
                for i in 0..40 {
                    let mut conn = pool.get().unwrap();
                    let n = t * 1000 + i;
                    let got: Option<(i64, i64)> =
                        conn.exec_first("SELECT ? * 2, SLEEP(0.001)", (n,)).unwrap();
                    if got.map(|r| r.0) != Some(n * 2) {
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
        wait_until(Duration::from_secs(20), || user.sessions() == 4),
        "after the load the server shows {} sessions, expected pool_size = 4",
        user.sessions()
    );
    let s = pool.stats();
    assert_eq!((s.open, s.idle), (4, 4), "{s:?}");
    pool.check_invariants().unwrap();
}

// b. Idle connections killed by the server.
#[test]
fn idle_connections_killed_by_the_server_are_replaced_without_errors() {
    let Some(server) = my::server("mysql b") else {
        return;
    };
    let user = server.user(0);
    let pool = Pool::builder()
        .name("my-killed-idle")
        .pool_size(4)
        .max_overflow(0)
        .min_idle(4)
        .ping_bypass(Duration::ZERO)
        .build(manager(&server, &user))
        .unwrap();
    assert_eq!(user.kill_all(), 4);

    // Held four at a time: the first four checkouts take (and check)
    // every idle connection, whatever the order they are handed out in.
    let mut held = Vec::new();
    for i in 0..20 {
        let mut conn = pool
            .get()
            .unwrap_or_else(|e| panic!("checkout {i} failed: {e}"));
        let one: Option<i64> = conn
            .query_first("SELECT 1")
            .unwrap_or_else(|e| panic!("query {i}: {e}"));
        assert_eq!(one, Some(1));
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
    let Some(server) = my::server("mysql b2") else {
        return;
    };
    let user = server.user(0);
    let pool = Pool::builder()
        .name("my-killed-bypass")
        .pool_size(4)
        .max_overflow(0)
        // Inside the bypass window only is_broken protects the user.
        .ping_bypass(Duration::from_secs(3600))
        .build(manager(&server, &user))
        .unwrap();
    let guards: Vec<_> = (0..4).map(|_| pool.get().unwrap()).collect();
    drop(guards);
    assert_eq!(user.kill_all(), 4);

    // Held four at a time: the first four checkouts take (and check)
    // every idle connection, whatever the order they are handed out in.
    let mut held = Vec::new();
    for i in 0..20 {
        let mut conn = pool
            .get()
            .unwrap_or_else(|e| panic!("checkout {i} failed: {e}"));
        let one: Option<i64> = conn
            .query_first("SELECT 1")
            .unwrap_or_else(|e| panic!("query {i}: {e}"));
        assert_eq!(one, Some(1));
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
    let Some(server) = my::server("mysql is_broken") else {
        return;
    };
    let user = server.user(0);
    let m = manager(&server, &user);
    let mut conn = m.connect().unwrap();

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

    user.kill_all();
    assert!(m.is_broken(&mut conn));
}

#[test]
fn unix_socket_connections_are_checked_by_peeking_too() {
    let Some(server) = my::server("mysql unix") else {
        return;
    };
    let path = "/run/mysqld/mysqld.sock";
    if !std::path::Path::new(path).exists() {
        eprintln!("mysql unix: skipped: no server socket at {path}");
        return;
    }
    let user = server.user(0);
    let m = MysqlManager::from_opts(server.opts_for(&user.name).socket(Some(path)));
    let mut conn = m.connect().unwrap();
    assert!(!m.is_broken(&mut conn));
    user.kill_all();
    assert!(m.is_broken(&mut conn));
}

// Per-connection init.
#[test]
fn init_sql_and_closure_run_on_every_new_connection() {
    let Some(server) = my::server("mysql init") else {
        return;
    };
    let user = server.user(0);
    let m = manager(&server, &user)
        .init_sql("SET @cistern_init = 'yes'")
        .init_with(|c| c.query_drop("SET SESSION wait_timeout = 4321"));
    let pool = Pool::builder().name("my-init").build(m).unwrap();
    let guards: Vec<_> = (0..3).map(|_| pool.get().unwrap()).collect();
    for mut g in guards {
        let row: Option<(String, u64)> = g
            .query_first("SELECT @cistern_init, @@session.wait_timeout")
            .unwrap();
        assert_eq!(row, Some(("yes".to_owned(), 4321)));
    }
}

#[test]
fn failing_init_fails_the_connect_with_its_error_and_nothing_reaches_a_user() {
    let Some(server) = my::server("mysql init fails") else {
        return;
    };
    let user = server.user(0);
    let m = manager(&server, &user).init_sql("SET SESSION no_such_variable_anywhere = 1");
    let pool = Pool::builder()
        .name("my-init-fails")
        .checkout_timeout(Duration::from_millis(800))
        .build(m)
        .unwrap();
    let err = pool.get().unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(
        err.to_string().contains("no_such_variable_anywhere"),
        "{err}"
    );
    let s = pool.stats();
    assert!(s.closed_by.failed_init >= 1, "{s:?}");
    assert_eq!(s.open, 0, "{s:?}");
}

// c. A connection killed while checked out.
#[test]
fn connection_killed_while_checked_out_fails_the_query_and_is_closed_on_return() {
    let Some(server) = my::server("mysql c") else {
        return;
    };
    let user = server.user(0);
    let pool = Pool::builder()
        .name("my-killed-in-use")
        .pool_size(2)
        .max_overflow(0)
        .build(manager(&server, &user))
        .unwrap();
    let mut conn = pool.get().unwrap();
    let before = id(&mut conn);
    user.kill(&[before]);

    // The driver's own error (I/O, or the server's "connection was killed").
    let err = conn.query_drop("SELECT 1").unwrap_err();
    println!("the killed session's error: {err}");
    drop(conn);
    assert_eq!(pool.stats().closed_by.broken, 1, "{:?}", pool.stats());

    let mut conn = pool.get().unwrap();
    assert_ne!(id(&mut conn), before);
    pool.check_invariants().unwrap();
}

// d. The server refuses connections.
fn refused(manager: MysqlManager, expected: &str) {
    let backoff_initial = Duration::from_millis(100);
    let backoff_max = Duration::from_millis(400);
    let pool = Pool::builder()
        .name("my-refused")
        .checkout_timeout(Duration::from_secs(2))
        .backoff_initial(backoff_initial)
        .backoff_max(backoff_max)
        .build(manager.connect_timeout(Duration::from_secs(2)))
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
fn user_at_its_connection_limit_fails_checkout_with_the_server_message() {
    let Some(server) = my::server("mysql d1") else {
        return;
    };
    let user = server.user(1);
    let _only_one = Conn::new(server.opts_for(&user.name)).unwrap();
    refused(manager(&server, &user), "max_user_connections");
}

#[test]
fn unknown_user_fails_checkout_with_the_server_message() {
    let Some(server) = my::server("mysql d2") else {
        return;
    };
    let name = common_servers::unique_name();
    refused(
        MysqlManager::from_opts(server.opts_for(&name)),
        "Access denied",
    );
}

// e. Network faults through a proxy.
#[test]
fn every_checkout_after_all_connections_are_cut_succeeds() {
    let Some(server) = my::server("mysql e1") else {
        return;
    };
    let user = server.user(0);
    let proxy = FaultProxy::start(target()).unwrap();
    let pool = Pool::builder()
        .name("my-cut")
        .pool_size(4)
        .max_overflow(0)
        .checkout_timeout(Duration::from_secs(10))
        .build(proxied(&server, &user, &proxy))
        .unwrap();
    let guards: Vec<_> = (0..4).map(|_| pool.get().unwrap()).collect();
    drop(guards);
    assert_eq!(proxy.cut_all(), 4);

    // Held four at a time: the first four checkouts take (and check)
    // every idle connection, whatever the order they are handed out in.
    let mut held = Vec::new();
    for i in 0..20 {
        let mut conn = pool
            .get()
            .unwrap_or_else(|e| panic!("checkout {i} after the cut failed: {e}"));
        conn.query_drop("SELECT 1")
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
    let Some(server) = my::server("mysql e2") else {
        return;
    };
    let user = server.user(0);
    let proxy = FaultProxy::start(target()).unwrap();
    let checkout = Duration::from_millis(800);
    let pool = Pool::builder()
        .name("my-blackhole-new")
        .pool_size(2)
        .max_overflow(0)
        .checkout_timeout(checkout)
        .connect_timeout(Duration::from_secs(1))
        .backoff_initial(Duration::from_millis(100))
        .backoff_max(Duration::from_millis(300))
        .build(proxied(&server, &user, &proxy))
        .unwrap();
    proxy.blackhole_new();

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
    let p = pool.clone();
    let mut conn = within(watchdog, "get() after heal", move || {
        p.get_timeout(Duration::from_secs(10))
    })
    .expect("the pool serves again once the proxy heals");
    conn.query_drop("SELECT 1").unwrap();
}

#[test]
fn blackholed_established_connections_fail_their_ping_and_recover_after_heal() {
    let Some(server) = my::server("mysql e3") else {
        return;
    };
    let user = server.user(0);
    let proxy = FaultProxy::start(target()).unwrap();
    let checkout = Duration::from_secs(2);
    let pool = Pool::builder()
        .name("my-blackhole-established")
        .pool_size(2)
        .max_overflow(1)
        .checkout_timeout(checkout)
        .ping_bypass(Duration::ZERO)
        .backoff_initial(Duration::from_millis(100))
        .backoff_max(Duration::from_millis(300))
        .build(proxied(&server, &user, &proxy))
        .unwrap();
    let guards: Vec<_> = (0..2).map(|_| pool.get().unwrap()).collect();
    drop(guards);
    let mut busy = pool.get().unwrap();
    let in_flight = std::thread::spawn(move || {
        let r = busy.query_drop("SELECT SLEEP(0.3)");
        drop(busy);
        r
    });
    std::thread::sleep(Duration::from_millis(50));
    // The busy connection and the idle one.
    assert_eq!(proxy.blackhole_established(), 2);

    let watchdog = checkout + Duration::from_secs(20);
    let p = pool.clone();
    let mut conn = within(watchdog, "get() with stalled connections", move || p.get())
        .expect("a new connection gets through while the old ones are stalled");
    conn.query_drop("SELECT 1").unwrap();
    drop(conn);
    assert_eq!(pool.stats().closed_by.failed_ping, 1, "{:?}", pool.stats());

    proxy.heal();
    within(watchdog, "the stalled query", move || {
        in_flight.join().unwrap()
    })
    .expect("the stalled query completes after heal");
    let p = pool.clone();
    let mut conn = within(watchdog, "get() after heal", move || p.get()).unwrap();
    conn.query_drop("SELECT 1").unwrap();
}

#[test]
fn a_checkout_stops_pinging_stalled_connections_at_its_deadline() {
    let Some(server) = my::server("mysql e4") else {
        return;
    };
    let user = server.user(0);
    let proxy = FaultProxy::start(target()).unwrap();
    let checkout = Duration::from_secs(1);
    let pool = Pool::builder()
        .name("my-stalled-idle")
        .pool_size(8)
        .max_overflow(0)
        .checkout_timeout(checkout)
        .ping_bypass(Duration::ZERO)
        .build(proxied(&server, &user, &proxy))
        .unwrap();
    let guards: Vec<_> = (0..8).map(|_| pool.get().unwrap()).collect();
    drop(guards);
    proxy.blackhole_new();
    assert_eq!(proxy.blackhole_established(), 8);

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
fn short_recycle_after_replaces_sessions_and_never_closes_a_busy_connection() {
    let Some(server) = my::server("mysql f") else {
        return;
    };
    let user = server.user(0);
    let pool = Pool::builder()
        .name("my-recycle")
        .pool_size(2)
        .max_overflow(0)
        .recycle_after(Duration::from_millis(200))
        .build(manager(&server, &user))
        .unwrap();
    let ids = Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
    let errors = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..3)
        .map(|_| {
            let (pool, ids, errors, stop) = (
                pool.clone(),
                Arc::clone(&ids),
                Arc::clone(&errors),
                Arc::clone(&stop),
            );
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let mut conn = pool.get().unwrap();
                    match conn.query_first::<(u64, i64), _>("SELECT CONNECTION_ID(), SLEEP(0.03)") {
                        Ok(Some((id, _))) => {
                            ids.lock().unwrap().insert(id);
                        }
                        other => {
                            eprintln!("query failed: {other:?}");
                            errors.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
            })
        })
        .collect();
    let changed = wait_until(Duration::from_secs(30), || ids.lock().unwrap().len() >= 6);
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.join().unwrap();
    }
    assert!(
        changed,
        "sessions did not change: {:?}",
        ids.lock().unwrap()
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
    let Some(server) = my::server("mysql g1") else {
        return;
    };
    let user = server.user(0);
    let table = user.table("items", "v int");
    let pool = Pool::builder()
        .name("my-reset")
        .pool_size(1)
        .max_overflow(0)
        .build(
            manager(&server, &user)
                .init_sql("SET SESSION wait_timeout = 12345")
                .reset_on_return(true),
        )
        .unwrap();
    let mut conn = pool.get().unwrap();
    let first = id(&mut conn);
    conn.query_drop("BEGIN").unwrap();
    conn.query_drop(format!("INSERT INTO {table} VALUES (1)"))
        .unwrap();
    assert!(in_transaction(&mut conn));
    drop(conn);

    let mut conn = pool.get().unwrap();
    assert_eq!(id(&mut conn), first, "the connection was not reused");
    assert!(!in_transaction(&mut conn), "the transaction leaked");
    assert_eq!(
        count(&mut conn, &table),
        0,
        "the uncommitted write is visible"
    );
    assert_eq!(user.count(&table), 0);
    // COM_RESET_CONNECTION reset the session; the init ran again.
    let wait: Option<u64> = conn.query_first("SELECT @@session.wait_timeout").unwrap();
    assert_eq!(wait, Some(12345));
}

#[test]
fn guard_dropped_during_a_panic_mid_transaction_is_closed_not_reused() {
    let Some(server) = my::server("mysql g2") else {
        return;
    };
    let user = server.user(0);
    let table = user.table("items", "v int");
    let pool = Pool::builder()
        .name("my-panic")
        .pool_size(1)
        .max_overflow(0)
        .build(manager(&server, &user))
        .unwrap();
    let first = id(&mut pool.get().unwrap());
    let p = pool.clone();
    let t = table.clone();
    let panicked = catch_unwind(AssertUnwindSafe(move || {
        let mut conn = p.get().unwrap();
        conn.query_drop("BEGIN").unwrap();
        conn.query_drop(format!("INSERT INTO {t} VALUES (1)"))
            .unwrap();
        panic!("boom mid-transaction");
    }));
    assert!(panicked.is_err());
    assert_eq!(pool.stats().closed_by.panicked, 1);

    let mut conn = pool.get().unwrap();
    assert_ne!(id(&mut conn), first);
    assert!(!in_transaction(&mut conn));
    assert_eq!(count(&mut conn, &table), 0);
    assert_eq!(user.count(&table), 0);
}

#[test]
fn driver_transaction_dropped_uncommitted_rolls_back_and_the_connection_is_reused() {
    let Some(server) = my::server("mysql g3") else {
        return;
    };
    let user = server.user(0);
    let table = user.table("items", "v int");
    let pool = Pool::builder()
        .name("my-transaction")
        .pool_size(1)
        .max_overflow(0)
        .build(manager(&server, &user))
        .unwrap();
    let mut conn = pool.get().unwrap();
    let first = id(&mut conn);
    {
        let mut tx = conn.start_transaction(TxOpts::default()).unwrap();
        tx.query_drop(format!("INSERT INTO {table} VALUES (1)"))
            .unwrap();
        // Dropped without commit.
    }
    drop(conn);

    let mut conn = pool.get().unwrap();
    assert_eq!(id(&mut conn), first);
    assert!(!in_transaction(&mut conn));
    assert_eq!(count(&mut conn, &table), 0);
    assert_eq!(user.count(&table), 0);
}

// h. Known-down fast path.
fn down_pool(server: &my::Server, user: &User, fail_fast: bool) -> Pool<MysqlManager> {
    let pool = Pool::builder()
        .name("my-down")
        .pool_size(2)
        .max_overflow(0)
        .min_idle(1)
        .warm_up(WarmUp::Background)
        .fail_fast_when_down(fail_fast)
        .checkout_timeout(Duration::from_secs(60))
        .backoff_initial(Duration::from_secs(20))
        .backoff_max(Duration::from_secs(20))
        .build(manager(server, user))
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
    let Some(server) = my::server("mysql h1") else {
        return;
    };
    let user = server.user(1);
    let _only_one = Conn::new(server.opts_for(&user.name)).unwrap();
    let pool = down_pool(&server, &user, true);
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
    assert!(err.to_string().contains("max_user_connections"), "{err}");
}

#[test]
fn known_down_fast_path_is_off_by_default() {
    let Some(server) = my::server("mysql h2") else {
        return;
    };
    let user = server.user(1);
    let _only_one = Conn::new(server.opts_for(&user.name)).unwrap();
    let pool = down_pool(&server, &user, false);
    let err = pool.get_timeout(Duration::from_millis(300)).unwrap_err();
    assert!(
        err.is_timeout(),
        "expected a timeout (it waited), got {err}"
    );
}
