//! The MySQL / MariaDB adapter against the real server, failing on
//! purpose: load, sessions killed idle and in use, connects refused,
//! network faults through a proxy, recycling, transactions left open, and
//! the known-down fast path (issue 4, scenarios a-h).
//!
//! The scenarios shared with PostgreSQL live in `common_servers::scenarios`;
//! each test here runs one of them against MariaDB, with its own user
//! (`cistern_t_<random>`), so counting and killing sessions never touches
//! a test running beside it.

#![cfg(feature = "mysql")]

mod common_servers;

use cistern::Manager;
use cistern::mysql::MysqlManager;
use cistern::mysql::mysql::prelude::Queryable;
use common_servers::backend::TestServer;
use common_servers::my::Server;
use common_servers::scenarios;

// a. Load.
#[test]
fn load_of_16_threads_never_opens_more_than_size_plus_overflow_on_the_server() {
    scenarios::load_never_opens_more_than_size_plus_overflow::<Server>("mysql a");
}

// b. Idle connections killed by the server.
#[test]
fn idle_connections_killed_by_the_server_are_replaced_without_errors() {
    scenarios::idle_connections_killed_are_replaced::<Server>("mysql b");
}

#[test]
fn killed_connections_returned_moments_ago_are_not_handed_out() {
    scenarios::killed_connections_returned_moments_ago_are_not_handed_out::<Server>("mysql b2");
}

#[test]
fn is_broken_notices_a_server_side_kill_without_a_round_trip() {
    let Some(server) = Server::reach("mysql is_broken") else {
        return;
    };
    let user = server.account();
    let m = server.manager(&user);
    let mut conn = m.connect().unwrap();
    scenarios::print_is_broken_and_ping_cost(&m, &mut conn);
    scenarios::assert_is_broken_after_kill_all(&m, &user, std::slice::from_mut(&mut conn));
}

#[test]
fn unix_socket_connections_are_checked_by_peeking_too() {
    let Some(server) = Server::reach("mysql unix") else {
        return;
    };
    let path = "/run/mysqld/mysqld.sock";
    if !std::path::Path::new(path).exists() {
        common_servers::skip_outside_ci("mysql unix", &format!("no server socket at {path}"));
        return;
    }
    let user = server.account();
    let m = MysqlManager::from_opts(server.opts_for(&user.name).socket(Some(path)));
    let mut conn = m.connect().unwrap();
    scenarios::assert_is_broken_after_kill_all(&m, &user, std::slice::from_mut(&mut conn));
}

// Per-connection init.
#[test]
fn init_sql_and_closure_run_on_every_new_connection() {
    scenarios::init_runs_on_every_new_connection::<Server>(
        "mysql init",
        |m| {
            m.init_sql("SET @cistern_init = 'yes'")
                .init_with(|c| c.query_drop("SET SESSION wait_timeout = 4321"))
        },
        |g| {
            let row: Option<(String, u64)> = g
                .query_first("SELECT @cistern_init, @@session.wait_timeout")
                .unwrap();
            assert_eq!(row, Some(("yes".to_owned(), 4321)));
        },
    );
}

#[test]
fn failing_init_fails_the_connect_with_its_error_and_nothing_reaches_a_user() {
    scenarios::failing_init_fails_the_connect::<Server>(
        "mysql init fails",
        |m| m.init_sql("SET SESSION no_such_variable_anywhere = 1"),
        "no_such_variable_anywhere",
    );
}

// c. A connection killed while checked out.
#[test]
fn connection_killed_while_checked_out_fails_the_query_and_is_closed_on_return() {
    scenarios::connection_killed_while_checked_out::<Server>("mysql c");
}

// d. The server refuses connections.
#[test]
fn user_at_its_connection_limit_fails_checkout_with_the_server_message() {
    scenarios::account_at_its_limit_fails_checkout::<Server>("mysql d1", "max_user_connections");
}

#[test]
fn unknown_user_fails_checkout_with_the_server_message() {
    scenarios::unknown_account_fails_checkout::<Server>("mysql d2", "Access denied");
}

// e. Network faults through a proxy.
#[test]
fn every_checkout_after_all_connections_are_cut_succeeds() {
    scenarios::every_checkout_after_all_connections_are_cut_succeeds::<Server>("mysql e1");
}

#[test]
fn blackholed_new_connections_time_out_checkouts_and_the_pool_recovers_after_heal() {
    scenarios::blackholed_new_connections_time_out_and_recover::<Server>("mysql e2");
}

#[test]
fn blackholed_established_connections_fail_their_ping_and_recover_after_heal() {
    scenarios::blackholed_established_connections_fail_their_ping_and_recover::<Server>("mysql e3");
}

#[test]
fn a_checkout_stops_pinging_stalled_connections_at_its_deadline() {
    scenarios::a_checkout_stops_pinging_stalled_connections_at_its_deadline::<Server>("mysql e4");
}

// f. Short recycle_after.
#[test]
fn short_recycle_after_replaces_sessions_and_never_closes_a_busy_connection() {
    scenarios::short_recycle_after_replaces_sessions::<Server>("mysql f");
}

// g. Transactions.
#[test]
fn reset_on_return_rolls_back_a_raw_begin_left_open() {
    scenarios::reset_on_return_rolls_back_a_raw_begin::<Server>(
        "mysql g1",
        &[("reset_on_return(true)", |m| {
            m.init_sql("SET SESSION wait_timeout = 12345")
                .reset_on_return(true)
        })],
        |conn, reset| {
            // COM_RESET_CONNECTION reset the session; the init ran again.
            let wait: Option<u64> = conn.query_first("SELECT @@session.wait_timeout").unwrap();
            assert_eq!(wait, Some(12345), "{reset}");
        },
    );
}

#[test]
fn guard_dropped_during_a_panic_mid_transaction_is_closed_not_reused() {
    scenarios::guard_dropped_during_a_panic_mid_transaction_is_closed::<Server>("mysql g2");
}

#[test]
fn driver_transaction_dropped_uncommitted_rolls_back_and_the_connection_is_reused() {
    scenarios::driver_transaction_dropped_uncommitted_rolls_back::<Server>("mysql g3");
}

// h. Known-down fast path.
#[test]
fn known_down_fast_path_fails_at_once_with_the_last_connect_error() {
    scenarios::known_down_fast_path_fails_at_once::<Server>("mysql h1", "max_user_connections");
}

#[test]
fn known_down_fast_path_is_off_by_default() {
    scenarios::known_down_fast_path_is_off_by_default::<Server>("mysql h2");
}
