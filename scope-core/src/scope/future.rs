//! [`ScopeFuture`]: drives the body, the children and the node, and decides the scope's
//! result once everything below it finished. [`ScopeWork`] is what the driver runs under
//! the node, for it and for the scope built lazily (`super::ambient`).

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
use crate::tree::Node;
use crate::watch::Watch;

use super::*;

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

/// A scope's state besides its body and its driver: its local and background children and
/// what the body left.
pub(super) struct Rest<'env, T, E, K: Flavor> {
    kind: ErrorOps<E>,
    locals: Locals<'env, K>,
    // Boxed: most scopes have no background children, and a whole driver inline would
    // make every scope future larger (moved by value until it is pinned).
    background: Option<Box<Driver>>,
    watch: Option<Box<Watch>>,
    out: BodyOut<T, E>,
    _marker: PhantomData<Invariant<'env>>,
}

/// How a body whose result is `R` ended: with its result, or panicking.
pub(super) type Ended<R> = Result<Result<<R as BodyResult>::Ok, <R as BodyResult>::Err>, Payload>;

/// The [`Rest`] of a scope whose body is `Fut`.
pub(super) type RestOf<'env, Fut, K> = Rest<
    'env,
    <<Fut as Future>::Output as BodyResult>::Ok,
    <<Fut as Future>::Output as BodyResult>::Err,
    K,
>;

impl<'env, T, E, K: Flavor> Rest<'env, T, E, K> {
    pub(super) fn new(
        kind: ErrorOps<E>,
        locals: Locals<'env, K>,
        watch: Option<Box<Watch>>,
    ) -> Self {
        Rest {
            kind,
            locals,
            background: None,
            watch,
            out: BodyOut::Running,
            _marker: PhantomData,
        }
    }
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
        #[pin]
        body: Option<Fut>,
        rest: RestOf<'env, Fut, K>,
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
            let mut work = ScopeWork {
                body: this.body,
                rest: this.rest,
            };
            this.driver.drop_work(Pin::new(&mut work));
        }
    }
}

/// What a scope runs under its node, as its driver sees it: the body, pinned where the
/// scope's future keeps it, and the rest of the scope's state.
pub(super) struct ScopeWork<'a, 'env, Fut, K>
where
    Fut: Future,
    Fut::Output: BodyResult,
    K: Flavor,
{
    pub(super) body: Pin<&'a mut Option<Fut>>,
    pub(super) rest: &'a mut RestOf<'env, Fut, K>,
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
                &(self.driver.is_active() || self.driver.is_finished()),
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
            body: Some(body),
            rest: Rest::new(kind, locals, watch),
            _marker: PhantomData,
        }
    }
}

/// Drops the body; the payload if its `Drop` panicked.
pub(super) fn drop_body<Fut>(body: Pin<&mut Option<Fut>>) -> Option<Payload> {
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
        let this = self.project();
        let mut work = ScopeWork {
            body: this.body,
            rest: this.rest,
        };
        this.driver.poll(Pin::new(&mut work), cx).map(M::output)
    }
}

impl<Fut, K> ScopeWork<'_, '_, Fut, K>
where
    Fut: Future,
    Fut::Output: BodyResult,
    K: Flavor,
{
    /// The body ended (with its result, or panicking) before the node was built: recorded
    /// with the node built since (see `super::ambient`).
    pub(super) fn settle(&mut self, node: &Arc<Node>, ended: Ended<Fut::Output>) {
        settle(self.body.as_mut(), &mut self.rest.out, node, ended);
    }
}

impl<Fut, K> Teardown for ScopeWork<'_, '_, Fut, K>
where
    Fut: Future,
    Fut::Output: BodyResult,
    K: Flavor,
{
    fn drop_inner(self: Pin<&mut Self>, node: &Arc<Node>) {
        let this = self.get_mut();
        if let Some(p) = drop_body(this.body.as_mut()) {
            node.record_panic(p);
        }
        if let Err(p) = this.rest.locals.drop_all() {
            node.record_panic(p);
        }
    }

    fn abandon(self: Pin<&mut Self>, node: &Arc<Node>) {
        // Dropped before it finished: children are hard-cancelled and no longer accepted;
        // the body goes now; the node stays busy (a zombie) in its parent until its last
        // child is gone (invariant #6).
        node.cancel_now(CancelReason::ScopeDropped);
        node.close();
        self.get_mut().rest.locals.close();
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
        leave_background(&mut self.get_mut().rest.background, node);
    }
}

impl<Fut, K> Work for ScopeWork<'_, '_, Fut, K>
where
    Fut: Future,
    Fut::Output: BodyResult,
    K: Flavor,
{
    type Output = Outcome<<Fut::Output as BodyResult>::Ok, <Fut::Output as BodyResult>::Err>;
    const NAME: &'static str = "ScopeFuture";
    const SPAWNS: bool = true;

    fn is_running(self: Pin<&mut Self>) -> bool {
        matches!(self.rest.out, BodyOut::Running)
    }

    fn is_busy(self: Pin<&mut Self>) -> bool {
        let rest = &mut *self.get_mut().rest;
        matches!(rest.out, BodyOut::Running) || rest.locals.is_busy()
    }

    fn has_queued(self: Pin<&mut Self>) -> bool {
        self.rest.locals.has_queued()
    }

    #[inline]
    fn poll_run(self: Pin<&mut Self>, driver: &mut Driver, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let rest = &mut *this.rest;
        let running = matches!(rest.out, BodyOut::Running);
        let body = this.body.as_mut();
        let locals = &mut rest.locals;
        let (polled, locals_polled) = driver.poll_inner(|| {
            let polled = running
                .then(|| catch_unwind(AssertUnwindSafe(|| body.as_pin_mut().map(|b| b.poll(cx)))));
            (polled, locals.poll(cx))
        });
        let node = driver.node();
        match polled {
            Some(Ok(Some(Poll::Ready(r)))) => {
                settle(this.body.as_mut(), &mut rest.out, node, Ok(r.into_result()));
            }
            Some(Err(payload)) => settle(this.body.as_mut(), &mut rest.out, node, Err(payload)),
            Some(Ok(Some(Poll::Pending) | None)) | None => {}
        }
        if matches!(rest.out, BodyOut::Running) || locals_polled.is_pending() {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    }

    fn catch(self: Pin<&mut Self>, caught: Cancelled) {
        self.get_mut().rest.out = BodyOut::Caught(caught);
    }

    fn has_stopped_inner(self: Pin<&mut Self>, driver: &Driver) -> bool {
        let this = self.get_mut();
        match this.rest.out {
            BodyOut::Caught(_) => this.body.is_some() || this.rest.locals.is_busy(),
            // The body is done (the driver asks only once the inner work completed or was
            // caught, never while the body runs); its local children stop being polled once
            // the node is hard-cancelled on its own account.
            _ => driver.step() == Step::Catch && this.rest.locals.is_busy(),
        }
    }

    fn observe(self: Pin<&mut Self>, node: &Arc<Node>, cx: &mut Context<'_>) {
        if let Some(watch) = self.get_mut().rest.watch.as_mut() {
            watch.poll(node, cx);
        }
    }

    fn poll_wind_down(self: Pin<&mut Self>, node: &Arc<Node>, cx: &mut Context<'_>) -> Poll<()> {
        poll_background(&mut self.get_mut().rest.background, node, cx)
    }

    fn close(self: Pin<&mut Self>, driver: &Driver) -> bool {
        // Hard-cancelled: queued local children are dropped, not run.
        let queued = if driver.step() == Step::Run {
            Queued::Run
        } else {
            Queued::Drop
        };
        let node = driver.node();
        self.get_mut()
            .rest
            .locals
            .try_close(queued, || node.try_close())
    }

    fn output(self: Pin<&mut Self>, node: &Arc<Node>) -> Self::Output {
        let rest = &mut *self.get_mut().rest;
        let out = std::mem::replace(&mut rest.out, BodyOut::Running);
        finish(node, out, rest.kind)
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
