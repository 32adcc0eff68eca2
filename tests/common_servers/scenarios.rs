//! The failing-on-purpose scenarios of issue 4 (a-h), written once for any
//! [`TestServer`]: each function is one test's body, called by a small
//! `#[test]` in `postgres_server.rs` and `mysql_server.rs`. Each starts by
//! reaching the server under the skip rule (`test` names it in messages)
//! and uses its own throwaway account, dropped (sessions, tables and all)
//! even when an assertion fails.

use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cistern::testing::proxy::FaultProxy;
use cistern::{Builder, Error, Manager, Pool, WarmUp};

use super::backend::{Account, Conn, TestServer};
use super::{unique_name, wait_until, within};

/// The server under the skip rule (`None`: skip), with a new account on
/// it.
fn reach<S: TestServer>(test: &str) -> Option<(S, S::Account)> {
    let server = S::reach(test)?;
    let account = server.account();
    Some((server, account))
}

/// A pool builder named `<server>-<what>`, e.g. `pg-load`.
fn named<S: TestServer>(what: &str) -> Builder<S::Manager> {
    Pool::builder().name(format!("{}-{what}", S::SHORT))
}

/// [`named`], for exactly `size` connections (no overflow).
fn fixed_size<S: TestServer>(what: &str, size: usize) -> Builder<S::Manager> {
    named::<S>(what).pool_size(size).max_overflow(0)
}

/// Twenty checkouts, each running `SELECT 1`, held four at a time: the
/// first four take (and check) every idle connection of a pool of four,
/// whatever the order they are handed out in. `when` goes into the panic
/// messages (e.g. " after the cut").
fn twenty_checkouts_held_four_at_a_time<S: TestServer>(pool: &Pool<S::Manager>, when: &str) {
    let mut held = Vec::new();
    for i in 0..20 {
        let mut conn = pool
            .get()
            .unwrap_or_else(|e| panic!("checkout {i}{when} failed: {e}"));
        let one = S::select_one(&mut conn).unwrap_or_else(|e| panic!("query {i}{when}: {e}"));
        assert_eq!(one, 1);
        held.push(conn);
        if held.len() == 4 {
            held.clear();
        }
    }
}

// a. Load.

/// 16 threads × 40 queries through a pool of 4 + 4 overflow: the server
/// never shows more than 8 sessions, every result is right, and the pool
/// settles back to 4 idle connections.
pub fn load_never_opens_more_than_size_plus_overflow<S: TestServer>(test: &str) {
    let Some((server, account)) = reach::<S>(test) else {
        return;
    };
    let account = Arc::new(account);
    let pool = named::<S>("load")
        .pool_size(4)
        .max_overflow(4)
        .checkout_timeout(Duration::from_secs(30))
        .build(server.manager(&account))
        .unwrap();

    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (account, done) = (Arc::clone(&account), Arc::clone(&done));
        std::thread::spawn(move || {
            let mut max = 0;
            while !done.load(Ordering::SeqCst) {
                max = max.max(account.sessions());
                std::thread::sleep(Duration::from_millis(5));
            }
            max.max(account.sessions())
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
                    if S::doubled(&mut conn, n) != Some(n * 2) {
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
        wait_until(Duration::from_secs(20), || account.sessions() == 4),
        "after the load the server shows {} sessions, expected pool_size = 4",
        account.sessions()
    );
    let s = pool.stats();
    assert_eq!((s.open, s.idle), (4, 4), "{s:?}");
    pool.check_invariants().unwrap();
}

// b. Idle connections killed by the server.

/// Four idle connections killed by the server (pinged on every checkout):
/// twenty checkouts all succeed, and the four are closed as broken or by
/// their failed ping.
pub fn idle_connections_killed_are_replaced<S: TestServer>(test: &str) {
    let Some((server, account)) = reach::<S>(test) else {
        return;
    };
    let pool = fixed_size::<S>("killed-idle", 4)
        .min_idle(4)
        .ping_bypass(Duration::ZERO)
        .build(server.manager(&account))
        .unwrap();
    assert_eq!(account.kill_all(), 4);

    twenty_checkouts_held_four_at_a_time::<S>(&pool, "");
    let s = pool.stats();
    assert_eq!(s.closed_by.failed_ping + s.closed_by.broken, 4, "{s:?}");
}

/// Four connections returned, then killed, inside the ping bypass window:
/// `is_broken` alone must keep each from a user.
pub fn killed_connections_returned_moments_ago_are_not_handed_out<S: TestServer>(test: &str) {
    let Some((server, account)) = reach::<S>(test) else {
        return;
    };
    let builder = fixed_size::<S>("killed-bypass", 4)
        // Every checkout below falls inside the bypass window: only
        // is_broken stands between a killed connection and the user.
        .ping_bypass(Duration::from_secs(3600));
    let pool = S::for_killed_connections(builder)
        .build(server.manager(&account))
        .unwrap();
    let guards: Vec<_> = (0..4).map(|_| pool.get().unwrap()).collect();
    for g in &guards {
        assert_ne!(
            S::socket_found(g),
            Some(false),
            "the connection's socket was not found"
        );
    }
    drop(guards);
    assert_eq!(account.kill_all(), 4);

    twenty_checkouts_held_four_at_a_time::<S>(&pool, "");
    let s = pool.stats();
    assert_eq!(s.closed_by.broken, 4, "{s:?}");
}

/// Prints what `is_broken` costs on a healthy connection (20 000 calls,
/// each asserted `false`) next to a ping (200 of them). Printed, not
/// asserted: no wall-clock assertion.
pub fn print_is_broken_and_ping_cost<M: Manager>(m: &M, conn: &mut M::Connection) {
    let rounds = 20_000u32;
    let start = Instant::now();
    for _ in 0..rounds {
        assert!(!m.is_broken(conn));
    }
    let each = start.elapsed() / rounds;
    let start = Instant::now();
    for _ in 0..200 {
        m.ping(conn).unwrap();
    }
    let ping = start.elapsed() / 200;
    println!("is_broken on a healthy connection: {each:?} per call; ping: {ping:?}");
}

/// `is_broken` is false on each of `conns`, and true on each once the
/// server has killed every session of `account`.
pub fn assert_is_broken_after_kill_all<M: Manager>(
    m: &M,
    account: &impl Account,
    conns: &mut [M::Connection],
) {
    for c in conns.iter_mut() {
        assert!(!m.is_broken(c));
    }
    account.kill_all();
    for c in conns.iter_mut() {
        assert!(m.is_broken(c));
    }
}

// Per-connection init.

/// A pool whose manager `with_init` gave init SQL and an init closure:
/// `check` passes on each of three new connections.
pub fn init_runs_on_every_new_connection<S: TestServer>(
    test: &str,
    with_init: impl FnOnce(S::Manager) -> S::Manager,
    check: impl Fn(&mut Conn<S>),
) {
    let Some((server, account)) = reach::<S>(test) else {
        return;
    };
    let pool = named::<S>("init")
        .build(with_init(server.manager(&account)))
        .unwrap();
    let guards: Vec<_> = (0..3).map(|_| pool.get().unwrap()).collect();
    for mut g in guards {
        check(&mut g);
    }
}

/// A failing `init_sql`: the checkout times out with the server's error,
/// which names `expected`; no connection stays open.
pub fn failing_init_fails_the_connect<S: TestServer>(
    test: &str,
    init_sql: impl FnOnce(S::Manager) -> S::Manager,
    expected: &str,
) {
    let Some((server, account)) = reach::<S>(test) else {
        return;
    };
    let pool = named::<S>("init-fails")
        .checkout_timeout(Duration::from_millis(800))
        .build(init_sql(server.manager(&account)))
        .unwrap();
    let err = pool.get().unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(err.to_string().contains(expected), "{err}");
    let s = pool.stats();
    assert!(s.closed_by.failed_init >= 1, "{s:?}");
    assert_eq!(s.open, 0, "{s:?}");
}

// c. A connection killed while checked out.

/// The query on it fails with the driver's error, it is closed as broken
/// on return, and the next checkout gets another session.
pub fn connection_killed_while_checked_out<S: TestServer>(test: &str) {
    let Some((server, account)) = reach::<S>(test) else {
        return;
    };
    let pool = fixed_size::<S>("killed-in-use", 2)
        .build(server.manager(&account))
        .unwrap();
    let mut conn = pool.get().unwrap();
    let before = S::session_id(&mut conn);
    account.kill(&[before]);

    S::query_after_kill(&mut conn);
    drop(conn);
    assert_eq!(pool.stats().closed_by.broken, 1, "{:?}", pool.stats());

    let mut conn = pool.get().unwrap();
    assert_ne!(S::session_id(&mut conn), before);
    pool.check_invariants().unwrap();
}

// d. The server refuses connections.

/// The checkout times out with the server's message (`expected`), after
/// retries no more frequent than the backoff schedule allows.
fn refused<S: TestServer>(server: &S, user: &str, expected: &str) {
    let backoff_initial = Duration::from_millis(100);
    let backoff_max = Duration::from_millis(400);
    let pool = named::<S>("refused")
        .checkout_timeout(Duration::from_secs(2))
        .backoff_initial(backoff_initial)
        .backoff_max(backoff_max)
        .build(server.manager_for(user, Duration::from_secs(2)))
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

/// [`refused`] for an account at its connection limit.
pub fn account_at_its_limit_fails_checkout<S: TestServer>(test: &str, expected: &str) {
    let Some(server) = S::reach(test) else {
        return;
    };
    let account = server.account_at_limit();
    refused(&server, account.name(), expected);
}

/// [`refused`] for a login the server does not know.
pub fn unknown_account_fails_checkout<S: TestServer>(test: &str, expected: &str) {
    let Some(server) = S::reach(test) else {
        return;
    };
    refused(&server, &unique_name(), expected);
}

// e. Network faults through a proxy.

/// The proxy cuts all four connections, returned moments ago: each of
/// twenty checkouts still succeeds.
pub fn every_checkout_after_all_connections_are_cut_succeeds<S: TestServer>(test: &str) {
    let Some((server, account)) = reach::<S>(test) else {
        return;
    };
    let proxy = FaultProxy::start(server.target()).unwrap();
    let builder = fixed_size::<S>("cut", 4).checkout_timeout(Duration::from_secs(10));
    let pool = S::for_killed_connections(builder)
        .build(server.proxied(&account, &proxy))
        .unwrap();
    let guards: Vec<_> = (0..4).map(|_| pool.get().unwrap()).collect();
    drop(guards);
    assert_eq!(proxy.cut_all(), 4);

    twenty_checkouts_held_four_at_a_time::<S>(&pool, " after the cut");
    let s = pool.stats();
    assert_eq!(s.closed_by.broken + s.closed_by.failed_ping, 4, "{s:?}");
}

/// New connections blackholed: four checkouts time out (none hangs); once
/// healed, the pool serves again.
pub fn blackholed_new_connections_time_out_and_recover<S: TestServer>(test: &str) {
    let Some((server, account)) = reach::<S>(test) else {
        return;
    };
    let proxy = FaultProxy::start(server.target()).unwrap();
    let checkout = Duration::from_millis(800);
    let pool = fixed_size::<S>("blackhole-new", 2)
        .checkout_timeout(checkout)
        .connect_timeout(Duration::from_secs(1))
        .backoff_initial(Duration::from_millis(100))
        .backoff_max(Duration::from_millis(300))
        .build(server.proxied(&account, &proxy))
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
    let p = pool.clone();
    let mut conn = within(watchdog, "get() after heal", move || {
        p.get_timeout(Duration::from_secs(10))
    })
    .expect("the pool serves again once the proxy heals");
    S::select_one(&mut conn).unwrap();
}

/// Established connections blackholed, one of them mid-query: the idle
/// one fails its ping, a new connection gets through, and after heal the
/// stalled query completes and the pool serves.
pub fn blackholed_established_connections_fail_their_ping_and_recover<S: TestServer>(test: &str) {
    let Some((server, account)) = reach::<S>(test) else {
        return;
    };
    let proxy = FaultProxy::start(server.target()).unwrap();
    let checkout = Duration::from_secs(2);
    let pool = named::<S>("blackhole-established")
        .pool_size(2)
        .max_overflow(1)
        .checkout_timeout(checkout)
        .ping_bypass(Duration::ZERO)
        .backoff_initial(Duration::from_millis(100))
        .backoff_max(Duration::from_millis(300))
        .build(server.proxied(&account, &proxy))
        .unwrap();
    let guards: Vec<_> = (0..2).map(|_| pool.get().unwrap()).collect();
    drop(guards);
    // A query in flight when the network stalls.
    let mut busy = pool.get().unwrap();
    let in_flight = std::thread::spawn(move || {
        let r = S::sleep_300ms(&mut busy);
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
    S::select_one(&mut conn).unwrap();
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
    S::select_one(&mut conn).unwrap();
}

/// Eight stalled idle connections: a checkout stops pinging them at its
/// deadline.
pub fn a_checkout_stops_pinging_stalled_connections_at_its_deadline<S: TestServer>(test: &str) {
    let Some((server, account)) = reach::<S>(test) else {
        return;
    };
    let proxy = FaultProxy::start(server.target()).unwrap();
    let checkout = Duration::from_secs(1);
    let pool = fixed_size::<S>("stalled-idle", 8)
        .checkout_timeout(checkout)
        .ping_bypass(Duration::ZERO)
        .build(server.proxied(&account, &proxy))
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
    assert!(pings >= 1, "the stalled idle connections were never pinged");
    assert!(
        pings <= 1 + 1000 / 300,
        "the checkout went on pinging past its deadline: {pings} pings"
    );
    proxy.heal();
}

// f. Short recycle_after.

/// Three busy threads on a pool of two with `recycle_after` 200 ms: the
/// server sessions change, no query fails, at least four are recycled.
pub fn short_recycle_after_replaces_sessions<S: TestServer>(test: &str) {
    let Some((server, account)) = reach::<S>(test) else {
        return;
    };
    let pool = fixed_size::<S>("recycle", 2)
        .recycle_after(Duration::from_millis(200))
        .build(server.manager(&account))
        .unwrap();
    let ids = Arc::new(Mutex::new(HashSet::new()));
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
                    match S::session_id_after_30ms(&mut conn) {
                        Ok(id) => {
                            ids.lock().unwrap().insert(id);
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
    let changed = wait_until(Duration::from_secs(30), || ids.lock().unwrap().len() >= 6);
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.join().unwrap();
    }
    assert!(
        changed,
        "server sessions did not change: {:?}",
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

/// Changes a manager's settings (e.g. turns on a reset on return).
pub type Configure<S> = fn(<S as TestServer>::Manager) -> <S as TestServer>::Manager;

/// A pool of one whose manager each of `resets` configures (its label
/// first): a raw `BEGIN` and insert left open on a returned connection
/// are rolled back, the connection is reused, and `init_survived` passes
/// on it (given the label).
pub fn reset_on_return_rolls_back_a_raw_begin<S: TestServer>(
    test: &str,
    resets: &[(&str, Configure<S>)],
    init_survived: impl Fn(&mut Conn<S>, &str),
) {
    let Some((server, account)) = reach::<S>(test) else {
        return;
    };
    let table = account.table("items", "v int");
    for (reset, configure) in resets {
        let pool = fixed_size::<S>("reset", 1)
            .build(configure(server.manager(&account)))
            .unwrap();
        let mut conn = pool.get().unwrap();
        let first = S::session_id(&mut conn);
        S::begin_and_insert(&mut conn, &table);
        assert!(S::in_transaction(&mut conn), "{reset}: no transaction open");
        drop(conn);

        let mut conn = pool.get().unwrap();
        assert_eq!(
            S::session_id(&mut conn),
            first,
            "{reset}: the connection was not reused"
        );
        assert!(
            !S::in_transaction(&mut conn),
            "{reset}: the transaction leaked"
        );
        assert_eq!(
            S::count(&mut conn, &table),
            0,
            "{reset}: the uncommitted write is visible"
        );
        assert_eq!(account.count(&table), 0);
        init_survived(&mut conn, reset);
    }
}

/// A guard dropped by a panic mid-transaction is closed, not reused, and
/// its write is gone.
pub fn guard_dropped_during_a_panic_mid_transaction_is_closed<S: TestServer>(test: &str) {
    let Some((server, account)) = reach::<S>(test) else {
        return;
    };
    let table = account.table("items", "v int");
    let pool = fixed_size::<S>("panic", 1)
        .build(server.manager(&account))
        .unwrap();
    let first = S::session_id(&mut pool.get().unwrap());
    let p = pool.clone();
    let t = table.clone();
    let panicked = catch_unwind(AssertUnwindSafe(move || {
        let mut conn = p.get().unwrap();
        S::begin_and_insert(&mut conn, &t);
        panic!("boom mid-transaction");
    }));
    assert!(panicked.is_err());
    assert_eq!(pool.stats().closed_by.panicked, 1);

    let mut conn = pool.get().unwrap();
    assert_ne!(S::session_id(&mut conn), first);
    assert!(!S::in_transaction(&mut conn));
    assert_eq!(S::count(&mut conn, &table), 0);
    assert_eq!(account.count(&table), 0);
}

/// The driver's transaction dropped without commit rolls back; the
/// connection is reused with no transaction open.
pub fn driver_transaction_dropped_uncommitted_rolls_back<S: TestServer>(test: &str) {
    let Some((server, account)) = reach::<S>(test) else {
        return;
    };
    let table = account.table("items", "v int");
    let pool = fixed_size::<S>("transaction", 1)
        .build(server.manager(&account))
        .unwrap();
    let mut conn = pool.get().unwrap();
    let first = S::session_id(&mut conn);
    S::insert_in_dropped_transaction(&mut conn, &table);
    drop(conn);

    let mut conn = pool.get().unwrap();
    assert_eq!(S::session_id(&mut conn), first);
    assert!(!S::in_transaction(&mut conn));
    assert_eq!(S::count(&mut conn, &table), 0);
    assert_eq!(account.count(&table), 0);
}

// h. Known-down fast path.

/// A pool for an account at its limit, once its first connect failed.
fn down_pool<S: TestServer>(server: &S, account: &S::Account, fail_fast: bool) -> Pool<S::Manager> {
    let pool = fixed_size::<S>("down", 2)
        .min_idle(1)
        .warm_up(WarmUp::Background)
        .fail_fast_when_down(fail_fast)
        .checkout_timeout(Duration::from_secs(60))
        // Long backoff: no attempt is in flight while the test asks.
        .backoff_initial(Duration::from_secs(20))
        .backoff_max(Duration::from_secs(20))
        .build(server.manager(account))
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

/// With `fail_fast_when_down`, a checkout fails at once with the last
/// connect error, which names `expected`.
pub fn known_down_fast_path_fails_at_once<S: TestServer>(test: &str, expected: &str) {
    let Some(server) = S::reach(test) else {
        return;
    };
    let account = server.account_at_limit();
    let pool = down_pool(&server, &account, true);
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
    assert!(err.to_string().contains(expected), "{err}");
}

/// Without `fail_fast_when_down`, a checkout waits (and times out).
pub fn known_down_fast_path_is_off_by_default<S: TestServer>(test: &str) {
    let Some(server) = S::reach(test) else {
        return;
    };
    let account = server.account_at_limit();
    let pool = down_pool(&server, &account, false);
    let err = pool.get_timeout(Duration::from_millis(300)).unwrap_err();
    assert!(
        err.is_timeout(),
        "expected a timeout (it waited), got {err}"
    );
}
