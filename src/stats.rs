//! Counters kept under the pool's lock, and the [`Stats`] snapshot built
//! from them. Checkouts taken from a thread's cell and every return's hold
//! time are counted in the connection's cell instead (`slots.rs`, a
//! `Tally` per cell) and added in when a snapshot is taken.
//!
//! Invariant (at rest, when no checkout, return or connect is in flight):
//! `created - closed_total - detached == open`. Counters only ever grow.

use std::time::Duration;

/// Why the pool closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum CloseReason {
    /// Older than `recycle_after`.
    Recycled,
    /// Idle longer than `idle_timeout`.
    IdleTimeout,
    /// `Manager::is_broken` said so, the guard was marked broken, or a
    /// checkout/checkin hook failed.
    Broken,
    /// A pre-ping failed.
    FailedPing,
    /// Returned while `pool_size` connections were already idle (overflow),
    /// or a late connect result with no room left.
    Excess,
    /// Retired by `Pool::retire_all`.
    Retired,
    /// Its guard was dropped while its thread panicked.
    Panicked,
    /// `Manager::init` failed on the new connection.
    FailedInit,
    /// The pool was closed.
    PoolClosed,
}

impl CloseReason {
    /// Every reason, in the order of [`ClosedCounts`].
    pub const ALL: [CloseReason; 9] = [
        CloseReason::Recycled,
        CloseReason::IdleTimeout,
        CloseReason::Broken,
        CloseReason::FailedPing,
        CloseReason::Excess,
        CloseReason::Retired,
        CloseReason::Panicked,
        CloseReason::FailedInit,
        CloseReason::PoolClosed,
    ];

    /// The reason as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Recycled => "recycled",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::Broken => "broken",
            CloseReason::FailedPing => "failed_ping",
            CloseReason::Excess => "excess",
            CloseReason::Retired => "retired",
            CloseReason::Panicked => "panicked",
            CloseReason::FailedInit => "failed_init",
            CloseReason::PoolClosed => "pool_closed",
        }
    }

    fn index(self) -> usize {
        CloseReason::ALL
            .iter()
            .position(|r| *r == self)
            .unwrap_or_default()
    }
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Upper bounds of the wait-time histogram buckets, in seconds (`+Inf` is
/// implied after the last).
pub const WAIT_BUCKETS: [f64; 12] = [
    0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0,
];

/// Counters since start; all fields only grow. Lives inside the pool's
/// locked state, so updating one costs a plain add under a lock already held.
#[derive(Debug, Clone, Default)]
pub(crate) struct Counters {
    pub(crate) created: u64,
    pub(crate) closed: [u64; CloseReason::ALL.len()],
    pub(crate) detached: u64,
    pub(crate) connect_errors: u64,
    pub(crate) checkouts: u64,
    pub(crate) waited: u64,
    pub(crate) timeouts: u64,
    pub(crate) queue_full: u64,
    pub(crate) pings: u64,
    pub(crate) leaks_reported: u64,
    /// Waits of checkouts that waited, bucketed by `WAIT_BUCKETS` (+Inf last).
    pub(crate) wait_buckets: [u64; WAIT_BUCKETS.len() + 1],
    pub(crate) wait_sum_ns: u128,
    pub(crate) wait_max_ns: u64,
    pub(crate) held_count: u64,
    pub(crate) held_sum_ns: u128,
    pub(crate) held_max_ns: u64,
}

impl Counters {
    pub(crate) fn closed(&mut self, reason: CloseReason) {
        self.closed[reason.index()] += 1;
    }

    #[cfg(test)]
    pub(crate) fn closed_total(&self) -> u64 {
        self.closed.iter().sum()
    }

    /// Counts a checkout handed out, with its wait if it waited.
    pub(crate) fn count_checkout(&mut self, waited: Option<Duration>) {
        self.checkouts += 1;
        if let Some(w) = waited {
            self.record_wait(w);
        }
    }

    pub(crate) fn record_wait(&mut self, waited: Duration) {
        let ns = u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX);
        let secs = waited.as_secs_f64();
        let bucket = WAIT_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(WAIT_BUCKETS.len());
        self.wait_buckets[bucket] += 1;
        self.wait_sum_ns += u128::from(ns);
        self.wait_max_ns = self.wait_max_ns.max(ns);
        self.waited += 1;
    }
}

/// Connections closed, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct ClosedCounts {
    /// Older than `recycle_after`.
    pub recycled: u64,
    /// Idle longer than `idle_timeout`.
    pub idle_timeout: u64,
    /// Found broken (on return, on checkout, or marked by the user).
    pub broken: u64,
    /// Failed their pre-ping.
    pub failed_ping: u64,
    /// Overflow connections closed on return.
    pub excess: u64,
    /// Retired by `retire_all`.
    pub retired: u64,
    /// Dropped while their thread panicked.
    pub panicked: u64,
    /// `Manager::init` failed.
    pub failed_init: u64,
    /// Closed with the pool.
    pub pool_closed: u64,
}

impl ClosedCounts {
    /// The count for one reason.
    pub fn get(&self, reason: CloseReason) -> u64 {
        match reason {
            CloseReason::Recycled => self.recycled,
            CloseReason::IdleTimeout => self.idle_timeout,
            CloseReason::Broken => self.broken,
            CloseReason::FailedPing => self.failed_ping,
            CloseReason::Excess => self.excess,
            CloseReason::Retired => self.retired,
            CloseReason::Panicked => self.panicked,
            CloseReason::FailedInit => self.failed_init,
            CloseReason::PoolClosed => self.pool_closed,
        }
    }

    /// All reasons together.
    pub fn total(&self) -> u64 {
        CloseReason::ALL.iter().map(|r| self.get(*r)).sum()
    }
}

/// Checkout wait times. Checkouts served without waiting count as zero.
#[derive(Debug, Clone, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct WaitStats {
    /// Mean over all checkouts.
    pub mean: Duration,
    /// Longest wait.
    pub max: Duration,
    /// Median, from the histogram (upper bound of its bucket).
    pub p50: Duration,
    /// 90th percentile, from the histogram.
    pub p90: Duration,
    /// 99th percentile, from the histogram.
    pub p99: Duration,
    /// Cumulative histogram: `(upper bound in seconds, checkouts at or
    /// below)`, the last bound being `f64::INFINITY`.
    pub buckets: Vec<(f64, u64)>,
    /// Sum of all waits.
    pub sum: Duration,
}

/// How long guards were held (measured on the coarse clock: a few
/// milliseconds of resolution, unbiased on average).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct HeldStats {
    /// Returns counted.
    pub count: u64,
    /// Mean hold time.
    pub mean: Duration,
    /// Longest hold time.
    pub max: Duration,
    /// Sum of all hold times.
    pub sum: Duration,
}

/// A snapshot of a pool: its size, its state and counters since start.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct Stats {
    /// The pool's name.
    pub name: String,
    /// The `pool_size` setting.
    pub pool_size: usize,
    /// The `max_overflow` setting.
    pub max_overflow: usize,
    /// Connections open (in use + idle).
    pub open: usize,
    /// Connections idle.
    pub idle: usize,
    /// Connections checked out (or being validated for a checkout).
    pub in_use: usize,
    /// Connections open beyond `pool_size`.
    pub overflow_open: usize,
    /// Connections in use beyond `pool_size`.
    pub overflow_in_use: usize,
    /// Threads waiting in `get()`.
    pub waiting: usize,
    /// Connect attempts in flight.
    pub connecting: usize,
    /// Whether the pool is closed.
    pub closed: bool,
    /// Connections opened since start.
    pub created: u64,
    /// Connections closed since start, by reason.
    pub closed_by: ClosedCounts,
    /// Connections taken out for good with `Pooled::detach`.
    pub detached: u64,
    /// Failed connect attempts.
    pub connect_errors: u64,
    /// Connect failures in a row (0 once one succeeds).
    pub consecutive_connect_failures: u64,
    /// The last connect error's message, while connects are failing.
    pub last_connect_error: Option<String>,
    /// Connections handed to callers. A connection found broken by the
    /// no-I/O check at that instant is counted too (and in `closed_by.broken`).
    pub checkouts: u64,
    /// Checkouts that had to wait.
    pub waited: u64,
    /// `get()` calls that timed out.
    pub timeouts: u64,
    /// `get()` calls refused by `max_waiting`.
    pub queue_full: u64,
    /// Pre-pings run.
    pub pings: u64,
    /// Guards reported as held longer than `leak_threshold`.
    pub leaks_reported: u64,
    /// Checkout wait times.
    pub wait: WaitStats,
    /// Hold times.
    pub held: HeldStats,
}

impl Stats {
    /// `pool_size + max_overflow`.
    pub fn max_open(&self) -> usize {
        self.pool_size + self.max_overflow
    }

    /// In use over the maximum, from 0.0 to 1.0.
    pub fn utilization(&self) -> f64 {
        if self.max_open() == 0 {
            return 0.0;
        }
        self.in_use as f64 / self.max_open() as f64
    }
}

pub(crate) fn closed_counts(c: &Counters) -> ClosedCounts {
    let at = |r: CloseReason| c.closed[r.index()];
    ClosedCounts {
        recycled: at(CloseReason::Recycled),
        idle_timeout: at(CloseReason::IdleTimeout),
        broken: at(CloseReason::Broken),
        failed_ping: at(CloseReason::FailedPing),
        excess: at(CloseReason::Excess),
        retired: at(CloseReason::Retired),
        panicked: at(CloseReason::Panicked),
        failed_init: at(CloseReason::FailedInit),
        pool_closed: at(CloseReason::PoolClosed),
    }
}

pub(crate) fn wait_stats(c: &Counters) -> WaitStats {
    // Checkouts that did not wait sit in the first bucket with a wait of 0.
    let not_waited = c.checkouts.saturating_sub(c.waited);
    let mut counts = c.wait_buckets;
    counts[0] += not_waited;
    let total: u64 = counts.iter().sum();
    let mut buckets = Vec::with_capacity(counts.len());
    let mut cumulative = 0;
    for (i, n) in counts.iter().enumerate() {
        cumulative += n;
        let bound = WAIT_BUCKETS.get(i).copied().unwrap_or(f64::INFINITY);
        buckets.push((bound, cumulative));
    }
    let max = Duration::from_nanos(c.wait_max_ns);
    let quantile = |q: f64| -> Duration {
        if total == 0 {
            return Duration::ZERO;
        }
        let rank = (q * total as f64).ceil().max(1.0) as u64;
        if rank <= not_waited {
            return Duration::ZERO;
        }
        let bound = buckets
            .iter()
            .find(|(_, cum)| *cum >= rank)
            .map(|(b, _)| *b)
            .unwrap_or(f64::INFINITY);
        if bound.is_finite() {
            Duration::from_secs_f64(bound).min(max)
        } else {
            max
        }
    };
    let sum = Duration::from_nanos(u64::try_from(c.wait_sum_ns).unwrap_or(u64::MAX));
    let mean = if total == 0 {
        Duration::ZERO
    } else {
        Duration::from_nanos(u64::try_from(c.wait_sum_ns / u128::from(total)).unwrap_or(u64::MAX))
    };
    WaitStats {
        mean,
        max,
        p50: quantile(0.50),
        p90: quantile(0.90),
        p99: quantile(0.99),
        buckets,
        sum,
    }
}

pub(crate) fn held_stats(c: &Counters) -> HeldStats {
    let mean = if c.held_count == 0 {
        Duration::ZERO
    } else {
        Duration::from_nanos(
            u64::try_from(c.held_sum_ns / u128::from(c.held_count)).unwrap_or(u64::MAX),
        )
    };
    HeldStats {
        count: c.held_count,
        mean,
        max: Duration::from_nanos(c.held_max_ns),
        sum: Duration::from_nanos(u64::try_from(c.held_sum_ns).unwrap_or(u64::MAX)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles_come_from_buckets() {
        let mut c = Counters {
            checkouts: 100,
            ..Counters::default()
        };
        for _ in 0..10 {
            c.record_wait(Duration::from_millis(3));
        }
        c.record_wait(Duration::from_secs(2));
        c.checkouts += 1;
        let w = wait_stats(&c);
        assert_eq!(w.p50, Duration::ZERO, "most checkouts did not wait");
        assert_eq!(w.p99, Duration::from_millis(5));
        assert_eq!(w.max, Duration::from_secs(2));
        assert_eq!(w.buckets.last().unwrap().1, 101);
        assert!(w.buckets.last().unwrap().0.is_infinite());
    }

    #[test]
    fn close_reasons_round_trip() {
        let mut c = Counters::default();
        for (i, r) in CloseReason::ALL.iter().enumerate() {
            for _ in 0..=i {
                c.closed(*r);
            }
        }
        let counts = closed_counts(&c);
        for (i, r) in CloseReason::ALL.iter().enumerate() {
            assert_eq!(counts.get(*r), i as u64 + 1, "{r}");
        }
        assert_eq!(counts.total(), c.closed_total());
    }
}
