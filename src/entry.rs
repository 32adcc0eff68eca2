//! One record per physical connection, and the pure time rules that decide
//! its fate. The rules take `now`, so they are tested without sleeping.

use std::time::Duration;

use crate::clock::Tick;

/// A connection with its bookkeeping. It travels between the idle store and
/// the guard; it is never in both. Boxed once, when the connection opens,
/// so that checkouts and returns move a pointer, not the connection and its
/// record (measured: about a fifth of the instructions of get()+drop).
pub(crate) struct Entry<C> {
    parts: Box<Parts<C>>,
}

/// What an [`Entry`] holds (reached through `Deref`: `entry.meta`).
pub(crate) struct Parts<C> {
    pub(crate) conn: C,
    pub(crate) meta: Meta,
}

impl<C> Entry<C> {
    pub(crate) fn new(conn: C, meta: Meta) -> Entry<C> {
        Entry {
            parts: Box::new(Parts { conn, meta }),
        }
    }

    /// The connection, out of its entry (detach).
    pub(crate) fn into_conn(self) -> C {
        self.parts.conn
    }
}

impl<C> std::ops::Deref for Entry<C> {
    type Target = Parts<C>;
    #[inline]
    fn deref(&self) -> &Parts<C> {
        &self.parts
    }
}

impl<C> std::ops::DerefMut for Entry<C> {
    #[inline]
    fn deref_mut(&mut self) -> &mut Parts<C> {
        &mut self.parts
    }
}

/// Facts about one physical connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Meta {
    /// Unique within the pool, increasing in creation order.
    pub(crate) id: u64,
    /// Index of its record in the holder table; owned by this connection from
    /// open to close.
    pub(crate) slot: u32,
    /// When it was opened.
    pub(crate) created: Tick,
    /// When it must be recycled (`created + recycle_after - spread`).
    pub(crate) expires: Option<Tick>,
    /// When it was last returned (or opened).
    pub(crate) last_used: Tick,
    /// When it was last known good (opened, or pinged successfully).
    pub(crate) validated: Tick,
    /// The `retire_all` generation it was opened in.
    pub(crate) generation: u64,
}

/// The ping rules in force for a checkout.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PingRules {
    pub(crate) pre_ping: bool,
    pub(crate) bypass: Duration,
    /// A ping failed at this time: connections last validated before it are
    /// pinged on their next checkout even inside the bypass window.
    pub(crate) suspect_before: Tick,
}

impl Meta {
    pub(crate) fn new(
        id: u64,
        slot: u32,
        now: Tick,
        recycle_after: Option<Duration>,
        spread: f64,
        generation: u64,
    ) -> Meta {
        Meta {
            id,
            slot,
            created: now,
            expires: recycle_after.map(|d| now.plus(spread_age(d, spread, id))),
            last_used: now,
            validated: now,
            generation,
        }
    }

    /// Over its age limit.
    pub(crate) fn is_expired(&self, now: Tick) -> bool {
        self.expires.is_some_and(|e| now >= e)
    }

    /// Idle for at least `idle_timeout`.
    pub(crate) fn idle_expired(&self, now: Tick, idle_timeout: Option<Duration>) -> bool {
        idle_timeout.is_some_and(|t| now.since(self.last_used) >= t)
    }

    /// Whether a checkout at `now` must ping it first.
    pub(crate) fn needs_ping(&self, now: Tick, rules: &PingRules) -> bool {
        // In nanoseconds: no division on the checkout path.
        rules.pre_ping
            && (u128::from(now.0.saturating_sub(self.last_used.0)) >= rules.bypass.as_nanos()
                || self.validated < rules.suspect_before)
    }
}

/// `max_age` shortened by a pseudo-random fraction of up to `spread`, chosen
/// from the connection's id so it is reproducible.
pub(crate) fn spread_age(max_age: Duration, spread: f64, id: u64) -> Duration {
    if spread <= 0.0 {
        return max_age;
    }
    // SplitMix64 of the id: well mixed for consecutive ids.
    let mut z = id.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    let unit = (z >> 11) as f64 / (1u64 << 53) as f64; // in [0, 1)
    max_age.mul_f64(1.0 - spread * unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    fn meta_at(now: Tick) -> Meta {
        Meta::new(7, 0, now, Some(60 * SEC), 0.0, 0)
    }

    #[test]
    fn expiry_without_spread_is_exact() {
        let t0 = Tick(1_000_000_000_000);
        let m = meta_at(t0);
        assert!(!m.is_expired(t0.plus(59 * SEC)));
        assert!(m.is_expired(t0.plus(60 * SEC)));
    }

    #[test]
    fn spread_shortens_by_at_most_the_fraction_and_varies() {
        let ages: Vec<Duration> = (0..1000)
            .map(|id| spread_age(1000 * SEC, 0.025, id))
            .collect();
        assert!(ages.iter().all(|a| *a <= 1000 * SEC && *a >= 975 * SEC));
        let min = ages.iter().min().unwrap();
        let max = ages.iter().max().unwrap();
        assert!(*max - *min > 20 * SEC, "spread should cover most of 25 s");
    }

    #[test]
    fn ping_rules() {
        let t0 = Tick(1_000_000_000_000);
        let mut m = meta_at(t0);
        let rules = PingRules {
            pre_ping: true,
            bypass: Duration::from_millis(500),
            suspect_before: Tick(0),
        };
        assert!(!m.needs_ping(t0.plus(Duration::from_millis(499)), &rules));
        assert!(m.needs_ping(t0.plus(Duration::from_millis(500)), &rules));
        let off = PingRules {
            pre_ping: false,
            ..rules
        };
        assert!(!m.needs_ping(t0.plus(10 * SEC), &off));
        // A failed ping elsewhere after this one was validated: ping anyway.
        let suspect = PingRules {
            suspect_before: t0.plus(Duration::from_millis(1)),
            ..rules
        };
        assert!(m.needs_ping(t0.plus(Duration::from_millis(2)), &suspect));
        m.validated = t0.plus(Duration::from_millis(3));
        assert!(!m.needs_ping(t0.plus(Duration::from_millis(4)), &suspect));
    }

    #[test]
    fn idle_timeout_rule() {
        let t0 = Tick(1_000_000_000_000);
        let m = meta_at(t0);
        assert!(!m.idle_expired(t0.plus(10 * SEC), None));
        assert!(!m.idle_expired(t0.plus(9 * SEC), Some(10 * SEC)));
        assert!(m.idle_expired(t0.plus(10 * SEC), Some(10 * SEC)));
    }
}
