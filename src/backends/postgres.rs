//! PostgreSQL through the blocking [`postgres`] client (feature `postgres`).
//!
//! ```no_run
//! use std::time::Duration;
//! use cistern::{Pool, postgres::{PostgresManager, Reset}};
//!
//! let manager = PostgresManager::new("postgres://app@127.0.0.1:5432/app")?
//!     .init_sql("SET statement_timeout = '30s'")
//!     .reset_on_return(Reset::Rollback);
//! let pool = Pool::builder().pool_size(8).max_overflow(8).build(manager)?;
//! let mut conn = pool.get()?; // derefs to postgres::Client
//! let row = conn.query_one("SELECT $1::int + 1", &[&41]).unwrap();
//! assert_eq!(row.get::<_, i32>(0), 42);
//! # Ok::<(), cistern::Error>(())
//! ```
//!
//! ## Every blocking step has a deadline
//!
//! | step | bounded by | default |
//! |---|---|---|
//! | TCP connect | [`PostgresManager::connect_timeout`] | 10 s |
//! | start-up handshake | not bounded by the driver: the pool gives the attempt up at its `connect_timeout` (late result discarded); TCP_USER_TIMEOUT ends it in a real network blackhole | - |
//! | pre-ping | [`PostgresManager::ping_timeout`] (`Client::is_valid`) | 5 s |
//! | a query of yours, a reset on return | TCP keepalive and TCP_USER_TIMEOUT end it when the network drops packets | keepalive after 30 s idle, every 10 s, 3 probes; TCP_USER_TIMEOUT 30 s |
//!
//! Defaults only fill what the URL or [`postgres::Config`] left unset.
//!
//! ## `is_broken`: no round trip
//!
//! The blocking client reads its socket only during calls, so
//! `Client::is_closed()` stays `false` after the server killed the session.
//! At connect the manager finds the client's socket (see `socket.rs`: the new
//! socket to the configured server, told apart by the server's
//! `inet_client_port()` when several qualify) and keeps its own duplicate of
//! it; `is_broken` then asks `is_closed()` and peeks at the socket without
//! reading or waiting (one `recv(MSG_PEEK | MSG_DONTWAIT)`, 0.6 µs measured):
//! end of file means broken, unexpected bytes (the server's goodbye, a
//! notification) mean "do the real ping". A socket that merely stopped
//! answering (a silent blackhole) looks healthy to a peek: only a ping
//! notices it.
//!
//! Connections whose socket was not found (not Linux, several candidates
//! left, `pidfd_getfd` refused) rely on `is_closed()` and the pre-ping.
//! Over Unix sockets there is no client port to tell connections apart, so
//! the manager runs its Unix-socket connects one at a time (waiting at most
//! 2 s, or the connect timeout if shorter, for its turn, then connecting
//! without a probe).

mod socket;

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub use postgres;
use postgres::config::Host;
use postgres::error::SqlState;
use postgres::tls::{MakeTlsConnect, TlsConnect};
pub use postgres::{Client, Config, NoTls};
use postgres::{Error, Socket};

use crate::backends::net_defaults;

use self::socket::{Expected, SocketProbe};
use crate::backends::init::Init;
use crate::backends::peek::Peek;
use crate::backends::redact;

/// tokio-postgres's own keepalive idle default: "not set by the user".
const DRIVER_KEEPALIVE_IDLE: Duration = Duration::from_secs(2 * 60 * 60);
/// Longest wait for another connect of this manager to finish before
/// connecting without a socket probe (or the connect timeout if shorter).
const PROBE_TURN_WAIT: Duration = Duration::from_secs(2);

/// How a connection is reset when it is returned (see
/// [`PostgresManager::reset_on_return`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reset {
    /// `ROLLBACK`: ends a transaction left open; session settings, prepared
    /// statements and temporary tables stay. One round trip per return. The
    /// server answers a WARNING when no transaction was open; managers built
    /// by [`PostgresManager::new`] drop that one notice instead of logging
    /// it.
    Rollback,
    /// `DISCARD ALL` (after a `ROLLBACK` when a transaction was open): the
    /// next user gets a session as fresh as a new one: settings, prepared
    /// statements (invalidating `Statement`s you kept), temporary tables,
    /// advisory locks, `LISTEN`s all go. The manager's init SQL and closure
    /// run again afterwards. One round trip per return, plus the init.
    DiscardAll,
}

/// A [`Manager`](crate::Manager) for PostgreSQL over the blocking `postgres`
/// client. `T` is the TLS connector ([`NoTls`] by default; any
/// `MakeTlsConnect`, e.g. `postgres-native-tls` or `postgres-openssl`, with
/// [`PostgresManager::with_tls`]).
///
/// Its `Debug` output never shows the password.
pub struct PostgresManager<T = NoTls> {
    config: Config,
    tls: T,
    ping_timeout: Duration,
    reset: Option<Reset>,
    init: Init<Client, Error>,
    socket_probe: bool,
    /// Held by a connect while it tells its new socket from others'. Taken
    /// for every connect once two connects could not be told apart (and
    /// always over Unix sockets); never held longer than one connect.
    probe_turn: parking_lot::Mutex<()>,
    /// Set once connects are known to need `probe_turn` (a proxy in front
    /// of the server hides the client port).
    serialize_probes: AtomicBool,
}

impl PostgresManager<NoTls> {
    /// A manager for a `postgres://user:password@host:port/db?options` URL
    /// or a `host=... user=... dbname=...` string (Unix sockets: a host
    /// that is a directory, e.g. `host=/var/run/postgresql`, or
    /// `postgres://user@%2Fvar%2Frun%2Fpostgresql/db`).
    ///
    /// Fails with [`crate::Error::Config`] (the string shown with its
    /// password masked) when it cannot be parsed or names no host.
    pub fn new(url: &str) -> Result<PostgresManager<NoTls>, crate::Error> {
        let mut config: Config = url.parse().map_err(|e: Error| {
            let why = redact::scrub(&e.to_string(), redact::userinfo_password(url));
            crate::Error::config(
                "postgres connection string",
                redact::redact(url),
                format!("a postgres:// URL or a key=value string ({why})"),
            )
        })?;
        config.notice_callback(|notice| {
            if notice.code() != &SqlState::NO_ACTIVE_SQL_TRANSACTION {
                log::info!("postgres {}: {}", notice.severity(), notice.message());
            }
        });
        if config.get_hosts().is_empty() && config.get_hostaddrs().is_empty() {
            return Err(crate::Error::config(
                "postgres connection string",
                redact::redact(url),
                "a host (host=..., hostaddr=... or postgres://host/...)",
            ));
        }
        // `host= password=x` parses (as libpq does) to the host name
        // "password=x": refuse it rather than carry a password as a host
        // name into Debug output and connect errors.
        let odd_host = config.get_hosts().iter().any(|h| match h {
            Host::Tcp(name) => odd_host_name(name),
            _ => false,
        });
        if odd_host {
            return Err(crate::Error::config(
                "postgres connection string",
                redact::redact(url),
                "host names without '=' or spaces (a `key= value` pair with a space after '=' \
                 makes the next pair the value)",
            ));
        }
        Ok(PostgresManager::from_config(config))
    }

    /// A manager for a [`postgres::Config`] (its password is never shown).
    /// Timeouts and keepalive it leaves unset get the defaults in the
    /// module docs.
    pub fn from_config(config: Config) -> PostgresManager<NoTls> {
        let mut config = config;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(net_defaults::CONNECT_TIMEOUT);
        }
        if config.get_keepalives() {
            if config.get_keepalives_idle() == DRIVER_KEEPALIVE_IDLE {
                config.keepalives_idle(net_defaults::KEEPALIVE_IDLE);
            }
            if config.get_keepalives_interval().is_none() {
                config.keepalives_interval(net_defaults::KEEPALIVE_INTERVAL);
            }
            if config.get_keepalives_retries().is_none() {
                config.keepalives_retries(net_defaults::KEEPALIVE_RETRIES);
            }
        }
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(net_defaults::TCP_USER_TIMEOUT);
        }
        PostgresManager {
            config,
            tls: NoTls,
            ping_timeout: net_defaults::PING_TIMEOUT,
            reset: None,
            init: Init::new(),
            socket_probe: true,
            probe_turn: parking_lot::Mutex::new(()),
            serialize_probes: AtomicBool::new(false),
        }
    }
}

impl<T> PostgresManager<T> {
    /// Connects through `tls` (any `MakeTlsConnect<Socket>` that is
    /// `Clone`); whether TLS is required is the config's `sslmode`.
    pub fn with_tls<U>(self, tls: U) -> PostgresManager<U> {
        PostgresManager {
            config: self.config,
            tls,
            ping_timeout: self.ping_timeout,
            reset: self.reset,
            init: self.init,
            socket_probe: self.socket_probe,
            probe_turn: self.probe_turn,
            serialize_probes: self.serialize_probes,
        }
    }

    /// The driver's configuration (password included: do not log it; its
    /// own `Debug` masks it).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Limit on the TCP (or Unix-socket) connect, per host. Default 10 s.
    /// The start-up handshake after it is not covered by the driver: the
    /// pool abandons an attempt at its own `connect_timeout`.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout(timeout);
        self
    }

    /// Limit on a pre-ping (`Client::is_valid`). A ping that times out
    /// closes the connection. Default 5 s. This is the margin by which a
    /// `get()` may overrun its checkout timeout when the network blackholes
    /// an established connection.
    pub fn ping_timeout(mut self, timeout: Duration) -> Self {
        self.ping_timeout = timeout;
        self
    }

    /// TCP keepalive: first probe after `idle` without traffic, then every
    /// `interval`, `retries` times. Default 30 s / 10 s / 3.
    pub fn keepalive(mut self, idle: Duration, interval: Duration, retries: u32) -> Self {
        self.config
            .keepalives(true)
            .keepalives_idle(idle)
            .keepalives_interval(interval)
            .keepalives_retries(retries);
        self
    }

    /// TCP_USER_TIMEOUT (Linux): how long sent data may stay unacknowledged
    /// before the kernel drops the connection; ends a query blocked by a
    /// network that drops packets. Default 30 s.
    pub fn tcp_user_timeout(mut self, timeout: Duration) -> Self {
        self.config.tcp_user_timeout(timeout);
        self
    }

    /// Resets every connection returned to the pool (off by default). It
    /// costs a round trip per return, because the driver does not expose
    /// whether a transaction is open. Without it, the drivers' own
    /// `Transaction` rolls back when dropped, and a guard dropped during a
    /// panic is closed rather than returned; the reset matters for code
    /// that runs a raw `BEGIN` or changes session settings. A failed reset
    /// closes the connection.
    pub fn reset_on_return(mut self, reset: impl Into<Option<Reset>>) -> Self {
        self.reset = reset.into();
        self
    }

    /// SQL run on every new connection (e.g. `SET statement_timeout =
    /// '30s'`); several statements may be separated by `;`. An error fails
    /// that connect (counted as `failed_init`).
    pub fn init_sql(mut self, sql: &str) -> Self {
        self.init.push_sql(sql);
        self
    }

    /// A closure run on every new connection, after the init SQL. An error
    /// fails that connect.
    pub fn init_with(
        mut self,
        f: impl Fn(&mut Client) -> Result<(), Error> + Send + Sync + 'static,
    ) -> Self {
        self.init.set_fn(f);
        self
    }

    /// Whether to find each connection's socket for `is_broken` (default
    /// `true`; costs two listings of `/proc/self/fd` per connect).
    pub fn socket_probe(mut self, enabled: bool) -> Self {
        self.socket_probe = enabled;
        self
    }

    fn expected_peers(&self) -> Expected {
        let ports = self.config.get_ports();
        let ports: Vec<u16> = if ports.is_empty() {
            vec![5432]
        } else {
            ports.to_vec()
        };
        let mut expected = Expected::default();
        let mut tcp = !self.config.get_hostaddrs().is_empty();
        for host in self.config.get_hosts() {
            match host {
                Host::Tcp(_) => tcp = true,
                #[cfg(unix)]
                Host::Unix(dir) => {
                    for port in &ports {
                        expected
                            .unix_paths
                            .push(dir.join(format!(".s.PGSQL.{port}")));
                    }
                }
            }
        }
        // Only TCP hosts make TCP sockets to these ports ours to consider.
        if tcp {
            expected.tcp_ports = ports;
        }
        expected
    }

    fn uses_unix_sockets(&self) -> bool {
        self.config
            .get_hosts()
            .iter()
            .any(|h| !matches!(h, Host::Tcp(_)))
    }

    fn run_init(&self, client: &mut Client) -> Result<(), Error> {
        self.init.run(client, |c, sql| c.batch_execute(sql))
    }

    fn reset(&self, client: &mut Client) -> Result<(), Error> {
        match self.reset {
            None => Ok(()),
            Some(Reset::Rollback) => client.batch_execute("ROLLBACK"),
            Some(Reset::DiscardAll) => {
                if let Err(e) = client.batch_execute("DISCARD ALL") {
                    let in_transaction = matches!(
                        e.code(),
                        Some(c) if *c == SqlState::ACTIVE_SQL_TRANSACTION
                            || *c == SqlState::IN_FAILED_SQL_TRANSACTION
                    );
                    if !in_transaction {
                        return Err(e);
                    }
                    client.batch_execute("ROLLBACK")?;
                    client.batch_execute("DISCARD ALL")?;
                }
                self.run_init(client)
            }
        }
    }
}

/// A host name no real host has: `host= password=x` parses (as libpq does)
/// to the host name "password=x".
fn odd_host_name(name: &str) -> bool {
    name.contains('=') || name.chars().any(char::is_whitespace)
}

impl<T> fmt::Debug for PostgresManager<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        let hosts: Vec<String> = c
            .get_hosts()
            .iter()
            .map(|h| match h {
                // A host name with '=' may be a mis-parsed `password=...`
                // (a `postgres::Config` given to `from_config` is not
                // checked the way `new` checks strings): never shown.
                Host::Tcp(name) if odd_host_name(name) => super::MASK.to_owned(),
                Host::Tcp(name) => name.clone(),
                #[cfg(unix)]
                Host::Unix(dir) => format!("unix:{}", dir.display()),
            })
            .chain(c.get_hostaddrs().iter().map(|a| a.to_string()))
            .collect();
        f.debug_struct("PostgresManager")
            .field("hosts", &hosts)
            .field("ports", &c.get_ports())
            .field("user", &c.get_user())
            .field("dbname", &c.get_dbname())
            .field("password", &c.get_password().map(|_| super::MASK))
            .field("ssl_mode", &c.get_ssl_mode())
            .field("connect_timeout", &c.get_connect_timeout())
            .field(
                "keepalives_idle",
                &c.get_keepalives().then(|| c.get_keepalives_idle()),
            )
            .field("tcp_user_timeout", &c.get_tcp_user_timeout())
            .field("ping_timeout", &self.ping_timeout)
            .field("reset_on_return", &self.reset)
            .field("init", &self.init)
            .field("socket_probe", &self.socket_probe)
            .finish_non_exhaustive()
    }
}

/// A pooled PostgreSQL connection: a [`postgres::Client`] (it derefs to
/// one) plus what the manager needs to check it without a round trip.
pub struct PostgresConnection {
    /// `Some` for the whole life of the value; taken only by `Drop` and
    /// [`PostgresConnection::into_client`].
    client: Option<Client>,
    /// Our own duplicate of the client's socket, when it was found.
    socket: Option<SocketProbe>,
    /// A ping, reset or peek failed: the connection is closing and nothing
    /// may wait on its server when it drops.
    doomed: bool,
}

impl PostgresConnection {
    /// The client.
    pub fn client(&self) -> &Client {
        self.client
            .as_ref()
            .expect("a PostgresConnection holds its client until dropped")
    }

    /// The client, mutably.
    pub fn client_mut(&mut self) -> &mut Client {
        self.client
            .as_mut()
            .expect("a PostgresConnection holds its client until dropped")
    }

    /// The client, taken out (e.g. after `Pooled::detach`).
    pub fn into_client(mut self) -> Client {
        self.doomed = false;
        self.client
            .take()
            .expect("a PostgresConnection holds its client until dropped")
    }

    /// Whether `is_broken` can peek at this connection's socket (see the
    /// module docs for when it cannot).
    pub fn has_socket_probe(&self) -> bool {
        self.socket.is_some()
    }
}

impl Deref for PostgresConnection {
    type Target = Client;
    fn deref(&self) -> &Client {
        self.client()
    }
}

impl DerefMut for PostgresConnection {
    fn deref_mut(&mut self) -> &mut Client {
        self.client_mut()
    }
}

impl fmt::Debug for PostgresConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresConnection")
            .field(
                "closed",
                &self.client.as_ref().is_none_or(|c| c.is_closed()),
            )
            .field("socket_probe", &self.socket.is_some())
            .finish()
    }
}

impl Drop for PostgresConnection {
    /// Dropping a `Client` sends the server a goodbye and, if a request is
    /// still unanswered (a ping that timed out), waits for its response:
    /// forever, on a blackholed connection. A doomed connection's socket is
    /// therefore shut down first (the client then sees end of file at
    /// once); without a socket, the client is dropped on a short-lived
    /// thread of its own.
    fn drop(&mut self) {
        if !self.doomed {
            return;
        }
        if let Some(socket) = &self.socket {
            socket.shutdown();
        } else if let Some(client) = self.client.take() {
            // If the thread cannot start, the closure (and the client) is
            // dropped right here instead.
            let _ = std::thread::Builder::new()
                .name("cistern-postgres-close".to_owned())
                .spawn(move || drop(client));
        }
    }
}

/// The server's view of this connection's client port (`None` over Unix
/// sockets or on error).
fn client_port(client: &mut Client) -> Option<u16> {
    let row = client.query_one("SELECT inet_client_port()", &[]).ok()?;
    let port: Option<i32> = row.try_get(0).ok()?;
    port.and_then(|p| u16::try_from(p).ok())
}

impl<T> crate::Manager for PostgresManager<T>
where
    T: MakeTlsConnect<Socket> + Clone + Send + Sync + 'static,
    T::TlsConnect: Send,
    T::Stream: Send,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    type Connection = PostgresConnection;
    type Error = Error;

    fn connect(&self) -> Result<PostgresConnection, Error> {
        let turn = if !self.socket_probe {
            None
        } else if self.uses_unix_sockets() || self.serialize_probes.load(Ordering::Relaxed) {
            let wait = self
                .config
                .get_connect_timeout()
                .map_or(PROBE_TURN_WAIT, |t| (*t).min(PROBE_TURN_WAIT));
            self.probe_turn.try_lock_for(wait)
        } else {
            self.probe_turn.try_lock()
        };
        let before = if self.socket_probe {
            socket::socket_inodes()
        } else {
            None
        };
        let mut client = self.config.connect(self.tls.clone())?;
        let mut socket = None;
        if let Some(before) = before {
            let mut asked = false;
            match socket::find_new(&before, &self.expected_peers(), || {
                asked = true;
                client_port(&mut client)
            }) {
                Ok(probe) => socket = Some(probe),
                Err(why) => {
                    if asked && turn.is_none() {
                        // Two connects overlapped and the client port did
                        // not tell them apart (a proxy in between): take
                        // turns from now on.
                        self.serialize_probes.store(true, Ordering::Relaxed);
                    }
                    log::debug!(
                        "postgres: no socket probe for a new connection ({why}); \
                         is_broken relies on is_closed() and the pre-ping"
                    );
                }
            }
        }
        drop(turn);
        Ok(PostgresConnection {
            client: Some(client),
            socket,
            doomed: false,
        })
    }

    fn init(&self, conn: &mut PostgresConnection) -> Result<(), Error> {
        self.run_init(conn.client_mut())
    }

    fn ping(&self, conn: &mut PostgresConnection) -> Result<(), Error> {
        let result = conn.client_mut().is_valid(self.ping_timeout);
        if result.is_err() {
            conn.doomed = true;
        }
        result
    }

    fn is_broken(&self, conn: &mut PostgresConnection) -> bool {
        if conn.client().is_closed() {
            return true;
        }
        let Some(socket) = &conn.socket else {
            return false;
        };
        let seen = socket.peek();
        // A closed socket is doomed (shut down before the client's drop
        // waits on it); a failed ping dooms it in `ping`.
        conn.doomed |= seen == Peek::Closed;
        seen.is_broken(|| self.ping(conn).is_err())
    }

    fn on_checkin(&self, conn: &mut PostgresConnection) -> Result<(), Error> {
        let result = self.reset(conn.client_mut());
        if result.is_err() {
            conn.doomed = true;
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_masks_a_host_name_that_carries_a_password() {
        // `new` refuses this string; a `postgres::Config` parsed elsewhere
        // reaches `from_config` unchecked.
        let config: Config = "host= password=hunter2 user=app".parse().unwrap();
        let text = format!("{:?}", PostgresManager::from_config(config));
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn bad_url_error_names_the_setting_and_masks_the_password() {
        let e = PostgresManager::new("postgres://app:hunter2@db:notaport/x").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("postgres connection string"), "{msg}");
        assert!(!msg.contains("hunter2"), "{msg}");
        assert!(!format!("{e:?}").contains("hunter2"));
    }

    #[test]
    fn a_key_value_pair_swallowed_as_host_is_refused_without_showing_it() {
        let e = PostgresManager::new("host= password=Sekret1").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("host names without"), "{msg}");
        assert!(!msg.contains("Sekret1"), "{msg}");
    }

    #[test]
    fn a_string_without_host_is_refused() {
        let e = PostgresManager::new("user=app dbname=x password=hunter2").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("a host"), "{msg}");
        assert!(!msg.contains("hunter2"), "{msg}");
    }

    #[test]
    fn unset_timeouts_get_defaults_and_set_ones_stay() {
        let m = PostgresManager::new("postgres://u@h/db").unwrap();
        assert_eq!(
            m.config().get_connect_timeout(),
            Some(&net_defaults::CONNECT_TIMEOUT)
        );
        assert_eq!(
            m.config().get_keepalives_idle(),
            net_defaults::KEEPALIVE_IDLE
        );
        assert_eq!(
            m.config().get_tcp_user_timeout(),
            Some(&net_defaults::TCP_USER_TIMEOUT)
        );
        let m = PostgresManager::new("host=h user=u connect_timeout=3 keepalives_idle=60").unwrap();
        assert_eq!(
            m.config().get_connect_timeout(),
            Some(&Duration::from_secs(3))
        );
        assert_eq!(m.config().get_keepalives_idle(), Duration::from_secs(60));
    }

    #[test]
    fn debug_masks_the_password() {
        let mut c = Config::new();
        c.host("h").user("u").password("hunter2");
        let text = format!("{:?}", PostgresManager::from_config(c));
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("***"), "{text}");
    }

    #[test]
    fn unix_socket_paths_are_expected() {
        let m = PostgresManager::new("host=/var/run/postgresql port=5433 user=u").unwrap();
        let e = m.expected_peers();
        assert_eq!(
            e.unix_paths,
            vec![std::path::PathBuf::from(
                "/var/run/postgresql/.s.PGSQL.5433"
            )]
        );
        assert!(e.tcp_ports.is_empty(), "{e:?}");
        assert!(m.uses_unix_sockets());
        let e = PostgresManager::new("postgres://u@h:5433/db")
            .unwrap()
            .expected_peers();
        assert_eq!((e.tcp_ports, e.unix_paths.len()), (vec![5433], 0));
    }
}
