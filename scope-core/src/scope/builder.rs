//! [`ScopeBuilder`]: a scope's configuration, and `run`, which builds its future.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::time::Duration;

use tokio::time::Instant;

use crate::driver::Driver;
use crate::error::{CancelReason, Cancelled, SpawnError};
use crate::local::{Flavor, Local, Locals, Queue, Sendable, Supervisor};
use crate::parent::{Hold, Parent};
use crate::snapshot::TreeSnapshot;
use crate::sync::Arc;
use crate::timeout::{Timeout, lazy_nanos};
use crate::tree::{Config, Node, NodeKind};
use crate::watch::{StuckReport, Watches};

use super::*;

/// Configures a scope: name, timeout or deadline, grace period, error mode.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use std::time::Duration;
/// use taskscope::{CancelReason, Cancelled, Scope};
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
    /// Where the children run ([`ScopeBuilder::runtime`]); the caller's runtime otherwise.
    runtime: Option<tokio::runtime::Handle>,
    _mode: PhantomData<(M, K)>,
}

impl<M, K> ScopeBuilder<M, K> {
    /// The same settings under another error mode or flavor.
    fn retype<M2, K2>(self) -> ScopeBuilder<M2, K2> {
        ScopeBuilder {
            config: self.config,
            watches: self.watches,
            hold: self.hold,
            runtime: self.runtime,
            _mode: PhantomData,
        }
    }
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
            runtime: None,
            _mode: PhantomData,
        }
    }

    /// The scope of the macros' forms without a handle and with no option but a name
    /// (`#[scoped]`, `scope!({ .. })`; with a time limit too: [`ambient_after`](Self::ambient_after),
    /// [`ambient_at`](Self::ambient_at)): the body takes no [`Scope`], so only code that reads
    /// the ambient context can reach the scope, and its node (an allocation, two locks to
    /// enter the tree and two to leave it) is built only when such code asks for it (a
    /// nested scope or cancel scope, `is_cancelled()`, `cancelled()`, `current_deadline()`,
    /// a snapshot, an explicit parent) or when the body fails or panics. Every answer is the
    /// one the scope would give with its node built at entry; until then it is not in a
    /// [`snapshot`](crate::snapshot()) taken elsewhere, and opens no `tracing` span (when a
    /// subscriber wants one, the node is built). `name` is a reference to a literal (`&"f"`),
    /// one word to carry while the node is not built.
    #[doc(hidden)]
    #[inline]
    pub fn ambient<'env, F, Fut, T, E>(
        name: Option<&'static &'static str>,
        body: F,
    ) -> AmbientFuture<'env, Fut>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: From<Cancelled> + 'static,
    {
        Self::ambient_with(name, body, E::from)
    }

    /// [`ambient`](Self::ambient) with the conversion from [`Cancelled`] given explicitly,
    /// as [`run_with`](Self::run_with).
    #[doc(hidden)]
    #[inline]
    pub fn ambient_with<'env, F, Fut, T, E>(
        name: Option<&'static &'static str>,
        body: F,
        from_cancelled: fn(Cancelled) -> E,
    ) -> AmbientFuture<'env, Fut>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: 'static,
    {
        AmbientFuture::new(body(), ErrorOps::new(from_cancelled), name)
    }

    /// [`ambient`](Self::ambient) with a timeout (the macros' forms without a handle whose
    /// only options are a name and `timeout`): while the node is not built, the timeout is
    /// a timer of the scope future's own, and on expiry with the node not built the body
    /// is dropped and the scope fails with `E::from(Cancelled)`
    /// ([`CancelReason::DeadlineExceeded`]), as a scope built at entry would.
    #[doc(hidden)]
    #[inline]
    pub fn ambient_after<F, Fut, T, E>(
        name: Option<&'static &'static str>,
        timeout: Duration,
        body: F,
    ) -> impl Future<Output = Result<T, E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: From<Cancelled> + 'static,
    {
        Self::ambient_after_with(name, timeout, body, E::from)
    }

    /// [`ambient_after`](Self::ambient_after) with the conversion from [`Cancelled`] given
    /// explicitly.
    #[doc(hidden)]
    #[inline]
    pub fn ambient_after_with<F, Fut, T, E>(
        name: Option<&'static &'static str>,
        timeout: Duration,
        body: F,
        from_cancelled: fn(Cancelled) -> E,
    ) -> impl Future<Output = Result<T, E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: 'static,
    {
        let scope: AmbientFuture<'static, Fut> =
            AmbientFuture::new(body(), ErrorOps::new(from_cancelled), name);
        match lazy_nanos(timeout) {
            Some(nanos) => Timeout::after(nanos, scope),
            // Zero (it cancels before the first poll) or too long to wait for lazily.
            None => Timeout::built(scope.built(Config {
                name: name.map(|n| Cow::Borrowed(*n)),
                kind: NodeKind::Scope,
                timeout: Some(timeout),
                ..Config::default()
            })),
        }
    }

    /// [`ambient`](Self::ambient) with a deadline, as [`ambient_after`](Self::ambient_after)
    /// with a timeout.
    #[doc(hidden)]
    #[inline]
    pub fn ambient_at<F, Fut, T, E>(
        name: Option<&'static &'static str>,
        deadline: Instant,
        body: F,
    ) -> impl Future<Output = Result<T, E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: From<Cancelled> + 'static,
    {
        Self::ambient_at_with(name, deadline, body, E::from)
    }

    /// [`ambient_at`](Self::ambient_at) with the conversion from [`Cancelled`] given
    /// explicitly.
    #[doc(hidden)]
    #[inline]
    pub fn ambient_at_with<F, Fut, T, E>(
        name: Option<&'static &'static str>,
        deadline: Instant,
        body: F,
        from_cancelled: fn(Cancelled) -> E,
    ) -> impl Future<Output = Result<T, E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: 'static,
    {
        let scope: AmbientFuture<'static, Fut> =
            AmbientFuture::new(body(), ErrorOps::new(from_cancelled), name);
        Timeout::at(deadline, scope)
    }
}

impl<K> ScopeBuilder<FailFast, K> {
    /// Return every error in order ([`Errors`](crate::Errors)) instead of only the first.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use std::time::Duration;
    /// use taskscope::{cancelled, Cancelled, CancelReason, Scope};
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
        self.retype()
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
    /// use taskscope::{Cancelled, Scope};
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
        self.retype()
    }

    /// A supervising scope: a child's error does not cancel the scope or its siblings; the
    /// body's [`Scope::spawn`](Scope#method.spawn-1) returns a [`Supervised`](crate::Supervised) handle that
    /// gives the child's own `Result`. An error whose handle was dropped is returned by the
    /// scope when it ends (the first one, or all with
    /// [`collect_errors`](ScopeBuilder::collect_errors)), so none is lost. The body's own
    /// error, a panic, a deadline and `cancel()` still end the scope as usual. Local,
    /// blocking and limited-`try_spawn` children are for failing-fast scopes: nest one
    /// inside if needed.
    pub fn supervise(self) -> ScopeBuilder<M, Supervisor> {
        self.retype()
    }
}

impl<M, K: Flavor> ScopeBuilder<M, K> {
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
    /// Meant for code in a task the parent does not own. Run inside the parent's own body
    /// (a test awaiting a request in the server scope's body), it works too: a parent that
    /// catches its own cancellation drops its body once nothing but such scopes keeps it
    /// busy, which releases the ones the body holds. A node further out that catches (a
    /// `fail_after` around the parent) does not know about them: it waits for the parent,
    /// which waits for a unit its unpolled body holds. Open scopes inside the parent's body
    /// the ordinary way (they nest below it anyway).
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

    /// Spawns the scope's children (spawned, blocking and background ones) on the runtime
    /// `handle` instead of the one the scope is created in (`JoinSet::spawn_on`'s meaning,
    /// for the whole scope). The scope itself, its body and its local children run where
    /// the scope future is polled; the scope still awaits every child.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use taskscope::{Cancelled, Scope};
    ///
    /// let pool = tokio::runtime::Builder::new_multi_thread()
    ///     .worker_threads(2)
    ///     .build()
    ///     .unwrap();
    /// let on_pool = pool.handle().clone();
    /// let r: Result<bool, Cancelled> = Scope::builder()
    ///     .runtime(pool.handle().clone())
    ///     .run(async move |s| {
    ///         let h = s.spawn(async move {
    ///             let here = tokio::runtime::Handle::current();
    ///             Ok(here.id() == on_pool.id())
    ///         });
    ///         h.await
    ///     })
    ///     .await;
    /// assert_eq!(r, Ok(true));
    /// # pool.shutdown_background();
    /// # }
    /// ```
    #[doc(alias = "spawn_on")]
    pub fn runtime(mut self, handle: tokio::runtime::Handle) -> Self {
        self.runtime = Some(handle);
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
    /// use taskscope::{Cancelled, Scope};
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
    /// use taskscope::{CancelReason, Cancelled, Scope};
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
    /// use taskscope::{CancelReason, Cancelled, Scope};
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
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio-util")))]
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
    /// use taskscope::{Cancelled, Scope};
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
    #[cfg_attr(docsrs, doc(cfg(feature = "signal")))]
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
    /// use taskscope::{shield, Cancelled, Scope};
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
    #[cfg_attr(docsrs, doc(cfg(feature = "tracing")))]
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
    #[inline]
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
    #[inline]
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
        config.kind = crate::tree::NodeKind::Scope;
        let node = Node::new(config);
        if let Some(rt) = self
            .runtime
            .or_else(|| tokio::runtime::Handle::try_current().ok())
        {
            let _ = node.runtime.set(rt);
        }
        let queue = Arc::new(Queue::new());
        let body = body(Scope::new(node.clone(), queue.clone()));
        let locals = Locals::new(queue);
        ScopeFuture::new(
            body,
            locals,
            self.watches.into_watch(),
            ErrorOps::new(from_cancelled),
            Driver::with_hold(node, self.hold),
        )
    }
}
