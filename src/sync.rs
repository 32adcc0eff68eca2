//! The pool's lock and condition variables, behind a shim so that `loom` can
//! model the hand-off between threads (`RUSTFLAGS="--cfg loom"`, see
//! `src/loom_model.rs`): `parking_lot` normally, loom's mocks under loom.
//!
//! loom does not model time, so under loom a timed wait is an untimed one;
//! the models express a timeout as the waiter cancelling at an arbitrary
//! point, racing whatever hand-off is in flight.

#[cfg(not(loom))]
pub(crate) use parking_lot::{Condvar, Mutex, MutexGuard};

#[cfg(loom)]
pub(crate) use self::model::{Condvar, Mutex, MutexGuard};

#[cfg(loom)]
mod model {
    use std::ops::{Deref, DerefMut};
    use std::time::Instant;

    /// loom's mutex with parking_lot's API (no poisoning).
    pub(crate) struct Mutex<T>(loom::sync::Mutex<T>);

    impl<T> Mutex<T> {
        pub(crate) fn new(value: T) -> Mutex<T> {
            Mutex(loom::sync::Mutex::new(value))
        }

        pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
            MutexGuard {
                mutex: &self.0,
                guard: Some(self.0.lock().unwrap()),
            }
        }

        pub(crate) fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
            let guard = self.0.try_lock().ok()?;
            Some(MutexGuard {
                mutex: &self.0,
                guard: Some(guard),
            })
        }
    }

    /// Holds the lock while `guard` is `Some` (it is `None` only inside
    /// `unlocked` and `Condvar::wait_until`).
    pub(crate) struct MutexGuard<'a, T> {
        mutex: &'a loom::sync::Mutex<T>,
        guard: Option<loom::sync::MutexGuard<'a, T>>,
    }

    impl<T> MutexGuard<'_, T> {
        /// Runs `f` with the lock released, then takes it again.
        pub(crate) fn unlocked<U>(this: &mut Self, f: impl FnOnce() -> U) -> U {
            this.guard = None;
            let out = f();
            this.guard = Some(this.mutex.lock().unwrap());
            out
        }
    }

    impl<T> Deref for MutexGuard<'_, T> {
        type Target = T;
        fn deref(&self) -> &T {
            self.guard.as_ref().expect("lock held")
        }
    }

    impl<T> DerefMut for MutexGuard<'_, T> {
        fn deref_mut(&mut self) -> &mut T {
            self.guard.as_mut().expect("lock held")
        }
    }

    /// loom's condition variable with parking_lot's API.
    pub(crate) struct Condvar(loom::sync::Condvar);

    impl Condvar {
        pub(crate) fn new() -> Condvar {
            Condvar(loom::sync::Condvar::new())
        }

        /// Waits for a notification; the deadline is ignored (loom has no
        /// time).
        pub(crate) fn wait_until<T>(&self, guard: &mut MutexGuard<'_, T>, _deadline: Instant) {
            let inner = guard.guard.take().expect("lock held");
            guard.guard = Some(self.0.wait(inner).unwrap());
        }

        pub(crate) fn notify_one(&self) {
            self.0.notify_one();
        }

        pub(crate) fn notify_all(&self) {
            self.0.notify_all();
        }
    }
}
