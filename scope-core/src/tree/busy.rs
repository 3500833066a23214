//! Counting what keeps a node busy: its live spawned children, and its child nodes that are
//! busy themselves.
//!
//! A node contributes exactly one unit to its parent's count while its own count is above
//! zero. So a scope waiting for `busy == 0` waits for every spawned child anywhere below it,
//! including the children of nested scopes whose futures were dropped (they are handed up
//! this way: `docs/design.md`, 4.12), while in-task nodes that run no task cost nothing.
//!
//! The hot path (a count that stays above zero) is one CAS. Transitions through zero take the
//! node's `busy_lock` and are carried to the parent while it is held, hand over hand (lock the
//! parent, then release the child), so the units a node sends up arrive in the order its
//! transitions happened (#5).

use std::task::Waker;

use super::list::List;
use super::node::Node;
use super::slab::WakerSlab;
use crate::sync::Ordering::{AcqRel, Acquire, Relaxed};
use crate::sync::{MutexGuard, lock};

/// Set once a node accepts no more children; the count below it keeps counting down.
pub(crate) const CLOSED: usize = 1 << (usize::BITS - 1);

/// Which way a unit of `busy` goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Unit {
    /// A child (or a busy child node) is counted.
    Add,
    /// It is gone.
    Remove,
}

impl Node {
    /// Counts a new spawned child. `false` if the node is closed.
    pub(crate) fn try_add_task(&self) -> bool {
        let mut cur = self.busy.load(Relaxed);
        loop {
            if cur & CLOSED != 0 {
                return false;
            }
            if cur == 0 {
                return self.transition(Unit::Add);
            }
            match self
                .busy
                .compare_exchange_weak(cur, cur + 1, AcqRel, Relaxed)
            {
                Ok(_) => return true,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Uncounts a spawned child whose future is gone.
    pub(crate) fn task_done(&self) {
        let mut cur = self.busy.load(Relaxed);
        loop {
            if cur & !CLOSED <= 1 {
                self.transition(Unit::Remove);
                return;
            }
            match self
                .busy
                .compare_exchange_weak(cur, cur - 1, AcqRel, Relaxed)
            {
                Ok(_) => {
                    if (cur - 1) & !CLOSED == 1 && self.has_background.load(Relaxed) {
                        // Maybe only the background node is left (see `foreground_idle`).
                        self.wake_owner();
                    } else if self.holds.load(Relaxed) != 0 {
                        // Maybe only holds are left (see `idle_but_holds`).
                        self.wake_owner();
                    }
                    return;
                }
                Err(actual) => cur = actual,
            }
        }
    }

    /// `true` if nothing but the background node `bg` keeps this node busy: the scope's
    /// foreground work is done. Exact: with `bg`'s busy lock held, `bg` cannot pass through
    /// zero, and with ours held after it, a unit it carried up before has arrived (#5).
    pub(crate) fn foreground_idle(&self, bg: &Node) -> bool {
        let _bg = lock(&bg.busy_lock);
        let _me = lock(&self.busy_lock);
        let me = self.busy.load(Acquire) & !CLOSED;
        let bg = bg.busy.load(Acquire) & !CLOSED;
        me == usize::from(bg > 0)
    }

    /// Live spawned children plus busy child nodes (a snapshot's reading).
    pub(crate) fn busy_count(&self) -> usize {
        self.busy.load(Acquire) & !CLOSED
    }

    /// `true` if nothing keeps this node busy but the holds of scopes opened under it as an
    /// explicit parent. `holds` is read first: a hold is counted in `busy` before `holds`
    /// and uncounted after it, so a hold taken or released meanwhile makes this `false`,
    /// never a false `true`; the owner is woken by every decrement while holds exist.
    pub(crate) fn idle_but_holds(&self) -> bool {
        let holds = self.holds.load(Acquire);
        self.busy.load(Acquire) & !CLOSED <= holds
    }

    /// `true` if nothing spawned below this node is alive.
    pub(crate) fn is_idle(&self) -> bool {
        self.busy.load(Acquire) & !CLOSED == 0
    }

    /// Closes an idle node: from now on spawning is refused. `false` if it is busy.
    ///
    /// A spawn racing this either counted itself first (and the close fails, so the scope
    /// waits for it) or sees `CLOSED` and is refused: never accepted-but-not-awaited.
    pub(crate) fn try_close(&self) -> bool {
        self.busy
            .compare_exchange(0, CLOSED, AcqRel, Acquire)
            .is_ok()
            || self.is_closed()
    }

    /// Closes the node whether or not it is busy (its future was dropped).
    pub(crate) fn close(&self) {
        self.busy.fetch_or(CLOSED, AcqRel);
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.busy.load(Acquire) & CLOSED != 0
    }

    /// A change of `busy` by one that may pass through zero, carried up the chain of
    /// parents while it does. Wakes the owners of the nodes that became idle.
    #[cold]
    fn transition(&self, unit: Unit) -> bool {
        let inc = unit == Unit::Add;
        let mut idle: List<Waker> = List::default();
        let guard = lock(&self.busy_lock);
        // The first level respects CLOSED on increments; the count may have moved meanwhile.
        let mut cur = self.busy.load(Relaxed);
        let prev = loop {
            if inc && cur & CLOSED != 0 {
                return false;
            }
            let next = if inc { cur + 1 } else { cur - 1 };
            match self.busy.compare_exchange_weak(cur, next, AcqRel, Relaxed) {
                Ok(p) => break p,
                Err(actual) => cur = actual,
            }
        };
        let through_zero = if inc {
            prev & !CLOSED == 0
        } else {
            prev & !CLOSED == 1
        };
        if !inc && through_zero {
            self.idle_into(&mut idle);
        }
        if through_zero {
            self.carry_up(guard, unit, &mut idle);
        } else {
            drop(guard);
        }
        for w in idle {
            w.wake();
        }
        true
    }

    /// Sends one unit to the parent, and on through every ancestor whose count passes
    /// through zero by it, hand over hand. `guard` is this node's `busy_lock`.
    pub(super) fn carry_up<'a>(
        &'a self,
        guard: MutexGuard<'a, ()>,
        unit: Unit,
        idle: &mut List<Waker>,
    ) {
        let inc = unit == Unit::Add;
        let mut guard = guard;
        let mut node: &Node = self;
        let mut through_zero = true;
        while through_zero {
            let Some(parent) = node.parent.get() else {
                break;
            };
            // Hand over hand: the parent's lock before the child's release (#5).
            let parent_guard = lock(&parent.busy_lock);
            drop(guard);
            guard = parent_guard;
            // A closed parent (its future is gone) still counts down its zombies.
            let prev = if inc {
                parent.busy.fetch_add(1, AcqRel)
            } else {
                parent.busy.fetch_sub(1, AcqRel)
            };
            through_zero = if inc {
                prev & !CLOSED == 0
            } else {
                prev & !CLOSED == 1
            };
            if !inc && through_zero {
                parent.idle_into(idle);
            } else if !inc
                && ((prev & !CLOSED == 2 && parent.has_background.load(Relaxed))
                    || parent.holds.load(Relaxed) != 0)
            {
                parent.owner_into(idle);
            }
            node = parent;
        }
        drop(guard);
    }
}

/// The `wait_children()` futures of a node, woken when its busy count reaches zero.
///
/// A waiter checks `is_idle()` under the node's `inner` lock before it registers, and every
/// transition to zero drains the waiters under that lock after it changed the count: so a
/// waiter either sees the zero or is drained by it (no lost wakeup). A drain bumps the
/// generation, so a waiter knows its key was drained (and is not removed twice) even if the
/// count rose again before it was polled.
#[derive(Default)]
pub(crate) struct IdleWaiters {
    slab: WakerSlab,
    generation: u64,
}

impl IdleWaiters {
    pub(super) fn drain_into(&mut self, out: &mut List<Waker>) {
        let mut wakers = Vec::new();
        self.slab.drain_into(&mut wakers);
        for w in wakers {
            out.push(w);
        }
        self.generation += 1;
    }
}

/// Where a waiter is registered: its key and the generation it was given in.
pub(crate) type IdleKey = (u32, u64);

impl Node {
    /// `Ready` once nothing spawned below this node is alive; otherwise registers `waker`
    /// (under `key`, kept by the caller) to be woken when that happens.
    pub(crate) fn poll_idle_waiter(&self, key: &mut Option<IdleKey>, waker: &Waker) -> bool {
        if self.is_idle() {
            return true;
        }
        let mut inner = self.lock();
        if self.is_idle() {
            return true;
        }
        let waiters = inner.idle_waiters.get_or_insert_with(Box::default);
        match *key {
            Some((k, generation)) if generation == waiters.generation => {
                waiters.slab.update(k, waker)
            }
            _ => *key = Some((waiters.slab.insert(waker.clone()), waiters.generation)),
        }
        false
    }

    /// A waiter that stops waiting (its future dropped) leaves the slab, unless its key
    /// was drained already.
    pub(crate) fn remove_idle_waiter(&self, key: IdleKey) {
        let removed = {
            let mut inner = self.lock();
            match &mut inner.idle_waiters {
                Some(w) if w.generation == key.1 => w.slab.remove(key.0),
                _ => None,
            }
        };
        drop(removed);
    }
}

// Not in the loom build: loom's locks and atomics exist only inside a model, and these
// tests make nodes outside one.
#[cfg(all(test, not(taskscope_loom)))]
mod tests {
    use super::super::{Config, Node};

    /// The driver closes its node again on every poll after the first close (a poll that
    /// waits for a finished child's task to be marked complete, on another worker, comes
    /// back): closing a closed node must succeed, also while something below still counts.
    /// Only that race reaches a second close through the public API.
    #[test]
    fn closing_a_closed_node_succeeds() {
        let _alone = super::super::node::node_tests_alone();
        let idle = Node::new(Config::default());
        assert!(idle.try_close(), "an idle node closes");
        assert!(idle.try_close(), "and closes again");

        let busy = Node::new(Config::default());
        assert!(busy.try_add_task());
        assert!(!busy.try_close(), "a busy node does not close");
        busy.close();
        assert!(busy.try_close(), "a node closed while busy is closed");
        busy.task_done();
        assert!(busy.try_close());
    }
}
