//! Health: a status an operator or a load balancer can act on, and
//! plain-language recommendations derived from the counters.
//!
//! The rules, in order:
//! - `down`: the pool is closed, or connects are failing
//!   (`consecutive_connect_failures > 0`) and no connection is idle: a
//!   checkout can only wait for a connect that keeps failing;
//! - `critical`: utilization (in use over `pool_size + max_overflow`) at or
//!   above `health_critical` (0.9 by default);
//! - `warning`: utilization at or above `health_warning` (0.7);
//! - `healthy` otherwise.
//!
//! The recommendations look at the counters since start; each names the
//! number that triggered it and the setting to change.

use std::time::Duration;

use crate::config::Config;
use crate::manager::Manager;
use crate::pool::Pool;
use crate::stats::Stats;

/// Checkouts needed before ratios (waits, failed pings) are judged.
const MIN_SAMPLE: u64 = 20;
/// Share of checkouts that waited above which more capacity is advised.
const WAITED_RATIO: f64 = 0.05;
/// Share of pings that failed above which recycling earlier is advised.
const FAILED_PING_RATIO: f64 = 0.05;
/// Share of opened connections closed as excess above which a larger base
/// is advised.
const EXCESS_RATIO: f64 = 0.5;
/// Mean hold time above which holding connections shorter is advised.
const LONG_MEAN_HOLD: Duration = Duration::from_secs(1);

/// A pool's health, worst last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum HealthStatus {
    /// Utilization below `health_warning`, connects working.
    Healthy,
    /// Utilization at or above `health_warning`.
    Warning,
    /// Utilization at or above `health_critical`.
    Critical,
    /// Closed, or connects failing with nothing idle.
    Down,
}

impl HealthStatus {
    /// `"healthy"`, `"warning"`, `"critical"` or `"down"`.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Healthy => "healthy",
            HealthStatus::Warning => "warning",
            HealthStatus::Critical => "critical",
            HealthStatus::Down => "down",
        }
    }

    /// Whether a health endpoint should answer with success: `healthy` and
    /// `warning` do; `critical` and `down` do not.
    pub fn is_serving(self) -> bool {
        matches!(self, HealthStatus::Healthy | HealthStatus::Warning)
    }

    /// The HTTP status a health endpoint should answer with: 200 while
    /// [`is_serving`](HealthStatus::is_serving), 503 otherwise.
    pub fn http_status(self) -> u16 {
        if self.is_serving() { 200 } else { 503 }
    }
}

impl std::fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One piece of advice, with a stable code for machines and a sentence for
/// people.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct Recommendation {
    /// A stable identifier: `connects_failing`, `connect_errors`,
    /// `pool_closed`, `saturated`, `high_utilization`, `waiting_now`,
    /// `checkouts_waited`, `timeouts`, `queue_full`, `held_too_long`,
    /// `leaks_reported`, `long_holds`, `excess_closes`, `failed_pings`,
    /// `broken`, `failed_init`, `panicked`.
    pub code: &'static str,
    /// What was seen and what to do, in one sentence.
    pub message: String,
}

impl std::fmt::Display for Recommendation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// The settings a health report shows, as plain values (durations in
/// seconds): the serializable view of a [`Config`], which itself holds an
/// event handler and a clock.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct ConfigSummary {
    /// The pool's name.
    pub name: String,
    /// Connections kept when idle.
    pub pool_size: usize,
    /// Extra connections under load.
    pub max_overflow: usize,
    /// `pool_size + max_overflow`.
    pub max_open: usize,
    /// Idle connections kept open.
    pub min_idle: usize,
    /// `get()` timeout, seconds.
    pub checkout_timeout_secs: f64,
    /// Idle timeout, seconds, if any.
    pub idle_timeout_secs: Option<f64>,
    /// Age limit, seconds, if any.
    pub recycle_after_secs: Option<f64>,
    /// Whether connections are pinged before checkout.
    pub pre_ping: bool,
    /// Ping bypass window, seconds.
    pub ping_bypass_secs: f64,
    /// Connect attempt limit, seconds.
    pub connect_timeout_secs: f64,
    /// Most threads waiting at once, if bounded.
    pub max_waiting: Option<usize>,
    /// Leak report threshold, seconds, if any.
    pub leak_threshold_secs: Option<f64>,
    /// Utilization at which health is `warning`.
    pub health_warning: f64,
    /// Utilization at which health is `critical`.
    pub health_critical: f64,
}

impl Config {
    /// The settings as a [`ConfigSummary`] (serializable with the `serde`
    /// feature).
    pub fn summary(&self) -> ConfigSummary {
        let secs = |d: Duration| d.as_secs_f64();
        ConfigSummary {
            name: self.name.clone(),
            pool_size: self.pool_size,
            max_overflow: self.max_overflow,
            max_open: self.max_open(),
            min_idle: self.min_idle,
            checkout_timeout_secs: secs(self.checkout_timeout),
            idle_timeout_secs: self.idle_timeout.map(secs),
            recycle_after_secs: self.recycle_after.map(secs),
            pre_ping: self.pre_ping,
            ping_bypass_secs: secs(self.ping_bypass),
            connect_timeout_secs: secs(self.connect_timeout),
            max_waiting: self.max_waiting,
            leak_threshold_secs: self.leak_threshold.map(secs),
            health_warning: self.health_warning,
            health_critical: self.health_critical,
        }
    }
}

/// A pool's health: its status, the numbers behind it and what to do.
///
/// ```
/// use cistern::{HealthStatus, Pool, testing::FaultManager};
///
/// let pool = Pool::builder().pool_size(2).max_overflow(0).build(FaultManager::new())?;
/// assert_eq!(pool.health().status, HealthStatus::Healthy);
/// let a = pool.get()?;
/// let b = pool.get()?;
/// let health = pool.health();
/// assert_eq!(health.status, HealthStatus::Critical);
/// assert_eq!(health.status.http_status(), 503);
/// assert!(health.recommendations.iter().any(|r| r.code == "saturated"));
/// # drop((a, b));
/// # Ok::<(), cistern::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct Health {
    /// The pool's name.
    pub name: String,
    /// The verdict.
    pub status: HealthStatus,
    /// In use over `pool_size + max_overflow`, from 0.0 to 1.0.
    pub utilization: f64,
    /// Connections checked out.
    pub in_use: usize,
    /// Connections idle.
    pub idle: usize,
    /// `pool_size + max_overflow`.
    pub max_open: usize,
    /// Threads waiting in `get()`.
    pub waiting: usize,
    /// Connect failures in a row.
    pub consecutive_connect_failures: u64,
    /// Guards held longer than `leak_threshold` right now.
    pub held_too_long: usize,
    /// Advice, most pressing first; empty when there is nothing to say.
    pub recommendations: Vec<Recommendation>,
}

impl Health {
    /// Judges a [`Stats`] snapshot against the pool's settings.
    /// `held_too_long` is the number of guards currently held longer than
    /// `leak_threshold` ([`Pool::health`] counts them; pass 0 if unknown).
    pub fn assess(stats: &Stats, config: &Config, held_too_long: usize) -> Health {
        let utilization = stats.utilization();
        let down = stats.closed || (stats.consecutive_connect_failures > 0 && stats.idle == 0);
        let status = if down {
            HealthStatus::Down
        } else if utilization >= config.health_critical {
            HealthStatus::Critical
        } else if utilization >= config.health_warning {
            HealthStatus::Warning
        } else {
            HealthStatus::Healthy
        };
        Health {
            name: stats.name.clone(),
            status,
            utilization,
            in_use: stats.in_use,
            idle: stats.idle,
            max_open: stats.max_open(),
            waiting: stats.waiting,
            consecutive_connect_failures: stats.consecutive_connect_failures,
            held_too_long,
            recommendations: recommend(stats, config, status, held_too_long),
        }
    }

    /// The recommendations as one line each, for logs and consoles.
    pub fn summary(&self) -> String {
        let mut out = format!(
            "pool '{}': {} (utilization {:.0}%, {} of {} in use, {} waiting)",
            self.name,
            self.status,
            self.utilization * 100.0,
            self.in_use,
            self.max_open,
            self.waiting
        );
        for r in &self.recommendations {
            out.push_str("\n- ");
            out.push_str(&r.message);
        }
        out
    }
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

fn plural(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// The advice for a snapshot, most pressing first.
fn recommend(
    s: &Stats,
    cfg: &Config,
    status: HealthStatus,
    held_too_long: usize,
) -> Vec<Recommendation> {
    let mut out = Vec::new();
    let mut add = |code: &'static str, message: String| out.push(Recommendation { code, message });
    let capacity = if s.max_overflow == 0 {
        "raise pool_size or set max_overflow"
    } else {
        "raise max_overflow or pool_size"
    };

    if s.closed {
        add(
            "pool_closed",
            "the pool is closed: no checkout can succeed; build a new pool".to_owned(),
        );
    }
    if s.consecutive_connect_failures > 0 {
        let last = s
            .last_connect_error
            .as_deref()
            .map(|e| format!(", last error: {e}"))
            .unwrap_or_default();
        let idle = if s.idle == 0 {
            "nothing is idle, so checkouts wait for connects that fail"
        } else {
            "idle connections still serve checkouts"
        };
        add(
            "connects_failing",
            format!(
                "connects are failing ({} in a row{last}); {idle}: check that the database is up \
                 and the connection settings are right",
                s.consecutive_connect_failures
            ),
        );
    } else if s.connect_errors > 0 {
        add(
            "connect_errors",
            format!(
                "{} since start; connects succeed again now: check the database's and the \
                 network's logs if this number keeps growing",
                plural(
                    s.connect_errors,
                    "connect attempt failed",
                    "connect attempts failed"
                )
            ),
        );
    }
    if !s.closed {
        match status {
            HealthStatus::Critical => add(
                "saturated",
                format!(
                    "utilization is {:.0}% ({} of {} connections in use, critical at {:.0}%): \
                     {capacity}, or find the code holding connections (see holders)",
                    s.utilization() * 100.0,
                    s.in_use,
                    s.max_open(),
                    cfg.health_critical * 100.0
                ),
            ),
            HealthStatus::Warning => add(
                "high_utilization",
                format!(
                    "utilization is {:.0}% ({} of {} connections in use, warning at {:.0}%): \
                     {capacity} before load grows further",
                    s.utilization() * 100.0,
                    s.in_use,
                    s.max_open(),
                    cfg.health_warning * 100.0
                ),
            ),
            _ => {}
        }
    }
    if s.waiting > 0 {
        add(
            "waiting_now",
            format!(
                "{} for a connection now: {capacity}",
                plural(s.waiting as u64, "thread is waiting", "threads are waiting")
            ),
        );
    }
    if s.checkouts >= MIN_SAMPLE && s.waited as f64 > WAITED_RATIO * s.checkouts as f64 {
        add(
            "checkouts_waited",
            format!(
                "checkouts waited in {:.0}% of cases ({} of {}, p99 wait {}): {capacity}",
                percent(s.waited, s.checkouts),
                s.waited,
                s.checkouts,
                crate::fmt_duration(s.wait.p99)
            ),
        );
    }
    if s.timeouts > 0 {
        add(
            "timeouts",
            format!(
                "{} after checkout_timeout ({}): {capacity}, or find the code holding \
                 connections (see holders); raise checkout_timeout only if waiting that long \
                 is acceptable",
                plural(s.timeouts, "checkout timed out", "checkouts timed out"),
                crate::fmt_duration(cfg.checkout_timeout)
            ),
        );
    }
    if s.queue_full > 0 {
        add(
            "queue_full",
            format!(
                "{} because max_waiting ({}) threads were already waiting: raise max_waiting \
                 or the pool's capacity, or shed load earlier",
                plural(
                    s.queue_full,
                    "checkout was refused",
                    "checkouts were refused"
                ),
                cfg.max_waiting.unwrap_or_default()
            ),
        );
    }
    let threshold = cfg
        .leak_threshold
        .map(|t| format!(" ({})", crate::fmt_duration(t)))
        .unwrap_or_default();
    if held_too_long > 0 {
        add(
            "held_too_long",
            format!(
                "{} longer than the leak threshold{threshold}: see holders for their threads and \
                 call sites",
                plural(held_too_long as u64, "guard is held", "guards are held")
            ),
        );
    } else if s.leaks_reported > 0 {
        add(
            "leaks_reported",
            format!(
                "{} longer than the leak threshold{threshold} since start: the warnings in the \
                 log name their call sites",
                plural(s.leaks_reported, "guard was held", "guards were held")
            ),
        );
    }
    if s.held.count >= MIN_SAMPLE && s.held.mean >= LONG_MEAN_HOLD {
        add(
            "long_holds",
            format!(
                "guards are held {} on average (longest {}): return connections as soon as the \
                 database work is done, not after other slow work",
                crate::fmt_duration(s.held.mean),
                crate::fmt_duration(s.held.max)
            ),
        );
    }
    let excess = s.closed_by.excess;
    if s.created >= MIN_SAMPLE && excess as f64 >= EXCESS_RATIO * s.created as f64 {
        add(
            "excess_closes",
            format!(
                "{:.0}% of the connections opened were closed as excess overflow on return \
                 ({excess} of {}): steady load exceeds pool_size ({}), raise pool_size to stop \
                 opening and closing connections",
                percent(excess, s.created),
                s.created,
                s.pool_size
            ),
        );
    }
    let failed_pings = s.closed_by.failed_ping;
    if failed_pings > 0
        && (s.pings < MIN_SAMPLE || failed_pings as f64 > FAILED_PING_RATIO * s.pings as f64)
    {
        add(
            "failed_pings",
            format!(
                "{} of {} pre-pings failed: the server or a proxy drops idle connections; set \
                 recycle_after (or idle_timeout) below the server's idle timeout",
                failed_pings, s.pings
            ),
        );
    }
    if s.closed_by.broken > 0 {
        add(
            "broken",
            format!(
                "{} found broken (marked broken, failed checkin or closed by the server): look \
                 for errors in the code using them and for server restarts",
                plural(s.closed_by.broken, "connection was", "connections were")
            ),
        );
    }
    if s.closed_by.failed_init > 0 {
        add(
            "failed_init",
            format!(
                "{} failed Manager::init: check the initialiser (session settings, pragmas, \
                 init SQL)",
                plural(s.closed_by.failed_init, "new connection", "new connections")
            ),
        );
    }
    if s.closed_by.panicked > 0 {
        add(
            "panicked",
            format!(
                "{} closed because their thread panicked while holding them: fix the panics",
                plural(s.closed_by.panicked, "connection was", "connections were")
            ),
        );
    }
    out
}

impl<M: Manager> Pool<M> {
    /// The pool's health: status, utilization and recommendations (see
    /// [`Health`]). Costs one [`stats`](Pool::stats) snapshot and a scan of
    /// the current checkouts.
    pub fn health(&self) -> Health {
        let stats = self.stats();
        let config = self.config();
        let held_too_long = match config.leak_threshold {
            Some(threshold) => {
                let now = config.clock.now();
                let mut n = 0;
                self.shared().slots.each(|cell| {
                    let held_long = cell
                        .holder
                        .as_ref()
                        .is_some_and(|c| now.since(c.taken) >= threshold);
                    n += usize::from(held_long);
                });
                n
            }
            None => 0,
        };
        Health::assess(&stats, config, held_too_long)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Builder;
    use crate::stats::{ClosedCounts, HeldStats, WaitStats};

    fn config() -> Config {
        Builder::<()>::new()
            .pool_size(8)
            .max_overflow(2)
            .leak_threshold(Duration::from_secs(10))
            .validate()
            .unwrap()
    }

    fn stats(in_use: usize, idle: usize) -> Stats {
        Stats {
            name: "unit".to_owned(),
            pool_size: 8,
            max_overflow: 2,
            open: in_use + idle,
            idle,
            in_use,
            overflow_open: (in_use + idle).saturating_sub(8),
            overflow_in_use: in_use.saturating_sub(8),
            waiting: 0,
            connecting: 0,
            closed: false,
            created: (in_use + idle) as u64,
            closed_by: ClosedCounts::default(),
            detached: 0,
            connect_errors: 0,
            consecutive_connect_failures: 0,
            last_connect_error: None,
            checkouts: 0,
            waited: 0,
            timeouts: 0,
            queue_full: 0,
            pings: 0,
            leaks_reported: 0,
            wait: WaitStats::default(),
            held: HeldStats::default(),
        }
    }

    fn codes(h: &Health) -> Vec<&'static str> {
        h.recommendations.iter().map(|r| r.code).collect()
    }

    #[test]
    fn status_follows_utilization_thresholds() {
        let cfg = config();
        let cases = [
            (0, HealthStatus::Healthy),
            (6, HealthStatus::Healthy),
            (7, HealthStatus::Warning),
            (8, HealthStatus::Warning),
            (9, HealthStatus::Critical),
            (10, HealthStatus::Critical),
        ];
        for (in_use, want) in cases {
            let h = Health::assess(&stats(in_use, 10 - in_use), &cfg, 0);
            assert_eq!(h.status, want, "in_use {in_use}");
            assert!((h.utilization - in_use as f64 / 10.0).abs() < 1e-9);
        }
    }

    #[test]
    fn custom_thresholds_are_used() {
        let cfg = Builder::<()>::new()
            .pool_size(8)
            .max_overflow(2)
            .health_warning(0.3)
            .health_critical(0.5)
            .validate()
            .unwrap();
        assert_eq!(
            Health::assess(&stats(2, 0), &cfg, 0).status,
            HealthStatus::Healthy
        );
        assert_eq!(
            Health::assess(&stats(3, 0), &cfg, 0).status,
            HealthStatus::Warning
        );
        assert_eq!(
            Health::assess(&stats(5, 0), &cfg, 0).status,
            HealthStatus::Critical
        );
    }

    #[test]
    fn down_when_connects_fail_and_nothing_is_idle() {
        let cfg = config();
        let mut s = stats(0, 0);
        s.consecutive_connect_failures = 3;
        s.connect_errors = 3;
        s.last_connect_error = Some("connection refused".to_owned());
        let h = Health::assess(&s, &cfg, 0);
        assert_eq!(h.status, HealthStatus::Down);
        assert_eq!(h.status.http_status(), 503);
        let r = &h.recommendations[0];
        assert_eq!(r.code, "connects_failing");
        assert!(r.message.contains("3 in a row"), "{r}");
        assert!(r.message.contains("connection refused"), "{r}");
        // An idle connection still serves checkouts: not down.
        let mut s = s.clone();
        s.idle = 1;
        s.open = 1;
        assert_eq!(Health::assess(&s, &cfg, 0).status, HealthStatus::Healthy);
    }

    #[test]
    fn closed_pool_is_down() {
        let mut s = stats(0, 0);
        s.closed = true;
        let h = Health::assess(&s, &config(), 0);
        assert_eq!(h.status, HealthStatus::Down);
        assert_eq!(codes(&h), ["pool_closed"]);
    }

    #[test]
    fn a_quiet_pool_has_nothing_to_recommend() {
        let mut s = stats(1, 7);
        s.checkouts = 1000;
        s.waited = 10;
        s.pings = 500;
        s.held = HeldStats {
            count: 1000,
            mean: Duration::from_millis(5),
            max: Duration::from_millis(50),
            sum: Duration::from_secs(5),
        };
        let h = Health::assess(&s, &config(), 0);
        assert_eq!(h.status, HealthStatus::Healthy);
        assert!(h.recommendations.is_empty(), "{:?}", h.recommendations);
    }

    #[test]
    fn frequent_waits_recommend_more_capacity() {
        let mut s = stats(1, 7);
        s.checkouts = 100;
        s.waited = 12;
        let h = Health::assess(&s, &config(), 0);
        let r = h
            .recommendations
            .iter()
            .find(|r| r.code == "checkouts_waited")
            .unwrap();
        assert!(
            r.message.starts_with("checkouts waited in 12% of cases"),
            "{r}"
        );
        assert!(r.message.contains("raise max_overflow or pool_size"), "{r}");
        // Too few checkouts to judge.
        s.checkouts = 10;
        s.waited = 5;
        assert!(!codes(&Health::assess(&s, &config(), 0)).contains(&"checkouts_waited"));
    }

    #[test]
    fn guards_held_too_long_point_to_holders() {
        let h = Health::assess(&stats(3, 5), &config(), 3);
        let r = h
            .recommendations
            .iter()
            .find(|r| r.code == "held_too_long")
            .unwrap();
        assert!(
            r.message.starts_with(
                "3 guards are held longer than the leak threshold (10.00s): see holders"
            ),
            "{r}"
        );
        let mut s = stats(0, 8);
        s.leaks_reported = 2;
        assert_eq!(codes(&Health::assess(&s, &config(), 0)), ["leaks_reported"]);
    }

    #[test]
    fn counters_map_to_their_advice() {
        let mut s = stats(0, 8);
        s.created = 100;
        s.closed_by.excess = 60;
        s.closed_by.failed_ping = 10;
        s.closed_by.broken = 2;
        s.closed_by.failed_init = 1;
        s.closed_by.panicked = 1;
        s.pings = 100;
        s.timeouts = 4;
        s.queue_full = 5;
        s.connect_errors = 2;
        let h = Health::assess(&s, &config(), 0);
        assert_eq!(
            codes(&h),
            [
                "connect_errors",
                "timeouts",
                "queue_full",
                "excess_closes",
                "failed_pings",
                "broken",
                "failed_init",
                "panicked"
            ]
        );
        let text = h.summary();
        assert!(text.contains("4 checkouts timed out"), "{text}");
        assert!(text.contains("60% of the connections opened"), "{text}");
        assert!(text.contains("raise pool_size"), "{text}");
        assert!(text.contains("10 of 100 pre-pings failed"), "{text}");
    }

    #[test]
    fn no_overflow_advice_names_pool_size() {
        let cfg = Builder::<()>::new()
            .pool_size(2)
            .max_overflow(0)
            .validate()
            .unwrap();
        let mut s = stats(2, 0);
        s.pool_size = 2;
        s.max_overflow = 0;
        s.waiting = 1;
        let h = Health::assess(&s, &cfg, 0);
        assert_eq!(h.status, HealthStatus::Critical);
        assert_eq!(codes(&h), ["saturated", "waiting_now"]);
        assert!(
            h.recommendations[1]
                .message
                .contains("raise pool_size or set max_overflow")
        );
    }

    #[test]
    fn summary_shows_every_setting() {
        let c = config().summary();
        assert_eq!((c.pool_size, c.max_overflow, c.max_open), (8, 2, 10));
        assert_eq!(c.checkout_timeout_secs, 30.0);
        assert_eq!(c.leak_threshold_secs, Some(10.0));
        assert_eq!(c.recycle_after_secs, Some(1800.0));
        assert_eq!(c.idle_timeout_secs, None);
        assert_eq!((c.health_warning, c.health_critical), (0.7, 0.9));
    }
}
