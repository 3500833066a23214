//! [`AmbientFuture`]: a scope whose body holds no handle (`#[scoped]` and `scope!` without
//! one), with its node built only when something needs it.
//!
//! Only code that reads the ambient context can reach such a scope, and that builds the
//! node (`context::enter_lazy`). Until then the future is its body, what turns a
//! cancellation into the body's error, and the scope's name: nothing to wait for or be
//! cancelled by (no child, no deadline, no handle), so a poll enters the ambient frame with
//! the node pending and polls the body, and a body that returns a value without reading
//! costs no node, no driver and no lock. Once the node is built (by a read in the body, or
//! here: for a body that failed or panicked, whose error is decided with the node, and when
//! a `tracing` subscriber wants the scope's span), the driver and the rest of the scope's
//! state go to the heap, next to nothing (the body stays where it is pinned), and the
//! future polls as a [`ScopeFuture`](super::ScopeFuture) does, through the same
//! [`ScopeWork`].
//!
//! An ancestor's cancellation is dealt with by the node future further out, or the task
//! wrapper, that catches it (as for a built scope: invariant #8); one that is hard already
//! makes a poll build the node and enter the ordinary way.

use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

use crate::context;
use crate::driver::{Driver, Step};
use crate::error::{CancelReason, Cancelled};
use crate::local::{Locals, Sendable};
use crate::sync::Arc;
use crate::timeout::Lazily;
use crate::tree::{Config, Lazy, Limit, Node};

use super::future::{Rest, RestOf, ScopeWork, drop_body};
use super::*;

pin_project! {
    /// The future of a scope whose body holds no handle (the macros' scopes without one):
    /// a [`ScopeFuture`](super::ScopeFuture) whose node, driver and children's state exist
    /// only once something needs them (see the module doc). It prints and panics as a
    /// `ScopeFuture`.
    #[doc(hidden)]
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct AmbientFuture<'env, Fut>
    where
        Fut: Future,
        Fut::Output: BodyResult,
    {
        #[pin]
        body: Option<Fut>,
        kind: ErrorOps<<Fut::Output as BodyResult>::Err>,
        state: State<RestOf<'env, Fut, Sendable>>,
    }

    impl<'env, Fut> PinnedDrop for AmbientFuture<'env, Fut>
    where
        Fut: Future,
        Fut::Output: BodyResult,
    {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let State::Built(built) = this.state {
                let Built { driver, rest } = &mut **built;
                let mut work = ScopeWork {
                    body: this.body,
                    rest,
                };
                driver.drop_work(Pin::new(&mut work));
            }
        }
    }
}

/// Where an [`AmbientFuture`] is.
enum State<R> {
    /// No node: the scope's name (what `Lazy::Scope` builds the node with), and whether
    /// the future was polled.
    Unbuilt {
        name: Option<&'static &'static str>,
        polled: bool,
    },
    /// The node is built: the future is an ordinary scope future.
    Built(Box<Built<R>>),
    /// Completed (or expired) without a node.
    Done,
}

/// What a scope future keeps besides its body, once its node is built.
struct Built<R> {
    driver: Driver,
    rest: R,
}

impl<'env, T, E> Built<Rest<'env, T, E, Sendable>> {
    fn new(driver: Driver, kind: ErrorOps<E>) -> Box<Self> {
        Box::new(Built {
            driver,
            rest: Rest::new(kind, Locals::none(), None),
        })
    }
}

/// Where a node built during a poll with it pending goes: the guard gives it a driver in
/// the future's state, also on an unwind out of the poll (the future's drop then takes the
/// node out of the tree).
struct Building<'a, 'env, T, E> {
    state: &'a mut State<Rest<'env, T, E, Sendable>>,
    kind: ErrorOps<E>,
    node: Option<Arc<Node>>,
    shields: u32,
}

impl<T, E> Building<'_, '_, T, E> {
    /// Gives the node built during the poll a driver in the future's state. Out of line:
    /// most polls build nothing, and the test for that is all they pay (`drop`).
    #[cold]
    #[inline(never)]
    fn adopt(&mut self) {
        if let Some(node) = self.node.take() {
            *self.state = State::Built(Built::new(
                Driver::lazily_built(node, self.shields),
                self.kind,
            ));
        }
    }
}

impl<T, E> Drop for Building<'_, '_, T, E> {
    #[inline(always)]
    fn drop(&mut self) {
        if self.node.is_some() {
            self.adopt();
        }
    }
}

impl<'env, Fut> AmbientFuture<'env, Fut>
where
    Fut: Future,
    Fut::Output: BodyResult,
{
    /// A scope future about to run `body`, which holds no handle to the scope, with its
    /// node (named `name`) built only once something needs it.
    pub(super) fn new(
        body: Fut,
        kind: ErrorOps<<Fut::Output as BodyResult>::Err>,
        name: Option<&'static &'static str>,
    ) -> Self {
        AmbientFuture {
            body: Some(body),
            kind,
            state: State::Unbuilt {
                name,
                polled: false,
            },
        }
    }

    /// The same scope future with its node built from `config` now, before its first poll.
    pub(super) fn built(mut self, config: Config) -> Self {
        self.state = State::Built(Built::new(Driver::new(Node::new(config)), self.kind));
        self
    }
}

impl<Fut> fmt::Debug for AmbientFuture<'_, Fut>
where
    Fut: Future,
    Fut::Output: BodyResult,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (started, finished) = match &self.state {
            State::Unbuilt { polled, .. } => (*polled, false),
            State::Built(b) => (
                b.driver.is_active() || b.driver.is_finished(),
                b.driver.is_finished(),
            ),
            State::Done => (true, true),
        };
        f.debug_struct("ScopeFuture")
            .field("started", &started)
            .field("finished", &finished)
            .finish_non_exhaustive()
    }
}

type Output<Fut> = <FailFast as Mode<<Fut as Future>::Output>>::Output;

impl<Fut> Future for AmbientFuture<'_, Fut>
where
    Fut: Future,
    Fut::Output: BodyResult,
    FailFast: Mode<Fut::Output>,
{
    type Output = Output<Fut>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Output<Fut>> {
        if matches!(self.state, State::Unbuilt { .. }) {
            let lazy = self.lazy(Limit::None);
            if let Some(done) = self.as_mut().poll_unbuilt(lazy, cx) {
                return done;
            }
        }
        self.poll_built(cx)
    }
}

impl<Fut> AmbientFuture<'_, Fut>
where
    Fut: Future,
    Fut::Output: BodyResult,
    FailFast: Mode<Fut::Output>,
{
    /// A poll once the node is built: the ordinary protocol. Apart from `poll`, so that
    /// the poll of a scope with no node stays small enough to inline into its caller.
    #[inline(never)]
    fn poll_built(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Output<Fut>> {
        let this = self.project();
        let State::Built(built) = this.state else {
            panic!("`ScopeFuture` polled after completion");
        };
        let Built { driver, rest } = &mut **built;
        let mut work = ScopeWork {
            body: this.body,
            rest,
        };
        driver.poll(Pin::new(&mut work), cx).map(FailFast::output)
    }
}

impl<Fut> Lazily for AmbientFuture<'_, Fut>
where
    Fut: Future,
    Fut::Output: BodyResult,
    FailFast: Mode<Fut::Output>,
{
    fn lazy(&self, limit: Limit) -> Lazy {
        let name = match self.state {
            State::Unbuilt { name, .. } => name,
            State::Built(_) | State::Done => None,
        };
        Lazy::Scope { name, limit }
    }

    /// `Some` with the poll's result if the node is still not built: `Pending` while the
    /// body waits, the body's value once it returned one. `None` once the node is built (by
    /// code in the body, or here): the caller goes on with the ordinary poll, from where
    /// this left off.
    #[inline]
    fn poll_unbuilt(
        self: Pin<&mut Self>,
        lazy: Lazy,
        cx: &mut Context<'_>,
    ) -> Option<Poll<Output<Fut>>> {
        let this = self.project();
        let kind = *this.kind;
        #[cfg(feature = "tracing")]
        if tracing::span_enabled!(tracing::Level::DEBUG) {
            *this.state = State::Built(Built::new(Driver::new(lazy.node()), kind));
            return None;
        }
        if let State::Unbuilt { polled, .. } = this.state {
            *polled = true;
        }
        let mut body = this.body;
        let polled = {
            let mut building = Building {
                state: &mut *this.state,
                kind,
                node: None,
                shields: 0,
            };
            context::enter_lazy(lazy, &mut building.node, &mut building.shields, || {
                catch_unwind(AssertUnwindSafe(|| {
                    body.as_mut().as_pin_mut().map(|b| b.poll(cx))
                }))
            })
        };
        let Some(polled) = polled else {
            // The ambient node is hard-cancelled (then the ordinary way does not poll the
            // body), or there is no frame (thread teardown): enter the ordinary way.
            *this.state = State::Built(Built::new(Driver::new(lazy.node()), kind));
            return None;
        };
        let ended = match polled {
            Ok(Some(Poll::Ready(r))) => Ok(r.into_result()),
            Err(payload) => Err(payload),
            // `None` cannot be: the body is only taken once it ended.
            Ok(Some(Poll::Pending) | None) => {
                let State::Built(built) = this.state else {
                    return Some(Poll::Pending);
                };
                // Built while the body ran, and the body waits: now an ordinary scope that
                // polled its body once this poll, and waits as one, registered first. Its
                // own deadline may have passed by the time it was built: then it catches
                // that the ordinary way. (An ancestor's hard cancel is the catcher's.)
                built.driver.register(cx);
                return (built.driver.step() != Step::Catch).then_some(Poll::Pending);
            }
        };
        match (&mut *this.state, ended) {
            (State::Built(built), ended) => {
                let Built { driver, rest } = &mut **built;
                ScopeWork { body, rest }.settle(driver.node(), ended);
                None
            }
            (state, Ok(Ok(v))) => {
                *state = State::Done;
                if let Some(p) = drop_body(body) {
                    resume_unwind(p);
                }
                Some(Poll::Ready(FailFast::output(Ok(v))))
            }
            // Decided with a node: an error is secondary under a cancelled ancestor, and a
            // panic is re-raised once everything finished.
            (state, ended) => {
                let mut built = Built::new(Driver::new(lazy.node()), kind);
                built.driver.enter(true);
                let Built { driver, rest } = &mut *built;
                ScopeWork { body, rest }.settle(driver.node(), ended);
                *state = State::Built(built);
                None
            }
        }
    }

    fn is_built(&self) -> bool {
        matches!(self.state, State::Built(_))
    }

    fn expire(self: Pin<&mut Self>) -> Output<Fut> {
        let this = self.project();
        *this.state = State::Done;
        // A panic of the body's `Drop` is what the scope would re-raise once everything
        // finished, over its deadline.
        if let Some(p) = drop_body(this.body) {
            resume_unwind(p);
        }
        let cancelled = Cancelled::new(CancelReason::DeadlineExceeded);
        FailFast::output(Err(((this.kind.from_cancelled)(cancelled), Vec::new())))
    }
}
