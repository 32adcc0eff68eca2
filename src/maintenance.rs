//! The pool's one background thread: recycles over-age idle connections,
//! applies `idle_timeout`, keeps `min_idle` (starting connect threads), gives
//! up on hung connect attempts and reports leaked guards.
//!
//! It holds only a `Weak` to the pool and stops when the pool is closed or
//! gone. It sleeps on a crossbeam channel between rounds; `close()` wakes it.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use crate::config::Config;
use crate::error::Error;
use crate::events::emit;
use crate::idle::Closing;
use crate::manager::Manager;
use crate::pool::Shared;
use crate::stats::CloseReason;

/// How often the thread runs: a quarter of the shortest time rule, between
/// 10 ms and 1 s.
pub(crate) fn period(cfg: &Config) -> Duration {
    [
        cfg.idle_timeout,
        cfg.recycle_after,
        cfg.leak_threshold,
        Some(cfg.connect_timeout),
    ]
    .into_iter()
    .flatten()
    .map(|d| d / 4)
    .min()
    .unwrap_or(Duration::from_secs(1))
    .clamp(Duration::from_millis(10), Duration::from_secs(1))
}

pub(crate) fn start<M: Manager>(shared: &Arc<Shared<M>>, woken: Receiver<()>) -> Result<(), Error> {
    let weak = Arc::downgrade(shared);
    let every = period(&shared.config);
    std::thread::Builder::new()
        .name(format!("cistern-{}", shared.config.name))
        .spawn(move || run(weak, woken, every))
        .map(|_| ())
        .map_err(|e| {
            Error::config(
                "maintenance thread",
                e,
                "the OS to allow one more thread for the pool's background work",
            )
        })
}

fn run<M: Manager>(pool: Weak<Shared<M>>, woken: Receiver<()>, every: Duration) {
    loop {
        if let Err(RecvTimeoutError::Disconnected) = woken.recv_timeout(every) {
            return;
        }
        let Some(shared) = pool.upgrade() else {
            return;
        };
        if shared.state.lock().closed {
            return;
        }
        shared.housekeeping();
    }
}

impl<M: Manager> Shared<M> {
    /// One round of background work.
    pub(crate) fn housekeeping(self: &Arc<Self>) {
        let cfg = &self.config;
        let now = cfg.clock.now();
        let mut closing: Closing<M::Connection> = Vec::new();
        let mut leaks = Vec::new();
        let spawn = {
            let mut st = self.state.lock();
            // Parked connections back to the shared store, so that the rules
            // below see every idle connection (they are pinned again on
            // their next return).
            self.slots.settle(&mut st);
            // Over-age or retired idle connections.
            let generation = st.generation;
            let mut i = 0;
            while i < st.idle.len() {
                let meta = st.idle[i].meta;
                let reason = if meta.generation < generation {
                    Some(CloseReason::Retired)
                } else if meta.is_expired(now) {
                    Some(CloseReason::Recycled)
                } else {
                    None
                };
                match reason {
                    Some(r) => {
                        let e = st.idle.remove(i);
                        st.forget(&e.meta, r);
                        closing.push((e, r));
                    }
                    None => i += 1,
                }
            }
            // Idle too long, oldest first, down to min_idle.
            while st.idle.len() > cfg.min_idle
                && st.idle[0].meta.idle_expired(now, cfg.idle_timeout)
            {
                let e = st.idle.remove(0);
                st.forget(&e.meta, CloseReason::IdleTimeout);
                closing.push((e, CloseReason::IdleTimeout));
            }
            st.reap_hung_attempts(cfg, Instant::now());
            if let Some(threshold) = cfg.leak_threshold {
                self.slots.each(|cell| {
                    if let Some(record) = &mut cell.holder {
                        if !record.reported && now.since(record.taken) >= threshold {
                            record.reported = true;
                            leaks.push(record.to_holder(now));
                        }
                    }
                });
                st.counters.leaks_reported += leaks.len() as u64;
            }
            st.plan_connect_threads(cfg)
        };
        for h in &leaks {
            let backtrace = h
                .backtrace
                .as_deref()
                .map(|b| format!("\nbacktrace of the get() that took it:\n{b}"))
                .unwrap_or_default();
            log::warn!(
                "pool '{}': connection {} has been held for {} (leak_threshold {}) by thread '{}' (#{}), \
                 taken at {}. If the guard was leaked (mem::forget, stored forever), its slot stays \
                 occupied until the pool is closed.{backtrace}",
                cfg.name,
                h.connection_id,
                crate::fmt_duration(h.held),
                cfg.leak_threshold
                    .map(crate::fmt_duration)
                    .unwrap_or_default(),
                h.thread_name,
                h.thread_id,
                h.location
            );
            if let Some(events) = &cfg.events {
                emit(&cfg.name, "on_leak", || {
                    events.on_leak(&cfg.name, h.connection_id, h.held)
                });
            }
        }
        self.finish(closing);
        if spawn > 0 {
            self.spawn_connectors(spawn);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Builder;

    #[test]
    fn period_follows_the_shortest_rule() {
        let cfg = Builder::<()>::new()
            .leak_threshold(None)
            .recycle_after(None)
            .validate()
            .unwrap();
        assert_eq!(period(&cfg), Duration::from_secs(1));
        let cfg = Builder::<()>::new()
            .idle_timeout(Duration::from_millis(200))
            .validate()
            .unwrap();
        assert_eq!(period(&cfg), Duration::from_millis(50));
        let cfg = Builder::<()>::new()
            .leak_threshold(Duration::from_millis(1))
            .validate()
            .unwrap();
        assert_eq!(period(&cfg), Duration::from_millis(10));
    }
}
