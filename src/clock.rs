//! Monotonic time for connection ages, hold times and idle times.
//!
//! The checkout and return paths read the clock once each. On Linux they read
//! `CLOCK_MONOTONIC_COARSE` (about 5 ns through the vDSO, resolution one
//! kernel tick, 1 to 4 ms) instead of `Instant::now()` (about 30 ns on the
//! development machines): every rule that uses these ticks (ping bypass,
//! recycle, idle timeout, leak threshold) works in hundreds of milliseconds or
//! more. Waiting and deadlines use `std::time::Instant`.
//!
//! A [`Clock`] can also be manual (tests and the `testing` feature), so the
//! time rules can be exercised without sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A point on the pool's clock, in nanoseconds since an arbitrary origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub(crate) struct Tick(pub(crate) u64);

impl Tick {
    /// How long from `earlier` to `self`; zero when `earlier` is later.
    pub(crate) fn since(self, earlier: Tick) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// `self + d`, saturating at the end of time.
    pub(crate) fn plus(self, d: Duration) -> Tick {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        Tick(self.0.saturating_add(nanos))
    }
}

/// The clock a pool reads for connection ages. `Clock::default()` is the
/// system's monotonic clock; a manual clock only moves when told to.
///
/// ```
/// # #[cfg(feature = "testing")] {
/// use std::time::Duration;
/// let clock = cistern::Clock::manual();
/// let t0 = clock.now_nanos();
/// clock.advance(Duration::from_secs(5));
/// assert_eq!(clock.now_nanos() - t0, 5_000_000_000);
/// # }
/// ```
#[derive(Clone, Default)]
pub struct Clock {
    manual: Option<Arc<AtomicU64>>,
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.manual {
            None => f.write_str("Clock::system"),
            Some(t) => write!(f, "Clock::manual({} ns)", t.load(Ordering::Relaxed)),
        }
    }
}

impl Clock {
    /// The system's monotonic clock (the default).
    pub fn system() -> Clock {
        Clock { manual: None }
    }

    /// A clock that starts at one hour and moves only by [`Clock::advance`].
    #[cfg(any(test, feature = "testing"))]
    pub fn manual() -> Clock {
        Clock {
            manual: Some(Arc::new(AtomicU64::new(3_600_000_000_000))),
        }
    }

    /// Moves a manual clock forward; does nothing to the system clock.
    #[cfg(any(test, feature = "testing"))]
    pub fn advance(&self, d: Duration) {
        if let Some(t) = &self.manual {
            let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
            t.fetch_add(nanos, Ordering::SeqCst);
        }
    }

    /// The current reading in nanoseconds (for tests of the clock itself).
    #[cfg(any(test, feature = "testing"))]
    pub fn now_nanos(&self) -> u64 {
        self.now().0
    }

    /// The hot-path reading: coarse on the system clock.
    #[inline]
    pub(crate) fn now(&self) -> Tick {
        match &self.manual {
            None => coarse_now(),
            Some(t) => Tick(t.load(Ordering::SeqCst)),
        }
    }
}

#[cfg(target_os = "linux")]
#[inline]
fn coarse_now() -> Tick {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
    // tv_sec and tv_nsec of a monotonic clock are never negative.
    Tick((ts.tv_sec as u64).wrapping_mul(1_000_000_000) + ts.tv_nsec as u64)
}

#[cfg(not(target_os = "linux"))]
#[inline]
fn coarse_now() -> Tick {
    use std::sync::OnceLock;
    use std::time::Instant;
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    let origin = *ORIGIN.get_or_init(Instant::now);
    // One hour in, so that `since` of a default Tick never underflows.
    Tick(3_600_000_000_000 + origin.elapsed().as_nanos() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_clock_moves_forward() {
        let c = Clock::system();
        let a = c.now();
        std::thread::sleep(Duration::from_millis(20));
        assert!(c.now() > a);
    }

    #[test]
    fn tick_arithmetic_saturates() {
        assert_eq!(Tick(5).since(Tick(9)), Duration::ZERO);
        assert_eq!(
            Tick(u64::MAX - 1).plus(Duration::from_secs(9)),
            Tick(u64::MAX)
        );
        let m = Clock::manual();
        let t0 = m.now();
        m.advance(Duration::from_millis(1500));
        assert_eq!(m.now().since(t0), Duration::from_millis(1500));
    }
}
