//! Background children ([`Scope::spawn_background`](crate::Scope::spawn_background)):
//! service tasks that run as long as the scope's foreground work (the body, its local
//! children and its other children) does, are then cancelled with
//! [`CancelReason::ScopeDone`](crate::CancelReason::ScopeDone), and are still awaited.
//!
//! They run under a hidden node below the scope's, created at the first background spawn.
//! Its `busy` count is carried into the scope's like any child node's, so the scope awaits
//! them and a dropped scope hands them to its ancestor. The scope future sees that its
//! foreground work is done when its count is exactly the one unit of the background node
//! (`Node::foreground_idle`; a count dropping to one wakes it), then cancels the background
//! node (softly, with the scope's grace period) and waits for the rest. Errors and panics of
//! background children are recorded with the scope (the node *forwards*); an error that
//! arrives once the background node was cancelled is secondary (a service that stops with
//! `checkpoint()?` did not fail the scope).

use crate::error::SpawnError;
use crate::sync::{Arc, Ordering};
use crate::tree::node::Life;
use crate::tree::{Config, Node};

/// The scope's background node, created (and attached below the scope) if needed.
pub(crate) fn node(scope: &Arc<Node>) -> Result<Arc<Node>, SpawnError> {
    let grace = {
        let inner = scope.lock();
        if let Some(bg) = &inner.background {
            return Ok(bg.clone());
        }
        inner.grace
    };
    if scope.is_closed() {
        return Err(SpawnError::Closed);
    }
    let bg = Node::new(Config {
        // Unnamed: it is shown as `background` below its scope.
        grace,
        forward: true,
        kind: crate::snapshot::NodeKind::Background,
        ..Config::default()
    });
    if let Some(rt) = scope.runtime.get() {
        let _ = bg.runtime.set(rt.clone());
    }
    bg.attach(Some(scope));
    #[cfg(feature = "tracing")]
    {
        let parent = scope.lock().span.clone();
        let mut inner = bg.lock();
        let name = inner.name.as_deref().unwrap_or("");
        inner.span = tracing::debug_span!(parent: &parent, "background", name);
    }
    let mut inner = scope.lock();
    if inner.life == Life::Done {
        // The scope future went away meanwhile and already took its background node out:
        // one set now would never be taken (a reference cycle through `parent`).
        drop(inner);
        bg.detach();
        return Err(SpawnError::Closed);
    }
    if let Some(existing) = &inner.background {
        // Another spawn created one meanwhile: use it.
        let existing = existing.clone();
        drop(inner);
        bg.detach();
        return Ok(existing);
    }
    inner.background = Some(bg.clone());
    drop(inner);
    scope.has_background.store(true, Ordering::Release);
    Ok(bg)
}

/// Spawns through `spawn` into the scope's background node, holding the scope open while
/// doing so: the background node carries its first unit into the scope without looking at
/// the scope's `CLOSED` bit, so the scope must not be able to close in between (#7).
pub(crate) fn spawn<R>(
    scope: &Arc<Node>,
    spawn: impl FnOnce(&Arc<Node>) -> Result<R, SpawnError>,
) -> Result<R, SpawnError> {
    if !scope.try_add_task() {
        return Err(SpawnError::Closed);
    }
    struct Hold<'a>(&'a Node);
    impl Drop for Hold<'_> {
        fn drop(&mut self) {
            self.0.task_done();
        }
    }
    let _hold = Hold(scope);
    let bg = node(scope)?;
    spawn(&bg)
}

/// Takes the background node out of the scope (breaking the cycle through `parent`).
pub(crate) fn take(scope: &Node) -> Option<Arc<Node>> {
    scope.lock().background.take()
}
