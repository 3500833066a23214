//! Seeing the live cancel tree: [`TreeSnapshot`], taken with [`snapshot`] (the whole tree
//! the caller runs in), [`ScopeHandle::snapshot`](crate::ScopeHandle::snapshot) or
//! [`CancelHandle::snapshot`](crate::CancelHandle::snapshot) (a subtree).
//!
//! A snapshot copies, node by node, what each node of the tree knows: its kind and name, its
//! state, its deadline and the time left, its cancel reason, and the spawned children
//! (tasks) still running in it. Each node is locked only while it is copied, so the snapshot
//! is consistent per node, not across the tree: a child may finish while its siblings are
//! read. Taking one costs a lock per node and an allocation per task listed; it is meant
//! for debugging and reports, not for a hot path.
//!
//! Nodes are kept in a flat list in depth-first order with their depth and parent index
//! (no recursion, so a tree 100,000 levels deep can be snapshotted, printed and dropped).

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use tokio::task::Id;
use tokio::time::Instant;

use crate::error::CancelReason;
use crate::sync::{Arc, Ordering};
use crate::tree::Node;
pub use crate::tree::NodeKind;
use crate::tree::node::Life;

/// Where a node is in its life, as a [`NodeSnapshot`] saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NodeState {
    /// Not cancelled; its body (or inner future) runs.
    Running,
    /// Its body finished; it waits for its children.
    Finishing,
    /// Cancelled (by itself or an ancestor): its code sees the signal (`hard == false`,
    /// during a grace period), or is being dropped (`hard == true`); it waits for its
    /// children to go.
    Cancelling {
        /// The node's own reason, or `ParentCancelled` if an ancestor was cancelled.
        reason: CancelReason,
        /// Past the grace period: futures below are dropped at their next poll.
        hard: bool,
    },
    /// Its future finished or was dropped; it only waits for children handed to an
    /// ancestor (a dropped scope's zombies).
    Done,
}

/// One node of a [`TreeSnapshot`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct NodeSnapshot {
    /// 0 for the snapshot's root.
    pub depth: usize,
    /// Index of the parent in [`TreeSnapshot::nodes`]; `None` for the root.
    pub parent: Option<usize>,
    /// What kind of node it is.
    pub kind: NodeKind,
    /// Its name, if it was given one.
    pub name: Option<Cow<'static, str>>,
    /// Running, finishing, cancelling or done.
    pub state: NodeState,
    /// Its own deadline (not the effective one inherited from ancestors).
    pub deadline: Option<Instant>,
    /// Time left until `deadline` when the snapshot was taken (zero if it passed).
    pub time_left: Option<Duration>,
    /// A shield: its ancestors' cancellation does not reach it.
    pub shield: bool,
    /// The task the node's future runs in, if it runs in one.
    pub task: Option<Id>,
    /// The spawned children still running in this node (tokio task ids), in spawn order.
    pub tasks: Vec<Id>,
    /// How many spawned and blocking children (not nested nodes) are alive.
    pub live_children: usize,
    /// In a scope with a [`limit`](crate::ScopeBuilder::limit): how many of them (and of
    /// the producers in [`reserve`](crate::Scope::reserve)) wait for a slot.
    pub waiting: usize,
}

impl NodeSnapshot {
    /// `"scope \"fetch\""`, `"cancel scope"`, ...: how the node is shown.
    pub fn label(&self) -> String {
        let kind = match self.kind {
            NodeKind::Scope => "scope",
            NodeKind::CancelScope if self.shield => "shield",
            NodeKind::CancelScope => "cancel scope",
            NodeKind::Background => "background",
        };
        match &self.name {
            Some(n) => format!("{kind} {n:?}"),
            None => kind.to_string(),
        }
    }
}

/// A copy of (part of) the live cancel tree; print it with `{}` for an indented text tree.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use std::time::Duration;
/// use taskscope::{Cancelled, Scope, snapshot};
///
/// let r: Result<(), Cancelled> = Scope::builder()
///     .name("request")
///     .timeout(Duration::from_secs(2))
///     .run(async |s| {
///         s.spawn(async {
///             tokio::time::sleep(Duration::from_millis(10)).await;
///             Ok(())
///         });
///         let tree = snapshot();
///         assert_eq!(tree.nodes()[0].name.as_deref(), Some("request"));
///         assert_eq!(tree.nodes()[0].live_children, 1);
///         println!("{tree}");
///         // scope "request" [running] deadline in 2s
///         // └─ task 2
///         Ok(())
///     })
///     .await;
/// assert!(r.is_ok());
/// # }
/// ```
#[derive(Clone, Debug, Default)]
pub struct TreeSnapshot {
    nodes: Vec<NodeSnapshot>,
}

impl TreeSnapshot {
    /// The nodes, depth first (a node before its children, siblings in attach order).
    pub fn nodes(&self) -> &[NodeSnapshot] {
        &self.nodes
    }

    /// `true` if the snapshot has no node (taken outside any scope).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The first node named `name`, depth first.
    pub fn find(&self, name: &str) -> Option<&NodeSnapshot> {
        self.nodes.iter().find(|n| n.name.as_deref() == Some(name))
    }

    /// The index of the first node named `name` (for [`children`](Self::children)).
    pub fn position(&self, name: &str) -> Option<usize> {
        self.nodes
            .iter()
            .position(|n| n.name.as_deref() == Some(name))
    }

    /// The children of node `i` (indices into [`nodes`](Self::nodes)).
    pub fn children(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        self.nodes
            .iter()
            .enumerate()
            .skip(i + 1)
            .take_while(move |(_, n)| n.depth > self.nodes[i].depth)
            .filter(move |(_, n)| n.parent == Some(i))
            .map(|(j, _)| j)
    }

    /// Copies the subtree below `root`.
    pub(crate) fn of(root: &Arc<Node>) -> TreeSnapshot {
        let now = Instant::now();
        let mut nodes = Vec::new();
        // Depth first without recursion: (node, depth, parent index).
        let mut stack: Vec<(Arc<Node>, usize, Option<usize>)> = vec![(root.clone(), 0, None)];
        while let Some((node, depth, parent)) = stack.pop() {
            let (snap, children) = copy(&node, depth, parent, now);
            let me = nodes.len();
            nodes.push(snap);
            // Reversed, so that the first child is popped (and listed) first.
            for child in children.into_iter().rev() {
                stack.push((child, depth + 1, Some(me)));
            }
        }
        TreeSnapshot { nodes }
    }
}

/// Copies one node; returns it and its child nodes.
fn copy(
    node: &Arc<Node>,
    depth: usize,
    parent: Option<usize>,
    now: Instant,
) -> (NodeSnapshot, Vec<Arc<Node>>) {
    let st = node.state();
    let (mut snap, children) = {
        let inner = node.lock();
        let state = if inner.is_done() {
            NodeState::Done
        } else if st.is_soft() {
            NodeState::Cancelling {
                reason: inner.reason.unwrap_or(CancelReason::ParentCancelled),
                hard: st.is_hard(),
            }
        } else if inner.life() == Life::Finishing {
            NodeState::Finishing
        } else {
            NodeState::Running
        };
        let snap = NodeSnapshot {
            depth,
            parent,
            kind: inner.kind,
            name: inner.name.clone(),
            state,
            deadline: inner.deadline,
            time_left: inner.deadline.map(|d| d.saturating_duration_since(now)),
            shield: inner.shield,
            task: inner.task,
            tasks: Vec::new(),
            live_children: 0,
            waiting: node.limiter.as_ref().map_or(0, |l| l.waiting()),
        };
        (snap, inner.children.to_vec())
    };
    // Not tasks: busy child nodes (a unit each) and the holds of scopes opened under this
    // node as an explicit parent (running, or opened and not yet entered).
    let busy_nodes = children.iter().filter(|c| !c.is_idle()).count();
    let holds = node.holds.load(Ordering::Acquire);
    snap.live_children = node.busy_count().saturating_sub(busy_nodes + holds);
    snap.tasks = node.live_tasks();
    (snap, children)
}

impl fmt::Display for TreeSnapshot {
    /// An indented tree, one node per line, then one line per task that runs no node of
    /// its own:
    ///
    /// ```text
    /// scope "search" [running]
    /// ├─ scope "request 1" [cancelling: cancelled explicitly] deadline passed
    /// │  ├─ cancel scope "backend eu" (task 12) [cancelling: the parent scope was cancelled]
    /// │  └─ task 13
    /// └─ scope "request 2" [finishing] deadline in 1.2s
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines = self.layout();
        // For each depth `d` from 1, at `d - 1`: whether the ancestor at that depth has lines
        // still to come below its parent (draw a `│` through it). (The root's entry, at 0,
        // is truncated away by the next line.)
        let mut open: Vec<bool> = Vec::new();
        for (i, n) in self.nodes.iter().enumerate() {
            open.truncate(n.depth.saturating_sub(1));
            let last = lines[i].last;
            write_prefix(f, &open, n.depth, last)?;
            write!(f, "{}", n.label())?;
            if let (Some(t), Some(p)) = (n.task, n.parent) {
                if self.nodes[p].task != Some(t) {
                    write!(f, " (task {t})")?;
                }
            }
            match n.state {
                NodeState::Running => f.write_str(" [running]")?,
                NodeState::Finishing => f.write_str(" [finishing]")?,
                NodeState::Cancelling { reason, hard } => write!(
                    f,
                    " [{}: {reason}]",
                    if hard { "dropping" } else { "cancelling" }
                )?,
                NodeState::Done if n.live_children > 0 || lines[i].has_children => {
                    f.write_str(" [done, children handed up]")?
                }
                NodeState::Done => f.write_str(" [done]")?,
            }
            if n.waiting > 0 {
                write!(f, " {} waiting for a slot", n.waiting)?;
            }
            match n.time_left {
                Some(d) if d.is_zero() => f.write_str(" deadline passed")?,
                Some(d) => write!(f, " deadline in {d:.1?}")?,
                None => {}
            }
            writeln!(f)?;
            open.push(!last);
            // Its tasks that run no node of their own come after its child nodes: they are
            // written when its last descendant was (see `layout`).
            for &k in &lines[i].tails {
                let owner = &self.nodes[k];
                open.truncate(owner.depth);
                let bare = &lines[k].bare;
                let blocking = owner.live_children.saturating_sub(owner.tasks.len());
                let count = bare.len() + usize::from(blocking > 0);
                for (m, t) in bare.iter().enumerate() {
                    write_prefix(f, &open, owner.depth + 1, m + 1 == count)?;
                    writeln!(f, "task {t}")?;
                }
                if blocking > 0 {
                    write_prefix(f, &open, owner.depth + 1, true)?;
                    writeln!(f, "{blocking} blocking or starting")?;
                }
            }
        }
        Ok(())
    }
}

/// How a node is drawn.
#[derive(Default)]
struct Line {
    /// No line comes after it under its parent.
    last: bool,
    /// Its tasks that run no node of their own.
    bare: Vec<Id>,
    /// Nodes whose task lines are written right after this node's line (it is their last
    /// descendant, or they have no children), innermost first.
    tails: Vec<usize>,
    /// It has child nodes.
    has_children: bool,
}

impl TreeSnapshot {
    /// One pass over the nodes (linear, however deep the tree).
    fn layout(&self) -> Vec<Line> {
        let n = self.nodes.len();
        let mut lines: Vec<Line> = (0..n).map(|_| Line::default()).collect();
        let mut last_child: Vec<Option<usize>> = vec![None; n];
        let mut child_tasks: Vec<Vec<Id>> = vec![Vec::new(); n];
        for (i, node) in self.nodes.iter().enumerate() {
            if let Some(p) = node.parent {
                last_child[p] = Some(i);
                lines[p].has_children = true;
                if let Some(t) = node.task {
                    child_tasks[p].push(t);
                }
            }
        }
        for (i, node) in self.nodes.iter().enumerate() {
            lines[i].bare = node
                .tasks
                .iter()
                .copied()
                .filter(|t| !child_tasks[i].contains(t))
                .collect();
        }
        let has_tail = |lines: &[Line], i: usize| {
            !lines[i].bare.is_empty() || self.nodes[i].live_children > self.nodes[i].tasks.len()
        };
        // The last line drawn in each node's subtree, computed bottom-up (children come
        // after their parent, so walk backwards).
        let mut end: Vec<usize> = (0..n).collect();
        for i in (0..n).rev() {
            if let Some(c) = last_child[i] {
                end[i] = end[c];
            }
        }
        for (i, &e) in end.iter().enumerate() {
            if has_tail(&lines, i) {
                lines[e].tails.push(i);
            }
        }
        // Tails of deeper nodes first (innermost first).
        for line in &mut lines {
            line.tails
                .sort_by_key(|&k| std::cmp::Reverse(self.nodes[k].depth));
        }
        for i in 0..n {
            let last = match self.nodes[i].parent {
                None => true,
                Some(p) => last_child[p] == Some(i) && !has_tail(&lines, p),
            };
            lines[i].last = last;
        }
        lines
    }
}

fn write_prefix(
    f: &mut fmt::Formatter<'_>,
    open: &[bool],
    depth: usize,
    last: bool,
) -> fmt::Result {
    if depth == 0 {
        return Ok(());
    }
    // `open` holds one entry per ancestor between the root and this line (`depth - 1`).
    for &o in open {
        f.write_str(if o { "│  " } else { "   " })?;
    }
    f.write_str(if last { "└─ " } else { "├─ " })
}

/// A snapshot of the whole cancel tree the calling code runs in, from its root (the
/// outermost scope or cancel scope of the task, or further up through the scopes its task
/// was spawned from). Empty outside any scope.
///
/// # Examples
///
/// See [`TreeSnapshot`].
pub fn snapshot() -> TreeSnapshot {
    let Some(mut node) = crate::context::current() else {
        return TreeSnapshot::default();
    };
    while let Some(p) = node.parent().cloned() {
        node = p;
    }
    TreeSnapshot::of(&node)
}
