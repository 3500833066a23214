//! [`serve`]: a server scope, a connection scope per connection, a request scope per
//! request, on hyper-util's HTTP/1 + HTTP/2 connection builder.

use std::fmt;
use std::future::{Future, IntoFuture};
use std::io;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt as _;
use http::{HeaderName, Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use taskscope_core::{CancelReason, Cancelled, Parent, Scope, ScopeHandle};
use tokio::net::{TcpListener, TcpStream};
use tower_layer::Layer;
use tower_service::Service;

use crate::server::{Config, OnDisconnect, ServerLayer};
use crate::stats::Stats;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Trigger = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Serves `service` on `listener` in a server scope: one connection scope per connection,
/// one request scope per request (see [`ServerLayer`]), HTTP/1 and HTTP/2 (negotiated
/// from the first bytes, as hyper-util's `auto` builder does), HTTP/1 upgrades included.
///
/// The returned [`Serve`] configures it (the request scopes' maximum timeout, the
/// disconnect policy, the shutdown's grace period and trigger) and runs when awaited.
///
/// **Shutdown** is a cancellation of the server scope: a [`shutdown_on`](Serve::shutdown_on)
/// trigger, or a cancel of a scope the `serve` future runs in. The server stops accepting
/// (the listener is closed, so new connections are refused; with no grace period, only
/// once the connections are gone, with the accept loop), every connection is told to
/// finish (HTTP/1: after its current request; HTTP/2: `GOAWAY`), and in-flight requests
/// see `cancelled()` and have the [`grace`](Serve::grace) period to finish; what is left
/// then is dropped with its connection (the client sees the connection close, not a 503).
/// The future returns `Ok(())` once nothing the server, its connections and their handlers
/// spawned is running.
///
/// **Failures stay where they happen.** A handler's error is its response; a panic in a
/// handler closes its connection (HTTP/1) or its stream (HTTP/2) and is logged, and the
/// server and its other connections go on (stack tower-http's `CatchPanicLayer` on the
/// service to answer 500 instead). A connection's I/O error ends that connection only.
///
/// # Cancel safety
///
/// Dropping the future (without cancelling first) drops every connection at once and
/// hands what handlers spawned to the nearest live ancestor scope.
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use taskscope_tower::{OnDisconnect, serve};
///
/// # async fn app() -> axum::Router { axum::Router::new() }
/// #[tokio::main]
/// async fn main() -> std::io::Result<()> {
///     let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
///     serve(listener, app().await)
///         .max_timeout(Duration::from_secs(10))
///         .on_disconnect(OnDisconnect::Cancel { grace: Duration::from_millis(200) })
///         .grace(Duration::from_secs(5))
///         .shutdown_on(taskscope::shutdown_signal()) // Ctrl-C or SIGTERM
///         .await
/// }
/// ```
#[cfg_attr(docsrs, doc(cfg(feature = "serve")))]
pub fn serve<S>(listener: TcpListener, service: S) -> Serve<S> {
    Serve {
        listener,
        service,
        config: Config::default(),
        grace: Duration::ZERO,
        triggers: Vec::new(),
        stats: Stats::default(),
    }
}

/// A server configured by [`serve`]; await it to run it.
#[must_use = "a server does nothing until it is awaited"]
#[cfg_attr(docsrs, doc(cfg(feature = "serve")))]
pub struct Serve<S> {
    listener: TcpListener,
    service: S,
    /// The request scopes' settings, shared by every connection's `ServerLayer`.
    config: Config,
    grace: Duration,
    triggers: Vec<Trigger>,
    stats: Stats,
}

impl<S> fmt::Debug for Serve<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Serve")
            .field("listener", &self.listener)
            .field("config", &self.config)
            .field("grace", &self.grace)
            .field("triggers", &self.triggers.len())
            .finish_non_exhaustive()
    }
}

impl<S> Serve<S> {
    /// See [`ServerLayer::max_timeout`].
    pub fn max_timeout(mut self, d: Duration) -> Self {
        self.config.max_timeout = Some(d);
        self
    }

    /// See [`ServerLayer::min_budget`].
    pub fn min_budget(mut self, d: Duration) -> Self {
        self.config.min_budget = d;
        self
    }

    /// See [`ServerLayer::on_disconnect`].
    pub fn on_disconnect(mut self, policy: OnDisconnect) -> Self {
        self.config.on_disconnect = policy;
        self
    }

    /// See [`ServerLayer::timeout_header`].
    pub fn timeout_header(mut self, name: HeaderName) -> Self {
        self.config.timeout_header = name;
        self
    }

    /// How long in-flight requests may take to finish once shutdown began (default zero:
    /// they are dropped at once).
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Shuts the server down (reason [`CancelReason::Shutdown`]) when `trigger` completes.
    /// Several triggers may be given; the first wins.
    pub fn shutdown_on(mut self, trigger: impl Future<Output = ()> + Send + 'static) -> Self {
        self.triggers.push(Box::pin(trigger));
        self
    }

    /// The server's counters: requests and what became of them, connections accepted.
    pub fn stats(&self) -> Stats {
        self.stats.clone()
    }
}

impl<S, B> IntoFuture for Serve<S>
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError> + Send + 'static,
    B: http_body::Body + Default + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Output = io::Result<()>;
    type IntoFuture = Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}

impl<S, B> Serve<S>
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError> + Send + 'static,
    B: http_body::Body + Default + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    async fn run(self) -> io::Result<()> {
        let Serve {
            listener,
            service,
            config,
            grace,
            triggers,
            stats,
        } = self;
        let mut builder = Scope::builder().name("server").grace(grace);
        for trigger in triggers {
            builder = builder.cancel_when(trigger, CancelReason::Shutdown);
        }
        let served = builder
            .run(async move |server| -> Result<(), Cancelled> {
                let config = Arc::new(config);
                loop {
                    let accepted = tokio::select! {
                        biased;
                        _ = taskscope_core::cancelled() => break,
                        r = listener.accept() => r,
                    };
                    let stream = match accepted {
                        Ok((stream, _peer)) => {
                            // A response written in several pieces must not wait for the
                            // peer's delayed acknowledgement (about 40 ms on Linux).
                            let _ = stream.set_nodelay(true);
                            stream
                        }
                        Err(e) => {
                            accept_failed(e).await;
                            continue;
                        }
                    };
                    stats.add(|c| &c.connections);
                    let conn = connection(stream, config.clone(), stats.clone(), service.clone());
                    server.spawn(conn);
                }
                // The listener is dropped with the body: new connections are refused.
                Ok(())
            })
            .await;
        match served {
            // Its own shutdown is how a server ends. With no grace period the scope catches
            // it (the accept loop is not left by `break` but dropped with the body, once the
            // connections are gone).
            Err(c) if c.reason() == CancelReason::Shutdown => Ok(()),
            r => r.map_err(io::Error::from),
        }
    }
}

/// An accept error: a connection that failed before it was accepted is skipped; running
/// out of file descriptors (or similar) is waited out a little, as a server must not stop
/// over it. The wait ends early at shutdown.
async fn accept_failed(e: io::Error) {
    use io::ErrorKind::*;
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    #[cfg(feature = "tracing")]
    tracing::warn!(error = %e, "accept failed; retrying in 50 ms");
    #[cfg(not(feature = "tracing"))]
    let _ = e;
    let _ =
        taskscope_core::move_on_after(Duration::from_millis(50), taskscope_core::cancelled()).await;
}

/// One connection, in a connection scope: HTTP/2 streams are spawned into it, request
/// scopes open under it. Its failures (an I/O error, a handler's panic) end it alone.
async fn connection<S, B>(
    stream: TcpStream,
    config: Arc<Config>,
    stats: Stats,
    service: S,
) -> Result<(), Cancelled>
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError> + Send + 'static,
    B: http_body::Body + Default + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let scope =
        Scope::builder()
            .name("connection")
            .run(async move |conn| -> Result<(), Cancelled> {
                let layer = ServerLayer::with(Parent::from(conn.handle()), config, stats);
                let svc = TowerToHyperService::new(layer.layer(service));
                let builder = auto::Builder::new(Streams(conn.handle()));
                let served = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
                tokio::pin!(served);
                let r = tokio::select! {
                    // The connection first: it is what each wakeup is for (and no random pick).
                    biased;
                    r = served.as_mut() => r,
                    _ = taskscope_core::cancelled() => {
                        // Shutdown: finish what is in flight, accept nothing new.
                        served.as_mut().graceful_shutdown();
                        served.await
                    }
                };
                #[cfg(feature = "tracing")]
                if let Err(e) = r {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                #[cfg(not(feature = "tracing"))]
                let _ = r;
                Ok(())
            });
    if AssertUnwindSafe(scope).catch_unwind().await.is_err() {
        #[cfg(feature = "tracing")]
        tracing::error!("a handler panicked: its connection was closed");
    }
    Ok(())
}

/// hyper's executor for HTTP/2 streams: each stream is a child of its connection scope. A
/// stream whose handler panics is dropped alone (its siblings go on).
#[derive(Clone)]
struct Streams(ScopeHandle<Cancelled>);

impl<F> hyper::rt::Executor<F> for Streams
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        let spawned = self.0.spawn(async move {
            if AssertUnwindSafe(fut).catch_unwind().await.is_err() {
                #[cfg(feature = "tracing")]
                tracing::error!("a handler panicked: its stream was reset");
            }
            Ok(())
        });
        // Refused only once the connection scope finished, which it does not while hyper
        // drives the connection inside it; the stream's future is then dropped (reset),
        // never run outside the tree.
        drop(spawned);
    }
}
