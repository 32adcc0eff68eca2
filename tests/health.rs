//! Health: status transitions and recommendations, driven by a pool over
//! the fault-injecting manager.

mod common;

use std::thread;
use std::time::Duration;

use cistern::testing::FaultManager;
use cistern::{Clock, Health, HealthStatus, Pool, Pooled};
use common::{BuildOn, eventually, sized};

/// A pool `name` of `size` (no overflow) over `db` that retries failed
/// connects quickly (5 to 20 ms).
fn quick_retry(name: &str, size: usize, db: &FaultManager) -> Pool<FaultManager> {
    sized(size, 0)
        .name(name)
        .backoff_initial(Duration::from_millis(5))
        .backoff_max(Duration::from_millis(20))
        .build_on(db)
}

/// Waits until a connect of `pool` has failed.
fn a_connect_failed(pool: &Pool<FaultManager>) {
    eventually("a failed connect", || {
        pool.stats().consecutive_connect_failures > 0
    });
}

fn codes(h: &Health) -> Vec<&'static str> {
    h.recommendations.iter().map(|r| r.code).collect()
}

fn message<'a>(h: &'a Health, code: &str) -> &'a str {
    h.recommendations
        .iter()
        .find(|r| r.code == code)
        .map(|r| r.message.as_str())
        .unwrap_or_else(|| panic!("no {code} recommendation in {:#?}", h.recommendations))
}

#[test]
fn status_rises_with_utilization_and_falls_back() {
    let pool = sized(8, 2)
        .name("health-utilization")
        .build(FaultManager::new())
        .unwrap();
    assert_eq!(pool.health().status, HealthStatus::Healthy);
    let mut held = Vec::new();
    let mut seen = Vec::new();
    for _ in 0..10 {
        held.push(pool.get().unwrap());
        let h = pool.health();
        assert_eq!(h.in_use, held.len());
        assert_eq!(h.max_open, 10);
        seen.push(h.status);
    }
    use HealthStatus::*;
    assert_eq!(
        seen,
        [
            Healthy, Healthy, Healthy, Healthy, Healthy, Healthy, Warning, Warning, Critical,
            Critical
        ]
    );
    let h = pool.health();
    assert_eq!(h.utilization, 1.0);
    assert!(message(&h, "saturated").contains("10 of 10 connections in use"));
    assert!(!h.status.is_serving());
    held.truncate(7);
    let h = pool.health();
    assert_eq!(h.status, Warning);
    assert!(h.status.is_serving());
    assert!(message(&h, "high_utilization").contains("70%"));
    held.clear();
    assert_eq!(pool.health().status, Healthy);
}

#[test]
fn thresholds_come_from_the_builder() {
    let pool = sized(4, 0)
        .name("health-thresholds")
        .health_warning(0.25)
        .health_critical(0.5)
        .build(FaultManager::new())
        .unwrap();
    let a = pool.get().unwrap();
    assert_eq!(pool.health().status, HealthStatus::Warning);
    let b = pool.get().unwrap();
    assert_eq!(pool.health().status, HealthStatus::Critical);
    drop((a, b));
}

#[test]
fn down_while_connects_fail_and_nothing_is_idle_then_recovers() {
    let db = FaultManager::new();
    let pool = quick_retry("health-down", 2, &db);
    db.refuse_connects(true);
    let err = pool.get_timeout(Duration::from_millis(100)).unwrap_err();
    assert!(err.is_timeout(), "{err}");
    a_connect_failed(&pool);
    let h = pool.health();
    assert_eq!(h.status, HealthStatus::Down);
    assert_eq!(h.status.http_status(), 503);
    assert!(h.consecutive_connect_failures >= 1);
    let m = message(&h, "connects_failing");
    assert!(
        m.contains("database is down"),
        "the driver's error is quoted: {m}"
    );
    assert!(m.contains("nothing is idle"), "{m}");
    assert!(codes(&h).contains(&"timeouts"));

    db.refuse_connects(false);
    let conn = pool.get_timeout(Duration::from_secs(10)).unwrap();
    drop(conn);
    let h = pool.health();
    assert_eq!(h.status, HealthStatus::Healthy);
    assert_eq!(h.consecutive_connect_failures, 0);
    assert!(!codes(&h).contains(&"connects_failing"));
    assert!(message(&h, "connect_errors").contains("connects succeed again"));
}

#[test]
fn an_idle_connection_keeps_the_pool_up_while_connects_fail() {
    let db = FaultManager::new();
    let pool = quick_retry("health-idle-up", 3, &db);
    let a = pool.get().unwrap();
    let b = pool.get().unwrap();
    drop(b);
    db.refuse_connects(true);
    // One idle, one held: a third checkout needs a connect that fails.
    let b = pool.get().unwrap();
    assert!(
        pool.get_timeout(Duration::from_millis(50))
            .unwrap_err()
            .is_timeout()
    );
    a_connect_failed(&pool);
    assert_eq!(pool.health().status, HealthStatus::Down, "nothing idle");
    drop(b);
    let h = pool.health();
    assert_ne!(
        h.status,
        HealthStatus::Down,
        "an idle connection still serves"
    );
    assert!(message(&h, "connects_failing").contains("idle connections still serve"));
    drop(a);
}

#[test]
fn closed_pool_is_down() {
    let pool = Pool::builder()
        .name("health-closed")
        .build(FaultManager::new())
        .unwrap();
    pool.close();
    let h = pool.health();
    assert_eq!(h.status, HealthStatus::Down);
    assert_eq!(codes(&h), ["pool_closed"]);
}

#[test]
fn frequent_waits_and_waiting_threads_recommend_more_capacity() {
    let pool = sized(1, 1)
        .name("health-waits")
        .build(FaultManager::new())
        .unwrap();
    // 20 quick checkouts, then 4 that wait.
    for _ in 0..20 {
        drop(pool.get().unwrap());
    }
    for _ in 0..4 {
        let a = pool.get().unwrap();
        let b = pool.get().unwrap();
        let waiter = {
            let pool = pool.clone();
            thread::spawn(move || drop(pool.get().unwrap()))
        };
        eventually("a waiter", || pool.stats().waiting == 1);
        let h = pool.health();
        assert!(message(&h, "waiting_now").starts_with("1 thread is waiting"));
        drop(a);
        waiter.join().unwrap();
        drop(b);
    }
    let s = pool.stats();
    assert!(s.waited >= 4, "{s:?}");
    let h = pool.health();
    let pct = s.waited as f64 * 100.0 / s.checkouts as f64;
    let m = message(&h, "checkouts_waited");
    assert!(
        m.starts_with(&format!("checkouts waited in {pct:.0}% of cases")),
        "{m}"
    );
    assert!(m.contains("raise max_overflow or pool_size"), "{m}");
}

#[test]
fn guards_held_past_the_leak_threshold_point_to_holders() {
    let clock = Clock::manual();
    let pool = Pool::builder()
        .name("health-leaks")
        .leak_threshold(Duration::from_secs(10))
        .clock(clock.clone())
        .build(FaultManager::new())
        .unwrap();
    let held: Vec<_> = (0..3).map(|_| pool.get().unwrap()).collect();
    let fresh = pool.get().unwrap();
    assert_eq!(pool.health().held_too_long, 0);
    clock.advance(Duration::from_secs(11));
    drop(fresh);
    let quick = pool.get().unwrap();
    let h = pool.health();
    assert_eq!(h.held_too_long, 3);
    assert!(
        message(&h, "held_too_long")
            .starts_with("3 guards are held longer than the leak threshold (10.00s): see holders"),
        "{:?}",
        h.recommendations
    );
    drop((held, quick));
    assert_eq!(pool.health().held_too_long, 0);
}

#[test]
fn failed_pings_recommend_recycling_earlier() {
    let db = FaultManager::new();
    let pool = sized(2, 0)
        .name("health-pings")
        .ping_bypass(Duration::ZERO)
        .build_on(&db);
    drop(pool.get().unwrap());
    db.fail_next_pings(2);
    drop(pool.get().unwrap());
    let h = pool.health();
    assert!(pool.stats().closed_by.failed_ping >= 1);
    let m = message(&h, "failed_pings");
    assert!(m.contains("set recycle_after"), "{m}");
}

#[test]
fn overflow_churn_recommends_a_larger_base() {
    let pool = sized(1, 3)
        .name("health-churn")
        .build(FaultManager::new())
        .unwrap();
    for _ in 0..10 {
        let burst: Vec<_> = (0..4).map(|_| pool.get().unwrap()).collect();
        drop(burst);
    }
    let s = pool.stats();
    assert!(s.closed_by.excess * 2 >= s.created, "{s:?}");
    let h = pool.health();
    let m = message(&h, "excess_closes");
    assert!(m.contains("raise pool_size"), "{m}");
}

#[test]
fn broken_and_panicked_connections_are_explained() {
    let pool = Pool::builder()
        .name("health-broken")
        .build(FaultManager::new())
        .unwrap();
    let mut conn = pool.get().unwrap();
    Pooled::mark_broken(&mut conn);
    drop(conn);
    let p = pool.clone();
    let handler = thread::spawn(move || {
        let _conn = p.get().unwrap();
        panic!("request handler failed (expected by the test)");
    });
    assert!(handler.join().is_err(), "the handler panicked");
    assert_eq!(pool.stats().closed_by.panicked, 1);
    let h = pool.health();
    assert!(message(&h, "broken").starts_with("1 connection was found broken"));
    assert!(message(&h, "panicked").starts_with("1 connection was closed"));
}

#[cfg(feature = "serde")]
#[test]
fn health_serializes_for_json_endpoints() {
    let pool = sized(1, 0)
        .name("health-json")
        .build(FaultManager::new())
        .unwrap();
    let conn = pool.get().unwrap();
    let json = serde_json::to_value(pool.health()).unwrap();
    assert_eq!(json["status"], "critical");
    assert_eq!(json["name"], "health-json");
    assert_eq!(json["utilization"], 1.0);
    assert_eq!(json["recommendations"][0]["code"], "saturated");
    let config = serde_json::to_value(pool.config().summary()).unwrap();
    assert_eq!(config["pool_size"], 1);
    assert_eq!(config["checkout_timeout_secs"], 30.0);
    let holders = serde_json::to_value(pool.holders()).unwrap();
    assert_eq!(holders.as_array().unwrap().len(), 1);
    drop(conn);
}
