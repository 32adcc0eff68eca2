//! What the shared [`scenarios`](super::scenarios) need from a server: a
//! [`TestServer`] (reaching it, throwaway accounts, managers, the queries
//! the scenarios run, in the server's SQL) and an [`Account`] on it.

use std::fmt::Debug;
use std::hash::Hash;
use std::net::SocketAddr;
use std::time::Duration;

use cistern::testing::proxy::FaultProxy;
use cistern::{Builder, Manager};

use super::wait_until;

/// The driver's connection of `S`'s manager (what a pooled guard derefs
/// to).
pub type Conn<S> = <<S as TestServer>::Manager as Manager>::Connection;

/// The id of a server session of `S`.
pub type SessionId<S> = <<S as TestServer>::Account as Account>::Id;

/// A throwaway login (a PostgreSQL role, a MariaDB user) of its own, so
/// that counting and killing its sessions touches no other test. Dropping
/// it ends its sessions and drops it with its tables, even when the test
/// failed.
pub trait Account: Send + Sync + 'static {
    /// The server's id of a session (backend pid, connection id).
    type Id: Copy + Eq + Hash + Debug + Send + 'static;

    /// The login name.
    fn name(&self) -> &str;

    /// Ids of this account's sessions on the server now.
    fn session_ids(&self) -> Vec<Self::Id>;

    /// Asks the server to end these sessions, without waiting.
    fn terminate(&self, ids: &[Self::Id]);

    /// Creates `<name>_<suffix>` as the administrator, usable by this
    /// account, and returns its name (dropped with the account).
    fn table(&self, suffix: &str, columns: &str) -> String;

    /// Rows in `table`, as the administrator sees them (committed only).
    fn count(&self, table: &str) -> i64;

    /// Server sessions of this account now.
    fn sessions(&self) -> usize {
        self.session_ids().len()
    }

    /// Ends these sessions and waits until the server no longer shows them.
    fn kill(&self, ids: &[Self::Id]) {
        self.terminate(ids);
        let gone = wait_until(Duration::from_secs(20), || {
            let alive = self.session_ids();
            ids.iter().all(|i| !alive.contains(i))
        });
        assert!(gone, "the server still shows killed sessions {ids:?}");
    }

    /// Ends every session of this account and waits until they are gone;
    /// returns how many there were.
    fn kill_all(&self) -> usize {
        let ids = self.session_ids();
        self.kill(&ids);
        ids.len()
    }
}

/// A real server under test, reached as its administrator.
pub trait TestServer: Sized + 'static {
    /// The cistern manager for this server.
    type Manager: Manager + Debug;
    /// A throwaway login on it.
    type Account: Account;

    /// Prefix of the pool names (`pg`, `my`).
    const SHORT: &'static str;

    /// The server, or `None` (skip) per the skip rule; `test` names the
    /// test in the messages.
    fn reach(test: &str) -> Option<Self>;

    /// A new account without a connection limit.
    fn account(&self) -> Self::Account;

    /// A new account the server refuses any further connection to (at
    /// its connection limit).
    fn account_at_limit(&self) -> Self::Account;

    /// A manager connecting as `account`, with 500 ms pings.
    fn manager(&self, account: &Self::Account) -> Self::Manager;

    /// A manager connecting as `user` (which may not exist), with defaults
    /// but for a `connect_timeout`.
    fn manager_for(&self, user: &str, connect_timeout: Duration) -> Self::Manager;

    /// A manager connecting as `account` through `proxy`, with 300 ms pings
    /// and 1 s connects.
    fn proxied(&self, account: &Self::Account, proxy: &FaultProxy) -> Self::Manager;

    /// The server's TCP address on loopback, for a proxy in front of it.
    fn target(&self) -> SocketAddr;

    /// Settings that the tests killing or cutting connections need with
    /// this manager. Default: none.
    fn for_killed_connections(builder: Builder<Self::Manager>) -> Builder<Self::Manager> {
        builder
    }

    /// Whether the manager found this connection's socket to peek at;
    /// `None` where it needs no finding.
    fn socket_found(conn: &Conn<Self>) -> Option<bool> {
        let _ = conn;
        None
    }

    /// The server's id of this connection's session.
    fn session_id(conn: &mut Conn<Self>) -> SessionId<Self>;

    /// `SELECT 1`.
    fn select_one(conn: &mut Conn<Self>) -> Result<i64, String>;

    /// `n * 2` computed by the server, after a 1 ms sleep there.
    fn doubled(conn: &mut Conn<Self>, n: i64) -> Option<i64>;

    /// A query that sleeps 300 ms on the server.
    fn sleep_300ms(conn: &mut Conn<Self>) -> Result<(), String>;

    /// The session's id, after a 30 ms sleep on the server.
    fn session_id_after_30ms(conn: &mut Conn<Self>) -> Result<SessionId<Self>, String>;

    /// Runs a raw `BEGIN` and inserts a row into `table`, leaving the
    /// transaction open.
    fn begin_and_insert(conn: &mut Conn<Self>, table: &str);

    /// Inserts a row into `table` in the driver's transaction, dropped
    /// without commit.
    fn insert_in_dropped_transaction(conn: &mut Conn<Self>, table: &str);

    /// Whether a transaction is open on this connection.
    fn in_transaction(conn: &mut Conn<Self>) -> bool;

    /// Rows in `table` as this connection sees them.
    fn count(conn: &mut Conn<Self>, table: &str) -> i64;

    /// Runs a query on a connection whose session the server killed, and
    /// checks the driver's error.
    fn query_after_kill(conn: &mut Conn<Self>);
}
