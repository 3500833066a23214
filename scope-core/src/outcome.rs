//! What a scope's children left behind: the first panic, the first error, secondary errors.
//!
//! Child errors arrive type-erased (`Box<dyn Any + Send>`) because the tree is not generic;
//! only children of the scope, which share its error type, write here, so the scope's
//! downcast back to `E` cannot fail. The body's own error never leaves the scope future: it
//! is recorded here as a marker (`Slot::Body`) to keep the order of outcomes.

use std::any::Any;

pub(crate) type Payload = Box<dyn Any + Send>;

/// One recorded error, in the order of arrival.
pub(crate) enum Slot {
    Child(Payload),
    /// The body returned `Err`; the value is held by the scope future.
    Body,
}

pub(crate) struct Outcome {
    pub(crate) collect: bool,
    /// The first panic payload; later ones are counted in `extra_panics`.
    pub(crate) panic: Option<Payload>,
    /// Panics after the first: their payloads were dropped, only the first is re-raised.
    /// Reported with their count when the scope re-raises (`report_swallowed_panics`).
    pub(crate) extra_panics: u32,
    /// The error recorded before the scope was cancelled, if any (default mode).
    pub(crate) primary: Option<Slot>,
    /// Collecting mode: every error, in order (the primary first).
    pub(crate) all: Vec<Slot>,
    /// Errors that arrived after the cancellation and were not returned.
    pub(crate) suppressed: u32,
}

impl Outcome {
    pub(crate) fn new(collect: bool) -> Self {
        Outcome {
            collect,
            panic: None,
            extra_panics: 0,
            primary: None,
            all: Vec::new(),
            suppressed: 0,
        }
    }
}

use crate::error::{CancelReason, Cancelled};
use crate::sync::{Arc, Ordering};
use crate::tree::node::{Grace, Node, Spread};

/// How a child ended, before its scope saw it.
pub(crate) enum Exit<T, E> {
    /// It returned `Ok`.
    Value(T),
    /// It returned `Err`.
    Error(E),
    /// It panicked.
    Panic(Payload),
}

impl<T, E> From<Result<Result<T, E>, Payload>> for Exit<T, E> {
    fn from(r: Result<Result<T, E>, Payload>) -> Self {
        match r {
            Ok(Ok(v)) => Exit::Value(v),
            Ok(Err(e)) => Exit::Error(e),
            Err(p) => Exit::Panic(p),
        }
    }
}

/// What an error may do to the scope it is recorded with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Weight {
    /// The first one decides the outcome and cancels the scope (`ChildFailed`).
    Fails,
    /// The first one decides the outcome without cancelling anything (a supervised
    /// child's error that nobody took from its handle).
    Unobserved,
    /// Never the first (it came from a background node that was already cancelled).
    Secondary,
}

/// What recording an error decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub(crate) enum Recorded {
    /// It came first, before any cancellation: it decides the scope's outcome.
    Primary,
    /// The scope was already cancelled or had failed: kept (collecting mode) and returned
    /// with the others, in order of arrival.
    Kept,
    /// The scope was already cancelled or had failed: counted as suppressed and reported.
    Suppressed,
}

impl Node {
    /// What a child's end means for its scope (this node), for every kind of child
    /// (spawned, blocking, local, started): a value is the child's; an error or a panic is
    /// recorded here first (the first one fails the scope: `ChildFailed`, `ChildPanicked`),
    /// and only then does the child's handle learn why it has no value. So a reader woken
    /// by that handle finds the scope failed with the child's own error already, and the
    /// error the reader returns in turn is the secondary one.
    pub(crate) fn settle<T, E: Send + 'static>(
        self: &Arc<Self>,
        exit: Exit<T, E>,
    ) -> Result<T, Cancelled> {
        match exit {
            Exit::Value(v) => Ok(v),
            Exit::Error(e) => {
                let _ = self.record_error(Some(Box::new(e)));
                Err(Cancelled::new(CancelReason::ChildFailed))
            }
            Exit::Panic(p) => {
                self.record_panic(p);
                Err(Cancelled::new(CancelReason::ChildPanicked))
            }
        }
    }

    /// Records an error returned by a child (`Some`) or by the body (`None`) and, if it is
    /// the first outcome, cancels the scope with `ChildFailed`.
    pub(crate) fn record_error(self: &Arc<Self>, err: Option<Payload>) -> Recorded {
        self.record(err, Weight::Fails)
    }

    /// Records an error nobody observed (a supervised child's, whose handle was dropped)
    /// without cancelling anything: the scope returns it when it ends, like the first error
    /// (or with the others, in collecting mode) if none came before it and the scope was
    /// not cancelled before it arrived.
    pub(crate) fn record_unobserved(self: &Arc<Self>, err: Payload) -> Recorded {
        self.record(Some(err), Weight::Unobserved)
    }

    fn record(self: &Arc<Self>, err: Option<Payload>, weight: Weight) -> Recorded {
        if self.forward {
            if let Some(parent) = self.parent() {
                // A background child's error once its node was cancelled (a service that
                // stops with `checkpoint()?` when the scope no longer needs it) did not fail
                // the scope.
                let weight = if self.state().is_soft() {
                    Weight::Secondary
                } else {
                    weight
                };
                return parent.record(err, weight);
            }
        }
        let mut dropped = None;
        let (recorded, spread) = {
            let mut inner = self.lock();
            if !inner.has_reader() {
                // The scope already returned (or its future was dropped): nobody can return
                // this error any more. Report it instead of keeping it where nobody looks.
                #[cfg(feature = "tracing")]
                tracing::error!(
                    scope = inner.name.as_deref().unwrap_or(""),
                    "an error arrived after its scope ended; it cannot be returned"
                );
                drop(inner);
                self.drop_user(err);
                return Recorded::Suppressed;
            }
            // An error after the scope was cancelled (its own cancel, its deadline, its
            // parent) is secondary in every mode: it neither replaces the body's value nor
            // the deadline's `DeadlineExceeded`, supervised or not.
            let first = weight != Weight::Secondary
                && !self.state().is_soft()
                && inner.outcome.primary.is_none();
            #[cfg(feature = "tracing")]
            tracing::debug!(
                parent: &inner.span,
                scope = inner.name.as_deref().unwrap_or(""),
                first,
                "{} failed",
                if err.is_some() { "a child" } else { "the body" }
            );
            let slot = match err {
                Some(e) => Slot::Child(e),
                None => Slot::Body,
            };
            self.recorded.store(true, Ordering::Release);
            let out = &mut inner.outcome;
            let collect = out.collect;
            if first {
                if collect {
                    out.all.push(slot);
                    out.primary = Some(Slot::Body); // a marker: "there is a primary"
                } else {
                    out.primary = Some(slot);
                }
            } else if collect {
                out.all.push(slot);
            } else {
                out.suppressed += 1;
                dropped = Some(slot);
                #[cfg(feature = "tracing")]
                tracing::warn!(
                    scope = inner.name.as_deref().unwrap_or(""),
                    "secondary error in a cancelled scope (not returned; counted as suppressed)"
                );
            }
            let spread = if first && weight == Weight::Fails {
                self.cancel_locked(&mut inner, CancelReason::ChildFailed, Grace::Apply)
            } else {
                Spread::default()
            };
            let recorded = if first {
                Recorded::Primary
            } else if collect {
                Recorded::Kept
            } else {
                Recorded::Suppressed
            };
            (recorded, spread)
        };
        spread.finish();
        // A secondary error whose `Drop` panics must not unwind into the child's task.
        self.drop_user(dropped);
        recorded
    }

    /// Drops a value of user code (an error, an output nobody will see) outside every
    /// lock; a panic in its `Drop` is the scope's to re-raise, with its payload.
    pub(crate) fn drop_user<V>(self: &Arc<Self>, value: V) {
        if let Err(p) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(value)))
        {
            self.record_panic(p);
        }
    }

    /// Called by the scope right before it re-raises its first panic: the further panics
    /// recorded with it (`extra_panics`) were dropped, so the unwinding carries the first
    /// payload only; one event says how many others there were, so they do not vanish
    /// without a trace (each was also reported when it arrived).
    pub(crate) fn report_swallowed_panics(&self) {
        #[cfg(feature = "tracing")]
        {
            let inner = self.lock();
            let further = inner.outcome.extra_panics;
            if further > 0 {
                tracing::error!(
                    parent: &inner.span,
                    scope = inner.name.as_deref().unwrap_or(""),
                    further_panics = further,
                    "re-raising the scope's first panic; {further} further panic(s) were \
                     swallowed (their payloads dropped)"
                );
            }
        }
    }

    /// Records a panic payload of a child or the body and cancels the scope with
    /// `ChildPanicked`. The first payload is re-raised by the scope; later ones are counted.
    pub(crate) fn record_panic(self: &Arc<Self>, payload: Payload) {
        if self.forward {
            if let Some(parent) = self.parent() {
                return parent.record_panic(payload);
            }
        }
        let mut dropped = None;
        let spread = {
            let mut inner = self.lock();
            if !inner.has_reader() {
                // The scope's future is gone (a dropped scope draining its children):
                // nobody can re-raise it.
                #[cfg(feature = "tracing")]
                tracing::error!(
                    scope = inner.name.as_deref().unwrap_or(""),
                    "a child of a dropped scope panicked; the payload cannot be re-raised"
                );
                dropped = Some(payload);
                Spread::default()
            } else {
                #[cfg(feature = "tracing")]
                tracing::error!(
                    parent: &inner.span,
                    scope = inner.name.as_deref().unwrap_or(""),
                    panic = crate::spans::panic_message(&*payload),
                    "a child panicked"
                );
                self.recorded.store(true, Ordering::Release);
                if inner.outcome.panic.is_none() {
                    inner.outcome.panic = Some(payload);
                } else {
                    inner.outcome.extra_panics += 1;
                    dropped = Some(payload);
                    #[cfg(feature = "tracing")]
                    tracing::error!(
                        scope = inner.name.as_deref().unwrap_or(""),
                        "a further child panicked; only the first payload is re-raised"
                    );
                }
                self.cancel_locked(&mut inner, CancelReason::ChildPanicked, Grace::Apply)
            }
        };
        // A payload whose own Drop panics must not unwind out of here.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(dropped)));
        spread.finish();
    }
}
