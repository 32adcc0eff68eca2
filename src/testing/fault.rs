//! A scriptable fake manager.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

/// The error of a [`FaultManager`]: says which scripted fault fired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultError(pub String);

impl fmt::Display for FaultError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FaultError {}

#[derive(Default)]
struct Script {
    /// Fail this many of the next connects.
    fail_connects: usize,
    /// Fail every connect while set.
    refuse: bool,
    /// Every connect sleeps this long first.
    connect_delay: Duration,
    /// Connects block until `release` (or for at most this long).
    hang: Option<Duration>,
    /// Panic in this many of the next connects.
    panic_connects: usize,
    fail_pings: usize,
    pings_failing: bool,
    panic_pings: usize,
    panic_is_broken: usize,
    fail_init: usize,
    fail_checkin: usize,
    /// Connections the "server" has closed.
    broken: HashSet<u64>,
}

struct Shared {
    script: Mutex<Script>,
    released: Condvar,
    next_id: AtomicU64,
    connect_attempts: AtomicU64,
    connects_ok: AtomicU64,
    pings: AtomicU64,
    is_broken_calls: AtomicU64,
    live: AtomicUsize,
    live_ids: Mutex<HashSet<u64>>,
    attempt_times: Mutex<Vec<Instant>>,
}

/// A [`Manager`](crate::Manager) whose connections are plain records and
/// whose faults are scripted by the test that owns it. Clones share the
/// script and the counters.
///
/// ```
/// use std::time::Duration;
/// use cistern::{Pool, testing::FaultManager};
///
/// let db = FaultManager::new();
/// let pool = Pool::builder().checkout_timeout(Duration::from_millis(200)).build(db.clone())?;
/// db.refuse_connects(true); // the database is down
/// let err = pool.get().unwrap_err();
/// assert!(err.is_timeout());
/// assert!(err.to_string().contains("connects are failing"));
/// db.refuse_connects(false);
/// assert!(pool.get_timeout(Duration::from_secs(5)).is_ok());
/// # Ok::<(), cistern::Error>(())
/// ```
#[derive(Clone)]
pub struct FaultManager {
    shared: Arc<Shared>,
}

impl fmt::Debug for FaultManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultManager")
            .field("live", &self.live())
            .field("connect_attempts", &self.connect_attempts())
            .finish_non_exhaustive()
    }
}

impl Default for FaultManager {
    fn default() -> Self {
        FaultManager::new()
    }
}

/// A connection of a [`FaultManager`].
pub struct FaultConn {
    id: u64,
    shared: Arc<Shared>,
    in_use: AtomicBool,
    /// Queries run on it.
    pub queries: u64,
}

impl fmt::Debug for FaultConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultConn").field("id", &self.id).finish()
    }
}

impl FaultConn {
    /// The connection's id (1, 2, 3... in connect order).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// A round trip: fails when the "server" closed this connection.
    pub fn query(&mut self) -> Result<u64, FaultError> {
        if self.shared.script.lock().broken.contains(&self.id) {
            return Err(FaultError(format!(
                "connection {} was closed by the server",
                self.id
            )));
        }
        self.queries += 1;
        Ok(self.queries)
    }

    /// Marks the connection as used by the caller; false if it already was
    /// (two holders of one connection: a pool bug). Pair with [`FaultConn::leave`].
    pub fn enter(&self) -> bool {
        !self.in_use.swap(true, Ordering::SeqCst)
    }

    /// Ends what [`FaultConn::enter`] started.
    pub fn leave(&self) {
        self.in_use.store(false, Ordering::SeqCst);
    }
}

impl Drop for FaultConn {
    fn drop(&mut self) {
        self.shared.live.fetch_sub(1, Ordering::SeqCst);
        self.shared.live_ids.lock().remove(&self.id);
    }
}

impl FaultManager {
    /// A manager whose connects and pings succeed until told otherwise.
    pub fn new() -> FaultManager {
        FaultManager {
            shared: Arc::new(Shared {
                script: Mutex::new(Script::default()),
                released: Condvar::new(),
                next_id: AtomicU64::new(1),
                connect_attempts: AtomicU64::new(0),
                connects_ok: AtomicU64::new(0),
                pings: AtomicU64::new(0),
                is_broken_calls: AtomicU64::new(0),
                live: AtomicUsize::new(0),
                live_ids: Mutex::new(HashSet::new()),
                attempt_times: Mutex::new(Vec::new()),
            }),
        }
    }

    /// The next `n` connects fail.
    pub fn fail_next_connects(&self, n: usize) {
        self.shared.script.lock().fail_connects = n;
    }

    /// Every connect fails while `on` (the database is down).
    pub fn refuse_connects(&self, on: bool) {
        self.shared.script.lock().refuse = on;
    }

    /// Every connect takes this long.
    pub fn connect_delay(&self, d: Duration) {
        self.shared.script.lock().connect_delay = d;
    }

    /// Connects block (up to `limit`) until [`FaultManager::release`].
    pub fn hang_connects(&self, limit: Duration) {
        self.shared.script.lock().hang = Some(limit);
    }

    /// Ends a hang: blocked connects go on, new ones do not block.
    pub fn release(&self) {
        self.shared.script.lock().hang = None;
        self.shared.released.notify_all();
    }

    /// The next `n` connects panic.
    pub fn panic_next_connects(&self, n: usize) {
        self.shared.script.lock().panic_connects = n;
    }

    /// The next `n` inits fail.
    pub fn fail_next_inits(&self, n: usize) {
        self.shared.script.lock().fail_init = n;
    }

    /// The next `n` pings fail.
    pub fn fail_next_pings(&self, n: usize) {
        self.shared.script.lock().fail_pings = n;
    }

    /// Every ping fails while `on`.
    pub fn pings_failing(&self, on: bool) {
        self.shared.script.lock().pings_failing = on;
    }

    /// The next `n` pings panic.
    pub fn panic_next_pings(&self, n: usize) {
        self.shared.script.lock().panic_pings = n;
    }

    /// The next `n` `is_broken` calls panic.
    pub fn panic_next_is_broken(&self, n: usize) {
        self.shared.script.lock().panic_is_broken = n;
    }

    /// The next `n` `on_checkin` calls fail.
    pub fn fail_next_checkins(&self, n: usize) {
        self.shared.script.lock().fail_checkin = n;
    }

    /// The "server" closes connection `id`: its queries and pings fail and
    /// `is_broken` reports it.
    pub fn kill(&self, id: u64) {
        self.shared.script.lock().broken.insert(id);
    }

    /// The "server" closes every open connection (a restart).
    pub fn kill_all(&self) {
        let ids: Vec<u64> = self.shared.live_ids.lock().iter().copied().collect();
        self.shared.script.lock().broken.extend(ids);
    }

    /// Connect attempts so far (successful or not).
    pub fn connect_attempts(&self) -> u64 {
        self.shared.connect_attempts.load(Ordering::SeqCst)
    }

    /// When each connect attempt started.
    pub fn attempt_times(&self) -> Vec<Instant> {
        self.shared.attempt_times.lock().clone()
    }

    /// Successful connects so far.
    pub fn connects_ok(&self) -> u64 {
        self.shared.connects_ok.load(Ordering::SeqCst)
    }

    /// Pings so far.
    pub fn pings(&self) -> u64 {
        self.shared.pings.load(Ordering::SeqCst)
    }

    /// `is_broken` calls so far.
    pub fn is_broken_calls(&self) -> u64 {
        self.shared.is_broken_calls.load(Ordering::SeqCst)
    }

    /// Connections alive (opened and not yet dropped), wherever they are.
    pub fn live(&self) -> usize {
        self.shared.live.load(Ordering::SeqCst)
    }
}

impl crate::Manager for FaultManager {
    type Connection = FaultConn;
    type Error = FaultError;

    fn connect(&self) -> Result<FaultConn, FaultError> {
        let s = &self.shared;
        let n = s.connect_attempts.fetch_add(1, Ordering::SeqCst) + 1;
        s.attempt_times.lock().push(Instant::now());
        let (delay, hang) = {
            let mut script = s.script.lock();
            if script.panic_connects > 0 {
                script.panic_connects -= 1;
                drop(script);
                panic!("scripted panic in connect");
            }
            (script.connect_delay, script.hang)
        };
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        if let Some(limit) = hang {
            let until = Instant::now() + limit;
            let mut script = s.script.lock();
            while script.hang.is_some() && Instant::now() < until {
                s.released.wait_until(&mut script, until);
            }
        }
        let mut script = s.script.lock();
        if script.refuse {
            return Err(FaultError(format!("connect {n} refused: database is down")));
        }
        if script.fail_connects > 0 {
            script.fail_connects -= 1;
            return Err(FaultError(format!("connect {n} failed (scripted)")));
        }
        drop(script);
        let id = s.next_id.fetch_add(1, Ordering::SeqCst);
        s.connects_ok.fetch_add(1, Ordering::SeqCst);
        s.live.fetch_add(1, Ordering::SeqCst);
        s.live_ids.lock().insert(id);
        Ok(FaultConn {
            id,
            shared: Arc::clone(s),
            in_use: AtomicBool::new(false),
            queries: 0,
        })
    }

    fn init(&self, conn: &mut FaultConn) -> Result<(), FaultError> {
        let mut script = self.shared.script.lock();
        if script.fail_init > 0 {
            script.fail_init -= 1;
            return Err(FaultError(format!(
                "init of connection {} failed (scripted)",
                conn.id
            )));
        }
        Ok(())
    }

    fn ping(&self, conn: &mut FaultConn) -> Result<(), FaultError> {
        self.shared.pings.fetch_add(1, Ordering::SeqCst);
        let mut script = self.shared.script.lock();
        if script.panic_pings > 0 {
            script.panic_pings -= 1;
            drop(script);
            panic!("scripted panic in ping");
        }
        if script.broken.contains(&conn.id) {
            return Err(FaultError(format!(
                "connection {} was closed by the server",
                conn.id
            )));
        }
        if script.pings_failing {
            return Err(FaultError("ping failed (scripted)".into()));
        }
        if script.fail_pings > 0 {
            script.fail_pings -= 1;
            return Err(FaultError("ping failed (scripted)".into()));
        }
        Ok(())
    }

    fn is_broken(&self, conn: &mut FaultConn) -> bool {
        self.shared.is_broken_calls.fetch_add(1, Ordering::SeqCst);
        let mut script = self.shared.script.lock();
        if script.panic_is_broken > 0 {
            script.panic_is_broken -= 1;
            drop(script);
            panic!("scripted panic in is_broken");
        }
        script.broken.contains(&conn.id)
    }

    fn on_checkin(&self, conn: &mut FaultConn) -> Result<(), FaultError> {
        let mut script = self.shared.script.lock();
        if script.fail_checkin > 0 {
            script.fail_checkin -= 1;
            return Err(FaultError(format!(
                "checkin of connection {} failed (scripted)",
                conn.id
            )));
        }
        Ok(())
    }
}
