//! Why something stopped: [`CancelReason`], [`Cancelled`], [`SpawnError`] and [`Errors`].

use std::fmt;

/// Why a node of the cancel tree was cancelled.
///
/// The first reason a node is cancelled with sticks: a later `cancel()` or an expiring
/// deadline does not overwrite it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CancelReason {
    /// `cancel()` was called on the scope, cancel scope, or task handle.
    Explicit,
    /// The node's own deadline (or timeout) passed.
    DeadlineExceeded,
    /// A child (or the body) of the scope returned an error.
    ChildFailed,
    /// A child (or the body) of the scope panicked.
    ChildPanicked,
    /// An ancestor of the node was cancelled.
    ParentCancelled,
    /// The scope's future was dropped before it finished.
    ScopeDropped,
    /// A shutdown was requested: Ctrl-C or SIGTERM under `ScopeBuilder::shutdown_on_signal`
    /// (feature `signal`), a trigger given that reason, a server's shutdown. (Children dropped by a runtime
    /// shutdown report [`ParentCancelled`](CancelReason::ParentCancelled).)
    Shutdown,
    /// The child of [`Scope::start`](crate::Scope::start) returned without calling
    /// [`Ready::started`](crate::Ready::started).
    NotStarted,
    /// A background child ([`Scope::spawn_background`](crate::Scope::spawn_background)):
    /// the scope's body and foreground children finished, so it is no longer needed.
    ScopeDone,
    /// The client the work was for went away (its connection closed, or its HTTP/2 stream
    /// was reset): nobody is left to receive the result.
    Disconnected,
}

impl CancelReason {
    fn as_str(self) -> &'static str {
        match self {
            CancelReason::Explicit => "cancelled explicitly",
            CancelReason::DeadlineExceeded => "deadline exceeded",
            CancelReason::ChildFailed => "a child failed",
            CancelReason::ChildPanicked => "a child panicked",
            CancelReason::ParentCancelled => "the parent scope was cancelled",
            CancelReason::ScopeDropped => "the scope was dropped",
            CancelReason::Shutdown => "shutdown",
            CancelReason::NotStarted => "the child returned without signalling that it started",
            CancelReason::ScopeDone => "the scope's foreground work finished",
            CancelReason::Disconnected => "the client disconnected",
        }
    }
}

impl fmt::Display for CancelReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of work that was cancelled, carrying the [`CancelReason`].
///
/// This is what a cancel scope returns when it catches its own cancellation
/// ([`CancelScope::run`](crate::CancelScope::run), [`fail_after`](crate::fail_after)), what
/// [`checkpoint`](crate::checkpoint) returns inside a cancelled node, and what a
/// [`TaskHandle`](crate::TaskHandle) resolves to when its child did not produce a value.
/// A scope converts it into its own error type with `E::from(Cancelled)`, so `?` works on
/// every one of them inside a scope body.
///
/// Errors that happened inside work that was dropped by the cancellation have no place in
/// the catcher's result type; they are counted here ([`suppressed_errors`]) and reported as
/// `tracing` events, never dropped without a trace.
///
/// [`suppressed_errors`]: Cancelled::suppressed_errors
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cancelled {
    reason: CancelReason,
    suppressed: u32,
}

impl Cancelled {
    /// A cancellation with `reason` and no suppressed errors.
    pub const fn new(reason: CancelReason) -> Self {
        Cancelled {
            reason,
            suppressed: 0,
        }
    }

    pub(crate) const fn with_suppressed(reason: CancelReason, suppressed: u32) -> Self {
        Cancelled { reason, suppressed }
    }

    /// Why the work was cancelled.
    pub const fn reason(&self) -> CancelReason {
        self.reason
    }

    /// How many errors were returned by children, or by the scope's body, after the
    /// cancellation started and could not be returned themselves (with the `tracing`
    /// feature, each is also reported as a warning naming the scope). Collecting mode
    /// returns them instead.
    pub const fn suppressed_errors(&self) -> u32 {
        self.suppressed
    }

    /// `true` if the cancellation came from a deadline or timeout.
    pub const fn is_deadline(&self) -> bool {
        matches!(self.reason, CancelReason::DeadlineExceeded)
    }
}

impl fmt::Display for Cancelled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cancelled: {}", self.reason)?;
        if self.suppressed > 0 {
            write!(f, " ({} error(s) suppressed)", self.suppressed)?;
        }
        Ok(())
    }
}

impl std::error::Error for Cancelled {}

impl From<Cancelled> for std::io::Error {
    /// `DeadlineExceeded` becomes [`ErrorKind::TimedOut`](std::io::ErrorKind::TimedOut),
    /// every other reason [`ErrorKind::Other`](std::io::ErrorKind::Other) (not `Interrupted`,
    /// which I/O loops retry). The [`Cancelled`] is kept as the inner error.
    fn from(c: Cancelled) -> Self {
        let kind = if c.is_deadline() {
            std::io::ErrorKind::TimedOut
        } else {
            std::io::ErrorKind::Other
        };
        std::io::Error::new(kind, c)
    }
}

/// Spawning through a [`ScopeHandle`](crate::ScopeHandle) failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SpawnError {
    /// The scope already finished (or its future was dropped): it no longer accepts children.
    ///
    /// A handle outlived its scope. Spawn from inside the scope (its body or its children),
    /// or open a new scope where the work should live.
    Closed,
    /// The scope was entered outside a Tokio runtime, so it has nowhere to spawn.
    NoRuntime,
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpawnError::Closed => f.write_str(
                "the scope is closed: it already finished, so it cannot await a new child \
                 (spawn while the scope is running, or open a new scope)",
            ),
            SpawnError::NoRuntime => f.write_str(
                "the scope was entered outside a Tokio runtime, so it cannot spawn \
                 (await the scope inside a runtime, e.g. under #[tokio::main])",
            ),
        }
    }
}

impl std::error::Error for SpawnError {}

/// [`Scope::try_spawn`](crate::Scope::try_spawn) could not start the child now; the future
/// is given back.
#[non_exhaustive]
pub enum TrySpawnError<F> {
    /// The scope's concurrency limit is reached (or other children wait for a slot).
    AtLimit(F),
    /// The scope already finished; see [`SpawnError::Closed`].
    Closed(F),
    /// The scope was entered outside a Tokio runtime; see [`SpawnError::NoRuntime`].
    NoRuntime(F),
}

impl<F> TrySpawnError<F> {
    /// The future that was not spawned.
    pub fn into_inner(self) -> F {
        match self {
            TrySpawnError::AtLimit(f) | TrySpawnError::Closed(f) | TrySpawnError::NoRuntime(f) => f,
        }
    }

    /// `true` if the limit is what stood in the way (waiting would help).
    pub fn is_at_limit(&self) -> bool {
        matches!(self, TrySpawnError::AtLimit(_))
    }
}

impl<F> fmt::Debug for TrySpawnError<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TrySpawnError::AtLimit(_) => "AtLimit(..)",
            TrySpawnError::Closed(_) => "Closed(..)",
            TrySpawnError::NoRuntime(_) => "NoRuntime(..)",
        })
    }
}

impl<F> fmt::Display for TrySpawnError<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySpawnError::AtLimit(_) => f.write_str(
                "the scope's concurrency limit is reached; wait for a slot with \
                 `reserve().await` or spawn to queue the child",
            ),
            TrySpawnError::Closed(_) => fmt::Display::fmt(&SpawnError::Closed, f),
            TrySpawnError::NoRuntime(_) => fmt::Display::fmt(&SpawnError::NoRuntime, f),
        }
    }
}

impl<F> std::error::Error for TrySpawnError<F> {}

/// Every error of a scope run in collecting mode, in the order they happened.
///
/// Returned by a scope built with [`ScopeBuilder::collect_errors`](crate::ScopeBuilder::collect_errors).
/// It is never empty: the first entry is the error that decided the scope's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Errors<E> {
    errors: Vec<E>,
}

impl<E> Errors<E> {
    pub(crate) fn new(errors: Vec<E>) -> Self {
        debug_assert!(!errors.is_empty());
        Errors { errors }
    }

    /// The first error: the one that cancelled the scope.
    pub fn first(&self) -> &E {
        &self.errors[0]
    }

    /// All errors in the order they happened.
    pub fn iter(&self) -> std::slice::Iter<'_, E> {
        self.errors.iter()
    }

    /// How many errors there are (at least one).
    pub fn len(&self) -> usize {
        self.errors.len()
    }

    /// Always `false` (an `Errors` holds at least one error); present for symmetry with
    /// `len`.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The errors as a vector, in order.
    pub fn into_vec(self) -> Vec<E> {
        self.errors
    }

    /// The first error, by value (the others are dropped): `errors.into_first()` where one
    /// error is all the caller can return.
    ///
    /// ```
    /// use taskscope::{CancelReason, Cancelled, Errors};
    ///
    /// let errs: Errors<Cancelled> = Errors::from(Cancelled::new(CancelReason::Shutdown));
    /// assert_eq!(errs.into_first().reason(), CancelReason::Shutdown);
    /// ```
    pub fn into_first(self) -> E {
        let mut errors = self.errors;
        errors.swap_remove(0)
    }
}

impl<E> IntoIterator for Errors<E> {
    type Item = E;
    type IntoIter = std::vec::IntoIter<E>;
    fn into_iter(self) -> Self::IntoIter {
        self.errors.into_iter()
    }
}

impl<E: From<Cancelled>> From<Cancelled> for Errors<E> {
    fn from(c: Cancelled) -> Self {
        Errors::new(vec![E::from(c)])
    }
}

impl<E: fmt::Display> fmt::Display for Errors<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.errors[0])?;
        if self.errors.len() > 1 {
            write!(f, " (and {} more error(s))", self.errors.len() - 1)?;
        }
        Ok(())
    }
}

impl<E: std::error::Error + 'static> std::error::Error for Errors<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.errors[0])
    }
}
