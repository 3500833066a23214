//! Scopes (nurseries): [`scope`], [`ScopeBuilder`], the body's [`Scope`], the `'static`
//! [`ScopeHandle`], and the [`ScopeFuture`] that drives them.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::Instant;

use crate::background;
use crate::cancel_scope::CancelHandle;
use crate::child::{self, TaskHandle};
use crate::driver::{Driver, Step};
use crate::error::{CancelReason, Cancelled, Errors, SpawnError, TrySpawnError};
use crate::local::{
    self, Accepts, FailsFast, Kind, Local, LocalChild, LocalHandle, Locals, Queue, Sendable,
    Supervisor,
};
use crate::parent::{Hold, Parent};
use crate::permit::{HandleReserve, Reserve};
use crate::snapshot::TreeSnapshot;
use crate::start::{self, Ready, Start};
use crate::supervise::{self, Supervised};
use crate::sync::Arc;
use crate::tree::outcome::{Payload, Recorded, Slot};
use crate::tree::{Config, Node};
use crate::watch::{StuckReport, Watch, Watches};

/// Runs `body` in a new scope and waits for it and every child it spawned.
///
/// The body gets a [`Scope`] to spawn children with. The returned future completes only
/// after the body and every child (spawned, blocking, and those of nested scopes whose
/// futures were dropped) have finished, on every path: success, error, panic, cancel,
/// deadline. Returning early from the body does not cancel the children; the scope waits.
///
/// - The first error (of a child or the body) cancels the scope with
///   [`CancelReason::ChildFailed`] and is returned once everything finished. Errors that
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
/// hard-cancels its children with [`CancelReason::ScopeDropped`] and drops the body at once.
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
/// payload for the child's [`TaskHandle`], so the scope resumes with a message that says
/// so. Deadlines need a runtime with the time driver enabled (`enable_time`).
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let total = taskscope_core::scope(async |s| {
///     let a = s.spawn(async { Ok::<_, std::io::Error>(1) });
///     let b = s.spawn(async { Ok(2) });
///     Ok(a.await? + b.await?)
/// })
/// .await?;
/// assert_eq!(total, 3);
/// # Ok(())
/// # }
/// ```
pub fn scope<'env, F, Fut, T, E>(body: F) -> ScopeFuture<'env, Fut>
where
    F: FnOnce(Scope<'env, E>) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: From<Cancelled> + 'static,
{
    ScopeBuilder::new().run(body)
}

/// Fail fast (the default): the scope returns its first error.
#[derive(Debug, Clone, Copy, Default)]
pub struct FailFast;

/// Collecting mode: the scope returns every error, in order, as [`Errors`].
#[derive(Debug, Clone, Copy, Default)]
pub struct CollectErrors;

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::FailFast {}
    impl Sealed for super::CollectErrors {}
    impl<T, E> Sealed for Result<T, E> {}
}

/// The body's output: a `Result`. Lets the scope future name `T` and `E` as projections of
/// the body future's output instead of as type parameters of its own.
pub trait BodyResult: sealed::Sealed {
    /// The value of a successful body.
    type Ok;
    /// The scope's error type.
    type Err;
    #[doc(hidden)]
    fn into_result(self) -> Result<Self::Ok, Self::Err>;
}

impl<T, E> BodyResult for Result<T, E> {
    type Ok = T;
    type Err = E;
    fn into_result(self) -> Self {
        self
    }
}

/// How a scope reports errors: [`FailFast`] or [`CollectErrors`].
///
/// Its impls have no bounds on `T` and `E`, and the scope future's `Future` impl names
/// them only as projections of the body's output: proving that a scope future is a `Future`
/// (and `Send`) never equates two independently erased lifetimes inside `E` (a
/// `Box<dyn Error + Send + Sync>`), so rustc's higher-ranked inference cannot fail on it when
/// the scope is passed through generic `async fn`s inside spawned tasks.
pub trait Mode<R: BodyResult>: sealed::Sealed {
    /// What the scope's future resolves to.
    type Output;
    #[doc(hidden)]
    const COLLECT: bool;
    /// `Err` holds the first error and the others, in order.
    #[doc(hidden)]
    fn output(r: Outcome<R::Ok, R::Err>) -> Self::Output;
}

/// A scope's result before its error mode shapes it: the value, or the first error and the
/// others in order.
#[doc(hidden)]
pub type Outcome<T, E> = Result<T, (E, Vec<E>)>;

impl<T, E> Mode<Result<T, E>> for FailFast {
    type Output = Result<T, E>;
    const COLLECT: bool = false;
    fn output(r: Outcome<T, E>) -> Result<T, E> {
        r.map_err(|(first, _)| first)
    }
}

impl<T, E> Mode<Result<T, E>> for CollectErrors {
    type Output = Result<T, Errors<E>>;
    const COLLECT: bool = true;
    fn output(r: Outcome<T, E>) -> Result<T, Errors<E>> {
        r.map_err(|(first, rest)| {
            let mut all = Vec::with_capacity(1 + rest.len());
            all.push(first);
            all.extend(rest);
            Errors::new(all)
        })
    }
}

/// What the scope future needs to know about `E`, captured where `E`'s bounds are proven
/// (at construction), so that its `Future` impl needs none.
struct ErrorKind<E> {
    from_cancelled: fn(Cancelled) -> E,
    downcast: fn(Payload) -> Option<E>,
}

impl<E> Clone for ErrorKind<E> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<E> Copy for ErrorKind<E> {}

impl<E: 'static> ErrorKind<E> {
    fn new(from_cancelled: fn(Cancelled) -> E) -> Self {
        ErrorKind {
            from_cancelled,
            downcast: |p| p.downcast::<E>().ok().map(|e| *e),
        }
    }
}

/// Configures a scope: name, timeout or deadline, grace period, error mode.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use std::time::Duration;
/// use taskscope_core::{CancelReason, Cancelled, Scope};
///
/// let r: Result<(), Cancelled> = Scope::builder()
///     .name("fetch")
///     .timeout(Duration::from_secs(2))
///     .run(async |s| {
///         s.spawn(async {
///             tokio::time::sleep(Duration::from_secs(60)).await;
///             Ok(())
///         });
///         Ok(())
///     })
///     .await;
/// assert_eq!(r.unwrap_err().reason(), CancelReason::DeadlineExceeded);
/// # }
/// ```
#[must_use = "a builder does nothing until `run` is called and awaited"]
pub struct ScopeBuilder<M = FailFast, K = Sendable> {
    config: Config,
    watches: Watches,
    /// Opened under an explicit parent: counted there from [`ScopeBuilder::parent`] on.
    hold: Option<Hold>,
    _mode: PhantomData<(M, K)>,
}

impl<M, K> fmt::Debug for ScopeBuilder<M, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScopeBuilder")
            .field("config", &self.config)
            .field("watches", &self.watches)
            .field("explicit_parent", &self.hold.is_some())
            .finish()
    }
}

impl Default for ScopeBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ScopeBuilder {
    /// A builder with no name, no deadline, no grace period, failing fast.
    pub fn new() -> Self {
        ScopeBuilder {
            config: Config::default(),
            watches: Watches::default(),
            hold: None,
            _mode: PhantomData,
        }
    }
}

impl<K> ScopeBuilder<FailFast, K> {
    /// Return every error in order ([`Errors`]) instead of only the first.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use std::time::Duration;
    /// use taskscope_core::{cancelled, Cancelled, CancelReason, Scope};
    ///
    /// let r = Scope::builder()
    ///     .grace(Duration::from_secs(1))
    ///     .collect_errors()
    ///     .run(async |s| {
    ///         s.spawn(async { Err::<(), _>(Cancelled::new(CancelReason::Shutdown)) });
    ///         s.spawn(async {
    ///             cancelled().await; // fails again while cleaning up
    ///             Err::<(), _>(Cancelled::new(CancelReason::Explicit))
    ///         });
    ///         Ok(())
    ///     })
    ///     .await;
    /// let reasons: Vec<_> = r.unwrap_err().iter().map(|e| e.reason()).collect();
    /// assert_eq!(reasons, [CancelReason::Shutdown, CancelReason::Explicit]);
    /// # }
    /// ```
    pub fn collect_errors(self) -> ScopeBuilder<CollectErrors, K> {
        ScopeBuilder {
            config: self.config,
            watches: self.watches,
            hold: self.hold,
            _mode: PhantomData,
        }
    }
}

impl<M> ScopeBuilder<M, Sendable> {
    /// A scope whose local children ([`Scope::spawn_local`]) need not be `Send`: they may
    /// hold an `Rc` or a `RefCell` borrow. The scope future is then `!Send`: run it on a
    /// current-thread runtime, inside a `LocalSet`, or in any `!Send` future.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use std::cell::RefCell;
    /// use std::rc::Rc;
    /// use taskscope_core::{Cancelled, Scope};
    ///
    /// let log = Rc::new(RefCell::new(Vec::new()));
    /// let r: Result<(), Cancelled> = Scope::builder()
    ///     .local()
    ///     .run(async |s| {
    ///         for i in 0..3 {
    ///             let log = log.clone();
    ///             s.spawn_local(async move {
    ///                 tokio::task::yield_now().await;
    ///                 log.borrow_mut().push(i);
    ///                 Ok(())
    ///             });
    ///         }
    ///         Ok(())
    ///     })
    ///     .await;
    /// assert!(r.is_ok());
    /// assert_eq!(log.borrow().len(), 3);
    /// # }
    /// ```
    pub fn local(self) -> ScopeBuilder<M, Local> {
        ScopeBuilder {
            config: self.config,
            watches: self.watches,
            hold: self.hold,
            _mode: PhantomData,
        }
    }

    /// A supervising scope: a child's error does not cancel the scope or its siblings; the
    /// body's [`Scope::spawn`](Scope#method.spawn-1) returns a [`Supervised`] handle that
    /// gives the child's own `Result`. An error whose handle was dropped is returned by the
    /// scope when it ends (the first one, or all with
    /// [`collect_errors`](ScopeBuilder::collect_errors)), so none is lost. The body's own
    /// error, a panic, a deadline and `cancel()` still end the scope as usual. Local,
    /// blocking and limited-`try_spawn` children are for failing-fast scopes: nest one
    /// inside if needed.
    pub fn supervise(self) -> ScopeBuilder<M, Supervisor> {
        ScopeBuilder {
            config: self.config,
            watches: self.watches,
            hold: self.hold,
            _mode: PhantomData,
        }
    }
}

impl<M, K: Kind> ScopeBuilder<M, K> {
    /// A name for diagnostics (tracing events, debug output).
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.config.name = Some(name.into());
        self
    }

    /// Cancels the scope `d` after it is entered (first poll). The scope then returns
    /// `Err(Cancelled)` with [`CancelReason::DeadlineExceeded`] unless it had already failed
    /// with a real error. `Duration::MAX` never fires.
    pub fn timeout(mut self, d: Duration) -> Self {
        self.config.timeout = Some(self.config.timeout.map_or(d, |t| t.min(d)));
        self
    }

    /// Cancels the scope at `at` (see [`timeout`](Self::timeout)).
    pub fn deadline(mut self, at: Instant) -> Self {
        self.config.deadline = Some(self.config.deadline.map_or(at, |d| d.min(at)));
        self
    }

    /// Opens the scope under `parent` instead of the ambient node: a child of that scope,
    /// wherever (in whichever task) this scope runs.
    ///
    /// The scope is counted by the parent from this call on, as a spawned child would be:
    /// the parent does not return before this scope's future finished or was dropped (one
    /// never run included: dropping the builder or the future releases it). It is cancelled
    /// when the parent is (reason [`CancelReason::ParentCancelled`] when the parent's hard
    /// cancel ends it), its deadline is at most the parent's, and children it leaves behind
    /// when its future is dropped are awaited by the parent. Since no node future further
    /// out in its task belongs to the tree, it catches the parent's hard cancel itself.
    ///
    /// Scopes opened under a parent do not count toward the parent's
    /// [`limit`](Self::limit).
    ///
    /// # Errors
    ///
    /// [`SpawnError::Closed`] if the parent finished: it can no longer await anything.
    ///
    /// # Examples
    ///
    /// See [`Parent`].
    pub fn parent(mut self, parent: impl Into<Parent>) -> Result<Self, SpawnError> {
        self.hold = Some(parent.into().hold()?);
        Ok(self)
    }

    /// Time between the scope's own soft cancel (children see `cancelled()` and may clean
    /// up) and the hard one (whatever still runs is dropped). Default zero.
    pub fn grace(mut self, grace: Duration) -> Self {
        self.config.grace = grace;
        self
    }

    /// At most `n` spawned children run at once. Further children wait, in the order they
    /// were spawned, before their first poll; [`Scope::try_spawn`] reports the limit instead
    /// of queueing, and [`Scope::reserve`] waits for a free slot (back-pressure). A waiting
    /// child counts as running for the scope's exit and is cancelled like the others.
    /// Blocking children are not limited (the blocking pool bounds them).
    ///
    /// # Panics
    ///
    /// If `n` is zero (no child could ever run).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use taskscope_core::{Cancelled, Scope};
    ///
    /// let r: Result<u32, Cancelled> = Scope::builder()
    ///     .limit(2)
    ///     .run(async |s| {
    ///         let hs: Vec<_> = (1..=5).map(|i| s.spawn(async move { Ok(i) })).collect();
    ///         let mut sum = 0;
    ///         for h in hs {
    ///             sum += h.await?; // at most two run at any time
    ///         }
    ///         Ok(sum)
    ///     })
    ///     .await;
    /// assert_eq!(r, Ok(15));
    /// # }
    /// ```
    #[track_caller]
    pub fn limit(mut self, n: usize) -> Self {
        assert!(n > 0, "taskscope: a scope's limit must be at least 1");
        self.config.limit = Some(n);
        self
    }

    /// Cancels the scope with `reason` when `trigger` completes (unless it was cancelled or
    /// finished before): an external shutdown signal, a client that went away, a token of
    /// another library. The scope future polls `trigger` while the scope runs and drops it
    /// once the scope is cancelled or done. Several triggers may be given.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use taskscope_core::{CancelReason, Cancelled, Scope};
    /// use tokio::sync::oneshot;
    ///
    /// let (stop, stopped) = oneshot::channel::<()>();
    /// let r: Result<(), Cancelled> = Scope::builder()
    ///     .cancel_when(async { let _ = stopped.await; }, CancelReason::Shutdown)
    ///     .run(async |s| {
    ///         s.spawn(std::future::pending::<Result<(), Cancelled>>()); // until cancelled
    ///         let _ = stop.send(());
    ///         std::future::pending::<()>().await;
    ///         Ok(())
    ///     })
    ///     .await;
    /// assert_eq!(r.unwrap_err().reason(), CancelReason::Shutdown);
    /// # }
    /// ```
    pub fn cancel_when(
        mut self,
        trigger: impl Future<Output = ()> + Send + 'static,
        reason: CancelReason,
    ) -> Self {
        self.watches.add_trigger(trigger, reason);
        self
    }

    /// Cancels the scope ([`CancelReason::Explicit`]) when `token` is cancelled: a scope that
    /// obeys the `CancellationToken` of code built on tokio-util. Feature `tokio-util`.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use taskscope_core::{CancelReason, Cancelled, Scope};
    /// use tokio_util::sync::CancellationToken;
    ///
    /// let token = CancellationToken::new();
    /// let r: Result<(), Cancelled> = Scope::builder()
    ///     .cancel_on(token.clone())
    ///     .run(async |_s| {
    ///         token.cancel(); // somebody else's shutdown
    ///         std::future::pending::<()>().await;
    ///         Ok(())
    ///     })
    ///     .await;
    /// assert_eq!(r.unwrap_err().reason(), CancelReason::Explicit);
    /// # }
    /// ```
    #[cfg(feature = "tokio-util")]
    pub fn cancel_on(self, token: tokio_util::sync::CancellationToken) -> Self {
        let (trigger, reason) = crate::interop::trigger(token);
        self.cancel_when(trigger, reason)
    }

    /// Cancels the scope with [`CancelReason::Shutdown`] on Ctrl-C or, on Unix, SIGTERM (see
    /// [`shutdown_signal`](crate::shutdown_signal)): the scope's children see `cancelled()`
    /// and get the [`grace`](Self::grace) period to finish; what is left is dropped and the
    /// scope returns `Err(Cancelled)` with reason `Shutdown`. For a program's root scope.
    /// Feature `signal`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use taskscope_core::{Cancelled, Scope};
    ///
    /// #[tokio::main]
    /// async fn main() -> Result<(), Cancelled> {
    ///     Scope::builder()
    ///         .name("main")
    ///         .grace(Duration::from_secs(10))
    ///         .shutdown_on_signal()
    ///         .run(async |s| {
    ///             // s.spawn(serve(listener)) ...
    ///             # let _ = s;
    ///             Ok(())
    ///         })
    ///         .await
    /// }
    /// ```
    #[cfg(feature = "signal")]
    pub fn shutdown_on_signal(self) -> Self {
        self.cancel_when(crate::shutdown::shutdown_signal(), CancelReason::Shutdown)
    }

    /// Calls `report` with a [`TreeSnapshot`] of the scope if it has not finished `after` it
    /// was cancelled (by itself or an ancestor): the children that hold it up, their names,
    /// states and tasks. Once per scope. The answer to "why does my program hang on
    /// shutdown": a child that ignores cancellation (a loop without an await, a blocking
    /// call, a shield that does not end).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use std::sync::{Arc, Mutex};
    /// use std::time::Duration;
    /// use taskscope_core::{shield, Cancelled, Scope};
    ///
    /// let seen = Arc::new(Mutex::new(String::new()));
    /// let out = seen.clone();
    /// let r: Result<(), Cancelled> = Scope::builder()
    ///     .name("server")
    ///     .timeout(Duration::from_secs(1))
    ///     .on_stuck(Duration::from_secs(5), move |tree| *out.lock().unwrap() = tree.to_string())
    ///     .run(async |s| {
    ///         s.spawn(async {
    ///             shield(tokio::time::sleep(Duration::from_secs(60))).await; // ignores the cancel
    ///             Ok(())
    ///         });
    ///         Ok(())
    ///     })
    ///     .await;
    /// assert!(r.is_err());
    /// assert!(seen.lock().unwrap().starts_with("scope \"server\" [dropping: deadline exceeded]"));
    /// # }
    /// ```
    pub fn on_stuck(
        mut self,
        after: Duration,
        report: impl Fn(&TreeSnapshot) + Send + Sync + 'static,
    ) -> Self {
        self.watches.stuck = Some(StuckReport {
            after,
            report: Arc::new(report),
        });
        self
    }

    /// [`on_stuck`](Self::on_stuck) with a `tracing` warning that names the scope and
    /// carries the rendered tree.
    #[cfg(feature = "tracing")]
    pub fn warn_if_stuck(self, after: Duration) -> Self {
        self.on_stuck(after, move |tree| {
            let scope = tree
                .nodes()
                .first()
                .and_then(|n| n.name.as_deref())
                .unwrap_or("")
                .to_owned();
            tracing::warn!(
                scope,
                "scope not finished {after:?} after it was cancelled; still running:\n{tree}"
            );
        })
    }

    /// Runs `body` in the configured scope; see [`scope`].
    ///
    /// The closure is called right away, to build the body's future; an async closure runs
    /// nothing until the scope is awaited. (Building the future eagerly keeps the closure's
    /// type out of the future's `Future` impl, so a scope future can be passed to any generic
    /// `async fn` inside a spawned task without rustc's higher-ranked inference failing.)
    pub fn run<'env, F, Fut, T, E>(self, body: F) -> ScopeFuture<'env, Fut, M, K>
    where
        F: FnOnce(Scope<'env, E, K>) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: From<Cancelled> + 'static,
        M: Mode<Result<T, E>>,
    {
        self.run_with(body, E::from)
    }

    /// [`run`](Self::run) with the conversion from [`Cancelled`] given explicitly; the
    /// macros use it so that a missing `From<Cancelled>` is reported on the user's error type.
    #[doc(hidden)]
    pub fn run_with<'env, F, Fut, T, E>(
        self,
        body: F,
        from_cancelled: fn(Cancelled) -> E,
    ) -> ScopeFuture<'env, Fut, M, K>
    where
        F: FnOnce(Scope<'env, E, K>) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: 'static,
        M: Mode<Result<T, E>>,
    {
        let mut config = self.config;
        config.collect = M::COLLECT;
        config.kind = crate::snapshot::NodeKind::Scope;
        let node = Node::new(config);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let _ = node.runtime.set(rt);
        }
        let locals = Locals::new();
        let body = body(Scope::new(node.clone(), locals.queue.clone()));
        ScopeFuture {
            watch: self.watches.into_watch(),
            kind: ErrorKind::new(from_cancelled),
            body: Some(body),
            locals,
            background: None,
            out: BodyOut::Running,
            driver: Driver::with_hold(node, self.hold),
            _marker: PhantomData,
        }
    }
}

/// The scope as its body sees it: spawn children, cancel, get a `'static` handle.
///
/// `'env` ties it to the scope's call, so it cannot be moved into a `'static` child; use
/// [`handle`](Scope::handle) for that (nursery passing). It is cheap to clone: a local
/// child that spawns further local children takes a clone.
///
/// `K` says which local children the scope accepts: `Send` ones ([`Sendable`], the default)
/// or any ([`Local`], see [`ScopeBuilder::local`]).
pub struct Scope<'env, E, K: Kind = Sendable> {
    node: Arc<Node>,
    queue: Arc<Queue<'env, K>>,
    _marker: PhantomData<(Invariant<'env>, fn() -> E)>,
}

impl<E, K: Kind> Clone for Scope<'_, E, K> {
    fn clone(&self) -> Self {
        Scope {
            node: self.node.clone(),
            queue: self.queue.clone(),
            _marker: PhantomData,
        }
    }
}

/// Makes `'env` invariant (neither shortened nor lengthened by subtyping).
type Invariant<'env> = fn(&'env ()) -> &'env ();

impl Scope<'static, Cancelled> {
    /// A [`ScopeBuilder`]: `Scope::builder().name("x").timeout(d).run(async |s| ..)`.
    pub fn builder() -> ScopeBuilder {
        ScopeBuilder::new()
    }
}

impl<E, K: Kind> fmt::Debug for Scope<'_, E, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_node(f, "Scope", &self.node)
    }
}

fn debug_node(f: &mut fmt::Formatter<'_>, what: &str, node: &Node) -> fmt::Result {
    let inner = node.lock();
    f.debug_struct(what)
        .field("name", &inner.name)
        .field("reason", &inner.reason)
        .field("deadline", &inner.deadline)
        .field("closed", &node.is_closed())
        .finish()
}

#[track_caller]
fn expect_spawned<T>(r: Result<TaskHandle<T>, SpawnError>) -> TaskHandle<T> {
    match r {
        Ok(h) => h,
        Err(e) => panic!("taskscope: cannot spawn: {e}"),
    }
}

impl<'env, E, K: Kind> Scope<'env, E, K> {
    fn new(node: Arc<Node>, queue: Arc<Queue<'env, K>>) -> Self {
        Scope {
            node,
            queue,
            _marker: PhantomData,
        }
    }
}

impl<'env, E, K: FailsFast> Scope<'env, E, K> {
    /// Runs `fut` as a local child: polled inside the scope's own future, concurrently with
    /// the body and the other local children but not in parallel, under this scope's node.
    ///
    /// Unlike [`spawn`](Scope::spawn), `fut` may borrow anything that outlives the
    /// `scope(..)` call, and in a [`Local`] scope ([`ScopeBuilder::local`]) it need not be
    /// `Send`. It follows the scope's rules like a spawned child: an `Err` fails the scope
    /// (its handle then says `ChildFailed`), a panic is re-raised by the scope, a cancelled
    /// scope never starts it, its `cancelled()` and deadlines are the scope's, it counts
    /// toward the scope's [`limit`](ScopeBuilder::limit), and the scope returns only after it
    /// finished. A local child can spawn further local children through a clone of the
    /// `Scope`. Local children need no runtime of their own.
    ///
    /// In a default scope, a `!Send` local child (one holding an `Rc` across an await) is a
    /// compile error saying that the future "cannot be sent between threads safely": build the
    /// scope with [`ScopeBuilder::local`] instead.
    ///
    /// Concurrency, parallelism, borrowing: pick two. Spawned children run in parallel and
    /// must be `'static`; local children borrow and share one task (a CPU-bound local child
    /// holds up the others and the body). Prefer local children for I/O-bound fan-out over
    /// borrowed data.
    ///
    /// # Drop
    ///
    /// Local children are part of the scope future: dropping it drops them at once (their
    /// handles resolve to `ParentCancelled`). `mem::forget` of the scope future is sound: it
    /// leaks them, nothing dangles.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use taskscope_core::{scope, Cancelled};
    ///
    /// let pages = vec![String::from("a"), String::from("bb"), String::from("ccc")];
    /// let total: Result<usize, Cancelled> = scope(async |s| {
    ///     // The children borrow `pages` from the caller: no `Arc`, no `clone`.
    ///     let lens: Vec<_> = pages
    ///         .iter()
    ///         .map(|p| s.spawn_local(async move { Ok(p.len()) }))
    ///         .collect();
    ///     let mut total = 0;
    ///     for h in lens {
    ///         total += h.await?;
    ///     }
    ///     Ok(total)
    /// })
    /// .await;
    /// assert_eq!(total, Ok(6));
    /// # }
    /// ```
    ///
    /// # Panics
    ///
    /// If the scope already finished (the `Scope` escaped its body through the return
    /// value).
    #[track_caller]
    pub fn spawn_local<F, T>(&self, fut: F) -> LocalHandle<T>
    where
        F: Future<Output = Result<T, E>> + 'env,
        T: 'env,
        E: Send + 'static,
        K: Accepts<'env, LocalChild<F, T>>,
    {
        match local::spawn(&self.queue, &self.node, fut) {
            Ok(h) => h,
            Err(e) => panic!("taskscope: cannot spawn a local child: {e}"),
        }
    }

    /// Spawns `fut` as a child: it runs in parallel on the runtime, under this scope's node.
    ///
    /// Returns the child's [`TaskHandle`]. An `Err` from the child fails the scope (see
    /// [`scope`]); its handle then resolves to `Err(Cancelled)` with reason `ChildFailed`.
    /// Spawning into a cancelled scope does not start the child: it is dropped without
    /// being polled and its handle resolves to `ParentCancelled`.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use taskscope_core::{scope, CancelReason, Cancelled};
    ///
    /// let r: Result<u32, Cancelled> = scope(async |s| {
    ///     let winner = s.spawn(async { Ok(1) });
    ///     let loser = s.spawn(async {
    ///         std::future::pending::<()>().await;
    ///         Ok(2)
    ///     });
    ///     let v = winner.await?;
    ///     loser.cancel(); // this child alone; the scope goes on
    ///     assert_eq!(loser.await.unwrap_err().reason(), CancelReason::Explicit);
    ///     Ok(v)
    /// })
    /// .await;
    /// assert_eq!(r, Ok(1));
    /// # }
    /// ```
    ///
    /// # Panics
    ///
    /// If the scope already finished (the `Scope` escaped its body through the return
    /// value) or was entered outside a Tokio runtime. Use [`ScopeHandle::spawn`] for a
    /// `Result` instead.
    #[track_caller]
    pub fn spawn<F, T>(&self, fut: F) -> TaskHandle<T>
    where
        F: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        expect_spawned(child::spawn(&self.node, fut))
    }

    /// Spawns the blocking closure `f` as a child on the runtime's blocking pool.
    ///
    /// A blocking child cannot be dropped: the scope awaits it even when cancelled. It
    /// sees cancellation through [`is_cancelled`](crate::is_cancelled) and should return
    /// early when that turns `true`.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use taskscope_core::{is_cancelled, scope, Cancelled};
    ///
    /// let r: Result<u64, Cancelled> = scope(async |s| {
    ///     let sum = s.spawn_blocking(|| {
    ///         let mut sum = 0u64;
    ///         for i in 0..1_000_000 {
    ///             if i % 10_000 == 0 && is_cancelled() {
    ///                 break; // stop early when the scope is cancelled
    ///             }
    ///             sum += i;
    ///         }
    ///         Ok(sum)
    ///     });
    ///     sum.await
    /// })
    /// .await;
    /// assert_eq!(r, Ok(499_999_500_000));
    /// # }
    /// ```
    ///
    /// # Panics
    ///
    /// As [`spawn`](Scope::spawn).
    #[track_caller]
    pub fn spawn_blocking<Fun, T>(&self, f: Fun) -> TaskHandle<T>
    where
        Fun: FnOnce() -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        expect_spawned(child::spawn_blocking(&self.node, f))
    }

    /// Spawns `fut` only if it can start right away: in a scope with a limit, a slot must be
    /// free and no other child waiting. Otherwise the future is given back in the error.
    ///
    /// # Errors
    ///
    /// [`TrySpawnError::AtLimit`] at the limit; `Closed`/`NoRuntime` as for
    /// [`ScopeHandle::spawn`].
    pub fn try_spawn<F, T>(&self, fut: F) -> Result<TaskHandle<T>, TrySpawnError<F>>
    where
        F: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        child::try_spawn(&self.node, fut)
    }

    /// Spawns `fut` as a background child: a service the scope's other work uses (a
    /// heartbeat, a cache refresher, a log shipper) that runs until the body, the local
    /// children and every other child finished, is then cancelled with
    /// [`CancelReason::ScopeDone`] (softly: it sees `cancelled()` and gets the scope's grace
    /// period to stop), and is awaited like any child.
    ///
    /// Its error fails the scope like any child's, unless it arrives after the background
    /// children were cancelled (a service that stops with `checkpoint()?` does not fail the
    /// scope). Background children are not counted toward the scope's limit.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use std::time::Duration;
    /// use taskscope_core::{cancelled, scope, CancelReason, Cancelled};
    ///
    /// let r: Result<u32, Cancelled> = scope(async |s| {
    ///     let beats = s.spawn_background(async {
    ///         let mut beats = 0;
    ///         loop {
    ///             tokio::select! {
    ///                 why = cancelled() => {
    ///                     assert_eq!(why.reason(), CancelReason::ScopeDone);
    ///                     return Ok(beats);
    ///                 }
    ///                 _ = tokio::time::sleep(Duration::from_secs(1)) => beats += 1,
    ///             }
    ///         }
    ///     });
    ///     s.spawn(async {
    ///         tokio::time::sleep(Duration::from_millis(3500)).await; // the real work
    ///         Ok(())
    ///     });
    ///     // Not awaited here: the scope cancels the heartbeat after the work is done.
    ///     drop(beats);
    ///     Ok(0)
    /// })
    /// .await;
    /// assert_eq!(r, Ok(0));
    /// # }
    /// ```
    ///
    /// # Panics
    ///
    /// As [`spawn`](Scope::spawn).
    #[track_caller]
    pub fn spawn_background<F, T>(&self, fut: F) -> TaskHandle<T>
    where
        F: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        expect_spawned(background::spawn(&self.node, |bg| child::spawn(bg, fut)))
    }

    /// Starts a child and waits until it is ready: trio's `nursery.start`.
    ///
    /// `f` gets a [`Ready`]; the child calls [`Ready::started`] with a value once it is
    /// ready (a server bound its port, a connection is up) and goes on running as a child of
    /// this scope. `start` returns that value. Until `started`:
    ///
    /// - an error of the child comes out of `start` (it does not fail the scope), and so does
    ///   a panic (resumed in the caller);
    /// - a child that returns without calling `started` makes `start` fail with
    ///   [`CancelReason::NotStarted`] (converted into `E`);
    /// - cancelling the caller (or dropping the `start` future) cancels the child;
    /// - the pending child keeps the scope open, like any child.
    ///
    /// After `started`, the child is an ordinary child: its error fails the scope, the scope
    /// awaits it. `started` takes the `Ready` by value, so it cannot be called twice.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// use taskscope_core::scope;
    /// use tokio::sync::oneshot;
    ///
    /// scope(async |s| {
    ///     let (stop_tx, stop_rx) = oneshot::channel::<()>();
    ///     // A "server" that is ready once it has a port, then serves until told to stop.
    ///     let port: u16 = s
    ///         .start(|ready| async move {
    ///             ready.started(8080);
    ///             let _ = stop_rx.await;
    ///             Ok(())
    ///         })
    ///         .await?;
    ///     assert_eq!(port, 8080);
    ///     let _ = stop_tx.send(());
    ///     Ok(())
    /// })
    /// .await
    /// # }
    /// ```
    ///
    /// # Panics
    ///
    /// As [`spawn`](Scope::spawn); awaiting resumes a panic of the child before `started`.
    #[track_caller]
    pub fn start<Fun, Fut, V>(&self, f: Fun) -> Start<V, E>
    where
        Fun: FnOnce(Ready<V>) -> Fut,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        V: Send + 'static,
        E: From<Cancelled> + Send + 'static,
    {
        match start::start(&self.node, f) {
            Ok(s) => s,
            Err(e) => panic!("taskscope: cannot spawn: {e}"),
        }
    }

    /// Waits until a slot of the scope's limit is free and returns it as a [`SpawnPermit`](crate::SpawnPermit)
    /// (back-pressure for producers, instead of queueing children without bound).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe; see [`Reserve`].
    pub fn reserve(&self) -> Reserve<E> {
        Reserve::new(self.node.clone())
    }
}

impl<'env, E> Scope<'env, E, Supervisor> {
    /// Spawns `fut` as a supervised child: it runs in parallel like a [`spawn`](Scope::spawn)ed
    /// child, but its error does not cancel the scope or its siblings: awaiting its
    /// [`Supervised`] handle gives the child's own `Result<T, E>`. An error nobody takes from
    /// the handle (it was dropped) is returned by the scope when it ends, never lost.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use std::io;
    /// use taskscope_core::Scope;
    ///
    /// let r: io::Result<usize> = Scope::builder()
    ///     .supervise()
    ///     .run(async |s| {
    ///         let bad = s.spawn(async { Err::<u32, _>(io::Error::other("connection reset")) });
    ///         let good = s.spawn(async {
    ///             tokio::task::yield_now().await;
    ///             Ok(7)
    ///         });
    ///         // The failure did not cancel `good`; it is ours to handle.
    ///         assert_eq!(bad.await.unwrap_err().to_string(), "connection reset");
    ///         Ok(good.await? as usize)
    ///     })
    ///     .await;
    /// assert_eq!(r.unwrap(), 7);
    /// # }
    /// ```
    ///
    /// # Panics
    ///
    /// As [`Scope::spawn`]. A panic of the child is re-raised by the scope as usual.
    #[track_caller]
    pub fn spawn<F, T>(&self, fut: F) -> Supervised<T, E>
    where
        F: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: From<Cancelled> + Send + 'static,
    {
        match supervise::spawn(&self.node, fut) {
            Ok(h) => h,
            Err(e) => panic!("taskscope: cannot spawn: {e}"),
        }
    }
}

impl<'env, E, K: Kind> Scope<'env, E, K> {
    /// A `'static`, clonable handle to this scope, to spawn from children (nursery
    /// passing) or cancel the scope from anywhere.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use taskscope_core::{scope, Cancelled};
    ///
    /// let r: Result<(), Cancelled> = scope(async |s| {
    ///     let h = s.handle();
    ///     s.spawn(async move {
    ///         // A child spawns a sibling: it is awaited by the same scope.
    ///         h.spawn(async { Ok(()) }).expect("the scope is running");
    ///         Ok(())
    ///     });
    ///     Ok(())
    /// })
    /// .await;
    /// assert!(r.is_ok());
    /// # }
    /// ```
    pub fn handle(&self) -> ScopeHandle<E, K> {
        ScopeHandle {
            node: self.node.clone(),
            _marker: PhantomData,
        }
    }

    /// Cancels the scope and everything below it ([`CancelReason::Explicit`]).
    ///
    /// The body and the children see the soft signal at once and are dropped after the
    /// grace period (default zero) unless they finish first. If the body already
    /// completed, its value is still returned.
    pub fn cancel(&self) {
        self.node.cancel(CancelReason::Explicit, false);
    }

    /// `true` once the scope (or an ancestor) was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.node.state().is_soft()
    }

    /// A [`CancelHandle`] to this scope's node: move its deadline, ask whether it was
    /// cancelled or caught its cancellation.
    pub fn cancel_handle(&self) -> CancelHandle {
        CancelHandle::from_node(self.node.clone())
    }

    /// A copy of the cancel tree below (and including) this scope: see [`TreeSnapshot`].
    pub fn snapshot(&self) -> TreeSnapshot {
        TreeSnapshot::of(&self.node)
    }

    /// A tokio-util `CancellationToken` cancelled when this scope is (by itself or an
    /// ancestor, at the soft signal), for code that takes a token. Feature `tokio-util`.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use taskscope_core::{Cancelled, scope};
    ///
    /// let r: Result<(), Cancelled> = scope(async |s| {
    ///     let token = s.cancellation_token();
    ///     // A tokio-util style worker that only knows tokens:
    ///     s.spawn(async move {
    ///         token.cancelled().await;
    ///         Ok(())
    ///     });
    ///     s.cancel();
    ///     Ok(())
    /// })
    /// .await;
    /// assert!(r.is_ok());
    /// # }
    /// ```
    #[cfg(feature = "tokio-util")]
    pub fn cancellation_token(&self) -> tokio_util::sync::CancellationToken {
        crate::interop::token(&self.node)
    }
}

/// A `'static`, clonable handle to a scope: spawn into it from anywhere, or cancel it.
///
/// Spawning fails with [`SpawnError::Closed`] once the scope finished; while the scope runs
/// (also while it waits for its last children) a spawned child is accepted and awaited.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use taskscope_core::{scope, Cancelled, SpawnError};
///
/// let mut escaped = None;
/// let r: Result<(), Cancelled> = scope(async |s| {
///     escaped = Some(s.handle());
///     Ok(())
/// })
/// .await;
/// assert!(r.is_ok());
/// let late = escaped.unwrap().spawn(async { Ok::<(), Cancelled>(()) });
/// assert_eq!(late.unwrap_err(), SpawnError::Closed);
/// # }
/// ```
pub struct ScopeHandle<E, K = Sendable> {
    node: Arc<Node>,
    _marker: PhantomData<(fn() -> E, K)>,
}

impl<E, K> Clone for ScopeHandle<E, K> {
    fn clone(&self) -> Self {
        ScopeHandle {
            node: self.node.clone(),
            _marker: PhantomData,
        }
    }
}

impl<E, K> fmt::Debug for ScopeHandle<E, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_node(f, "ScopeHandle", &self.node)
    }
}

impl<E> ScopeHandle<E, Supervisor> {
    /// Spawns `fut` as a supervised child of the scope; see
    /// [`Scope::spawn`](Scope#method.spawn-1) of a supervising scope.
    ///
    /// # Errors
    ///
    /// [`SpawnError::Closed`] if the scope already finished (or its future was dropped).
    pub fn spawn<F, T>(&self, fut: F) -> Result<Supervised<T, E>, SpawnError>
    where
        F: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: From<Cancelled> + Send + 'static,
    {
        supervise::spawn(&self.node, fut)
    }
}

impl<E, K: FailsFast> ScopeHandle<E, K> {
    /// Spawns `fut` as a child of the scope; see [`Scope::spawn`].
    ///
    /// # Errors
    ///
    /// [`SpawnError::Closed`] if the scope already finished (or its future was dropped).
    pub fn spawn<F, T>(&self, fut: F) -> Result<TaskHandle<T>, SpawnError>
    where
        F: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        child::spawn(&self.node, fut)
    }

    /// Spawns a blocking child; see [`Scope::spawn_blocking`].
    ///
    /// # Errors
    ///
    /// As [`spawn`](Self::spawn).
    pub fn spawn_blocking<Fun, T>(&self, f: Fun) -> Result<TaskHandle<T>, SpawnError>
    where
        Fun: FnOnce() -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        child::spawn_blocking(&self.node, f)
    }

    /// Spawns only if the child can start right away; see [`Scope::try_spawn`].
    ///
    /// # Errors
    ///
    /// As [`Scope::try_spawn`].
    pub fn try_spawn<F, T>(&self, fut: F) -> Result<TaskHandle<T>, TrySpawnError<F>>
    where
        F: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        child::try_spawn(&self.node, fut)
    }

    /// Waits for a free slot of the scope's limit; see [`Scope::reserve`].
    ///
    /// The future resolves to `Err(SpawnError::Closed)` if the scope finished.
    pub fn reserve(&self) -> HandleReserve<E> {
        HandleReserve::new(self.node.clone())
    }

    /// Spawns a background child; see [`Scope::spawn_background`].
    ///
    /// # Errors
    ///
    /// [`SpawnError::Closed`] if the scope already finished.
    pub fn spawn_background<F, T>(&self, fut: F) -> Result<TaskHandle<T>, SpawnError>
    where
        F: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        background::spawn(&self.node, |bg| child::spawn(bg, fut))
    }

    /// Starts a child and waits until it is ready; see [`Scope::start`].
    ///
    /// # Errors
    ///
    /// [`SpawnError::Closed`] if the scope already finished.
    pub fn start<Fun, Fut, V>(&self, f: Fun) -> Result<Start<V, E>, SpawnError>
    where
        Fun: FnOnce(Ready<V>) -> Fut,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        V: Send + 'static,
        E: From<Cancelled> + Send + 'static,
    {
        start::start(&self.node, f)
    }
}

impl<E, K> From<&ScopeHandle<E, K>> for Parent {
    fn from(handle: &ScopeHandle<E, K>) -> Self {
        Parent::new(handle.node.clone())
    }
}

impl<E, K> From<ScopeHandle<E, K>> for Parent {
    fn from(handle: ScopeHandle<E, K>) -> Self {
        Parent::new(handle.node)
    }
}

impl<E, K> ScopeHandle<E, K> {
    /// Cancels the scope; see [`Scope::cancel`].
    pub fn cancel(&self) {
        self.node.cancel(CancelReason::Explicit, false);
    }

    /// `true` once the scope (or an ancestor) was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.node.state().is_soft()
    }

    /// `true` once the scope no longer accepts children.
    pub fn is_closed(&self) -> bool {
        self.node.is_closed()
    }

    /// A copy of the cancel tree below (and including) this scope: see [`TreeSnapshot`].
    pub fn snapshot(&self) -> TreeSnapshot {
        TreeSnapshot::of(&self.node)
    }

    /// A `CancellationToken` cancelled when this scope is (see
    /// [`Scope::cancellation_token`]). Feature `tokio-util`.
    #[cfg(feature = "tokio-util")]
    pub fn cancellation_token(&self) -> tokio_util::sync::CancellationToken {
        crate::interop::token(&self.node)
    }

    /// A [`CancelHandle`] to the scope's node.
    pub fn cancel_handle(&self) -> CancelHandle {
        CancelHandle::from_node(self.node.clone())
    }
}

/// What became of the body.
enum BodyOut<T, E> {
    Running,
    Ok(T),
    Err(E),
    /// It failed after the scope was cancelled: the error was counted as suppressed.
    Suppressed,
    Panicked,
    Caught(Cancelled),
}

pin_project! {
    /// The future of [`scope`] and [`ScopeBuilder::run`].
    ///
    /// It is `Send` exactly when the body's future, `T` and `E` are, and the scope's kind
    /// keeps its local children `Send` (every kind but [`Local`]).
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct ScopeFuture<'env, Fut, M = FailFast, K = Sendable>
    where
        Fut: Future,
        Fut::Output: BodyResult,
        K: Kind,
    {
        kind: ErrorKind<<Fut::Output as BodyResult>::Err>,
        #[pin]
        body: Option<Fut>,
        locals: Locals<'env, K>,
        background: Option<Background>,
        watch: Option<Box<Watch>>,
        out: BodyOut<<Fut::Output as BodyResult>::Ok, <Fut::Output as BodyResult>::Err>,
        driver: Driver,
        _marker: PhantomData<(Invariant<'env>, M)>,
    }

    impl<'env, Fut, M, K> PinnedDrop for ScopeFuture<'env, Fut, M, K>
    where
        Fut: Future,
        Fut::Output: BodyResult,
        K: Kind,
    {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if this.driver.is_finished() {
                return;
            }
            let node = this.driver.node().clone();
            // Dropped before it finished: children are hard-cancelled and no longer
            // accepted; the body goes now; the node stays busy (a zombie) in its parent
            // until its last child is gone (invariant #6).
            node.cancel(CancelReason::ScopeDropped, true);
            node.close();
            let body = this.body;
            let dropped = catch_unwind(AssertUnwindSafe(move || {
                let mut body = body;
                body.set(None);
            }));
            this.locals.close();
            let dropped_locals = this.locals.drop_all();
            // Done first, so that a background spawn racing this drop either set its node
            // before the take below or is refused.
            this.driver.finish();
            leave_background(this.background, &node);
            for p in [dropped.err(), dropped_locals.err()].into_iter().flatten() {
                node.record_panic(p);
            }
            #[cfg(feature = "tracing")]
            if !node.is_idle() {
                tracing::debug!(
                    scope = node.lock().name.as_deref().unwrap_or(""),
                    "scope future dropped while children run: they are cancelled and \
                     handed to the nearest live ancestor scope"
                );
            }
        }
    }
}

impl<Fut, M, K> fmt::Debug for ScopeFuture<'_, Fut, M, K>
where
    Fut: Future,
    Fut::Output: BodyResult,
    K: Kind,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScopeFuture")
            .field("started", &self.driver.is_active())
            .field("finished", &self.driver.is_finished())
            .finish_non_exhaustive()
    }
}

fn drop_body<Fut>(body: Pin<&mut Option<Fut>>, node: &Arc<Node>) {
    let mut body = body;
    if body.is_some() {
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| body.set(None))) {
            node.record_panic(p);
        }
    }
}

impl<Fut, M, K> Future for ScopeFuture<'_, Fut, M, K>
where
    Fut: Future,
    Fut::Output: BodyResult,
    M: Mode<Fut::Output>,
    K: Kind,
{
    type Output = M::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<M::Output> {
        let mut this = self.project();
        assert!(
            !this.driver.is_finished(),
            "`ScopeFuture` polled after completion"
        );
        this.driver.enter(true);
        this.driver.set_owner(cx.waker());
        loop {
            this.driver.poll_timer(cx);
            if let Some(watch) = this.watch.as_mut() {
                watch.poll(this.driver.node(), cx);
            }
            let running = matches!(this.out, BodyOut::Running);
            match this.driver.step() {
                // An ancestor's hard cancel: whoever catches it drops this future, with its
                // body and local children (invariant #8).
                Step::Outer => {
                    if running || this.locals.is_busy() {
                        return Poll::Pending;
                    }
                }
                // The body and the local children are no longer polled; they are dropped
                // once the subtree drained (below).
                Step::Catch => {
                    if running {
                        *this.out = BodyOut::Caught(this.driver.catch());
                    }
                }
                Step::Run => {
                    let body = this.body.as_mut();
                    let locals = &mut *this.locals;
                    let (polled, locals_polled) = this.driver.poll_inner(|| {
                        let polled = running.then(|| {
                            catch_unwind(AssertUnwindSafe(|| body.as_pin_mut().map(|b| b.poll(cx))))
                        });
                        (polled, locals.poll(cx))
                    });
                    let node = this.driver.node();
                    match polled {
                        Some(Ok(Some(Poll::Ready(r)))) => {
                            drop_body(this.body.as_mut(), node);
                            node.lock().finishing = true;
                            match r.into_result() {
                                Ok(v) => *this.out = BodyOut::Ok(v),
                                // An error after the scope was cancelled is secondary,
                                // like a child's (`docs/design.md`, 4.2): counted, not returned.
                                Err(e) => match node.record_error(None) {
                                    Recorded::Suppressed => {
                                        node.drop_user(e);
                                        *this.out = BodyOut::Suppressed;
                                    }
                                    Recorded::Primary | Recorded::Kept => {
                                        *this.out = BodyOut::Err(e)
                                    }
                                },
                            }
                        }
                        Some(Err(payload)) => {
                            drop_body(this.body.as_mut(), node);
                            node.record_panic(payload);
                            *this.out = BodyOut::Panicked;
                        }
                        Some(Ok(Some(Poll::Pending) | None)) | None => {}
                    }
                    if matches!(this.out, BodyOut::Running) || locals_polled.is_pending() {
                        if this.driver.step() == Step::Run {
                            return Poll::Pending;
                        }
                        continue; // cancelled while it ran: decide again
                    }
                }
            }
            // The body is done or caught, local children too. Background children go once
            // the foreground children are done too.
            if this
                .driver
                .node()
                .has_background
                .load(std::sync::atomic::Ordering::Acquire)
                && poll_background(this.background, this.driver.node(), cx).is_pending()
            {
                return Poll::Pending;
            }
            // Wait for every child below (invariant #5).
            if this.driver.poll_idle().is_pending() {
                return Poll::Pending;
            }
            let node = this.driver.node().clone();
            let force = this.driver.step() != Step::Run;
            if !this.locals.try_close(force, || node.try_close()) {
                continue; // a child was spawned at the last moment: it is awaited too
            }
            if !node.tasks_settled() {
                // Every child's future is gone, but a task may not yet be marked complete:
                // its output is about to be stored. Wait for that (a few instructions on
                // another worker), so a handle dropped with the body below drops the output
                // itself, before the scope returns.
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            // A caught body (and caught local children) are dropped only now, after the
            // subtree drained (invariant #8).
            drop_body(this.body.as_mut(), &node);
            if let Err(p) = this.locals.drop_all() {
                node.record_panic(p);
            }
            this.driver.finish();
            leave_background(this.background, &node);
            let out = std::mem::replace(this.out, BodyOut::Running);
            return Poll::Ready(M::output(finish(&node, out, *this.kind)));
        }
    }
}

/// The scope future's hold on its background node.
struct Background {
    /// Keeps the background node's timer (its grace period).
    driver: Driver,
    /// Cancelled with `ScopeDone`.
    done: bool,
}

/// Cancels the background children once nothing else keeps the scope busy. Pending while
/// foreground children still run (a count dropping to one wakes the scope).
fn poll_background(
    bg: &mut Option<Background>,
    node: &Arc<Node>,
    cx: &mut Context<'_>,
) -> Poll<()> {
    if bg.is_none() {
        let Some(n) = node.lock().background.clone() else {
            return Poll::Ready(());
        };
        *bg = Some(Background {
            driver: Driver::adopt(n),
            done: false,
        });
    }
    let Some(bg) = bg else {
        return Poll::Ready(());
    };
    bg.driver.set_owner(cx.waker());
    if !bg.done {
        if !node.foreground_idle(bg.driver.node()) {
            return Poll::Pending;
        }
        bg.done = true;
        bg.driver.node().cancel(CancelReason::ScopeDone, false);
    }
    bg.driver.poll_timer(cx);
    Poll::Ready(())
}

/// Takes the background node out of the tree with its scope.
fn leave_background(bg: &mut Option<Background>, node: &Node) {
    let taken = background::take(node);
    match bg.take() {
        Some(mut b) => b.driver.finish(),
        None => {
            if let Some(n) = taken {
                n.detach();
            }
        }
    }
}

/// Decides the scope's result once everything below it finished (`docs/design.md`, 4.2, 4.3
/// and 4.8).
fn finish<T, E>(node: &Node, out: BodyOut<T, E>, kind: ErrorKind<E>) -> Outcome<T, E> {
    let (panic, primary, all, suppressed, reason) = {
        let mut inner = node.lock();
        let reason = inner.reason;
        let o = &mut inner.outcome;
        (
            o.panic.take(),
            o.primary.take(),
            std::mem::take(&mut o.all),
            o.suppressed,
            reason,
        )
    };
    if let Some(payload) = panic {
        resume_unwind(payload);
    }
    let cancelled =
        |r: CancelReason| (kind.from_cancelled)(Cancelled::with_suppressed(r, suppressed));
    // Only children of this scope, which share its `E`, record errors here, so the downcast
    // cannot fail; if it did, the error would still not vanish without a trace.
    let child =
        |p: Payload| (kind.downcast)(p).unwrap_or_else(|| cancelled(CancelReason::ChildFailed));
    let mut body_err = None;
    let body = match out {
        BodyOut::Err(e) => {
            body_err = Some(e);
            None
        }
        other => Some(other),
    };
    let mut errors: Vec<E> = Vec::new();
    if !all.is_empty() {
        // Collecting mode: every error in order; the body's own takes its place.
        for slot in all {
            match slot {
                Slot::Child(p) => errors.push(child(p)),
                Slot::Body => errors.extend(body_err.take()),
            }
        }
    } else {
        match primary {
            Some(Slot::Child(p)) => errors.push(child(p)),
            Some(Slot::Body) => errors.extend(body_err.take()),
            None => {}
        }
    }
    let mut errors = errors.into_iter();
    if let Some(first) = errors.next() {
        return Err((first, errors.collect()));
    }
    if let Some(e) = body_err {
        return Err((e, Vec::new()));
    }
    let reason = match body {
        // The scope's own deadline fired before everything finished: a broken promise.
        Some(BodyOut::Ok(_)) if reason == Some(CancelReason::DeadlineExceeded) => {
            CancelReason::DeadlineExceeded
        }
        Some(BodyOut::Ok(v)) => return Ok(v),
        Some(BodyOut::Caught(c)) => c.reason(),
        // The body failed after a cancellation (its error was secondary). No reason of the
        // scope's own: the cancellation was inherited from an ancestor.
        _ => reason.unwrap_or(CancelReason::ParentCancelled),
    };
    Err((cancelled(reason), Vec::new()))
}
