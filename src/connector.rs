//! Opening connections: short-lived connect threads, and the backoff that
//! spaces retries while connects fail.
//!
//! A connect never runs under the pool's lock nor on a caller's thread, so a
//! slow or hung connect blocks no checkout, return or stats call, and a
//! caller's `get()` returns at its own deadline whatever the driver does.
//! Each attempt reserves capacity (`opening`) under the lock first; the
//! reservation is released when the attempt ends, or earlier when it runs
//! past `connect_timeout` (it is then abandoned: a late connection is kept
//! if there is room, closed otherwise).
//!
//! Threads: at most `max_connecting` at a time (one while connects fail),
//! started on demand, ending as soon as there is nothing to open.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::error::SharedError;
use crate::events::emit;
use crate::manager::Manager;
use crate::pool::Shared;
use crate::stats::CloseReason;

/// The delay before retry number `failures` (1 for the first retry), with up
/// to 20 % taken off at random (`unit` in `[0, 1)`), never above the cap.
pub(crate) fn backoff_delay(cfg: &Config, failures: u64, unit: f64) -> Duration {
    let exp = failures.saturating_sub(1).min(64) as i32;
    let base = cfg.backoff_initial.as_secs_f64() * cfg.backoff_multiplier.powi(exp);
    let capped = base.min(cfg.backoff_max.as_secs_f64());
    Duration::from_secs_f64(capped * (1.0 - 0.2 * unit.clamp(0.0, 1.0)))
}

/// A number in `[0, 1)` that differs from call to call (jitter only).
pub(crate) fn jitter_unit(seed: u64) -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    let mut z = seed ^ nanos.rotate_left(32) ^ 0x9E37_79B9_7F4A_7C15;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
}

enum Failure {
    Connect(SharedError),
    Init(SharedError),
}

impl<M: Manager> Shared<M> {
    /// Starts `n` connect threads (already counted in `connect_threads`).
    pub(crate) fn spawn_connectors(self: &Arc<Self>, n: usize) {
        for _ in 0..n {
            let weak = Arc::downgrade(self);
            let spawned = std::thread::Builder::new()
                .name(format!("cistern-connect-{}", self.config.name))
                .spawn(move || connect_loop(weak));
            if let Err(e) = spawned {
                self.state.lock().connect_threads -= 1;
                log::error!(
                    "pool '{}': could not start a connect thread: {e}",
                    self.config.name
                );
            }
        }
    }

    fn open_one(&self) -> Result<M::Connection, Failure> {
        let m = &self.manager;
        let connected = catch_unwind(AssertUnwindSafe(|| m.connect()));
        let mut conn = match connected {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err(Failure::Connect(Arc::new(e))),
            Err(_) => return Err(Failure::Connect(panicked("Manager::connect"))),
        };
        let failure = match catch_unwind(AssertUnwindSafe(|| m.init(&mut conn))) {
            Ok(Ok(())) => return Ok(conn),
            Ok(Err(e)) => Failure::Init(Arc::new(e)),
            Err(_) => Failure::Init(panicked("Manager::init")),
        };
        close_quietly(&self.config.name, conn);
        Err(failure)
    }
}

/// Drops (closes) a connection that never entered the pool, containing a
/// panic of the driver's destructor so this connect thread lives on.
fn close_quietly<C>(pool: &str, conn: C) {
    if catch_unwind(AssertUnwindSafe(move || drop(conn))).is_err() {
        log::error!("pool '{pool}': dropping a connection that never entered the pool panicked");
    }
}

fn panicked(what: &str) -> SharedError {
    Arc::new(std::io::Error::other(format!("{what} panicked")))
}

/// One connect thread: opens connections while the pool wants them.
fn connect_loop<M: Manager>(pool: Weak<Shared<M>>) {
    loop {
        let Some(shared) = pool.upgrade() else {
            return;
        };
        let cfg = &shared.config;
        let attempt = {
            let mut st = shared.state.lock();
            loop {
                if st.closed || st.opening >= st.wanted_attempts(cfg) {
                    st.connect_threads -= 1;
                    return;
                }
                match st.connect.retry_at {
                    Some(at) if Instant::now() < at => {
                        // Backing off; close() and connect results wake us.
                        shared.changed.wait_until(&mut st, at);
                    }
                    _ => break,
                }
            }
            st.start_attempt(Instant::now())
        };
        let result = shared.open_one();
        let took = attempt.started.elapsed();
        let now = cfg.clock.now();
        let mut closing = Vec::new();
        let mut log_failure: Option<(SharedError, u64, Duration, bool)> = None;
        let mut opened_id = None;
        let mut late = None;
        let abandoned = {
            let mut st = shared.state.lock();
            let abandoned = !st.end_attempt(attempt.id);
            let failure = match result {
                Ok(conn) => {
                    st.connect.failures = 0;
                    st.connect.retry_at = None;
                    st.connect.last_error = None;
                    // Exact idle figures for the rules of `place`.
                    shared.slots.settle(&mut st);
                    match st.admit_new(cfg, attempt, conn, now, &mut closing) {
                        Ok(id) => opened_id = Some(id),
                        Err(conn) => late = Some(conn),
                    }
                    None
                }
                Err(Failure::Init(e)) => {
                    st.counters.created += 1;
                    st.counters.closed(CloseReason::FailedInit);
                    Some(e)
                }
                Err(Failure::Connect(e)) => {
                    // An abandoned attempt was counted as failed when it
                    // was given up on; count each attempt once.
                    if !abandoned {
                        st.counters.connect_errors += 1;
                    }
                    Some(e)
                }
            };
            if let Some(e) = failure {
                // One log line per backoff step: an attempt that fails while
                // a step is already scheduled (it ran concurrently with the
                // failure that scheduled it) is counted but not logged.
                let at = Instant::now();
                let new_step = st.connect.retry_at.is_none_or(|r| r <= at);
                if !abandoned {
                    st.connect.failures += 1;
                }
                let delay = backoff_delay(cfg, st.connect.failures, jitter_unit(attempt.id));
                st.connect.retry_at = Some(at + delay);
                st.connect.last_error = Some(Arc::clone(&e));
                log_failure = Some((e, st.connect.failures, delay, new_step));
            }
            abandoned
        };
        shared.changed.notify_all();
        if let Some(conn) = late {
            close_quietly(&cfg.name, conn);
        }
        if let Some((e, failures, delay, new_step)) = log_failure {
            if new_step {
                log::warn!(
                    "pool '{}': connect failed ({failures} in a row, next try in {}): {}",
                    cfg.name,
                    crate::fmt_duration(delay),
                    crate::error::Chain(&*e)
                );
            }
            // The hook sees every failed attempt, logged or not.
            if let Some(events) = &cfg.events {
                emit(&cfg.name, "on_connect_error", || {
                    events.on_connect_error(&cfg.name, &*e)
                });
            }
        }
        if let (Some(id), Some(events)) = (opened_id, &cfg.events) {
            emit(&cfg.name, "on_connect", || {
                events.on_connect(&cfg.name, id, took)
            });
        }
        shared.finish(closing);
        if abandoned {
            // This thread was written off when its attempt was abandoned.
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Builder;

    #[test]
    fn backoff_grows_and_caps() {
        let cfg = Builder::<()>::new()
            .backoff_initial(Duration::from_millis(500))
            .backoff_max(Duration::from_secs(30))
            .validate()
            .unwrap();
        let d: Vec<Duration> = (1..=10).map(|n| backoff_delay(&cfg, n, 0.0)).collect();
        assert_eq!(d[0], Duration::from_millis(500));
        assert_eq!(d[1], Duration::from_secs(1));
        assert_eq!(d[2], Duration::from_secs(2));
        assert_eq!(d[7], Duration::from_secs(30));
        assert_eq!(d[9], Duration::from_secs(30));
        // Jitter only shortens, by at most 20 %.
        let j = backoff_delay(&cfg, 3, 0.999);
        assert!(j < Duration::from_secs(2) && j > Duration::from_millis(1600));
        assert_eq!(backoff_delay(&cfg, u64::MAX, 0.0), Duration::from_secs(30));
    }

    #[test]
    fn jitter_is_in_range() {
        for seed in 0..1000 {
            let u = jitter_unit(seed);
            assert!((0.0..1.0).contains(&u));
        }
    }
}
