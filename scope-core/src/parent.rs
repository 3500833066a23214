//! Opening a scope under a given scope instead of the ambient node: [`Parent`].
//!
//! A scope (or cancel scope) is normally a child of the node its future is first polled
//! under. Code that runs in a task the tree does not own (a connection task that hyper or
//! `axum::serve` spawned with `tokio::spawn`, a callback from a foreign library) has no such
//! node, so its scopes would be roots: nobody awaits what they leave behind. A [`Parent`]
//! names the scope they belong to instead.
//!
//! A scope opened under a parent holds one unit of the parent's busy count from the moment
//! it is opened until its future finished or was dropped (a [`Hold`]), exactly as a spawned
//! child does: the parent cannot close, and so cannot return, while the scope runs, even
//! when the scope spawned nothing. Its own children count in its node, which carries them up
//! to the parent (invariant #5), so children left behind by a dropped scope are awaited by
//! the parent too.
//!
//! Such a scope is the outermost node of its task, so it also catches a hard cancel that
//! it inherits (invariant #8): there is no enclosing node future in that task to do it.

use std::fmt;

use crate::error::SpawnError;
use crate::snapshot::TreeSnapshot;
use crate::sync::{Arc, Ordering};
use crate::tree::Node;

/// A scope that other scopes can be opened under, from any task.
///
/// Made from a [`ScopeHandle`](crate::ScopeHandle) (`Parent::from(&handle)`); passed to
/// [`ScopeBuilder::parent`](crate::ScopeBuilder::parent) and
/// [`CancelScope::parent`](crate::CancelScope::parent). A scope opened under it is a child
/// of that scope's node rather than of the ambient one: it is cancelled with it, bounded by
/// its deadline, and the scope awaits it (and every task it leaves behind) before it exits.
/// It is what a server scope hands to the code that serves its connections.
///
/// A `Parent` is a cheap clone (one reference count). Holding one keeps no scope open;
/// opening a scope under a scope that finished fails with [`SpawnError::Closed`].
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), taskscope::Cancelled> {
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use std::time::Duration;
/// use taskscope::{Cancelled, Parent, Scope};
///
/// let done = Arc::new(AtomicBool::new(false));
/// let d = done.clone();
/// taskscope::scope(async |server| {
///     let parent = Parent::from(&server.handle());
///     // Opened here, so counted by the server scope from now on ...
///     let request = Scope::builder().name("request").parent(&parent).expect("the parent runs");
///     // ... and run in a task the tree does not own, as a web server runs a connection.
///     tokio::spawn(request.run(async move |s| {
///         s.spawn(async move {
///             tokio::time::sleep(Duration::from_millis(10)).await;
///             d.store(true, Ordering::SeqCst);
///             Ok(())
///         }); // awaited by the request scope
///         Ok::<_, Cancelled>(())
///     }));
///     Ok::<_, Cancelled>(())
/// })
/// .await?;
/// // The server scope returned only after the request scope and its child finished.
/// assert!(done.load(Ordering::SeqCst));
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Parent {
    node: Arc<Node>,
}

impl Parent {
    pub(crate) fn new(node: Arc<Node>) -> Self {
        Parent { node }
    }

    /// Counts a scope about to be opened under this parent.
    pub(crate) fn hold(&self) -> Result<Hold, SpawnError> {
        if self.node.try_add_task() {
            // Counted in `busy` first, then as a hold (and uncounted in the reverse order),
            // so `busy` never reads below `holds` (see `Node::idle_but_holds`).
            self.node.holds.fetch_add(1, Ordering::AcqRel);
            Ok(Hold {
                node: self.node.clone(),
            })
        } else {
            Err(SpawnError::Closed)
        }
    }

    /// `true` once the scope finished: opening a scope under it fails.
    pub fn is_closed(&self) -> bool {
        self.node.is_closed()
    }

    /// `true` once the scope (or an ancestor) was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.node.state().is_soft()
    }

    /// A copy of the cancel tree below (and including) the scope: see [`TreeSnapshot`].
    pub fn snapshot(&self) -> TreeSnapshot {
        TreeSnapshot::of(&self.node)
    }
}

impl fmt::Debug for Parent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Copied out first: no formatting (foreign code) under the node's lock.
        let (name, reason) = {
            let inner = self.node.lock();
            (inner.name.clone(), inner.reason)
        };
        f.debug_struct("Parent")
            .field("name", &name)
            .field("reason", &reason)
            .field("closed", &self.node.is_closed())
            .finish()
    }
}

impl From<&Parent> for Parent {
    fn from(p: &Parent) -> Self {
        p.clone()
    }
}

/// One unit of a parent's busy count, held by a scope opened under it from the moment it
/// was opened until its future finished or was dropped.
pub(crate) struct Hold {
    node: Arc<Node>,
}

impl Hold {
    /// The parent's node.
    pub(crate) fn node(&self) -> &Arc<Node> {
        &self.node
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.node.holds.fetch_sub(1, Ordering::AcqRel);
        self.node.task_done();
    }
}
