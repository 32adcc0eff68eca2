//! Leak detection (issue 3): reports once per guard, a line on return, forgotten
//! guards, holders, the timeout error naming the holder, backtraces.

mod common;

use std::time::Duration;

use cistern::testing::FaultManager;
use cistern::{Pool, Pooled};
use common::{eventually, log_capture, sized};
use log::Level;

/// The text of the lines at `level` of pool `pool` that contain `needle`.
fn lines_of(pool: &str, level: Level, needle: &str) -> Vec<String> {
    log_capture::of_pool(pool)
        .into_iter()
        .filter(|l| l.level == level && l.text.contains(needle))
        .map(|l| l.text)
        .collect()
}

fn leaky_pool(name: &str, size: usize) -> Pool<FaultManager> {
    log_capture::install();
    sized(size, 0)
        .name(name)
        .leak_threshold(Duration::from_millis(100))
        .leak_backtraces(true)
        .checkout_timeout(Duration::from_millis(300))
        .build(FaultManager::new())
        .unwrap()
}

#[test]
fn held_guard_is_reported_exactly_once_with_its_call_site() {
    let pool = leaky_pool("leak_once", 2);
    let guard = pool.get().unwrap();
    let line = line!() - 1;
    eventually("a leak report", || {
        !lines_of("leak_once", Level::Warn, "has been held").is_empty()
    });
    // Several more scan periods (25 ms each) must not report it again.
    std::thread::sleep(Duration::from_millis(300));
    let reports = lines_of("leak_once", Level::Warn, "has been held");
    assert_eq!(reports.len(), 1, "{reports:#?}");
    let report = &reports[0];
    assert!(
        report.contains(&format!("tests/leak_reports.rs:{line}")),
        "{report}"
    );
    assert!(report.contains("leak_threshold 100.0ms"), "{report}");
    assert!(report.contains("thread '"), "{report}");
    assert_eq!(pool.stats().leaks_reported, 1);
    drop(guard);
}

#[test]
fn returned_after_report_logs_one_info_line() {
    let pool = leaky_pool("leak_return", 1);
    let guard = pool.get().unwrap();
    eventually("a leak report", || pool.stats().leaks_reported == 1);
    assert!(lines_of("leak_return", Level::Info, "came back").is_empty());
    drop(guard);
    let back = lines_of("leak_return", Level::Info, "came back after");
    assert_eq!(back.len(), 1, "{back:#?}");
    // A guard returned before the threshold logs nothing.
    drop(pool.get().unwrap());
    assert_eq!(lines_of("leak_return", Level::Info, "came back").len(), 1);
}

#[test]
fn forgotten_guard_is_reported_and_its_slot_stays_occupied() {
    let pool = leaky_pool("leak_forget", 2);
    std::mem::forget(pool.get().unwrap());
    eventually("a leak report", || pool.stats().leaks_reported == 1);
    let report = &lines_of("leak_forget", Level::Warn, "has been held")[0];
    assert!(
        report.contains("its slot stays occupied until the pool is closed"),
        "{report}"
    );
    let s = pool.stats();
    assert_eq!((s.in_use, s.open), (1, 1));
    // The other slot still serves.
    assert!(pool.get().is_ok());
}

#[test]
fn holders_lists_checkouts_oldest_first() {
    let pool = leaky_pool("leak_holders", 3);
    let first = pool.get().unwrap();
    let first_line = line!() - 1;
    std::thread::sleep(Duration::from_millis(20));
    let worker = std::thread::Builder::new()
        .name("holder-worker".into())
        .spawn({
            let pool = pool.clone();
            move || {
                let g = pool.get().unwrap();
                std::thread::sleep(Duration::from_millis(200));
                drop(g);
            }
        })
        .unwrap();
    eventually("two holders", || pool.holders().len() == 2);
    let holders = pool.holders();
    assert_eq!(holders[0].connection_id, Pooled::id(&first));
    assert!(
        holders[0]
            .location
            .contains(&format!("leak_reports.rs:{first_line}"))
    );
    assert!(holders[0].held >= holders[1].held);
    assert_eq!(holders[1].thread_name, "holder-worker");
    assert!(holders[0].backtrace.is_some());
    worker.join().unwrap();
    assert_eq!(pool.holders().len(), 1);
    drop(first);
    assert!(pool.holders().is_empty());
}

#[test]
fn timeout_error_names_the_holder() {
    let pool = leaky_pool("leak_timeout", 1);
    let _held = pool.get().unwrap();
    let line = line!() - 1;
    let err = pool.get().unwrap_err();
    assert!(err.is_timeout());
    let msg = err.to_string();
    assert!(msg.contains("longest held"), "{msg}");
    assert!(msg.contains(&format!("leak_reports.rs:{line}")), "{msg}");
    assert!(msg.contains("by thread '"), "{msg}");
}

#[cfg(debug_assertions)]
#[test]
fn report_backtrace_contains_the_callers_function_name() {
    let pool = leaky_pool("leak_backtrace", 1);
    let guard = pool.get().unwrap();
    eventually("a leak report", || pool.stats().leaks_reported == 1);
    let report = &lines_of("leak_backtrace", Level::Warn, "has been held")[0];
    let bt = report
        .split("backtrace of the get() that took it:")
        .nth(1)
        .expect("the report carries a backtrace");
    assert!(
        bt.contains("report_backtrace_contains_the_callers_function_name"),
        "{bt}"
    );
    // Trimmed: the pool's own frames are not at the top.
    let first = bt
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default();
    assert!(!first.contains("cistern::pool"), "{first}");
    drop(guard);
}
