//! Back-pressure for scopes with a concurrency limit: wait for a free slot, then spawn into
//! it ([`Reserve`], [`SpawnPermit`]).

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::child::{self, ChildOutput, SlotGuard, TaskHandle};
use crate::error::SpawnError;
use crate::sync::Arc;
use crate::tree::Node;

/// The future of [`ScopeHandle::reserve`](crate::ScopeHandle::reserve): resolves to a
/// [`SpawnPermit`] once a slot of the scope's limit is free for it, or to
/// [`SpawnError::Closed`] if the scope finished.
///
/// Waiters are served in order, together with children spawned into the queue. In a scope
/// without a limit it is ready at once.
///
/// # Cancel safety
///
/// Cancel safe: dropping the future gives up its place in the queue (or the slot it was
/// just given).
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct HandleReserve<E> {
    node: Option<Arc<Node>>,
    slot: Option<SlotGuard>,
    _marker: PhantomData<fn() -> E>,
}

impl<E> HandleReserve<E> {
    pub(crate) fn new(node: Arc<Node>) -> Self {
        HandleReserve {
            node: Some(node),
            slot: None,
            _marker: PhantomData,
        }
    }
}

impl<E> fmt::Debug for HandleReserve<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandleReserve")
            .field("queued", &self.slot.is_some())
            .finish()
    }
}

impl<E> Unpin for HandleReserve<E> {}

impl<E> Future for HandleReserve<E> {
    type Output = Result<SpawnPermit<E>, SpawnError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let Some(node) = this.node.clone() else {
            return Poll::Pending;
        };
        if node.is_closed() {
            return Poll::Ready(Err(SpawnError::Closed));
        }
        if this.slot.is_none() {
            this.slot = SlotGuard::enter(&node);
        }
        if let Some(slot) = &mut this.slot {
            if slot.poll_admitted(cx).is_pending() {
                return Poll::Pending;
            }
        }
        this.node = None;
        Poll::Ready(Ok(SpawnPermit {
            node,
            slot: this.slot.take(),
            _marker: PhantomData,
        }))
    }
}

/// The future of [`Scope::reserve`](crate::Scope::reserve): resolves to a [`SpawnPermit`]
/// once a slot of the scope's limit is free for it.
///
/// Waiters are served in order, together with children spawned into the queue. In a scope
/// without a limit it is ready at once.
///
/// # Cancel safety
///
/// Cancel safe: dropping the future gives up its place in the queue.
///
/// # Panics
///
/// If the scope finished before a slot was free, which needs the `Scope` to have escaped its
/// body; use [`ScopeHandle::reserve`](crate::ScopeHandle::reserve) for a `Result`.
#[must_use = "futures do nothing unless you `.await` or poll them"]
#[derive(Debug)]
pub struct Reserve<E>(HandleReserve<E>);

impl<E> Reserve<E> {
    pub(crate) fn new(node: Arc<Node>) -> Self {
        Reserve(HandleReserve::new(node))
    }
}

impl<E> Future for Reserve<E> {
    type Output = SpawnPermit<E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<SpawnPermit<E>> {
        Pin::new(&mut self.0).poll(cx).map(|r| match r {
            Ok(permit) => permit,
            Err(e) => panic!("taskscope: cannot reserve a slot: {e}"),
        })
    }
}

/// A free slot of a scope's concurrency limit, held for one child.
///
/// Dropping it unused gives the slot back.
pub struct SpawnPermit<E> {
    node: Arc<Node>,
    slot: Option<SlotGuard>,
    _marker: PhantomData<fn() -> E>,
}

impl<E> fmt::Debug for SpawnPermit<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpawnPermit").finish_non_exhaustive()
    }
}

impl<E> SpawnPermit<E> {
    /// Spawns `fut` into the reserved slot; it starts at once.
    ///
    /// # Errors
    ///
    /// [`SpawnError::Closed`] if the scope finished meanwhile.
    pub fn spawn<F, T>(self, fut: F) -> Result<TaskHandle<T>, SpawnError>
    where
        F: Future + Send + 'static,
        F::Output: ChildOutput<T, E>,
        T: Send + 'static,
        E: Send + 'static,
    {
        child::spawn_with_slot(&self.node, fut, self.slot)
    }
}
