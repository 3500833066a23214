//! The readiness handshake ([`Scope::start`](crate::Scope::start)), after trio's
//! `nursery.start`: run a child and wait until it says it is ready, with a value.
//!
//! The child is spawned into the scope at once (so a pending start keeps the scope open),
//! and is given a [`Ready`]. Until it calls [`Ready::started`], its outcome belongs to the
//! caller of `start`: an error or a panic comes out of `start()` instead of failing the
//! scope, returning without `started` is an error ([`CancelReason::NotStarted`]), and if the
//! caller is cancelled (or drops the `start` future) the child is cancelled. From `started`
//! on, it is an ordinary child of the scope. Both sides decide under one lock, so every
//! outcome goes to exactly one place.

use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use pin_project_lite::pin_project;

use crate::child::{self, TaskHandle};
use crate::context::{self, WaitForCancel};
use crate::error::{CancelReason, Cancelled, SpawnError};
use crate::outcome::{Exit, Payload};
use crate::sync::{Arc, Mutex, lock};
use crate::tree::Node;

/// Where the handshake stands.
enum Phase<V, E> {
    /// Neither `started` nor a result yet.
    Waiting,
    /// `started(value)` was called; the value waits for the `start` future.
    Started(Option<V>),
    /// The child ended before `started`: its error, or its panic, for the caller.
    Failed(E),
    Panicked(Payload),
    NotStarted,
    /// The `start` future is gone (or finished without the child having started).
    Abandoned,
}

struct Shared<V, E> {
    phase: Phase<V, E>,
    waker: Option<Waker>,
}

type Slot<V, E> = Arc<Mutex<Shared<V, E>>>;

/// Given to the child of [`Scope::start`](crate::Scope::start): call
/// [`started`](Ready::started) once the child is ready.
///
/// `started` takes the `Ready` by value, so calling it twice does not compile. Dropping it
/// without calling `started` is fine while the child goes on; the child returning without
/// having called it makes `start()` fail with [`CancelReason::NotStarted`].
pub struct Ready<V> {
    slot: Arc<dyn Signal<V>>,
}

/// `started` without naming the error type in [`Ready`].
trait Signal<V>: Send + Sync {
    fn started(&self, value: V);
}

impl<V: Send, E: Send> Signal<V> for Mutex<Shared<V, E>> {
    fn started(&self, value: V) {
        let mut st = lock(self);
        if !matches!(st.phase, Phase::Waiting) {
            return; // the caller is gone; the child is being cancelled
        }
        st.phase = Phase::Started(Some(value));
        let w = st.waker.take();
        drop(st);
        if let Some(w) = w {
            w.wake();
        }
    }
}

impl<V> Ready<V> {
    /// Signals that the child is ready: `start()` returns `value`, and from now on the child
    /// is an ordinary child of the scope (its error fails the scope, its panic is re-raised
    /// by the scope, the caller's cancellation no longer reaches it).
    pub fn started(self, value: V) {
        self.slot.started(value);
    }
}

impl<V> fmt::Debug for Ready<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Ready")
    }
}

/// Spawns the child of a `start` into the scope whose node is `node`.
pub(crate) fn start<Fun, Fut, V, E>(node: &Arc<Node>, f: Fun) -> Result<Start<V, E>, SpawnError>
where
    Fun: FnOnce(Ready<V>) -> Fut,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    V: Send + 'static,
    E: From<Cancelled> + Send + 'static,
{
    let slot: Slot<V, E> = Arc::new(Mutex::new(Shared {
        phase: Phase::Waiting,
        waker: None,
    }));
    let fut = f(Ready { slot: slot.clone() });
    let child_slot = slot.clone();
    let task = child::spawn(
        node,
        CatchUnwind {
            fut,
            slot: child_slot,
        },
    )?;
    Ok(Start {
        slot,
        task: Some(task),
        caller: context::cancelled(),
        from_cancelled: E::from,
        node: node.clone(),
        // Nobody waits for the start any more: the failure is the scope's, as any child's.
        to_scope: |node, phase| match phase {
            Phase::Failed(e) => drop(node.settle::<(), E>(Exit::Error(e))),
            Phase::Panicked(p) => drop(node.settle::<(), E>(Exit::Panic(p))),
            _ => {}
        },
    })
}

pin_project! {
    /// The child's future: before `started`, its outcome goes to the caller; after, it
    /// passes through to the scope.
    struct CatchUnwind<F, V, E> {
        #[pin]
        fut: F,
        slot: Slot<V, E>,
    }
}

impl<F, V, E> Future for CatchUnwind<F, V, E>
where
    F: Future<Output = Result<(), E>>,
{
    type Output = Result<(), E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), E>> {
        let this = self.project();
        let polled = catch_unwind(AssertUnwindSafe(|| this.fut.poll(cx)));
        let outcome = match polled {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(Ok(()))) => Phase::NotStarted,
            Ok(Poll::Ready(Err(e))) => Phase::Failed(e),
            Err(p) => Phase::Panicked(p),
        };
        let mut st = lock(this.slot);
        match st.phase {
            Phase::Waiting => {
                st.phase = outcome;
                let w = st.waker.take();
                drop(st);
                if let Some(w) = w {
                    w.wake();
                }
                Poll::Ready(Ok(()))
            }
            // Started (the scope's from now on), or the caller is gone: the outcome is the
            // scope's, as for any child.
            _ => {
                drop(st);
                match outcome {
                    Phase::Failed(e) => Poll::Ready(Err(e)),
                    Phase::Panicked(p) => resume_unwind(p),
                    _ => Poll::Ready(Ok(())),
                }
            }
        }
    }
}

/// The future of [`Scope::start`](crate::Scope::start): resolves to the value the child
/// passed to [`Ready::started`].
///
/// # Cancel safety
///
/// Not cancel safe: dropping it before the child started cancels the child (like
/// [`TaskHandle::cancel`]); after `started`, dropping it loses the value but leaves the child
/// running.
///
/// # Panics
///
/// Resumes the child's panic if it panicked before calling `started`.
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct Start<V, E> {
    slot: Slot<V, E>,
    /// The child, until it started (dropped then: dropping a handle does not cancel).
    task: Option<TaskHandle<()>>,
    /// The caller's cancellation, which reaches the child until it started.
    caller: WaitForCancel,
    from_cancelled: fn(Cancelled) -> E,
    /// The scope, for an outcome that arrives after the caller left (never lost).
    node: Arc<Node>,
    to_scope: fn(&Arc<Node>, Phase<V, E>),
}

impl<V, E> Unpin for Start<V, E> {}

impl<V, E> Future for Start<V, E> {
    type Output = Result<V, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<V, E>> {
        let this = &mut *self;
        let from = this.from_cancelled;
        {
            let mut st = lock(&this.slot);
            let done = match &mut st.phase {
                Phase::Waiting => None,
                Phase::Started(v) => Some(v.take().map(Ok)),
                _ => Some(None),
            };
            match done {
                Some(Some(v)) => {
                    drop(st);
                    this.task = None;
                    return Poll::Ready(v);
                }
                Some(None) => {
                    let phase = std::mem::replace(&mut st.phase, Phase::Abandoned);
                    drop(st);
                    this.task = None;
                    return Poll::Ready(match phase {
                        Phase::Failed(e) => Err(e),
                        Phase::Panicked(p) => resume_unwind(p),
                        Phase::NotStarted => Err(from(Cancelled::new(CancelReason::NotStarted))),
                        _ => panic!("`Start` polled after completion"),
                    });
                }
                None => {
                    if !st.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                        st.waker = Some(cx.waker().clone());
                    }
                }
            }
        }
        if let Poll::Ready(c) = Pin::new(&mut this.caller).poll(cx) {
            // The caller was cancelled before the child started: the child goes too.
            if abandon(&this.slot) {
                if let Some(t) = this.task.take() {
                    t.cancel();
                }
                return Poll::Ready(Err(from(c)));
            }
            // It started (or ended) just now: take that instead.
            return Pin::new(this).poll(cx);
        }
        if let Some(t) = this.task.as_mut() {
            if let Poll::Ready(r) = Pin::new(t).poll(cx) {
                this.task = None;
                // The child ended without a word: it was dropped by a cancellation of its
                // scope, or never started because the scope was cancelled already.
                if abandon(&this.slot) {
                    let c = r
                        .err()
                        .unwrap_or(Cancelled::new(CancelReason::ParentCancelled));
                    return Poll::Ready(Err(from(c)));
                }
                return Pin::new(this).poll(cx);
            }
        }
        Poll::Pending
    }
}

/// Marks the handshake abandoned if the child has not started; `true` if so.
fn abandon<V, E>(slot: &Slot<V, E>) -> bool {
    let mut st = lock(slot);
    if matches!(st.phase, Phase::Waiting) {
        st.phase = Phase::Abandoned;
        true
    } else {
        false
    }
}

impl<V, E> Drop for Start<V, E> {
    fn drop(&mut self) {
        let Some(t) = self.task.take() else { return };
        let phase = std::mem::replace(&mut lock(&self.slot).phase, Phase::Abandoned);
        match phase {
            Phase::Waiting => t.cancel(),
            // The child failed before it started and the caller left without looking: the
            // outcome goes to the scope, as it would after `started`.
            failed @ (Phase::Failed(_) | Phase::Panicked(_)) => (self.to_scope)(&self.node, failed),
            _ => {}
        }
    }
}

impl<V, E> fmt::Debug for Start<V, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Start")
            .field("pending", &self.task.is_some())
            .finish()
    }
}
