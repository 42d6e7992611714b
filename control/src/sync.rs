//! Locking that outlives a panic: a mutex whose holder panicked still guards consistent data in
//! this crate (no critical section leaves its value half-changed), so it is used, not poisoned.

use std::sync::{Mutex, MutexGuard, PoisonError};

pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
