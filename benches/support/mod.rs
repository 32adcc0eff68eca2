//! Shared by the benches (and the load tool): a per-thread latency
//! histogram, a timed multi-thread driver, a no-op manager, run settings from
//! the environment, ratios of criterion estimates, and table formatting.
//!
//! Every bench runs cistern, r2d2 and a floor in the same process, one after
//! the other on the same machine state, so each figure is read as a ratio.

#![allow(dead_code)] // each bench target uses part of it

use std::convert::Infallible;
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

// ---- latency histogram ---------------------------------------------------

/// Values below this are counted exactly (nanoseconds).
const EXACT: u64 = 64;
/// Sub-buckets per power of two above `EXACT`: about 3 % resolution.
const SUB_BITS: u32 = 5;
const SUB: usize = 1 << SUB_BITS;
/// Powers of two covered above `EXACT` (up to 2^47 ns, about 39 hours).
const OCTAVES: usize = 42;
const BUCKETS: usize = EXACT as usize + OCTAVES * SUB;

/// A log-linear latency histogram in nanoseconds: exact below 64 ns, then 32
/// buckets per power of two. One per thread (no sharing while recording);
/// merged after the run.
#[derive(Clone)]
pub struct Histogram {
    counts: Box<[u64]>,
    total: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new()
    }
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Histogram {
        Histogram {
            counts: vec![0; BUCKETS].into_boxed_slice(),
            total: 0,
            max: 0,
        }
    }

    fn index(v: u64) -> usize {
        if v < EXACT {
            return v as usize;
        }
        let octave = 63 - v.leading_zeros(); // >= 6
        let sub = (v >> (octave - SUB_BITS)) as usize & (SUB - 1);
        let i = EXACT as usize + (octave as usize - 6) * SUB + sub;
        i.min(BUCKETS - 1)
    }

    /// The largest value that falls in bucket `i`.
    fn upper(i: usize) -> u64 {
        if i < EXACT as usize {
            return i as u64;
        }
        let octave = (i - EXACT as usize) / SUB + 6;
        let sub = ((i - EXACT as usize) % SUB) as u64;
        let width = 1u64 << (octave as u32 - SUB_BITS);
        ((SUB as u64 + sub) << (octave as u32 - SUB_BITS)) + width - 1
    }

    /// Records one value in nanoseconds.
    #[inline]
    pub fn record_ns(&mut self, ns: u64) {
        self.counts[Self::index(ns)] += 1;
        self.total += 1;
        if ns > self.max {
            self.max = ns;
        }
    }

    /// Records one duration.
    #[inline]
    pub fn record(&mut self, d: Duration) {
        self.record_ns(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }

    /// Adds another histogram's counts.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The largest value recorded (exact).
    pub fn max(&self) -> Duration {
        Duration::from_nanos(self.max)
    }

    /// The value at quantile `q` (0.0..=1.0): the upper edge of its bucket,
    /// never above the maximum.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.total == 0 {
            return Duration::ZERO;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Duration::from_nanos(Self::upper(i).min(self.max));
            }
        }
        self.max()
    }
}

// ---- timed multi-thread runs ----------------------------------------------

/// What one timed run measured.
pub struct Run {
    /// Operations completed by each thread.
    pub per_thread: Vec<u64>,
    /// From the start signal to the stop signal.
    pub elapsed: Duration,
    /// Per-operation latency, when the run was timed.
    pub latency: Option<Histogram>,
}

impl Run {
    /// All operations.
    pub fn total(&self) -> u64 {
        self.per_thread.iter().sum()
    }

    /// Operations per second.
    pub fn throughput(&self) -> f64 {
        self.total() as f64 / self.elapsed.as_secs_f64()
    }

    /// Fewest operations of one thread divided by most (1.0 = perfectly
    /// even).
    pub fn fairness(&self) -> f64 {
        let min = self.per_thread.iter().copied().min().unwrap_or(0);
        let max = self.per_thread.iter().copied().max().unwrap_or(0);
        if max == 0 {
            0.0
        } else {
            min as f64 / max as f64
        }
    }
}

/// Runs `op` in a loop on `threads` threads for `duration`, all starting
/// together. Each thread first builds its own state with `init(index)`
/// (before the start signal, so not timed) and passes it to every `op`;
/// the states come back with the run. The stop flag costs a relaxed load
/// per operation.
pub fn drive<S, I, F>(threads: usize, duration: Duration, init: I, op: F) -> (Run, Vec<S>)
where
    S: Send,
    I: Fn(usize) -> S + Sync,
    F: Fn(&mut S) + Sync,
{
    let stop = AtomicBool::new(false);
    let start = Barrier::new(threads + 1);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let (stop, start, init, op) = (&stop, &start, &init, &op);
                s.spawn(move || {
                    let mut state = init(i);
                    let mut ops = 0u64;
                    start.wait();
                    while !stop.load(Ordering::Relaxed) {
                        op(&mut state);
                        ops += 1;
                    }
                    (ops, state)
                })
            })
            .collect();
        start.wait();
        let t0 = Instant::now();
        std::thread::sleep(duration);
        stop.store(true, Ordering::Relaxed);
        let elapsed = t0.elapsed();
        let mut per_thread = Vec::with_capacity(threads);
        let mut states = Vec::with_capacity(threads);
        for h in handles {
            let (ops, state) = h.join().expect("a bench thread panicked");
            per_thread.push(ops);
            states.push(state);
        }
        (
            Run {
                per_thread,
                elapsed,
                latency: None,
            },
            states,
        )
    })
}

/// A pool under test: something that hands out a guard which gives the
/// connection back when dropped.
pub trait Checkout: Sync {
    /// The guard.
    type Guard<'a>
    where
        Self: 'a;
    /// Takes a connection, waiting if none is free.
    fn checkout(&self) -> Self::Guard<'_>;
}

/// `get()` + drop, `n` times, on this thread.
#[inline(always)]
pub fn checkout_n<P: Checkout>(pool: &P, n: u64) {
    for _ in 0..n {
        drop(black_box(pool.checkout()));
    }
}

/// Warm-up before a run of `duration`: `get()` + drop on `threads`
/// threads for a quarter of it (300 ms at most), so that the threads are
/// spawned and the caches and the pool's queues in steady state.
pub fn warm_up<P: Checkout>(pool: &P, threads: usize, duration: Duration) {
    checkout_loop(
        pool,
        threads,
        (duration / 4).min(Duration::from_millis(300)),
        false,
    );
}

// ---- a no-op manager ---------------------------------------------------------

/// A manager whose connections are numbers: connect, ping and the checks
/// cost nothing, so only the pool is measured.
pub struct Noop;

impl cistern::Manager for Noop {
    type Connection = u64;
    type Error = Infallible;
    fn connect(&self) -> Result<u64, Infallible> {
        Ok(0)
    }
    fn ping(&self, _conn: &mut u64) -> Result<(), Infallible> {
        Ok(())
    }
}

impl Checkout for cistern::Pool<Noop> {
    type Guard<'a> = cistern::Pooled<Noop>;
    #[inline]
    fn checkout(&self) -> cistern::Pooled<Noop> {
        match self.get() {
            Ok(c) => c,
            Err(e) => fatal(&format!("cistern get() failed: {e}")),
        }
    }
}

/// A pool `name` of `conns` no-op connections, no overflow, all opened
/// before `build` returns, with the settings `configure` adds.
pub fn noop_pool(
    name: &str,
    conns: usize,
    configure: impl FnOnce(cistern::Builder<Noop>) -> cistern::Builder<Noop>,
) -> cistern::Pool<Noop> {
    let builder = cistern::Pool::builder()
        .name(name)
        .pool_size(conns)
        .max_overflow(0)
        .min_idle(conns);
    configure(builder)
        .build(Noop)
        .unwrap_or_else(|e| fatal(&format!("cistern pool {name} of {conns}: {e}")))
}

/// Prints `msg`, naming the bench, and exits with status 1.
pub fn fatal(msg: &str) -> ! {
    let exe = std::env::current_exe().unwrap_or_default();
    let stem = exe.file_stem().and_then(|s| s.to_str()).unwrap_or("a");
    // Cargo names a bench binary `<bench>-<hash>`.
    let bench = stem.rsplit_once('-').map_or(stem, |(name, _)| name);
    eprintln!("{bench} bench: {msg}");
    std::process::exit(1)
}

/// `get()` + drop in a loop on `threads` threads. When `timed`, each
/// `get()` (not the drop) is timed into a per-thread histogram, merged into
/// `Run::latency`; otherwise nothing but the loop runs.
pub fn checkout_loop<P: Checkout>(
    pool: &P,
    threads: usize,
    duration: Duration,
    timed: bool,
) -> Run {
    if timed {
        let (mut run, hists) = drive(
            threads,
            duration,
            |_| Histogram::new(),
            |h: &mut Histogram| {
                let t0 = Instant::now();
                let guard = pool.checkout();
                h.record(t0.elapsed());
                drop(black_box(guard));
            },
        );
        let mut all = Histogram::new();
        for h in &hists {
            all.merge(h);
        }
        run.latency = Some(all);
        run
    } else {
        drive(
            threads,
            duration,
            |_| (),
            |_: &mut ()| drop(black_box(pool.checkout())),
        )
        .0
    }
}

// ---- settings from the environment -----------------------------------------

/// Whether the binary was started by `cargo bench` (criterion's `--bench`)
/// rather than as a smoke test by `cargo test --benches`.
pub fn bench_mode() -> bool {
    let args: Vec<String> = std::env::args().collect();
    args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test")
}

/// `CISTERN_BENCH_SECS` (seconds, fractions allowed) when set, else
/// `default`; a few milliseconds when not in bench mode (smoke test).
pub fn run_duration(default: Duration) -> Duration {
    if !bench_mode() {
        return Duration::from_millis(20);
    }
    match std::env::var("CISTERN_BENCH_SECS") {
        Ok(v) => match v.trim().parse::<f64>() {
            Ok(s) if s.is_finite() && s > 0.0 => Duration::from_secs_f64(s),
            _ => {
                eprintln!(
                    "CISTERN_BENCH_SECS = {v:?}: expected a positive number of seconds; using {:?}",
                    default
                );
                default
            }
        },
        Err(_) => default,
    }
}

/// `CISTERN_BENCH_ROUNDS` (default 1): each case is run this many times,
/// alternating the pools, and the median round is reported.
pub fn rounds() -> usize {
    match std::env::var("CISTERN_BENCH_ROUNDS") {
        Ok(v) => match v.trim().parse::<usize>() {
            Ok(n) if n >= 1 => n,
            _ => {
                eprintln!("CISTERN_BENCH_ROUNDS = {v:?}: expected a whole number >= 1; using 1");
                1
            }
        },
        Err(_) => 1,
    }
}

/// Whether a multi-thread table is wanted: `CISTERN_BENCH_TABLES=0` skips
/// them (criterion parts only).
pub fn tables_enabled() -> bool {
    std::env::var("CISTERN_BENCH_TABLES").map_or(true, |v| v.trim() != "0")
}

/// Whether the `CISTERN_BENCH_ONLY` filter (a substring of a case's label)
/// lets this case run; unset runs every case.
pub fn selected(label: &str) -> bool {
    std::env::var("CISTERN_BENCH_ONLY").map_or(true, |f| label.contains(f.trim()))
}

/// A URL with its password replaced by `***`, for output: the userinfo
/// password and the value of any `password=`, `passwd=`, `pass=` or `pwd=`
/// parameter (URL query or key=value string), as the crate's own masking.
pub fn redact(url: &str) -> String {
    ["password=", "passwd=", "pass=", "pwd="]
        .iter()
        .fold(redact_userinfo(url), |text, key| mask_params(&text, key))
}

fn redact_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

fn mask_params(text: &str, key: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(key) {
        out.push_str(&rest[..i + key.len()]);
        let value = &rest[i + key.len()..];
        let end = value
            .find(|c: char| c == '&' || c.is_whitespace())
            .unwrap_or(value.len());
        out.push_str("***");
        rest = &value[end..];
    }
    out.push_str(rest);
    out
}

/// Criterion writing to [`criterion_dir`], configured from the command line.
pub fn criterion() -> criterion::Criterion {
    criterion::Criterion::default()
        .output_directory(&criterion_dir())
        .configure_from_args()
}

/// Where criterion writes its estimates (as criterion itself chooses it).
pub fn criterion_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("criterion")
}

/// The median time per iteration (ns) criterion estimated for
/// `group/id` in this run (`None` when it did not run since `since`).
pub fn criterion_median_ns(group: &str, id: &str, since: std::time::SystemTime) -> Option<f64> {
    let path = criterion_dir()
        .join(group)
        .join(id)
        .join("new")
        .join("estimates.json");
    let modified = std::fs::metadata(&path).ok()?.modified().ok()?;
    if modified < since {
        return None;
    }
    let text = std::fs::read_to_string(&path).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json["median"]["point_estimate"].as_f64()
}

// ---- formatting -------------------------------------------------------------

/// A latency for a table: `850ns`, `12.3µs`, `4.56ms`, `1.20s`.
pub fn fmt_latency(d: Duration) -> String {
    let ns = d.as_nanos() as f64;
    if ns < 1e3 {
        format!("{ns:.0}ns")
    } else if ns < 1e6 {
        format!("{:.1}µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.2}ms", ns / 1e6)
    } else {
        format!("{:.2}s", ns / 1e9)
    }
}

/// A rate for a table: `12.3 M/s`, `45.6 k/s`, `789/s`.
pub fn fmt_rate(per_sec: f64) -> String {
    if per_sec >= 1e6 {
        format!("{:.2} M/s", per_sec / 1e6)
    } else if per_sec >= 1e3 {
        format!("{:.1} k/s", per_sec / 1e3)
    } else {
        format!("{per_sec:.0}/s")
    }
}

/// `a / b` as `1.23x`, or `-` when either is missing or zero.
pub fn fmt_ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 && a > 0.0 => format!("{:.2}x", a / b),
        _ => "-".to_owned(),
    }
}

/// The median of some values (the lower middle for an even count).
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values
        .get((values.len().saturating_sub(1)) / 2)
        .copied()
        .unwrap_or(0.0)
}

/// A one-line description of this machine for the tables' headers.
pub fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| t.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned());
    format!("{cpus} CPUs ({model}), load average {load} at start")
}
