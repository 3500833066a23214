//! `tokio-util` interop (feature `tokio-util`): a node's cancellation as a
//! [`CancellationToken`], and a scope cancelled by one.
//!
//! A token taken from a node is cancelled (outside every lock) in the same step that makes
//! the node soft, so code that only knows tokio-util sees the soft signal at the same time
//! as `cancelled()` does. It is not cancelled when the node finishes without a cancellation.

use tokio_util::sync::CancellationToken;

use crate::error::CancelReason;
use crate::sync::Arc;
use crate::tree::Node;

/// A token cancelled when `node` is (at once if it already is).
pub(crate) fn token(node: &Arc<Node>) -> CancellationToken {
    let token = CancellationToken::new();
    {
        let mut inner = node.lock();
        if !node.state().is_soft() {
            inner.tokens.push(token.clone());
            return token;
        }
    }
    token.cancel();
    token
}

/// What `ScopeBuilder::cancel_on` watches: the token's cancellation.
pub(crate) fn trigger(token: CancellationToken) -> (impl Future<Output = ()> + Send, CancelReason) {
    (token.cancelled_owned(), CancelReason::Explicit)
}
