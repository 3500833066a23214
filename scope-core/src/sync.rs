//! The synchronisation primitives the crate uses, behind one module.
//!
//! Everything that locks or counts goes through here so that a later `cfg(loom)` shim can
//! swap the types for loom's without touching the tree (tokio-util does the same).

pub(crate) use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
pub(crate) use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

/// Locks `m`, ignoring poisoning.
///
/// No code of this crate panics while it holds one of its locks (wakers are woken and user
/// values dropped only after the guard is gone), so a poisoned lock can only come from a
/// panic in a foreign `Waker::clone`. The protected state is still consistent then, and a
/// `Drop` impl must never turn that into a second panic.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The value of a `Mutex` reached through `&mut` (no locking), ignoring poisoning. For state
/// kept in a `Mutex` only so that its owner stays `Sync` (the scope future, the builder).
pub(crate) fn get_mut<T>(m: &mut Mutex<T>) -> &mut T {
    m.get_mut()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
