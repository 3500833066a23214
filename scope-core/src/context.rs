//! The ambient context: which node the code running on this thread is under.
//!
//! Every future that drives a node (a scope, a cancel scope, a spawned child's task wrapper)
//! lends its node to a thread-local *frame* for the duration of its inner poll, and takes it
//! back afterwards (also on unwind). Lending moves the `Arc` in and out, so a poll costs no
//! reference-count traffic. The functions of this module read that frame; outside of any
//! scope they behave as if nothing is ever cancelled.
//!
//! The frame also counts the live shields inside the innermost node future being polled, so
//! a hard-cancelled node knows to keep polling until its shields finished (`docs/design.md`,
//! 4.11 Shields).
//!
//! A node future that nothing but its ancestors and its own timer can cancel (a scope
//! whose body holds no handle, a cancel scope with nothing set but a time limit:
//! `move_on_after`, `fail_after`; see `crate::timeout`) lends no node, only a *pending*
//! one ([`enter_lazy`]); the first read of the frame under it builds and attaches the node
//! ([`materialize`]), so every reader sees what an eager node would give, and a future that
//! completes without reading costs no node. Pending nodes nest (an attributed function that
//! calls another): the frame keeps a stack of them, and a read under the innermost builds
//! every one not built yet, outermost first, each below the one further out.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::time::Instant;

use crate::error::Cancelled;
use crate::sync::Arc;
use crate::tree::{Lazy, Node};

struct Frame {
    /// The innermost in-task node future being polled (a scope, a cancel scope).
    node: Option<Arc<Node>>,
    /// The scope the current task was spawned into, lent by the child's task wrapper.
    task_root: Option<Arc<Node>>,
    /// Live shields inside the innermost node future being polled (in this task).
    shields: u32,
    /// The node futures entered without their node ([`enter_lazy`]) whose polls are under
    /// way, outermost first. The entries not built yet are always the last ones: a build
    /// builds every one of them ([`materialize`]), and only a lazy entry pushes one.
    pending: Vec<Pending>,
}

/// The state of a node future polled without a node of its own.
enum Pending {
    /// Not built: what to build it from. The frame's `node` and `shields` are still those
    /// of the nearest built node future further out (a node future with no node has no
    /// shield inside: a shield attaches below its ambient node, which builds it first).
    Unbuilt(Lazy),
    /// Built by [`materialize`]: the frame's `node` is it, or a node below it while one
    /// pending further in is built too.
    Built {
        /// The frame's node before this one (the parent, to put back).
        parent: Option<Arc<Node>>,
        /// The frame's count of live shields before this node was built; the frame's
        /// count is this node's since.
        shields: u32,
    },
}

thread_local! {
    static FRAME: RefCell<Frame> = const {
        RefCell::new(Frame {
            node: None,
            task_root: None,
            shields: 0,
            pending: Vec::new(),
        })
    };
}

/// Lends a node future's node to the frame while `f` runs, with the node future's count of
/// live shields inside it: the change of that count while lent (shields started or ended
/// under `f`) is added to the enclosing frame's count too, so that every enclosing node
/// future knows about a shield inside it.
///
/// A node pending further out (this node future was entered elsewhere, or is polled inside
/// a lazily entered one) is built first: it is this node's ambient parent while lent, and
/// what stays in the frame's `pending` is then never a node still to build (nothing under
/// the lend reads a built one: a nested lazy entry sets it aside and puts it back).
#[inline]
pub(crate) fn enter_node<R>(
    slot: &mut Option<Arc<Node>>,
    shields: &mut u32,
    f: impl FnOnce() -> R,
) -> R {
    /// Puts the frame back, also on unwind. It holds the frame itself: one thread-local
    /// lookup for the lend and its return.
    struct Guard<'a> {
        frame: &'a RefCell<Frame>,
        slot: &'a mut Option<Arc<Node>>,
        shields: &'a mut u32,
        /// The frame's node and shield count before the lend.
        outer: Option<Arc<Node>>,
        outer_shields: u32,
    }
    impl Drop for Guard<'_> {
        fn drop(&mut self) {
            let mut frame = self.frame.borrow_mut();
            *self.slot = std::mem::replace(&mut frame.node, self.outer.take());
            let now = frame.shields;
            frame.shields = self
                .outer_shields
                .wrapping_add(now.wrapping_sub(*self.shields));
            *self.shields = now;
        }
    }
    let mut f = Some(f);
    let lent = FRAME.try_with(|cell| {
        let (outer, outer_shields) = {
            let mut frame = built(cell);
            let node = std::mem::replace(&mut frame.node, slot.take());
            (node, std::mem::replace(&mut frame.shields, *shields))
        };
        let _guard = Guard {
            frame: cell,
            slot,
            shields,
            outer,
            outer_shields,
        };
        (f.take().expect("called once"))()
    });
    match lent {
        Ok(r) => r,
        // No frame (the thread is being torn down): nothing to lend to.
        Err(_) => (f.take().expect("called once"))(),
    }
}

/// Lends a spawned child's scope to the frame, as the task's root, while `f` runs (a
/// spawned child's task wrapper, or a blocking child): code under `f` is under no node
/// future of its own, with no shield counted yet. A node pending further out (a task polled
/// inside another poll) is built first, as for [`enter_node`].
#[inline]
pub(crate) fn enter_task<R>(root: &mut Option<Arc<Node>>, f: impl FnOnce() -> R) -> R {
    /// Puts the frame back, also on unwind (see [`enter_node`]).
    struct Guard<'a> {
        frame: &'a RefCell<Frame>,
        slot: &'a mut Option<Arc<Node>>,
        /// The frame's node, task root and shield count before the lend.
        outer: (Option<Arc<Node>>, Option<Arc<Node>>, u32),
    }
    impl Drop for Guard<'_> {
        fn drop(&mut self) {
            let mut frame = self.frame.borrow_mut();
            let (node, task_root, shields) =
                (self.outer.0.take(), self.outer.1.take(), self.outer.2);
            frame.node = node;
            frame.shields = shields;
            *self.slot = std::mem::replace(&mut frame.task_root, task_root);
        }
    }
    let mut f = Some(f);
    let lent = FRAME.try_with(|cell| {
        let outer = {
            let mut frame = built(cell);
            (
                frame.node.take(),
                std::mem::replace(&mut frame.task_root, root.take()),
                std::mem::replace(&mut frame.shields, 0),
            )
        };
        let _guard = Guard {
            frame: cell,
            slot: root,
            outer,
        };
        (f.take().expect("called once"))()
    });
    match lent {
        Ok(r) => r,
        // No frame (the thread is being torn down): nothing to lend to.
        Err(_) => (f.take().expect("called once"))(),
    }
}

/// Runs `f`, a poll of a node future whose node is not built yet (every poll of a scope
/// whose body holds no handle or of a cancel scope with nothing set but a time limit, until
/// something builds it): the node is built from `lazy` and attached below the ambient node
/// only if code under `f` asks for its scope (`current()`, `is_cancelled()`, a nested scope
/// or child, `cancelled()`, a snapshot: everything goes through [`with_current`]). A future
/// that completes without asking costs no node, no lock and no clock reading. Lazily
/// entered node futures nest without building each other: the one further out is built
/// only when one further in is (it is that one's parent).
///
/// Returns `None` without running `f` if the ambient node is hard-cancelled (the scope
/// must not poll its future then) or there is no frame (thread teardown): the caller
/// enters the ordinary way. Otherwise `f`'s result; the node, if it was built, is in
/// `slot` (also on unwind), entered and attached, and `shields` is its count of live
/// shields inside it (as for [`enter_node`]; none before the build, see [`Pending`]).
#[inline(always)]
pub(crate) fn enter_lazy<R>(
    lazy: Lazy,
    slot: &mut Option<Arc<Node>>,
    shields: &mut u32,
    f: impl FnOnce() -> R,
) -> Option<R> {
    /// Takes this node future's entry off the frame, also on unwind; holds the frame (one
    /// thread-local lookup).
    struct Guard<'a> {
        frame: &'a RefCell<Frame>,
        slot: &'a mut Option<Arc<Node>>,
        shields: &'a mut u32,
    }
    impl Drop for Guard<'_> {
        #[inline]
        fn drop(&mut self) {
            let mut frame = self.frame.borrow_mut();
            // The last entry is this node future's: the entries of those polled under `f`
            // were taken off by their own guards.
            if let Some(Pending::Built { parent, shields }) = frame.pending.pop() {
                // Built under `f`: the node goes to its future, with the count of shields
                // inside it, which the enclosing frame's count includes (as for
                // `enter_node`, from a count of zero at the build).
                *self.slot = std::mem::replace(&mut frame.node, parent);
                let now = frame.shields;
                frame.shields = shields.wrapping_add(now);
                *self.shields = now;
            }
        }
    }
    debug_assert_eq!(*shields, 0, "a node future with no node has no shield");
    FRAME
        .try_with(|cell| {
            {
                let mut frame = cell.borrow_mut();
                // The nearest built node further out: a node pending further out is not
                // cancelled on its own account (nothing but its ancestors and its timer
                // can cancel it, and its timer ends its future, not its node).
                let ambient = frame.node.as_ref().or(frame.task_root.as_ref());
                if ambient.is_some_and(|n| n.state().is_hard()) {
                    return None;
                }
                frame.pending.push(Pending::Unbuilt(lazy));
            }
            let guard = Guard {
                frame: cell,
                slot,
                shields,
            };
            let r = f();
            drop(guard);
            Some(r)
        })
        .ok()
        .flatten()
}

/// `true` if a node pending in the frame is not built yet.
#[inline]
fn has_unbuilt(frame: &Frame) -> bool {
    matches!(frame.pending.last(), Some(Pending::Unbuilt(_)))
}

/// The frame, borrowed mutably, once every node pending in it is built ([`materialize`]).
#[inline]
fn built(cell: &RefCell<Frame>) -> std::cell::RefMut<'_, Frame> {
    let frame = cell.borrow_mut();
    if !has_unbuilt(&frame) {
        return frame;
    }
    drop(frame);
    materialize(cell);
    cell.borrow_mut()
}

/// Builds the lazily entered node futures' nodes of the frame that are not built yet,
/// outermost first, each attached below the one further out, and makes the innermost the
/// frame's node (see [`enter_lazy`]).
fn materialize(frame: &RefCell<Frame>) {
    // The first entry not built (they are the last ones).
    let first = frame
        .borrow()
        .pending
        .iter()
        .position(|p| matches!(p, Pending::Unbuilt(_)));
    let Some(mut at) = first else {
        return;
    };
    loop {
        let (lazy, parent) = {
            let f = frame.borrow();
            let Some(Pending::Unbuilt(lazy)) = f.pending.get(at) else {
                return;
            };
            (*lazy, f.node.clone().or_else(|| f.task_root.clone()))
        };
        // Built and attached outside the frame's borrow: attach takes locks and may wake.
        let node = lazy.node();
        node.attach(parent.as_ref());
        let mut f = frame.borrow_mut();
        let parent = f.node.replace(node);
        let shields = std::mem::replace(&mut f.shields, 0);
        f.pending[at] = Pending::Built { parent, shields };
        at += 1;
    }
}

/// Runs `f` with the ambient node (if any).
pub(crate) fn with_current<R>(f: impl FnOnce(Option<&Arc<Node>>) -> R) -> R {
    let mut f = Some(f);
    let r = FRAME.try_with(|cell| {
        let mut frame = cell.borrow();
        if has_unbuilt(&frame) {
            drop(frame);
            materialize(cell);
            frame = cell.borrow();
        }
        (f.take().expect("called once"))(frame.node.as_ref().or(frame.task_root.as_ref()))
    });
    match r {
        Ok(r) => r,
        Err(_) => (f.take().expect("called once"))(None),
    }
}

/// A clone of the ambient node.
pub(crate) fn current() -> Option<Arc<Node>> {
    with_current(|n| n.cloned())
}

/// A shield starts in the enclosing node future: count it there, and tell the scope the
/// task was spawned into (if any) not to abort this task while the shield runs. Returns
/// that scope and the task, to undo it with [`shield_exited`].
pub(crate) fn shield_entered() -> Option<(Arc<Node>, tokio::task::Id)> {
    FRAME
        .try_with(|frame| {
            let mut frame = frame.borrow_mut();
            frame.shields += 1;
            let root = frame.task_root.clone()?;
            let id = tokio::task::try_id()?;
            Some((root, id))
        })
        .ok()
        .flatten()
        .inspect(|(root, id)| root.shield_task(*id, true))
}

/// `true` if the frame of the code running now is the one a shield whose parent is
/// `counted` was counted in, or an enclosing one that the count reached since (the node of
/// the frame is `counted` or one of its ancestors). Outside any poll, or in an unrelated
/// frame, `false`.
pub(crate) fn counts_in_current_frame(counted: Option<&Arc<Node>>) -> bool {
    FRAME
        .try_with(|frame| {
            let frame = frame.borrow();
            let Some(current) = frame.node.as_ref().or(frame.task_root.as_ref()) else {
                return false;
            };
            let mut at = counted;
            while let Some(node) = at {
                if Arc::ptr_eq(node, current) {
                    return true;
                }
                at = node.parent();
            }
            false
        })
        .unwrap_or(false)
}

/// A shield ended (or was dropped) in the enclosing node future.
pub(crate) fn shield_exited(root: Option<(Arc<Node>, tokio::task::Id)>, counted_here: bool) {
    if counted_here {
        let _ = FRAME.try_with(|frame| {
            let mut frame = frame.borrow_mut();
            frame.shields = frame.shields.saturating_sub(1);
        });
    }
    if let Some((root, id)) = root {
        root.shield_task(id, false);
    }
}

/// Returns `true` if the code calling it runs under a cancelled node.
///
/// This is the soft signal: it turns `true` as soon as the nearest enclosing scope or
/// cancel scope (or any unshielded ancestor) is cancelled, and stays `true` (it is
/// level-triggered). Outside any scope it is always `false`.
///
/// Blocking children ([`Scope::spawn_blocking`](crate::Scope::spawn_blocking)) cannot be
/// dropped; they poll this to stop early.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// assert!(!taskscope::is_cancelled());
/// let r: Result<(), taskscope::Cancelled> = taskscope::scope(async |s| {
///     s.cancel();
///     assert!(taskscope::is_cancelled());
///     Ok(())
/// })
/// .await;
/// assert!(r.is_ok());
/// # }
/// ```
pub fn is_cancelled() -> bool {
    with_current(|n| n.is_some_and(|n| n.state().is_soft()))
}

/// The effective deadline of the code calling it: the earliest deadline of the enclosing
/// nodes up to the nearest shield, or `None` if there is none (or outside any scope).
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use std::time::Duration;
/// use taskscope::{current_deadline, move_on_after};
///
/// let start = tokio::time::Instant::now();
/// move_on_after(Duration::from_secs(5), async {
///     move_on_after(Duration::from_secs(10), async {
///         assert_eq!(current_deadline(), Some(start + Duration::from_secs(5)));
///     })
///     .await;
/// })
/// .await;
/// # }
/// ```
pub fn current_deadline() -> Option<Instant> {
    current().and_then(|n| n.effective_deadline())
}

/// Waits until the code calling it is cancelled, and tells why.
///
/// The node is the ambient one when `cancelled()` is called. Outside any scope the future
/// never completes (nothing there is ever cancelled). The wait is level-triggered: on a
/// node that is already cancelled it completes at once, every time.
///
/// # Cancel safety
///
/// This method is cancel safe: dropping the future only removes its registration.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use std::time::Duration;
/// use taskscope::{cancelled, CancelReason, CancelScope};
///
/// let cs = CancelScope::new().timeout(Duration::from_secs(1)).grace(Duration::from_secs(1));
/// let r = cs
///     .run(async {
///         let why = cancelled().await; // soft signal, then clean up during the grace period
///         why.reason()
///     })
///     .await;
/// assert_eq!(r, Ok(CancelReason::DeadlineExceeded));
/// # }
/// ```
pub fn cancelled() -> WaitForCancel {
    WaitForCancel {
        node: current(),
        key: None,
    }
}

/// The future of [`cancelled`].
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct WaitForCancel {
    node: Option<Arc<Node>>,
    key: Option<u32>,
}

#[cfg(all(test, taskscope_loom))]
impl WaitForCancel {
    /// Waits for `node` itself, not the ambient node: for the loom models, whose threads
    /// share one OS thread and so one thread-local frame.
    pub(crate) fn on(node: Arc<Node>) -> Self {
        WaitForCancel {
            node: Some(node),
            key: None,
        }
    }
}

impl std::fmt::Debug for WaitForCancel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WaitForCancel")
            .field("in_scope", &self.node.is_some())
            .field("registered", &self.key.is_some())
            .finish()
    }
}

impl Future for WaitForCancel {
    type Output = Cancelled;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Cancelled> {
        let this = &mut *self;
        let Some(node) = &this.node else {
            return Poll::Pending;
        };
        if node.state().is_soft() {
            this.key = None;
            return Poll::Ready(Cancelled::new(node.effective_reason()));
        }
        let mut inner = node.lock();
        // Checked again under the lock that drains `waiters` with the bit (invariant #4):
        // either the cancel already happened and we see it, or our waker is in the slab
        // when the drain runs.
        if node.state().is_soft() {
            drop(inner);
            this.key = None;
            return Poll::Ready(Cancelled::new(node.effective_reason()));
        }
        match this.key {
            Some(k) => inner.waiters.update(k, cx.waker()),
            None => this.key = Some(inner.waiters.insert(cx.waker().clone())),
        }
        Poll::Pending
    }
}

impl Drop for WaitForCancel {
    fn drop(&mut self) {
        if let (Some(node), Some(key)) = (&self.node, self.key) {
            let mut inner = node.lock();
            // Once soft, the slab was drained and the key is no longer ours (#4).
            let w = if node.state().is_soft() {
                None
            } else {
                inner.waiters.remove(key)
            };
            drop(inner);
            drop(w);
        }
    }
}

/// A cancellation point: fails if the calling code is cancelled, and lets other tasks run.
///
/// - Not cancelled: returns `Ok(())`, yielding to the runtime when the task's cooperative
///   budget is spent (so a loop with a checkpoint cannot starve its runtime).
/// - Cancelled, during a grace period (soft): returns `Err(Cancelled)`, every time.
/// - Hard-cancelled: never returns; the future under the cancelled node is dropped at this
///   point instead.
///
/// Outside any scope it only yields.
///
/// # Cancel safety
///
/// This method is cancel safe.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use taskscope::{checkpoint, CancelScope};
///
/// let cs = CancelScope::new();
/// let h = cs.handle();
/// let r = cs
///     .run(async move {
///         for i in 0.. {
///             if i == 100 {
///                 h.cancel();
///             }
///             checkpoint().await?; // dropped here once cancelled
///         }
///         Ok::<(), taskscope::Cancelled>(())
///     })
///     .await;
/// assert!(r.is_err());
/// # }
/// ```
pub async fn checkpoint() -> Result<(), Cancelled> {
    if let Some(state) = with_current(|n| n.map(|n| n.state())) {
        if state.is_hard() {
            return std::future::pending().await;
        }
        if state.is_soft() {
            let reason = with_current(|n| n.map(|n| n.effective_reason()));
            return Err(Cancelled::new(
                reason.unwrap_or(crate::CancelReason::ParentCancelled),
            ));
        }
    }
    tokio::task::consume_budget().await;
    Ok(())
}

/// Runs `fut` until it completes or the calling code is cancelled, whichever is first.
///
/// Cancellation is checked before `fut` on every poll, so even a future that is always
/// ready (a busy socket, a full channel) stops promptly. Returns `Err(Cancelled)` in the
/// soft phase too, so the caller can clean up during a grace period.
///
/// # Cancel safety
///
/// As cancel safe as `fut`: on cancellation `fut` is dropped.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use taskscope::{cancelable, CancelScope};
///
/// let cs = CancelScope::new();
/// cs.handle().cancel();
/// let r = cs.run(async { cancelable(std::future::ready(1)).await }).await;
/// assert!(r.is_err());
/// # }
/// ```
pub async fn cancelable<F: Future>(fut: F) -> Result<F::Output, Cancelled> {
    let mut wait = std::pin::pin!(cancelled());
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(c) = wait.as_mut().poll(cx) {
            return Poll::Ready(Err(c));
        }
        fut.as_mut().poll(cx).map(Ok)
    })
    .await
}
