//! Spawned children: the task wrapper that runs a child under its scope's node, the
//! blocking variant, and [`TaskHandle`].
//!
//! A child has no node of its own, and its wrapper holds nothing but the child's future and
//! the scope's node pointer, so a small child still fits tokio's smallest task cell. Only in
//! a scope with a limit does a child also carry its place at the limiter ([`LimitedChild`]). The
//! cancellation check on each poll is one atomic load of the node's state word; a hard
//! cancel reaches a parked child through its `AbortHandle`, registered with the scope at
//! spawn (`registry`). A scope with a limit admits its children through `limit`.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tokio::task::JoinHandle;

use crate::context;
use crate::error::{CancelReason, Cancelled, SpawnError, TrySpawnError};
use crate::outcome::Exit;
use crate::sync::{Arc, AtomicBool, Ordering};
use crate::tree::Node;
use limit::Ticket;

pub(crate) mod limit;
pub(crate) mod registry;
mod wait;

pub use wait::WaitChildren;

pin_project! {
    /// The root future of a spawned child's task: the child's future and the guard that
    /// uncounts it. Nothing else, so that a small child still fits tokio's smallest cell:
    /// the child's output becomes the scope's `Result` ([`ChildOutput`]) inside the poll,
    /// not in a wrapper future (`FutureExt::map` adds a state word of its own, which moved
    /// a 16-byte child into tokio's next cell, 256 bytes instead of 128).
    ///
    /// The fields drop in order: the child's future (its locals) first, then the guard, so
    /// the scope sees the child finished only once its locals are gone (L9), whether the
    /// child completed, was aborted by a hard cancel, or the runtime shut down.
    pub(crate) struct Child<F, T, E> {
        #[pin]
        fut: F,
        guard: TaskGuard,
        output: PhantomData<fn() -> Result<T, E>>,
    }
}

/// Uncounts a spawned child when its task drops it.
pub(crate) struct TaskGuard {
    /// `None` only while lent to the ambient frame during a poll.
    node: Option<Arc<Node>>,
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        let Some(node) = self.node.take() else { return };
        if std::thread::panicking() {
            // The child's future panicked in its `Drop` just now (the guard drops right
            // after it). The runtime catches that panic and keeps its payload for the
            // task's handle; the scope still learns of it and re-raises (R10).
            node.record_panic(Box::new(
                "taskscope: a child panicked in `Drop` while it was dropped \
                 (the original payload went to its TaskHandle)",
            ));
        }
        node.task_done();
    }
}

impl<F, T, E> Child<F, T, E> {
    fn new(node: Arc<Node>, fut: F) -> Self {
        Child {
            fut,
            guard: TaskGuard { node: Some(node) },
            output: PhantomData,
        }
    }
}

/// The child must stop: its scope is hard-cancelled and the task runs no shield.
fn must_stop(node: &Node) -> bool {
    node.state().is_hard() && !node.task_shielded(tokio::task::try_id())
}

impl<F, T, E> Future for Child<F, T, E>
where
    F: Future<Output: ChildOutput<T, E>>,
    E: Send + 'static,
{
    type Output = Result<T, Cancelled>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        poll_child(this.fut, &mut this.guard.node, cx)
    }
}

/// One poll of a spawned child: the cancellation check, the inner poll under the ambient
/// frame, and what its outcome means for the scope.
fn poll_child<F, T, E>(
    fut: Pin<&mut F>,
    slot: &mut Option<Arc<Node>>,
    cx: &mut Context<'_>,
) -> Poll<Result<T, Cancelled>>
where
    F: Future<Output: ChildOutput<T, E>>,
    E: Send + 'static,
{
    let Some(node) = slot.as_ref() else {
        return Poll::Pending;
    };
    // Also covers a child spawned just as its scope became hard: it is never polled. Its
    // future is dropped by the runtime right after, before its guard.
    if must_stop(node) {
        return Poll::Ready(Err(Cancelled::new(CancelReason::ParentCancelled)));
    }
    let polled = context::enter_task(slot, || {
        catch_unwind(AssertUnwindSafe(|| {
            fut.poll(cx).map(ChildOutput::into_result)
        }))
    });
    let Some(node) = slot.as_ref() else {
        return Poll::Pending;
    };
    match polled {
        Ok(Poll::Ready(Ok(v))) => {
            if must_stop(node) {
                // Completed as the hard cancel came: the value is dropped here, before the
                // scope can see the child as finished, not later in the task cell.
                node.drop_user(v);
                return Poll::Ready(Err(Cancelled::new(CancelReason::ParentCancelled)));
            }
            Poll::Ready(Ok(v))
        }
        Ok(Poll::Ready(Err(e))) => Poll::Ready(node.settle::<T, E>(Exit::Error(e))),
        Err(payload) => Poll::Ready(node.settle::<T, E>(Exit::Panic(payload))),
        Ok(Poll::Pending) => {
            // Hard-cancelled while it ran (or its last shield just ended): stop now. A
            // parked child is reached by the abort instead.
            if must_stop(node) {
                return Poll::Ready(Err(Cancelled::new(CancelReason::ParentCancelled)));
            }
            Poll::Pending
        }
    }
}

pin_project! {
    /// The root future of a child of a scope with a concurrency limit: it first waits for
    /// a slot (in spawn order), then runs like [`Child`]. Fields drop in order: the child's
    /// future, then its slot (so the next child starts only once this one's locals are
    /// gone), then the guard.
    pub(crate) struct LimitedChild<F, T, E> {
        #[pin]
        fut: F,
        slot: SlotGuard,
        guard: TaskGuard,
        output: PhantomData<fn() -> Result<T, E>>,
    }
}

/// Holds (or waits for) a slot of the scope's limiter.
pub(crate) struct SlotGuard {
    node: Arc<Node>,
    ticket: Ticket,
}

impl SlotGuard {
    /// A place at the scope's limiter (`None` without a limit): a slot, or a queued ticket.
    pub(crate) fn enter(node: &Arc<Node>) -> Option<SlotGuard> {
        node.limiter.as_ref().map(|l| SlotGuard {
            node: node.clone(),
            ticket: l.enter(),
        })
    }

    pub(crate) fn poll_admitted(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Ticket::Queued(t) = self.ticket else {
            return Poll::Ready(());
        };
        let Some(limiter) = &self.node.limiter else {
            return Poll::Ready(());
        };
        let ready = limiter.poll_admitted(t, cx);
        if ready.is_ready() {
            self.ticket = Ticket::Admitted;
        }
        ready
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        if let Some(limiter) = &self.node.limiter {
            match self.ticket {
                Ticket::Admitted => limiter.leave(),
                Ticket::Queued(t) => limiter.withdraw(t),
            }
        }
    }
}

impl<F, T, E> Future for LimitedChild<F, T, E>
where
    F: Future<Output: ChildOutput<T, E>>,
    E: Send + 'static,
{
    type Output = Result<T, Cancelled>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Some(node) = this.guard.node.as_ref() {
            if must_stop(node) {
                return Poll::Ready(Err(Cancelled::new(CancelReason::ParentCancelled)));
            }
        }
        if this.slot.poll_admitted(cx).is_pending() {
            return Poll::Pending;
        }
        poll_child(this.fut, &mut this.guard.node, cx)
    }
}

/// Whether a new child may start, and where.
enum Admission<'a> {
    /// Counted in `busy`: spawn it on this runtime.
    Start(&'a tokio::runtime::Handle),
    /// The scope is cancelled: the child is dropped without ever running (R8).
    Refuse,
}

/// Decides whether the scope whose node is `node` takes a new child, and counts it if so.
fn admit(node: &Node) -> Result<Admission<'_>, SpawnError> {
    let Some(rt) = node.runtime.get() else {
        return Err(SpawnError::NoRuntime);
    };
    if node.is_closed() {
        return Err(SpawnError::Closed);
    }
    if node.state().is_soft() {
        return Ok(Admission::Refuse);
    }
    if !node.try_add_task() {
        return Err(SpawnError::Closed);
    }
    Ok(Admission::Start(rt))
}

/// What a spawned child's future may resolve to: a `Result` with the scope's error type `E`
/// (its `Err` fails the scope), or `()` for a child that cannot fail.
///
/// One impl per shape of output, so that an `async { Ok(1) }` child takes the scope's error
/// type by inference and its `?` converts into it: a child whose future returns another
/// error type converts it before it is spawned (`fut.err_into()` with `futures::TryFutureExt`,
/// or `async { Ok(fut.await?) }`).
#[diagnostic::on_unimplemented(
    message = "a child of a scope with error type `{E}` resolves to `{Self}`",
    label = "this child's output is neither `Result<_, {E}>` nor `()`",
    note = "convert the child's error into the scope's: `s.spawn(fut.err_into())` (`futures::TryFutureExt`) or `s.spawn(async move {{ Ok(fut.await?) }})`",
    note = "a child that cannot fail may return `()`; a value needs `Ok(..)`"
)]
pub trait ChildOutput<T, E> {
    #[doc(hidden)]
    fn into_result(self) -> Result<T, E>;
}

impl<T, E> ChildOutput<T, E> for Result<T, E> {
    fn into_result(self) -> Result<T, E> {
        self
    }
}

impl<E> ChildOutput<(), E> for () {
    fn into_result(self) -> Result<(), E> {
        Ok(())
    }
}

/// Spawns `fut` as a child of the scope whose node is `node`.
pub(crate) fn spawn<F, T, E>(node: &Arc<Node>, fut: F) -> Result<TaskHandle<T>, SpawnError>
where
    F: Future<Output: ChildOutput<T, E>> + Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
{
    spawn_or_return(node, fut).map_err(|(e, _)| e)
}

/// [`spawn`], giving `fut` back, not dropped, with the error (a wrapper that reports its
/// own drop, `Completions`' children, is then dropped without a report: that child never
/// existed). A child refused by a cancelled scope is dropped here as in [`spawn`]: it
/// existed, as a child cancelled before it started.
pub(crate) fn spawn_or_return<F, T, E>(
    node: &Arc<Node>,
    fut: F,
) -> Result<TaskHandle<T>, (SpawnError, F)>
where
    F: Future<Output: ChildOutput<T, E>> + Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
{
    match admit(node) {
        Ok(Admission::Start(rt)) => Ok(start(rt, node, fut, SlotGuard::enter(node))),
        Ok(Admission::Refuse) => Ok(TaskHandle::refused()),
        Err(e) => Err((e, fut)),
    }
}

/// Spawns `fut` into a slot reserved before (a [`SpawnPermit`](crate::SpawnPermit)).
pub(crate) fn spawn_with_slot<F, T, E>(
    node: &Arc<Node>,
    fut: F,
    slot: Option<SlotGuard>,
) -> Result<TaskHandle<T>, SpawnError>
where
    F: Future<Output: ChildOutput<T, E>> + Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
{
    match admit(node)? {
        Admission::Start(rt) => Ok(start(rt, node, fut, slot)),
        Admission::Refuse => Ok(TaskHandle::refused()),
    }
}

/// Spawns an admitted child; `slot` is its place at the limiter, if the scope has one.
fn start<F, T, E>(
    rt: &tokio::runtime::Handle,
    node: &Arc<Node>,
    fut: F,
    slot: Option<SlotGuard>,
) -> TaskHandle<T>
where
    F: Future<Output: ChildOutput<T, E>> + Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
{
    let join = match slot {
        None => spawn_task(rt, node, Child::new(node.clone(), fut)),
        Some(slot) => spawn_task(
            rt,
            node,
            LimitedChild {
                fut,
                slot,
                guard: TaskGuard {
                    node: Some(node.clone()),
                },
                output: PhantomData,
            },
        ),
    };
    node.register_task(join.abort_handle());
    TaskHandle::task(join, Some(node.clone()))
}

/// Spawns a child's task (in a span, with the `tracing` feature, if one is wanted).
fn spawn_task<R>(rt: &tokio::runtime::Handle, node: &Node, fut: R) -> JoinHandle<R::Output>
where
    R: Future + Send + 'static,
    R::Output: Send + 'static,
{
    #[cfg(feature = "tracing")]
    return crate::spans::spawn(rt, node, fut);
    #[cfg(not(feature = "tracing"))]
    {
        let _ = node;
        rt.spawn(fut)
    }
}

/// Spawns `fut` only if the scope can start it right away (no limit, or a free slot and
/// nobody waiting); otherwise gives it back.
pub(crate) fn try_spawn<F, T, E>(
    node: &Arc<Node>,
    fut: F,
) -> Result<TaskHandle<T>, TrySpawnError<F>>
where
    F: Future<Output: ChildOutput<T, E>> + Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
{
    // A slot taken here is given back (by the guard's drop) if the child does not start.
    let slot = match &node.limiter {
        Some(l) if !l.try_enter() => return Err(TrySpawnError::AtLimit(fut)),
        Some(_) => Some(SlotGuard {
            node: node.clone(),
            ticket: Ticket::Admitted,
        }),
        None => None,
    };
    let rt = match admit(node) {
        Ok(Admission::Start(rt)) => rt,
        Ok(Admission::Refuse) => return Ok(TaskHandle::refused()),
        Err(SpawnError::Closed) => return Err(TrySpawnError::Closed(fut)),
        Err(SpawnError::NoRuntime) => return Err(TrySpawnError::NoRuntime(fut)),
    };
    Ok(start(rt, node, fut, slot))
}

/// Uncounts a blocking child when its closure is dropped, run or not.
struct BlockingGuard(Arc<Node>);

impl Drop for BlockingGuard {
    fn drop(&mut self) {
        self.0.task_done();
    }
}

/// Spawns the blocking closure `f` as a child of the scope whose node is `node`.
pub(crate) fn spawn_blocking<Fun, T, E>(
    node: &Arc<Node>,
    f: Fun,
) -> Result<TaskHandle<T>, SpawnError>
where
    Fun: FnOnce() -> Result<T, E> + Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
{
    let rt = match admit(node)? {
        Admission::Start(rt) => rt,
        Admission::Refuse => return Ok(TaskHandle::refused()),
    };
    let guard = BlockingGuard(node.clone());
    let join = rt.spawn_blocking(move || {
        let guard = guard;
        let mut lent = Some(guard.0.clone());
        let r = context::enter_task(&mut lent, || catch_unwind(AssertUnwindSafe(f)));
        guard.0.settle(Exit::from(r))
    });
    Ok(TaskHandle::task(join, None))
}

/// A handle to one child of a scope: await it for the child's value.
///
/// Awaiting gives `Ok(value)` if the child succeeded, or `Err(Cancelled)` whose
/// [`reason`](Cancelled::reason) says why not:
///
/// - [`ChildFailed`](CancelReason::ChildFailed): the child returned an error; the error
///   itself went to the scope (which fails with it, or collects it);
/// - [`ChildPanicked`](CancelReason::ChildPanicked): the child panicked; the scope re-raises
///   the payload once every child finished;
/// - [`ParentCancelled`](CancelReason::ParentCancelled): the scope (or an ancestor) was
///   cancelled and the child was dropped, it was spawned into a cancelled scope and never
///   ran, or the runtime shut down;
/// - [`Explicit`](CancelReason::Explicit): [`TaskHandle::cancel`] was called.
///
/// Because the error is [`Cancelled`], `handle.await?` works in any scope body.
///
/// Dropping the handle neither cancels nor detaches the child: the scope still awaits it.
///
/// # Cancel safety
///
/// Awaiting the handle is cancel safe: dropping the `.await` loses nothing, the value is
/// kept for a later poll.
pub struct TaskHandle<T> {
    inner: HandleInner<T>,
}

enum HandleInner<T> {
    Task {
        join: JoinHandle<Result<T, Cancelled>>,
        /// The scope the child was spawned into: a cancel waits for its shields there.
        /// `None` for a blocking child (it cannot be cancelled, only awaited).
        node: Option<Arc<Node>>,
        cancel_requested: AtomicBool,
    },
    Refused,
}

impl<T> TaskHandle<T> {
    fn task(join: JoinHandle<Result<T, Cancelled>>, node: Option<Arc<Node>>) -> Self {
        TaskHandle {
            inner: HandleInner::Task {
                join,
                node,
                cancel_requested: AtomicBool::new(false),
            },
        }
    }

    fn refused() -> Self {
        TaskHandle {
            inner: HandleInner::Refused,
        }
    }

    /// Cancels this child alone, without failing or cancelling the scope.
    ///
    /// The child is dropped at its next poll, like [`JoinHandle::abort`], and its handle
    /// resolves to `Err(Cancelled)` with [`CancelReason::Explicit`] (unless it completed
    /// first). There is no grace period. A child that runs a [`shield`](crate::shield)
    /// finishes the shielded part first, as for a cancel of its scope: the cancellation
    /// lands at its first await after the shield. The scope still awaits the child's drop.
    /// A blocking child cannot be cancelled this way; it is awaited.
    pub fn cancel(&self) {
        if let HandleInner::Task {
            join,
            node,
            cancel_requested,
        } = &self.inner
        {
            cancel_requested.store(true, Ordering::Relaxed);
            match node {
                Some(node) => node.cancel_task(&join.abort_handle()),
                None => join.abort(),
            }
        }
    }

    /// The child's tokio task id (as [`tokio::task::id`] says inside it); `None` for a
    /// child that was never started (spawned into a cancelled scope).
    pub fn id(&self) -> Option<tokio::task::Id> {
        match &self.inner {
            HandleInner::Task { join, .. } => Some(join.id()),
            HandleInner::Refused => None,
        }
    }

    /// `true` once the child finished (or was never started).
    pub fn is_finished(&self) -> bool {
        match &self.inner {
            HandleInner::Task { join, .. } => join.is_finished(),
            HandleInner::Refused => true,
        }
    }
}

impl<T> Future for TaskHandle<T> {
    type Output = Result<T, Cancelled>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.inner {
            HandleInner::Task {
                join,
                cancel_requested,
                ..
            } => Pin::new(join).poll(cx).map(|r| match r {
                Ok(r) => r,
                Err(e) if e.is_panic() => Err(Cancelled::new(CancelReason::ChildPanicked)),
                Err(_) if cancel_requested.load(Ordering::Relaxed) => {
                    Err(Cancelled::new(CancelReason::Explicit))
                }
                // Aborted by the scope's hard cancel, or dropped by a runtime shutdown.
                Err(_) => Err(Cancelled::new(CancelReason::ParentCancelled)),
            }),
            HandleInner::Refused => Poll::Ready(Err(Cancelled::new(CancelReason::ParentCancelled))),
        }
    }
}

impl<T> fmt::Debug for TaskHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskHandle")
            .field("finished", &self.is_finished())
            .finish()
    }
}
