//! [`NodeKind`]: what kind of future owns a node of the cancel tree.

/// What kind of node a [`NodeSnapshot`](crate::NodeSnapshot) is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum NodeKind {
    /// A scope ([`scope`](crate::scope()), [`ScopeBuilder`](crate::ScopeBuilder), the macros).
    Scope,
    /// A [`CancelScope`](crate::CancelScope), [`move_on_after`](crate::move_on_after),
    /// [`fail_after`](crate::fail_after) or [`shield`](crate::shield).
    #[default]
    CancelScope,
    /// The node of a scope's background children
    /// ([`Scope::spawn_background`](crate::Scope::spawn_background)).
    Background,
}
