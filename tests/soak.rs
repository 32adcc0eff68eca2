//! Soak: 64 threads against a pool of 4 + 4 while a chaos thread injects
//! faults into the fake database (failing, slow, hanging and panicking
//! connects; failing and panicking pings and checks; failing inits and
//! check-ins; server-side kills; `retire_all`) and workers hold connections
//! for random times, mark them broken, detach them, or panic holding them.
//!
//! It runs `CISTERN_SOAK_SECS` seconds (20 by default). Meanwhile a monitor
//! checks every snapshot: the invariants hold, never more than the maximum
//! open, `created - closed - detached == open`, counters never go backwards.
//! At the end: every worker finished (a watchdog fails the test instead of
//! hanging), no connection was ever held twice at once (`FaultConn::enter`),
//! the counters agree with what the workers saw, and once the pool is closed
//! no connection is left alive.

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use cistern::testing::FaultManager;
use cistern::{Pool, Pooled, Stats};
use common::{Rng, assert_counters_add_up, calm, poll_until, quiet_scripted_panics, sized};

const WORKERS: usize = 64;
const POOL_SIZE: usize = 4;
const MAX_OVERFLOW: usize = 4;
/// Message of the panics workers raise on purpose (kept out of the output).
const SCRIPTED_PANIC: &str = "soak: scripted panic while holding a connection";

fn soak_duration() -> Duration {
    let secs = std::env::var("CISTERN_SOAK_SECS")
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .unwrap_or(20.0);
    Duration::from_secs_f64(secs)
}

/// What the workers saw, summed over all of them.
#[derive(Default)]
struct Seen {
    got: AtomicU64,
    detached: AtomicU64,
    timeouts: AtomicU64,
    nothing_idle: AtomicU64,
    panicked_holding: AtomicU64,
    /// Anything that must never happen (an unexpected error, a connection
    /// held twice); the test fails listing them.
    violations: Mutex<Vec<String>>,
}

impl Seen {
    fn violation(&self, what: String) {
        let mut v = self.violations.lock().unwrap();
        if v.len() < 20 {
            v.push(what);
        }
    }
}

fn worker(
    id: usize,
    pool: Pool<FaultManager>,
    stop: Arc<AtomicBool>,
    lull: Arc<AtomicBool>,
    seen: Arc<Seen>,
) {
    let mut rng = Rng::new(id as u64 + 1);
    while !stop.load(Ordering::Relaxed) {
        // During a lull most workers rest, so connections go idle, overflow
        // is closed as excess and idle ones time out.
        if lull.load(Ordering::Relaxed) && id % 16 != 0 {
            thread::sleep(Duration::from_millis(5));
            continue;
        }
        let got = match rng.below(10) {
            0 => pool.try_get().ok_or(None),
            1 => pool.get_timeout(Duration::ZERO).map_err(Some),
            _ => pool.get_timeout(rng.millis(300)).map_err(Some),
        };
        let mut conn = match got {
            Ok(c) => c,
            Err(None) => {
                seen.nothing_idle.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            Err(Some(e)) if e.is_timeout() => {
                seen.timeouts.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            Err(Some(e)) => {
                seen.violation(format!("worker {id}: unexpected error: {e}"));
                continue;
            }
        };
        seen.got.fetch_add(1, Ordering::Relaxed);
        if !conn.enter() {
            seen.violation(format!(
                "worker {id}: connection {} (db {}) handed out while another thread holds it",
                Pooled::id(&conn),
                conn.id()
            ));
            continue;
        }
        // Hold it: mostly briefly, sometimes for a while.
        let hold = if rng.chance(5) {
            rng.millis(25)
        } else {
            rng.millis(2)
        };
        let failed = conn.query().is_err();
        thread::sleep(hold);
        conn.leave();
        match rng.below(1000) {
            // The application saw its query fail: do not reuse it.
            _ if failed && rng.chance(50) => Pooled::mark_broken(&mut conn),
            0..=9 => Pooled::mark_broken(&mut conn),
            10..=12 => {
                seen.detached.fetch_add(1, Ordering::Relaxed);
                drop(Pooled::detach(conn));
                continue;
            }
            13..=14 => {
                let panicked = catch_unwind(AssertUnwindSafe(move || {
                    let _held = conn;
                    panic!("{}", SCRIPTED_PANIC);
                }));
                if panicked.is_err() {
                    seen.panicked_holding.fetch_add(1, Ordering::Relaxed);
                }
                continue;
            }
            _ => {}
        }
        drop(conn);
    }
}

/// Random faults until `stop`; every fault it sets is undone before it
/// returns.
fn chaos(pool: Pool<FaultManager>, db: FaultManager, stop: Arc<AtomicBool>, lull: Arc<AtomicBool>) {
    let mut rng = Rng::new(0xC4A05);
    while !stop.load(Ordering::Relaxed) {
        if rng.chance(1) {
            lull.store(true, Ordering::Relaxed);
            thread::sleep(Duration::from_millis(150) + rng.millis(250));
            lull.store(false, Ordering::Relaxed);
        }
        match rng.below(20) {
            0..=3 => {}
            4 => db.fail_next_connects(rng.below(3) as usize + 1),
            5 => db.connect_delay(rng.millis(10)),
            6 => {
                // The database is down for a moment.
                db.refuse_connects(true);
                thread::sleep(rng.millis(80));
                db.refuse_connects(false);
            }
            7 | 8 => db.fail_next_pings(rng.below(3) as usize + 1),
            9 => db.fail_next_inits(1),
            10 => db.fail_next_checkins(rng.below(2) as usize + 1),
            11..=12 => {
                // Ids are 1, 2, 3... in connect order: pick a recent one.
                let newest = db.connects_ok();
                if newest > 0 {
                    db.kill(newest - rng.below(newest.min(12)));
                }
            }
            13 | 14 => {
                if rng.chance(5) {
                    db.kill_all();
                }
            }
            15 => {
                // Connects hang past connect_timeout: the pool must give up
                // on them, and keep late results only if there is room.
                db.hang_connects(Duration::from_millis(400));
                thread::sleep(rng.millis(250));
                db.release();
            }
            16 => {
                if rng.chance(30) {
                    db.panic_next_connects(1);
                }
            }
            17 => {
                if rng.chance(30) {
                    db.panic_next_pings(1);
                }
            }
            18 => {
                if rng.chance(30) {
                    db.panic_next_is_broken(1);
                }
            }
            _ => {
                if rng.chance(25) {
                    pool.retire_all();
                }
            }
        }
        thread::sleep(rng.millis(20));
    }
    calm(&db);
}

/// Every counter only grows.
fn went_backwards(a: &Stats, b: &Stats) -> Option<&'static str> {
    let pairs = [
        ("created", a.created, b.created),
        ("closed", a.closed_by.total(), b.closed_by.total()),
        ("detached", a.detached, b.detached),
        ("connect_errors", a.connect_errors, b.connect_errors),
        ("checkouts", a.checkouts, b.checkouts),
        ("waited", a.waited, b.waited),
        ("timeouts", a.timeouts, b.timeouts),
        ("pings", a.pings, b.pings),
        ("leaks_reported", a.leaks_reported, b.leaks_reported),
        ("held.count", a.held.count, b.held.count),
    ];
    pairs
        .into_iter()
        .find(|(_, before, after)| after < before)
        .map(|(name, _, _)| name)
}

/// Checks every snapshot it can take until `stop`.
fn monitor(pool: Pool<FaultManager>, stop: Arc<AtomicBool>, seen: Arc<Seen>) {
    let mut last = pool.stats();
    while !stop.load(Ordering::Relaxed) {
        if let Err(e) = pool.check_invariants() {
            seen.violation(format!("invariant broken: {e}"));
        }
        let s = pool.stats();
        if s.open > s.max_open() {
            seen.violation(format!("{} open > maximum {}", s.open, s.max_open()));
        }
        if s.idle > s.pool_size || s.open != s.idle + s.in_use {
            seen.violation(format!("inconsistent sizes: {s:?}"));
        }
        if s.created - s.closed_by.total() - s.detached != s.open as u64 {
            seen.violation(format!("created - closed - detached != open: {s:?}"));
        }
        if let Some(name) = went_backwards(&last, &s) {
            seen.violation(format!("counter {name} went backwards"));
        }
        if pool.holders().len() > s.max_open() {
            seen.violation("more holders than connections".to_owned());
        }
        last = s;
        thread::sleep(Duration::from_millis(1));
    }
}

/// The pool and the database seen at one quiet moment.
struct Rest {
    stats: Stats,
    live: usize,
    connect_attempts: u64,
    connects_ok: u64,
    pings: u64,
}

/// Waits for a moment when nothing is checked out, waiting or connecting
/// and nothing changes between two looks 20 ms apart, and returns it.
fn quiet_snapshot(pool: &Pool<FaultManager>, db: &FaultManager) -> Result<Rest, String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let before = pool.stats();
        let rest = Rest {
            stats: before.clone(),
            live: db.live(),
            connect_attempts: db.connect_attempts(),
            connects_ok: db.connects_ok(),
            pings: db.pings(),
        };
        thread::sleep(Duration::from_millis(20));
        let after = pool.stats();
        let still = db.live() == rest.live
            && db.connect_attempts() == rest.connect_attempts
            && db.connects_ok() == rest.connects_ok
            && db.pings() == rest.pings;
        let idle = before.in_use == 0 && before.waiting == 0 && before.connecting == 0;
        if still && idle && before == after {
            return Ok(rest);
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "the pool never came to rest within 30 s: {after:#?}; live {}",
                db.live()
            ));
        }
    }
}

/// Aborts the process (with a message) if the test is not done by `limit`:
/// a deadlock fails the run instead of hanging it. Inspects nothing that
/// takes the pool's lock.
fn watchdog(limit: Duration, progress: Arc<AtomicU64>) -> mpsc::Sender<()> {
    let (done, rx) = mpsc::channel::<()>();
    thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
            eprintln!(
                "soak watchdog: the test did not finish within {limit:?} (last phase reached: {}); \
                 a deadlock or a lost wake-up. Aborting.",
                progress.load(Ordering::SeqCst)
            );
            std::process::abort();
        }
    });
    done
}

#[test]
fn sixty_four_threads_with_random_faults_lose_and_duplicate_nothing() {
    quiet_scripted_panics();
    let run_for = soak_duration();
    let phase = Arc::new(AtomicU64::new(0));
    let watchdog_done = watchdog(run_for * 3 + Duration::from_secs(180), Arc::clone(&phase));

    let db = FaultManager::new();
    let pool = sized(POOL_SIZE, MAX_OVERFLOW)
        .name("soak")
        .min_idle(2)
        .checkout_timeout(Duration::from_secs(5))
        .connect_timeout(Duration::from_millis(200))
        .backoff_initial(Duration::from_millis(1))
        .backoff_max(Duration::from_millis(20))
        .ping_bypass(Duration::from_millis(2))
        .recycle_after(Duration::from_millis(300))
        .idle_timeout(Duration::from_millis(150))
        .leak_threshold(Duration::from_millis(10))
        .leak_backtraces(false)
        .build(db.clone())
        .expect("soak pool builds");

    let stop = Arc::new(AtomicBool::new(false));
    let lull = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Seen::default());
    let (finished_tx, finished) = mpsc::channel::<usize>();
    for id in 0..WORKERS {
        let (pool, stop, lull, seen, finished_tx) = (
            pool.clone(),
            Arc::clone(&stop),
            Arc::clone(&lull),
            Arc::clone(&seen),
            finished_tx.clone(),
        );
        thread::Builder::new()
            .name(format!("soak-worker-{id}"))
            .spawn(move || {
                worker(id, pool, stop, lull, seen);
                let _ = finished_tx.send(id);
            })
            .expect("spawn a worker");
    }
    drop(finished_tx);
    let chaos_thread = {
        let (pool, db, stop, lull) = (
            pool.clone(),
            db.clone(),
            Arc::clone(&stop),
            Arc::clone(&lull),
        );
        thread::spawn(move || chaos(pool, db, stop, lull))
    };
    let monitor_thread = {
        let (pool, stop, seen) = (pool.clone(), Arc::clone(&stop), Arc::clone(&seen));
        thread::spawn(move || monitor(pool, stop, seen))
    };

    thread::sleep(run_for);
    stop.store(true, Ordering::SeqCst);
    phase.store(1, Ordering::SeqCst);

    // Every worker finishes within a generous bound (its longest wait is
    // 300 ms, its longest hold 25 ms).
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut done = [false; WORKERS];
    let mut remaining = WORKERS;
    while remaining > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        match finished.recv_timeout(left) {
            Ok(id) => {
                done[id] = true;
                remaining -= 1;
            }
            Err(_) => {
                let stuck: Vec<usize> = (0..WORKERS).filter(|i| !done[*i]).collect();
                panic!(
                    "{} workers did not finish within 60 s of the stop signal: {stuck:?}; pool: {:?}; \
                     holders: {:?}",
                    stuck.len(),
                    pool.stats(),
                    pool.holders()
                );
            }
        }
    }
    chaos_thread.join().expect("chaos thread");
    monitor_thread.join().expect("monitor thread");
    phase.store(2, Ordering::SeqCst);

    let violations = seen.violations.lock().unwrap().clone();
    assert!(
        violations.is_empty(),
        "violations during the run:\n{}",
        violations.join("\n")
    );

    // At rest: nothing out, nothing waiting or connecting, every live
    // connection of the database is one the pool holds. (Recycling and
    // min_idle keep replacing connections, so "at rest" is a snapshot taken
    // between two such events.)
    calm(&db);
    let rest = quiet_snapshot(&pool, &db).unwrap_or_else(|e| panic!("{e}"));
    let s = rest.stats.clone();
    phase.store(3, Ordering::SeqCst);

    let got = seen.got.load(Ordering::SeqCst);
    let detached = seen.detached.load(Ordering::SeqCst);
    eprintln!(
        "soak: {:?}, {got} checkouts, {} timeouts, {} try_get misses, {} panics holding, {detached} detached; \
         pool: created {}, closed {:?}, connect errors {}, pings {}, leaks reported {}",
        run_for,
        seen.timeouts.load(Ordering::SeqCst),
        seen.nothing_idle.load(Ordering::SeqCst),
        seen.panicked_holding.load(Ordering::SeqCst),
        s.created,
        s.closed_by,
        s.connect_errors,
        s.pings,
        s.leaks_reported,
    );
    assert!(got > 0, "no checkout succeeded: {s:#?}");
    assert!(s.open <= s.max_open(), "{s:#?}");
    assert!(pool.holders().is_empty(), "{:?}", pool.holders());
    pool.check_invariants().expect("invariants at rest");
    assert_counters_add_up(&s);
    assert_eq!(s.detached, detached, "detaches the workers made");
    // Every guard that was not detached came back once.
    assert_eq!(s.held.count, got - detached, "returns counted: {s:#?}");
    assert_eq!(
        s.closed_by.panicked,
        seen.panicked_holding.load(Ordering::SeqCst),
        "guards dropped while panicking are closed as panicked"
    );
    assert_eq!(
        s.timeouts,
        seen.timeouts.load(Ordering::SeqCst),
        "timeouts the workers saw"
    );
    // Checkouts also count connections found broken at the instant of
    // handing out (see Stats::checkouts).
    assert!(
        s.checkouts >= got,
        "checkouts {} < handed out {got}",
        s.checkouts
    );
    assert!(s.checkouts - got <= s.closed_by.broken, "{s:#?}");
    // Every successful driver connect is counted as created; every attempt
    // that did not succeed as a connect error at least once.
    assert_eq!(
        s.created, rest.connects_ok,
        "created vs the database's successful connects"
    );
    let failed_attempts = rest.connect_attempts - rest.connects_ok;
    assert!(
        s.connect_errors >= failed_attempts,
        "connect errors {} < failed attempts {failed_attempts}",
        s.connect_errors
    );
    assert_eq!(s.pings, rest.pings, "pings vs the database's");
    assert_eq!(rest.live, s.open, "live connections vs open at rest");

    // The pool still serves after all that.
    let conn = pool
        .get_timeout(Duration::from_secs(10))
        .expect("the pool serves once the faults stop");
    assert!(conn.enter());
    conn.leave();
    drop(conn);

    // Closing: every connection is closed, none is left alive anywhere.
    assert_eq!(pool.close_timeout(Duration::from_secs(10)), 0);
    let all_dropped = poll_until(Duration::from_secs(30), || db.live() == 0);
    assert!(
        all_dropped,
        "timed out waiting for every connection to be dropped after close: {} alive; {:?}",
        db.live(),
        pool.stats()
    );
    let s = pool.stats();
    assert_eq!(s.open, 0, "{s:#?}");
    assert_counters_add_up(&s);
    phase.store(4, Ordering::SeqCst);
    let _ = watchdog_done.send(());
}
