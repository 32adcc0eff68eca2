//! Checkout cost with a no-op manager: cistern, r2d2 0.8 and the floor (a
//! `parking_lot::Mutex<Vec<_>>`: pop on checkout, push on return, plus a
//! condvar for the cases with fewer connections than threads), in one run.
//!
//! - 1 thread (criterion, `iter`): `get()` + drop with 10 connections and
//!   with 1, then the ratios cistern/r2d2 and cistern/floor of the medians.
//! - 2, 8 and 64 threads, with 10 connections and with as many connections
//!   as threads (a timed harness, printed as a markdown table): throughput
//!   from a run without per-operation clock reads, fairness (fewest / most
//!   operations of one thread) from that run, and `get()` latency (p50, p99,
//!   p99.9, max) from a second run timing each `get()` into a per-thread
//!   histogram.
//! - Memory: heap bytes of a pool and of each connection slot beyond the
//!   connection itself, and heap allocations per checkout (a counting global
//!   allocator).
//! - The trade-off of bounded barging: cistern at 64 threads on 10
//!   connections with `barging_window` 0 (strict FIFO hand-off), 100 µs,
//!   1 ms (the default) and 10 ms.
//!
//! Settings (environment): `CISTERN_BENCH_SECS` (each timed run; default 2 s,
//! 5 s for 64 threads on 10 connections), `CISTERN_BENCH_ROUNDS` (default 1;
//! the median round is shown), `CISTERN_BENCH_ONLY` (run only table cases
//! whose label, e.g. `64t/10c`, or `sweep` for the barging sweep, contains
//! it), `CISTERN_BENCH_TABLES=0` (criterion only). Criterion's own flags work as usual:
//!
//! ```text
//! cargo bench --bench checkout -- --warm-up-time 1 --measurement-time 2
//! CISTERN_BENCH_SECS=0.5 cargo bench --bench checkout
//! ```

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::convert::Infallible;
use std::hint::black_box;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion};
use parking_lot::{Condvar, Mutex};

use support::{
    Checkout, Noop, Run, checkout_loop, checkout_n, fatal, fmt_latency, fmt_rate, fmt_ratio,
    noop_pool, warm_up,
};

// ---- a counting allocator (memory figures, allocations per checkout) ------

/// Counts allocations and live heap bytes; forwards to the system allocator.
/// Costs one relaxed atomic add per allocation, nothing on paths that do not
/// allocate (a checkout should not).
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static LIVE_BYTES: AtomicI64 = AtomicI64::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged; the counters are plain atomics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        LIVE_BYTES.fetch_add(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: forwarded as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        LIVE_BYTES.fetch_add(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: forwarded as is.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        LIVE_BYTES.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        // SAFETY: forwarded as is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

// ---- the three pools ------------------------------------------------------

/// r2d2's no-op manager (validation on checkout is on by default in r2d2,
/// and costs nothing here).
struct NoopR2d2;

impl r2d2::ManageConnection for NoopR2d2 {
    type Connection = u64;
    type Error = Infallible;
    fn connect(&self) -> Result<u64, Infallible> {
        Ok(0)
    }
    fn is_valid(&self, _conn: &mut u64) -> Result<(), Infallible> {
        Ok(())
    }
    fn has_broken(&self, _conn: &mut u64) -> bool {
        false
    }
}

/// The floor: the least a blocking pool can do. A checkout pops under a
/// `parking_lot::Mutex`, a return pushes; with fewer connections than
/// threads a checkout waits on a condvar, notified only when someone waits.
struct Floor {
    state: Mutex<FloorState>,
    available: Condvar,
}

struct FloorState {
    idle: Vec<u64>,
    waiting: usize,
}

struct FloorGuard<'a> {
    floor: &'a Floor,
    conn: u64,
}

impl Floor {
    fn new(conns: usize) -> Floor {
        Floor {
            state: Mutex::new(FloorState {
                idle: (0..conns as u64).collect(),
                waiting: 0,
            }),
            available: Condvar::new(),
        }
    }

    #[inline]
    fn get(&self) -> FloorGuard<'_> {
        let mut st = self.state.lock();
        loop {
            if let Some(conn) = st.idle.pop() {
                return FloorGuard { floor: self, conn };
            }
            st.waiting += 1;
            self.available.wait(&mut st);
            st.waiting -= 1;
        }
    }
}

impl Drop for FloorGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        let mut st = self.floor.state.lock();
        st.idle.push(black_box(self.conn));
        let wake = st.waiting > 0;
        drop(st);
        if wake {
            self.floor.available.notify_one();
        }
    }
}

impl Checkout for r2d2::Pool<NoopR2d2> {
    type Guard<'a> = r2d2::PooledConnection<NoopR2d2>;
    #[inline]
    fn checkout(&self) -> r2d2::PooledConnection<NoopR2d2> {
        match self.get() {
            Ok(c) => c,
            Err(e) => fatal(&format!("r2d2 get() failed: {e}")),
        }
    }
}

impl Checkout for Floor {
    type Guard<'a> = FloorGuard<'a>;
    #[inline]
    fn checkout(&self) -> FloorGuard<'_> {
        self.get()
    }
}

/// cistern with defaults, except the size the case needs: `conns` base
/// connections, no overflow, all opened before `build` returns.
fn cistern_pool(conns: usize) -> cistern::Pool<Noop> {
    noop_pool("bench", conns, |b| b)
}

/// r2d2 with defaults and `max_size` = `conns` (its `min_idle` defaults to
/// `max_size`: all opened before `build` returns).
fn r2d2_pool(conns: usize) -> r2d2::Pool<NoopR2d2> {
    r2d2::Pool::builder()
        .max_size(conns as u32)
        .build(NoopR2d2)
        .unwrap_or_else(|e| fatal(&format!("r2d2 pool of {conns}: {e}")))
}

// ---- 1 thread: criterion ----------------------------------------------------

const GROUP: &str = "checkout_1_thread";

/// Criterion's `get()` + drop of `pool` as `name/conns`; the pool is
/// dropped after.
fn bench_pool<P: Checkout>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    conns: usize,
    pool: P,
) {
    group.bench_function(BenchmarkId::new(name, conns), |b| {
        b.iter(|| drop(black_box(pool.checkout())))
    });
}

fn single_thread(c: &mut Criterion) {
    let mut group = c.benchmark_group(GROUP);
    for conns in [10usize, 1] {
        bench_pool(&mut group, "cistern", conns, cistern_pool(conns));
        bench_pool(&mut group, "r2d2", conns, r2d2_pool(conns));
        bench_pool(&mut group, "floor", conns, Floor::new(conns));
    }
    group.finish();
}

fn print_single_thread_ratios(since: SystemTime) {
    if support::criterion_median_ns(GROUP, "cistern/10", since).is_none()
        && support::criterion_median_ns(GROUP, "cistern/1", since).is_none()
    {
        return; // filtered out by a criterion filter
    }
    println!("\n### get()+drop, 1 thread (criterion medians)\n");
    println!("| connections | cistern | r2d2 | floor | cistern/r2d2 | cistern/floor |");
    println!("|---|---|---|---|---|---|");
    for conns in [10usize, 1] {
        let id = |pool: &str| format!("{pool}/{conns}");
        let c = support::criterion_median_ns(GROUP, &id("cistern"), since);
        let r = support::criterion_median_ns(GROUP, &id("r2d2"), since);
        let f = support::criterion_median_ns(GROUP, &id("floor"), since);
        let ns = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1} ns"));
        println!(
            "| {conns} | {} | {} | {} | {} | {} |",
            ns(c),
            ns(r),
            ns(f),
            fmt_ratio(c, r),
            fmt_ratio(c, f)
        );
    }
    println!("\n(time ratios: below 1.00x means cistern is faster)");
}

// ---- 2, 8, 64 threads: timed table -----------------------------------------

/// One pool's results for one case: the median round.
struct Row {
    throughput: f64,
    fairness: f64,
    p50: Duration,
    p99: Duration,
    p999: Duration,
    max: Duration,
}

impl Row {
    /// The `get()` latency columns: p50, p99, p99.9 and max.
    fn latencies(&self) -> String {
        [self.p50, self.p99, self.p999, self.max]
            .map(fmt_latency)
            .join(" | ")
    }
}

fn summarize(rounds: &[(Run, Run)]) -> Row {
    let med = |f: &dyn Fn(&(Run, Run)) -> f64| {
        let mut v: Vec<f64> = rounds.iter().map(f).collect();
        support::median(&mut v)
    };
    let lat = |q: f64| {
        let ns = med(&|(_, timed)| {
            timed.latency.as_ref().map_or(0.0, |h| {
                if q >= 1.0 { h.max() } else { h.quantile(q) }.as_nanos() as f64
            })
        });
        Duration::from_nanos(ns as u64)
    };
    Row {
        throughput: med(&|(free, _)| free.throughput()),
        fairness: med(&|(free, _)| free.fairness()),
        p50: lat(0.50),
        p99: lat(0.99),
        p999: lat(0.999),
        max: lat(1.0),
    }
}

fn measure<P: Checkout>(pool: &P, threads: usize, duration: Duration) -> (Run, Run) {
    warm_up(pool, threads, duration);
    let free = checkout_loop(pool, threads, duration, false);
    let timed = checkout_loop(pool, threads, duration, true);
    (free, timed)
}

fn multi_thread_table() {
    let cases = [
        (2usize, 10usize),
        (2, 2),
        (8, 10),
        (8, 8),
        (64, 10),
        (64, 64),
    ];
    let rounds = support::rounds();
    println!("\n### get()+drop, 2 to 64 threads (timed harness)\n");
    println!("Machine: {}.", support::machine());
    println!(
        "Throughput and fairness from a run without clock reads; latency of get() from a \
         second run of the same length timing each get(). {rounds} round(s), median shown.\n"
    );
    println!(
        "| threads | conns | pool | throughput | cistern/this | fairness min/max | get() p50 | p99 | p99.9 | max | run |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for (threads, conns) in cases {
        let label = format!("{threads}t/{conns}c");
        if !support::selected(&label) {
            continue;
        }
        let default = if threads == 64 && conns == 10 {
            Duration::from_secs(5)
        } else {
            Duration::from_secs(2)
        };
        let duration = support::run_duration(default);
        let cistern = cistern_pool(conns);
        let r2d2 = r2d2_pool(conns);
        let floor = Floor::new(conns);
        let mut results: [Vec<(Run, Run)>; 3] = [Vec::new(), Vec::new(), Vec::new()];
        for _ in 0..rounds {
            results[0].push(measure(&cistern, threads, duration));
            results[1].push(measure(&r2d2, threads, duration));
            results[2].push(measure(&floor, threads, duration));
        }
        let stats = cistern.stats();
        let rows: Vec<Row> = results.iter().map(|r| summarize(r)).collect();
        for (name, row) in ["cistern", "r2d2", "floor"].iter().zip(&rows) {
            let vs = if *name == "cistern" {
                "-".to_owned()
            } else {
                fmt_ratio(Some(rows[0].throughput), Some(row.throughput))
            };
            println!(
                "| {threads} | {conns} | {name} | {} | {vs} | {:.2} | {} | {:.1} s |",
                fmt_rate(row.throughput),
                row.fairness,
                row.latencies(),
                duration.as_secs_f64(),
            );
        }
        eprintln!(
            "  {label}: cistern/r2d2 throughput {}, p99.9 {}, max {}; cistern/floor throughput {}; \
             cistern checkouts {} (waited {}), open {}",
            fmt_ratio(Some(rows[0].throughput), Some(rows[1].throughput)),
            fmt_ratio(
                Some(rows[0].p999.as_nanos() as f64),
                Some(rows[1].p999.as_nanos() as f64)
            ),
            fmt_ratio(
                Some(rows[0].max.as_nanos() as f64),
                Some(rows[1].max.as_nanos() as f64)
            ),
            fmt_ratio(Some(rows[0].throughput), Some(rows[2].throughput)),
            stats.checkouts,
            stats.waited,
            stats.open,
        );
    }
    println!(
        "\n(cistern/this: cistern's throughput divided by this row's; above 1.00x means cistern is faster)"
    );
}

// ---- memory ------------------------------------------------------------------

fn live_bytes() -> i64 {
    LIVE_BYTES.load(Ordering::Relaxed)
}

/// Heap bytes held by a pool of `conns` idle no-op connections, measured as
/// the growth of live heap bytes across building it (its background
/// threads settled).
fn pool_heap_bytes<P>(conns: usize, build: impl Fn(usize) -> P) -> i64 {
    // The first pool of a process also allocates process-wide records
    // (lazy statics, thread-name table): build one first, then take the
    // smallest of three measurements.
    drop(build(conns));
    (0..3)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(100));
            let before = live_bytes();
            let pool = build(conns);
            std::thread::sleep(Duration::from_millis(200));
            let after = live_bytes();
            drop(pool);
            after - before
        })
        .min()
        .unwrap_or(0)
}

fn allocations_per_checkout<P: Checkout>(pool: &P) -> f64 {
    const N: u64 = 100_000;
    drop(pool.checkout()); // first checkout of this thread registers it
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    checkout_n(pool, N);
    (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / N as f64
}

/// Heap bytes of pools of 1, 10 and 100 connections built by `build`, and
/// allocations per checkout of one of 10.
fn heap_and_allocations<P: Checkout>(build: impl Fn(usize) -> P) -> ([i64; 3], f64) {
    let sizes = [1, 10, 100].map(|n| pool_heap_bytes(n, &build));
    (sizes, allocations_per_checkout(&build(10)))
}

fn memory_report() {
    println!(
        "\n### Memory (no-op connections of 8 bytes; heap bytes counted by a global allocator)\n"
    );
    println!(
        "| pool | heap, 1 conn | heap, 10 conns | heap, 100 conns | per slot | per pool | allocations per get()+drop |"
    );
    println!("|---|---|---|---|---|---|---|");
    let conn = std::mem::size_of::<u64>() as i64;
    let row = |name: &str, (sizes, allocs): ([i64; 3], f64)| {
        let per_slot = (sizes[2] - sizes[1]) as f64 / 90.0 - conn as f64;
        let per_pool = sizes[1] as f64 - 10.0 * (per_slot + conn as f64);
        println!(
            "| {name} | {} B | {} B | {} B | {per_slot:.0} B | {per_pool:.0} B | {allocs:.2} |",
            sizes[0], sizes[1], sizes[2]
        );
    };
    row("cistern", heap_and_allocations(cistern_pool));
    row("r2d2", heap_and_allocations(r2d2_pool));
    row("floor", heap_and_allocations(Floor::new));
    println!(
        "\n(per slot: heap bytes each further idle connection adds beyond its own {conn} bytes; per pool: \
         the rest, including the background thread's heap records (thread stacks are not heap). \
         cistern also keeps `size_of::<Pooled<_>>() = {}` bytes in each guard, r2d2 `{}`.)",
        std::mem::size_of::<cistern::Pooled<Noop>>(),
        std::mem::size_of::<r2d2::PooledConnection<NoopR2d2>>(),
    );
}

/// The fairness/throughput trade-off of bounded barging, 64 threads on 10
/// connections: cistern with `barging_window` from 0 (strict FIFO hand-off:
/// every checkout under saturation is a thread wake-up) to 10 ms, and
/// `barging_limit` from 30 to none.
fn barging_sweep() {
    let threads = 64;
    let conns = 10;
    if !support::selected("sweep") {
        return;
    }
    let duration = support::run_duration(Duration::from_secs(2));
    println!(
        "\n### barging_window and barging_limit sweep: cistern, {threads} threads, {conns} connections\n"
    );
    println!(
        "| barging_window | barging_limit | throughput | fairness min/max | get() p50 | p99 | p99.9 | max | waited | run |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let cases = [
        (0, 100),
        (100, 100),
        (1_000, u32::MAX),
        (1_000, 400),
        (1_000, 100),
        (1_000, 30),
        (10_000, 100),
    ];
    for (micros, limit) in cases {
        let window = Duration::from_micros(micros);
        let pool = noop_pool("bench-sweep", conns, |b| {
            b.barging_window(window).barging_limit(limit)
        });
        let (free, timed) = measure(&pool, threads, duration);
        let row = summarize(&[(free, timed)]);
        let s = pool.stats();
        println!(
            "| {} | {} | {} | {:.2} | {} | {:.1} % | {:.1} s |",
            fmt_latency(window),
            if limit == u32::MAX {
                "none".to_owned()
            } else {
                limit.to_string()
            },
            fmt_rate(row.throughput),
            row.fairness,
            row.latencies(),
            100.0 * s.waited as f64 / s.checkouts.max(1) as f64,
            duration.as_secs_f64(),
        );
    }
    println!("\n(waited: share of checkouts, over warm-up and both runs, that queued as a waiter)");
}

// ---- instruction counts (callgrind) -------------------------------------------

#[inline(never)]
fn count_cistern(pool: &cistern::Pool<Noop>, n: u64) {
    checkout_n(pool, n);
}

#[inline(never)]
fn count_r2d2(pool: &r2d2::Pool<NoopR2d2>, n: u64) {
    checkout_n(pool, n);
}

#[inline(never)]
fn count_floor(floor: &Floor, n: u64) {
    checkout_n(floor, n);
}

/// `CISTERN_BENCH_CALLGRIND=N`: only N get()+drop per pool, one thread, in
/// three functions of their own, for `valgrind --tool=callgrind` (see
/// README.md, "Counting instructions"): instruction counts are repeatable on
/// a busy machine where times are not.
fn callgrind_mode() -> bool {
    let Ok(v) = std::env::var("CISTERN_BENCH_CALLGRIND") else {
        return false;
    };
    let n: u64 = match v.trim().parse() {
        Ok(n) if n > 0 => n,
        _ => fatal(&format!(
            "CISTERN_BENCH_CALLGRIND = {v:?}: expected a number of operations"
        )),
    };
    let (c, r, f) = (cistern_pool(10), r2d2_pool(10), Floor::new(10));
    // One checkout each first: thread registration and lazy statics are not
    // part of the steady state.
    drop(c.checkout());
    drop(r.checkout());
    drop(f.checkout());
    count_cistern(&c, n);
    count_r2d2(&r, n);
    count_floor(&f, n);
    println!(
        "{n} get()+drop each: divide callgrind's inclusive counts of checkout::count_* by {n}"
    );
    true
}

fn main() {
    if callgrind_mode() {
        return;
    }
    let since = SystemTime::now();
    memory_report();
    let mut c = support::criterion();
    single_thread(&mut c);
    c.final_summary();
    if support::bench_mode() {
        print_single_thread_ratios(since);
    }
    if support::tables_enabled() {
        multi_thread_table();
        barging_sweep();
    }
}
