//! `tracing` spans (feature `tracing`): one per scope and cancel scope, entered while its
//! inner future is polled, and one per spawned child, entered while the child runs, each
//! parented like the cancel tree (a child's span below its scope's, a scope inside a child
//! below the child's). Events for cancellation (with its reason), deadline expiry, child
//! failure and panic are emitted in the span of the node they concern.
//!
//! A child gets a span only if a subscriber wants `DEBUG` spans of this crate at spawn time;
//! otherwise the child's task is the plain wrapper (no extra bytes per task).

use std::future::Future;

use tracing::Instrument;

use crate::sync::Arc;
use crate::tree::Node;
use crate::tree::NodeKind;

/// Creates the span of `node` at its entry, below the span current at its first poll (the
/// enclosing node's or child's) or, if there is none, below its parent node's.
pub(crate) fn enter_node(node: &Arc<Node>, parent: Option<&Arc<Node>>) -> tracing::Span {
    if !tracing::span_enabled!(tracing::Level::DEBUG) {
        return tracing::Span::none(); // nobody listens: no lock, no span
    }
    let current = tracing::Span::current();
    let parent_span = if current.is_none() {
        parent.map(|p| p.lock().span.clone())
    } else {
        Some(current)
    };
    let mut inner = node.lock();
    let name = inner.name.as_deref().unwrap_or("");
    let span = match (inner.kind, &parent_span) {
        (NodeKind::Scope, Some(p)) => tracing::debug_span!(parent: p, "scope", name),
        (NodeKind::Scope, None) => tracing::debug_span!(parent: None, "scope", name),
        (NodeKind::CancelScope, Some(p)) => tracing::debug_span!(parent: p, "cancel_scope", name),
        (NodeKind::CancelScope, None) => tracing::debug_span!(parent: None, "cancel_scope", name),
        (NodeKind::Background, Some(p)) => tracing::debug_span!(parent: p, "background", name),
        (NodeKind::Background, None) => tracing::debug_span!(parent: None, "background", name),
    };
    inner.span = span.clone();
    span
}

/// Spawns a child's task on `rt`, in a `child` span below its scope's if one is wanted.
pub(crate) fn spawn<F>(
    rt: &tokio::runtime::Handle,
    node: &Node,
    fut: F,
) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    if tracing::span_enabled!(tracing::Level::DEBUG) {
        let parent = node.lock().span.clone();
        let span = tracing::debug_span!(parent: &parent, "child");
        if !span.is_disabled() {
            return rt.spawn(fut.instrument(span));
        }
    }
    rt.spawn(fut)
}

/// A printable form of a panic payload (for the event; the payload itself is re-raised).
pub(crate) fn panic_message(p: &(dyn std::any::Any + Send)) -> &str {
    if let Some(s) = p.downcast_ref::<&str>() {
        s
    } else if let Some(s) = p.downcast_ref::<String>() {
        s
    } else {
        "a non-string payload"
    }
}
