//! Cancel scopes: nodes without children of their own, and the helpers built on them
//! (`move_on_after`, `fail_after`, `shield`).

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::Instant;

use crate::driver::{Driver, Step, Teardown, Work};
use crate::error::{CancelReason, Cancelled, SpawnError};
use crate::parent::{Hold, Parent};
use crate::sync::{Arc, OnceLock};
use crate::timeout::{Lazily, Timeout, lazy_nanos};
use crate::tree::{Config, Lazy, Limit, Node};

/// A node of the cancel tree around one future: a deadline, a shield, and a handle to
/// cancel it.
///
/// Build it, optionally take a [`CancelHandle`], then [`run`](CancelScope::run) a future in
/// it. When the future is first polled the scope is *entered*: it becomes a child of the
/// ambient node (the scope or cancel scope the caller runs in), a relative
/// [`timeout`](CancelScope::timeout) is turned into a deadline, and everything the future
/// does (nested scopes, `checkpoint()`, `cancelled()`) is under it.
///
/// When the cancel scope is cancelled (explicitly, by its deadline) it *catches* its own
/// cancellation: the inner future is dropped at its next poll (after the grace period,
/// default zero) and `run` returns `Err(Cancelled)`. A cancellation that comes from an
/// enclosing node is not caught here; it passes through to the outermost cancelled node
/// (trio's rule), except in a cancel scope opened under an explicit
/// [`parent`](CancelScope::parent), which is the outermost node of its task and catches its
/// parent's hard cancel too (reason [`CancelReason::ParentCancelled`]). If the inner future
/// completes first, its value is returned even if the scope was cancelled meanwhile: a
/// cancel that was never delivered is discarded.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use std::time::Duration;
/// use taskscope::{CancelReason, CancelScope};
///
/// let cs = CancelScope::new().timeout(Duration::from_secs(1));
/// let handle = cs.handle();
/// let r = cs.run(tokio::time::sleep(Duration::from_secs(10))).await;
/// assert_eq!(r.unwrap_err().reason(), CancelReason::DeadlineExceeded);
/// assert!(handle.cancelled_caught());
/// # }
/// ```
pub struct CancelScope {
    /// Built by the first call that needs it (a setting, a handle); a cancel scope run
    /// without one builds its node only when code inside asks for it (see
    /// [`CancelScope::run`]).
    node: OnceLock<Arc<Node>>,
    /// Opened under an explicit parent: counted there from [`CancelScope::parent`] on.
    hold: Option<Hold>,
}

impl Default for CancelScope {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for CancelScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("CancelScope");
        match self.node.get() {
            Some(node) => {
                let inner = node.lock();
                d.field("name", &inner.name)
                    .field("deadline", &inner.deadline)
                    .field("shield", &inner.shield)
                    .field("cancel_called", &inner.reason.is_some())
                    .finish()
            }
            // Nothing was set and no handle taken: the defaults.
            None => d
                .field("name", &None::<Cow<'static, str>>)
                .field("deadline", &None::<Instant>)
                .field("shield", &false)
                .field("cancel_called", &false)
                .finish(),
        }
    }
}

impl CancelScope {
    /// A cancel scope with no deadline, not shielded.
    pub fn new() -> Self {
        CancelScope {
            node: OnceLock::new(),
            hold: None,
        }
    }

    /// The node, built now if nothing built it yet.
    fn node(&self) -> &Arc<Node> {
        self.node
            .get_or_init(|| Lazy::CancelScope(Limit::None).node())
    }

    /// Cancels the scope `d` after it is entered (its first poll). `Duration::MAX` never
    /// fires. Combined with [`deadline`](Self::deadline), the earlier one wins.
    pub fn timeout(self, d: Duration) -> Self {
        self.node().lock().set_timeout(d);
        self
    }

    /// Cancels the scope at `at`. A deadline already past at entry cancels before the
    /// inner future is first polled.
    pub fn deadline(self, at: Instant) -> Self {
        {
            let mut inner = self.node().lock();
            inner.deadline = Some(inner.deadline.map_or(at, |d| d.min(at)));
        }
        self
    }

    /// Shields the inner future from cancellation that comes from outside: neither soft nor
    /// hard cancellation of enclosing nodes reaches it, nor the scopes opened inside it. The
    /// scope's own deadline and its handle still cancel it.
    ///
    /// A shield cannot stop Rust from dropping the future that contains it (a lost
    /// `select!` branch, an aborted task): it shields against the cancel tree, not `Drop`.
    pub fn shield(self, shield: bool) -> Self {
        self.node().lock().shield = shield;
        self
    }

    /// A name for diagnostics.
    pub fn name(self, name: impl Into<Cow<'static, str>>) -> Self {
        self.node().lock().name = Some(name.into());
        self
    }

    /// Time between this scope's own soft cancel (the inner code sees `cancelled()`) and
    /// the hard one (the inner future is dropped). Default zero.
    pub fn grace(self, grace: Duration) -> Self {
        self.node().lock().grace = grace;
        self
    }

    /// Opens the cancel scope under `parent` instead of the ambient node; see
    /// [`ScopeBuilder::parent`](crate::ScopeBuilder::parent). The parent counts it from
    /// this call on (it does not return before the cancel scope's future finished or was
    /// dropped; dropping the `CancelScope` unrun releases it), and the cancel scope catches
    /// the parent's hard cancel itself, with reason [`CancelReason::ParentCancelled`].
    ///
    /// # Errors
    ///
    /// [`SpawnError::Closed`] if the parent finished.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use taskscope::{CancelReason, CancelScope, Cancelled, Parent};
    ///
    /// let (tx, rx) = tokio::sync::oneshot::channel();
    /// let served: Result<(), Cancelled> = taskscope::scope(async |server| {
    ///     let request = CancelScope::new()
    ///         .parent(Parent::from(&server.handle()))
    ///         .expect("the server scope runs");
    ///     // In a task the tree does not own; the server scope still awaits it.
    ///     tokio::spawn(async move {
    ///         let r = request.run(std::future::pending::<()>()).await;
    ///         tx.send(r).ok();
    ///     });
    ///     server.cancel(); // no grace: the request is dropped at once
    ///     Ok(())
    /// })
    /// .await;
    /// assert!(served.is_ok());
    /// let r = rx.await.unwrap();
    /// assert_eq!(r.unwrap_err().reason(), CancelReason::ParentCancelled);
    /// # }
    /// ```
    pub fn parent(mut self, parent: impl Into<Parent>) -> Result<Self, SpawnError> {
        self.hold = Some(parent.into().hold()?);
        Ok(self)
    }

    /// A handle to cancel this scope or move its deadline, before or while it runs.
    pub fn handle(&self) -> CancelHandle {
        CancelHandle {
            node: self.node().clone(),
        }
    }

    /// Runs `fut` inside this cancel scope.
    ///
    /// Returns `Ok(output)` if `fut` completed, `Err(Cancelled)` if this scope caught its own
    /// cancellation (the future was dropped). Before it returns, every task spawned below
    /// it (by scopes whose futures were dropped inside it) has finished.
    ///
    /// A cancel scope with nothing set and no handle taken has nothing of its own to be
    /// cancelled by: it builds its node (an allocation, and locks to enter the tree and
    /// leave it) only when code in `fut` asks for the ambient context (a nested scope,
    /// `is_cancelled()`, `cancelled()`, a snapshot). Every answer is the one the node
    /// would give had it been built at entry; until then it is not in a
    /// [`snapshot`](crate::snapshot()) taken elsewhere.
    ///
    /// # Cancel safety
    ///
    /// Dropping the returned future drops `fut`; nested scopes inside it then hand their
    /// still-running children to the nearest live ancestor scope.
    pub fn run<F: Future>(self, fut: F) -> Run<F, F::Output> {
        match (self.node.into_inner(), self.hold) {
            (None, None) => Run::plain(fut),
            (node, hold) => {
                let node = node.unwrap_or_else(|| Lazy::CancelScope(Limit::None).node());
                Run::new(Driver::with_hold(node, hold), fut)
            }
        }
    }
}

/// A clonable handle to a [`CancelScope`] (or a scope's node): cancel it, move its
/// deadline, ask what happened.
#[derive(Clone)]
pub struct CancelHandle {
    node: Arc<Node>,
}

impl fmt::Debug for CancelHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.node.lock();
        f.debug_struct("CancelHandle")
            .field("name", &inner.name)
            .field("reason", &inner.reason)
            .field("deadline", &inner.deadline)
            .finish()
    }
}

impl CancelHandle {
    /// A tokio-util `CancellationToken` cancelled when this node is. Feature `tokio-util`.
    #[cfg(feature = "tokio-util")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio-util")))]
    pub fn cancellation_token(&self) -> tokio_util::sync::CancellationToken {
        crate::interop::token(&self.node)
    }

    /// A copy of the cancel tree below (and including) this node: see
    /// [`TreeSnapshot`](crate::TreeSnapshot).
    pub fn snapshot(&self) -> crate::snapshot::TreeSnapshot {
        crate::snapshot::TreeSnapshot::of(&self.node)
    }

    pub(crate) fn from_node(node: Arc<Node>) -> Self {
        CancelHandle { node }
    }

    /// Cancels the scope (reason [`CancelReason::Explicit`] unless it was already
    /// cancelled). Idempotent; after the scope exited it does nothing.
    pub fn cancel(&self) {
        self.node.cancel(CancelReason::Explicit);
    }

    /// Cancels the scope with `reason` (unless it was already cancelled: the first reason
    /// sticks), for code that knows why better than [`CancelReason::Explicit`] says: a
    /// server layer whose client went away cancels the request with
    /// [`CancelReason::Disconnected`]. The scope's grace period applies as for
    /// [`cancel`](Self::cancel).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use taskscope::{CancelReason, CancelScope};
    ///
    /// let cs = CancelScope::new();
    /// cs.handle().cancel_with(CancelReason::Disconnected);
    /// let r = cs.run(std::future::pending::<()>()).await;
    /// assert_eq!(r.unwrap_err().reason(), CancelReason::Disconnected);
    /// # }
    /// ```
    pub fn cancel_with(&self, reason: CancelReason) {
        self.node.cancel(reason);
    }

    /// Sets the grace period of the scope's next own cancel (the time between its soft and
    /// hard phase; see [`CancelScope::grace`]). A cancel already in its grace period keeps
    /// the end it was given, unless a later cancel finds a zero grace, which makes it hard
    /// at once.
    pub fn set_grace(&self, grace: Duration) {
        self.node.lock().grace = grace;
    }

    /// The scope's own deadline (not its ancestors'). A relative timeout is known only once
    /// the scope was entered.
    pub fn deadline(&self) -> Option<Instant> {
        self.node.lock().deadline
    }

    /// Moves the deadline. Earlier and already past: the scope is cancelled at once.
    /// Later: the scope's cancellation is postponed (if it has not fired yet).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use std::time::Duration;
    /// use tokio::time::{sleep, Instant};
    /// use taskscope::CancelScope;
    ///
    /// let start = Instant::now();
    /// let cs = CancelScope::new().timeout(Duration::from_secs(1));
    /// let h = cs.handle();
    /// let r = cs
    ///     .run(async move {
    ///         h.set_deadline(start + Duration::from_secs(5)); // postpone
    ///         sleep(Duration::from_secs(3)).await;
    ///         "done"
    ///     })
    ///     .await;
    /// assert_eq!(r, Ok("done"));
    /// assert_eq!(start.elapsed(), Duration::from_secs(3));
    /// # }
    /// ```
    pub fn set_deadline(&self, at: Instant) {
        self.node.set_deadline(Some(at));
    }

    /// Moves the deadline to `d` from now.
    pub fn set_timeout(&self, d: Duration) {
        self.node.set_deadline(Instant::now().checked_add(d));
    }

    /// Removes the deadline.
    pub fn clear_deadline(&self) {
        self.node.set_deadline(None);
    }

    /// `true` once the scope was cancelled on its own account (by `cancel()`, its deadline,
    /// or, for a scope, a failing child), whether or not that was delivered.
    pub fn cancel_called(&self) -> bool {
        self.node.lock().reason.is_some()
    }

    /// `true` if this scope caught its own cancellation: the inner future was dropped and
    /// the scope returned `Cancelled`.
    pub fn cancelled_caught(&self) -> bool {
        self.node.lock().has_caught()
    }

    /// `true` if code inside the scope sees cancellation (its own or an ancestor's).
    pub fn is_cancelled(&self) -> bool {
        self.node.state().is_soft()
    }

    /// The reason the scope was cancelled with, if it was cancelled on its own account.
    pub fn reason(&self) -> Option<CancelReason> {
        self.node.lock().reason
    }

    /// How many errors of this scope were not returned (they arrived after it was
    /// cancelled, in fail-fast mode) and were reported as `tracing` events instead.
    pub fn suppressed_errors(&self) -> u32 {
        self.node.lock().outcome.suppressed
    }

    /// `true` once the scope's future finished or was dropped.
    pub fn is_finished(&self) -> bool {
        self.node.lock().is_done()
    }
}

pin_project! {
    /// The future of [`CancelScope::run`].
    ///
    /// `T` is the inner future's output, a type parameter of its own rather than the
    /// projection `F::Output`: proving that a cancel scope around a scope is `Send` then does
    /// not go through rustc's higher-ranked inference over the scope's lifetimes.
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct Run<F, T> {
        driver: Driver,
        // Whether the node is built yet (see `Run::poll_unbuilt`).
        unbuilt: Unbuilt,
        #[pin]
        work: RunWork<F, T>,
    }

    impl<F, T> PinnedDrop for Run<F, T> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            this.driver.drop_work(this.work);
        }
    }
}

pin_project! {
    /// What a cancel scope runs under its node: one future, and what became of it.
    struct RunWork<F, T> {
        #[pin]
        fut: Option<F>,
        out: Option<T>,
        caught: Option<Cancelled>,
    }
}

/// Whether the node of a cancel scope with nothing set is built yet. (A timeout's wrapper,
/// `Timeout`, keeps its own state and sets `Waiting` here only for `Debug`.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Unbuilt {
    /// It is, or it was given at creation.
    No,
    /// Not polled yet.
    Fresh,
    /// Polled, and its future waits.
    Waiting,
}

impl<F, T> fmt::Debug for Run<F, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Run")
            .field(
                "active",
                &(self.driver.is_active()
                    || (self.unbuilt == Unbuilt::Waiting && !self.driver.is_finished())),
            )
            .field("finished", &self.driver.is_finished())
            .finish_non_exhaustive()
    }
}

impl<F: Future<Output = T>, T> Run<F, T> {
    pub(crate) fn new(driver: Driver, fut: F) -> Self {
        Run {
            driver,
            unbuilt: Unbuilt::No,
            work: RunWork {
                fut: Some(fut),
                out: None,
                caught: None,
            },
        }
    }

    /// A cancel scope with nothing set around `fut`, whose node is built only when needed
    /// (see `Lazily::poll_unbuilt`).
    fn plain(fut: F) -> Self {
        let mut run = Run::new(Driver::unbuilt(), fut);
        run.unbuilt = Unbuilt::Fresh;
        run
    }

    /// A poll of a cancel scope with nothing set while its node is not built. Apart from
    /// `poll`, so that a cancel scope built at entry keeps a `poll` small enough to inline
    /// into its caller.
    #[inline(never)]
    fn poll_lazily(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T, Cancelled>> {
        if self.unbuilt != Unbuilt::No {
            let lazy = self.lazy(Limit::None);
            let done = self.as_mut().poll_unbuilt(lazy, cx);
            let waiting = matches!(done, Some(Poll::Pending)) && !self.is_built();
            self.as_mut().set_waiting(waiting);
            if let Some(done) = done {
                return done;
            }
        }
        let this = self.project();
        this.driver.poll(this.work, cx)
    }
}

impl<F: Future<Output = T>, T> Future for Run<F, T> {
    type Output = Result<T, Cancelled>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.unbuilt != Unbuilt::No {
            return self.poll_lazily(cx);
        }
        let this = self.project();
        this.driver.poll(this.work, cx)
    }
}

impl<F, T> Teardown for RunWork<F, T> {
    fn drop_inner(self: Pin<&mut Self>, _node: &Arc<Node>) {
        // A panic of the future's `Drop` unwinds out of here, as out of any future's drop.
        self.project().fut.set(None);
    }
}

impl<F: Future<Output = T>, T> Work for RunWork<F, T> {
    type Output = Result<T, Cancelled>;
    const NAME: &'static str = "Run";
    const SPAWNS: bool = false;

    fn is_running(self: Pin<&mut Self>) -> bool {
        self.out.is_none() && self.caught.is_none()
    }

    fn poll_run(self: Pin<&mut Self>, driver: &mut Driver, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        let fut = this.fut.as_mut();
        match driver.poll_inner(|| fut.as_pin_mut().map(|f| f.poll(cx))) {
            Some(Poll::Ready(v)) => {
                this.fut.set(None);
                *this.out = Some(v);
                Poll::Ready(())
            }
            _ => Poll::Pending,
        }
    }

    fn catch(self: Pin<&mut Self>, caught: Cancelled) {
        *self.project().caught = Some(caught);
    }

    /// Never: the driver asks to release holds of scopes opened under the node, and a cancel
    /// scope's node has none (only a scope can be an explicit parent: a `Parent` comes from
    /// a `ScopeHandle`). A caught future goes once the subtree drained (`drop_inner`).
    fn has_stopped_inner(self: Pin<&mut Self>, _driver: &Driver) -> bool {
        false
    }

    fn output(self: Pin<&mut Self>, _node: &Arc<Node>) -> Self::Output {
        let this = self.project();
        match (this.out.take(), this.caught.take()) {
            (Some(v), _) => Ok(v),
            (None, Some(c)) => Err(c),
            (None, None) => Err(Cancelled::new(CancelReason::Explicit)),
        }
    }
}

impl<F: Future<Output = T>, T> Lazily for Run<F, T> {
    fn lazy(&self, limit: Limit) -> Lazy {
        Lazy::CancelScope(limit)
    }

    /// A poll of a cancel scope whose node is not built yet (see `context::enter_lazy`):
    /// the node is built if code under this poll asks for its scope. A cancel scope with
    /// nothing set has nothing of its own to wait for or be cancelled by, and a timeout
    /// waits on a timer of its own (`Timeout`): either stays unbuilt while its future
    /// waits; an ancestor's cancellation is dealt with by the node future further out, or
    /// the task wrapper, that catches it (invariant #8).
    #[inline]
    fn poll_unbuilt(
        self: Pin<&mut Self>,
        lazy: Lazy,
        cx: &mut Context<'_>,
    ) -> Option<Poll<Result<T, Cancelled>>> {
        let this = self.project();
        let driver = this.driver;
        #[cfg(feature = "tracing")]
        if tracing::span_enabled!(tracing::Level::DEBUG) {
            // A subscriber wants the cancel scope's span (and the events in it): the node
            // is built at once.
            driver.build(lazy.node());
            return None;
        }
        let mut work = this.work.project();
        let fut = work.fut.as_mut();
        let Some((polled, built)) = driver.poll_lazy(lazy, || fut.as_pin_mut().map(|f| f.poll(cx)))
        else {
            // The ambient node is hard-cancelled (then the ordinary way does not poll the
            // future), or there is no frame (thread teardown): enter the ordinary way.
            driver.build(lazy.node());
            return None;
        };
        if let Some(Poll::Ready(v)) = polled {
            work.fut.set(None);
            if !built {
                driver.finish_unbuilt();
                return Some(Poll::Ready(Ok(v)));
            }
            *work.out = Some(v);
            return None;
        }
        if !built {
            return Some(Poll::Pending);
        }
        // Now an ordinary cancel scope whose future was polled and waits.
        driver.register(cx);
        (driver.step() == Step::Run).then_some(Poll::Pending)
    }

    fn is_built(&self) -> bool {
        self.driver.is_built()
    }

    fn expire(self: Pin<&mut Self>) -> Result<T, Cancelled> {
        let this = self.project();
        this.driver.finish_unbuilt();
        this.work.project().fut.set(None);
        Err(Cancelled::new(CancelReason::DeadlineExceeded))
    }

    fn set_waiting(self: Pin<&mut Self>, waiting: bool) {
        *self.project().unbuilt = if waiting {
            Unbuilt::Waiting
        } else {
            Unbuilt::No
        };
    }
}

/// A cancel scope with a timeout of `d` around `fut`: built when needed ([`Timeout`]), or
/// at once for a zero timeout (it cancels before the first poll) and one too long to wait
/// for lazily.
fn timeout_after<F: Future<Output = T>, T>(d: Duration, fut: F) -> Timeout<Run<F, T>> {
    match lazy_nanos(d) {
        Some(nanos) => Timeout::after(nanos, Run::new(Driver::unbuilt(), fut)),
        None => Timeout::built(Run::new(
            Driver::new(Node::new(Config::timeout_only(d))),
            fut,
        )),
    }
}

fn timeout_at<F: Future<Output = T>, T>(at: Instant, fut: F) -> Timeout<Run<F, T>> {
    Timeout::at(at, Run::new(Driver::unbuilt(), fut))
}

/// Runs `fut` with a timeout of `d`; on expiry the future is dropped and `None` returned.
///
/// Unlike [`tokio::time::timeout`], this is a node of the cancel tree: the timeout also
/// bounds every scope and child opened inside `fut`, they are cancelled and awaited before
/// this returns, and `current_deadline()` inside sees it. It absorbs only its own expiry: a
/// cancellation of an enclosing node passes through.
///
/// # Cancel safety
///
/// Same as [`CancelScope::run`].
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use std::time::Duration;
/// use taskscope::move_on_after;
///
/// let r = move_on_after(Duration::from_millis(10), std::future::pending::<()>()).await;
/// assert_eq!(r, None);
/// # }
/// ```
pub fn move_on_after<F: Future>(d: Duration, fut: F) -> MoveOnAfter<F, F::Output> {
    MoveOnAfter {
        timeout: timeout_after(d, fut),
    }
}

/// Like [`move_on_after`] with an absolute deadline.
pub fn move_on_at<F: Future>(at: Instant, fut: F) -> MoveOnAfter<F, F::Output> {
    MoveOnAfter {
        timeout: timeout_at(at, fut),
    }
}

pin_project! {
    /// The future of [`move_on_after`] and [`move_on_at`].
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct MoveOnAfter<F, T> {
        #[pin]
        timeout: Timeout<Run<F, T>>,
    }
}

impl<F: Future<Output = T>, T> Future for MoveOnAfter<F, T> {
    type Output = Option<T>;
    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().timeout.poll(cx).map(Result::ok)
    }
}

impl<F, T> fmt::Debug for MoveOnAfter<F, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MoveOnAfter")
            .field("run", self.timeout.inner())
            .finish()
    }
}

/// Runs `fut` with a timeout of `d`; on expiry the future is dropped and
/// `Err(Cancelled)` with [`CancelReason::DeadlineExceeded`] returned.
///
/// Like [`move_on_after`], but the expiry is an error: a broken promise.
///
/// # Cancel safety
///
/// Same as [`CancelScope::run`].
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use std::time::Duration;
/// use taskscope::fail_after;
///
/// let r = fail_after(Duration::from_secs(1), tokio::time::sleep(Duration::from_secs(100))).await;
/// assert!(r.unwrap_err().is_deadline());
/// assert_eq!(fail_after(Duration::from_secs(100), async { 7 }).await, Ok(7));
/// # }
/// ```
pub fn fail_after<F: Future>(d: Duration, fut: F) -> FailAfter<F, F::Output> {
    FailAfter {
        timeout: timeout_after(d, fut),
    }
}

/// Like [`fail_after`] with an absolute deadline.
pub fn fail_at<F: Future>(at: Instant, fut: F) -> FailAfter<F, F::Output> {
    FailAfter {
        timeout: timeout_at(at, fut),
    }
}

pin_project! {
    /// The future of [`fail_after`] and [`fail_at`].
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct FailAfter<F, T> {
        #[pin]
        timeout: Timeout<Run<F, T>>,
    }
}

impl<F: Future<Output = T>, T> Future for FailAfter<F, T> {
    type Output = Result<T, Cancelled>;
    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().timeout.poll(cx)
    }
}

impl<F, T> fmt::Debug for FailAfter<F, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FailAfter")
            .field("run", self.timeout.inner())
            .finish()
    }
}

/// Runs `fut` shielded from cancellation of the enclosing nodes.
///
/// Neither the soft nor the hard cancellation of an enclosing scope reaches the code inside
/// or the scopes opened inside: use it for cleanup that must finish (flushing, saying
/// goodbye). A hard-cancelled scope waits for its live shields before it drops its body; the
/// first await after the shield is where the cancellation lands. Bound the shielded work
/// with its own timeout ([`move_on_after`] inside the shield) if it could hang.
///
/// A shield cannot stop Rust from dropping the future that contains it (a lost `select!`
/// branch, an aborted task, a dropped scope future).
///
/// # Cancel safety
///
/// Dropping the future drops `fut`.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::time::Duration;
/// use taskscope::{is_cancelled, shield, CancelScope};
///
/// let cs = CancelScope::new().grace(Duration::from_secs(1));
/// let h = cs.handle();
/// let r = cs
///     .run(async move {
///         h.cancel(); // soft: the grace period starts
///         assert!(is_cancelled());
///         shield(async { is_cancelled() }).await // inside the shield: not cancelled
///     })
///     .await;
/// assert_eq!(r, Ok(false));
/// # }
/// ```
pub fn shield<F: Future>(fut: F) -> Shield<F, F::Output> {
    Shield {
        run: CancelScope::new().shield(true).run(fut),
    }
}

pin_project! {
    /// The future of [`shield`].
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct Shield<F, T> {
        #[pin]
        run: Run<F, T>,
    }
}

impl<F, T> fmt::Debug for Shield<F, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shield").field("run", &self.run).finish()
    }
}

impl<F: Future<Output = T>, T> Future for Shield<F, T> {
    type Output = T;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        self.project().run.poll(cx).map(|r| match r {
            Ok(v) => v,
            Err(_) => unreachable!("a shield has no handle and no deadline: it is never cancelled"),
        })
    }
}
