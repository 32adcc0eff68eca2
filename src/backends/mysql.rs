//! MySQL and MariaDB through the [`mysql`] crate (feature `mysql`; TLS by
//! rustls).
//!
//! ```no_run
//! use cistern::{Pool, mysql::MysqlManager};
//! use cistern::mysql::mysql::prelude::Queryable;
//!
//! let manager = MysqlManager::new("mysql://app:secret@127.0.0.1:3306/app")?
//!     .init_sql("SET SESSION max_execution_time = 30000")
//!     .reset_on_return(true);
//! let pool = Pool::builder().pool_size(8).max_overflow(8).build(manager)?;
//! let mut conn = pool.get()?; // derefs to mysql::Conn
//! let n: Option<i64> = conn.query_first("SELECT 41 + 1").unwrap();
//! assert_eq!(n, Some(42));
//! # Ok::<(), cistern::Error>(())
//! ```
//!
//! TLS: `?require_ssl=true` (and `verify_ca`, `verify_identity`) in the URL,
//! `SslOpts` in the [`Opts`], or [`MysqlManager::tls`]. Unix sockets:
//! `?socket=/run/mysqld/mysqld.sock`. Note the driver's `prefer_socket`
//! (on by default): a TCP connection to a loopback address is replaced by
//! one over the server's Unix socket; add `?prefer_socket=false` to keep TCP.
//!
//! ## Every blocking step has a deadline
//!
//! | step | bounded by | default |
//! |---|---|---|
//! | TCP connect | [`MysqlManager::connect_timeout`] | 10 s |
//! | handshake | the socket's read/write timeouts, set to `connect_timeout` for the handshake when the options have none | 10 s |
//! | pre-ping (`COM_PING`), reset on return | [`MysqlManager::ping_timeout`], as the socket's read/write timeout for that call | 5 s |
//! | a query of yours | the options' `read_timeout` / `write_timeout` if you set them; TCP keepalive and TCP_USER_TIMEOUT end it when the network drops packets | keepalive after 30 s idle, every 10 s, 3 probes; TCP_USER_TIMEOUT 30 s |
//!
//! Defaults only fill what the URL or [`Opts`] left unset.
//!
//! ## `is_broken`: no round trip
//!
//! `is_broken` peeks at the connection's socket without reading or waiting
//! (one `recv(MSG_PEEK | MSG_DONTWAIT)`, 0.7 µs measured): end of file (the
//! server killed the session or restarted) means broken; unexpected bytes
//! mean "do the real ping". A socket that merely stopped answering (a
//! silent blackhole) looks healthy to a peek: only a ping notices it.

use std::fmt;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

pub use mysql;
use mysql::prelude::Queryable;
pub use mysql::{Conn, Opts, OptsBuilder, SslOpts};
use rustix::net::sockopt::{Timeout, set_socket_timeout};

use crate::backends::init::Init;
use crate::backends::net_defaults;
use crate::backends::peek;
use crate::backends::redact;

// The mysql crate takes these in u32 milliseconds or seconds.
const DEFAULT_KEEPALIVE_IDLE_MS: u32 = net_defaults::KEEPALIVE_IDLE.as_millis() as u32;
const DEFAULT_KEEPALIVE_INTERVAL_SECS: u32 = net_defaults::KEEPALIVE_INTERVAL.as_secs() as u32;
const DEFAULT_TCP_USER_TIMEOUT_MS: u32 = net_defaults::TCP_USER_TIMEOUT.as_millis() as u32;

/// A [`Manager`](crate::Manager) for MySQL and MariaDB over `mysql::Conn`.
///
/// Its `Debug` output never shows the password.
#[derive(Clone)]
pub struct MysqlManager {
    opts: Opts,
    connect_timeout: Duration,
    ping_timeout: Duration,
    reset_on_return: bool,
    init: Init<Conn, mysql::Error>,
}

impl MysqlManager {
    /// A manager for a `mysql://user:password@host:port/db?options` URL.
    ///
    /// Fails with [`crate::Error::Config`] (the URL shown with its password
    /// masked) when the driver cannot parse it.
    pub fn new(url: &str) -> Result<MysqlManager, crate::Error> {
        let opts = Opts::from_url(url).map_err(|e| {
            let why = redact::scrub(&e.to_string(), redact::userinfo_password(url));
            crate::Error::config(
                "mysql url",
                redact::redact(url),
                format!("a mysql://user:password@host:port/db URL ({why})"),
            )
        })?;
        Ok(MysqlManager::from_opts(opts))
    }

    /// A manager for driver options (an [`Opts`] or an [`OptsBuilder`]).
    /// Timeouts and keepalive they leave unset get the defaults in the
    /// module docs.
    pub fn from_opts(opts: impl Into<Opts>) -> MysqlManager {
        let opts: Opts = opts.into();
        let mut b = OptsBuilder::from_opts(opts.clone());
        if opts.get_tcp_keepalive_time_ms().is_none() {
            b = b.tcp_keepalive_time_ms(Some(DEFAULT_KEEPALIVE_IDLE_MS));
            #[cfg(any(target_os = "linux", target_os = "macos"))]
            {
                if opts.get_tcp_keepalive_probe_interval_secs().is_none() {
                    b = b.tcp_keepalive_probe_interval_secs(Some(DEFAULT_KEEPALIVE_INTERVAL_SECS));
                }
                if opts.get_tcp_keepalive_probe_count().is_none() {
                    b = b.tcp_keepalive_probe_count(Some(net_defaults::KEEPALIVE_RETRIES));
                }
            }
        }
        #[cfg(target_os = "linux")]
        if opts.get_tcp_user_timeout_ms().is_none() {
            b = b.tcp_user_timeout_ms(Some(DEFAULT_TCP_USER_TIMEOUT_MS));
        }
        MysqlManager {
            connect_timeout: opts
                .get_tcp_connect_timeout()
                .unwrap_or(net_defaults::CONNECT_TIMEOUT),
            opts: b.into(),
            ping_timeout: net_defaults::PING_TIMEOUT,
            reset_on_return: false,
            init: Init::new(),
        }
    }

    /// The driver options (password included: do not log them; their
    /// `Debug` shows it).
    pub fn opts(&self) -> &Opts {
        &self.opts
    }

    /// Connects with TLS (rustls) using these settings.
    pub fn tls(mut self, ssl: SslOpts) -> Self {
        self.opts = OptsBuilder::from_opts(self.opts).ssl_opts(ssl).into();
        self
    }

    /// Limit on the TCP connect, and on each read and write of the
    /// handshake when the options set no read/write timeout. Default 10 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Limit on each read and write of a pre-ping (`COM_PING`) and of a
    /// reset on return. A ping that times out closes the connection.
    /// Default 5 s. This is the margin by which a `get()` may overrun its
    /// checkout timeout when the network blackholes an established
    /// connection.
    pub fn ping_timeout(mut self, timeout: Duration) -> Self {
        self.ping_timeout = timeout;
        self
    }

    /// TCP keepalive: first probe after `idle` without traffic, then every
    /// `interval`, `retries` times. Default 30 s / 10 s / 3.
    pub fn keepalive(mut self, idle: Duration, interval: Duration, retries: u32) -> Self {
        let ms = u32::try_from(idle.as_millis()).unwrap_or(u32::MAX);
        let mut b = OptsBuilder::from_opts(self.opts).tcp_keepalive_time_ms(Some(ms));
        #[cfg(any(target_os = "linux", target_os = "macos"))]
        {
            let secs = u32::try_from(interval.as_secs().max(1)).unwrap_or(u32::MAX);
            b = b
                .tcp_keepalive_probe_interval_secs(Some(secs))
                .tcp_keepalive_probe_count(Some(retries));
        }
        #[cfg(not(any(target_os = "linux", target_os = "macos")))]
        let _ = (interval, retries);
        self.opts = b.into();
        self
    }

    /// TCP_USER_TIMEOUT (Linux): how long sent data may stay unacknowledged
    /// before the kernel drops the connection. Default 30 s.
    #[cfg(target_os = "linux")]
    pub fn tcp_user_timeout(mut self, timeout: Duration) -> Self {
        let ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
        self.opts = OptsBuilder::from_opts(self.opts)
            .tcp_user_timeout_ms(Some(ms))
            .into();
        self
    }

    /// Resets every connection returned to the pool with
    /// `COM_RESET_CONNECTION` (`Conn::reset`: rolls back, drops temporary
    /// tables, user variables, prepared statements, session settings), then
    /// runs the init SQL and closure again. Off by default: it costs a round
    /// trip per return, because the driver does not expose whether a
    /// transaction is open. Without it, `mysql::Transaction` rolls back when
    /// dropped, and a guard dropped during a panic is closed rather than
    /// returned. A failed reset closes the connection.
    pub fn reset_on_return(mut self, enabled: bool) -> Self {
        self.reset_on_return = enabled;
        self
    }

    /// SQL run on every new connection (e.g. `SET SESSION
    /// max_execution_time = 30000`). An error fails that connect (counted
    /// as `failed_init`).
    pub fn init_sql(mut self, sql: &str) -> Self {
        self.init.push_sql(sql);
        self
    }

    /// A closure run on every new connection, after the init SQL. An error
    /// fails that connect.
    pub fn init_with(
        mut self,
        f: impl Fn(&mut Conn) -> mysql::Result<()> + Send + Sync + 'static,
    ) -> Self {
        self.init.set_fn(f);
        self
    }

    fn run_init(&self, conn: &mut Conn) -> mysql::Result<()> {
        self.init.run(conn, |c, sql| c.query_drop(sql))
    }

    /// Puts the options' own read and write timeouts back on the socket.
    fn restore_timeouts(&self, conn: &Conn) -> mysql::Result<()> {
        set_timeouts(
            conn,
            self.opts.get_read_timeout().copied(),
            self.opts.get_write_timeout().copied(),
        )
    }

    /// Runs `f` with the socket's read and write timeouts set to
    /// `ping_timeout`, then puts the options' own timeouts back.
    fn bounded<R>(
        &self,
        conn: &mut Conn,
        f: impl FnOnce(&mut Conn) -> mysql::Result<R>,
    ) -> mysql::Result<R> {
        set_timeouts(conn, Some(self.ping_timeout), Some(self.ping_timeout))?;
        let result = f(conn);
        let restored = self.restore_timeouts(conn);
        let value = result?;
        restored?;
        Ok(value)
    }
}

impl fmt::Debug for MysqlManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.opts;
        f.debug_struct("MysqlManager")
            .field("host", &o.get_ip_or_hostname())
            .field("port", &o.get_tcp_port())
            .field("socket", &o.get_socket())
            .field("user", &o.get_user())
            .field("db_name", &o.get_db_name())
            .field("password", &o.get_pass().map(|_| super::MASK))
            .field("tls", &o.get_ssl_opts().is_some())
            .field("connect_timeout", &self.connect_timeout)
            .field("read_timeout", &o.get_read_timeout())
            .field("ping_timeout", &self.ping_timeout)
            .field("reset_on_return", &self.reset_on_return)
            .field("init", &self.init)
            .finish_non_exhaustive()
    }
}

/// The connection's socket, borrowed for as long as the connection is.
#[allow(unsafe_code)]
fn socket(conn: &Conn) -> BorrowedFd<'_> {
    let raw = conn.as_raw_fd();
    // SAFETY: `Conn::as_raw_fd` returns the descriptor of the stream the
    // connection owns, and it stays open as long as the connection holds
    // that stream. The returned `BorrowedFd` borrows `conn`, so the
    // connection cannot be dropped, reconnected or otherwise changed (all of
    // which need `&mut Conn` or ownership) while it is in use.
    unsafe { BorrowedFd::borrow_raw(raw) }
}

fn set_timeouts(conn: &Conn, read: Option<Duration>, write: Option<Duration>) -> mysql::Result<()> {
    let fd = socket(conn);
    set_socket_timeout(fd, Timeout::Recv, read).map_err(std::io::Error::from)?;
    set_socket_timeout(fd, Timeout::Send, write).map_err(std::io::Error::from)?;
    Ok(())
}

impl crate::Manager for MysqlManager {
    type Connection = Conn;
    type Error = mysql::Error;

    fn connect(&self) -> mysql::Result<Conn> {
        let mut b = OptsBuilder::from_opts(self.opts.clone())
            .tcp_connect_timeout(Some(self.connect_timeout));
        let (read, write) = (self.opts.get_read_timeout(), self.opts.get_write_timeout());
        if read.is_none() {
            b = b.read_timeout(Some(self.connect_timeout));
        }
        if write.is_none() {
            b = b.write_timeout(Some(self.connect_timeout));
        }
        let conn = Conn::new(b)?;
        // The handshake is done: back to the options' own timeouts (none),
        // so long queries are not cut at connect_timeout.
        self.restore_timeouts(&conn)?;
        Ok(conn)
    }

    fn init(&self, conn: &mut Conn) -> mysql::Result<()> {
        self.run_init(conn)
    }

    fn ping(&self, conn: &mut Conn) -> mysql::Result<()> {
        self.bounded(conn, |c| c.ping())
    }

    fn is_broken(&self, conn: &mut Conn) -> bool {
        peek::peek(socket(conn)).is_broken(|| self.ping(conn).is_err())
    }

    fn on_checkin(&self, conn: &mut Conn) -> mysql::Result<()> {
        if !self.reset_on_return {
            return Ok(());
        }
        self.bounded(conn, |c| {
            c.reset()?;
            self.run_init(c)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_url_error_names_the_setting_and_masks_the_password() {
        let e = MysqlManager::new("mysql://root:hunter2@h:notaport/x").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("mysql url"), "{msg}");
        assert!(!msg.contains("hunter2"), "{msg}");
        assert!(!format!("{e:?}").contains("hunter2"));
    }

    #[test]
    fn debug_masks_the_password() {
        let m = MysqlManager::new("mysql://root:hunter2@127.0.0.1/test").unwrap();
        let text = format!("{m:?}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("***"), "{text}");
    }

    #[test]
    fn unset_keepalive_gets_defaults_and_set_one_stays() {
        let m = MysqlManager::new("mysql://root@127.0.0.1/test").unwrap();
        assert_eq!(
            m.opts().get_tcp_keepalive_time_ms(),
            Some(DEFAULT_KEEPALIVE_IDLE_MS)
        );
        let m =
            MysqlManager::new("mysql://root@127.0.0.1/test?tcp_keepalive_time_ms=5000").unwrap();
        assert_eq!(m.opts().get_tcp_keepalive_time_ms(), Some(5000));
    }
}
