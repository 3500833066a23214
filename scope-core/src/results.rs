//! Children's results in completion order ([`Completions`]) and in input order
//! ([`join_all`], [`join_all_in`]).
//!
//! Built only on the public API of the crate: a child is spawned wrapped in a [`Reported`]
//! future that hands its outcome to a shared queue ([`Channel`]) when it completes, or, when
//! it is dropped without completing (cancelled, panicked), a [`Cancelled`] saying why. The
//! reader waits on that queue with one stored waker, so taking a result is O(1) however many
//! children run (no handle is polled again and again).

use std::collections::VecDeque;
use std::fmt;
use std::future::{Future, poll_fn};
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use pin_project_lite::pin_project;

use crate::context;
use crate::error::{CancelReason, Cancelled, SpawnError};
use crate::outcome::Exit;
use crate::scope::{ScopeHandle, scope};
use crate::sync::{Arc, Mutex, MutexGuard, lock};

// ---------------------------------------------------------------------------------------
// The shared queue and the reporting wrapper (also used by `race`).
// ---------------------------------------------------------------------------------------

/// A queue of children's outcomes with one waiting reader.
pub(crate) struct Channel<R> {
    inner: Mutex<Queue<R>>,
}

struct Queue<R> {
    ready: VecDeque<R>,
    waker: Option<Waker>,
    /// The reader is gone: outcomes are dropped as they come.
    closed: bool,
}

impl<R> Channel<R> {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Channel {
            inner: Mutex::new(Queue {
                ready: VecDeque::new(),
                waker: None,
                closed: false,
            }),
        })
    }

    /// Locks the queue (see `sync::lock`: nothing here panics while holding it; user values
    /// are dropped and wakers woken after it is released).
    fn lock(&self) -> MutexGuard<'_, Queue<R>> {
        lock(&self.inner)
    }

    /// Queues `r` and wakes the reader.
    pub(crate) fn push(&self, r: R) {
        let mut q = self.lock();
        if q.closed {
            drop(q);
            drop(r); // outside the lock: its `Drop` is user code
            return;
        }
        q.ready.push_back(r);
        let waker = q.waker.take();
        drop(q);
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// The oldest queued outcome, or `Pending` with `cx`'s waker stored.
    pub(crate) fn poll_pop(&self, cx: &mut Context<'_>) -> Poll<R> {
        let mut q = self.lock();
        if let Some(r) = q.ready.pop_front() {
            return Poll::Ready(r);
        }
        match &mut q.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            slot => {
                let old = slot.replace(cx.waker().clone());
                drop(q);
                drop(old); // a foreign waker's drop, outside the lock
            }
        }
        Poll::Pending
    }

    /// The reader is gone: drops what is queued and everything that comes later.
    pub(crate) fn close(&self) {
        let (ready, waker) = {
            let mut q = self.lock();
            q.closed = true;
            (std::mem::take(&mut q.ready), q.waker.take())
        };
        drop(waker);
        drop(ready);
    }
}

/// How a child's outcome becomes a queue entry (and what its task returns to the scope).
pub(crate) trait Entry: Sized {
    /// What identifies the child in its entry.
    type Key: Copy;
    /// The child's output.
    type In;
    /// What the child's task returns to the scope.
    type Out;
    /// The child completed with `out`.
    fn done(key: Self::Key, out: Self::In) -> (Self, Self::Out);
    /// The child was dropped before it completed.
    fn gone(key: Self::Key, reason: CancelReason) -> Self;
}

/// Where a [`Reported`] child stands.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    Idle,
    /// Inside the child's `poll`: a drop in this stage means the poll unwound (a panic).
    Polling,
    /// Reported.
    Done,
}

/// Reports a child's outcome: [`Entry::done`] on completion, or [`Entry::gone`] when it is
/// dropped first.
pub(crate) struct Reporter<R: Entry> {
    channel: Arc<Channel<R>>,
    key: R::Key,
    stage: Stage,
}

impl<R: Entry> Drop for Reporter<R> {
    fn drop(&mut self) {
        if self.stage == Stage::Done {
            return;
        }
        // A poll that never returned unwound: the child panicked (the scope caught it and
        // drops the task afterwards). Panicking now: the child's `Drop` panicked.
        let reason = if self.stage == Stage::Polling || std::thread::panicking() {
            CancelReason::ChildPanicked
        } else {
            CancelReason::ParentCancelled
        };
        self.channel.push(R::gone(self.key, reason));
    }
}

pin_project! {
    /// A child's future that reports its outcome to a [`Channel`].
    ///
    /// The fields drop in order: the child's future first, then the reporter, so an outcome
    /// of a dropped child is queued only once the child's locals are gone.
    pub(crate) struct Reported<F, R: Entry> {
        #[pin]
        fut: F,
        reporter: Reporter<R>,
    }
}

impl<F, R: Entry> Reported<F, R> {
    pub(crate) fn new(channel: Arc<Channel<R>>, key: R::Key, fut: F) -> Self {
        Reported {
            fut,
            reporter: Reporter {
                channel,
                key,
                stage: Stage::Idle,
            },
        }
    }

    /// Drops the child without reporting it (it was never spawned).
    pub(crate) fn discard(mut self) {
        self.reporter.stage = Stage::Done;
    }
}

impl<F, R> Future for Reported<F, R>
where
    F: Future<Output = R::In>,
    R: Entry,
{
    type Output = R::Out;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<R::Out> {
        let this = self.project();
        let reporter = this.reporter;
        assert!(
            reporter.stage != Stage::Done,
            "`Reported` polled after completion"
        );
        reporter.stage = Stage::Polling;
        let polled = this.fut.poll(cx);
        reporter.stage = Stage::Idle;
        let Poll::Ready(out) = polled else {
            return Poll::Pending;
        };
        reporter.stage = Stage::Done;
        let (entry, out) = R::done(reporter.key, out);
        reporter.channel.push(entry);
        Poll::Ready(out)
    }
}

// ---------------------------------------------------------------------------------------
// Completions
// ---------------------------------------------------------------------------------------

/// A queued result of a [`Completions`] child. An `Err` of the child goes on to the scope
/// (which fails with it) and is queued as `ChildFailed`.
struct Done<T, E> {
    result: Result<T, Cancelled>,
    _error: PhantomData<fn() -> E>,
}

impl<T, E: Send + 'static> Entry for Done<T, E> {
    type Key = ();
    type In = Result<T, E>;
    type Out = Result<(), E>;

    fn done((): (), out: Result<T, E>) -> (Self, Result<(), E>) {
        let (result, out) = match out {
            Ok(v) => (Ok(v), Ok(())),
            Err(e) => {
                // The error reaches the scope here, before the entry is queued (by the
                // caller, once this returns): a reader woken by the `ChildFailed` entry
                // that fails with it finds the scope failed with this error already, so
                // the reader's error is the secondary one. `done` runs inside the child's
                // poll, where the ambient node is the scope the child was spawned into.
                match context::current() {
                    Some(scope) => (scope.settle::<T, E>(Exit::Error(e)), Ok(())),
                    None => (Err(Cancelled::new(CancelReason::ChildFailed)), Err(e)),
                }
            }
        };
        let entry = Done {
            result,
            _error: PhantomData,
        };
        (entry, out)
    }

    fn gone((): (), reason: CancelReason) -> Self {
        Done {
            result: Err(Cancelled::new(reason)),
            _error: PhantomData,
        }
    }
}

/// Children of a scope whose results are taken in the order they complete, like
/// [`tokio::task::JoinSet::join_next`].
///
/// [`spawn`](Completions::spawn) starts a future as an ordinary child of the scope the
/// [`ScopeHandle`] belongs to; [`join_next`](Completions::join_next) yields the result of
/// whichever child finished first, then the next, and so on, and `None` once every child
/// spawned through this `Completions` was yielded. Each child yields exactly once:
///
/// - `Ok(value)` if it succeeded;
/// - `Err(Cancelled)` with [`CancelReason::ChildFailed`] if it returned an error. The error
///   itself goes to the scope, which fails with it (fail fast) and cancels the other
///   children, as for any child;
/// - `Err(Cancelled)` with [`CancelReason::ChildPanicked`] if it panicked; the scope
///   re-raises the panic once everything finished;
/// - `Err(Cancelled)` with [`CancelReason::ParentCancelled`] if it was dropped before it
///   completed: the scope (or an ancestor) was cancelled, or the child was spawned into a
///   cancelled scope and never ran.
///
/// A result is queued when the child's future finishes; one of a child that did not
/// complete, once its future (its locals) was dropped. Taking one is O(1), however many
/// children run.
///
/// In a fail-fast scope, the body is cancelled together with the children when one of
/// them fails: a reader in the body usually ends there, and the scope returns the child's
/// error. A reader that keeps running (inside a [`shield`](crate::shield())) sees the
/// `ChildFailed` entry, then `ParentCancelled` for each child the failure cancelled.
///
/// # Drop
///
/// Dropping the `Completions` neither cancels nor detaches its children: they are children
/// of the scope, which still awaits them. Results that were not taken are dropped, at once
/// or as the children finish.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use std::time::Duration;
/// use taskscope::combinators::Completions;
/// use taskscope::{scope, Cancelled};
///
/// let order: Result<Vec<u64>, Cancelled> = scope(async |s| {
///     let mut done = Completions::new(s.handle());
///     for ms in [30, 10, 20] {
///         done.spawn(async move {
///             tokio::time::sleep(Duration::from_millis(ms)).await;
///             Ok(ms)
///         })
///         .expect("the scope is running");
///     }
///     let mut order = Vec::new();
///     while let Some(r) = done.join_next().await {
///         order.push(r?);
///     }
///     Ok(order)
/// })
/// .await;
/// assert_eq!(order, Ok(vec![10, 20, 30]));
/// # }
/// ```
pub struct Completions<T, E> {
    scope: ScopeHandle<E>,
    channel: Arc<Channel<Done<T, E>>>,
    /// Children spawned and not yet yielded.
    outstanding: usize,
}

impl<T, E> Completions<T, E> {
    /// An empty set of children that will be spawned into the scope of `scope`.
    pub fn new(scope: ScopeHandle<E>) -> Self {
        Completions {
            scope,
            channel: Channel::new(),
            outstanding: 0,
        }
    }

    /// How many children were spawned and not yet yielded by `join_next`.
    pub fn len(&self) -> usize {
        self.outstanding
    }

    /// `true` if no spawned child is waiting to be yielded.
    pub fn is_empty(&self) -> bool {
        self.outstanding == 0
    }

    /// The handle of the scope the children are spawned into.
    pub fn scope(&self) -> &ScopeHandle<E> {
        &self.scope
    }

    /// Spawns `fut` as a child of the scope; its result is yielded by
    /// [`join_next`](Self::join_next) once it completes.
    ///
    /// The child is an ordinary child of the scope: its `Err` fails the scope, its panic
    /// propagates through the scope, cancelling the scope cancels it. Spawning into a
    /// cancelled scope does not start it; it is then yielded as
    /// [`ParentCancelled`](CancelReason::ParentCancelled).
    ///
    /// # Errors
    ///
    /// [`SpawnError`] as for [`ScopeHandle::spawn`] (the scope finished, or has no runtime);
    /// the future was dropped and nothing will be yielded for it.
    pub fn spawn<F>(&mut self, fut: F) -> Result<(), SpawnError>
    where
        F: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        let wrapped = Reported::<F, Done<T, E>>::new(self.channel.clone(), (), fut);
        match self.scope.spawn_or_return(wrapped) {
            Ok(_handle) => {
                self.outstanding += 1;
                Ok(())
            }
            Err((e, wrapped)) => {
                // That child never existed: nothing to yield for it.
                wrapped.discard();
                Err(e)
            }
        }
    }

    /// Waits for the next child to complete and returns its result; `None` if no spawned
    /// child is left to yield.
    ///
    /// Results come in the order the children finished (see the type's documentation for
    /// what each one means). Taking a result counts against tokio's cooperative budget, like
    /// `JoinSet::join_next`, so a loop over many finished children yields to the scheduler.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: if the future is dropped before it completed (a lost `select!` branch),
    /// no result is lost; the next call yields it.
    pub async fn join_next(&mut self) -> Option<Result<T, Cancelled>> {
        poll_fn(|cx| self.poll_join_next(cx)).await
    }

    /// Polls for the next result: `Ready(None)` if no spawned child is left to yield,
    /// `Ready(Some(result))` for the child that finished first, `Pending` otherwise (the
    /// waker of `cx` is woken when a child finishes; only the waker of the last call is
    /// kept).
    pub fn poll_join_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<T, Cancelled>>> {
        if self.outstanding == 0 {
            return Poll::Ready(None);
        }
        let coop = std::task::ready!(tokio::task::coop::poll_proceed(cx));
        match self.channel.poll_pop(cx) {
            Poll::Ready(done) => {
                coop.made_progress();
                self.outstanding -= 1;
                Poll::Ready(Some(done.result))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    /// Returns the next result if one is ready, without waiting; `None` if none is ready
    /// (or no child is left to yield).
    pub fn try_join_next(&mut self) -> Option<Result<T, Cancelled>> {
        if self.outstanding == 0 {
            return None;
        }
        let done = self.channel.lock().ready.pop_front()?;
        self.outstanding -= 1;
        Some(done.result)
    }
}

/// The results as a [`Stream`](futures_util::Stream), in completion order; it ends when no
/// spawned child is outstanding (and may go on after more are spawned).
impl<T, E> futures_util::Stream for Completions<T, E> {
    type Item = Result<T, Cancelled>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_join_next(cx)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.len(), Some(self.len()))
    }
}

impl<T, E> Drop for Completions<T, E> {
    fn drop(&mut self) {
        self.channel.close();
    }
}

impl<T, E> fmt::Debug for Completions<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Completions")
            .field("scope", &self.scope)
            .field("len", &self.outstanding)
            .finish()
    }
}

// ---------------------------------------------------------------------------------------
// join_all
// ---------------------------------------------------------------------------------------

/// Runs every future of `futs` as a child of a new scope and returns their values in
/// input order.
///
/// All futures start at once (each is a child task, so they run in parallel). The first
/// error cancels the others, which are dropped and awaited, and is returned (fail fast, as
/// in [`scope`]); a panic of one is resumed here once the others are gone. The scope nests
/// in the caller's cancel tree: cancelling the caller cancels the children.
///
/// To bound how many run at once, or to run them in a scope that already exists, use
/// [`join_all_in`].
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use std::time::Duration;
/// use taskscope::combinators::join_all;
/// use taskscope::Cancelled;
///
/// let values = join_all([30u64, 10, 20].map(|ms| async move {
///     tokio::time::sleep(Duration::from_millis(ms)).await;
///     Ok::<_, Cancelled>(ms)
/// }))
/// .await;
/// assert_eq!(values, Ok(vec![30, 10, 20])); // input order, not completion order
/// # }
/// ```
///
/// # Cancel safety
///
/// Not cancel safe: dropping the future cancels the children (see *Drop* of [`scope`]).
///
/// # Panics
///
/// Resumes the first panic of a child once every child finished; panics when polled
/// outside a Tokio runtime (there is nowhere to spawn).
pub async fn join_all<I, F, T, E>(futs: I) -> Result<Vec<T>, E>
where
    I: IntoIterator<Item = F>,
    F: Future<Output = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: From<Cancelled> + Send + 'static,
{
    let futs: Vec<F> = futs.into_iter().collect();
    scope(async move |s| {
        let handles: Vec<_> = futs.into_iter().map(|f| s.spawn(f)).collect();
        let mut values = Vec::with_capacity(handles.len());
        for h in handles {
            // A failed child's own error is what the scope returns, not this one.
            values.push(h.await?);
        }
        Ok(values)
    })
    .await
}

/// Spawns every future of `futs` into the existing scope of `scope` and returns their
/// values in input order.
///
/// The children are ordinary children of that scope: its concurrency
/// [`limit`](crate::ScopeBuilder::limit) applies to them (they are admitted in input
/// order), the first error fails the scope with that error (fail fast), which cancels the
/// other children, and a panic propagates through the scope. This function then returns
/// the [`Cancelled`] of the first child, in input order, that produced no value (see
/// [`TaskHandle`](crate::TaskHandle) for the reasons); `?` turns it into the scope's error.
///
/// # Drop
///
/// Dropping the future neither cancels nor detaches the children: the scope still awaits
/// them; their values are dropped.
///
/// # Examples
///
/// At most two downloads at once, values in input order:
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use std::time::Duration;
/// use taskscope::combinators::join_all_in;
/// use taskscope::{Cancelled, Scope};
///
/// let r: Result<Vec<u64>, Cancelled> = Scope::builder()
///     .limit(2)
///     .run(async |s| {
///         let sizes = join_all_in(&s.handle(), (1..=5u64).map(|i| async move {
///             tokio::time::sleep(Duration::from_millis(10)).await;
///             Ok(i * 100)
///         }))
///         .await?;
///         Ok(sizes)
///     })
///     .await;
/// assert_eq!(r, Ok(vec![100, 200, 300, 400, 500]));
/// # }
/// ```
///
/// # Cancel safety
///
/// Not cancel safe: the values of children that finished are lost if the future is dropped
/// (the children themselves still run to completion in the scope, see *Drop*).
///
/// # Panics
///
/// If spawning fails, like [`Scope::spawn`](crate::Scope::spawn): the scope already
/// finished (the handle outlived it) or was entered outside a Tokio runtime.
pub async fn join_all_in<I, F, T, E>(scope: &ScopeHandle<E>, futs: I) -> Result<Vec<T>, Cancelled>
where
    I: IntoIterator<Item = F>,
    F: Future<Output = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
{
    let handles: Vec<_> = futs
        .into_iter()
        .map(|f| match scope.spawn(f) {
            Ok(h) => h,
            Err(e) => panic!("taskscope: join_all_in cannot spawn: {e}"),
        })
        .collect();
    let mut values = Vec::with_capacity(handles.len());
    for h in handles {
        values.push(h.await?);
    }
    Ok(values)
}
