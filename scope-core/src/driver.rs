//! What every future that owns a node does, written once: enter the tree, keep the node's
//! one timer, decide each poll whether to run, catch, or leave the cancellation to an outer
//! node (invariant #8), lend the node to the ambient frame while the inner work runs, wait
//! until nothing below the node is alive, and tear down in one order.
//!
//! [`Driver::poll`] is that loop. What differs between a scope (a body, local and
//! background children, an error mode) and a cancel scope (one future) is behind [`Work`].
//!
//! # Registering late
//!
//! A node future registers its waker as the node's owner, and arms the node's timer, only
//! before it waits ([`Driver::register`], at most once a poll); a poll that finishes (the
//! inner work completed, nothing below it alive) costs neither, as `tokio::time::timeout`
//! arms no timer for a ready future. A poll after a registration only fires or re-arms
//! the timer up front. Registering late is safe because every wait registers first and
//! then reads the state again: a cancel, an idle transition or (a scope) a local child
//! queued from another thread either happened before the registration and is seen by
//! that read, or happens after it and wakes the waker (the node's lock orders the first
//! two; the local queue's lock the third, as `spawn_local` pushes before it wakes). A
//! deadline cannot have passed unseen before the first registration: one already past at
//! entry cancels at `attach`.

use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use tokio::time::{Instant, Sleep};

use crate::context;
use crate::error::{CancelReason, Cancelled};
use crate::parent::Hold;
use crate::sync::Arc;
use crate::tree::{Lazy, Node};

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

/// Where the driver is: the node future's side of the node's life.
/// A scope spawns its children on the runtime it was entered in, unless it has one already
/// (given to its builder, or current when it was created).
fn capture_runtime(node: &Node) {
    if node.runtime.get().is_some() {
        return;
    }
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        let _ = node.runtime.set(rt);
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Not polled yet (or a lazily entered node not built yet).
    Fresh,
    /// Entered the tree: the node is attached.
    Entered,
    /// Left the tree (invariant #6); the future is done.
    Finished,
}

/// A live shield's bookkeeping.
struct ShieldMark {
    root: Option<(Arc<Node>, tokio::task::Id)>,
}

/// How what a node future runs under its node is taken down: at the end of its last poll,
/// or when the future is dropped unfinished. Apart from [`Work`] because a future's `Drop`
/// cannot ask for the bounds under which it is a `Future`.
pub(crate) trait Teardown {
    /// Drops whatever runs under the node (the inner future, local children), recording a
    /// panic of their `Drop` with `node`.
    fn drop_inner(self: Pin<&mut Self>, node: &Arc<Node>);

    /// The future is dropped before it finished: what must happen before the teardown.
    fn abandon(self: Pin<&mut Self>, _node: &Arc<Node>) {}

    /// Leaves the tree with the node (a scope's background node).
    fn leave(self: Pin<&mut Self>, _node: &Arc<Node>) {}
}

/// What a node future runs under its node: the part in which a scope (a body, local and
/// background children, an error mode) and a cancel scope (one future) differ. The
/// protocol around it is [`Driver::poll`]'s.
pub(crate) trait Work: Teardown {
    /// What the node future resolves to.
    type Output;
    /// Named in the panic of a future polled after it completed.
    const NAME: &'static str;
    /// A scope: it spawns children on the runtime it was entered in and waits for their
    /// tasks to settle.
    const SPAWNS: bool;

    /// The inner future has neither completed nor been caught.
    fn is_running(self: Pin<&mut Self>) -> bool;

    /// Something under the node still wants polls: the inner future runs, or (a scope)
    /// local children do.
    fn is_busy(self: Pin<&mut Self>) -> bool {
        self.is_running()
    }

    /// Work arrived that the last inner poll did not take (a scope: a local child queued
    /// from another thread). Read after the owner is registered, before a wait.
    fn has_queued(self: Pin<&mut Self>) -> bool {
        false
    }

    /// Polls the inner work, lending the node to the ambient frame for it
    /// ([`Driver::poll_inner`]). Ready once it completed (also by failing or panicking).
    fn poll_run(self: Pin<&mut Self>, driver: &mut Driver, cx: &mut Context<'_>) -> Poll<()>;

    /// The node caught its own cancellation: the inner work is not polled again.
    fn catch(self: Pin<&mut Self>, caught: Cancelled);

    /// Something under the node is no longer polled but still there: a caught inner future,
    /// or (a scope) local children of a node hard-cancelled on its own account. It is
    /// dropped once the subtree drained, or earlier to release holds it may own (see
    /// [`Driver::poll_holds`]).
    fn has_stopped_inner(self: Pin<&mut Self>, driver: &Driver) -> bool;

    /// Watches besides the inner work, polled on every turn of the loop (a scope's cancel
    /// triggers and stuck report).
    fn observe(self: Pin<&mut Self>, _node: &Arc<Node>, _cx: &mut Context<'_>) {}

    /// After the inner work and before the wait for the subtree: a scope cancels its
    /// background children once its foreground work is done. The owner is registered.
    fn poll_wind_down(self: Pin<&mut Self>, _node: &Arc<Node>, _cx: &mut Context<'_>) -> Poll<()> {
        Poll::Ready(())
    }

    /// Once nothing below is alive: refuse children from now on. `false` if one was
    /// spawned at the last moment (it is awaited too).
    fn close(self: Pin<&mut Self>, _driver: &Driver) -> bool {
        true
    }

    /// The result, once the node left the tree.
    fn output(self: Pin<&mut Self>, node: &Arc<Node>) -> Self::Output;
}

pub(crate) struct Driver {
    /// `None` only while lent to the ambient frame, or before a lazily entered node is
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
    phase: Phase,
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
            phase: Phase::Fresh,
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

    /// A driver whose node is built later: by [`poll_lazy`](Self::poll_lazy) if code under a
    /// poll asks for it, or by [`build`](Self::build).
    pub(crate) fn unbuilt() -> Self {
        Driver::new_with(None)
    }

    /// The node was built (or given at creation). Not while it is lent to the ambient frame.
    pub(crate) fn is_built(&self) -> bool {
        self.node.is_some()
    }

    /// Gives an unbuilt driver its node (not yet entered: [`enter`](Self::enter) next).
    pub(crate) fn build(&mut self, node: Arc<Node>) {
        self.node = Some(node);
    }

    /// A poll of a node future with no node yet: runs `f` with the node pending in the
    /// ambient frame, to be built from `lazy` (see [`context::enter_lazy`]). `None` if `f`
    /// did not run (the caller builds the node and enters the ordinary way). Otherwise `f`'s result and whether the
    /// node was built (it is then entered and attached: the driver is active).
    #[inline]
    pub(crate) fn poll_lazy<R>(&mut self, lazy: Lazy, f: impl FnOnce() -> R) -> Option<(R, bool)> {
        // Entered while `f` runs, so that a drop during an unwind out of `f` finishes
        // (detaches) a node built meanwhile.
        self.phase = Phase::Entered;
        let r = context::enter_lazy(lazy, &mut self.node, &mut self.shields, f);
        let built = self.node.is_some();
        if built {
            self.entered_lazily();
        } else {
            self.phase = Phase::Fresh;
        }
        r.map(|r| (r, built))
    }

    /// A driver for a node built and attached while its future was polled with the node
    /// pending (`context::enter_lazy`), with the count of live shields inside it since.
    pub(crate) fn lazily_built(node: Arc<Node>, shields: u32) -> Self {
        let mut d = Driver::new(node);
        d.shields = shields;
        d.entered_lazily();
        d
    }

    /// The node was built and attached under a poll with it pending: the driver is entered
    /// (what `enter` does at a first poll, the attach included, happened at the build), and
    /// the node's span is its own.
    fn entered_lazily(&mut self) {
        self.phase = Phase::Entered;
        #[cfg(feature = "tracing")]
        if let Some(node) = &self.node {
            self.span = crate::spans::enter_node(node, node.parent());
        }
    }

    /// A driver for a node that is already in the tree (a scope's background node): it only
    /// keeps the node's timer (the end of its grace period) and leaves the tree at `finish`.
    pub(crate) fn adopt(node: Arc<Node>) -> Self {
        let mut d = Driver::new(node);
        d.phase = Phase::Entered;
        d
    }

    /// The node. Only `poll_inner` lends it out, and gives it back before returning.
    #[inline]
    pub(crate) fn node(&self) -> &Arc<Node> {
        self.node
            .as_ref()
            .expect("the node is only lent out during an inner poll")
    }

    /// Entered the tree and not yet finished.
    #[inline]
    pub(crate) fn is_active(&self) -> bool {
        self.phase == Phase::Entered
    }

    #[inline]
    pub(crate) fn is_finished(&self) -> bool {
        self.phase == Phase::Finished
    }

    /// First poll: attach below the explicit parent or else the ambient node, resolve the
    /// timeout, capture the runtime (for scopes), count a shield in the enclosing frame.
    #[inline]
    pub(crate) fn enter(&mut self, with_runtime: bool) {
        if self.phase == Phase::Fresh {
            self.enter_tree(with_runtime);
        }
    }

    #[inline(never)]
    fn enter_tree(&mut self, with_runtime: bool) {
        self.phase = Phase::Entered;
        let node = self.node().clone();
        if with_runtime {
            capture_runtime(&node);
        }
        let parent = match &self.hold {
            Some(hold) => Some(hold.node().clone()),
            None => context::current(),
        };
        let entered = node.attach(parent.as_ref());
        if let Some(generation) = entered.quiet_timer {
            // What `poll_timer_slow` would decide on the first registration, known already:
            // nothing to arm, so that registration takes no lock for the timer.
            self.seen = Some((generation, false, false));
        }
        #[cfg(feature = "tracing")]
        {
            self.span = crate::spans::enter_node(&node, parent.as_ref());
        }
        if entered.shield {
            self.shield = Some(ShieldMark {
                root: context::shield_entered(),
            });
        }
    }

    /// One poll of a node future: the protocol every node future follows (the module doc,
    /// invariant #8). `Ready` with the output once the inner work completed or was caught
    /// and nothing below the node is alive; the node has then left the tree.
    // Not inlined into the futures' `poll`: a lazily entered future that completes unbuilt
    // never gets here, and pays no prologue of this loop.
    #[inline(never)]
    pub(crate) fn poll<W: Work>(
        &mut self,
        mut work: Pin<&mut W>,
        cx: &mut Context<'_>,
    ) -> Poll<W::Output> {
        assert!(
            self.phase != Phase::Finished,
            "`{}` polled after completion",
            W::NAME
        );
        self.enter(W::SPAWNS);
        // The owner is registered (refreshed) only before this poll waits (`before_wait`);
        // a poll that finishes takes no lock for it.
        let mut registered = false;
        if self.owner.is_some() {
            // Woken: fire a timer that is due, re-arm one whose deadline moved.
            self.poll_timer(cx);
        }
        loop {
            work.as_mut().observe(self.node(), cx);
            match self.step() {
                // An ancestor's hard cancel: whoever catches it drops this future, with what
                // runs under it (invariant #8).
                Step::Outer => {
                    // No need to read the step again after registering: an ancestor's hard
                    // cancel is for good (invariant #1), and only this future's own polls
                    // change its shield count or hold, so the step stays `Outer`.
                    if work.as_mut().is_busy() {
                        if self.before_wait(&mut registered, work.as_mut(), cx) {
                            return Poll::Pending;
                        }
                        continue;
                    }
                }
                // The inner work is no longer polled; it is dropped once the subtree
                // drained (below).
                Step::Catch => {
                    if work.as_mut().is_running() {
                        let caught = self.catch();
                        work.as_mut().catch(caught);
                    }
                }
                Step::Run => {
                    if work.as_mut().is_busy() && work.as_mut().poll_run(self, cx).is_pending() {
                        // Read again after registering: a cancel while it ran either happened
                        // before the registration and is seen here, or wakes the owner.
                        if self.before_wait(&mut registered, work.as_mut(), cx)
                            && self.step() == Step::Run
                        {
                            return Poll::Pending;
                        }
                        continue; // cancelled or given work while it ran: decide again
                    }
                }
            }
            // The inner work completed or was caught.
            if self
                .node()
                .has_background
                .load(crate::sync::Ordering::Acquire)
            {
                if !self.before_wait(&mut registered, work.as_mut(), cx) {
                    continue;
                }
                if work.as_mut().poll_wind_down(self.node(), cx).is_pending() {
                    return Poll::Pending;
                }
            }
            // Stopped inner work may own holds of scopes opened under this node (a request
            // run in the server scope's own body or one of its local children): it goes once
            // only holds keep the node busy, so that those are released; scopes in other
            // tasks are awaited below.
            if work.as_mut().has_stopped_inner(self) {
                if !self.before_wait(&mut registered, work.as_mut(), cx) {
                    continue;
                }
                match self.poll_holds() {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(true) => work.as_mut().drop_inner(self.node()),
                    Poll::Ready(false) => {}
                }
            }
            // Wait for everything spawned below (invariant #5).
            if !self.node().is_idle() {
                if !self.before_wait(&mut registered, work.as_mut(), cx) {
                    continue;
                }
                if !self.node().is_idle() {
                    return Poll::Pending;
                }
            }
            if !work.as_mut().close(self) {
                continue; // a child was spawned at the last moment: it is awaited too
            }
            if W::SPAWNS && !self.node().tasks_settled() {
                // Every child's future is gone, but a task may not yet be marked complete:
                // its output is about to be stored. Wait for that (a few instructions on
                // another worker), so a handle dropped with the inner work below drops the
                // output itself, before the node future returns.
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            // A caught inner future is dropped only now, after the subtree drained
            // (invariant #8).
            self.teardown(work.as_mut());
            return Poll::Ready(work.output(self.node()));
        }
    }

    /// The node future is dropped: if it had not finished, what it runs is dropped now
    /// (after [`Teardown::abandon`]) and the node leaves the tree, still counted in its parent
    /// while something below it is alive (invariant #6).
    #[inline]
    pub(crate) fn drop_work<W: Teardown>(&mut self, mut work: Pin<&mut W>) {
        if self.phase == Phase::Finished {
            return;
        }
        // A lazily entered future whose node was never built has nothing in the tree.
        let Some(node) = &self.node else {
            return;
        };
        // Nothing will read the node's outcome now: a panic of a `Drop` below is reported
        // and its payload dropped at once, not kept in a node that may outlive this future
        // (a zombie, a handle) and dropped by whoever lets go of it last.
        node.lock().abandon();
        work.as_mut().abandon(node);
        self.teardown(work);
    }

    /// The one teardown, for both ends of a node future: drop what runs under the node,
    /// leave the tree, then let the work leave what it keeps in the tree beside the node.
    fn teardown<W: Teardown>(&mut self, mut work: Pin<&mut W>) {
        work.as_mut().drop_inner(self.node());
        self.finish();
        work.leave(self.node());
    }

    /// Registers this poll's waker as the node's owner and keeps the node's timer armed
    /// (see "Registering late" in the module doc).
    #[inline]
    pub(crate) fn register(&mut self, cx: &mut Context<'_>) {
        self.set_owner(cx.waker());
        self.poll_timer(cx);
    }

    /// Before a wait: registers, unless this poll did already, and says whether the wait
    /// may go ahead. Once registered, a change of what the timer waits for (a deadline
    /// moved, a cancel's grace period started) wakes the owner, so the timer is re-armed on
    /// the next poll. The owner's lock is taken at most once a poll even where
    /// `Waker::will_wake` cannot tell that the waker is the same (tokio's `block_on` waker).
    ///
    /// `false` when registering found work queued that no poll took yet (a scope's local
    /// child spawned from another thread before the registration, whose wake went to no
    /// owner): the caller goes round the loop instead of waiting. After the registration,
    /// such a spawn wakes the owner.
    #[inline]
    fn before_wait<W: Work>(
        &mut self,
        registered: &mut bool,
        work: Pin<&mut W>,
        cx: &mut Context<'_>,
    ) -> bool {
        if *registered {
            return true;
        }
        // A timer already polled at the top of this poll is polled again here, only on a
        // poll that waits again after an earlier registration. Tracking it (an enum in
        // place of the bool) was measured: 20-50 more instructions per call in every row
        // of `benches/instructions.rs`, whose calls wait once.
        self.register(cx);
        *registered = true;
        !work.has_queued()
    }

    /// Registers the waker of this poll as the node's owner (a lock only when it changed).
    #[inline]
    pub(crate) fn set_owner(&mut self, waker: &Waker) {
        if self.owner.as_ref().is_some_and(|w| w.will_wake(waker)) {
            return;
        }
        self.node().set_owner(waker);
        self.owner = Some(waker.clone());
    }

    /// Keeps the node's one timer armed for what it waits for next (its deadline, or the end
    /// of its grace period) and fires it when due.
    #[inline]
    pub(crate) fn poll_timer(&mut self, cx: &mut Context<'_>) {
        if self.timer.is_none() && !self.timer_moved() {
            return; // nothing changed and nothing to wait for: no lock taken
        }
        self.poll_timer_slow(cx);
    }

    /// The node's deadline, grace end or own cancel bits changed since the timer was last
    /// decided.
    #[inline]
    fn timer_moved(&self) -> bool {
        let node = self.node();
        let st = node.state();
        self.seen != Some((node.timer_gen(), st.own_soft(), st.own_hard()))
    }

    #[inline(never)]
    fn poll_timer_slow(&mut self, cx: &mut Context<'_>) {
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
                    node.cancel(CancelReason::DeadlineExceeded)
                }
                Some(Armed::HardAt(_)) => node.escalate(),
                None => return,
            }
            self.seen = None;
            // Loop: a deadline with a grace period now waits for the grace to end.
        }
    }

    /// What to do with the inner future now.
    #[inline]
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
    #[inline]
    pub(crate) fn poll_inner<R>(&mut self, f: impl FnOnce() -> R) -> R {
        #[cfg(feature = "tracing")]
        let _entered = self.span.enter();
        context::enter_node(&mut self.node, &mut self.shields, f)
    }

    /// For a catcher whose inner future is still there: `Ready(true)` once nothing below the
    /// node is alive but scopes opened under it as an explicit parent (their holds may be
    /// owned by the inner future, so it must be dropped now to release them; the rest is
    /// awaited like everything below), `Ready(false)` if the node has no such scopes (nothing
    /// to do here). The owner must be registered first.
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
        let reason = inner.catch();
        Cancelled::with_suppressed(reason, inner.outcome.suppressed)
    }

    /// Done without ever having had a node (a lazily entered future that completed without
    /// building it): nothing to leave.
    pub(crate) fn finish_unbuilt(&mut self) {
        self.phase = Phase::Finished;
    }

    /// Leaves the tree: the node is done (invariant #6).
    pub(crate) fn finish(&mut self) {
        if self.phase == Phase::Finished {
            return;
        }
        self.phase = Phase::Finished;
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
