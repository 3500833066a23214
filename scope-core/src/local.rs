//! In-task children ([`Scope::spawn_local`](crate::Scope::spawn_local)): futures polled
//! inside the scope's own future, concurrently with the body but not in parallel, so they
//! may borrow from the caller (anything that outlives the `scope(..)` call) and, in a
//! [`Local`] scope, need not be `Send`.
//!
//! # Trilemma
//!
//! Concurrency, parallelism, borrowing: pick two. Spawned children ([`Scope::spawn`](crate::Scope::spawn))
//! run in parallel on the runtime's workers, so they must be `'static` (a scope future can be
//! forgotten with `mem::forget`, and safe code cannot stop a task from outliving a borrow
//! then). Local children give up parallelism instead: they run in the task that polls the
//! scope, which is what makes borrowing sound without `unsafe` and without blocking. Use
//! spawned children for CPU-heavy or independent work, local children for I/O-bound fan-out
//! over borrowed data, and blocking children for synchronous code.
//!
//! # How they run
//!
//! `spawn_local` boxes the child (with a small wrapper that records its outcome) into the
//! scope's queue; the scope future moves queued children into a `FuturesUnordered` and
//! polls the ready ones each time it is polled, under the scope's node, so `cancelled()`,
//! deadlines and shields behave as in the body. Each child has its own waker: a wake-up
//! polls that child, not all of them. The scope returns only once the body, every local
//! child and every spawned child finished. On the scope's own hard cancel the local
//! children are dropped (in the scope's task); on an ancestor's, they are dropped with the
//! scope future.
//!
//! Local children are not counted in the node's `busy` count: they cannot outlive the
//! scope future (they are its fields), and an in-task catcher further out waits for `busy`
//! to reach zero before it drops its inner future (tree invariant #8), which would then wait
//! for them forever.

use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use futures_util::stream::{FuturesUnordered, Stream};
use pin_project_lite::pin_project;

use crate::child::SlotGuard;
use crate::error::{CancelReason, Cancelled, SpawnError};
use crate::outcome::{Exit, Payload};
use crate::sync::{Arc, AtomicBool, Mutex, Ordering, fence, get_mut, lock};
use crate::tree::Node;

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Sendable {}
    impl Sealed for super::Local {}
    impl Sealed for super::Supervisor {}
}

/// The flavor of a scope: [`Sendable`] (the default), [`Local`] or [`Supervisor`]. It decides
/// which local children the scope takes and where a child's error goes.
///
/// A scope future holds its local children, so it can be `Send` only if they are: a
/// [`Sendable`] scope takes only `Send` local children (and stays `Send` when its body is),
/// a [`Local`] scope takes any (and is `!Send`). In both, a child's error fails the scope
/// ([`Unsupervised`]). A [`Supervisor`] scope delivers each child's error to its handle instead.
pub trait Flavor: sealed::Sealed + Sized + 'static {
    #[doc(hidden)]
    type Task<'env>: Future<Output = ()> + Unpin + 'env;
}

/// The flavors of scope in which a child's error fails the scope: [`Sendable`] and [`Local`].
/// They have the full set of ways to run children (spawned, local, blocking, limited).
pub trait Unsupervised: Flavor {}

impl Unsupervised for Sendable {}
impl Unsupervised for Local {}

/// A supervising scope ([`ScopeBuilder::supervise`](crate::ScopeBuilder::supervise)): a
/// child's error does not cancel the scope; it is delivered through the child's
/// [`Supervised`](crate::Supervised) handle.
#[derive(Debug, Clone, Copy, Default)]
pub struct Supervisor;

impl Flavor for Supervisor {
    type Task<'env> = Pin<Box<dyn Future<Output = ()> + Send + 'env>>;
}

/// Which local children a scope of flavor `Self` accepts: a future `F` with output
/// `Result<T, _>`, for [`Scope::spawn_local`](crate::Scope::spawn_local).
///
/// A `!Send` local child (or value) in a [`Sendable`] scope fails this bound; rustc then
/// reports the child's future as one that "cannot be sent between threads safely",
/// pointing at the value held across an await. Build the scope with
/// [`ScopeBuilder::local`](crate::ScopeBuilder::local) for such children.
#[diagnostic::on_unimplemented(
    message = "cannot spawn this local child into a scope of flavor `{Self}`",
    label = "`{Self}` is not known to accept it: a default (`Sendable`) scope takes only \
             `Send` local children with a `Send` output, a `Local` scope takes any",
    note = "for a `!Send` local child (one holding an `Rc` or a `RefCell` borrow across an \
            await), build the scope with `Scope::builder().local()`, `#[scoped(local)]` or \
            `scope!(local, ..)`; its future is then `!Send`: run it on a current-thread runtime \
            or in a `LocalSet`",
    note = "in code generic over the scope's flavor `K`, require `K: Accepts<'env, F, T>` for \
            the child's future `F` and output `T`, or take a `Scope<'env, E, Local>`"
)]
pub trait Accepts<'env, F, T>: Flavor {
    #[doc(hidden)]
    fn boxed<E: Send + 'static>(child: LocalChild<F, T>) -> Self::Task<'env>
    where
        F: Future<Output = Result<T, E>> + 'env,
        T: 'env;
}

/// The default flavor of scope: local children must be `Send`, so the scope future is `Send`
/// when its body is.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sendable;

/// A scope whose local children need not be `Send` (they may hold an `Rc`): its future is
/// `!Send`, for a current-thread runtime or a `LocalSet`. Built with
/// [`ScopeBuilder::local`](crate::ScopeBuilder::local).
#[derive(Debug, Clone, Copy, Default)]
pub struct Local;

impl Flavor for Sendable {
    type Task<'env> = Pin<Box<dyn Future<Output = ()> + Send + 'env>>;
}

// Not recommended in diagnostics: a `!Send` local child then gets the trait's own message
// (build the scope with `.local()`) instead of rustc's "future cannot be sent between
// threads safely" pointing at this impl, which says nothing about what to do.
#[diagnostic::do_not_recommend]
impl<'env, F: Send, T: Send> Accepts<'env, F, T> for Sendable {
    fn boxed<E: Send + 'static>(child: LocalChild<F, T>) -> Self::Task<'env>
    where
        F: Future<Output = Result<T, E>> + 'env,
        T: 'env,
    {
        Box::pin(child)
    }
}

impl Flavor for Local {
    type Task<'env> = Pin<Box<dyn Future<Output = ()> + 'env>>;
}

impl<'env, F, T> Accepts<'env, F, T> for Local {
    fn boxed<E: Send + 'static>(child: LocalChild<F, T>) -> Self::Task<'env>
    where
        F: Future<Output = Result<T, E>> + 'env,
        T: 'env,
    {
        Box::pin(child)
    }
}

/// What closing a scope does with local children still queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Queued {
    /// They are run first: the scope does not close yet.
    Run,
    /// They are dropped unrun (the scope is hard-cancelled).
    Drop,
}

/// Local children spawned but not yet taken over by the scope future.
pub(crate) struct Queue<'env, K: Flavor> {
    /// Set by the first `spawn_local`: until then the scope future skips the queue.
    used: AtomicBool,
    state: Mutex<QueueState<'env, K>>,
}

struct QueueState<'env, K: Flavor> {
    incoming: Vec<K::Task<'env>>,
    /// The scope future is inside its poll: it takes what is queued before it returns, so a
    /// spawn need not wake it.
    polling: bool,
    /// The scope finished (or its future was dropped): no more local children.
    closed: bool,
}

impl<'env, K: Flavor> Queue<'env, K> {
    pub(crate) fn new() -> Self {
        Queue {
            used: AtomicBool::new(false),
            state: Mutex::new(QueueState {
                incoming: Vec::new(),
                polling: false,
                closed: false,
            }),
        }
    }
}

/// The scope future's side: the running local children and the queue they come from.
pub(crate) struct Locals<'env, K: Flavor> {
    /// Shared with the body's [`Scope`](crate::Scope); `None` for a scope whose body holds
    /// no handle (nothing can spawn a local child into it).
    queue: Option<Arc<Queue<'env, K>>>,
    /// Created at the first local child. In a `Mutex` only so that the scope future stays
    /// `Sync`; it is reached through `get_mut`, never locked.
    running: Mutex<Option<FuturesUnordered<K::Task<'env>>>>,
}

/// How many times one poll of the scope takes over newly queued children before it yields
/// (children that keep spawning children must not starve the runtime).
const ROUNDS: usize = 32;

impl<'env, K: Flavor> Locals<'env, K> {
    /// The scope future's side of `queue`, which the body's `Scope` spawns into.
    pub(crate) fn new(queue: Arc<Queue<'env, K>>) -> Self {
        Locals {
            queue: Some(queue),
            running: Mutex::new(None),
        }
    }

    /// No local child can ever come: the body holds no handle to the scope.
    pub(crate) fn none() -> Self {
        Locals {
            queue: None,
            running: Mutex::new(None),
        }
    }

    fn running(&mut self) -> &mut Option<FuturesUnordered<K::Task<'env>>> {
        get_mut(&mut self.running)
    }

    /// The queue, once a local child was spawned into it (`used` is set before the first
    /// is queued).
    fn used(&self) -> Option<&Queue<'env, K>> {
        Self::used_of(&self.queue)
    }

    /// [`used`](Self::used), borrowing only the queue field.
    fn used_of<'q>(queue: &'q Option<Arc<Queue<'env, K>>>) -> Option<&'q Queue<'env, K>> {
        queue.as_deref().filter(|q| q.used.load(Ordering::Acquire))
    }

    /// `true` while a local child runs or waits to be taken over.
    pub(crate) fn is_busy(&mut self) -> bool {
        self.running().as_ref().is_some_and(|r| !r.is_empty()) || self.has_queued()
    }

    /// `true` if a local child waits in the queue to be taken over.
    pub(crate) fn has_queued(&self) -> bool {
        self.used()
            .is_some_and(|q| !lock(&q.state).incoming.is_empty())
    }

    /// Polls the local children that were woken, taking over newly queued ones, and records
    /// their failures with the scope's node. Ready once none is left.
    ///
    /// Called with the scope's node lent to the ambient frame.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Locals { queue, running } = self;
        let Some(queue) = Self::used_of(queue) else {
            return Poll::Ready(());
        };
        let running = get_mut(running);
        for _ in 0..ROUNDS {
            let incoming = {
                let mut st = lock(&queue.state);
                st.polling = true;
                std::mem::take(&mut st.incoming)
            };
            if !incoming.is_empty() {
                let running = running.get_or_insert_with(FuturesUnordered::new);
                for task in incoming {
                    running.push(task);
                }
            }
            let Some(running) = running.as_mut() else {
                // Nothing was ever queued (a spawn is between `used` and its push): leave
                // the poll, or take what came meanwhile.
                let mut st = lock(&queue.state);
                if st.incoming.is_empty() {
                    st.polling = false;
                    return Poll::Ready(());
                }
                continue;
            };
            loop {
                // A completed child's future is dropped inside `poll_next`: its `Drop` may
                // panic, which is the scope's to re-raise once everything finished.
                match catch_unwind(AssertUnwindSafe(|| Pin::new(&mut *running).poll_next(cx))) {
                    Ok(Poll::Ready(Some(()))) => {}
                    Ok(Poll::Ready(None) | Poll::Pending) => break,
                    Err(p) => record_panic(p),
                }
            }
            let mut st = lock(&queue.state);
            if st.incoming.is_empty() {
                st.polling = false;
                drop(st);
                return if running.is_empty() {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                };
            }
            // A child (or the body) queued more while we polled: take them over too.
        }
        // Still more after `ROUNDS` rounds: let other tasks run, and come back.
        lock(&queue.state).polling = false;
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Drops every local child (the scope caught its own hard cancel, or its future is
    /// dropped); their handles resolve to `ParentCancelled`. Returns a panic of a child's
    /// `Drop`, if any.
    pub(crate) fn drop_all(&mut self) -> Result<(), Payload> {
        let Some(queue) = self.used() else {
            return Ok(()); // no local child was ever spawned
        };
        let queued = std::mem::take(&mut lock(&queue.state).incoming);
        let running = self.running().take();
        catch_unwind(AssertUnwindSafe(move || {
            drop(running);
            drop(queued);
        }))
    }

    /// Closes the queue if `close_node` (the scope's closing CAS) succeeds and no local
    /// child is waiting in it (unless `queued` says to drop those), atomically with respect
    /// to `spawn_local`.
    pub(crate) fn try_close(&mut self, queued: Queued, close_node: impl FnOnce() -> bool) -> bool {
        let Some(queue) = &self.queue else {
            return close_node();
        };
        let mut st = lock(&queue.state);
        if (queued == Queued::Run && !st.incoming.is_empty()) || !close_node() {
            return false;
        }
        st.closed = true;
        true
    }

    /// Refuses local children from now on (the scope future is dropped).
    pub(crate) fn close(&self) {
        if let Some(queue) = &self.queue {
            lock(&queue.state).closed = true;
        }
    }
}

/// Records a panic of a local child's `Drop` with the scope's node (the ambient one while
/// the scope polls its local children).
fn record_panic(p: Payload) {
    if let Some(node) = crate::context::current() {
        node.record_panic(p);
    }
}

/// A local child's end, settled with the scope's node (the ambient one while the scope
/// polls its local children) before its handle is told.
fn settle<T, E: Send + 'static>(exit: Exit<T, E>) -> Result<T, Cancelled> {
    match crate::context::current() {
        Some(node) => node.settle(exit),
        // Not polled by its scope: nothing can happen (a local child is only polled there).
        None => match exit {
            Exit::Value(v) => Ok(v),
            Exit::Error(_) => Err(Cancelled::new(CancelReason::ChildFailed)),
            Exit::Panic(_) => Err(Cancelled::new(CancelReason::ChildPanicked)),
        },
    }
}

/// Queues `fut` as a local child of the scope whose node is `node`.
pub(crate) fn spawn<'env, K, F, T, E>(
    queue: &Queue<'env, K>,
    node: &Arc<Node>,
    fut: F,
) -> Result<LocalHandle<T>, SpawnError>
where
    K: Accepts<'env, F, T>,
    F: Future<Output = Result<T, E>> + 'env,
    T: 'env,
    E: Send + 'static,
{
    if node.is_closed() {
        return Err(SpawnError::Closed);
    }
    if node.state().is_soft() {
        // Like a spawned child: a cancelled scope never starts it (R8).
        let handle = LocalHandle::new();
        handle
            .shared
            .set(Err(Cancelled::new(CancelReason::ParentCancelled)));
        return Ok(handle);
    }
    let handle = LocalHandle::new();
    let task = K::boxed(LocalChild {
        fut,
        slot: SlotGuard::enter(node),
        done: DoneGuard {
            shared: handle.shared.clone(),
        },
    });
    queue.used.store(true, Ordering::Release);
    let mut st = lock(&queue.state);
    if st.closed {
        drop(st);
        drop(task);
        return Err(SpawnError::Closed);
    }
    st.incoming.push(task);
    let wake = !st.polling;
    drop(st);
    if wake {
        // Spawned from outside the scope's poll (another task holding a `'static` scope):
        // the scope future must come and take it.
        node.wake_owner();
    }
    Ok(handle)
}

pin_project! {
    /// A local child as the scope holds it: the future, its place at the scope's limiter
    /// (if any), and the guard that resolves its handle if it is dropped unfinished. Fields
    /// drop in order: the child's locals first, then its slot, then the handle is told.
    #[doc(hidden)]
    pub struct LocalChild<F, T> {
        #[pin]
        fut: F,
        slot: Option<SlotGuard>,
        done: DoneGuard<T>,
    }
}

impl<F, T> fmt::Debug for LocalChild<F, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LocalChild")
    }
}

/// Resolves the handle of a local child dropped before it finished.
struct DoneGuard<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Drop for DoneGuard<T> {
    fn drop(&mut self) {
        self.shared
            .finish(Err(Cancelled::new(CancelReason::ParentCancelled)));
    }
}

impl<F, T, E> Future for LocalChild<F, T>
where
    F: Future<Output = Result<T, E>>,
    E: Send + 'static,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        let shared = &this.done.shared;
        if shared.cancel.load(Ordering::Acquire) {
            shared.finish(Err(Cancelled::new(CancelReason::Explicit)));
            return Poll::Ready(());
        }
        if let Some(slot) = this.slot {
            if slot.poll_admitted(cx).is_pending() {
                shared.set_child_waker(cx.waker());
                return Poll::Pending;
            }
        }
        match catch_unwind(AssertUnwindSafe(|| this.fut.poll(cx))) {
            Ok(Poll::Pending) => {
                shared.set_child_waker(cx.waker());
                Poll::Pending
            }
            Ok(Poll::Ready(Ok(v))) => {
                // With the handle gone, the value is dropped here: its `Drop` may panic.
                if let Err(p) = catch_unwind(AssertUnwindSafe(|| shared.finish(Ok(v)))) {
                    record_panic(p);
                }
                Poll::Ready(())
            }
            Ok(Poll::Ready(Err(e))) => {
                shared.finish(settle::<T, E>(Exit::Error(e)));
                Poll::Ready(())
            }
            Err(p) => {
                shared.finish(settle::<T, E>(Exit::Panic(p)));
                Poll::Ready(())
            }
        }
    }
}

/// What a local child and its handle share.
struct Shared<T> {
    /// [`LocalHandle::cancel`] was called.
    cancel: AtomicBool,
    state: Mutex<SharedState<T>>,
}

struct SharedState<T> {
    result: Option<Result<T, Cancelled>>,
    /// The result was set (and maybe taken since).
    finished: bool,
    /// Woken when the result is set.
    handle_waker: Option<Waker>,
    /// The child's own waker, for `cancel`.
    child_waker: Option<Waker>,
}

impl<T> Shared<T> {
    /// `false` once the handle was dropped: nobody can ask for the result any more, so the
    /// child skips the lock (a dropped handle is never re-created).
    fn handle_alive(self: &Arc<Self>) -> bool {
        Arc::strong_count(self) > 1
    }

    /// Sets the result (the first one sticks) and wakes the handle, if there is one.
    fn finish(self: &Arc<Self>, r: Result<T, Cancelled>) {
        if self.handle_alive() {
            self.set(r);
        }
    }

    /// Sets the result (the first one sticks) and wakes the handle.
    fn set(&self, r: Result<T, Cancelled>) {
        let mut st = lock(&self.state);
        if st.finished {
            return;
        }
        st.finished = true;
        st.result = Some(r);
        let w = st.handle_waker.take();
        let c = st.child_waker.take();
        drop(st);
        drop(c);
        if let Some(w) = w {
            w.wake();
        }
    }

    fn set_child_waker(self: &Arc<Self>, waker: &Waker) {
        let alive = self.handle_alive();
        // Pairs with the release of the handle's reference: a `cancel` made before the handle
        // was dropped is seen here.
        fence(Ordering::Acquire);
        if self.cancel.load(Ordering::Relaxed) {
            waker.wake_by_ref();
            return;
        }
        if !alive {
            return; // only `LocalHandle::cancel` uses it
        }
        let mut st = lock(&self.state);
        // `cancel` sets its flag under this lock: either it comes after and finds the waker
        // here, or we see the flag now (it came during the poll that just returned).
        if self.cancel.load(Ordering::Acquire) {
            drop(st);
            waker.wake_by_ref();
            return;
        }
        if st.child_waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
            return;
        }
        let old = st.child_waker.replace(waker.clone());
        drop(st);
        drop(old);
    }
}

/// A handle to a local child ([`Scope::spawn_local`](crate::Scope::spawn_local)): await it for
/// the child's value.
///
/// Resolves like a [`TaskHandle`](crate::TaskHandle): `Ok(value)`, or `Err(Cancelled)` whose
/// reason is `ChildFailed` (the error went to the scope), `ChildPanicked`, `ParentCancelled`
/// (the scope was cancelled and the child dropped, or it never started) or `Explicit`
/// ([`cancel`](LocalHandle::cancel)).
///
/// Dropping the handle neither cancels nor detaches the child.
///
/// # Cancel safety
///
/// Awaiting the handle is cancel safe: the value is kept for a later poll.
pub struct LocalHandle<T> {
    shared: Arc<Shared<T>>,
}

impl<T> LocalHandle<T> {
    fn new() -> Self {
        LocalHandle {
            shared: Arc::new(Shared {
                cancel: AtomicBool::new(false),
                state: Mutex::new(SharedState {
                    result: None,
                    finished: false,
                    handle_waker: None,
                    child_waker: None,
                }),
            }),
        }
    }

    /// Cancels this child alone, without failing or cancelling the scope: it is dropped at
    /// its next poll (woken for it now), and its handle resolves to
    /// [`CancelReason::Explicit`] unless it finished first.
    pub fn cancel(&self) {
        let w = {
            let mut st = lock(&self.shared.state);
            self.shared.cancel.store(true, Ordering::Release);
            st.child_waker.take()
        };
        if let Some(w) = w {
            w.wake();
        }
    }

    /// `true` once the child finished (or was never started).
    pub fn is_finished(&self) -> bool {
        lock(&self.shared.state).finished
    }
}

impl<T> Unpin for LocalHandle<T> {}

impl<T> Future for LocalHandle<T> {
    type Output = Result<T, Cancelled>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut st = lock(&self.shared.state);
        if let Some(r) = st.result.take() {
            return Poll::Ready(r);
        }
        assert!(!st.finished, "`LocalHandle` polled after completion");
        let old = match &st.handle_waker {
            Some(w) if w.will_wake(cx.waker()) => None,
            _ => st.handle_waker.replace(cx.waker().clone()),
        };
        drop(st);
        drop(old);
        Poll::Pending
    }
}

impl<T> fmt::Debug for LocalHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalHandle")
            .field("finished", &self.is_finished())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `LocalChild` is public only as the boxed task of `Accepts`, which no caller sees, so
    /// its `Debug` is checked here.
    #[test]
    fn a_local_child_debugs_as_its_name() {
        let child = LocalChild {
            fut: std::future::ready(Ok::<(), Cancelled>(())),
            slot: None,
            done: DoneGuard {
                shared: LocalHandle::<()>::new().shared,
            },
        };
        assert_eq!(format!("{child:?}"), "LocalChild");
    }
}
