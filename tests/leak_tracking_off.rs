//! With backtraces off, checkouts capture none (own test binary: the capture
//! counter is process-wide).

use std::time::Duration;

use cistern::testing::FaultManager;
use cistern::{Pool, backtraces_captured};

#[test]
fn tracking_without_backtraces_captures_none() {
    let pool = Pool::builder()
        .leak_threshold(Duration::from_secs(60))
        .leak_backtraces(false)
        .build(FaultManager::new())
        .unwrap();
    let before = backtraces_captured();
    for _ in 0..1000 {
        let g = pool.get().unwrap();
        drop(g);
    }
    let g = pool.get().unwrap();
    assert_eq!(backtraces_captured(), before);
    // Call sites are still tracked.
    let holders = pool.holders();
    assert_eq!(holders.len(), 1);
    assert!(holders[0].location.contains("leak_tracking_off.rs"));
    assert!(holders[0].backtrace.is_none());
    drop(g);

    let on = Pool::builder()
        .leak_backtraces(true)
        .build(FaultManager::new())
        .unwrap();
    drop(on.get().unwrap());
    assert_eq!(backtraces_captured(), before + 1);
}
