//! The cancel tree.
//!
//! Every scope and cancel scope owns a [`Node`]. A node is attached, when its future is
//! first polled, below the *ambient* node (the innermost node whose future is being polled
//! on this thread, see [`crate::context`]). Spawned children have no node of their own: they
//! run under their scope's node, so the per-child cost is one pointer in the task, one
//! `AbortHandle` in the scope's registry ([`crate::child::registry`]) and a count. A scope with a
//! concurrency limit also admits its children through a FIFO of spawn-time tickets
//! ([`crate::child::limit`]).
//!
//! A node's state is one word of bits: `OWN_SOFT`/`OWN_HARD` (the node was cancelled, and
//! its grace period is over) and `INH_SOFT`/`INH_HARD` (the same for an unshielded
//! ancestor). *Soft* is the signal (`cancelled()` resolves, `checkpoint()` fails); *hard*
//! means the futures under the node are dropped at their next poll. Everything on the hot
//! path (a child's poll, `is_cancelled()`) is one atomic load of that word.
//!
//! # Invariants
//!
//! 1. **Level-triggered state.** The state word is written only with the node's `inner`
//!    lock held, and bits are only ever set, never cleared. Once a node is cancelled it
//!    stays cancelled.
//! 2. **Lock order.** `inner` locks: a parent before its child (attach is the only place
//!    that holds two). `busy_lock`s: a child before its parent, hand over hand. A
//!    `busy_lock` may be held while an `inner` lock is taken, never the other way round.
//!    Wakers are woken, and user values (errors, payloads, wakers) dropped, only after every
//!    lock is released, so no foreign code runs under a lock of ours.
//! 3. **Cancellation reaches the whole unshielded subtree.** A node's inherited bits cover
//!    its parent's effective bits unless it is a shield. Both ways a node can join or be
//!    reached keep this: `attach` copies the parent's bits under the parent's lock, and
//!    `cancel` clones the child list in the same critical section that set the parent's
//!    bits, then `propagate` walks that list (iteratively, so depth is unbounded). A
//!    concurrent attach therefore either is in the cloned list or sees the bits. A node
//!    that already carries the bits is skipped with its subtree: whoever set them there
//!    spreads them further.
//! 4. **No lost wakeup.** `waiters` (the `cancelled()` futures) is empty whenever the node
//!    is soft: it is drained in the critical section that sets the bit, and a waiter checks
//!    the bit under the same lock before it inserts, so it either sees the bit or is in the
//!    slab when the drain happens (and knows its key was drained exactly when the bit is
//!    set). Spawned children are reached by abort instead: the hard bit is set before
//!    `abort_tasks` takes the registry lock, and `register_task` checks it under that lock,
//!    so a child is either aborted by the sweep or aborts itself on registration; a child
//!    that is running when the bit is set checks it after its poll.
//! 5. **Busy counting.** `busy` counts a node's live spawned children plus its child nodes
//!    whose own count is above zero; a node contributes exactly one unit to its parent while
//!    its count is above zero. Transitions through zero are serialised by the node's
//!    `busy_lock` and carried to the parent while it is held, so the units a node sends up
//!    arrive in order and a parent never sees a false zero. A scope returns only when its
//!    count is zero, i.e. nothing spawned anywhere below it is alive.
//! 6. **Done is final.** After `detach` (the node's future finished or was dropped) the node
//!    is out of its parent's child list and cancels are ignored (a cancel that was never
//!    delivered is discarded, C4). A dropped scope's node may still be busy: it stays
//!    counted in its parent's `busy` until its last child is gone, which is how its children
//!    are handed to the nearest live ancestor scope (`docs/design.md`, 4.12).
//! 7. **Closing is atomic with idleness.** A scope closes with one CAS from `0` to
//!    `CLOSED`, and a spawn counts itself with a CAS that fails on `CLOSED`: a spawn racing
//!    the last child either is counted first (and awaited) or is refused. Never lost.
//! 8. **Who catches.** In a task, the futures of nested nodes are polled outermost first. A
//!    node's future catches when its node is hard on its own account (`OWN_HARD`) and not
//!    by inheritance (`INH_HARD`): an inherited hard cancel is caught further out, by the
//!    outermost cancelled node, or the spawned child is dropped by its task wrapper. A
//!    catcher stops polling its inner future, waits until its `busy` count is zero (its
//!    subtree is hard-cancelled, so that happens), then drops the inner future. A future
//!    with a live shield inside it in the same task keeps being polled instead, and a
//!    spawned child that runs a shield is not aborted (it registers the shield with the
//!    scope it was spawned into) until the shield ended. A node opened under an explicit
//!    parent (`crate::Parent`) also catches an *inherited* hard cancel: no node future
//!    further out in its task belongs to the tree. It holds one unit of its parent's `busy`
//!    from when it was opened until its future finished or was dropped (#5), so the parent
//!    awaits it like a spawned child.
//!
//! Two kinds of children are not plain tasks of the scope's node. Local children
//! (`spawn_local`) are fields of the scope future, polled under its node and not counted in
//! `busy` (a catcher further out waits for `busy == 0` before it drops the future that holds
//! them). Background children run under a hidden child node (`background.rs`) that forwards
//! their outcomes to the scope; the scope's foreground work is done when its count is the
//! background node's one unit (`Node::foreground_idle`, exact under both busy locks, child
//! first).
//!
//! Lock order, in one line: `inner` (parent, then child) and `busy_lock` (child, then
//! parent) and `tasks` are never held together, except `busy_lock` then `inner`.

pub(crate) mod busy;
pub(crate) mod kind;
pub(crate) mod list;
#[cfg(all(test, taskscope_loom))]
mod loom_tests;
pub(crate) mod node;
pub(crate) mod slab;

pub use kind::NodeKind;
pub(crate) use node::{Config, Lazy, Limit, Node};
