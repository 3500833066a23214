//! The server side: [`ServerLayer`] runs every request in a request scope under the server
//! scope, with the caller's deadline, and decides what happens when the client goes away.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use taskscope_core::future::Run;
use taskscope_core::{CancelHandle, CancelReason, CancelScope, Parent};
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

use crate::headers::{DEADLINE_EXHAUSTED, Incoming, TIMEOUT_MS};
use crate::stats::Stats;

/// What happens to a request's handler when its client goes away (the connection closed,
/// or its HTTP/2 stream was reset) before the response was ready.
///
/// Set per server with [`ServerLayer::on_disconnect`], and per route by stacking the
/// policy itself as a layer on that route (it implements [`Layer`]):
/// `Router::new().route("/upload", post(upload).layer(OnDisconnect::Detach))`.
///
/// | policy | the handler | pick it for |
/// |---|---|---|
/// | `Drop` | dropped at once, as hyper does; what it spawned is cancelled and awaited by the server scope | reads, searches: work nobody wants any more |
/// | `Cancel { grace }` | sees `cancelled()` (reason [`CancelReason::Disconnected`]) and has `grace` to clean up, then is dropped | work with async cleanup: releasing a lease, rolling back |
/// | `Detach` | runs to completion; the server scope still awaits it at shutdown | writes that must not stop half way: payments, uploads |
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnDisconnect {
    /// Drop the handler's future (hyper's own behaviour). Scopes inside it hand their
    /// children, hard-cancelled, to the server scope, which awaits them.
    #[default]
    Drop,
    /// Cancel the request scope with [`CancelReason::Disconnected`]: the handler sees
    /// `cancelled()` and keeps running for at most `grace` (longer only while it runs a
    /// [`shield`](taskscope_core::shield)), then it is dropped.
    Cancel {
        /// How long the handler may take to finish after it saw the cancellation.
        grace: Duration,
    },
    /// Let the handler finish; its response is discarded. The server scope awaits it (a
    /// shutdown still cancels it, and drops it at the end of the shutdown's grace). Outside
    /// a runtime (a response future dropped with no runtime around) it can only be dropped.
    Detach,
}

/// A [`Layer`] that runs every request in a *request scope*: a cancel scope under the
/// server scope, whatever task the request runs in.
///
/// - **Deadline.** The request scope's deadline is the smallest of the caller's
///   `grpc-timeout` header, its millisecond header ([`TIMEOUT_MS`] by default) and the
///   server's [`max_timeout`](Self::max_timeout). The handler sees it through
///   `taskscope::current_deadline()`, every scope it opens obeys it, and a
///   [`ClientLayer`](crate::ClientLayer) on its outgoing calls forwards what is left. A
///   request whose budget is already spent on arrival is answered at once, and the handler
///   is never called.
/// - **Tree.** The request scope is a child of the scope given to [`new`](Self::new) (the
///   server scope, or a connection scope): cancelled with it, and awaited by it with
///   everything the handler spawned, also when hyper or `axum::serve` drops the handler.
///   A handler's error is its own response: it never reaches the server scope. A panic
///   unwinds into whatever polls the handler (under [`serve`](crate::serve): its connection
///   or stream, which it closes); stack tower-http's `CatchPanicLayer` to answer 500.
/// - **Statuses.** A request scope that ends by its deadline is answered 504 (gRPC
///   `DEADLINE_EXCEEDED`, code 4), one ended by the server's shutdown 503 (gRPC
///   `UNAVAILABLE`, code 14); a gRPC request (content type `application/grpc*`) gets a
///   trailers-only response with HTTP status 200. A client that went away gets nothing
///   (see [`OnDisconnect`]) and is counted in [`Stats::disconnected`].
/// - **Bad input.** A malformed, negative, overlong or repeated deadline header is treated
///   as absent, counted ([`Stats::malformed_headers`]) and logged once per service built by
///   the layer (once per connection under [`serve`](crate::serve)). No header can raise
///   the deadline above the maximum.
///
/// # Drop
///
/// Dropping the response future before it completed is a client that went away: the
/// [`OnDisconnect`] policy decides. With `Cancel` and `Detach` the handler's future moves
/// to a task of its own on the current runtime, still under the server scope.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), taskscope::Cancelled> {
/// use std::time::Duration;
/// use taskscope_tower::{OnDisconnect, ServerLayer};
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
///
/// taskscope::scope(async |server| {
///     let svc = ServiceBuilder::new()
///         .layer(
///             ServerLayer::new(server.handle())
///                 .max_timeout(Duration::from_secs(1))
///                 .on_disconnect(OnDisconnect::Cancel { grace: Duration::from_millis(100) }),
///         )
///         .service(service_fn(|_req: http::Request<()>| async {
///             // The request's deadline: the server's maximum here (no header was sent).
///             assert!(taskscope::current_deadline().is_some());
///             Ok::<_, std::convert::Infallible>(http::Response::new(String::from("ok")))
///         }));
///     let res = svc.oneshot(http::Request::new(())).await.unwrap();
///     assert_eq!(res.into_body(), "ok");
///     Ok(())
/// })
/// .await
/// # }
/// ```
#[derive(Clone)]
pub struct ServerLayer {
    parent: Parent,
    config: Arc<Config>,
    stats: Stats,
}

/// A [`ServerLayer`]'s settings (also what [`Serve`](crate::Serve) configures).
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) max_timeout: Option<Duration>,
    pub(crate) min_budget: Duration,
    pub(crate) on_disconnect: OnDisconnect,
    pub(crate) timeout_header: HeaderName,
}

impl Default for Config {
    /// No maximum, no minimum budget, [`OnDisconnect::Drop`], [`TIMEOUT_MS`].
    fn default() -> Self {
        Config {
            max_timeout: None,
            min_budget: Duration::ZERO,
            on_disconnect: OnDisconnect::Drop,
            timeout_header: TIMEOUT_MS,
        }
    }
}

impl ServerLayer {
    /// A layer whose request scopes are children of `parent` (a
    /// [`ScopeHandle`](taskscope_core::ScopeHandle) or a [`Parent`]): no maximum, no minimum
    /// budget, [`OnDisconnect::Drop`].
    pub fn new(parent: impl Into<Parent>) -> Self {
        ServerLayer::with(parent.into(), Arc::default(), Stats::default())
    }

    /// A layer under `parent` with these settings, counting into `stats` (one per
    /// connection under [`serve`](crate::serve), sharing the server's settings and counters).
    pub(crate) fn with(parent: Parent, config: Arc<Config>, stats: Stats) -> Self {
        ServerLayer {
            parent,
            config,
            stats,
        }
    }

    /// The longest a request may run, whatever its caller asked for (and the deadline of
    /// requests that carry none).
    pub fn max_timeout(mut self, d: Duration) -> Self {
        Arc::make_mut(&mut self.config).max_timeout = Some(d);
        self
    }

    /// Requests that arrive with less than `d` left are answered 504 at once, without
    /// calling the handler (default zero: only a spent budget).
    pub fn min_budget(mut self, d: Duration) -> Self {
        Arc::make_mut(&mut self.config).min_budget = d;
        self
    }

    /// What happens to a handler whose client went away (default [`OnDisconnect::Drop`]).
    /// A route can override it: see [`OnDisconnect`].
    pub fn on_disconnect(mut self, policy: OnDisconnect) -> Self {
        Arc::make_mut(&mut self.config).on_disconnect = policy;
        self
    }

    /// The millisecond deadline header read besides `grpc-timeout` (default
    /// [`TIMEOUT_MS`]).
    pub fn timeout_header(mut self, name: HeaderName) -> Self {
        Arc::make_mut(&mut self.config).timeout_header = name;
        self
    }

    /// The counters of this layer and its clones.
    pub fn stats(&self) -> Stats {
        self.stats.clone()
    }
}

impl fmt::Debug for ServerLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerLayer")
            .field("parent", &self.parent)
            .field("max_timeout", &self.config.max_timeout)
            .field("min_budget", &self.config.min_budget)
            .field("on_disconnect", &self.config.on_disconnect)
            .field("timeout_header", &self.config.timeout_header)
            .finish()
    }
}

impl<S> Layer<S> for ServerLayer {
    type Service = RequestScope<S>;

    fn layer(&self, inner: S) -> RequestScope<S> {
        RequestScope {
            inner,
            layer: self.clone(),
            logged: Arc::new(AtomicBool::new(false)),
        }
    }
}

/// The service of [`ServerLayer`]: runs each request in a request scope.
#[derive(Clone)]
pub struct RequestScope<S> {
    inner: S,
    layer: ServerLayer,
    /// A malformed header was logged already (by this service or a clone).
    logged: Arc<AtomicBool>,
}

impl<S: fmt::Debug> fmt::Debug for RequestScope<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestScope")
            .field("inner", &self.inner)
            .field("layer", &self.layer)
            .finish()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RequestScope<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let stats = &self.layer.stats;
        let config = &*self.layer.config;
        stats.add(|c| &c.requests);
        let grpc = is_grpc(&req);
        let incoming = Incoming::read(req.headers(), &config.timeout_header);
        if incoming.malformed {
            stats.add(|c| &c.malformed_headers);
            if !self.logged.swap(true, Relaxed) {
                #[cfg(feature = "tracing")]
                tracing::warn!(
                    headers = ?req.headers().get_all(crate::grpc_timeout::GRPC_TIMEOUT)
                        .iter()
                        .chain(req.headers().get_all(&config.timeout_header))
                        .collect::<Vec<_>>(),
                    "malformed deadline header treated as absent (logged once)"
                );
            }
        }
        let caller = incoming.budget;
        let budget = match (caller, config.max_timeout) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        // The caller's budget is what bounds the request (not the server's maximum).
        let exhausted = caller.is_some() && caller == budget;
        if budget.is_some_and(|b| b <= config.min_budget) {
            stats.add(|c| &c.expired_on_arrival);
            return ResponseFuture::answered(reply(
                CancelReason::DeadlineExceeded,
                grpc,
                exhausted,
            ));
        }
        let mut scope = CancelScope::new().name("request");
        if let Some(at) = budget.and_then(|b| Instant::now().checked_add(b)) {
            scope = scope.deadline(at);
        }
        let scope = match scope.parent(&self.layer.parent) {
            Ok(scope) => scope,
            Err(_closed) => {
                // The server scope finished: it can await nothing more.
                stats.add(|c| &c.unavailable);
                return ResponseFuture::answered(reply(CancelReason::Shutdown, grpc, false));
            }
        };
        // A route's `OnDisconnect` layer may be called here (or in a poll, below).
        let mut policy = config.on_disconnect;
        let inner = &mut self.inner;
        let handler = crate::route::open(&mut policy, || inner.call(req));
        let handle = scope.handle();
        let run = Box::pin(scope.run(handler));
        ResponseFuture {
            state: State::Running(Running {
                run,
                handle,
                policy,
                polling: false,
                grpc,
                exhausted,
                stats: stats.clone(),
                detach: keep_running::<S::Future>,
            }),
        }
    }
}

fn is_grpc<B>(req: &Request<B>) -> bool {
    req.headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// The response for a request scope that ended with `reason` (a deadline, a shutdown).
fn reply<B: Default>(reason: CancelReason, grpc: bool, exhausted: bool) -> Response<B> {
    let (status, code, message) = match reason {
        CancelReason::DeadlineExceeded => (StatusCode::GATEWAY_TIMEOUT, "4", "deadline exceeded"),
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            "14",
            "the server is shutting down",
        ),
    };
    let mut res = Response::new(B::default());
    if !grpc {
        *res.status_mut() = status;
    }
    let headers = res.headers_mut();
    if grpc {
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        headers.insert("grpc-status", HeaderValue::from_static(code));
        headers.insert("grpc-message", HeaderValue::from_static(message));
    }
    if exhausted && reason == CancelReason::DeadlineExceeded {
        headers.insert(DEADLINE_EXHAUSTED, HeaderValue::from_static("1"));
    }
    res
}

/// The future of [`RequestScope`]: the handler's response, or the layer's answer (504,
/// 503, or their gRPC statuses).
///
/// # Drop
///
/// Dropped before it completed (outside a panic of the handler), it is a client that went
/// away: the request's [`OnDisconnect`] policy decides what becomes of the handler, which
/// the server scope awaits in every case.
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct ResponseFuture<F: Future> {
    state: State<F>,
}

enum State<F: Future> {
    /// Answered without calling the handler (expired on arrival, server closed).
    Answered(Option<F::Output>),
    /// The handler runs in the request scope.
    Running(Running<F>),
    Done,
}

/// A handler's future in its request scope, boxed so that a handler whose client went away
/// can move to a task of its own.
type Handler<F> = Pin<Box<Run<F, <F as Future>::Output>>>;

struct Running<F: Future> {
    run: Handler<F>,
    handle: CancelHandle,
    /// The server's policy, or the route's once its layer was called.
    policy: OnDisconnect,
    /// Inside the handler's poll: left set by a panic in it.
    polling: bool,
    grpc: bool,
    exhausted: bool,
    stats: Stats,
    /// [`keep_running`] for this `F`.
    detach: fn(Handler<F>),
}

impl<F: Future> ResponseFuture<F> {
    fn answered<B, E>(res: Response<B>) -> Self
    where
        F: Future<Output = Result<Response<B>, E>>,
    {
        ResponseFuture {
            state: State::Answered(Some(Ok(res))),
        }
    }
}

impl<F: Future> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Answered(_) => "answered",
            State::Running(_) => "running",
            State::Done => "done",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Default,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Unpin: the handler's future is boxed.
        let this = self.get_mut();
        let out = match &mut this.state {
            State::Answered(res) => res
                .take()
                .expect("`ResponseFuture` polled after completion"),
            State::Running(r) => match ready!({
                // Still set if the handler's poll panics: the future is then only dropped
                // (it is not a client that went away, and must not be polled again).
                r.polling = true;
                let polled = crate::route::open(&mut r.policy, || r.run.as_mut().poll(cx));
                r.polling = false;
                polled
            }) {
                Ok(res) => res,
                Err(cancelled) => {
                    let reason = cancelled.reason();
                    r.stats.add(|c| match reason {
                        CancelReason::DeadlineExceeded => &c.deadline_exceeded,
                        _ => &c.unavailable,
                    });
                    Ok(reply(reason, r.grpc, r.exhausted))
                }
            },
            State::Done => panic!("`ResponseFuture` polled after completion"),
        };
        this.state = State::Done;
        Poll::Ready(out)
    }
}

impl<F: Future> Unpin for ResponseFuture<F> {}

impl<F: Future> Drop for ResponseFuture<F> {
    /// A response future dropped before it completed: the client went away.
    fn drop(&mut self) {
        let State::Running(r) = std::mem::replace(&mut self.state, State::Done) else {
            return;
        };
        if r.polling {
            return; // the handler panicked: dropped with the unwind, no policy applies
        }
        r.stats.add(|c| &c.disconnected);
        match r.policy {
            OnDisconnect::Drop => {
                r.handle.cancel_with(CancelReason::Disconnected);
                drop(r.run);
            }
            OnDisconnect::Cancel { grace } => {
                r.handle.set_grace(grace);
                r.handle.cancel_with(CancelReason::Disconnected);
                (r.detach)(r.run);
            }
            OnDisconnect::Detach => (r.detach)(r.run),
        }
    }
}

/// Lets a handler whose client went away run on in a task of its own (its request scope
/// is still counted by the server scope). Outside a runtime it can only be dropped.
///
/// Instantiated in [`RequestScope::call`], where `F: Send + 'static` is known, and kept as
/// a function pointer, since `Drop` cannot require it.
fn keep_running<F>(run: Handler<F>)
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match tokio::runtime::Handle::try_current() {
        Ok(rt) => drop(rt.spawn(async move {
            let _ = run.await;
        })),
        Err(_) => drop(run),
    }
}
