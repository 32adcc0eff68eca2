//! What leak tracking costs a checkout: `get()` + drop on one thread with a
//! no-op manager, in one run, with
//!
//! - reports off (`leak_threshold(None)`, the release default; call sites
//!   are still recorded),
//! - reports on with call sites only (`leak_threshold(60 s)`,
//!   `leak_backtraces(false)`),
//! - reports on with backtraces (`leak_threshold(60 s)`,
//!   `leak_backtraces(true)`, the debug-build default): a backtrace captured
//!   (unresolved) inside every `get()`,
//!
//! then the ratios of criterion's medians to "reports off". A second part
//! runs the three on 8 threads and 10 connections for throughput.
//!
//! ```text
//! cargo bench --bench leak_tracking -- --warm-up-time 1 --measurement-time 2
//! ```
//! `CISTERN_BENCH_SECS` sets the 8-thread runs (default 2 s);
//! `CISTERN_BENCH_TABLES=0` skips them.

mod support;

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use criterion::Criterion;
use support::{Checkout, Noop, checkout_loop, fmt_rate, fmt_ratio, noop_pool, warm_up};

const GROUP: &str = "leak_tracking";

/// The three settings: (id, leak_threshold, leak_backtraces).
const SETTINGS: [(&str, Option<Duration>, bool); 3] = [
    ("reports_off", None, false),
    ("call_sites", Some(Duration::from_secs(60)), false),
    ("backtraces", Some(Duration::from_secs(60)), true),
];

fn pool(threshold: Option<Duration>, backtraces: bool) -> cistern::Pool<Noop> {
    noop_pool("leak-bench", 10, |b| {
        b.leak_threshold(threshold).leak_backtraces(backtraces)
    })
}

fn single_thread(c: &mut Criterion) {
    let mut group = c.benchmark_group(GROUP);
    for (id, threshold, backtraces) in SETTINGS {
        let pool = pool(threshold, backtraces);
        group.bench_function(id, |b| b.iter(|| drop(black_box(pool.checkout()))));
    }
    group.finish();
}

fn print_ratios(since: SystemTime, captured: u64) {
    println!("\n### Leak tracking: get()+drop, 1 thread, 10 connections (criterion medians)\n");
    println!("| setting | time | vs reports off |");
    println!("|---|---|---|");
    let off = support::criterion_median_ns(GROUP, SETTINGS[0].0, since);
    for (id, threshold, backtraces) in SETTINGS {
        let t = support::criterion_median_ns(GROUP, id, since);
        println!(
            "| {id} (leak_threshold {:?}, leak_backtraces {backtraces}) | {} | {} |",
            threshold,
            t.map_or("-".to_owned(), |v| format!("{v:.1} ns")),
            fmt_ratio(t, off),
        );
    }
    println!("\n({captured} backtraces captured during the run.)");
}

fn eight_threads() {
    let duration = support::run_duration(Duration::from_secs(2));
    println!("\n### Leak tracking: get()+drop, 8 threads, 10 connections\n");
    println!("| setting | throughput | vs reports off |");
    println!("|---|---|---|");
    let mut off = None;
    for (id, threshold, backtraces) in SETTINGS {
        let pool = pool(threshold, backtraces);
        warm_up(&pool, 8, duration);
        let rate = checkout_loop(&pool, 8, duration, false).throughput();
        off.get_or_insert(rate);
        println!(
            "| {id} | {} | {} |",
            fmt_rate(rate),
            fmt_ratio(Some(rate), off)
        );
    }
}

fn main() {
    let since = SystemTime::now();
    let before = cistern::backtraces_captured();
    let mut c = support::criterion();
    single_thread(&mut c);
    c.final_summary();
    if support::bench_mode() {
        print_ratios(since, cistern::backtraces_captured() - before);
    }
    if support::tables_enabled() {
        eight_threads();
    }
}
