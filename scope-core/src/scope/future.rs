//! [`ScopeFuture`]: drives the body, the children and the node, and decides the scope's
//! result once everything below it finished.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

use crate::background;
use crate::driver::{Driver, Step, Teardown, Work};
use crate::error::{CancelReason, Cancelled};
use crate::local::{Flavor, Locals, Queued, Sendable};
use crate::outcome::{Payload, Recorded, Slot};
use crate::sync::{Arc, Ordering};
use crate::timeout::Lazily;
use crate::tree::{Config, Lazy, Limit, Node};
use crate::watch::Watch;

use super::*;

/// A scope whose body holds no handle, while its node is not built: its name (what
/// `Lazy::Scope` builds the node with), and whether it was polled.
#[derive(Clone, Copy)]
struct Unbuilt {
    name: Option<&'static &'static str>,
    polled: bool,
}

/// What became of the body.
pub(super) enum BodyOut<T, E> {
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
    /// It is `Send` exactly when the body's future, `T` and `E` are, and the scope's flavor
    /// keeps its local children `Send` (every flavor but [`Local`]).
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct ScopeFuture<'env, Fut, M = FailFast, K = Sendable>
    where
        Fut: Future,
        Fut::Output: BodyResult,
        K: Flavor,
    {
        driver: Driver,
        // A scope whose body holds no handle, while its node is not built (see
        // `ScopeWork::poll_unbuilt`).
        unbuilt: Option<Unbuilt>,
        #[pin]
        work: ScopeWork<'env, Fut, K>,
        _marker: PhantomData<M>,
    }

    impl<'env, Fut, M, K> PinnedDrop for ScopeFuture<'env, Fut, M, K>
    where
        Fut: Future,
        Fut::Output: BodyResult,
        K: Flavor,
    {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            this.driver.drop_work(this.work);
        }
    }
}

pin_project! {
    /// What a scope runs under its node: the body, its local and background children, and
    /// what the body left.
    struct ScopeWork<'env, Fut, K>
    where
        Fut: Future,
        Fut::Output: BodyResult,
        K: Flavor,
    {
        kind: ErrorOps<<Fut::Output as BodyResult>::Err>,
        #[pin]
        body: Option<Fut>,
        locals: Locals<'env, K>,
        // Boxed: most scopes have no background children, and a whole driver inline would
        // make every scope future larger (moved by value until it is pinned).
        background: Option<Box<Driver>>,
        watch: Option<Box<Watch>>,
        out: BodyOut<<Fut::Output as BodyResult>::Ok, <Fut::Output as BodyResult>::Err>,
        _marker: PhantomData<Invariant<'env>>,
    }
}

impl<Fut, M, K> fmt::Debug for ScopeFuture<'_, Fut, M, K>
where
    Fut: Future,
    Fut::Output: BodyResult,
    K: Flavor,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScopeFuture")
            .field(
                "started",
                &(self.driver.is_active()
                    || self.driver.is_finished()
                    || self.unbuilt.is_some_and(|u| u.polled)),
            )
            .field("finished", &self.driver.is_finished())
            .finish_non_exhaustive()
    }
}

impl<'env, Fut, M, K> ScopeFuture<'env, Fut, M, K>
where
    Fut: Future,
    Fut::Output: BodyResult,
    K: Flavor,
{
    /// A scope future about to run `body` under the node `driver` holds.
    pub(super) fn new(
        body: Fut,
        locals: Locals<'env, K>,
        watch: Option<Box<Watch>>,
        kind: ErrorOps<<Fut::Output as BodyResult>::Err>,
        driver: Driver,
    ) -> Self {
        ScopeFuture {
            driver,
            unbuilt: None,
            work: ScopeWork {
                watch,
                kind,
                body: Some(body),
                locals,
                background: None,
                out: BodyOut::Running,
                _marker: PhantomData,
            },
            _marker: PhantomData,
        }
    }

    /// A scope future about to run `body`, which holds no handle to the scope, with its
    /// node (named `name`) built only once something needs it (see
    /// `ScopeWork::poll_unbuilt`).
    pub(super) fn unbuilt(
        body: Fut,
        kind: ErrorOps<<Fut::Output as BodyResult>::Err>,
        name: Option<&'static &'static str>,
    ) -> Self {
        let mut f = ScopeFuture::new(body, Locals::none(), None, kind, Driver::unbuilt());
        f.unbuilt = Some(Unbuilt {
            name,
            polled: false,
        });
        f
    }

    /// The same scope future with its node built from `config` now, before its first poll.
    pub(super) fn built(mut self, config: Config) -> Self {
        self.unbuilt = None;
        self.driver.build(Node::new(config));
        self
    }
}

/// Drops the body; the payload if its `Drop` panicked.
fn drop_body<Fut>(body: Pin<&mut Option<Fut>>) -> Option<Payload> {
    let mut body = body;
    if body.is_none() {
        return None;
    }
    catch_unwind(AssertUnwindSafe(|| body.set(None))).err()
}

impl<Fut, M, K> Future for ScopeFuture<'_, Fut, M, K>
where
    Fut: Future,
    Fut::Output: BodyResult,
    M: Mode<Fut::Output>,
    K: Flavor,
{
    type Output = M::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<M::Output> {
        if self.unbuilt.is_some() {
            return self.poll_lazily(cx);
        }
        let this = self.project();
        this.driver.poll(this.work, cx).map(M::output)
    }
}

impl<Fut, M, K> ScopeFuture<'_, Fut, M, K>
where
    Fut: Future,
    Fut::Output: BodyResult,
    M: Mode<Fut::Output>,
    K: Flavor,
{
    /// A poll of a scope whose node was not built yet. Apart from `poll`, so that a scope
    /// built at entry keeps a `poll` small enough to inline into its caller.
    #[inline(never)]
    fn poll_lazily(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<M::Output> {
        if self.unbuilt.is_some() {
            let lazy = self.lazy(Limit::None);
            if let Some(done) = self.as_mut().poll_unbuilt(lazy, cx) {
                return done;
            }
        }
        let this = self.project();
        this.driver.poll(this.work, cx).map(M::output)
    }
}

impl<Fut, M, K> Lazily for ScopeFuture<'_, Fut, M, K>
where
    Fut: Future,
    Fut::Output: BodyResult,
    M: Mode<Fut::Output>,
    K: Flavor,
{
    fn lazy(&self, limit: Limit) -> Lazy {
        Lazy::Scope {
            name: self.unbuilt.and_then(|u| u.name),
            limit,
        }
    }

    #[inline]
    fn poll_unbuilt(
        self: Pin<&mut Self>,
        lazy: Lazy,
        cx: &mut Context<'_>,
    ) -> Option<Poll<M::Output>> {
        let this = self.project();
        let done = this.work.poll_unbuilt(this.driver, this.unbuilt, lazy, cx);
        done.map(|p| p.map(M::output))
    }

    fn is_built(&self) -> bool {
        self.driver.is_built()
    }

    fn expire(self: Pin<&mut Self>) -> M::Output {
        let this = self.project();
        *this.unbuilt = None;
        this.driver.finish_unbuilt();
        let work = this.work.project();
        // A panic of the body's `Drop` is what the scope would re-raise once everything
        // finished, over its deadline.
        if let Some(p) = drop_body(work.body) {
            resume_unwind(p);
        }
        let cancelled = Cancelled::new(CancelReason::DeadlineExceeded);
        M::output(Err(((work.kind.from_cancelled)(cancelled), Vec::new())))
    }
}

impl<Fut, K> Teardown for ScopeWork<'_, Fut, K>
where
    Fut: Future,
    Fut::Output: BodyResult,
    K: Flavor,
{
    fn drop_inner(self: Pin<&mut Self>, node: &Arc<Node>) {
        let this = self.project();
        if let Some(p) = drop_body(this.body) {
            node.record_panic(p);
        }
        if let Err(p) = this.locals.drop_all() {
            node.record_panic(p);
        }
    }

    fn abandon(self: Pin<&mut Self>, node: &Arc<Node>) {
        // Dropped before it finished: children are hard-cancelled and no longer accepted;
        // the body goes now; the node stays busy (a zombie) in its parent until its last
        // child is gone (invariant #6).
        node.cancel_now(CancelReason::ScopeDropped);
        node.close();
        self.project().locals.close();
        #[cfg(feature = "tracing")]
        if !node.is_idle() {
            tracing::debug!(
                scope = node.lock().name.as_deref().unwrap_or(""),
                "scope future dropped while children run: they are cancelled and handed to \
                 the nearest live ancestor scope"
            );
        }
    }

    fn leave(self: Pin<&mut Self>, node: &Arc<Node>) {
        // After the node left: a background spawn racing a drop either set its node before
        // the take below or is refused.
        leave_background(self.project().background, node);
    }
}

impl<Fut, K> Work for ScopeWork<'_, Fut, K>
where
    Fut: Future,
    Fut::Output: BodyResult,
    K: Flavor,
{
    type Output = Outcome<<Fut::Output as BodyResult>::Ok, <Fut::Output as BodyResult>::Err>;
    const NAME: &'static str = "ScopeFuture";
    const SPAWNS: bool = true;

    fn is_running(self: Pin<&mut Self>) -> bool {
        matches!(self.out, BodyOut::Running)
    }

    fn is_busy(self: Pin<&mut Self>) -> bool {
        let this = self.project();
        matches!(this.out, BodyOut::Running) || this.locals.is_busy()
    }

    fn has_queued(self: Pin<&mut Self>) -> bool {
        self.project().locals.has_queued()
    }

    #[inline]
    fn poll_run(self: Pin<&mut Self>, driver: &mut Driver, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        let running = matches!(this.out, BodyOut::Running);
        let body = this.body.as_mut();
        let locals = &mut *this.locals;
        let (polled, locals_polled) = driver.poll_inner(|| {
            let polled = running
                .then(|| catch_unwind(AssertUnwindSafe(|| body.as_pin_mut().map(|b| b.poll(cx)))));
            (polled, locals.poll(cx))
        });
        let node = driver.node();
        match polled {
            Some(Ok(Some(Poll::Ready(r)))) => {
                settle(this.body.as_mut(), this.out, node, Ok(r.into_result()));
            }
            Some(Err(payload)) => settle(this.body.as_mut(), this.out, node, Err(payload)),
            Some(Ok(Some(Poll::Pending) | None)) | None => {}
        }
        if matches!(this.out, BodyOut::Running) || locals_polled.is_pending() {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    }

    fn catch(self: Pin<&mut Self>, caught: Cancelled) {
        *self.project().out = BodyOut::Caught(caught);
    }

    fn has_stopped_inner(self: Pin<&mut Self>, driver: &Driver) -> bool {
        let this = self.project();
        match this.out {
            BodyOut::Caught(_) => this.body.is_some() || this.locals.is_busy(),
            // The body is done (the driver asks only once the inner work completed or was
            // caught, never while the body runs); its local children stop being polled once
            // the node is hard-cancelled on its own account.
            _ => driver.step() == Step::Catch && this.locals.is_busy(),
        }
    }

    fn observe(self: Pin<&mut Self>, node: &Arc<Node>, cx: &mut Context<'_>) {
        if let Some(watch) = self.project().watch.as_mut() {
            watch.poll(node, cx);
        }
    }

    fn poll_wind_down(self: Pin<&mut Self>, node: &Arc<Node>, cx: &mut Context<'_>) -> Poll<()> {
        poll_background(self.project().background, node, cx)
    }

    fn close(self: Pin<&mut Self>, driver: &Driver) -> bool {
        // Hard-cancelled: queued local children are dropped, not run.
        let queued = if driver.step() == Step::Run {
            Queued::Run
        } else {
            Queued::Drop
        };
        let node = driver.node();
        self.project().locals.try_close(queued, || node.try_close())
    }

    fn output(self: Pin<&mut Self>, node: &Arc<Node>) -> Self::Output {
        let this = self.project();
        let out = std::mem::replace(this.out, BodyOut::Running);
        finish(node, out, *this.kind)
    }
}

/// What the body left when it ended (with its result, or panicking), recorded with `node`.
#[inline(always)]
fn settle<Fut, T, E>(
    body: Pin<&mut Option<Fut>>,
    out: &mut BodyOut<T, E>,
    node: &Arc<Node>,
    ended: Result<Result<T, E>, Payload>,
) {
    if let Some(p) = drop_body(body) {
        node.record_panic(p);
    }
    match ended {
        Ok(r) => {
            node.lock().complete();
            match r {
                Ok(v) => *out = BodyOut::Ok(v),
                // An error after the scope was cancelled is secondary, like a child's
                // (`docs/design.md`, 4.2): counted, not returned.
                Err(e) => match node.record_error(None) {
                    Recorded::Suppressed => {
                        node.drop_user(e);
                        *out = BodyOut::Suppressed;
                    }
                    Recorded::Primary | Recorded::Kept => *out = BodyOut::Err(e),
                },
            }
        }
        Err(payload) => {
            node.record_panic(payload);
            *out = BodyOut::Panicked;
        }
    }
}

impl<Fut, K> ScopeWork<'_, Fut, K>
where
    Fut: Future,
    Fut::Output: BodyResult,
    K: Flavor,
{
    /// A poll of a scope whose node is not built: its body holds no handle, so only code
    /// that reads the ambient context can reach the scope, and that builds the node
    /// (`context::enter_lazy`). Until then the scope has nothing of its own to wait for or
    /// be cancelled by: no child, no deadline, no handle. An ancestor's cancellation is
    /// dealt with by the node future further out, or the task wrapper, that catches it (as
    /// for a built scope: invariant #8); one that is hard already makes this poll build the
    /// node and enter the ordinary way.
    ///
    /// `Some` with the poll's result if the node is still not built: `Pending` while the
    /// body waits, the body's value once it returned one. `None` once the node is built
    /// (by code in the body, or here: for a body that failed or panicked, whose error is
    /// decided with the node, and when a `tracing` subscriber wants the scope's span): the
    /// caller goes on with `Driver::poll`, from where this left off.
    fn poll_unbuilt(
        self: Pin<&mut Self>,
        driver: &mut Driver,
        unbuilt: &mut Option<Unbuilt>,
        lazy: Lazy,
        cx: &mut Context<'_>,
    ) -> Option<Poll<<Self as Work>::Output>> {
        #[cfg(feature = "tracing")]
        if tracing::span_enabled!(tracing::Level::DEBUG) {
            *unbuilt = None;
            driver.build(lazy.node());
            return None;
        }
        if let Some(u) = unbuilt {
            u.polled = true;
        }
        let mut this = self.project();
        let body = this.body.as_mut();
        let Some((polled, built)) = driver.poll_lazy(lazy, || {
            catch_unwind(AssertUnwindSafe(|| body.as_pin_mut().map(|b| b.poll(cx))))
        }) else {
            // The ambient node is hard-cancelled (then the ordinary way does not poll the
            // body), or there is no frame (thread teardown): enter the ordinary way.
            *unbuilt = None;
            driver.build(lazy.node());
            return None;
        };
        let ended = match polled {
            Ok(Some(Poll::Ready(r))) => Ok(r.into_result()),
            Err(payload) => Err(payload),
            // `None` cannot be: the body is only taken once it ended.
            Ok(Some(Poll::Pending) | None) if !built => return Some(Poll::Pending),
            Ok(Some(Poll::Pending) | None) => {
                // Built while the body ran, and the body waits: now an ordinary scope that
                // polled its body once this poll, and waits as one, registered first. Its
                // own deadline may have passed by the time it was built: then it catches
                // that the ordinary way. (An ancestor's hard cancel is the catcher's.)
                *unbuilt = None;
                driver.register(cx);
                return (driver.step() != Step::Catch).then_some(Poll::Pending);
            }
        };
        *unbuilt = None;
        if !built {
            match ended {
                Ok(Ok(v)) => {
                    driver.finish_unbuilt();
                    if let Some(p) = drop_body(this.body.as_mut()) {
                        resume_unwind(p);
                    }
                    return Some(Poll::Ready(Ok(v)));
                }
                // Decided with a node: an error is secondary under a cancelled ancestor,
                // and a panic is re-raised once everything finished.
                ended => {
                    driver.build(lazy.node());
                    driver.enter(true);
                    settle(this.body.as_mut(), this.out, driver.node(), ended);
                    return None;
                }
            }
        }
        settle(this.body.as_mut(), this.out, driver.node(), ended);
        None
    }
}

/// Cancels the background children once nothing else keeps the scope busy. Pending while
/// foreground children still run (a count dropping to one wakes the scope). `bg` is the
/// driver of the scope's background node, once it exists: it keeps that node's timer (the
/// end of its grace period).
fn poll_background(
    bg: &mut Option<Box<Driver>>,
    node: &Arc<Node>,
    cx: &mut Context<'_>,
) -> Poll<()> {
    if bg.is_none() {
        let Some(n) = node.lock().background.clone() else {
            return Poll::Ready(());
        };
        *bg = Some(Box::new(Driver::adopt(n)));
    }
    let Some(bg) = bg else {
        return Poll::Ready(());
    };
    bg.set_owner(cx.waker());
    // The background node has no handle and no deadline: cancelled on its own account
    // means cancelled here, with `ScopeDone`.
    if !bg.node().state().own_soft() {
        if !node.foreground_idle(bg.node()) {
            return Poll::Pending;
        }
        bg.node().cancel(CancelReason::ScopeDone);
    }
    bg.poll_timer(cx);
    Poll::Ready(())
}

/// Takes the background node out of the tree with its scope.
fn leave_background(bg: &mut Option<Box<Driver>>, node: &Node) {
    let taken = background::take(node);
    match bg.take() {
        Some(mut driver) => driver.finish(),
        None => {
            if let Some(n) = taken {
                n.detach();
            }
        }
    }
}

/// Decides the scope's result once everything below it finished (`docs/design.md`, 4.2, 4.3
/// and 4.8).
fn finish<T, E>(node: &Node, out: BodyOut<T, E>, kind: ErrorOps<E>) -> Outcome<T, E> {
    // Nothing failed and nothing cancelled this scope on its own account (a deadline of its
    // own would be a broken promise): the body's value, without the node's lock. Everything
    // below the node is gone, so every recording happened before this read.
    let out = match out {
        BodyOut::Ok(v) if !node.recorded.load(Ordering::Acquire) && !node.state().own_soft() => {
            return Ok(v);
        }
        out => out,
    };
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
        node.report_swallowed_panics();
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
