//! Supervised children ([`ScopeBuilder::supervise`](crate::ScopeBuilder::supervise)): a
//! child's error does not cancel the scope; it is delivered through the child's
//! [`Supervised`] handle, and if nobody takes it from there, the scope returns it when it
//! ends.
//!
//! The child runs as an ordinary spawned child whose future never fails from the scope's
//! point of view: on `Err(e)` it leaves `e` in a slot it shares with its handle, if the
//! handle is still alive, and records it with the scope as *unobserved* otherwise. A handle
//! dropped while holding an error it never gave out records it the same way. Both sides
//! decide under the slot's lock, so an error is taken exactly once.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::child::{self, TaskHandle};
use crate::error::{Cancelled, SpawnError};
use crate::sync::{Arc, Mutex, lock};
use crate::tree::Node;

/// The slot a supervised child and its handle share.
struct Shared<E> {
    handle_alive: bool,
    error: Option<E>,
}

/// Spawns `fut` as a supervised child of the scope whose node is `node`.
pub(crate) fn spawn<F, T, E>(node: &Arc<Node>, fut: F) -> Result<Supervised<T, E>, SpawnError>
where
    F: Future<Output = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: From<Cancelled> + Send + 'static,
{
    let shared = Arc::new(Mutex::new(Shared {
        handle_alive: true,
        error: None,
    }));
    let child_side = shared.clone();
    let child_node = node.clone();
    let task = child::spawn(node, async move {
        match fut.await {
            Ok(v) => Ok::<_, E>(Some(v)),
            Err(e) => {
                let mut slot = lock(&child_side);
                if slot.handle_alive {
                    slot.error = Some(e);
                } else {
                    drop(slot);
                    let _ = child_node.record_unobserved(Box::new(e));
                }
                Ok(None)
            }
        }
    })?;
    Ok(Supervised {
        task,
        shared,
        node: node.clone(),
        from_cancelled: E::from,
        unobserved: |node, e| {
            let _ = node.record_unobserved(Box::new(e));
        },
    })
}

/// The handle of a supervised child: await it for the child's own `Result<T, E>`.
///
/// `Ok(value)`, the child's `Err(e)`, or a cancellation converted with
/// `E: From<Cancelled>` (the scope or an ancestor was cancelled, [`cancel`](Self::cancel)
/// was called). A panic is not an error: the scope re-raises it as usual.
///
/// # Drop
///
/// Dropping the handle neither cancels nor detaches the child. An error the handle did not
/// give out (the handle was dropped before or after the child failed) is not lost: the scope
/// returns it when it ends (the first such error, or all of them in collecting mode), without
/// cancelling anything.
///
/// # Cancel safety
///
/// Awaiting the handle is cancel safe: the outcome is kept for a later poll.
pub struct Supervised<T, E> {
    task: TaskHandle<Option<T>>,
    shared: Arc<Mutex<Shared<E>>>,
    node: Arc<Node>,
    from_cancelled: fn(Cancelled) -> E,
    /// Hands an error nobody took to the scope (`E: Send + 'static` is proven at spawn).
    unobserved: fn(&Arc<Node>, E),
}

impl<T, E> Supervised<T, E> {
    /// Cancels this child alone (see [`TaskHandle::cancel`]); awaiting the handle then gives
    /// `E::from(Cancelled)` with reason `Explicit`, unless it finished first.
    pub fn cancel(&self) {
        self.task.cancel();
    }

    /// `true` once the child finished (or was never started).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// The child's tokio task id; see [`TaskHandle::id`](crate::TaskHandle::id).
    pub fn id(&self) -> Option<tokio::task::Id> {
        self.task.id()
    }
}

impl<T, E> Unpin for Supervised<T, E> {}

impl<T, E> Future for Supervised<T, E> {
    type Output = Result<T, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T, E>> {
        let r = std::task::ready!(Pin::new(&mut self.task).poll(cx));
        Poll::Ready(match r {
            Ok(Some(v)) => Ok(v),
            // The child failed while this handle was alive: its error waits in the slot
            // (taken once; the task handle resolves only once).
            Ok(None) => match lock(&self.shared).error.take() {
                Some(e) => Err(e),
                None => Err((self.from_cancelled)(Cancelled::new(
                    crate::error::CancelReason::ChildFailed,
                ))),
            },
            Err(c) => Err((self.from_cancelled)(c)),
        })
    }
}

impl<T, E> Drop for Supervised<T, E> {
    fn drop(&mut self) {
        let unclaimed = {
            let mut slot = lock(&self.shared);
            slot.handle_alive = false;
            slot.error.take()
        };
        if let Some(e) = unclaimed {
            (self.unobserved)(&self.node, e);
        }
    }
}

impl<T, E> fmt::Debug for Supervised<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Supervised")
            .field("finished", &self.is_finished())
            .finish()
    }
}
