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
//   `handle` (`ScopeHandle`), `future` (`ScopeFuture`: the body, children, result; and
//   `ScopeWork`, what the driver runs for a scope), `ambient` (a scope without a handle,
//   its node, driver and state built only when needed), `mode` (fail fast or collect
//   errors).
// - `cancel_scope`: `CancelScope`, `CancelHandle`, `move_on_after`, `fail_after`,
//   `shield`. `timeout`: a time limit on a node future not built yet (a timer of its
//   own). `parent`: opening a scope under a given scope (`Parent`).
// - Children: `child/` (spawned and blocking children, `TaskHandle`; `registry`: the
//   abort registry; `limit`: the concurrency limiter), `local` (in-task children),
//   `background`, `start` (the `start()` handshake), `supervise`, `permit`
//   (reservations under a limit), `results` (`Completions`, `join_all`), `race`.
// - `error` (reasons and errors), `snapshot` (copies of the tree; public, with its types), `watch` (stuck-scope
//   reports), `spans` (tracing), `interop` (tokio-util), `shutdown` (signals), `sync` (the
//   loom shim).
// - Public modules that only re-export, grouping the names below the root: `future`,
//   `flavor`, `mode`, `combinators` (defined here, after the root's `pub use`s).

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
pub mod snapshot;
#[cfg(feature = "tracing")]
mod spans;
mod start;
mod supervise;
mod sync;
mod timeout;
mod tree;
mod watch;

// The crate root: what a new user needs. Scopes and their handles, cancel scopes and the
// timeout functions, the ambient functions, the handles of children, the errors. Named
// future types, flavors, error modes, combinators and snapshots live in modules below.
pub use cancel_scope::{
    CancelHandle, CancelScope, fail_after, fail_at, move_on_after, move_on_at, shield,
};
pub use child::{ChildOutput, TaskHandle};
pub use context::{cancelable, cancelled, checkpoint, current_deadline, is_cancelled};
pub use error::{CancelReason, Cancelled, Errors, SpawnError, TrySpawnError};
pub use local::LocalHandle;
pub use parent::Parent;
pub use permit::SpawnPermit;
pub use scope::{Scope, ScopeBuilder, ScopeHandle, scope};
#[cfg(feature = "signal")]
pub use shutdown::shutdown_signal;
pub use snapshot::snapshot;
pub use start::Ready;
pub use supervise::Supervised;

pub mod future {
    //! The named futures that functions and methods of this crate return.
    //!
    //! You rarely write these names: `.await` the call, or name the type when you store the
    //! future in a struct or return it from a trait. Each type's documentation says what it
    //! resolves to, what dropping it does and whether it is cancel safe.
    pub use crate::cancel_scope::{FailAfter, MoveOnAfter, Run, Shield};
    pub use crate::child::WaitChildren;
    pub use crate::context::WaitForCancel;
    pub use crate::permit::{HandleReserve, Reserve};
    pub use crate::race::Race;
    #[doc(hidden)]
    pub use crate::scope::AmbientFuture;
    pub use crate::scope::ScopeFuture;
    pub use crate::start::Start;
}

pub mod flavor {
    //! What kind of children a scope takes: its flavor, a type parameter of
    //! [`Scope`](crate::Scope) that the builder picks.
    //!
    //! [`Sendable`] (the default: `Send + 'static` children on the runtime),
    //! [`Local`] (built with [`ScopeBuilder::local`](crate::ScopeBuilder::local): `!Send`
    //! children polled inside the scope's own task) and [`Supervisor`] (built with
    //! [`ScopeBuilder::supervise`](crate::ScopeBuilder::supervise): a child's failure does
    //! not cancel its siblings). The traits [`Flavor`], [`Unsupervised`] and [`Accepts`]
    //! are the bounds that tie a method to the flavors it makes sense for; you meet them in
    //! signatures and error messages, not in code you write.
    pub use crate::local::{Accepts, Flavor, Local, Sendable, Supervisor, Unsupervised};
}

pub mod mode {
    //! How a scope ends on a child's error: its mode, a type parameter of
    //! [`Scope`](crate::Scope) that the builder picks.
    //!
    //! [`FailFast`] (the default: the first error cancels the scope and is returned) or
    //! [`CollectErrors`] (built with
    //! [`ScopeBuilder::collect_errors`](crate::ScopeBuilder::collect_errors): every error is
    //! kept and returned together in [`Errors`](crate::Errors)). [`Mode`] is the trait of
    //! the two and [`BodyResult`] the bound on what a scope's body returns under each.
    pub use crate::scope::{BodyResult, CollectErrors, FailFast, Mode};
}

pub mod combinators {
    //! Running several futures under the current scope and taking their results together:
    //! [`race`] (the first to finish wins, the others are cancelled), [`join_all`] and
    //! [`join_all_in`] (all of them, in a scope of their own or in a given one), and
    //! [`Completions`] (children's results in the order they finish, as `JoinSet::join_next`).
    pub use crate::race::race;
    pub use crate::results::{Completions, join_all, join_all_in};
}

// The paths of the first release, from before the modules above existed: kept so that code
// written against them still compiles, and hidden so the documentation shows one path for
// each item.
#[doc(hidden)]
pub use crate::snapshot::{NodeKind, NodeSnapshot, NodeState, TreeSnapshot};
#[doc(hidden)]
pub use crate::{combinators::*, flavor::*, future::*, mode::*};
