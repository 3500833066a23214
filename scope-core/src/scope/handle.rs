//! [`ScopeHandle`]: a `'static`, clonable handle to a scope (nursery passing), and the
//! [`Parent`] made from it.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;

use crate::background;
use crate::cancel_scope::CancelHandle;
use crate::child::{self, ChildOutput, TaskHandle, WaitChildren};
use crate::error::{CancelReason, Cancelled, SpawnError, TrySpawnError};
use crate::local::{Sendable, Supervisor, Unsupervised};
use crate::parent::Parent;
use crate::permit::HandleReserve;
use crate::snapshot::TreeSnapshot;
use crate::start::{self, Ready, Start};
use crate::supervise::{self, Supervised};
use crate::sync::Arc;
use crate::tree::Node;

use super::*;

/// A `'static`, clonable handle to a scope: spawn into it from anywhere, or cancel it.
///
/// Spawning fails with [`SpawnError::Closed`] once the scope finished; while the scope runs
/// (also while it waits for its last children) a spawned child is accepted and awaited.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use taskscope::{scope, Cancelled, SpawnError};
///
/// let mut escaped = None;
/// let r: Result<(), Cancelled> = scope(async |s| {
///     escaped = Some(s.handle());
///     Ok(())
/// })
/// .await;
/// assert!(r.is_ok());
/// let late = escaped.unwrap().spawn(async { Ok::<(), Cancelled>(()) });
/// assert_eq!(late.unwrap_err(), SpawnError::Closed);
/// # }
/// ```
pub struct ScopeHandle<E, K = Sendable> {
    node: Arc<Node>,
    _marker: PhantomData<(fn() -> E, K)>,
}

impl<E, K> ScopeHandle<E, K> {
    /// The handle of the scope whose node is `node`.
    pub(super) fn new(node: Arc<Node>) -> Self {
        ScopeHandle {
            node,
            _marker: PhantomData,
        }
    }
}

impl<E, K> Clone for ScopeHandle<E, K> {
    fn clone(&self) -> Self {
        ScopeHandle {
            node: self.node.clone(),
            _marker: PhantomData,
        }
    }
}

impl<E, K> fmt::Debug for ScopeHandle<E, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_node(f, "ScopeHandle", &self.node)
    }
}

impl<E> ScopeHandle<E, Supervisor> {
    /// Spawns `fut` as a supervised child of the scope; see
    /// [`Scope::spawn`](Scope#method.spawn-1) of a supervising scope.
    ///
    /// # Errors
    ///
    /// [`SpawnError::Closed`] if the scope already finished (or its future was dropped).
    pub fn spawn<F, T>(&self, fut: F) -> Result<Supervised<T, E>, SpawnError>
    where
        F: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: From<Cancelled> + Send + 'static,
    {
        supervise::spawn(&self.node, fut)
    }
}

impl<E, K: Unsupervised> ScopeHandle<E, K> {
    /// Spawns `fut` as a child of the scope; see [`Scope::spawn`].
    ///
    /// # Errors
    ///
    /// [`SpawnError::Closed`] if the scope already finished (or its future was dropped).
    pub fn spawn<F, T>(&self, fut: F) -> Result<TaskHandle<T>, SpawnError>
    where
        F: Future + Send + 'static,
        F::Output: ChildOutput<T, E>,
        T: Send + 'static,
        E: Send + 'static,
    {
        child::spawn(&self.node, fut)
    }

    /// [`spawn`](Self::spawn) of a future that resolves to the scope's `Result`, giving it
    /// back with the error if the scope refuses it (`Completions`, whose children report
    /// their own drop).
    pub(crate) fn spawn_or_return<F, T>(&self, fut: F) -> Result<TaskHandle<T>, (SpawnError, F)>
    where
        F: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        child::spawn_or_return(&self.node, fut)
    }

    /// Spawns a blocking child; see [`Scope::spawn_blocking`].
    ///
    /// # Errors
    ///
    /// As [`spawn`](Self::spawn).
    pub fn spawn_blocking<Fun, T>(&self, f: Fun) -> Result<TaskHandle<T>, SpawnError>
    where
        Fun: FnOnce() -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        child::spawn_blocking(&self.node, f)
    }

    /// Spawns only if the child can start right away; see [`Scope::try_spawn`].
    ///
    /// # Errors
    ///
    /// As [`Scope::try_spawn`].
    pub fn try_spawn<F, T>(&self, fut: F) -> Result<TaskHandle<T>, TrySpawnError<F>>
    where
        F: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        child::try_spawn(&self.node, fut)
    }

    /// Waits for a free slot of the scope's limit; see [`Scope::reserve`].
    ///
    /// The future resolves to `Err(SpawnError::Closed)` if the scope finished.
    pub fn reserve(&self) -> HandleReserve<E> {
        HandleReserve::new(self.node.clone())
    }

    /// Spawns a background child; see [`Scope::spawn_background`].
    ///
    /// # Errors
    ///
    /// [`SpawnError::Closed`] if the scope already finished.
    pub fn spawn_background<F, T>(&self, fut: F) -> Result<TaskHandle<T>, SpawnError>
    where
        F: Future + Send + 'static,
        F::Output: ChildOutput<T, E>,
        T: Send + 'static,
        E: Send + 'static,
    {
        background::spawn(&self.node, |bg| child::spawn(bg, fut))
    }

    /// Starts a child and waits until it is ready; see [`Scope::start`].
    ///
    /// # Errors
    ///
    /// [`SpawnError::Closed`] if the scope already finished.
    pub fn start<Fun, Fut, V>(&self, f: Fun) -> Result<Start<V, E>, SpawnError>
    where
        Fun: FnOnce(Ready<V>) -> Fut,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        V: Send + 'static,
        E: From<Cancelled> + Send + 'static,
    {
        start::start(&self.node, f)
    }
}

impl<E, K> From<&ScopeHandle<E, K>> for Parent {
    fn from(handle: &ScopeHandle<E, K>) -> Self {
        Parent::new(handle.node.clone())
    }
}

impl<E, K> From<ScopeHandle<E, K>> for Parent {
    fn from(handle: ScopeHandle<E, K>) -> Self {
        Parent::new(handle.node)
    }
}

impl<E, K> ScopeHandle<E, K> {
    /// Cancels the scope; see [`Scope::cancel`].
    pub fn cancel(&self) {
        self.node.cancel(CancelReason::Explicit);
    }

    /// `true` once the scope (or an ancestor) was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.node.state().is_soft()
    }

    /// `true` once the scope no longer accepts children.
    pub fn is_closed(&self) -> bool {
        self.node.is_closed()
    }

    /// Cancels the children spawned so far, but not the scope; see
    /// [`Scope::cancel_children`].
    #[doc(alias = "abort_all")]
    pub fn cancel_children(&self) {
        self.node.cancel_tasks();
    }

    /// How many spawned children are still running; see [`Scope::running_children`].
    #[doc(alias = "len")]
    pub fn running_children(&self) -> usize {
        self.node.running_tasks()
    }

    /// Waits until nothing spawned below the scope so far is alive, without ending it;
    /// see [`Scope::wait_children`].
    #[doc(alias = "wait")]
    pub fn wait_children(&self) -> WaitChildren {
        WaitChildren::new(self.node.clone())
    }

    /// A copy of the cancel tree below (and including) this scope: see [`TreeSnapshot`].
    pub fn snapshot(&self) -> TreeSnapshot {
        TreeSnapshot::of(&self.node)
    }

    /// A `CancellationToken` cancelled when this scope is (see
    /// [`Scope::cancellation_token`]). Feature `tokio-util`.
    #[cfg(feature = "tokio-util")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio-util")))]
    pub fn cancellation_token(&self) -> tokio_util::sync::CancellationToken {
        crate::interop::token(&self.node)
    }

    /// A [`CancelHandle`] to the scope's node.
    pub fn cancel_handle(&self) -> CancelHandle {
        CancelHandle::from_node(self.node.clone())
    }
}
