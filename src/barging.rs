//! The per-thread side of bounded barging.
//!
//! A thread whose `get()` finds a connection idle while others wait may take
//! it ahead of them (it is running: serving it saves a wake-up and a context
//! switch) only while the oldest waiter has waited less than
//! `barging_window` (`State::may_barge`), and only `barging_limit` times in
//! a row: then it queues behind the waiters once, like any other thread.
//!
//! The window alone bounds how long a waiter is overtaken, not how much one
//! thread gets meanwhile: a thread that happened to run while the window was
//! open took as many connections as it could. With 64 threads on 10
//! connections over 5 s that left the fewest / most operations of one
//! thread at 0.85 to 0.92; a limit of 100 gave 0.94 to 0.98 (README,
//! "Bounded barging, the trade-off measured").

use std::cell::Cell;

thread_local! {
    /// `(pool id, connections taken ahead of waiters in a row)`; the count
    /// belongs to the pool this thread overtook in last.
    static RUN: Cell<(u64, u32)> = const { Cell::new((0, 0)) };
}

fn in_a_row(pool: u64) -> u32 {
    match RUN.try_with(Cell::get) {
        Ok((p, n)) if p == pool => n,
        _ => 0,
    }
}

/// Whether this thread may take one more connection of pool `pool` ahead of
/// its waiters.
pub(crate) fn may_overtake(pool: u64, limit: u32) -> bool {
    in_a_row(pool) < limit
}

/// This thread took a connection of pool `pool` ahead of waiters.
pub(crate) fn overtook(pool: u64) {
    let n = in_a_row(pool).saturating_add(1);
    let _ = RUN.try_with(|r| r.set((pool, n)));
}

/// This thread waited its turn, or took a connection (on the slow path) while
/// nobody waited: the run is over. (Fast-path checkouts leave the count
/// alone: it is not read until threads wait again.)
pub(crate) fn run_over(pool: u64) {
    if in_a_row(pool) > 0 {
        let _ = RUN.try_with(|r| r.set((pool, 0)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_count_is_per_pool_and_starts_again_after_a_turn() {
        std::thread::spawn(|| {
            for _ in 0..3 {
                assert!(may_overtake(1, 3));
                overtook(1);
            }
            assert!(!may_overtake(1, 3), "three in a row is the limit");
            assert!(may_overtake(2, 3), "another pool's count is its own");
            overtook(2);
            assert!(may_overtake(1, 3), "pool 1's run was replaced by pool 2's");
            for _ in 0..3 {
                overtook(1);
            }
            run_over(1);
            assert!(may_overtake(1, 3));
            assert!(!may_overtake(1, 0), "zero never overtakes");
        })
        .join()
        .unwrap();
    }
}
