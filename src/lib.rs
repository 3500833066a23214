#![cfg_attr(docsrs, feature(doc_cfg))]
//! Structured concurrency for tokio: every task belongs to a scope, every scope belongs to a
//! tree, and no scope returns while anything it started is still running.
//!
//! `tokio::spawn` escapes its caller, a dropped `JoinSet` aborts its tasks but does not wait
//! for them, and cancellation, deadlines and errors are wired by hand. The result is zombie
//! tasks: work for requests nobody waits for, held connections, stale results. taskscope
//! gives tasks a structure instead:
//!
//! - [`scope()`] is a nursery: it returns only after its body and every child finished, on
//!   every path (success, error, panic, cancel, deadline, drop).
//! - Every scope and [`CancelScope`] is a node of a **cancel tree**. Code nests into its
//!   caller's tree through an ambient (task-local) context, without passing anything:
//!   cancelling a node reaches its whole subtree, except below a [`shield`], with a
//!   [`CancelReason`].
//! - **Deadlines** nest trio-style (the earliest wins): [`move_on_after`], [`fail_after`],
//!   [`ScopeBuilder::timeout`], with a grace period between "please stop"
//!   ([`cancelled`], [`checkpoint`], [`is_cancelled`]) and "dropped".
//! - **Errors and panics**: the first error cancels the siblings and is returned; later ones
//!   are never lost silently; a child's panic is re-raised in the caller with its original
//!   payload after all children are gone.
//!
//! # Quick start
//!
//! ```
//! use std::time::Duration;
//! use taskscope::{Cancelled, Scope};
//!
//! async fn fetch(id: u32) -> Result<String, std::io::Error> {
//!     tokio::time::sleep(Duration::from_millis(10 * id as u64)).await;
//!     Ok(format!("page {id}"))
//! }
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), std::io::Error> {
//! // Fetch three pages in parallel; give up on all of them after two seconds.
//! let pages = Scope::builder()
//!     .name("fetch_all")
//!     .timeout(Duration::from_secs(2))
//!     .run(async |s| {
//!         let handles: Vec<_> = (1..=3).map(|id| s.spawn(fetch(id))).collect();
//!         let mut pages = Vec::new();
//!         for h in handles {
//!             pages.push(h.await?); // `Cancelled` converts into `io::Error`
//!         }
//!         Ok(pages)
//!     })
//!     .await?;
//! assert_eq!(pages, ["page 1", "page 2", "page 3"]);
//! # Ok(())
//! # }
//! ```
//!
//! If a fetch fails, the others are cancelled and the scope returns that error once they are
//! gone. If the deadline passes, every fetch is cancelled and the scope returns
//! `Err(Cancelled)` with [`CancelReason::DeadlineExceeded`] (as an `io::Error` of kind
//! `TimedOut` here). Library code called inside the scope that opens its own scopes or
//! timeouts nests below it and is cancelled with it.
//!
//! # How cancellation works
//!
//! Cancellation in Rust is dropping a future. taskscope separates the *signal* from the
//! *drop*: when a node is cancelled, the code under it first sees the soft signal
//! ([`cancelled`] resolves, [`is_cancelled`] turns true, [`checkpoint`] fails); after the
//! node's grace period (default zero) the futures under it are dropped at their next poll.
//! The cancelled node nearest the root catches: it waits until every task spawned below it
//! has finished, then drops its inner future and returns the cancellation
//! (`CancelScope::run` gives `Err(Cancelled)`, [`move_on_after`] gives `None`, a scope
//! `Err(E::from(Cancelled))`). Blocking children cannot be dropped; they poll
//! [`is_cancelled`] and are always awaited. A [`shield`] protects cleanup from cancellation
//! of its ancestors.
//!
//! See `docs/cancel-tree.md` in the repository for the tree's invariants and why no wakeup
//! can be lost.
//!
//! # Kinds of children
//!
//! Concurrency, parallelism, borrowing: pick two.
//!
//! | | runs | may borrow from the caller | must be `Send` | use it for |
//! |---|---|---|---|---|
//! | [`Scope::spawn`] | in parallel, on the runtime's workers | no (`'static`) | yes | independent or CPU-heavy work |
//! | [`Scope::spawn_local`] | concurrently, inside the scope's own future | yes | only in a default scope; not in [`ScopeBuilder::local`] | I/O-bound fan-out over borrowed data, `Rc` state |
//! | [`Scope::spawn_blocking`] | on the blocking pool | no | yes | synchronous code; cannot be dropped, is awaited |
//! | [`Scope::spawn_background`] | like `spawn`, cancelled with [`CancelReason::ScopeDone`] once the rest is done | no | yes | heartbeats, refreshers, log shippers |
//! | [`Scope::start`] | like `spawn`, after a readiness handshake ([`Ready::started`]) | no | yes | servers that must be listening before you go on |
//!
//! All follow the same rules: fail fast, panics re-raised, cancel tree, deadlines,
//! guaranteed await. A scope built with [`ScopeBuilder::limit`] runs at most `n` spawned and
//! local children at once, in spawn order ([`Scope::try_spawn`], [`Scope::reserve`] for
//! back-pressure). A scope built with [`ScopeBuilder::supervise`] delivers each child's
//! error to its [`Supervised`] handle instead of failing.
//!
//! # Comparison to `JoinSet` and `TaskTracker`
//!
//! | | `JoinSet` | `TaskTracker` + `CancellationToken` | taskscope |
//! |---|---|---|---|
//! | wait for all tasks | `join_next` loop | `close` + `wait` | the scope's `.await` |
//! | on drop | aborts, returns at once: tasks may still run | nothing: tasks detach | cancels, and the nearest live ancestor scope awaits them |
//! | first error cancels siblings | by hand | by hand | yes, and the error is returned |
//! | panics | `JoinError` per task | lost unless joined | re-raised in the caller with the original payload |
//! | cancellation reaches nested work | no | if the token is passed down | yes, through the ambient tree |
//! | deadlines | `tokio::time::timeout` per call | by hand | nested, the earliest wins, `current_deadline()` |
//! | cleanup time before the drop | no | cooperative only | grace period, shields |
//!
//! Use `JoinSet` when tasks are independent and may outlive the code that spawned them;
//! `TaskTracker` for a server's graceful shutdown where you own every task. Use a scope when
//! work belongs to a request or an operation: nothing it started outlives it.
//!
//! # Features
//!
//! - `tracing` (default): a `DEBUG` span per scope, cancel scope and spawned child, parented
//!   like the cancel tree; events for cancellation (with the reason), deadline expiry, child
//!   failure and panic, secondary errors and dropped scopes. A child gets its span only if a
//!   subscriber wants it when it is spawned.
//! - `tokio-util`: a scope's cancellation as a `CancellationToken`
//!   (`Scope::cancellation_token`) and scopes cancelled by one (`ScopeBuilder::cancel_on`).
//! - `signal`: `ScopeBuilder::shutdown_on_signal` and `shutdown_signal()`: Ctrl-C or SIGTERM
//!   cancel the tree with [`CancelReason::Shutdown`], and the program exits after the grace
//!   period.
//!
//! Seeing the tree: [`snapshot()`] (the tree the caller runs in), [`ScopeHandle::snapshot`],
//! and [`ScopeBuilder::on_stuck`] for a scope that has not finished long after it was
//! cancelled.
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]

// The core crate's root, named item by item so that the facade's documentation shows the same
// root; the glob below brings the rest (the core's hidden first-release paths) without
// showing it.
#[cfg(feature = "signal")]
pub use taskscope_core::shutdown_signal;
#[doc(hidden)]
pub use taskscope_core::*;
pub use taskscope_core::{
    CancelHandle, CancelReason, CancelScope, Cancelled, ChildOutput, Errors, LocalHandle, Parent,
    Ready, Scope, ScopeBuilder, ScopeHandle, SpawnError, SpawnPermit, Supervised, TaskHandle,
    TrySpawnError, cancelable, cancelled, checkpoint, combinators, current_deadline, fail_after,
    fail_at, flavor, future, is_cancelled, mode, move_on_after, move_on_at, scope, shield,
    snapshot,
};

pub mod migration;

/// Runs the body of an `async fn` in a scope that nests in the caller's cancel tree.
///
/// The signature is kept exactly; only the body is wrapped. The scope is a child of the
/// scope or cancel scope the function is called in, so cancelling the caller (or its
/// deadline) reaches everything the function does, and the function returns only after
/// every child it spawned has finished, also on an early `return` or `?`.
///
/// Options, in any order, each at most once:
///
/// - a bare identifier binds the scope handle in the body: `#[scoped(s)]`, then
///   `s.spawn(..)`;
/// - `timeout = "2s"` or `timeout = <expr of type Duration>`; `deadline = <tokio Instant>`;
/// - `name = "..."` (default: the function's name); `grace = "100ms"` or `<expr>`;
/// - `limit = 8` (or a `usize` expression): at most that many children run at once (see
///   [`ScopeBuilder::limit`]);
/// - `supervise`: a child's error does not fail the scope; `s.spawn(..)` returns a
///   [`Supervised`] handle that gives the child's own `Result` (see
///   [`ScopeBuilder::supervise`]). An error nobody took from its handle is returned when the
///   scope ends;
/// - `local`: the scope's local children ([`Scope::spawn_local`]) need not be `Send`: they may
///   hold an `Rc` or a `RefCell` borrow across an await (see [`ScopeBuilder::local`]). The
///   function's future is then `!Send`: call it on a current-thread runtime, inside a
///   `LocalSet`, or from another `!Send` future. `local` and `supervise` exclude each other (a
///   supervising scope takes no local children: nest a `scope!(local, ..)` in its body);
/// - `crate = "path"`: where the taskscope crate is, if it was renamed or re-exported.
///
/// `supervise` and `local` are keywords, so the handle cannot have either name.
///
/// With `#[tracing::instrument]`, put `#[scoped]` above it: attributes expand from the top
/// and the lower one wraps the function body first, so `instrument` then wraps the scope and
/// the call's span is the parent of the scope's span and of everything the scope runs. With
/// the order swapped, the scope encloses the function's span.
///
/// Without a handle, and with no option but `name` and one of `timeout` or `deadline`, the
/// scope costs only what the body uses: its node in the cancel tree (an allocation, and
/// locks to enter the tree and to leave it) is built when code in the body first reads the
/// ambient context (a nested scope or cancel scope, [`is_cancelled`], [`cancelled`],
/// [`current_deadline`], a snapshot) or when the body fails or panics; a function that does
/// neither pays for none of it, and a timeout or deadline is then a timer of the function's
/// own, as in `tokio::time::timeout`. Every answer is the one the scope would give with its
/// node built at entry; until it is built the scope does not appear in a [`snapshot()`]
/// taken elsewhere.
///
/// Durations are string literals of a number and a unit (`"250ms"`, `"2s"`, `"1.5s"`,
/// `"1m"`, `"1h"`; units ns, us, ms, s, m, h), checked at compile time.
///
/// The return type decides what a timeout does: `Result<T, E>` with `E: From<Cancelled>`
/// fails with `E::from(Cancelled)` (reason `DeadlineExceeded`); `Option<T>` moves on with
/// `None`. Any other return type cannot say "timed out", so it takes no `timeout` or
/// `deadline`. With such a return type the children's error type is [`Cancelled`]; if the
/// scope itself fails (a child returned an error, or the body was cancelled by `s.cancel()`)
/// there is no value to return, and the function panics saying so.
///
/// # Examples
///
/// ```
/// use taskscope::{scoped, Cancelled};
///
/// #[scoped(s, timeout = "2s")]
/// async fn fetch_all(ids: Vec<u32>) -> Result<Vec<u32>, Cancelled> {
///     let handles: Vec<_> = ids.into_iter().map(|id| s.spawn(async move { Ok(id * 10) })).collect();
///     let mut out = Vec::new();
///     for h in handles {
///         out.push(h.await?);
///     }
///     Ok(out)
/// }
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// assert_eq!(fetch_all(vec![1, 2]).await, Ok(vec![10, 20]));
/// # }
/// ```
///
/// The same, written by hand:
///
/// ```
/// use std::time::Duration;
/// use taskscope::{Cancelled, Scope};
///
/// async fn fetch_all(ids: Vec<u32>) -> Result<Vec<u32>, Cancelled> {
///     Scope::builder()
///         .name("fetch_all")
///         .timeout(Duration::from_secs(2))
///         .run(async move |s| -> Result<Vec<u32>, Cancelled> {
///             let handles: Vec<_> =
///                 ids.into_iter().map(|id| s.spawn(async move { Ok(id * 10) })).collect();
///             let mut out = Vec::new();
///             for h in handles {
///                 out.push(h.await?);
///             }
///             Ok(out)
///         })
///         .await
/// }
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// # assert_eq!(fetch_all(vec![1, 2]).await, Ok(vec![10, 20]));
/// # }
/// ```
///
/// With `local`, the children may share `Rc`s (the scope polls them in its own task):
///
/// ```
/// use std::cell::RefCell;
/// use std::rc::Rc;
/// use taskscope::{scoped, Cancelled};
///
/// #[scoped(s, local, timeout = "2s")]
/// async fn tally(words: Vec<&'static str>) -> Result<usize, Cancelled> {
///     let seen = Rc::new(RefCell::new(Vec::new()));
///     let handles: Vec<_> = words
///         .into_iter()
///         .map(|w| {
///             let seen = seen.clone();
///             s.spawn_local(async move {
///                 tokio::task::yield_now().await; // the `Rc` is held across an await
///                 seen.borrow_mut().push(w);
///                 Ok(())
///             })
///         })
///         .collect();
///     for h in handles {
///         h.await?;
///     }
///     let n = seen.borrow().len();
///     Ok(n)
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// assert_eq!(tally(vec!["a", "b", "c"]).await, Ok(3));
/// # }
/// ```
///
/// which is `Scope::builder().name("tally").timeout(..).local().run(..)` written by hand.
pub use taskscope_macros::scoped;

/// Runs a scope as an expression and awaits it (use it inside `async` code).
///
/// `scope!(|s| { .. })` runs the block as the scope's body with the handle `s`;
/// `scope!(timeout = "2s", name = "x", |s| { .. })` configures it (the options of
/// [`macro@scoped`] except the handle, which is the closure's parameter); `scope!(local, |s| ..)`
/// is a [`local`](ScopeBuilder::local) scope, whose `spawn_local` children need not be `Send`;
/// `scope!({ .. })` is a scope nobody spawns into, i.e. a cancel scope with those options. The
/// body is a closure: `move |s|` moves captured variables in, `|s| -> Result<T, E>` names its
/// type.
///
/// `return` and `?` end the scope's body, as in a closure, and the scope still waits for
/// its children before the `scope!` expression has a value. `break` and `continue` cannot
/// jump out of the body to an enclosing loop: that is a compile error.
///
/// # Examples
///
/// ```
/// use taskscope::{scope, Cancelled};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Cancelled> {
/// let total = scope!(|s| {
///     let a = s.spawn(async { Ok(1) });
///     let b = s.spawn(async { Ok(2) });
///     if a.await? == 0 {
///         return Ok(0); // ends the body; the scope still waits for `b`'s child
///     }
///     Ok::<_, Cancelled>(1 + b.await?)
/// })?;
/// assert_eq!(total, 3);
/// # Ok(())
/// # }
/// ```
///
/// The same, written by hand:
///
/// ```
/// use taskscope::{Cancelled, Scope};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Cancelled> {
/// let total = Scope::builder()
///     .run(async |s| {
///         let a = s.spawn(async { Ok(1) });
///         let b = s.spawn(async { Ok(2) });
///         if a.await? == 0 {
///             return Ok(0);
///         }
///         Ok::<_, Cancelled>(1 + b.await?)
///     })
///     .await?;
/// assert_eq!(total, 3);
/// # Ok(())
/// # }
/// ```
pub use taskscope_macros::scope;

/// Paths the macros expand to. Not public API.
#[doc(hidden)]
pub mod __private {
    pub use core::convert::From;
    pub use core::option::Option::{None, Some};
    pub use core::result::Result::{Err, Ok};
    pub use std::time::Duration;
    // The core crate's root, named item by item so that the facade's documentation shows the same
    // root; the glob below brings the rest (the core's hidden first-release paths) without
    // showing it.
    #[cfg(feature = "signal")]
    pub use taskscope_core::shutdown_signal;
    #[doc(hidden)]
    pub use taskscope_core::*;
    pub use taskscope_core::{
        CancelHandle, CancelReason, CancelScope, Cancelled, ChildOutput, Errors, LocalHandle,
        Parent, Ready, Scope, ScopeBuilder, ScopeHandle, SpawnError, SpawnPermit, Supervised,
        TaskHandle, TrySpawnError, cancelable, cancelled, checkpoint, combinators,
        current_deadline, fail_after, fail_at, flavor, future, is_cancelled, mode, move_on_after,
        move_on_at, scope, shield, snapshot,
    };

    /// A `#[scoped]` function whose return type cannot carry a failure lost its scope.
    #[track_caller]
    pub fn unrepresentable(cancelled: Cancelled, function: &str) -> ! {
        panic!(
            "taskscope: the scope of `{function}` ended with `{cancelled}`, but its return type \
             cannot carry that; return `Result<T, E>` with `E: From<taskscope::Cancelled>` or \
             `Option<T>` to handle it"
        )
    }
}

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
