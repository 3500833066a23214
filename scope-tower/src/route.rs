//! A route's own disconnect policy: [`OnDisconnect`] used as a layer on a route writes into
//! the slot of the request being routed, which its [`ServerLayer`](crate::ServerLayer) opened.
//!
//! The slot is a thread-local that the server layer opens around every call into the inner
//! service and every poll of its future, and reads back afterwards: a route's layer is
//! called from inside one of them (synchronously in the router's `call`, or in the first
//! poll of the router's future), on the same thread. Opening nests (a saved value is put
//! back, also on unwind), so a server layer inside another's handler keeps its own. This
//! costs a thread-local access per poll instead of an allocation and an extension per
//! request.

use std::cell::Cell;
use std::task::{Context, Poll};

use http::Request;
use tower_layer::Layer;
use tower_service::Service;

use crate::server::OnDisconnect;

thread_local! {
    /// The policy of the request whose call or poll runs on this thread, if any.
    static SLOT: Cell<Option<OnDisconnect>> = const { Cell::new(None) };
}

/// Runs `f` with the slot open and holding `policy`; afterwards `policy` is what a route
/// layer under `f` set (or unchanged).
pub(crate) fn open<R>(policy: &mut OnDisconnect, f: impl FnOnce() -> R) -> R {
    struct Restore<'a> {
        policy: &'a mut OnDisconnect,
        saved: Option<OnDisconnect>,
    }
    impl Drop for Restore<'_> {
        fn drop(&mut self) {
            let _ = SLOT.try_with(|s| {
                if let Some(p) = s.replace(self.saved) {
                    *self.policy = p;
                }
            });
        }
    }
    let saved = SLOT.try_with(|s| s.replace(Some(*policy))).ok().flatten();
    let _restore = Restore { policy, saved };
    f()
}

/// The service of [`OnDisconnect`] used as a layer: sets the policy of the request it
/// routes. Without a [`ServerLayer`](crate::ServerLayer) around it (or behind a `Buffer`,
/// which calls it on another task) it has no effect.
#[derive(Clone, Debug)]
pub struct SetOnDisconnect<S> {
    inner: S,
    policy: OnDisconnect,
}

impl<S> Layer<S> for OnDisconnect {
    type Service = SetOnDisconnect<S>;

    fn layer(&self, inner: S) -> SetOnDisconnect<S> {
        SetOnDisconnect {
            inner,
            policy: *self,
        }
    }
}

impl<S, B> Service<Request<B>> for SetOnDisconnect<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> S::Future {
        let open = SLOT
            .try_with(|s| match s.get() {
                Some(_) => {
                    s.set(Some(self.policy));
                    true
                }
                None => false,
            })
            .unwrap_or(false);
        #[cfg(feature = "tracing")]
        if !open {
            tracing::debug!(
                policy = ?self.policy,
                "OnDisconnect layer called outside a ServerLayer's request: no effect"
            );
        }
        #[cfg(not(feature = "tracing"))]
        let _ = open;
        self.inner.call(req)
    }
}
