//! The PostgreSQL adapter against the real server, failing on purpose:
//! load, sessions killed idle and in use, connects refused, network faults
//! through a proxy, recycling, transactions left open, and the known-down
//! fast path (issue 4, scenarios a-h).
//!
//! The scenarios shared with MariaDB live in `common_servers::scenarios`;
//! each test here runs one of them against PostgreSQL, with its own role
//! (`cistern_t_<random>`), so counting and killing sessions never touches
//! a test running beside it.

#![cfg(feature = "postgres")]

mod common_servers;

use std::sync::Arc;
use std::time::Instant;

use cistern::Manager;
use cistern::postgres::{PostgresManager, Reset};
use common_servers::backend::{Account, TestServer};
use common_servers::pg::Server;
use common_servers::scenarios;

// a. Load.
#[test]
fn load_of_16_threads_never_opens_more_than_size_plus_overflow_on_the_server() {
    scenarios::load_never_opens_more_than_size_plus_overflow::<Server>("postgres a");
}

// b. Idle connections killed by the server.
#[test]
fn idle_connections_killed_by_the_server_are_replaced_without_errors() {
    scenarios::idle_connections_killed_are_replaced::<Server>("postgres b");
}

#[test]
fn killed_connections_returned_moments_ago_are_not_handed_out() {
    scenarios::killed_connections_returned_moments_ago_are_not_handed_out::<Server>("postgres b2");
}

#[test]
fn is_broken_notices_a_server_side_kill_without_a_round_trip() {
    let Some(server) = Server::reach("postgres is_broken") else {
        return;
    };
    let role = server.account();
    let m = server.manager(&role);
    let mut conn = m.connect().unwrap();
    assert!(conn.has_socket_probe());
    assert!(!conn.is_closed());
    scenarios::print_is_broken_and_ping_cost(&m, &mut conn);

    // What finding the socket adds to a connect (printed, not asserted).
    let connects = |m: &PostgresManager| {
        let start = Instant::now();
        for _ in 0..20 {
            drop(m.connect().unwrap());
        }
        start.elapsed() / 20
    };
    let with_probe = connects(&m);
    let without = connects(&server.manager(&role).socket_probe(false));
    println!("connect with socket discovery: {with_probe:?}; without: {without:?}");

    role.kill_all();
    // The driver has not noticed: only the peek can tell.
    assert!(!conn.is_closed());
    assert!(m.is_broken(&mut conn));
}

#[test]
fn unix_socket_connections_find_their_socket() {
    let Some(server) = Server::reach("postgres unix") else {
        return;
    };
    let dir = std::path::Path::new("/var/run/postgresql");
    let port = server.port();
    if !dir.join(format!(".s.PGSQL.{port}")).exists() {
        let why = format!("no server socket in {}", dir.display());
        common_servers::skip_outside_ci("postgres unix", &why);
        return;
    }
    let role = server.account();
    let mut config = cistern::postgres::Config::new();
    config
        .host_path(dir)
        .port(port)
        .user(&role.name)
        .dbname(&server.dbname());
    // Several connects at once: the manager takes turns to tell them apart.
    let m = Arc::new(PostgresManager::from_config(config));
    let mut conns: Vec<_> = (0..3)
        .map(|_| {
            let m = Arc::clone(&m);
            std::thread::spawn(move || m.connect().unwrap())
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    for c in &conns {
        assert!(c.has_socket_probe());
    }
    scenarios::assert_is_broken_after_kill_all(&*m, &role, &mut conns);
}

// Per-connection init.
#[test]
fn init_sql_and_closure_run_on_every_new_connection() {
    scenarios::init_runs_on_every_new_connection::<Server>(
        "postgres init",
        |m| {
            m.init_sql("SET application_name = 'cistern-init'")
                .init_with(|c| c.batch_execute("SET statement_timeout = '7s'"))
        },
        |g| {
            let row = g
                .query_one(
                    "SELECT current_setting('application_name'), current_setting('statement_timeout')",
                    &[],
                )
                .unwrap();
            assert_eq!(row.get::<_, String>(0), "cistern-init");
            assert_eq!(row.get::<_, String>(1), "7s");
        },
    );
}

#[test]
fn failing_init_fails_the_connect_with_its_error_and_nothing_reaches_a_user() {
    scenarios::failing_init_fails_the_connect::<Server>(
        "postgres init fails",
        |m| m.init_sql("SET no_such_setting_anywhere = 1"),
        "no_such_setting_anywhere",
    );
}

// c. A connection killed while checked out.
#[test]
fn connection_killed_while_checked_out_fails_the_query_and_is_closed_on_return() {
    scenarios::connection_killed_while_checked_out::<Server>("postgres c");
}

// d. The server refuses connections.
#[test]
fn role_at_its_connection_limit_fails_checkout_with_the_server_message() {
    scenarios::account_at_its_limit_fails_checkout::<Server>(
        "postgres d1",
        "too many connections for role",
    );
}

#[test]
fn unknown_role_fails_checkout_with_the_server_message() {
    scenarios::unknown_account_fails_checkout::<Server>("postgres d2", "does not exist");
}

// e. Network faults through a proxy.
#[test]
fn every_checkout_after_all_connections_are_cut_succeeds() {
    scenarios::every_checkout_after_all_connections_are_cut_succeeds::<Server>("postgres e1");
}

#[test]
fn blackholed_new_connections_time_out_checkouts_and_the_pool_recovers_after_heal() {
    scenarios::blackholed_new_connections_time_out_and_recover::<Server>("postgres e2");
}

#[test]
fn blackholed_established_connections_fail_their_ping_and_recover_after_heal() {
    scenarios::blackholed_established_connections_fail_their_ping_and_recover::<Server>(
        "postgres e3",
    );
}

#[test]
fn a_checkout_stops_pinging_stalled_connections_at_its_deadline() {
    scenarios::a_checkout_stops_pinging_stalled_connections_at_its_deadline::<Server>(
        "postgres e4",
    );
}

// f. Short recycle_after.
#[test]
fn short_recycle_after_replaces_backends_and_never_closes_a_busy_connection() {
    scenarios::short_recycle_after_replaces_sessions::<Server>("postgres f");
}

// g. Transactions.
#[test]
fn reset_on_return_rolls_back_a_raw_begin_left_open() {
    // The init's session setting survives the reset (DISCARD ALL runs the
    // init again).
    fn with(m: PostgresManager, reset: Reset) -> PostgresManager {
        m.init_sql("SET statement_timeout = '12s'")
            .reset_on_return(reset)
    }
    scenarios::reset_on_return_rolls_back_a_raw_begin::<Server>(
        "postgres g1",
        &[
            ("Rollback", |m| with(m, Reset::Rollback)),
            ("DiscardAll", |m| with(m, Reset::DiscardAll)),
        ],
        |conn, reset| {
            let timeout: String = conn
                .query_one("SHOW statement_timeout", &[])
                .unwrap()
                .get(0);
            assert_eq!(timeout, "12s", "{reset}");
        },
    );
}

#[test]
fn guard_dropped_during_a_panic_mid_transaction_is_closed_not_reused() {
    scenarios::guard_dropped_during_a_panic_mid_transaction_is_closed::<Server>("postgres g2");
}

#[test]
fn driver_transaction_dropped_uncommitted_rolls_back_and_the_connection_is_reused() {
    scenarios::driver_transaction_dropped_uncommitted_rolls_back::<Server>("postgres g3");
}

// h. Known-down fast path.
#[test]
fn known_down_fast_path_fails_at_once_with_the_last_connect_error() {
    scenarios::known_down_fast_path_fails_at_once::<Server>("postgres h1", "too many connections");
}

#[test]
fn known_down_fast_path_is_off_by_default() {
    scenarios::known_down_fast_path_is_off_by_default::<Server>("postgres h2");
}
