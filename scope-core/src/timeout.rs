//! A time limit on a node future whose node is not built yet: `move_on_after`,
//! `fail_after` and their `_at` forms (a cancel scope with a deadline and nothing else), and
//! the macros' scopes without a handle whose only options are a name and a timeout or
//! deadline.
//!
//! While nothing under the future asks for its scope (`context::enter_lazy`), the limit is a
//! timer of its own, inline in the future as in `tokio::time::timeout`, and no node is
//! built. Code that asks (a nested scope, `is_cancelled()`, `current_deadline()`, ...) builds
//! the node with the limit the timer has, and from then on the future is an ordinary node
//! future with its own timer (`Driver::poll`). The answers are the eager node's:
//!
//! - A timeout starts during the first poll, as a built node resolves it at its entry, the
//!   first poll: at the read that builds the node, or else when the future first waits.
//! - The timer is polled before the future, as a built node's timer fires before its future
//!   is polled again: a deadline due together with the future wins.
//! - On expiry with the node not built, nothing is attached below it and nothing read it,
//!   so catching the deadline is only this: the future is dropped, and the result is the
//!   cancellation a built node would return (`DeadlineExceeded`, nothing suppressed).
//! - A zero timeout, and one too long for the lazy state (over 584 years), is built at
//!   creation: a zero one cancels before the first poll.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use crate::tree::{Lazy, Limit};

/// A node future that can run with its node not built yet, under a [`Timeout`].
pub(crate) trait Lazily: Future {
    /// What its node is built from, with the time limit `limit`.
    fn lazy(&self, limit: Limit) -> Lazy;

    /// A poll with the node pending in the ambient frame, to be built from `lazy` if code
    /// under the poll asks for it. `Some(Pending)`: it waits, its node built during the
    /// poll or not ([`is_built`](Self::is_built)); `Some(Ready)`: it completed without
    /// building the node. `None`: the node is built; poll the ordinary way now.
    fn poll_unbuilt(
        self: Pin<&mut Self>,
        lazy: Lazy,
        cx: &mut Context<'_>,
    ) -> Option<Poll<Self::Output>>;

    /// The node is built (or was given at creation).
    fn is_built(&self) -> bool;

    /// The limit expired with the node not built: drops the inner future and gives what a
    /// node that caught its own deadline, with nothing below it, would return.
    fn expire(self: Pin<&mut Self>) -> Self::Output;

    /// It waits with its node not built (what its `Debug` shows), or no longer does.
    fn set_waiting(self: Pin<&mut Self>, _waiting: bool) {}
}

/// A timeout in nanoseconds, for [`Timeout::after`]: `None` for a zero timeout, and one
/// too long for [`Limit::Timeout`], whose node is built at creation.
#[inline]
pub(crate) fn lazy_nanos(d: Duration) -> Option<u64> {
    u64::try_from(d.as_nanos()).ok().filter(|&n| n > 0)
}

pin_project! {
    /// A node future with a time limit, whose node is built only when needed (see the
    /// module doc).
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub(crate) struct Timeout<W> {
        #[pin]
        wait: Wait,
        #[pin]
        inner: W,
    }
}

pin_project! {
    /// Where a [`Timeout`] is.
    #[project = WaitProj]
    enum Wait {
        /// Not polled yet: the timeout, in nanoseconds, starts at the first poll.
        After { nanos: u64 },
        /// Not polled yet, with an absolute deadline.
        At { at: Instant },
        /// Polled, the node not built, the future waits: on this timer.
        Timer {
            #[pin]
            timer: Sleep,
        },
        /// Polled, the node not built, the future waits, with a deadline too far to
        /// represent: it never fires.
        Never,
        /// The node is built, or was given at creation: the inner future polls the ordinary
        /// way.
        Built,
    }
}

impl<W: Lazily> Timeout<W> {
    /// `inner`, not built, with a timeout of `nanos` (see [`lazy_nanos`]) from its first poll.
    pub(crate) fn after(nanos: u64, inner: W) -> Self {
        Timeout {
            wait: Wait::After { nanos },
            inner,
        }
    }

    /// `inner`, not built, with a deadline.
    pub(crate) fn at(at: Instant, inner: W) -> Self {
        Timeout {
            wait: Wait::At { at },
            inner,
        }
    }

    /// `inner` with its node built already, and its limit in it.
    pub(crate) fn built(inner: W) -> Self {
        Timeout {
            wait: Wait::Built,
            inner,
        }
    }
}

impl<W> Timeout<W> {
    /// The inner node future.
    pub(crate) fn inner(&self) -> &W {
        &self.inner
    }
}

impl<W: Lazily> Future for Timeout<W> {
    type Output = W::Output;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<W::Output> {
        let this = self.as_mut().project();
        let nanos = match this.wait.project() {
            WaitProj::Built => return this.inner.poll(cx),
            WaitProj::After { nanos } => *nanos,
            _ => return self.poll_timer(cx),
        };
        // The first poll of a timeout: a future that completes at once needs no timer.
        let lazy = this.inner.lazy(Limit::Timeout(nanos));
        match this.inner.poll_unbuilt(lazy, cx) {
            Some(Poll::Ready(done)) => {
                self.project().wait.set(Wait::Built);
                Poll::Ready(done)
            }
            done => self.settle(done, cx),
        }
    }
}

impl<W: Lazily> Timeout<W> {
    /// A poll with a deadline known and the node not built: the first poll of an absolute
    /// deadline, or a timeout whose future waits.
    #[inline(never)]
    fn poll_timer(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<W::Output> {
        let mut this = self.as_mut().project();
        if let WaitProj::At { at } = this.wait.as_mut().project() {
            let at = *at;
            this.wait.set(Wait::Timer {
                timer: tokio::time::sleep_until(at),
            });
            this.inner.as_mut().set_waiting(true);
        }
        let limit = match this.wait.as_mut().project() {
            // The deadline first, as a built node's timer fires before its future is polled.
            WaitProj::Timer { mut timer } => {
                if timer.as_mut().poll(cx).is_ready() {
                    this.wait.set(Wait::Built);
                    return Poll::Ready(this.inner.expire());
                }
                Limit::Deadline(timer.deadline())
            }
            _ => Limit::None,
        };
        let lazy = this.inner.lazy(limit);
        match this.inner.as_mut().poll_unbuilt(lazy, cx) {
            Some(Poll::Ready(done)) => {
                this.wait.set(Wait::Built);
                Poll::Ready(done)
            }
            done => self.settle(done, cx),
        }
    }

    /// After a poll of the future with the node not built (`Lazily::poll_unbuilt`'s
    /// result): still waiting unbuilt (a timeout's timer starts at its first wait), or
    /// built.
    #[inline(never)]
    fn settle(
        self: Pin<&mut Self>,
        done: Option<Poll<W::Output>>,
        cx: &mut Context<'_>,
    ) -> Poll<W::Output> {
        let mut this = self.project();
        if matches!(done, Some(Poll::Pending)) && !this.inner.is_built() {
            if let WaitProj::After { nanos } = this.wait.as_mut().project() {
                // The first wait: the timer starts.
                match Instant::now().checked_add(Duration::from_nanos(*nanos)) {
                    Some(at) => this.wait.set(Wait::Timer {
                        timer: tokio::time::sleep_until(at),
                    }),
                    None => this.wait.set(Wait::Never),
                }
                if let WaitProj::Timer { timer } = this.wait.as_mut().project() {
                    if timer.poll(cx).is_ready() {
                        this.wait.set(Wait::Built);
                        return Poll::Ready(this.inner.expire());
                    }
                }
                this.inner.as_mut().set_waiting(true);
            }
            return Poll::Pending;
        }
        // Built (during that poll, or just before it).
        this.wait.set(Wait::Built);
        this.inner.as_mut().set_waiting(false);
        match done {
            Some(done) => done,
            None => this.inner.poll(cx),
        }
    }
}
