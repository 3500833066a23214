//! The client side: [`ClientLayer`] writes the caller's remaining time onto outgoing
//! requests, so the next hop's request scope inherits the deadline.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::{HeaderName, Request};
use taskscope_core::{CancelReason, Cancelled};
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

use crate::grpc_timeout::{self, GRPC_TIMEOUT};
use crate::headers::{TIMEOUT_MS, decode_ms, encode_ms};

/// The error type of [`PropagateDeadline`]: the inner service's error, or a [`Cancelled`]
/// (reason [`CancelReason::DeadlineExceeded`]) for a call whose budget was spent before it
/// was sent. Downcast to tell them apart.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A [`Layer`] that writes the ambient deadline onto outgoing requests.
///
/// On each call it reads `taskscope::current_deadline()` (the smallest deadline of the
/// scopes the caller runs in, up to the nearest shield), subtracts the
/// [`reserve`](Self::reserve), and writes what is left, rounded down, as `grpc-timeout` and
/// as whole milliseconds ([`TIMEOUT_MS`](crate::TIMEOUT_MS) by default). A budget already
/// written on the request by the caller (either header) is kept if it is smaller.
///
/// - No deadline (or a call made inside `shield(..)`, which hides the deadlines outside
///   it): no header is written.
/// - A budget already spent (less than a millisecond left after the reserve): the call
///   fails at once with [`Cancelled`] ([`CancelReason::DeadlineExceeded`]) and is never sent.
/// - The caller's scope cancelled while the call is in flight: the call's future is dropped
///   with the caller's, which hyper turns into a closed connection (HTTP/1) or a reset
///   stream (HTTP/2); a [`ServerLayer`](crate::ServerLayer) on the other side sees a client
///   that went away.
///
/// The deadline is read when the request is *called*, not when the service is built, so
/// put this layer where the calling code runs (outermost, not behind a `Buffer`).
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use std::time::Duration;
/// use taskscope_tower::ClientLayer;
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
///
/// let client = ServiceBuilder::new()
///     .layer(ClientLayer::new().reserve(Duration::from_millis(10)))
///     .service(service_fn(|req: http::Request<()>| async move {
///         // What the next hop would read.
///         Ok::<_, std::convert::Infallible>(req.headers()["grpc-timeout"].clone())
///     }));
/// let sent = taskscope::move_on_after(Duration::from_millis(300), client.oneshot(http::Request::new(())))
///     .await
///     .unwrap()
///     .unwrap();
/// assert_eq!(sent, "290000u"); // 300 ms less the 10 ms reserve
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct ClientLayer {
    reserve: Duration,
    timeout_header: HeaderName,
}

impl Default for ClientLayer {
    fn default() -> Self {
        ClientLayer::new()
    }
}

impl ClientLayer {
    /// A layer with no reserve that writes `grpc-timeout` and [`TIMEOUT_MS`](crate::TIMEOUT_MS).
    pub fn new() -> Self {
        ClientLayer {
            reserve: Duration::ZERO,
            timeout_header: TIMEOUT_MS,
        }
    }

    /// Time kept back from the budget sent on: what the caller needs after the call
    /// returns (to use the answer, to try something else). Default zero. A call made with
    /// less than `d` (plus a millisecond) left fails at once, unsent.
    pub fn reserve(mut self, d: Duration) -> Self {
        self.reserve = d;
        self
    }

    /// The millisecond header written besides `grpc-timeout`.
    pub fn timeout_header(mut self, name: HeaderName) -> Self {
        self.timeout_header = name;
        self
    }
}

impl<S> Layer<S> for ClientLayer {
    type Service = PropagateDeadline<S>;

    fn layer(&self, inner: S) -> PropagateDeadline<S> {
        PropagateDeadline {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of [`ClientLayer`].
#[derive(Clone, Debug)]
pub struct PropagateDeadline<S> {
    inner: S,
    layer: ClientLayer,
}

impl<S, B> Service<Request<B>> for PropagateDeadline<S>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = CallFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let Some(deadline) = taskscope_core::current_deadline() else {
            return CallFuture::sent(self.inner.call(req));
        };
        let mut left = deadline
            .saturating_duration_since(Instant::now())
            .saturating_sub(self.layer.reserve);
        // A budget the caller already wrote on the request is kept if it is smaller.
        let headers = req.headers();
        let set = [
            headers.get(GRPC_TIMEOUT).and_then(grpc_timeout::decode),
            headers.get(&self.layer.timeout_header).and_then(decode_ms),
        ];
        for set in set.into_iter().flatten() {
            left = left.min(set);
        }
        // Under a millisecond is spent too: the millisecond header would say 0, and the next
        // hop would answer at once without calling its handler.
        if left < Duration::from_millis(1) {
            return CallFuture::spent();
        }
        let headers = req.headers_mut();
        headers.insert(GRPC_TIMEOUT, grpc_timeout::encode(left));
        headers.insert(self.layer.timeout_header.clone(), encode_ms(left));
        CallFuture::sent(self.inner.call(req))
    }
}

pin_project_lite::pin_project! {
    /// The future of [`PropagateDeadline`]: the inner service's call, or the error of a
    /// call not sent because its budget was spent.
    ///
    /// # Cancel safety
    ///
    /// Dropping it drops the inner call (for a hyper client: the connection is closed, or
    /// the HTTP/2 stream reset), which the next hop sees as a client that went away.
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct CallFuture<F> {
        #[pin]
        inner: Option<F>,
    }
}

impl<F> CallFuture<F> {
    fn sent(f: F) -> Self {
        CallFuture { inner: Some(f) }
    }

    /// Not sent: the budget was spent.
    fn spent() -> Self {
        CallFuture { inner: None }
    }
}

impl<F> fmt::Debug for CallFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallFuture")
            .field("sent", &self.inner.is_some())
            .finish()
    }
}

impl<F, T, E> Future for CallFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().inner.as_pin_mut() {
            Some(f) => Poll::Ready(ready!(f.poll(cx)).map_err(Into::into)),
            None => Poll::Ready(Err(Box::new(Cancelled::new(
                CancelReason::DeadlineExceeded,
            )))),
        }
    }
}
