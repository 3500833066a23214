//! The spawned children of a scope, as far as cancellation needs them: one `AbortHandle`
//! each, and which of them have a live shield.
//!
//! A child registers when it is spawned and never deregisters: finished handles are swept
//! out when the list has doubled since the last sweep, so the list stays within twice the
//! live children (plus a constant) and a finishing child touches nothing here. Becoming
//! hard aborts every registered child that has no live shield: tokio drops it at its next
//! poll, exactly like `JoinSet::abort_all`, and the child's wrapper uncounts it from `busy`
//! when its future is dropped.

use tokio::task::{AbortHandle, Id};

use crate::sync::{Ordering, lock};
use crate::tree::Node;
use crate::tree::list::List;

const MIN_SWEEP: usize = 64;

#[derive(Default)]
pub(crate) struct Registry {
    handles: List<AbortHandle>,
    /// Sweep finished handles once `handles` reaches this length.
    sweep_at: usize,
    /// Tasks spawned into this scope that run a shield right now, with their shield count.
    shielded: Vec<(Id, u32)>,
    /// Tasks whose handle cancelled them while they ran a shield: aborted when it ends.
    deferred: Vec<Id>,
}

impl Registry {
    fn is_shielded(&self, id: Id) -> bool {
        self.shielded.iter().any(|(t, _)| *t == id)
    }

    /// Cancels one child task: aborted now, or, if it runs a shield, once its last shield
    /// ended (`shield_task`). Under the registry's lock, as shields register under it: a
    /// shield either registered first (the abort waits for it) or starts in a task already
    /// aborted.
    fn cancel(&mut self, handle: &AbortHandle) {
        let id = handle.id();
        if !self.is_shielded(id) {
            handle.abort();
        } else if !self.deferred.contains(&id) {
            self.deferred.push(id);
        }
    }
}

impl Node {
    /// Registers a child just spawned into this scope. If the scope became hard meanwhile
    /// the child is aborted at once: a cancel either sees it here or is seen by it (the
    /// hard bit is set before `abort_tasks` takes this lock).
    pub(crate) fn register_task(&self, handle: AbortHandle) {
        let mut reg = lock(&self.tasks);
        if reg.handles.len() >= reg.sweep_at {
            reg.handles.retain(|h| !h.is_finished());
            reg.sweep_at = (reg.handles.len() * 2).max(MIN_SWEEP);
        }
        if self.state().is_hard() {
            handle.abort();
        }
        reg.handles.push(handle);
        self.has_tasks.store(true, Ordering::Release);
    }

    /// `true` once every registered child is marked complete by the runtime (its output
    /// stored, or dropped). Sweeps the finished ones out. Called once the scope is closed,
    /// when only the registrations of spawns admitted before (a spawner preempted before it
    /// registered) can follow: the threshold of the next sweep no longer matters.
    pub(crate) fn tasks_settled(&self) -> bool {
        if !self.has_tasks.load(Ordering::Acquire) {
            // No task ever registered. A task registering only now (its spawner was
            // preempted between the spawn and the registration, and its future already
            // ended) is not waited for: the same answer as an empty list below.
            return true;
        }
        let mut reg = lock(&self.tasks);
        reg.handles.retain(|h| !h.is_finished());
        reg.handles.is_empty()
    }

    /// The ids of the registered children still running, in spawn order.
    pub(crate) fn live_tasks(&self) -> Vec<Id> {
        let reg = lock(&self.tasks);
        reg.handles
            .iter()
            .filter(|h| !h.is_finished())
            .map(AbortHandle::id)
            .collect()
    }

    /// Aborts every registered child without a live shield (the node became hard).
    pub(crate) fn abort_tasks(&self) {
        let reg = lock(&self.tasks);
        for h in reg.handles.iter() {
            if !h.is_finished() && !reg.is_shielded(h.id()) {
                h.abort();
            }
        }
    }

    /// Cancels the child task `handle` alone ([`TaskHandle::cancel`](crate::TaskHandle)).
    pub(crate) fn cancel_task(&self, handle: &AbortHandle) {
        lock(&self.tasks).cancel(handle);
    }

    /// Cancels every spawned child registered so far, each as [`Node::cancel_task`] does
    /// (a child in a shield finishes the shield first). The node itself is not cancelled.
    pub(crate) fn cancel_tasks(&self) {
        let mut reg = lock(&self.tasks);
        let live: Vec<AbortHandle> = reg
            .handles
            .iter()
            .filter(|h| !h.is_finished())
            .cloned()
            .collect();
        for h in &live {
            reg.cancel(h);
        }
    }

    /// How many spawned children registered here have not finished.
    pub(crate) fn running_tasks(&self) -> usize {
        let reg = lock(&self.tasks);
        reg.handles.iter().filter(|h| !h.is_finished()).count()
    }

    /// A shield started (`entered`) or ended in the child task `id` of this scope.
    pub(crate) fn shield_task(&self, id: Id, entered: bool) {
        let mut reg = lock(&self.tasks);
        let pos = reg.shielded.iter().position(|(t, _)| *t == id);
        match (pos, entered) {
            (Some(i), true) => reg.shielded[i].1 += 1,
            (None, true) => {
                reg.shielded.push((id, 1));
                self.shielded.fetch_add(1, Ordering::AcqRel);
            }
            (Some(i), false) => {
                reg.shielded[i].1 -= 1;
                if reg.shielded[i].1 == 0 {
                    reg.shielded.swap_remove(i);
                    self.shielded.fetch_sub(1, Ordering::AcqRel);
                    // Its handle cancelled it meanwhile: the cancellation lands at the
                    // task's next await. (A hard cancel of the scope is seen by the task's
                    // wrapper right after this poll.)
                    if let Some(d) = reg.deferred.iter().position(|t| *t == id) {
                        reg.deferred.swap_remove(d);
                        if let Some(h) = reg.handles.iter().find(|h| h.id() == id) {
                            h.abort();
                        }
                    }
                }
            }
            (None, false) => {}
        }
    }

    /// `true` if the child task `id` runs a shield now. One atomic load unless some child
    /// of this scope does.
    pub(crate) fn task_shielded(&self, id: Option<Id>) -> bool {
        match id {
            Some(id) if self.shielded.load(Ordering::Acquire) != 0 => {
                lock(&self.tasks).is_shielded(id)
            }
            _ => false,
        }
    }
}
