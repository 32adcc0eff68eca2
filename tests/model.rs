//! The pool against a reference model: random sequences of operations (get
//! with and without waiting, try_get, return, return marked broken, detach,
//! close, retire_all, clock advances, failing connects, inits, pings and
//! check-ins, server-side kills) run on a real pool and on a small model of
//! its rules written here. After every step the pool's stats, its holder
//! table, its internal invariants and the fake database's live connections
//! must equal what the model says.
//!
//! How time is controlled, so the model stays deterministic:
//! - Connection ages, idle times, the ping bypass, hold times and leak ages
//!   run on a manual clock (`Clock::manual()` + `Builder::clock`) that only
//!   the test moves. After each advance the test runs one housekeeping round
//!   itself (`Pool::run_maintenance`); the background thread may run the same
//!   round too, which changes nothing: at a fixed clock reading a round is
//!   idempotent, and nothing the other operations do at that reading makes a
//!   connection or a holder due.
//! - Waiting deadlines use real time. The model predicts each checkout first
//!   and the test picks the timeout from the prediction: zero, 5 ms when the
//!   model says the pool is full (the wait must time out), 10 s when a connect
//!   will serve it (the wait ends as soon as it does). Connect backoff is
//!   1 ms, so scripted connect failures only cost a few milliseconds.
//! - Connects run on background threads: after every step the test polls
//!   (generous deadline) until no connect is in flight and nobody waits. With
//!   `min_idle` 0 a connect only starts for a waiter, so the pool is then at
//!   rest.
//!
//! Cases: 64 by default, `CISTERN_MODEL_CASES` for more.

use std::collections::{HashMap, HashSet};
use std::thread;
use std::time::{Duration, Instant};

use cistern::testing::FaultManager;
use cistern::{Clock, CloseReason, Pool, Pooled};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError};

const PING_BYPASS: Duration = Duration::from_millis(500);
const RECYCLE_AFTER: Duration = Duration::from_secs(40);
const IDLE_TIMEOUT: Duration = Duration::from_secs(15);
const LEAK_THRESHOLD: Duration = Duration::from_secs(25);
/// A wait the model says a connect ends (it returns as soon as it does).
const SERVED_WAIT: Duration = Duration::from_secs(10);
/// A wait the model says must time out.
const FUTILE_WAIT: Duration = Duration::from_millis(5);
/// How long a checkout waits while the database refuses connects.
const DOWN_WAIT: Duration = Duration::from_millis(20);

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).expect("test durations fit in u64 nanoseconds")
}

#[derive(Debug, Clone, Copy)]
struct Settings {
    pool_size: usize,
    max_overflow: usize,
    pre_ping: bool,
}

impl Settings {
    fn max_open(&self) -> usize {
        self.pool_size + self.max_overflow
    }
}

#[derive(Debug, Clone)]
enum Op {
    /// `get_timeout`, long enough for a connect when there is room.
    Get,
    /// `get_timeout(0)`: never waits, never connects.
    GetNow,
    /// `try_get`.
    TryGet,
    /// A checkout while the database refuses every connect.
    GetWhileDown,
    /// Drop one of the guards held (the number picks one, modulo how many
    /// are held).
    Return(usize),
    /// `Pooled::mark_broken`, then drop.
    ReturnBroken(usize),
    /// `Pooled::detach`, then drop the driver connection.
    Detach(usize),
    /// Move the manual clock, then run one housekeeping round.
    Advance(Duration),
    FailConnects(usize),
    FailInits(usize),
    FailPings(usize),
    FailCheckins(usize),
    /// The server closes one open connection.
    Kill(usize),
    /// The server restarts: every open connection is dead.
    KillAll,
    RetireAll,
    Close,
}

fn settings() -> impl Strategy<Value = Settings> {
    (0usize..=3, 0usize..=2, any::<bool>())
        .prop_filter("at least one connection", |(p, o, _)| p + o > 0)
        .prop_map(|(pool_size, max_overflow, pre_ping)| Settings {
            pool_size,
            max_overflow,
            pre_ping,
        })
}

fn op() -> impl Strategy<Value = Op> {
    let advance = prop::sample::select(vec![
        Duration::from_millis(1),
        Duration::from_millis(100),
        Duration::from_millis(499),
        PING_BYPASS,
        Duration::from_secs(2),
        IDLE_TIMEOUT,
        IDLE_TIMEOUT + Duration::from_secs(1),
        LEAK_THRESHOLD,
        LEAK_THRESHOLD + Duration::from_secs(1),
        RECYCLE_AFTER,
        RECYCLE_AFTER + Duration::from_secs(1),
    ]);
    prop_oneof![
        12 => Just(Op::Get),
        3 => Just(Op::GetNow),
        3 => Just(Op::TryGet),
        1 => Just(Op::GetWhileDown),
        12 => any::<usize>().prop_map(Op::Return),
        2 => any::<usize>().prop_map(Op::ReturnBroken),
        2 => any::<usize>().prop_map(Op::Detach),
        8 => advance.prop_map(Op::Advance),
        1 => (1usize..=3).prop_map(Op::FailConnects),
        1 => (1usize..=2).prop_map(Op::FailInits),
        2 => (1usize..=2).prop_map(Op::FailPings),
        1 => Just(Op::FailCheckins(1)),
        3 => any::<usize>().prop_map(Op::Kill),
        1 => Just(Op::KillAll),
        1 => Just(Op::RetireAll),
        1 => Just(Op::Close),
    ]
}

/// One physical connection as the model sees it (times in clock nanoseconds).
#[derive(Debug, Clone)]
struct Conn {
    pool_id: u64,
    db_id: u64,
    created: u64,
    last_used: u64,
    validated: u64,
    generation: u64,
}

#[derive(Debug, Clone)]
struct Held {
    conn: Conn,
    taken: u64,
    reported: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Wait,
    Now,
    Try,
    Down,
}

#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Got {
        pool_id: u64,
        db_id: u64,
    },
    TimedOut,
    /// `try_get` found nothing.
    Nothing,
    Closed,
}

/// The reference model: the pool's documented rules, single-threaded.
#[derive(Debug, Clone)]
struct Model {
    s: Settings,
    now: u64,
    /// Idle connections, least recently returned first.
    idle: Vec<Conn>,
    /// Checked out, in the order of the test's guards.
    held: Vec<Held>,
    closed_pool: bool,
    generation: u64,
    suspect_before: u64,
    next_pool_id: u64,
    next_db_id: u64,
    killed: HashSet<u64>,
    fail_connects: usize,
    fail_inits: usize,
    fail_pings: usize,
    fail_checkins: usize,
    created: u64,
    closed: HashMap<CloseReason, u64>,
    detached: u64,
    connect_errors: u64,
    failures_in_a_row: u64,
    checkouts: u64,
    waited: u64,
    timeouts: u64,
    pings: u64,
    leaks_reported: u64,
    held_count: u64,
    held_sum: u64,
    held_max: u64,
    connect_attempts: u64,
    is_broken_calls: u64,
}

impl Model {
    fn new(s: Settings, now: u64) -> Model {
        Model {
            s,
            now,
            idle: Vec::new(),
            held: Vec::new(),
            closed_pool: false,
            generation: 0,
            suspect_before: 0,
            next_pool_id: 1,
            next_db_id: 1,
            killed: HashSet::new(),
            fail_connects: 0,
            fail_inits: 0,
            fail_pings: 0,
            fail_checkins: 0,
            created: 0,
            closed: HashMap::new(),
            detached: 0,
            connect_errors: 0,
            failures_in_a_row: 0,
            checkouts: 0,
            waited: 0,
            timeouts: 0,
            pings: 0,
            leaks_reported: 0,
            held_count: 0,
            held_sum: 0,
            held_max: 0,
            connect_attempts: 0,
            is_broken_calls: 0,
        }
    }

    fn open(&self) -> usize {
        self.idle.len() + self.held.len()
    }

    fn room(&self) -> usize {
        self.s.max_open() - self.open()
    }

    fn close(&mut self, reason: CloseReason) {
        *self.closed.entry(reason).or_default() += 1;
    }

    fn closed_by(&self, reason: CloseReason) -> u64 {
        self.closed.get(&reason).copied().unwrap_or(0)
    }

    fn expired(&self, c: &Conn) -> bool {
        self.now >= c.created + nanos(RECYCLE_AFTER)
    }

    /// The newest usable idle connection; retired and over-age ones met on
    /// the way are closed.
    fn pop_idle(&mut self) -> Option<Conn> {
        while let Some(c) = self.idle.pop() {
            if c.generation < self.generation {
                self.close(CloseReason::Retired);
            } else if self.expired(&c) {
                self.close(CloseReason::Recycled);
            } else {
                return Some(c);
            }
        }
        None
    }

    /// A connect for a waiter: scripted failures are retried until one
    /// succeeds.
    fn connect(&mut self) -> Conn {
        loop {
            self.connect_attempts += 1;
            if self.fail_connects > 0 {
                self.fail_connects -= 1;
                self.connect_errors += 1;
                self.failures_in_a_row += 1;
                continue;
            }
            let db_id = self.next_db_id;
            self.next_db_id += 1;
            self.created += 1;
            if self.fail_inits > 0 {
                self.fail_inits -= 1;
                self.close(CloseReason::FailedInit);
                self.failures_in_a_row += 1;
                continue;
            }
            self.failures_in_a_row = 0;
            let pool_id = self.next_pool_id;
            self.next_pool_id += 1;
            return Conn {
                pool_id,
                db_id,
                created: self.now,
                last_used: self.now,
                validated: self.now,
                generation: self.generation,
            };
        }
    }

    /// A checkout. `Down`: connects are refused; how many attempts the pool
    /// makes while the caller waits is up to the scheduler, so the caller
    /// accounts for them afterwards (`note_refused_connects`).
    fn get(&mut self, mode: Mode) -> Outcome {
        if self.closed_pool {
            return if mode == Mode::Try {
                Outcome::Nothing
            } else {
                Outcome::Closed
            };
        }
        loop {
            let (mut conn, waited) = match self.pop_idle() {
                Some(c) => (c, false),
                None => match mode {
                    Mode::Try => return Outcome::Nothing,
                    Mode::Now | Mode::Down => {
                        self.timeouts += 1;
                        return Outcome::TimedOut;
                    }
                    Mode::Wait if self.room() == 0 => {
                        self.timeouts += 1;
                        return Outcome::TimedOut;
                    }
                    Mode::Wait => (self.connect(), true),
                },
            };
            let ping = self.s.pre_ping
                && (self.now - conn.last_used >= nanos(PING_BYPASS)
                    || conn.validated < self.suspect_before);
            if ping {
                self.pings += 1;
                let ok = if self.killed.contains(&conn.db_id) {
                    false
                } else if self.fail_pings > 0 {
                    self.fail_pings -= 1;
                    false
                } else {
                    true
                };
                if !ok {
                    self.suspect_before = self.suspect_before.max(self.now + 1);
                    self.close(CloseReason::FailedPing);
                    continue;
                }
                conn.validated = self.now;
                self.count_checkout(waited);
            } else {
                // Counted before the no-I/O check, as documented on
                // `Stats::checkouts`.
                self.count_checkout(waited);
                self.is_broken_calls += 1;
                if self.killed.contains(&conn.db_id) {
                    self.close(CloseReason::Broken);
                    continue;
                }
            }
            let out = Outcome::Got {
                pool_id: conn.pool_id,
                db_id: conn.db_id,
            };
            self.held.push(Held {
                conn,
                taken: self.now,
                reported: false,
            });
            return out;
        }
    }

    fn count_checkout(&mut self, waited: bool) {
        self.checkouts += 1;
        if waited {
            self.waited += 1;
        }
    }

    /// Refused attempts observed on the fake database during a `Down` wait.
    fn note_refused_connects(&mut self, attempts: u64) {
        self.connect_attempts += attempts;
        self.connect_errors += attempts;
        self.failures_in_a_row += attempts;
    }

    fn checkin(&mut self, i: usize, marked_broken: bool) {
        let h = self.held.remove(i);
        let mut c = h.conn;
        let held = self.now - h.taken;
        self.held_count += 1;
        self.held_sum += held;
        self.held_max = self.held_max.max(held);
        let mut reason = if marked_broken {
            Some(CloseReason::Broken)
        } else {
            // is_broken, then on_checkin only when is_broken said no.
            self.is_broken_calls += 1;
            if self.killed.contains(&c.db_id) {
                Some(CloseReason::Broken)
            } else if self.fail_checkins > 0 {
                self.fail_checkins -= 1;
                Some(CloseReason::Broken)
            } else {
                None
            }
        };
        if reason.is_none() && self.expired(&c) {
            reason = Some(CloseReason::Recycled);
        }
        c.last_used = self.now;
        if reason.is_none() {
            if self.closed_pool {
                reason = Some(CloseReason::PoolClosed);
            } else if c.generation < self.generation {
                reason = Some(CloseReason::Retired);
            }
        }
        match reason {
            Some(r) => self.close(r),
            None if self.idle.len() >= self.s.pool_size => self.close(CloseReason::Excess),
            None => self.idle.push(c),
        }
    }

    fn detach(&mut self, i: usize) {
        self.held.remove(i);
        self.detached += 1;
    }

    /// The clock moves, then one housekeeping round runs.
    fn advance(&mut self, d: Duration) {
        self.now += nanos(d);
        let idle = std::mem::take(&mut self.idle);
        for c in idle {
            if c.generation < self.generation {
                self.close(CloseReason::Retired);
            } else if self.expired(&c) {
                self.close(CloseReason::Recycled);
            } else {
                self.idle.push(c);
            }
        }
        // min_idle is 0: every idle connection may time out, oldest first.
        while self
            .idle
            .first()
            .is_some_and(|c| self.now - c.last_used >= nanos(IDLE_TIMEOUT))
        {
            self.idle.remove(0);
            self.close(CloseReason::IdleTimeout);
        }
        for h in &mut self.held {
            if !h.reported && self.now - h.taken >= nanos(LEAK_THRESHOLD) {
                h.reported = true;
                self.leaks_reported += 1;
            }
        }
    }

    fn retire_all(&mut self) {
        self.generation += 1;
        for _ in std::mem::take(&mut self.idle) {
            self.close(CloseReason::Retired);
        }
    }

    fn close_pool(&mut self) {
        if self.closed_pool {
            return;
        }
        self.closed_pool = true;
        for _ in std::mem::take(&mut self.idle) {
            self.close(CloseReason::PoolClosed);
        }
    }

    /// Database ids of every open connection, idle first.
    fn open_db_ids(&self) -> Vec<u64> {
        self.idle
            .iter()
            .map(|c| c.db_id)
            .chain(self.held.iter().map(|h| h.conn.db_id))
            .collect()
    }
}

/// The system under test, driven in step with the model.
struct Real {
    db: FaultManager,
    clock: Clock,
    pool: Pool<FaultManager>,
    guards: Vec<Pooled<FaultManager>>,
}

fn build(s: Settings) -> Real {
    let db = FaultManager::new();
    let clock = Clock::manual();
    let pool = Pool::builder()
        .name("model")
        .pool_size(s.pool_size)
        .max_overflow(s.max_overflow)
        .min_idle(0)
        .pre_ping(s.pre_ping)
        .ping_bypass(PING_BYPASS)
        .recycle_after(RECYCLE_AFTER)
        .recycle_spread(0.0)
        .idle_timeout(IDLE_TIMEOUT)
        .leak_threshold(LEAK_THRESHOLD)
        .leak_backtraces(false)
        .checkout_timeout(SERVED_WAIT)
        .connect_timeout(Duration::from_secs(60))
        .backoff_initial(Duration::from_millis(1))
        .backoff_max(Duration::from_millis(1))
        .backoff_multiplier(1.0)
        .clock(clock.clone())
        .build(db.clone())
        .expect("the model's settings are valid");
    Real {
        db,
        clock,
        pool,
        guards: Vec::new(),
    }
}

/// Waits until no connect is in flight and nobody waits.
fn settle(pool: &Pool<FaultManager>) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = pool.stats();
        if s.connecting == 0 && s.waiting == 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!("the pool did not come to rest: {s:?}"));
        }
        thread::sleep(Duration::from_millis(1));
    }
}

/// Runs a checkout on the pool and checks its outcome against the model's.
fn checkout(real: &mut Real, model: &mut Model, mode: Mode) -> Result<(), String> {
    let attempts_before = real.db.connect_attempts();
    let want = model.get(mode);
    let got = match mode {
        Mode::Try => real.pool.try_get().ok_or(None),
        Mode::Now => real.pool.get_timeout(Duration::ZERO).map_err(Some),
        Mode::Wait => {
            let timeout = if want == Outcome::TimedOut {
                FUTILE_WAIT
            } else {
                SERVED_WAIT
            };
            real.pool.get_timeout(timeout).map_err(Some)
        }
        Mode::Down => {
            real.db.refuse_connects(true);
            let got = real.pool.get_timeout(DOWN_WAIT).map_err(Some);
            // Connects stay refused until no attempt is in flight: the
            // attempts the wait started must all fail.
            let settled = settle(&real.pool);
            real.db.refuse_connects(false);
            settled?;
            if want == Outcome::TimedOut {
                model.note_refused_connects(real.db.connect_attempts() - attempts_before);
            }
            got
        }
    };
    match (&want, got) {
        (Outcome::Got { pool_id, db_id }, Ok(g)) => {
            if Pooled::id(&g) != *pool_id || g.id() != *db_id {
                return Err(format!(
                    "handed out pool id {} / db id {}, model expected {pool_id} / {db_id}",
                    Pooled::id(&g),
                    g.id()
                ));
            }
            real.guards.push(g);
            Ok(())
        }
        (Outcome::TimedOut, Err(Some(e))) if e.is_timeout() => Ok(()),
        (Outcome::Closed, Err(Some(e))) if e.is_closed() => Ok(()),
        (Outcome::Nothing, Err(None)) => Ok(()),
        (want, got) => {
            let got = match got {
                Ok(g) => format!("connection {} (db {})", Pooled::id(&g), g.id()),
                Err(None) => "nothing".to_owned(),
                Err(Some(e)) => format!("error: {e}"),
            };
            Err(format!(
                "{mode:?}: pool gave {got}, model expected {want:?}"
            ))
        }
    }
}

fn step(real: &mut Real, model: &mut Model, op: &Op) -> Result<(), String> {
    match op {
        Op::Get => checkout(real, model, Mode::Wait)?,
        Op::GetNow => checkout(real, model, Mode::Now)?,
        Op::TryGet => checkout(real, model, Mode::Try)?,
        Op::GetWhileDown => checkout(real, model, Mode::Down)?,
        Op::Return(i) | Op::ReturnBroken(i) | Op::Detach(i) => {
            if real.guards.is_empty() {
                return Ok(());
            }
            let i = i % real.guards.len();
            let mut g = real.guards.remove(i);
            match op {
                Op::Return(_) => {
                    model.checkin(i, false);
                    drop(g);
                }
                Op::ReturnBroken(_) => {
                    model.checkin(i, true);
                    Pooled::mark_broken(&mut g);
                    drop(g);
                }
                _ => {
                    model.detach(i);
                    drop(Pooled::detach(g));
                }
            }
        }
        Op::Advance(d) => {
            model.advance(*d);
            real.clock.advance(*d);
            real.pool.run_maintenance();
        }
        Op::FailConnects(n) => {
            model.fail_connects = *n;
            real.db.fail_next_connects(*n);
        }
        Op::FailInits(n) => {
            model.fail_inits = *n;
            real.db.fail_next_inits(*n);
        }
        Op::FailPings(n) => {
            model.fail_pings = *n;
            real.db.fail_next_pings(*n);
        }
        Op::FailCheckins(n) => {
            model.fail_checkins = *n;
            real.db.fail_next_checkins(*n);
        }
        Op::Kill(i) => {
            let ids = model.open_db_ids();
            if !ids.is_empty() {
                let id = ids[i % ids.len()];
                model.killed.insert(id);
                real.db.kill(id);
            }
        }
        Op::KillAll => {
            model.killed.extend(model.open_db_ids());
            real.db.kill_all();
        }
        Op::RetireAll => {
            model.retire_all();
            real.pool.retire_all();
        }
        Op::Close => {
            model.close_pool();
            real.pool.close();
        }
    }
    settle(&real.pool)
}

/// Everything observable about the pool, compared with the model.
fn compare(real: &Real, model: &Model) -> Result<(), String> {
    let s = real.pool.stats();
    let mut diffs = Vec::new();
    let mut eq = |what: &str, pool: String, want: String| {
        if pool != want {
            diffs.push(format!("{what}: pool {pool}, model {want}"));
        }
    };
    macro_rules! check {
        ($what:expr, $pool:expr, $model:expr) => {
            eq($what, format!("{:?}", $pool), format!("{:?}", $model))
        };
    }
    let open = model.open();
    check!("open", s.open, open);
    check!("idle", s.idle, model.idle.len());
    check!("in_use", s.in_use, model.held.len());
    check!(
        "overflow_open",
        s.overflow_open,
        open.saturating_sub(model.s.pool_size)
    );
    check!(
        "overflow_in_use",
        s.overflow_in_use,
        model.held.len().saturating_sub(model.s.pool_size)
    );
    check!("waiting", s.waiting, 0usize);
    check!("connecting", s.connecting, 0usize);
    check!("closed", s.closed, model.closed_pool);
    check!("created", s.created, model.created);
    for r in CloseReason::ALL {
        check!(
            &format!("closed_by.{r}"),
            s.closed_by.get(r),
            model.closed_by(r)
        );
    }
    check!("detached", s.detached, model.detached);
    check!("connect_errors", s.connect_errors, model.connect_errors);
    check!(
        "consecutive_connect_failures",
        s.consecutive_connect_failures,
        model.failures_in_a_row
    );
    check!(
        "last_connect_error is set",
        s.last_connect_error.is_some(),
        model.failures_in_a_row > 0
    );
    check!("checkouts", s.checkouts, model.checkouts);
    check!("waited", s.waited, model.waited);
    check!("timeouts", s.timeouts, model.timeouts);
    check!("queue_full", s.queue_full, 0u64);
    check!("pings", s.pings, model.pings);
    check!("leaks_reported", s.leaks_reported, model.leaks_reported);
    check!("held.count", s.held.count, model.held_count);
    check!("held.sum", s.held.sum, Duration::from_nanos(model.held_sum));
    check!("held.max", s.held.max, Duration::from_nanos(model.held_max));
    check!(
        "histogram total",
        s.wait.buckets.last().map(|b| b.1),
        Some(model.checkouts)
    );
    check!(
        "created - closed - detached",
        s.created - s.closed_by.total() - s.detached,
        s.open as u64
    );
    // The fake database's own counters.
    check!("db live connections", real.db.live(), open);
    check!("db pings", real.db.pings(), model.pings);
    check!(
        "db connect attempts",
        real.db.connect_attempts(),
        model.connect_attempts
    );
    check!(
        "db is_broken calls",
        real.db.is_broken_calls(),
        model.is_broken_calls
    );
    // Holders: which connections are out, for how long, reported or not.
    let mut holders: Vec<(u64, Duration, bool)> = real
        .pool
        .holders()
        .into_iter()
        .map(|h| (h.connection_id, h.held, h.reported_as_leak))
        .collect();
    holders.sort();
    let mut want: Vec<(u64, Duration, bool)> = model
        .held
        .iter()
        .map(|h| {
            (
                h.conn.pool_id,
                Duration::from_nanos(model.now - h.taken),
                h.reported,
            )
        })
        .collect();
    want.sort();
    check!("holders", holders, want);
    let guard_ids: Vec<u64> = real.guards.iter().map(Pooled::id).collect();
    let model_ids: Vec<u64> = model.held.iter().map(|h| h.conn.pool_id).collect();
    check!("guards", guard_ids, model_ids);
    if let Err(e) = real.pool.check_invariants() {
        diffs.push(format!("invariant broken: {e}"));
    }
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(diffs.join("\n"))
    }
}

fn run(s: Settings, ops: &[Op]) -> Result<(), String> {
    let mut real = build(s);
    let mut model = Model::new(s, real.clock.now_nanos());
    compare(&real, &model).map_err(|e| format!("after build:\n{e}"))?;
    for (n, op) in ops.iter().enumerate() {
        let result = step(&mut real, &mut model, op).and_then(|()| compare(&real, &model));
        if let Err(e) = result {
            return Err(format!("step {n} ({op:?}):\n{e}\nmodel: {model:#?}"));
        }
    }
    // Wind down: return everything, close, and nothing may stay alive.
    while !real.guards.is_empty() {
        model.checkin(0, false);
        drop(real.guards.remove(0));
    }
    model.close_pool();
    real.pool.close();
    compare(&real, &model).map_err(|e| format!("after closing:\n{e}"))?;
    let Real { db, pool, .. } = real;
    drop(pool);
    if db.live() != 0 {
        return Err(format!("{} connections still alive after close", db.live()));
    }
    Ok(())
}

fn cases() -> u32 {
    std::env::var("CISTERN_MODEL_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn pool_matches_the_reference_model(s in settings(), ops in prop::collection::vec(op(), 1..48)) {
        run(s, &ops).map_err(TestCaseError::fail)?;
    }
}

/// Hand-picked sequences that exercise one rule each, so a regression names
/// the rule even without the random search.
#[test]
fn scripted_sequences_match_the_reference_model() {
    let big = Settings {
        pool_size: 2,
        max_overflow: 1,
        pre_ping: true,
    };
    let scripts: Vec<(&str, Settings, Vec<Op>)> = vec![
        (
            "overflow closed as excess when the base is idle",
            big,
            vec![
                Op::Get,
                Op::Get,
                Op::Get,
                Op::Return(0),
                Op::Return(0),
                Op::Return(0),
            ],
        ),
        (
            "a failed ping marks older connections suspect",
            big,
            vec![
                Op::Get,
                Op::Get,
                Op::Return(0),
                Op::Return(0),
                Op::Advance(PING_BYPASS),
                Op::FailPings(1),
                Op::Get,
                Op::Get,
            ],
        ),
        (
            "killed idle connections are never handed out",
            big,
            vec![
                Op::Get,
                Op::Return(0),
                Op::KillAll,
                Op::Get,
                Op::Advance(PING_BYPASS),
                Op::Return(0),
                Op::KillAll,
                Op::Get,
            ],
        ),
        (
            "recycle, idle timeout and leak reports follow the clock",
            big,
            vec![
                Op::Get,
                Op::Get,
                Op::Return(0),
                Op::Advance(IDLE_TIMEOUT + Duration::from_secs(1)),
                Op::Advance(LEAK_THRESHOLD + Duration::from_secs(1)),
                Op::Advance(RECYCLE_AFTER),
                Op::Return(0),
            ],
        ),
        (
            "the ping bypass ends exactly at ping_bypass",
            big,
            vec![
                Op::Get,
                Op::Return(0),
                Op::Advance(Duration::from_millis(499)),
                Op::Get,
                Op::Return(0),
                Op::Advance(PING_BYPASS),
                Op::Get,
            ],
        ),
        (
            "time rules take effect exactly at their threshold",
            big,
            vec![
                Op::Get,
                Op::Get,
                Op::Return(0),
                Op::Advance(IDLE_TIMEOUT),
                Op::Get,
                Op::Advance(LEAK_THRESHOLD - IDLE_TIMEOUT),
                Op::Advance(RECYCLE_AFTER - LEAK_THRESHOLD),
                Op::Return(0),
            ],
        ),
        (
            "connect and init failures are retried for a waiter",
            big,
            vec![
                Op::FailConnects(3),
                Op::FailInits(2),
                Op::Get,
                Op::GetWhileDown,
                Op::Get,
            ],
        ),
        (
            "retire, detach, close",
            big,
            vec![
                Op::Get,
                Op::Get,
                Op::Return(0),
                Op::RetireAll,
                Op::Detach(0),
                Op::Get,
                Op::Close,
                Op::Return(0),
                Op::Get,
            ],
        ),
    ];
    for (name, s, ops) in scripts {
        if let Err(e) = run(s, &ops) {
            panic!("{name}: {e}");
        }
    }
}
