#![cfg_attr(docsrs, feature(doc_cfg))]
//! The runtime crate of [taskscope](https://docs.rs/taskscope): scopes, the cancel tree,
//! deadlines and handles. Use it through the `taskscope` facade, which adds the macros.
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]

// Module map (the design record is `docs/design.md`; the tree's invariants are in `tree`):
//
// - `tree/`: the cancel tree. `node` (state word, the node's life, attach/detach, cancel
//   and how it spreads), `busy` (counting what keeps a node busy; closing), `kind`, `list`
//   and `slab` (small containers), `loom_tests`.
// - `driver`: the one loop of every future that owns a node (enter, timer, who catches,
//   lend the node to the ambient frame, wait for the subtree, one teardown), over a `Work`
//   that a scope and a cancel scope each implement.
// - `outcome`: what a child's exit means for its scope; recording errors and panics.
// - `context`: the ambient frame (which node the running code is under) and the ambient
//   functions (`cancelled`, `checkpoint`, `current_deadline`, ...).
// - `scope/`: scopes. `mod` (the `scope` entry point), `builder`, `body` (`Scope`),
//   `handle` (`ScopeHandle`), `future` (`ScopeFuture`: the body, children, result),
//   `mode` (fail fast or collect errors).
// - `cancel_scope`: `CancelScope`, `CancelHandle`, `move_on_after`, `fail_after`,
//   `shield`. `parent`: opening a scope under a given scope (`Parent`).
// - Children: `child/` (spawned and blocking children, `TaskHandle`; `registry`: the
//   abort registry; `limit`: the concurrency limiter), `local` (in-task children),
//   `background`, `start` (the `start()` handshake), `supervise`, `permit`
//   (reservations under a limit), `results` (`Completions`, `join_all`), `race`.
// - `error` (reasons and errors), `snapshot` (copies of the tree), `watch` (stuck-scope
//   reports), `spans` (tracing), `interop` (tokio-util), `shutdown` (signals), `sync` (the
//   loom shim).

mod background;
mod cancel_scope;
mod child;
mod context;
mod driver;
mod error;
#[cfg(feature = "tokio-util")]
mod interop;
mod local;
mod outcome;
mod parent;
mod permit;
mod race;
mod results;
mod scope;
#[cfg(feature = "signal")]
mod shutdown;
mod snapshot;
#[cfg(feature = "tracing")]
mod spans;
mod start;
mod supervise;
mod sync;
mod tree;
mod watch;

pub use cancel_scope::{
    CancelHandle, CancelScope, FailAfter, MoveOnAfter, Run, Shield, fail_after, fail_at,
    move_on_after, move_on_at, shield,
};
pub use child::{ChildOutput, TaskHandle, WaitChildren};
pub use context::{
    WaitForCancel, cancelable, cancelled, checkpoint, current_deadline, is_cancelled,
};
pub use error::{CancelReason, Cancelled, Errors, SpawnError, TrySpawnError};
pub use local::{Accepts, Flavor, Local, LocalHandle, Sendable, Supervisor, Unsupervised};
pub use parent::Parent;
pub use permit::{HandleReserve, Reserve, SpawnPermit};
pub use race::{Race, race};
pub use results::{Completions, join_all, join_all_in};
pub use scope::{
    BodyResult, CollectErrors, FailFast, Mode, Scope, ScopeBuilder, ScopeFuture, ScopeHandle, scope,
};
#[cfg(feature = "signal")]
pub use shutdown::shutdown_signal;
pub use snapshot::{NodeKind, NodeSnapshot, NodeState, TreeSnapshot, snapshot};
pub use start::{Ready, Start};
pub use supervise::Supervised;
