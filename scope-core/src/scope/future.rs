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
use crate::driver::{Driver, Step};
use crate::error::{CancelReason, Cancelled};
use crate::local::{Kind, Locals, Sendable};
use crate::sync::Arc;
use crate::tree::Node;
use crate::tree::outcome::{Payload, Recorded, Slot};
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

impl<'env, Fut, M, K> ScopeFuture<'env, Fut, M, K>
where
    Fut: Future,
    Fut::Output: BodyResult,
    K: Kind,
{
    /// A scope future about to run `body` under the node `driver` holds.
    pub(super) fn new(
        body: Fut,
        locals: Locals<'env, K>,
        watch: Option<Box<Watch>>,
        kind: ErrorKind<<Fut::Output as BodyResult>::Err>,
        driver: Driver,
    ) -> Self {
        ScopeFuture {
            watch,
            kind,
            body: Some(body),
            locals,
            background: None,
            out: BodyOut::Running,
            driver,
            _marker: PhantomData,
        }
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
            // A caught body may own holds of scopes opened under this one (a request run in
            // the server scope's own body): it goes once only holds keep the node busy, so
            // that those are released; the scopes in other tasks are awaited below.
            if matches!(this.out, BodyOut::Caught(_)) && this.body.as_ref().get_ref().is_some() {
                match this.driver.poll_holds() {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(true) => drop_body(this.body.as_mut(), this.driver.node()),
                    Poll::Ready(false) => {}
                }
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
