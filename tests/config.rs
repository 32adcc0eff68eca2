//! Rule 11: configuration is validated at build. Every bad value is an
//! `Error::Config` that names the setting, the value and what is allowed;
//! nothing panics.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use cistern::testing::FaultManager;
use cistern::{Builder, Error, Pool};

const CENTURY_PLUS: Duration = Duration::from_secs(101 * 365 * 24 * 3600);

/// Builds and expects a configuration error for `setting` whose value text
/// contains `value` and whose allowed range mentions `allowed`.
fn rejects(b: Builder<FaultManager>, setting: &str, value: &str, allowed: &str) {
    let db = FaultManager::new();
    let err = match b.build(db.clone()) {
        Ok(_) => panic!("{setting} = {value}: accepted"),
        Err(e) => e,
    };
    let msg = err.to_string();
    match &err {
        Error::Config {
            setting: s,
            value: v,
            expected,
        } => {
            assert_eq!(s, setting, "{msg}");
            assert!(v.contains(value), "value {value:?} not in {v:?}: {msg}");
            assert!(
                expected.contains(allowed),
                "{allowed:?} not in expected {expected:?}: {msg}"
            );
        }
        other => panic!("expected Error::Config for {setting}, got {other:?}"),
    }
    assert!(
        msg.contains(setting) && msg.contains(value) && msg.contains(allowed),
        "{msg}"
    );
    assert_eq!(
        db.connect_attempts(),
        0,
        "a rejected pool opened connections"
    );
}

fn b() -> Builder<FaultManager> {
    Pool::builder()
}

#[test]
fn no_connections_at_all_is_rejected() {
    rejects(
        b().pool_size(0).max_overflow(0),
        "pool_size + max_overflow",
        "0 + 0",
        "at least 1",
    );
}

#[test]
fn absurd_sizes_are_rejected_without_overflowing() {
    let max = usize::MAX.to_string();
    let cases = [
        (b().pool_size(usize::MAX).max_overflow(10), max.as_str()),
        (b().pool_size(10).max_overflow(usize::MAX), max.as_str()),
        (b().pool_size(1 << 20).max_overflow(1), "1048576 + 1"),
    ];
    for (builder, value) in cases {
        rejects(builder, "pool_size + max_overflow", value, "at most");
    }
}

#[test]
fn min_idle_above_pool_size_is_rejected() {
    rejects(
        b().pool_size(2).min_idle(3),
        "min_idle",
        "3",
        "at most pool_size (2)",
    );
}

#[test]
fn zero_durations_that_cannot_work_are_rejected() {
    let cases: Vec<(Builder<FaultManager>, &str)> = vec![
        (b().idle_timeout(Duration::ZERO), "idle_timeout"),
        (b().recycle_after(Duration::ZERO), "recycle_after"),
        (b().leak_threshold(Duration::ZERO), "leak_threshold"),
        (b().connect_timeout(Duration::ZERO), "connect_timeout"),
        (b().backoff_initial(Duration::ZERO), "backoff_initial"),
    ];
    for (builder, setting) in cases {
        rejects(builder, setting, "0s", "greater than zero");
    }
}

#[test]
fn durations_too_long_for_a_deadline_are_rejected() {
    let cases: Vec<(Builder<FaultManager>, &str, Duration)> = vec![
        (
            b().checkout_timeout(CENTURY_PLUS),
            "checkout_timeout",
            CENTURY_PLUS,
        ),
        (
            b().checkout_timeout(Duration::MAX),
            "checkout_timeout",
            Duration::MAX,
        ),
        (
            b().connect_timeout(Duration::MAX),
            "connect_timeout",
            Duration::MAX,
        ),
        (
            b().idle_timeout(Duration::MAX),
            "idle_timeout",
            Duration::MAX,
        ),
        (
            b().recycle_after(Duration::MAX),
            "recycle_after",
            Duration::MAX,
        ),
        (
            b().leak_threshold(Duration::MAX),
            "leak_threshold",
            Duration::MAX,
        ),
        (b().ping_bypass(Duration::MAX), "ping_bypass", Duration::MAX),
        (
            b().barging_window(Duration::MAX),
            "barging_window",
            Duration::MAX,
        ),
        (b().backoff_max(Duration::MAX), "backoff_max", Duration::MAX),
    ];
    for (builder, setting, value) in cases {
        // The value is quoted as the duration's Debug text.
        rejects(builder, setting, &format!("{value:?}"), "at most 100 years");
    }
}

#[test]
fn backoff_max_below_backoff_initial_is_rejected() {
    rejects(
        b().backoff_initial(Duration::from_secs(5))
            .backoff_max(Duration::from_secs(1)),
        "backoff_max",
        "1.00s",
        "at least backoff_initial (5.00s)",
    );
}

#[test]
fn bad_backoff_multipliers_are_rejected() {
    for (m, text) in [
        (0.5, "0.5"),
        (0.0, "0"),
        (-2.0, "-2"),
        (f64::NAN, "NaN"),
        (f64::INFINITY, "inf"),
    ] {
        rejects(
            b().backoff_multiplier(m),
            "backoff_multiplier",
            text,
            "at least 1.0",
        );
    }
}

#[test]
fn bad_recycle_spreads_are_rejected() {
    for (s, text) in [(0.9, "0.9"), (-0.1, "-0.1"), (f64::NAN, "NaN")] {
        rejects(b().recycle_spread(s), "recycle_spread", text, "0.0 to 0.5");
    }
}

#[test]
fn zero_max_connecting_is_rejected() {
    rejects(b().max_connecting(0), "max_connecting", "0", "at least 1");
}

#[test]
fn blank_name_is_rejected() {
    rejects(b().name(""), "name", "", "non-empty");
    let msg = b()
        .name("")
        .build(FaultManager::new())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("name = \"\""),
        "the empty value is quoted: {msg}"
    );
    rejects(b().name("   "), "name", "   ", "non-empty");
}

#[test]
fn health_thresholds_out_of_order_or_range_are_rejected() {
    let setting = "health_warning / health_critical";
    rejects(
        b().health_warning(0.95).health_critical(0.9),
        setting,
        "0.95 / 0.9",
        "health_warning <= health_critical",
    );
    rejects(b().health_critical(1.5), setting, "1.5", "<= 1");
    rejects(
        b().health_warning(0.0),
        setting,
        "0 / ",
        "0 < health_warning",
    );
    rejects(
        b().health_warning(f64::NAN),
        setting,
        "NaN",
        "0 < health_warning",
    );
}

#[test]
fn validate_reports_the_same_error_as_build() {
    let bad = b().pool_size(2).min_idle(5);
    let from_validate = bad.validate().unwrap_err().to_string();
    let from_build = bad.build(FaultManager::new()).unwrap_err().to_string();
    assert_eq!(from_validate, from_build);
    assert_eq!(
        from_build,
        "invalid setting min_idle = \"5\": expected at most pool_size (2)"
    );
}

#[test]
fn edge_values_that_can_work_are_accepted() {
    let ok: Vec<(Builder<FaultManager>, &str)> = vec![
        (b().pool_size(0).max_overflow(1), "only overflow"),
        (b().pool_size(1).max_overflow(0), "a single connection"),
        (b().pool_size(3).min_idle(3), "min_idle == pool_size"),
        (
            b().checkout_timeout(Duration::ZERO),
            "zero checkout timeout",
        ),
        (b().ping_bypass(Duration::ZERO), "ping on every checkout"),
        (b().barging_window(Duration::ZERO), "strict hand-off"),
        (b().recycle_spread(0.0), "no spread"),
        (b().recycle_spread(0.5), "widest spread"),
        (b().backoff_multiplier(1.0), "constant backoff"),
        (
            b().backoff_initial(Duration::from_secs(1))
                .backoff_max(Duration::from_secs(1)),
            "backoff_max == backoff_initial",
        ),
        (b().max_waiting(0), "never queue"),
        (
            b().idle_timeout(None)
                .recycle_after(None)
                .leak_threshold(None),
            "all off",
        ),
        (
            b().health_warning(1.0).health_critical(1.0),
            "thresholds at 1",
        ),
    ];
    for (builder, what) in ok {
        if let Err(e) = builder.build(FaultManager::new()) {
            panic!("{what}: rejected: {e}");
        }
    }
}

#[test]
fn no_extreme_value_makes_build_panic() {
    let durations = [
        Duration::ZERO,
        Duration::from_nanos(1),
        Duration::from_secs(1),
        CENTURY_PLUS,
        Duration::MAX,
    ];
    let sizes = [0, 1, 1 << 20, usize::MAX];
    let floats = [
        f64::NAN,
        f64::NEG_INFINITY,
        -1.0,
        0.0,
        0.5,
        1.0,
        2.0,
        f64::INFINITY,
    ];
    let mut cases: Vec<Builder<FaultManager>> = Vec::new();
    for &d in &durations {
        cases.push(b().checkout_timeout(d));
        cases.push(b().connect_timeout(d));
        cases.push(b().idle_timeout(d));
        cases.push(b().recycle_after(d));
        cases.push(b().leak_threshold(d));
        cases.push(b().ping_bypass(d));
        cases.push(b().barging_window(d));
        cases.push(b().backoff_initial(d).backoff_max(d));
    }
    for &n in &sizes {
        cases.push(b().pool_size(n));
        cases.push(b().max_overflow(n));
        cases.push(b().pool_size(n).max_overflow(n));
        cases.push(b().min_idle(n));
        cases.push(b().max_connecting(n));
        cases.push(b().max_waiting(n));
    }
    for &f in &floats {
        cases.push(b().recycle_spread(f));
        cases.push(b().backoff_multiplier(f));
        cases.push(b().health_warning(f));
        cases.push(b().health_critical(f));
    }
    for (i, builder) in cases.into_iter().enumerate() {
        let shown = format!("{builder:?}");
        // Only validate: building a valid pool with a huge size would
        // allocate for it.
        let result = catch_unwind(AssertUnwindSafe(|| builder.validate().map(|_| ())));
        match result {
            Ok(Ok(())) => {}
            Ok(Err(Error::Config { .. })) => {}
            Ok(Err(other)) => panic!("case {i}: not a config error: {other:?}"),
            Err(_) => panic!("case {i} panicked: {shown}"),
        }
    }
}
