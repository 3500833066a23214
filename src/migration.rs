//! Coming from `JoinSet`, `TaskTracker` + `CancellationToken`, moro or async-scoped: what
//! each habit is called here.
//!
//! The one difference underneath every row: a scope **waits**. It returns only after its
//! body and every child finished, on every path (`?`, panic, cancel, deadline, a dropped
//! future), where a dropped `JoinSet` aborts its tasks and forgets them, and a dropped
//! `TaskTracker` leaves them running. Errors and cancellation travel along the tree instead
//! of being wired by hand.
//!
//! | you wrote | with taskscope |
//! |---|---|
//! | `let mut set = JoinSet::new(); set.spawn(fut);` | [`scope`](fn@crate::scope)`(async \|s\| { s.spawn(fut); .. })` ([1](#1-spawn-and-await)) |
//! | `while let Some(r) = set.join_next().await` | [`Completions`](crate::Completions)`::join_next` ([2](#2-completion-order)) |
//! | `set.abort_all()` | [`Scope::cancel_children`](crate::Scope::cancel_children) ([3](#3-cancel-the-children-keep-going)) |
//! | `set.len()` | [`Scope::running_children`](crate::Scope::running_children) ([3](#3-cancel-the-children-keep-going)) |
//! | `handle.id()`, `join_next_with_id` | [`TaskHandle::id`](crate::TaskHandle::id) ([4](#4-task-ids)) |
//! | `set.spawn_on(fut, &handle)` | [`ScopeBuilder::runtime`](crate::ScopeBuilder::runtime) ([5](#5-another-runtime)) |
//! | `tracker.spawn(fut)` + `token.cancel()` + `tracker.close(); tracker.wait().await` | a scope, [`Scope::cancel`](crate::Scope::cancel), the scope's own end ([6](#6-tasktracker-and-cancellationtoken)) |
//! | `tracker.wait()` without closing | [`Scope::wait_children`](crate::Scope::wait_children) ([6](#6-tasktracker-and-cancellationtoken)) |
//! | `token.child_token()` passed down by hand | nothing: nested scopes are children of the ambient one; [`cancelled`](crate::cancelled)`()`, [`checkpoint`](crate::checkpoint)`()` read it ([6](#6-tasktracker-and-cancellationtoken)) |
//! | moro's `async_scope!(\|s\| ..)` borrowing locals | [`Scope::spawn_local`](crate::Scope::spawn_local) ([7](#7-borrowing-children-moro-async-scoped)) |
//! | async-scoped's `unsafe { TokioScope::scope_and_collect(..) }` | the same, safe ([7](#7-borrowing-children-moro-async-scoped)) |
//!
//! # 1. Spawn and await
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use taskscope::{scope, Cancelled};
//!
//! let total: Result<u32, Cancelled> = scope(async |s| {
//!     let a = s.spawn(async { Ok(1) });
//!     let b = s.spawn(async { Ok(2) });
//!     Ok(a.await? + b.await?)
//! })
//! .await;
//! assert_eq!(total, Ok(3));
//! # }
//! ```
//!
//! A child's error fails the scope (the others are cancelled, the first error is returned);
//! a handle dropped unawaited neither cancels nor detaches its child. A child returns the
//! scope's `Result` or `()`; a future with another error type converts it first:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use futures_util::TryFutureExt;
//! use taskscope::{scope, Cancelled};
//!
//! #[derive(Debug, PartialEq)]
//! enum AppError {
//!     Io(std::io::ErrorKind),
//!     Cancelled(taskscope::CancelReason),
//! }
//! impl From<std::io::Error> for AppError {
//!     fn from(e: std::io::Error) -> Self {
//!         AppError::Io(e.kind())
//!     }
//! }
//! impl From<Cancelled> for AppError {
//!     fn from(c: Cancelled) -> Self {
//!         AppError::Cancelled(c.reason())
//!     }
//! }
//! async fn read() -> std::io::Result<u32> {
//!     Ok(4)
//! }
//!
//! let r: Result<u32, AppError> = scope(async |s| {
//!     s.spawn(async { println!("a child that cannot fail") });
//!     let n = s.spawn(read().err_into()); // io::Error -> AppError
//!     Ok(n.await?)
//! })
//! .await;
//! assert_eq!(r, Ok(4));
//! # }
//! ```
//!
//! # 2. Completion order
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! use std::time::Duration;
//! use taskscope::combinators::Completions;
//! use taskscope::{scope, Cancelled};
//!
//! let order: Result<Vec<u64>, Cancelled> = scope(async |s| {
//!     let mut set = Completions::new(s.handle());
//!     for ms in [30, 10, 20] {
//!         set.spawn(async move {
//!             tokio::time::sleep(Duration::from_millis(ms)).await;
//!             Ok(ms)
//!         })
//!         .expect("the scope runs");
//!     }
//!     let mut order = Vec::new();
//!     while let Some(r) = set.join_next().await {
//!         order.push(r?);
//!     }
//!     Ok(order)
//! })
//! .await;
//! assert_eq!(order, Ok(vec![10, 20, 30]));
//! # }
//! ```
//!
//! # 3. Cancel the children, keep going
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use taskscope::{scope, CancelReason, Cancelled};
//!
//! let r: Result<u32, Cancelled> = scope(async |s| {
//!     let slow = s.spawn(std::future::pending::<Result<u32, Cancelled>>());
//!     tokio::task::yield_now().await;
//!     assert_eq!(s.running_children(), 1);
//!     s.cancel_children(); // the body goes on
//!     assert_eq!(slow.await.unwrap_err().reason(), CancelReason::ParentCancelled);
//!     s.spawn(async { Ok(5) }).await
//! })
//! .await;
//! assert_eq!(r, Ok(5));
//! # }
//! ```
//!
//! # 4. Task ids
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use taskscope::{scope, Cancelled};
//!
//! let r: Result<bool, Cancelled> = scope(async |s| {
//!     let h = s.spawn(async { Ok(tokio::task::id()) });
//!     let id = h.id();
//!     Ok(id == Some(h.await?))
//! })
//! .await;
//! assert_eq!(r, Ok(true));
//! # }
//! ```
//!
//! # 5. Another runtime
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use taskscope::{Cancelled, Scope};
//!
//! let pool = tokio::runtime::Builder::new_multi_thread().worker_threads(1).build().unwrap();
//! let r: Result<u32, Cancelled> = Scope::builder()
//!     .runtime(pool.handle().clone())
//!     .run(async |s| s.spawn(async { Ok(6) }).await)
//!     .await;
//! assert_eq!(r, Ok(6));
//! # pool.shutdown_background();
//! # }
//! ```
//!
//! # 6. `TaskTracker` and `CancellationToken`
//!
//! The tracker's `close` + `wait` is the scope's end; the token is the scope's cancel, and it
//! reaches nested scopes and anything that awaits [`cancelled`](crate::cancelled)`()` without
//! being passed down. [`Scope::wait_children`](crate::Scope::wait_children) waits for the
//! children so far and leaves the scope open.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! use std::time::Duration;
//! use taskscope::{cancelled, scope, Cancelled};
//!
//! let r: Result<(), Cancelled> = scope(async |s| {
//!     for _ in 0..3 {
//!         s.spawn(async {
//!             tokio::time::sleep(Duration::from_millis(10)).await;
//!             Ok(())
//!         });
//!     }
//!     s.wait_children().await; // `tracker.wait()`, without closing
//!     for _ in 0..3 {
//!         s.spawn(async {
//!             cancelled().await; // `token.cancelled()`, no token passed down
//!             Ok(())
//!         });
//!     }
//!     s.cancel(); // `token.cancel()`; the scope still awaits all of them
//!     Ok(())
//! })
//! .await;
//! assert!(r.is_ok());
//! # }
//! ```
//!
//! Code that takes a `CancellationToken` gets one from `Scope::cancellation_token`, and
//! `ScopeBuilder::cancel_on` cancels a scope by someone else's token (feature
//! `tokio-util`).
//!
//! # 7. Borrowing children (moro, async-scoped)
//!
//! Local children run in the scope's own task and may borrow from the caller, with no
//! `unsafe` and no `'static` bound; the scope is `Send` when they are.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use taskscope::{scope, Cancelled};
//!
//! let words = vec!["a", "bb", "ccc"];
//! let total: Result<usize, Cancelled> = scope(async |s| {
//!     let handles: Vec<_> = words
//!         .iter()
//!         .map(|w| s.spawn_local(async move { Ok(w.len()) }))
//!         .collect();
//!     let mut total = 0;
//!     for h in handles {
//!         total += h.await?;
//!     }
//!     Ok(total)
//! })
//! .await;
//! assert_eq!(total, Ok(6));
//! # }
//! ```
