//! Racing attempts with staggered starts ([`Race`], [`race`]): Happy Eyeballs
//! ([RFC 8305](https://www.rfc-editor.org/rfc/rfc8305)) for any future.
//!
//! The attempts run as children of a nested scope, each wrapped so that its outcome goes to
//! the race's queue instead of failing the scope (an attempt's error must not cancel its
//! siblings). The body starts the attempts on schedule, takes the first success, cancels
//! the scope and returns the value: the scope returns a completed body's value even though
//! it was cancelled, once the losers are gone.

use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use crate::error::{CancelReason, Cancelled, Errors};
use crate::results::{Channel, Entry, Reported};
use crate::scope::scope;
use crate::sync::Arc;

/// Runs attempts at the same goal, starting them one after another, and returns the first
/// success; see [`Race::run`].
///
/// Without a [stagger](Race::stagger) every attempt starts at once ([`race`]). With one, this
/// is the connection racing of Happy Eyeballs (RFC 8305): attempt 0 starts at once, and
/// attempt *i* starts `stagger` after attempt *i − 1* started, or as soon as attempt *i − 1*
/// fails, whichever comes first.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use std::time::Duration;
/// use taskscope::future::Race;
///
/// async fn connect(addr: &'static str, after: u64, ok: bool) -> std::io::Result<&'static str> {
///     tokio::time::sleep(Duration::from_millis(after)).await;
///     if ok {
///         Ok(addr)
///     } else {
///         Err(std::io::ErrorKind::ConnectionRefused.into())
///     }
/// }
///
/// let start = tokio::time::Instant::now();
/// let winner = Race::new()
///     .stagger(Duration::from_millis(250))
///     .run([
///         connect("[2001:db8::1]:443", 10_000, true), // hangs
///         connect("[2001:db8::2]:443", 50, false),    // starts at 250 ms, fails at 300 ms
///         connect("192.0.2.1:443", 100, true),        // starts at 300 ms, wins at 400 ms
///     ])
///     .await;
/// assert_eq!(winner.unwrap(), "192.0.2.1:443");
/// assert_eq!(start.elapsed(), Duration::from_millis(400));
/// # }
/// ```
#[derive(Clone, Copy, Default)]
#[must_use = "a race does nothing until `run` is called and awaited"]
pub struct Race {
    stagger: Option<Duration>,
}

impl fmt::Debug for Race {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Race")
            .field("stagger", &self.stagger)
            .finish()
    }
}

impl Race {
    /// A race without stagger: every attempt starts at once.
    pub const fn new() -> Self {
        Race { stagger: None }
    }

    /// Starts each attempt `delay` after the previous one started, or as soon as the
    /// previous one failed (whichever comes first). RFC 8305 recommends 250 ms for
    /// connection attempts. `Duration::MAX` starts the next attempt only when the previous
    /// one failed.
    pub const fn stagger(self, delay: Duration) -> Self {
        Race {
            stagger: Some(delay),
        }
    }

    /// Runs the race: returns the value of the first attempt that succeeds, or every
    /// attempt's error if none does.
    ///
    /// Each attempt runs as a child task of a scope nested in the caller's (so in
    /// parallel, and cancelling the caller cancels the attempts). Attempt 0 starts at once;
    /// with a stagger, attempt *i* starts `stagger` after attempt *i − 1* started, or as
    /// soon as attempt *i − 1* failed, whichever comes first (the delay counts from when an
    /// attempt actually started). An attempt's error does not cancel the others.
    ///
    /// Once an attempt succeeds, the race stops: the other attempts are cancelled (dropped
    /// at their next poll) and awaited, so their `Drop` ran before `run` returns, and
    /// attempts not yet started are dropped without being polled. Should two attempts
    /// succeed at once, the first one reported wins and the other value is dropped.
    ///
    /// # Errors
    ///
    /// If every attempt failed, their errors in attempt order (not completion order). An
    /// attempt that ended without completing is there as `E::from(Cancelled)`: it was
    /// cancelled by an enclosing node while that node's grace period let the race go on
    /// (then attempts not yet started are not started, and count as cancelled too).
    ///
    /// An empty `attempts` has nothing that could win: the race returns at once with one
    /// error, `E::from(Cancelled)` with [`CancelReason::Explicit`] (an [`Errors`] is never
    /// empty).
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: dropping the future cancels every attempt; like a dropped scope's
    /// children, they are awaited by the nearest live ancestor scope (see *Drop* of
    /// [`scope`](crate::scope())). A cancellation that comes through the cancel tree (a
    /// timeout around the race, a failing sibling) reaches the attempts the same way.
    ///
    /// # Panics
    ///
    /// If an attempt panics, the other attempts are cancelled and awaited and the panic is
    /// resumed here with its payload. A stagger needs a runtime with the time driver
    /// enabled. Panics when polled outside a Tokio runtime (there is nowhere to spawn).
    pub async fn run<I, F, T, E>(self, attempts: I) -> Result<T, Errors<E>>
    where
        I: IntoIterator<Item = F>,
        F: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: From<Cancelled> + Send + 'static,
    {
        let attempts: Vec<F> = attempts.into_iter().collect();
        if attempts.is_empty() {
            return Err(Errors::new(vec![E::from(Cancelled::new(
                CancelReason::Explicit,
            ))]));
        }
        match run_attempts(self.stagger, attempts).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(failures)) => Err(Errors::new(
                failures
                    .into_iter()
                    .map(|f| match f {
                        Some(Failure::Err(e)) => e,
                        Some(Failure::Gone(reason)) => E::from(Cancelled::new(reason)),
                        None => E::from(Cancelled::new(CancelReason::ParentCancelled)),
                    })
                    .collect(),
            )),
            // The scope caught its own cancellation. Not expected: the race cancels its
            // scope only once the winner is in hand (the body's value then wins), and an
            // enclosing node's cancellation drops this future instead of returning.
            Err(c) => Err(Errors::from(c)),
        }
    }
}

/// Races `attempts`, all started at once: the first success wins, the others are cancelled
/// and awaited; see [`Race::run`].
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use std::time::Duration;
/// use taskscope::combinators::race;
/// use taskscope::Cancelled;
///
/// let fastest = race([300u64, 100, 200].map(|ms| async move {
///     tokio::time::sleep(Duration::from_millis(ms)).await;
///     Ok::<_, Cancelled>(ms)
/// }))
/// .await;
/// assert_eq!(fastest, Ok(100));
/// # }
/// ```
///
/// # Errors
///
/// Every attempt's error in attempt order if none succeeded; see [`Race::run`].
///
/// # Cancel safety
///
/// Not cancel safe; see [`Race::run`].
///
/// # Panics
///
/// As [`Race::run`].
pub async fn race<I, F, T, E>(attempts: I) -> Result<T, Errors<E>>
where
    I: IntoIterator<Item = F>,
    F: Future<Output = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: From<Cancelled> + Send + 'static,
{
    Race::new().run(attempts).await
}

/// Why an attempt has no value.
enum Failure<E> {
    /// It returned this error.
    Err(E),
    /// It was dropped before it completed.
    Gone(CancelReason),
}

/// An attempt's outcome as the race's queue holds it.
struct Attempt<T, E> {
    index: usize,
    outcome: Result<T, Failure<E>>,
}

impl<T, E> Entry for Attempt<T, E> {
    type Key = usize;
    type In = Result<T, E>;
    /// Never an error: an attempt's failure must not cancel its siblings.
    type Out = Result<(), Cancelled>;

    fn done(index: usize, out: Result<T, E>) -> (Self, Result<(), Cancelled>) {
        let outcome = out.map_err(Failure::Err);
        (Attempt { index, outcome }, Ok(()))
    }

    fn gone(index: usize, reason: CancelReason) -> Self {
        Attempt {
            index,
            outcome: Err(Failure::Gone(reason)),
        }
    }
}

/// Closes the race's queue when the body ends (or is dropped): outcomes that come later,
/// or were not taken, are dropped.
struct CloseOnDrop<R>(Arc<Channel<R>>);

impl<R> Drop for CloseOnDrop<R> {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// What the race's body waits for.
enum Event<T, E> {
    Reported(Attempt<T, E>),
    /// The stagger delay of the next attempt passed.
    Due,
}

/// The race's scope: `Ok(Ok(winner))`, `Ok(Err(failures in attempt order))`, or the
/// scope's own cancellation.
async fn run_attempts<F, T, E>(
    stagger: Option<Duration>,
    attempts: Vec<F>,
) -> Result<Result<T, Vec<Option<Failure<E>>>>, Cancelled>
where
    F: Future<Output = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
{
    scope(async move |s| {
        let total = attempts.len();
        let channel = Channel::<Attempt<T, E>>::new();
        let _close = CloseOnDrop(channel.clone());
        let mut pending = attempts.into_iter().enumerate();
        let mut failures: Vec<Option<Failure<E>>> = (0..total).map(|_| None).collect();
        let mut started = 0;
        let mut reported = 0;
        let mut timer: Option<Pin<Box<Sleep>>> = None;

        // Starts the next attempt (if any is left) and restarts the stagger delay from now.
        let mut start_next = |started: &mut usize, timer: &mut Option<Pin<Box<Sleep>>>| {
            let Some((i, fut)) = pending.next() else {
                return;
            };
            if s.is_cancelled() {
                // An enclosing node is cancelled (its grace period lets us run): start
                // nothing new; the attempt counts as cancelled.
                drop(fut);
                channel.push(Attempt::gone(i, CancelReason::ParentCancelled));
            } else {
                s.spawn(Reported::<F, Attempt<T, E>>::new(channel.clone(), i, fut));
            }
            *started += 1;
            if *started == total {
                *timer = None;
                return;
            }
            if let Some(d) = stagger {
                match Instant::now().checked_add(d) {
                    Some(at) => match timer {
                        Some(t) => t.as_mut().reset(at),
                        None => *timer = Some(Box::pin(tokio::time::sleep_until(at))),
                    },
                    None => *timer = None, // `Duration::MAX`: only a failure starts the next
                }
            }
        };

        if stagger.is_some() {
            start_next(&mut started, &mut timer);
        } else {
            while started < total {
                start_next(&mut started, &mut timer);
            }
        }

        loop {
            let event = poll_fn(|cx| {
                if let Poll::Ready(a) = channel.poll_pop(cx) {
                    return Poll::Ready(Event::Reported(a));
                }
                if let Some(t) = &mut timer {
                    if t.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Event::Due);
                    }
                }
                Poll::Pending
            })
            .await;
            match event {
                Event::Due => start_next(&mut started, &mut timer),
                Event::Reported(Attempt { outcome: Ok(v), .. }) => {
                    // The winner: the losers are cancelled; the scope awaits them and still
                    // returns this value.
                    s.cancel();
                    return Ok(Ok(v));
                }
                Event::Reported(Attempt {
                    index,
                    outcome: Err(failure),
                }) => {
                    failures[index] = Some(failure);
                    reported += 1;
                    if reported == total {
                        return Ok(Err(failures));
                    }
                    if index + 1 == started {
                        // The latest attempt failed: the next one starts now.
                        start_next(&mut started, &mut timer);
                    }
                }
            }
        }
    })
    .await
}
