//! Waiting for a scope's children so far without ending the scope
//! ([`Scope::wait_children`](crate::Scope::wait_children)).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::sync::Arc;
use crate::tree::Node;
use crate::tree::busy::IdleKey;

/// The future of [`Scope::wait_children`](crate::Scope::wait_children) and
/// [`ScopeHandle::wait_children`](crate::ScopeHandle::wait_children): ready once nothing
/// spawned below the scope is alive.
///
/// # Cancel safety
///
/// Cancel safe: dropping it only stops waiting.
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct WaitChildren {
    node: Arc<Node>,
    key: Option<IdleKey>,
}

impl WaitChildren {
    pub(crate) fn new(node: Arc<Node>) -> Self {
        WaitChildren { node, key: None }
    }
}

impl Future for WaitChildren {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        if this.node.poll_idle_waiter(&mut this.key, cx.waker()) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl Drop for WaitChildren {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.node.remove_idle_waiter(key);
        }
    }
}

impl fmt::Debug for WaitChildren {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitChildren")
            .field("idle", &self.node.is_idle())
            .finish()
    }
}
