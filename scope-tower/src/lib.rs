#![cfg_attr(docsrs, feature(doc_cfg))]
//! The taskscope cancel tree across connections and processes, for hyper, axum and tonic.
//!
//! [taskscope](https://docs.rs/taskscope) promises that nothing a scope started outlives
//! it, and that a deadline reaches everything below it. A web server breaks both at its
//! two boundaries: hyper and `axum::serve` run each connection in a task of its own
//! (`tokio::spawn`) and drop a handler's future when its client goes away, so a scope
//! opened in a handler has no live parent and whatever it leaves behind is only aborted;
//! and a caller's deadline stops at the process, since nothing reads it from the request
//! or writes it onto the next call. This crate carries the tree across both, on tower and
//! hyper, the way Go's `context` does through `net/http` and gRPC.
//!
//! # The tree of a server
//!
//! ```text
//! server scope            (your scope, or the one `serve` opens; shutdown = its cancel)
//! ├── connection scope    (`serve` only; HTTP/2 streams are its children)
//! │   ├── request scope   (`ServerLayer`: deadline from the caller, policy on disconnect)
//! │   │   └── ...         (the handler's scopes and children)
//! │   └── request scope
//! └── connection scope
//! ```
//!
//! - [`ServerLayer`] opens a request scope for each request as a child of the scope whose
//!   handle it was given, whichever task hyper runs the request in. It is the piece to use
//!   under `axum::serve`, tonic's server, or any hyper server.
//! - [`serve`] is an accept loop that builds the whole tree: a connection scope per
//!   connection, the `ServerLayer` inside it, graceful shutdown on the server scope's
//!   cancellation, HTTP/1 and HTTP/2. Feature `serve` (on by default).
//! - [`ClientLayer`] writes the caller's remaining time onto outgoing requests.
//!
//! # When the client goes away: [`OnDisconnect`]
//!
//! - `Drop` (default, hyper's behaviour): the handler is dropped; what it spawned is
//!   cancelled and awaited by the server scope instead of being left behind.
//! - `Cancel { grace }`: the handler sees `cancelled()` with reason
//!   [`CancelReason::Disconnected`](taskscope_core::CancelReason::Disconnected) and has
//!   `grace` to clean up asynchronously.
//! - `Detach`: the handler finishes (a write that must not stop half way); shutdown still
//!   awaits it.
//!
//! Per route, stack the policy as a layer on the route: `.layer(OnDisconnect::Detach)`.
//!
//! # Deadlines on the wire
//!
//! | header | read by `ServerLayer` | written by `ClientLayer` |
//! |---|---|---|
//! | `grpc-timeout` (gRPC's, up to 8 digits and a unit: [`grpc_timeout`]) | yes | yes |
//! | [`TIMEOUT_MS`] (`x-timeout-ms`, whole milliseconds; the name is configurable) | yes | yes |
//! | [`DEADLINE_EXHAUSTED`] (`x-deadline-exhausted: 1`, on a 504 caused by the caller's own budget) | | |
//!
//! A request scope's deadline is the smallest of the two headers and the server's
//! [`max_timeout`](ServerLayer::max_timeout). Values are durations (the time left), so no
//! clocks need to agree; they are rounded down, so a hop never promises more time than is
//! left. Malformed values are treated as absent and counted ([`Stats`]). A request with its
//! budget spent on arrival is answered 504 (gRPC `DEADLINE_EXCEEDED`) without calling the
//! handler; one whose deadline passes in the handler likewise; one ended by shutdown 503
//! (gRPC `UNAVAILABLE`).
//!
//! # Comparison to tower-http's `TimeoutLayer` and tonic's timeout
//!
//! | | tower-http `TimeoutLayer` | tonic (server) | `ServerLayer` |
//! |---|---|---|---|
//! | bounds the handler | its own fixed timeout | the caller's `grpc-timeout` | the smallest of the caller's headers and the maximum |
//! | the handler can read its deadline | no | no | `taskscope::current_deadline()` |
//! | nested work obeys it | only what the handler's future polls | same | every scope and child below, through the tree |
//! | the deadline is forwarded to the next hop | no | no | with `ClientLayer` |
//! | what the handler spawned, when it is dropped | left running | left running | cancelled and awaited by the server scope |
//! | a client that went away | handler dropped | handler dropped | `Drop`, `Cancel { grace }` or `Detach`, per route |
//! | status at expiry | 408 (configurable) | `CANCELLED` | 504 / `DEADLINE_EXCEEDED` |
//!
//! # With tonic
//!
//! tonic's `Server` and `Channel` read `grpc-timeout` themselves and start a timer of their
//! own that no layer can reach: at the caller's deadline tonic's server answers
//! `CANCELLED` (and its channel gives up) before the request scope's `DEADLINE_EXCEEDED`
//! arrives, and the handler's work is then dropped rather than awaited before the answer.
//! Serve tonic's routes (`tonic::service::Routes`, a tower service) with [`serve`] or
//! another hyper server, and call through a hyper client wrapped in [`ClientLayer`], as
//! the `grpc_deadline` example does. A call `ClientLayer` refuses to send fails with a boxed
//! [`Cancelled`](taskscope_core::Cancelled), which tonic's client reports as
//! `Code::Unknown`: map it to `DEADLINE_EXCEEDED` where you call.
//!
//! `ClientLayer` over a service whose error type is already a boxed error, in a future that
//! must be `Send`, can trip rustc's higher-ranked inference ("implementation of `From` is
//! not general enough"), as tower's own `TimeoutLayer` does; a concrete error type on the
//! inner service avoids it.
//!
//! # Example: axum
//!
//! ```no_run
//! use std::time::Duration;
//! use axum::{Router, routing::get};
//! use taskscope_tower::ServerLayer;
//!
//! async fn search() -> String {
//!     // Runs in a request scope: its deadline is the caller's, at most 2 s.
//!     let _left = taskscope::current_deadline();
//!     String::from("results")
//! }
//!
//! #[tokio::main]
//! async fn main() -> std::io::Result<()> {
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//!     taskscope::Scope::builder()
//!         .name("server")
//!         .run(async |server| -> std::io::Result<()> {
//!             let app = Router::new()
//!                 .route("/search", get(search))
//!                 .layer(ServerLayer::new(server.handle()).max_timeout(Duration::from_secs(2)));
//!             axum::serve(listener, app).await
//!         })
//!         .await
//! }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]

mod client;
pub mod grpc_timeout;
mod headers;
mod route;
#[cfg(feature = "serve")]
mod serve;
mod server;
mod stats;

pub use client::{BoxError, CallFuture, ClientLayer, PropagateDeadline};
pub use headers::{DEADLINE_EXHAUSTED, TIMEOUT_MS};
pub use route::SetOnDisconnect;
#[cfg(feature = "serve")]
pub use serve::{Serve, serve};
pub use server::{OnDisconnect, RequestScope, ResponseFuture, ServerLayer};
pub use stats::Stats;
