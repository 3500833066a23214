//! [`Scope`]: the scope as its body sees it (spawn, cancel, a `'static` handle).

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;

use crate::background;
use crate::cancel_scope::CancelHandle;
use crate::child::{self, ChildOutput, TaskHandle, WaitChildren};
use crate::error::{CancelReason, Cancelled, SpawnError, TrySpawnError};
use crate::local::{self, Accepts, Flavor, LocalHandle, Queue, Sendable, Supervisor, Unsupervised};
use crate::permit::Reserve;
use crate::snapshot::TreeSnapshot;
use crate::start::{self, Ready, Start};
use crate::supervise::{self, Supervised};
use crate::sync::Arc;
use crate::tree::Node;

use super::*;

/// The scope as its body sees it: spawn children, cancel, get a `'static` handle.
///
/// It is cheap to clone. `'env` is the lifetime of what its local children may borrow: a
/// scope whose local children borrow nothing (`Scope<'static, E>`, the usual case when the
/// body borrows nothing) can be cloned into a spawned (`'static`) child, which may then
/// spawn into the scope too, local children included; a scope whose local children borrow
/// from the caller cannot, and its [`handle`](Scope::handle) (a [`ScopeHandle`]) is what a
/// spawned child takes instead (nursery passing). A local child that spawns further local
/// children takes a clone.
///
/// `K` says which local children the scope accepts: `Send` ones ([`Sendable`], the default)
/// or any ([`Local`](crate::Local), see [`ScopeBuilder::local`]).
pub struct Scope<'env, E, K: Flavor = Sendable> {
    node: Arc<Node>,
    queue: Arc<Queue<'env, K>>,
    _marker: PhantomData<(Invariant<'env>, fn() -> E)>,
}

impl<E, K: Flavor> Clone for Scope<'_, E, K> {
    fn clone(&self) -> Self {
        Scope {
            node: self.node.clone(),
            queue: self.queue.clone(),
            _marker: PhantomData,
        }
    }
}

/// Makes `'env` invariant (neither shortened nor lengthened by subtyping).
pub(super) type Invariant<'env> = fn(&'env ()) -> &'env ();

impl Scope<'static, Cancelled> {
    /// A [`ScopeBuilder`]: `Scope::builder().name("x").timeout(d).run(async |s| ..)`.
    pub fn builder() -> ScopeBuilder {
        ScopeBuilder::new()
    }
}

impl<E, K: Flavor> fmt::Debug for Scope<'_, E, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_node(f, "Scope", &self.node)
    }
}

pub(super) fn debug_node(f: &mut fmt::Formatter<'_>, what: &str, node: &Node) -> fmt::Result {
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

impl<'env, E, K: Flavor> Scope<'env, E, K> {
    pub(super) fn new(node: Arc<Node>, queue: Arc<Queue<'env, K>>) -> Self {
        Scope {
            node,
            queue,
            _marker: PhantomData,
        }
    }
}

impl<'env, E, K: Unsupervised> Scope<'env, E, K> {
    /// Runs `fut` as a local child: polled inside the scope's own future, concurrently with
    /// the body and the other local children but not in parallel, under this scope's node.
    ///
    /// Unlike [`spawn`](Scope::spawn), `fut` may borrow anything that outlives the
    /// `scope(..)` call, and in a [`Local`](crate::Local) scope ([`ScopeBuilder::local`]) it need not be
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
    /// use taskscope::{scope, Cancelled};
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
        K: Accepts<'env, F, T>,
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
    /// The child resolves to `Result<T, E>` with the scope's error type (an `async` block's
    /// `Ok(..)` and `?` take it by inference), or to `()` for a child that cannot fail (see
    /// [`ChildOutput`](crate::ChildOutput)). A future with another error type converts it
    /// first: `s.spawn(fut.err_into())` with `futures::TryFutureExt`, or
    /// `s.spawn(async move { Ok(fut.await?) })`.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use taskscope::{scope, CancelReason, Cancelled};
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
        F: Future + Send + 'static,
        F::Output: ChildOutput<T, E>,
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
    /// use taskscope::{is_cancelled, scope, Cancelled};
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
    /// use taskscope::{cancelled, scope, CancelReason, Cancelled};
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
        F: Future + Send + 'static,
        F::Output: ChildOutput<T, E>,
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
    /// use taskscope::scope;
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
    /// use taskscope::Scope;
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

impl<'env, E, K: Flavor> Scope<'env, E, K> {
    /// A `'static`, clonable handle to this scope, to spawn from children (nursery
    /// passing) or cancel the scope from anywhere.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use taskscope::{scope, Cancelled};
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
        ScopeHandle::new(self.node.clone())
    }

    /// Cancels the scope and everything below it ([`CancelReason::Explicit`]).
    ///
    /// The body and the children see the soft signal at once and are dropped after the
    /// grace period (default zero) unless they finish first. If the body already
    /// completed, its value is still returned.
    pub fn cancel(&self) {
        self.node.cancel(CancelReason::Explicit);
    }

    /// `true` once the scope (or an ancestor) was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.node.state().is_soft()
    }

    /// Cancels the children spawned into this scope so far, but not the scope: its body
    /// goes on and can spawn more (`JoinSet::abort_all`'s meaning). Each child is cancelled
    /// as by [`TaskHandle::cancel`] (a child in a [`shield`](crate::shield) finishes the
    /// shield first) and its handle resolves to `Err(Cancelled)` with reason
    /// [`ParentCancelled`](crate::CancelReason::ParentCancelled) unless it completed first;
    /// the scope still awaits every child's end. Blocking children cannot be cancelled (they
    /// are awaited), and local and background children are not affected.
    #[doc(alias = "abort_all")]
    pub fn cancel_children(&self) {
        self.node.cancel_tasks();
    }

    /// How many children spawned into this scope are still running (spawned children;
    /// not blocking, local or background ones). Takes a lock and counts: for a progress
    /// report, not a hot loop.
    #[doc(alias = "len")]
    pub fn running_children(&self) -> usize {
        self.node.running_tasks()
    }

    /// Waits until nothing spawned below this scope so far is alive (spawned and blocking
    /// children, the children they spawned, and those of nested scopes), without ending the
    /// scope: it accepts children afterwards (`TaskTracker::wait`'s meaning, with no need to
    /// close first). Children spawned while it waits are waited for too. Local children are
    /// not counted: they run in the scope's own task.
    ///
    /// Awaited inside a child of this scope it never completes: that child is one of the
    /// children it waits for.
    #[doc(alias = "wait")]
    pub fn wait_children(&self) -> WaitChildren {
        WaitChildren::new(self.node.clone())
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
    /// use taskscope::{Cancelled, scope};
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
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio-util")))]
    pub fn cancellation_token(&self) -> tokio_util::sync::CancellationToken {
        crate::interop::token(&self.node)
    }
}
