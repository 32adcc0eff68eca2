//! Concurrency stress: 32 threads run random checkouts, holds, returns,
//! detaches, broken marks and panics against a small pool while a chaos
//! thread injects random faults (failing and panicking connects, inits,
//! pings and `is_broken`, failing checkins, connections killed by the
//! "server"). After every step: no connection has two holders, the pool's
//! invariants hold, and never more than `pool_size + max_overflow` are
//! open. At the end: every thread finished (a watchdog turns a deadlock
//! into a failure), the counters are back at rest and add up, and the
//! fake database holds exactly the connections the pool says are open.

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use cistern::testing::FaultManager;
use cistern::{Pool, Pooled};
use common::{
    BuildOn, Rng, assert_counters_add_up, calm, poll_until, quiet_scripted_panics, sized,
};

const THREADS: usize = 32;
const STEPS: usize = 250;
const POOL_SIZE: usize = 4;
const MAX_OVERFLOW: usize = 2;
const MAX_OPEN: usize = POOL_SIZE + MAX_OVERFLOW;

/// The first invariant violation seen by any thread.
#[derive(Default)]
struct Violations(Mutex<Vec<String>>);

impl Violations {
    fn report(&self, what: String) {
        self.0.lock().unwrap().push(what);
    }
    fn check(&self) {
        let v = self.0.lock().unwrap();
        assert!(v.is_empty(), "{} violations, first: {}", v.len(), v[0]);
    }
}

fn check_step(p: &Pool<FaultManager>, v: &Violations, step: &str) {
    if let Err(e) = p.check_invariants() {
        v.report(format!("after {step}: {e}"));
    }
    let s = p.stats();
    if s.open > MAX_OPEN {
        v.report(format!("after {step}: {} open > {MAX_OPEN}", s.open));
    }
}

/// Holds a checked-out connection: marks it entered (a second holder of
/// the same connection would find it entered already).
fn use_conn(g: &mut Pooled<FaultManager>, v: &Violations, rng: &mut Rng) {
    if !g.enter() {
        v.report(format!("connection {} handed to two holders", g.id()));
        return;
    }
    let _ = g.query();
    if rng.below(4) == 0 {
        std::thread::sleep(Duration::from_micros(rng.below(800)));
    }
    g.leave();
}

fn worker(p: Pool<FaultManager>, v: Arc<Violations>, seed: u64, ok: Arc<AtomicU64>) {
    let mut rng = Rng::new(seed);
    for _ in 0..STEPS {
        let op = rng.below(100);
        let step = match op {
            0..=59 => {
                let timeout = Duration::from_millis(50 + rng.below(200));
                match p.get_timeout(timeout) {
                    Ok(mut g) => {
                        ok.fetch_add(1, Ordering::Relaxed);
                        use_conn(&mut g, &v, &mut rng);
                        match rng.below(20) {
                            0 => {
                                let conn = Pooled::detach(g);
                                drop(conn);
                                "get + detach"
                            }
                            1 => {
                                Pooled::mark_broken(&mut g);
                                drop(g);
                                "get + mark_broken"
                            }
                            2 => {
                                let r = catch_unwind(AssertUnwindSafe(move || {
                                    let _g = g;
                                    panic!("scripted panic in user code");
                                }));
                                assert!(r.is_err());
                                "get + panic"
                            }
                            _ => {
                                drop(g);
                                "get + return"
                            }
                        }
                    }
                    Err(e) => {
                        if !e.is_timeout() {
                            v.report(format!("unexpected error: {e}"));
                        }
                        "get (timed out)"
                    }
                }
            }
            60..=79 => {
                if let Some(mut g) = p.try_get() {
                    ok.fetch_add(1, Ordering::Relaxed);
                    use_conn(&mut g, &v, &mut rng);
                }
                "try_get"
            }
            80..=89 => {
                if let Ok(mut g) = p.get_timeout(Duration::ZERO) {
                    ok.fetch_add(1, Ordering::Relaxed);
                    use_conn(&mut g, &v, &mut rng);
                }
                "get_timeout(0)"
            }
            _ => {
                // Two at once, returned in random order.
                let a = p.get_timeout(Duration::from_millis(100));
                let b = p.get_timeout(Duration::from_millis(100));
                if let (Ok(a), Ok(b)) = (&a, &b) {
                    if a.id() == b.id() {
                        v.report(format!("connection {} handed out twice", a.id()));
                    }
                }
                if rng.below(2) == 0 {
                    drop(a);
                    drop(b);
                } else {
                    drop(b);
                    drop(a);
                }
                "two gets"
            }
        };
        check_step(&p, &v, step);
    }
}

/// Injects a random fault every few milliseconds until told to stop.
fn chaos(db: FaultManager, stop: Arc<AtomicBool>, seed: u64) {
    let mut rng = Rng::new(seed);
    while !stop.load(Ordering::Relaxed) {
        match rng.below(9) {
            0 => db.fail_next_connects(1 + rng.below(3) as usize),
            1 => db.panic_next_connects(1),
            2 => db.fail_next_inits(1),
            3 => db.fail_next_pings(1),
            4 => db.panic_next_pings(1),
            5 => db.panic_next_is_broken(1),
            6 => db.fail_next_checkins(1),
            7 => db.kill(1 + rng.below(db.connects_ok().max(1))),
            _ => db.kill_all(),
        }
        std::thread::sleep(Duration::from_millis(2 + rng.below(8)));
    }
    // Clear every pending fault.
    calm(&db);
}

#[test]
fn many_threads_random_operations_and_faults_keep_every_invariant() {
    quiet_scripted_panics();
    let db = FaultManager::new();
    let p = sized(POOL_SIZE, MAX_OVERFLOW)
        .name("stress")
        .min_idle(1)
        .idle_timeout(Duration::from_millis(100))
        .recycle_after(Duration::from_millis(300))
        .ping_bypass(Duration::from_millis(1))
        .checkout_timeout(Duration::from_millis(500))
        .connect_timeout(Duration::from_millis(500))
        .backoff_initial(Duration::from_millis(2))
        .backoff_max(Duration::from_millis(10))
        .leak_threshold(None)
        .leak_backtraces(false)
        .build_on(&db);
    let violations = Arc::new(Violations::default());
    let served = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    println!("stress seed {seed}");

    let chaos_thread = {
        let (db, stop) = (db.clone(), Arc::clone(&stop));
        std::thread::spawn(move || chaos(db, stop, seed ^ 0xC4A05))
    };
    let (done_tx, done_rx) = mpsc::channel();
    for i in 0..THREADS {
        let (p, v, ok, tx) = (
            p.clone(),
            Arc::clone(&violations),
            Arc::clone(&served),
            done_tx.clone(),
        );
        std::thread::Builder::new()
            .name(format!("stress-{i}"))
            .spawn(move || {
                let r = catch_unwind(AssertUnwindSafe(|| worker(p, v, seed + i as u64, ok)));
                let _ = tx.send((i, r.is_ok()));
            })
            .unwrap();
    }
    drop(done_tx);
    // Watchdog: every worker must finish; a deadlock fails the test here.
    let deadline = Instant::now() + Duration::from_secs(60);
    for _ in 0..THREADS {
        let left = deadline.saturating_duration_since(Instant::now());
        match done_rx.recv_timeout(left) {
            Ok((i, finished)) => assert!(finished, "worker {i} panicked"),
            Err(_) => {
                stop.store(true, Ordering::Relaxed);
                panic!(
                    "deadlock: workers still running after 60 s; pool state {:?}, holders {:?}",
                    p.stats(),
                    p.holders()
                );
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    chaos_thread.join().unwrap();
    violations.check();
    assert!(served.load(Ordering::Relaxed) > 0);

    // At rest: nothing in use, waiting or connecting; the counters add up;
    // the fake database holds exactly what the pool counts as open.
    let settled = poll_until(Duration::from_secs(20), || {
        let s = p.stats();
        s.in_use == 0 && s.waiting == 0 && s.connecting == 0 && db.live() == s.open
    });
    assert!(
        settled,
        "never settled: {:?}, live {}",
        p.stats(),
        db.live()
    );
    let s = p.stats();
    println!("{s:#?}");
    assert_counters_add_up(&s);
    assert!(s.open <= MAX_OPEN);
    assert!(p.holders().is_empty());
    p.check_invariants().unwrap();
    // Full capacity is still there: no slot was lost.
    let guards: Vec<_> = (0..MAX_OPEN)
        .map(|i| {
            p.get_timeout(Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("checkout {i} of {MAX_OPEN} at the end: {e}"))
        })
        .collect();
    let mut ids: Vec<u64> = guards.iter().map(|g| g.id()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), MAX_OPEN, "a connection handed out twice");
    drop(guards);
    p.close();
    assert_eq!(db.live(), 0, "connections left open after close");
}
