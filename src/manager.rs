//! The `Manager` trait: how a pool makes and checks connections.

/// How a pool opens, validates and resets connections of one kind.
///
/// The pool calls these methods outside its lock, from the thread doing a
/// checkout or return (`ping`, `is_broken`, the hooks) or from a background
/// connect thread (`connect`). A panic in any of them is caught: the
/// connection concerned is closed and its slot freed.
///
/// ```
/// use std::convert::Infallible;
///
/// /// A "connection" that is just a counter: enough to show the shape.
/// struct Counter;
///
/// impl cistern::Manager for Counter {
///     type Connection = u64;
///     type Error = Infallible;
///     fn connect(&self) -> Result<u64, Infallible> { Ok(0) }
///     fn ping(&self, _conn: &mut u64) -> Result<(), Infallible> { Ok(()) }
/// }
///
/// let pool = cistern::Pool::new(Counter).unwrap();
/// let mut conn = pool.get().unwrap();
/// *conn += 1;
/// ```
pub trait Manager: Send + Sync + 'static {
    /// The driver's connection.
    type Connection: Send + 'static;
    /// The driver's error.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Opens a new connection. Should have its own timeout; the pool gives up
    /// waiting for it at `connect_timeout` either way.
    fn connect(&self) -> Result<Self::Connection, Self::Error>;

    /// Prepares a new connection before its first use (session settings,
    /// pragmas). An error closes it, counted as `failed_init`; the pool
    /// retries like after a failed connect. Default: nothing.
    fn init(&self, conn: &mut Self::Connection) -> Result<(), Self::Error> {
        let _ = conn;
        Ok(())
    }

    /// A validation round trip (e.g. an empty query), used by pre-ping.
    fn ping(&self, conn: &mut Self::Connection) -> Result<(), Self::Error>;

    /// Cheap check, without I/O, that the connection is still usable: asked on
    /// return, and on checkout inside the ping bypass window. Adapters look at
    /// the driver's closed flag and peek at the socket. Default: `false`.
    fn is_broken(&self, conn: &mut Self::Connection) -> bool {
        let _ = conn;
        false
    }

    /// Runs on every checkout, after validation, before the caller gets the
    /// connection. An error closes the connection and the checkout goes on
    /// with another. Default: nothing.
    fn on_checkout(&self, conn: &mut Self::Connection) -> Result<(), Self::Error> {
        let _ = conn;
        Ok(())
    }

    /// Runs on every return of a connection the pool keeps (e.g. to reset
    /// session state). An error closes the connection. Default: nothing.
    fn on_checkin(&self, conn: &mut Self::Connection) -> Result<(), Self::Error> {
        let _ = conn;
        Ok(())
    }
}
