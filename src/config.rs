//! Settings: the [`Builder`] and the validated [`Config`] it produces.
//!
//! Every setting states its meaning, unit and default here, and `build()`
//! rejects values and combinations that cannot work with an [`Error::Config`]
//! naming the setting.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::clock::Clock;
use crate::error::Error;
use crate::events::EventHandler;
use crate::manager::Manager;
use crate::pool::Pool;

/// What `build()` does with the `min_idle` connections it opens at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WarmUp {
    /// `build()` opens `min_idle` connections before returning and fails with
    /// [`Error::Connect`] if the first of them cannot be opened within
    /// `checkout_timeout` (the default: a misconfigured URL fails at start).
    Required,
    /// `build()` returns at once; the pool opens them in the background and
    /// keeps trying, with backoff, while the database is down.
    Background,
}

/// The leak-report default for this build: on, with backtraces, in debug
/// builds; off in release builds (call sites are tracked in both).
pub(crate) const DEFAULT_LEAK_THRESHOLD: Option<Duration> = if cfg!(debug_assertions) {
    Some(Duration::from_secs(10))
} else {
    None
};

/// A pool's validated settings. Read it with [`Pool::config`].
#[derive(Clone)]
#[non_exhaustive]
pub struct Config {
    /// The pool's name, in every log line, error and metric. Default `"default"`.
    pub name: String,
    /// Connections kept open when idle (the base). Default 10.
    pub pool_size: usize,
    /// Extra connections opened under load beyond `pool_size`; closed on return
    /// when `pool_size` connections are already idle. Default 10.
    pub max_overflow: usize,
    /// Idle connections opened at build and kept (at most `pool_size`). Default 0.
    pub min_idle: usize,
    /// Idle connections above `min_idle` idle this long are closed. Default none.
    pub idle_timeout: Option<Duration>,
    /// How long `get()` waits before failing with [`Error::Timeout`]. Default 30 s.
    pub checkout_timeout: Duration,
    /// Threads allowed to wait in `get()` at once; beyond it `get()` fails with
    /// [`Error::QueueFull`]. Default none (unbounded).
    pub max_waiting: Option<usize>,
    /// Validate a connection with `Manager::ping` before handing it out. Default on.
    pub pre_ping: bool,
    /// Skip the ping for a connection returned less than this long ago (the
    /// cheap `is_broken` check still runs). Default 500 ms.
    pub ping_bypass: Duration,
    /// Close connections older than this (on return or while idle, never while
    /// checked out). Default 30 min.
    pub recycle_after: Option<Duration>,
    /// Each connection's age limit is shortened by a random fraction up to
    /// this, so connections opened together are not recycled together.
    /// Default 0.025 (2.5 %).
    pub recycle_spread: f64,
    /// How long the pool waits for one connect attempt before it gives the
    /// attempt's slot back (a late result is kept if there is room). Default:
    /// `checkout_timeout`.
    pub connect_timeout: Duration,
    /// Delay before the first retry after a failed connect. Default 500 ms.
    pub backoff_initial: Duration,
    /// Longest delay between retries. Default 30 s.
    pub backoff_max: Duration,
    /// Factor applied to the delay after each further failure. Default 2.0.
    pub backoff_multiplier: f64,
    /// Connect attempts in flight at once (one while connects are failing).
    /// Default 2.
    pub max_connecting: usize,
    /// What `build()` does with `min_idle`. Default [`WarmUp::Required`].
    pub warm_up: WarmUp,
    /// Fail `get()` at once with the last connect error while the database is
    /// known to be down (the last connect failed, nothing is idle, nothing
    /// connects). Default off.
    pub fail_fast_when_down: bool,
    /// How long the oldest waiter may be passed over by threads arriving
    /// later before a returned connection is handed to it directly. Zero
    /// means strict first-come-first-served hand-off. Default 1 ms.
    pub barging_window: Duration,
    /// How many connections in a row one thread may take ahead of queued
    /// waiters (each within `barging_window`) before it queues behind them.
    /// Zero means a thread never overtakes a waiter. Default 100.
    pub barging_limit: u32,
    /// Report guards held longer than this through `log::warn!`. Default 10 s
    /// in debug builds, none in release builds.
    pub leak_threshold: Option<Duration>,
    /// Capture a backtrace at every checkout, shown in leak reports and
    /// holders. Costs a few microseconds a checkout. Default: on in debug
    /// builds, off in release builds.
    pub leak_backtraces: bool,
    /// Utilization (in use / maximum) at which health turns `warning`. Default 0.7.
    pub health_warning: f64,
    /// Utilization at which health turns `critical`. Default 0.9.
    pub health_critical: f64,
    pub(crate) events: Option<Arc<dyn EventHandler>>,
    pub(crate) clock: Clock,
}

impl Config {
    /// `pool_size + max_overflow`: the most connections open at once.
    pub fn max_open(&self) -> usize {
        self.pool_size + self.max_overflow
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("name", &self.name)
            .field("pool_size", &self.pool_size)
            .field("max_overflow", &self.max_overflow)
            .field("min_idle", &self.min_idle)
            .field("idle_timeout", &self.idle_timeout)
            .field("checkout_timeout", &self.checkout_timeout)
            .field("max_waiting", &self.max_waiting)
            .field("pre_ping", &self.pre_ping)
            .field("ping_bypass", &self.ping_bypass)
            .field("recycle_after", &self.recycle_after)
            .field("recycle_spread", &self.recycle_spread)
            .field("connect_timeout", &self.connect_timeout)
            .field("backoff_initial", &self.backoff_initial)
            .field("backoff_max", &self.backoff_max)
            .field("backoff_multiplier", &self.backoff_multiplier)
            .field("max_connecting", &self.max_connecting)
            .field("warm_up", &self.warm_up)
            .field("fail_fast_when_down", &self.fail_fast_when_down)
            .field("barging_window", &self.barging_window)
            .field("barging_limit", &self.barging_limit)
            .field("leak_threshold", &self.leak_threshold)
            .field("leak_backtraces", &self.leak_backtraces)
            .field("events", &self.events.as_ref().map(|_| "EventHandler"))
            .finish_non_exhaustive()
    }
}

/// Builds a [`Pool`]: one method per setting, each documented with its
/// default, then [`Builder::build`].
///
/// ```
/// use std::time::Duration;
/// # use std::convert::Infallible;
/// # struct M;
/// # impl cistern::Manager for M {
/// #     type Connection = (); type Error = Infallible;
/// #     fn connect(&self) -> Result<(), Infallible> { Ok(()) }
/// #     fn ping(&self, _: &mut ()) -> Result<(), Infallible> { Ok(()) }
/// # }
/// let pool = cistern::Pool::builder()
///     .name("orders")
///     .pool_size(5)
///     .max_overflow(5)
///     .checkout_timeout(Duration::from_secs(2))
///     .idle_timeout(Duration::from_secs(600))
///     .build(M)?;
/// assert_eq!(pool.stats().pool_size, 5);
/// # Ok::<(), cistern::Error>(())
/// ```
///
/// The builder is typed by the manager it will build for (inferred from
/// `build`), so `Pool::builder()` needs no annotation.
pub struct Builder<M = ()> {
    cfg: Config,
    connect_timeout_set: bool,
    _manager: PhantomData<fn() -> M>,
}

impl<M> Clone for Builder<M> {
    fn clone(&self) -> Self {
        Builder {
            cfg: self.cfg.clone(),
            connect_timeout_set: self.connect_timeout_set,
            _manager: PhantomData,
        }
    }
}

impl<M> std::fmt::Debug for Builder<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("config", &self.cfg)
            .finish()
    }
}

impl<M> Default for Builder<M> {
    fn default() -> Self {
        Builder::new()
    }
}

macro_rules! setter {
    ($(#[$doc:meta])* $name:ident: $ty:ty) => {
        $(#[$doc])*
        pub fn $name(mut self, value: $ty) -> Self {
            self.cfg.$name = value;
            self
        }
    };
}

macro_rules! optional_duration_setter {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        pub fn $name(mut self, value: impl Into<Option<Duration>>) -> Self {
            self.cfg.$name = value.into();
            self
        }
    };
}

impl<M> Builder<M> {
    /// A builder with every default.
    pub fn new() -> Builder<M> {
        let checkout_timeout = Duration::from_secs(30);
        Builder {
            cfg: Config {
                name: "default".to_owned(),
                pool_size: 10,
                max_overflow: 10,
                min_idle: 0,
                idle_timeout: None,
                checkout_timeout,
                max_waiting: None,
                pre_ping: true,
                ping_bypass: Duration::from_millis(500),
                recycle_after: Some(Duration::from_secs(30 * 60)),
                recycle_spread: 0.025,
                connect_timeout: checkout_timeout,
                backoff_initial: Duration::from_millis(500),
                backoff_max: Duration::from_secs(30),
                backoff_multiplier: 2.0,
                max_connecting: 2,
                warm_up: WarmUp::Required,
                fail_fast_when_down: false,
                barging_window: Duration::from_millis(1),
                barging_limit: 100,
                leak_threshold: DEFAULT_LEAK_THRESHOLD,
                leak_backtraces: cfg!(debug_assertions),
                health_warning: 0.7,
                health_critical: 0.9,
                events: None,
                clock: Clock::system(),
            },
            connect_timeout_set: false,
            _manager: PhantomData,
        }
    }

    /// The pool's name, used in log lines, errors and metric labels.
    /// Default `"default"`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.cfg.name = name.into();
        self
    }

    setter!(
        /// Connections kept open when idle (the base size). Default 10.
        /// `pool_size + max_overflow` is the most that are open at once.
        pool_size: usize
    );
    setter!(
        /// Extra connections allowed beyond `pool_size` under load. One is
        /// closed when it is returned while `pool_size` connections are idle.
        /// Default 10.
        max_overflow: usize
    );
    setter!(
        /// Idle connections opened at build time and kept open; at most
        /// `pool_size`. Default 0. See [`Builder::warm_up`].
        min_idle: usize
    );
    optional_duration_setter!(
        /// Close idle connections above `min_idle` that have been idle this
        /// long. Default `None`: up to `pool_size` idle are kept.
        idle_timeout
    );
    setter!(
        /// How long `get()` waits for a connection. Default 30 s. Zero never
        /// waits: an idle connection or [`Error::Timeout`] at once, and no
        /// connect is started for it (pair it with `min_idle`).
        checkout_timeout: Duration
    );
    /// Most threads waiting in `get()` at once; the next fails at once with
    /// [`Error::QueueFull`] (back-pressure). Default `None`: unbounded.
    pub fn max_waiting(mut self, value: impl Into<Option<usize>>) -> Self {
        self.cfg.max_waiting = value.into();
        self
    }
    setter!(
        /// Validate connections with `Manager::ping` before handing them out
        /// (except inside `ping_bypass`). Default `true`.
        pre_ping: bool
    );
    setter!(
        /// A connection returned less than this long ago is handed out without
        /// a ping (after the cheap `is_broken` check). Default 500 ms. Zero
        /// pings on every checkout.
        ping_bypass: Duration
    );
    optional_duration_setter!(
        /// Close connections older than this when returned or while idle.
        /// Default 30 min; `None` keeps them forever.
        recycle_after
    );
    setter!(
        /// Random shortening of each connection's age limit, as a fraction in
        /// `0.0..=0.5`. Default 0.025.
        recycle_spread: f64
    );
    /// How long one connect attempt may run before the pool gives its slot
    /// back. Default: the `checkout_timeout`.
    pub fn connect_timeout(mut self, value: Duration) -> Self {
        self.cfg.connect_timeout = value;
        self.connect_timeout_set = true;
        self
    }
    setter!(
        /// First delay after a failed connect. Default 500 ms.
        backoff_initial: Duration
    );
    setter!(
        /// Largest delay between connect retries. Default 30 s.
        backoff_max: Duration
    );
    setter!(
        /// Growth factor of the delay per failure (at least 1.0). Default 2.0.
        backoff_multiplier: f64
    );
    setter!(
        /// Connect attempts in flight at once. Default 2.
        max_connecting: usize
    );
    setter!(
        /// What `build()` does with `min_idle` connections. Default
        /// [`WarmUp::Required`].
        warm_up: WarmUp
    );
    setter!(
        /// While the database is known to be down (last connect failed,
        /// nothing idle), `get()` fails at once with [`Error::Connect`]
        /// instead of waiting. Default `false`.
        fail_fast_when_down: bool
    );
    setter!(
        /// How long the oldest waiter may be overtaken by newly arriving
        /// threads before returns are handed to it directly. Zero is strict
        /// FIFO hand-off. Default 1 ms.
        barging_window: Duration
    );
    setter!(
        /// How many connections in a row one thread may take ahead of queued
        /// waiters before it queues behind them itself; each also needs the
        /// oldest waiter to have waited less than `barging_window`. The
        /// window bounds how long a waiter is overtaken, this how far one
        /// running thread gets ahead of the others meanwhile. The count
        /// starts again when the thread has waited its turn, or took a
        /// connection while nobody waited. Checkouts that never wait
        /// (`try_get`, a zero timeout), and any when `max_waiting` waiters
        /// already queue, are not counted or held back. Zero: a thread never
        /// overtakes a waiter. Default 100.
        barging_limit: u32
    );
    optional_duration_setter!(
        /// Report guards held longer than this (`log::warn!` with the call
        /// site). Default 10 s in debug builds, `None` in release builds.
        leak_threshold
    );
    setter!(
        /// Capture a backtrace at each checkout for leak reports and holders
        /// (a few microseconds each). Default: on in debug builds.
        leak_backtraces: bool
    );
    setter!(
        /// Utilization at which health becomes `warning`. Default 0.7.
        health_warning: f64
    );
    setter!(
        /// Utilization at which health becomes `critical`. Default 0.9.
        health_critical: f64
    );

    /// Observes pool events (connects, checkouts, timeouts, closes, leaks).
    pub fn event_handler(mut self, handler: impl EventHandler) -> Self {
        self.cfg.events = Some(Arc::new(handler));
        self
    }

    /// The clock used for connection ages (a manual clock in tests).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.cfg.clock = clock;
        self
    }

    /// Checks every setting and returns the validated [`Config`].
    pub fn validate(&self) -> Result<Config, Error> {
        let mut c = self.cfg.clone();
        if !self.connect_timeout_set {
            // Follows checkout_timeout; a zero checkout_timeout ("never
            // wait") must not make every connect attempt time out at once,
            // so connects then get the default 30 s.
            c.connect_timeout = if c.checkout_timeout.is_zero() {
                Duration::from_secs(30)
            } else {
                c.checkout_timeout
            };
        }
        if c.name.trim().is_empty() {
            return Err(Error::config("name", &c.name, "a non-empty name"));
        }
        // Checked first: `max_open()` below would overflow on absurd sizes.
        if c.pool_size.checked_add(c.max_overflow).is_none() {
            return Err(Error::config(
                "pool_size + max_overflow",
                format!("{} + {}", c.pool_size, c.max_overflow),
                format!("at most {MAX_OPEN} connections in all"),
            ));
        }
        if c.max_open() == 0 {
            return Err(Error::config(
                "pool_size + max_overflow",
                format!("{} + {}", c.pool_size, c.max_overflow),
                "at least 1 connection in all",
            ));
        }
        if c.max_open() > MAX_OPEN {
            return Err(Error::config(
                "pool_size + max_overflow",
                format!("{} + {}", c.pool_size, c.max_overflow),
                format!("at most {MAX_OPEN} connections in all"),
            ));
        }
        if c.min_idle > c.pool_size {
            return Err(Error::config(
                "min_idle",
                c.min_idle,
                format!("at most pool_size ({})", c.pool_size),
            ));
        }
        check_deadline("checkout_timeout", c.checkout_timeout)?;
        check_deadline("connect_timeout", c.connect_timeout)?;
        if c.connect_timeout.is_zero() {
            return Err(Error::config(
                "connect_timeout",
                "0s",
                "a duration greater than zero",
            ));
        }
        for (name, value) in [
            ("idle_timeout", c.idle_timeout),
            ("recycle_after", c.recycle_after),
            ("leak_threshold", c.leak_threshold),
        ] {
            if let Some(d) = value {
                if d.is_zero() {
                    return Err(Error::config(
                        name,
                        "0s",
                        "a duration greater than zero, or None to disable",
                    ));
                }
                check_deadline(name, d)?;
            }
        }
        check_deadline("ping_bypass", c.ping_bypass)?;
        check_deadline("barging_window", c.barging_window)?;
        if !(0.0..=0.5).contains(&c.recycle_spread) {
            return Err(Error::config(
                "recycle_spread",
                c.recycle_spread,
                "a fraction from 0.0 to 0.5",
            ));
        }
        if c.backoff_initial.is_zero() {
            return Err(Error::config(
                "backoff_initial",
                "0s",
                "a duration greater than zero",
            ));
        }
        check_deadline("backoff_max", c.backoff_max)?;
        if c.backoff_max < c.backoff_initial {
            return Err(Error::config(
                "backoff_max",
                crate::fmt_duration(c.backoff_max),
                format!(
                    "at least backoff_initial ({})",
                    crate::fmt_duration(c.backoff_initial)
                ),
            ));
        }
        if !(c.backoff_multiplier.is_finite() && c.backoff_multiplier >= 1.0) {
            return Err(Error::config(
                "backoff_multiplier",
                c.backoff_multiplier,
                "a finite number of at least 1.0",
            ));
        }
        if c.max_connecting == 0 {
            return Err(Error::config("max_connecting", 0, "at least 1"));
        }
        let thresholds_ok = c.health_warning.is_finite()
            && c.health_critical.is_finite()
            && 0.0 < c.health_warning
            && c.health_warning <= c.health_critical
            && c.health_critical <= 1.0;
        if !thresholds_ok {
            return Err(Error::config(
                "health_warning / health_critical",
                format!("{} / {}", c.health_warning, c.health_critical),
                "0 < health_warning <= health_critical <= 1",
            ));
        }
        Ok(c)
    }

    /// Validates the settings and starts the pool.
    pub fn build(self, manager: M) -> Result<Pool<M>, Error>
    where
        M: Manager,
    {
        let config = self.validate()?;
        Pool::start(config, manager)
    }

    /// Mutable access for the environment reader.
    pub(crate) fn config_mut(&mut self) -> &mut Config {
        &mut self.cfg
    }
}

/// Slot numbers are `u32`; far above any sane pool.
const MAX_OPEN: usize = 1 << 20;

/// Rejects durations that would overflow a deadline computed from now.
fn check_deadline(setting: &str, d: Duration) -> Result<(), Error> {
    const LIMIT: Duration = crate::MAX_SETTING;
    if d > LIMIT || Instant::now().checked_add(d).is_none() {
        return Err(Error::config(
            setting,
            format!("{d:?}"),
            "a duration of at most 100 years (it must fit in a deadline)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setting_of(e: Error) -> String {
        match e {
            Error::Config { setting, .. } => setting,
            other => panic!("expected a config error, got {other}"),
        }
    }

    #[test]
    fn defaults_are_valid() {
        let c = Builder::<()>::new().validate().unwrap();
        assert_eq!((c.pool_size, c.max_overflow, c.min_idle), (10, 10, 0));
        assert_eq!(c.checkout_timeout, Duration::from_secs(30));
        assert_eq!(c.connect_timeout, c.checkout_timeout);
        assert!(c.pre_ping);
    }

    #[test]
    fn bad_values_name_their_setting() {
        let cases: Vec<(Builder<()>, &str)> = vec![
            (
                Builder::<()>::new().pool_size(0).max_overflow(0),
                "pool_size + max_overflow",
            ),
            (Builder::<()>::new().pool_size(2).min_idle(3), "min_idle"),
            (
                Builder::<()>::new().checkout_timeout(Duration::MAX),
                "checkout_timeout",
            ),
            (
                Builder::<()>::new().idle_timeout(Duration::ZERO),
                "idle_timeout",
            ),
            (
                Builder::<()>::new().recycle_after(Duration::ZERO),
                "recycle_after",
            ),
            (Builder::<()>::new().recycle_spread(0.9), "recycle_spread"),
            (
                Builder::<()>::new().backoff_multiplier(f64::NAN),
                "backoff_multiplier",
            ),
            (
                Builder::<()>::new()
                    .backoff_initial(Duration::from_secs(5))
                    .backoff_max(Duration::from_secs(1)),
                "backoff_max",
            ),
            (Builder::<()>::new().max_connecting(0), "max_connecting"),
            (Builder::<()>::new().name("  "), "name"),
            (
                Builder::<()>::new()
                    .health_warning(0.95)
                    .health_critical(0.9),
                "health_warning / health_critical",
            ),
        ];
        for (b, want) in cases {
            let e = b.validate().unwrap_err();
            let msg = e.to_string();
            assert!(msg.contains(want), "{msg}");
            assert_eq!(setting_of(e), want);
        }
    }

    #[test]
    fn min_idle_message_names_pool_size() {
        let msg = Builder::<()>::new()
            .pool_size(2)
            .min_idle(3)
            .validate()
            .unwrap_err()
            .to_string();
        assert_eq!(
            msg,
            "invalid setting min_idle = \"3\": expected at most pool_size (2)"
        );
    }
}
