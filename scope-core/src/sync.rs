//! The synchronisation primitives the crate uses, behind one module.
//!
//! Everything that locks or counts goes through here, so that the loom models of the cancel
//! tree (`src/tree/loom_tests.rs`) can swap the types for [loom]'s without touching the tree
//! (tokio-util does the same). The models are built with the crate's own cfg,
//! `taskscope_loom` (not plain `loom`, which would also switch tokio to its loom internals),
//! and take a few seconds in release:
//!
//! ```text
//! RUSTFLAGS="--cfg taskscope_loom" cargo test -p taskscope-core --release --lib loom_tests
//! ```
//!
//! # What is modelled
//!
//! In the crate's unit tests built with that cfg (`cfg(all(test, taskscope_loom))`: loom is
//! a dev-dependency of that cfg only, so normal builds never compile it), [`Mutex`] and
//! [`MutexGuard`] (a node's `inner` lock, its `busy_lock`, the task registry, every other
//! lock of the crate), the atomics ([`AtomicBool`], [`AtomicU32`], [`AtomicUsize`]: the
//! state word, the busy count and its `CLOSED` bit, `parent_idx`, the flags) and [`fence`]
//! are loom's, so loom explores the interleavings of their operations (and the weak-memory
//! behaviours it models). Loom's types must live inside `loom::model`, so in that build the
//! crate's other unit tests must not create a node.
//!
//! Two types stay std's, because loom has no equivalent for what the crate uses:
//!
//! - [`Arc`]: loom's `Arc` has no `into_inner` (used by `Node`'s iterative drop) and the
//!   crate hands `Arc`s to tokio. Reference counts are therefore not modelled (no leak
//!   checking by loom); every access *through* an `Arc` to a loom lock or atomic is.
//! - [`OnceLock`]: loom has none. A node's `parent` is set once, in `attach`, while the
//!   node's `busy_lock` and its parent's and its own `inner` locks are held, and is read by
//!   `carry_up` under the node's `busy_lock` and by `detach` after the node's `inner` lock
//!   showed `life == Entered`: the locks that order those accesses are modelled, the
//!   `OnceLock` itself is not. `runtime` (a tokio handle) is never touched by the models.
//!
//! [loom]: https://docs.rs/loom

#[cfg(not(all(test, taskscope_loom)))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering, fence};
#[cfg(not(all(test, taskscope_loom)))]
pub(crate) use std::sync::{Mutex, MutexGuard};

#[cfg(all(test, taskscope_loom))]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering, fence};
#[cfg(all(test, taskscope_loom))]
pub(crate) use loom::sync::{Mutex, MutexGuard};

pub(crate) use std::sync::{Arc, OnceLock};

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
