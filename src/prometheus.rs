//! Prometheus text exposition (format 0.0.4) of [`Stats`].
//!
//! Every metric is prefixed `cistern_` and labelled `pool="<name>"`;
//! counters end in `_total`; closed connections carry a `reason` label (all
//! reasons are always present, so rates work from the first scrape); the
//! checkout wait is a histogram over [`WAIT_BUCKETS`](crate::WAIT_BUCKETS)
//! (checkouts served without waiting count in the first bucket); hold times
//! are a summary without quantiles (`_sum`, `_count`).
//!
//! Each family's `# HELP` and `# TYPE` lines come once, before its samples,
//! whatever the number of pools.

use std::fmt::Write as _;

use crate::manager::Manager;
use crate::pool::Pool;
use crate::stats::{CloseReason, Stats};

/// One metric family: its name, help, type and how to read its samples.
struct Family {
    name: &'static str,
    help: &'static str,
    kind: Kind,
}

#[derive(Clone, Copy)]
enum Kind {
    Gauge(fn(&Stats) -> f64),
    Counter(fn(&Stats) -> u64),
    ClosedByReason,
    WaitHistogram,
    HeldSummary,
}

const FAMILIES: &[Family] = &[
    Family {
        name: "cistern_pool_size",
        help: "Connections kept open when idle (the pool_size setting).",
        kind: Kind::Gauge(|s| s.pool_size as f64),
    },
    Family {
        name: "cistern_pool_max_overflow",
        help: "Extra connections allowed under load (the max_overflow setting).",
        kind: Kind::Gauge(|s| s.max_overflow as f64),
    },
    Family {
        name: "cistern_pool_max_open",
        help: "Most connections open at once (pool_size + max_overflow).",
        kind: Kind::Gauge(|s| s.max_open() as f64),
    },
    Family {
        name: "cistern_pool_closed",
        help: "1 once the pool is closed, else 0.",
        kind: Kind::Gauge(|s| if s.closed { 1.0 } else { 0.0 }),
    },
    Family {
        name: "cistern_pool_utilization_ratio",
        help: "Connections in use over pool_size + max_overflow (0 to 1).",
        kind: Kind::Gauge(Stats::utilization),
    },
    Family {
        name: "cistern_connections_open",
        help: "Connections open (in use + idle).",
        kind: Kind::Gauge(|s| s.open as f64),
    },
    Family {
        name: "cistern_connections_idle",
        help: "Connections idle in the pool.",
        kind: Kind::Gauge(|s| s.idle as f64),
    },
    Family {
        name: "cistern_connections_in_use",
        help: "Connections checked out.",
        kind: Kind::Gauge(|s| s.in_use as f64),
    },
    Family {
        name: "cistern_connections_overflow_open",
        help: "Connections open beyond pool_size.",
        kind: Kind::Gauge(|s| s.overflow_open as f64),
    },
    Family {
        name: "cistern_connections_overflow_in_use",
        help: "Connections in use beyond pool_size.",
        kind: Kind::Gauge(|s| s.overflow_in_use as f64),
    },
    Family {
        name: "cistern_connections_connecting",
        help: "Connect attempts in flight.",
        kind: Kind::Gauge(|s| s.connecting as f64),
    },
    Family {
        name: "cistern_checkouts_waiting",
        help: "Threads waiting in get() for a connection.",
        kind: Kind::Gauge(|s| s.waiting as f64),
    },
    Family {
        name: "cistern_connect_failures_consecutive",
        help: "Connect attempts failed in a row (0 once one succeeds).",
        kind: Kind::Gauge(|s| s.consecutive_connect_failures as f64),
    },
    Family {
        name: "cistern_connections_created_total",
        help: "Connections opened since start.",
        kind: Kind::Counter(|s| s.created),
    },
    Family {
        name: "cistern_connections_closed_total",
        help: "Connections closed since start, by reason.",
        kind: Kind::ClosedByReason,
    },
    Family {
        name: "cistern_connections_detached_total",
        help: "Connections taken out of the pool for good (Pooled::detach).",
        kind: Kind::Counter(|s| s.detached),
    },
    Family {
        name: "cistern_connect_errors_total",
        help: "Failed connect attempts since start.",
        kind: Kind::Counter(|s| s.connect_errors),
    },
    Family {
        name: "cistern_checkouts_total",
        help: "Connections handed to callers since start.",
        kind: Kind::Counter(|s| s.checkouts),
    },
    Family {
        name: "cistern_checkouts_waited_total",
        help: "Checkouts that had to wait for a connection.",
        kind: Kind::Counter(|s| s.waited),
    },
    Family {
        name: "cistern_checkout_timeouts_total",
        help: "get() calls that timed out.",
        kind: Kind::Counter(|s| s.timeouts),
    },
    Family {
        name: "cistern_checkouts_refused_total",
        help: "get() calls refused because max_waiting threads were already waiting.",
        kind: Kind::Counter(|s| s.queue_full),
    },
    Family {
        name: "cistern_pings_total",
        help: "Pre-pings run.",
        kind: Kind::Counter(|s| s.pings),
    },
    Family {
        name: "cistern_leaks_reported_total",
        help: "Guards reported as held longer than leak_threshold.",
        kind: Kind::Counter(|s| s.leaks_reported),
    },
    Family {
        name: "cistern_checkout_wait_seconds",
        help: "Time checkouts waited for a connection (0 for those served at once).",
        kind: Kind::WaitHistogram,
    },
    Family {
        name: "cistern_checkout_wait_max_seconds",
        help: "Longest checkout wait since start.",
        kind: Kind::Gauge(|s| s.wait.max.as_secs_f64()),
    },
    Family {
        name: "cistern_connection_held_seconds",
        help: "Time guards held their connection, counted on return.",
        kind: Kind::HeldSummary,
    },
    Family {
        name: "cistern_connection_held_max_seconds",
        help: "Longest time a guard held its connection, since start.",
        kind: Kind::Gauge(|s| s.held.max.as_secs_f64()),
    },
];

/// The Prometheus text exposition of several pools' [`Stats`], each family
/// once with one series per pool (give the pools distinct names).
///
/// ```
/// use cistern::{Pool, prometheus_text, testing::FaultManager};
///
/// let orders = Pool::builder().name("orders").build(FaultManager::new())?;
/// let users = Pool::builder().name("users").build(FaultManager::new())?;
/// drop(orders.get()?);
/// let text = prometheus_text([&orders.stats(), &users.stats()]);
/// assert!(text.contains("cistern_checkouts_total{pool=\"orders\"} 1\n"));
/// assert!(text.contains("cistern_checkouts_total{pool=\"users\"} 0\n"));
/// # Ok::<(), cistern::Error>(())
/// ```
pub fn prometheus_text<'a>(pools: impl IntoIterator<Item = &'a Stats>) -> String {
    let pools: Vec<&Stats> = pools.into_iter().collect();
    let mut out = String::with_capacity(8192 * pools.len().max(1));
    for family in FAMILIES {
        write_family(&mut out, family, &pools);
    }
    out
}

fn write_family(out: &mut String, f: &Family, pools: &[&Stats]) {
    let kind = match f.kind {
        Kind::Gauge(_) => "gauge",
        Kind::Counter(_) | Kind::ClosedByReason => "counter",
        Kind::WaitHistogram => "histogram",
        Kind::HeldSummary => "summary",
    };
    let _ = writeln!(out, "# HELP {} {}", f.name, escape_help(f.help));
    let _ = writeln!(out, "# TYPE {} {kind}", f.name);
    for s in pools {
        let pool = escape_label(&s.name);
        match f.kind {
            Kind::Gauge(read) => {
                let _ = writeln!(out, "{}{{pool=\"{pool}\"}} {}", f.name, float(read(s)));
            }
            Kind::Counter(read) => {
                let _ = writeln!(out, "{}{{pool=\"{pool}\"}} {}", f.name, read(s));
            }
            Kind::ClosedByReason => {
                for reason in CloseReason::ALL {
                    let _ = writeln!(
                        out,
                        "{}{{pool=\"{pool}\",reason=\"{}\"}} {}",
                        f.name,
                        reason.as_str(),
                        s.closed_by.get(reason)
                    );
                }
            }
            Kind::WaitHistogram => {
                let mut count = 0;
                for (bound, cumulative) in &s.wait.buckets {
                    count = *cumulative;
                    let _ = writeln!(
                        out,
                        "{}_bucket{{pool=\"{pool}\",le=\"{}\"}} {cumulative}",
                        f.name,
                        float(*bound)
                    );
                }
                let _ = writeln!(
                    out,
                    "{}_sum{{pool=\"{pool}\"}} {}",
                    f.name,
                    float(s.wait.sum.as_secs_f64())
                );
                let _ = writeln!(out, "{}_count{{pool=\"{pool}\"}} {count}", f.name);
            }
            Kind::HeldSummary => {
                let _ = writeln!(
                    out,
                    "{}_sum{{pool=\"{pool}\"}} {}",
                    f.name,
                    float(s.held.sum.as_secs_f64())
                );
                let _ = writeln!(out, "{}_count{{pool=\"{pool}\"}} {}", f.name, s.held.count);
            }
        }
    }
}

/// A sample value or `le` bound: shortest round-trip decimal, `+Inf`,
/// `-Inf` or `NaN`.
fn float(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        format!("{v}")
    }
}

/// Label values: backslash, double quote and line feed are escaped.
fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Help text: backslash and line feed are escaped.
fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

impl<M: Manager> Pool<M> {
    /// This pool's metrics in the Prometheus text format, for a `/metrics`
    /// endpoint (content type `text/plain; version=0.0.4`). For several pools
    /// in one response use [`prometheus_text`].
    pub fn prometheus(&self) -> String {
        prometheus_text([&self.stats()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape_label("line\nbreak"), "line\\nbreak");
        assert_eq!(escape_label("plain-name_1"), "plain-name_1");
    }

    #[test]
    fn floats_use_prometheus_spelling() {
        assert_eq!(float(f64::INFINITY), "+Inf");
        assert_eq!(float(f64::NEG_INFINITY), "-Inf");
        assert_eq!(float(f64::NAN), "NaN");
        assert_eq!(float(0.0001), "0.0001");
        assert_eq!(float(30.0), "30");
        assert_eq!(float(0.0), "0");
    }

    #[test]
    fn metric_names_are_valid_and_unique() {
        let mut seen = std::collections::HashSet::new();
        for f in FAMILIES {
            assert!(f.name.starts_with("cistern_"), "{}", f.name);
            assert!(
                f.name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{}",
                f.name
            );
            let is_counter = matches!(f.kind, Kind::Counter(_) | Kind::ClosedByReason);
            assert_eq!(is_counter, f.name.ends_with("_total"), "{}", f.name);
            assert!(seen.insert(f.name), "duplicate {}", f.name);
        }
    }
}
