//! What every future that owns a node does: enter the tree, keep the node's one timer,
//! decide each poll whether to run, catch, or leave the cancellation to an outer node, and
//! lend the node to the ambient frame while the inner future runs.

use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use crate::context;
use crate::error::{CancelReason, Cancelled};
use crate::parent::Hold;
use crate::sync::Arc;
use crate::tree::Node;

/// What a node future does with its inner future on this poll.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub(crate) enum Step {
    /// Poll the inner future (not cancelled, only soft-cancelled, or a shield is live inside).
    Run,
    /// The node is hard-cancelled on its own account: stop polling, drain, drop, return the
    /// cancellation (invariant #8).
    Catch,
    /// An ancestor is hard-cancelled: it (or the task wrapper) deals with this future.
    Outer,
}

/// Which deadline the node's single timer is armed for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Armed {
    Deadline(Instant),
    HardAt(Instant),
}

/// A live shield's bookkeeping.
struct ShieldMark {
    root: Option<(Arc<Node>, tokio::task::Id)>,
}

pub(crate) struct Driver {
    /// `None` only while lent to the ambient frame, or before a lazy cancel scope's node is
    /// built ([`Driver::unbuilt`]).
    node: Option<Arc<Node>>,
    timer: Option<Pin<Box<Sleep>>>,
    armed: Option<Armed>,
    /// The node's timer generation and own bits when `armed` was last decided.
    seen: Option<(u32, bool, bool)>,
    /// The waker last registered as the node's owner.
    owner: Option<Waker>,
    /// Live shields inside the inner future (in this task).
    shields: u32,
    /// Entered the tree and not yet finished.
    active: bool,
    finished: bool,
    /// A shield counts itself in the enclosing frame while it runs (the task it did so in),
    /// and registers with the scope its task was spawned into.
    shield: Option<ShieldMark>,
    /// The node's span, entered while the inner future is polled.
    #[cfg(feature = "tracing")]
    span: tracing::Span,
    /// Opened under an explicit parent ([`crate::Parent`]): the unit of the parent's busy
    /// count this node holds until it finished. Such a node attaches below that parent, not
    /// the ambient node, and catches inherited hard cancels too (it is the outermost node of
    /// its task).
    hold: Option<Hold>,
}

impl Driver {
    pub(crate) fn new(node: Arc<Node>) -> Self {
        Driver::new_with(Some(node))
    }

    fn new_with(node: Option<Arc<Node>>) -> Self {
        Driver {
            node,
            timer: None,
            armed: None,
            seen: None,
            owner: None,
            shields: 0,
            active: false,
            finished: false,
            shield: None,
            #[cfg(feature = "tracing")]
            span: tracing::Span::none(),
            hold: None,
        }
    }

    /// A driver for a node opened under an explicit parent (`hold` counts it there).
    pub(crate) fn with_hold(node: Arc<Node>, hold: Option<Hold>) -> Self {
        let mut d = Driver::new(node);
        d.hold = hold;
        d
    }

    /// A driver whose node is built later: by [`poll_lazy`](Self::poll_lazy) if code under
    /// the first poll asks for it, or by [`build`](Self::build).
    pub(crate) fn unbuilt() -> Self {
        Driver::new_with(None)
    }

    /// Gives an unbuilt driver its node (not yet entered: [`enter`](Self::enter) next).
    pub(crate) fn build(&mut self, node: Arc<Node>) {
        self.node = Some(node);
    }

    /// The first poll of a cancel scope with no node yet: runs `f` with the node pending in
    /// the ambient frame (see [`context::enter_lazy`]). `None` if `f` did not run (the caller
    /// builds the node and enters the ordinary way). Otherwise `f`'s result and whether the
    /// node was built (it is then entered and attached: the driver is active).
    pub(crate) fn poll_lazy<R>(
        &mut self,
        timeout: Duration,
        f: impl FnOnce() -> R,
    ) -> Option<(R, bool)> {
        // Active while `f` runs, so that a drop during an unwind out of `f` finishes (detaches)
        // a node built meanwhile.
        self.active = true;
        let r = context::enter_lazy(timeout, &mut self.node, &mut self.shields, f);
        let built = self.node.is_some();
        self.active = built;
        #[cfg(feature = "tracing")]
        if let Some(node) = &self.node {
            self.span = crate::spans::enter_node(node, node.parent());
        }
        r.map(|r| (r, built))
    }

    /// A driver for a node that is already in the tree (a scope's background node): it only
    /// keeps the node's timer (the end of its grace period) and leaves the tree at `finish`.
    pub(crate) fn adopt(node: Arc<Node>) -> Self {
        let mut d = Driver::new(node);
        d.active = true;
        d
    }

    /// The node. Only `poll_inner` lends it out, and gives it back before returning.
    pub(crate) fn node(&self) -> &Arc<Node> {
        self.node
            .as_ref()
            .expect("the node is only lent out during an inner poll")
    }

    pub(crate) fn is_active(&self) -> bool {
        self.active
    }

    pub(crate) fn is_finished(&self) -> bool {
        self.finished
    }

    /// First poll: attach below the explicit parent or else the ambient node, resolve the
    /// timeout, capture the runtime (for scopes), count a shield in the enclosing frame.
    pub(crate) fn enter(&mut self, with_runtime: bool) {
        if self.active || self.finished {
            return;
        }
        self.active = true;
        let node = self.node().clone();
        if with_runtime && node.runtime.get().is_none() {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                let _ = node.runtime.set(rt);
            }
        }
        let parent = match &self.hold {
            Some(hold) => Some(hold.node().clone()),
            None => context::current(),
        };
        let shield = node.attach(parent.as_ref());
        #[cfg(feature = "tracing")]
        {
            self.span = crate::spans::enter_node(&node, parent.as_ref());
        }
        if shield {
            self.shield = Some(ShieldMark {
                root: context::shield_entered(),
            });
        }
    }

    /// Registers the waker of this poll as the node's owner (a lock only when it changed).
    pub(crate) fn set_owner(&mut self, waker: &Waker) {
        if self.owner.as_ref().is_some_and(|w| w.will_wake(waker)) {
            return;
        }
        self.node().set_owner(waker);
        self.owner = Some(waker.clone());
    }

    /// Keeps the node's one timer armed for what it waits for next (its deadline, or the end
    /// of its grace period) and fires it when due.
    pub(crate) fn poll_timer(&mut self, cx: &mut Context<'_>) {
        loop {
            let node = self.node();
            let st = node.state();
            let seen = (node.timer_gen(), st.own_soft(), st.own_hard());
            if self.seen == Some(seen) && self.timer.is_none() {
                return; // nothing changed and nothing to wait for: no lock taken
            }
            let want = if self.seen == Some(seen) {
                self.armed
            } else {
                // Read the generation before the values (above): a change after this read
                // bumps it again and wakes the owner, so it is seen on the next poll.
                let inner = node.lock();
                if !seen.1 {
                    inner.deadline.map(Armed::Deadline)
                } else if !seen.2 {
                    inner.hard_at.map(Armed::HardAt)
                } else {
                    None
                }
            };
            self.seen = Some(seen);
            if want != self.armed {
                self.armed = want;
                match (want, &mut self.timer) {
                    (None, _) => self.timer = None,
                    (Some(Armed::Deadline(at) | Armed::HardAt(at)), Some(t)) => {
                        t.as_mut().reset(at)
                    }
                    (Some(Armed::Deadline(at) | Armed::HardAt(at)), None) => {
                        self.timer = Some(Box::pin(tokio::time::sleep_until(at)));
                    }
                }
            }
            let Some(t) = &mut self.timer else { return };
            if t.as_mut().poll(cx).is_pending() {
                return;
            }
            self.timer = None;
            let node = self.node().clone();
            match self.armed.take() {
                Some(Armed::Deadline(_)) => {
                    #[cfg(feature = "tracing")]
                    tracing::debug!(parent: &self.span, "deadline exceeded");
                    node.cancel(CancelReason::DeadlineExceeded, false)
                }
                Some(Armed::HardAt(_)) => node.escalate(),
                None => return,
            }
            self.seen = None;
            // Loop: a deadline with a grace period now waits for the grace to end.
        }
    }

    /// What to do with the inner future now.
    pub(crate) fn step(&self) -> Step {
        let st = self.node().state();
        if self.shields > 0 {
            Step::Run
        } else if st.inherited_hard() && self.hold.is_none() {
            Step::Outer
        } else if st.is_hard() {
            // Its own hard cancel, or an inherited one under an explicit parent: no node
            // future further out in this task belongs to the tree, so this one catches.
            Step::Catch
        } else {
            Step::Run
        }
    }

    /// Runs `f` (the inner poll) with the node as the ambient node.
    pub(crate) fn poll_inner<R>(&mut self, f: impl FnOnce() -> R) -> R {
        #[cfg(feature = "tracing")]
        let _entered = self.span.enter();
        context::enter_node(&mut self.node, &mut self.shields, f)
    }

    /// Ready once nothing spawned below the node is alive. The owner waker must already be
    /// registered (`set_owner`), so a transition to idle after this check wakes us.
    pub(crate) fn poll_idle(&self) -> Poll<()> {
        if self.node().is_idle() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// For a catcher whose inner future is still there: `Ready(true)` once nothing below the
    /// node is alive but scopes opened under it as an explicit parent (their holds may be
    /// owned by the inner future, so it must be dropped now to release them; the rest is
    /// awaited with [`poll_idle`](Self::poll_idle)), `Ready(false)` if the node has no such
    /// scopes (nothing to do here). Owner registered first, as for `poll_idle`.
    pub(crate) fn poll_holds(&self) -> Poll<bool> {
        let node = self.node();
        if node.holds.load(crate::sync::Ordering::Acquire) == 0 {
            Poll::Ready(false)
        } else if node.idle_but_holds() {
            Poll::Ready(true)
        } else {
            Poll::Pending
        }
    }

    /// Records that this node caught its own cancellation and returns it.
    pub(crate) fn catch(&self) -> Cancelled {
        let node = self.node();
        let mut inner = node.lock();
        inner.caught = true;
        // No reason of its own: the hard cancel was inherited (explicit parent).
        let reason = inner.reason.unwrap_or(CancelReason::ParentCancelled);
        Cancelled::with_suppressed(reason, inner.outcome.suppressed)
    }

    /// Done without ever having had a node (a lazy cancel scope whose first poll completed
    /// without building it): nothing to leave.
    pub(crate) fn finish_unbuilt(&mut self) {
        self.finished = true;
        self.active = false;
    }

    /// Leaves the tree: the node is done (invariant #6).
    pub(crate) fn finish(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        self.active = false;
        self.timer = None;
        if let Some(mark) = self.shield.take() {
            // Uncount it in the current frame only if that frame is the one it was counted
            // in or one the count reached since (an enclosing node's): not in a drop outside
            // any poll, nor in an unrelated frame. The frame may be in another task than the
            // one the shield started in: a future moved to a task of its own carries its
            // count along (a handler whose client left, `OnDisconnect::Detach`).
            let here =
                context::counts_in_current_frame(self.node.as_ref().and_then(|n| n.parent()));
            context::shield_exited(mark.root, here);
        }
        if let Some(node) = &self.node {
            node.detach();
        }
        // Out of the parent's child list first; a node still busy (dropped with children
        // running) keeps its own unit in the parent's count (invariant #6).
        drop(self.hold.take());
    }
}
