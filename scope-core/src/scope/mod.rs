//! Scopes (nurseries): [`scope`], [`ScopeBuilder`], the body's [`Scope`], the `'static`
//! [`ScopeHandle`], and the [`ScopeFuture`] that drives them.

mod ambient;
mod body;
mod builder;
mod future;
mod handle;
mod mode;

pub use ambient::AmbientFuture;
pub use body::Scope;
pub(crate) use body::*;
pub use builder::ScopeBuilder;
pub use future::ScopeFuture;
pub use handle::ScopeHandle;
pub(crate) use mode::*;
pub use mode::{BodyResult, CollectErrors, FailFast, Mode, Outcome};

use std::future::Future;

use crate::error::Cancelled;

/// Runs `body` in a new scope and waits for it and every child it spawned.
///
/// The body gets a [`Scope`] to spawn children with. The returned future completes only
/// after the body and every child (spawned, blocking, and those of nested scopes whose
/// futures were dropped) have finished, on every path: success, error, panic, cancel,
/// deadline. Returning early from the body does not cancel the children; the scope waits.
///
/// - The first error (of a child or the body) cancels the scope with
///   [`CancelReason::ChildFailed`](crate::CancelReason::ChildFailed) and is returned once everything finished. Errors that
///   arrive after the scope was cancelled are secondary: counted on the [`Cancelled`] where
///   one is returned, reported as `tracing` events, and returned all together by
///   [`ScopeBuilder::collect_errors`].
/// - A panic (of a child or the body) cancels the scope, waits for everything, then resumes
///   unwinding with the original payload in the caller. A panic outranks errors.
/// - If the body completed, its value is kept even when the scope was cancelled meanwhile
///   (`s.cancel(); Ok(winner)` returns the winner once the losers are gone). If the scope
///   caught its own cancellation (the body was dropped), it returns
///   `Err(E::from(Cancelled))`.
///
/// The scope is a node of the cancel tree: it nests below the scope or cancel scope the
/// caller runs in when it is first polled, so cancelling that (or its deadline) reaches this
/// scope's body and children too.
///
/// `body` is called right away to build the body's future (an async closure runs nothing
/// until the scope is awaited; children spawned by a plain closure before it returns its
/// future start at once and are awaited like the others).
///
/// # Drop
///
/// Dropping the scope future before it finished (a lost `select!` branch, an aborted task)
/// hard-cancels its children with [`CancelReason::ScopeDropped`](crate::CancelReason::ScopeDropped) and drops the body at once.
/// The children that are still running are handed to the nearest live ancestor scope, which
/// awaits them before it exits. A scope with no live ancestor (a root scope) can only
/// request that they stop: they are dropped at their next poll, but nobody awaits that.
///
/// # Cancel safety
///
/// Not cancel safe in the sense of `select!`: dropping the future cancels the scope (see
/// *Drop*).
///
/// # Panics
///
/// Resumes the first panic of the body or a child once everything finished, with its
/// original payload. A child that panics in its `Drop` while it is being dropped (cancelled,
/// or aborted by the runtime) is a panic too; the runtime catches that one and keeps its
/// payload for the child's [`TaskHandle`](crate::TaskHandle), so the scope resumes with a message that says
/// so. Deadlines need a runtime with the time driver enabled (`enable_time`).
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let total = taskscope::scope(async |s| {
///     let a = s.spawn(async { Ok::<_, std::io::Error>(1) });
///     let b = s.spawn(async { Ok(2) });
///     Ok(a.await? + b.await?)
/// })
/// .await?;
/// assert_eq!(total, 3);
/// # Ok(())
/// # }
/// ```
#[inline]
pub fn scope<'env, F, Fut, T, E>(body: F) -> ScopeFuture<'env, Fut>
where
    F: FnOnce(Scope<'env, E>) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: From<Cancelled> + 'static,
{
    ScopeBuilder::new().run(body)
}
