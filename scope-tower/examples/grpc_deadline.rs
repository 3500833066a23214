//! A caller's gRPC deadline carried through two tonic services, with the work below the
//! last handler cancelled and awaited when it runs out.
//!
//! ```text
//! client ──Search──▶ Frontend ──Lookup──▶ Backend ──▶ 3 shards (spawned in a scope)
//!  300 ms scope        request scope          request scope
//!  ClientLayer         ClientLayer
//! ```
//!
//! tonic parses `grpc-timeout` itself, but a handler never sees the deadline and nothing
//! forwards it to the next call. Here:
//!
//! - the client calls inside a scope with a 300 ms timeout; its `ClientLayer` writes what is
//!   left (less a 10 ms reserve) as `grpc-timeout`;
//! - each server runs every request in a request scope under its server scope, whose
//!   deadline is the caller's: a handler reads it with `taskscope::current_deadline()`;
//! - Frontend calls Backend through a `ClientLayer` (20 ms reserve): Backend gets a smaller
//!   budget without any deadline code in Frontend's handler;
//! - when Backend's budget runs out, its request scope cancels the shards, awaits them, and
//!   answers `DEADLINE_EXCEEDED`; Frontend passes the status on, and the client has it
//!   before its own deadline;
//! - a call whose budget is already spent is never sent;
//! - a call without a deadline gets the servers' maximum (`max_timeout`);
//! - the servers shut down by cancelling their scopes, which return only once nothing they
//!   started is running.
//!
//! # tonic's own transport
//!
//! The services are tonic's (`tonic::server::Grpc`, `tonic::service::Routes`,
//! `tonic::client::Grpc`, the prost codec), but they are served by `taskscope_tower::serve`
//! and called over hyper-util's HTTP/2 client rather than tonic's `Server` and `Channel`.
//! Both of those enforce `grpc-timeout` with a timer of their own that no user layer can
//! reach: `Server` puts it outside the layers given to `Server::layer`, `Channel` inside
//! itself, where it reads the header the `ClientLayer` wrote. That timer fires at the same
//! moment as the request scope's deadline (the channel's a little earlier: it started
//! before the request reached the server) and answers `CANCELLED` ("Timeout expired"),
//! dropping the request scope as if its client had gone away. Under either of them the
//! client gets `CANCELLED` instead of `DEADLINE_EXCEEDED` in half of the runs or more.
//!
//! # No protoc
//!
//! The messages derive `prost::Message` and the service glue that `tonic-build` would
//! generate is written out by hand below. The protocol:
//!
//! ```proto
//! syntax = "proto3";
//! package demo;
//! message Query  { string text = 1; uint64 work_ms = 2; }
//! message Answer { string text = 1; uint64 frontend_budget_us = 2; uint64 backend_budget_us = 3; }
//! service Frontend { rpc Search(Query) returns (Answer); }
//! service Backend  { rpc Lookup(Query) returns (Answer); }
//! ```
//!
//! Run with `cargo run -p taskscope-tower --example grpc_deadline`.

use std::convert::Infallible;
use std::error::Error as _;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use taskscope::{CancelReason, Cancelled, Scope, ScopeHandle};
use taskscope_tower::{BoxError, ClientLayer, PropagateDeadline};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tonic::body::Body;
use tonic::server::{NamedService, UnaryService};
use tonic::service::Routes;
use tonic::{Code, Request, Response, Status};
use tower::{Service, ServiceBuilder};

/// The client's whole budget.
const CLIENT_TIMEOUT: Duration = Duration::from_millis(300);
/// Kept back by the client: time to receive the answer before its own deadline.
const CLIENT_RESERVE: Duration = Duration::from_millis(10);
/// Kept back by Frontend on its call to Backend: time to answer its own caller.
const FRONTEND_RESERVE: Duration = Duration::from_millis(20);
/// What the client has left in step 3: less than its reserve.
const SPENT: Duration = Duration::from_millis(5);
/// The servers' longest request, and the deadline of requests that carry none.
const MAX_TIMEOUT: Duration = Duration::from_secs(2);
/// How many shards Backend runs in parallel for one lookup.
const SHARDS: usize = 3;

// ---------------------------------------------------------------------------------------
// Messages and service glue: what prost-build and tonic-build would generate.
// ---------------------------------------------------------------------------------------

mod pb {
    /// `demo.Query`
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Query {
        #[prost(string, tag = "1")]
        pub text: String,
        /// How long each of Backend's shards works on it.
        #[prost(uint64, tag = "2")]
        pub work_ms: u64,
    }

    /// `demo.Answer`
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Answer {
        #[prost(string, tag = "1")]
        pub text: String,
        /// The budget Frontend's handler saw, in microseconds.
        #[prost(uint64, tag = "2")]
        pub frontend_budget_us: u64,
        /// The budget Backend's handler saw, in microseconds.
        #[prost(uint64, tag = "3")]
        pub backend_budget_us: u64,
    }
}

type Codec = tonic_prost::ProstCodec<pb::Answer, pb::Query>;
type ClientCodec = tonic_prost::ProstCodec<pb::Query, pb::Answer>;

/// One unary method `Query -> Answer` of a service: the handler a server calls.
trait Unary: Clone + Send + Sync + 'static {
    /// The gRPC service name, `package.Service`.
    const SERVICE: &'static str;
    /// The method's path, `/package.Service/Method`.
    const PATH: &'static str;

    fn call(
        &self,
        req: Request<pb::Query>,
    ) -> impl Future<Output = Result<Response<pb::Answer>, Status>> + Send + 'static;
}

/// The server side of a service with one unary method (tonic-build's `XxxServer`): routes
/// the method's path to the handler, answers `UNIMPLEMENTED` for any other.
#[derive(Clone)]
struct UnaryServer<H>(H);

impl<H: Unary> NamedService for UnaryServer<H> {
    const NAME: &'static str = H::SERVICE;
}

/// Adapts the handler to tonic's `UnaryService`.
struct Handler<H>(H);

impl<H: Unary> UnaryService<pb::Query> for Handler<H> {
    type Response = pb::Answer;
    type Future = Pin<Box<dyn Future<Output = Result<Response<pb::Answer>, Status>> + Send>>;

    fn call(&mut self, req: Request<pb::Query>) -> Self::Future {
        Box::pin(self.0.call(req))
    }
}

impl<H: Unary> Service<http::Request<Body>> for UnaryServer<H> {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<http::Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        if req.uri().path() != H::PATH {
            return Box::pin(async { Ok(Status::unimplemented("no such method").into_http()) });
        }
        let handler = Handler(self.0.clone());
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(Codec::default());
            Ok(grpc.unary(handler, req).await)
        })
    }
}

/// The client side of one unary method (tonic-build's `XxxClient`) over hyper-util's HTTP/2
/// client, behind a `ClientLayer`. tonic's client takes any such service.
#[derive(Clone)]
struct UnaryClient {
    grpc: tonic::client::Grpc<PropagateDeadline<Client<HttpConnector, Body>>>,
}

impl UnaryClient {
    /// A client of the server at `addr` whose calls carry the caller's remaining time,
    /// less `reserve`.
    fn new(addr: SocketAddr, reserve: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let http2 = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .build(connector);
        let svc = ServiceBuilder::new()
            .layer(ClientLayer::new().reserve(reserve))
            .service(http2);
        let origin = http::Uri::try_from(format!("http://{addr}")).expect("a valid origin");
        UnaryClient {
            grpc: tonic::client::Grpc::with_origin(svc, origin),
        }
    }

    async fn call(
        &mut self,
        path: &'static str,
        query: pb::Query,
    ) -> Result<Response<pb::Answer>, Status> {
        self.grpc
            .ready()
            .await
            .map_err(|e| Status::unavailable(format!("service was not ready: {e}")))?;
        let path = http::uri::PathAndQuery::from_static(path);
        self.grpc
            .unary(Request::new(query), path, ClientCodec::default())
            .await
            .map_err(spent_budget_is_deadline_exceeded)
    }
}

/// A call the `ClientLayer` refused to send, its budget being spent, fails inside the
/// transport with a `Cancelled`, which tonic reports as `UNKNOWN`: name it for what it is.
fn spent_budget_is_deadline_exceeded(status: Status) -> Status {
    let spent = status
        .source()
        .and_then(|e| e.downcast_ref::<Cancelled>())
        .is_some_and(|c| c.reason() == CancelReason::DeadlineExceeded);
    if spent {
        Status::deadline_exceeded("budget spent before the call was sent")
    } else {
        status
    }
}

// ---------------------------------------------------------------------------------------
// The services.
// ---------------------------------------------------------------------------------------

/// What the handler running now has left, from its request scope's deadline.
fn budget() -> Duration {
    taskscope::current_deadline()
        .expect("every request scope has the caller's deadline here")
        .saturating_duration_since(Instant::now())
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// Elapsed time since the example started, for the log lines.
#[derive(Clone, Copy)]
struct Clock(Instant);

impl Clock {
    fn t(&self) -> String {
        format!("[{:>4} ms]", self.0.elapsed().as_millis())
    }
}

/// Frontend: searches by asking Backend.
#[derive(Clone)]
struct Frontend {
    backend: UnaryClient,
    stats: Stats,
    clock: Clock,
}

impl Unary for Frontend {
    const SERVICE: &'static str = "demo.Frontend";
    const PATH: &'static str = "/demo.Frontend/Search";

    fn call(
        &self,
        req: Request<pb::Query>,
    ) -> impl Future<Output = Result<Response<pb::Answer>, Status>> + Send + 'static {
        let mut backend = self.backend.clone();
        let clock = self.clock;
        self.stats.0.searches.fetch_add(1, Ordering::SeqCst);
        async move {
            let left = budget();
            println!(
                "{}   frontend: Search({:?}), deadline in {}",
                clock.t(),
                req.get_ref().text,
                ms(left)
            );
            // No deadline code here: the ClientLayer forwards what is left.
            match backend.call("/demo.Backend/Lookup", req.into_inner()).await {
                Ok(res) => {
                    let mut answer = res.into_inner();
                    answer.frontend_budget_us = left.as_micros() as u64;
                    Ok(Response::new(answer))
                }
                Err(status) => {
                    println!(
                        "{}   frontend: Backend answered {:?}; passing it on",
                        clock.t(),
                        status.code()
                    );
                    Err(status)
                }
            }
        }
    }
}

/// Backend: looks a query up in three shards at once.
#[derive(Clone)]
struct Backend {
    stats: Stats,
    clock: Clock,
}

impl Unary for Backend {
    const SERVICE: &'static str = "demo.Backend";
    const PATH: &'static str = "/demo.Backend/Lookup";

    fn call(
        &self,
        req: Request<pb::Query>,
    ) -> impl Future<Output = Result<Response<pb::Answer>, Status>> + Send + 'static {
        let Backend { stats, clock } = self.clone();
        async move {
            let left = budget();
            let query = req.into_inner();
            println!(
                "{}     backend: Lookup({:?}), deadline in {}; {SHARDS} shards x {} ms",
                clock.t(),
                query.text,
                ms(left),
                query.work_ms
            );
            let work = Duration::from_millis(query.work_ms);
            // The shards are children of a scope inside the request scope: its deadline
            // reaches them, and the request scope awaits them before it answers.
            let hits = taskscope::scope(async |s| {
                let shards: Vec<_> = (0..SHARDS)
                    .map(|i| s.spawn(shard(stats.clone(), clock, i, work)))
                    .collect();
                let mut hits = 0;
                for h in shards {
                    hits += h.await?;
                }
                Ok::<_, Cancelled>(hits)
            })
            .await
            .map_err(|c| match c.reason() {
                CancelReason::DeadlineExceeded => Status::deadline_exceeded(c.to_string()),
                _ => Status::unavailable(c.to_string()),
            })?;
            Ok(Response::new(pb::Answer {
                text: format!("{hits} hits for {:?}", query.text),
                frontend_budget_us: 0,
                backend_budget_us: left.as_micros() as u64,
            }))
        }
    }
}

/// One shard's work, counted while it runs.
async fn shard(stats: Stats, clock: Clock, i: usize, work: Duration) -> Result<u64, Cancelled> {
    let mut guard = stats.shard_started(clock, i);
    tokio::time::sleep(work).await;
    guard.finished = true;
    Ok(1)
}

/// What the example checks: Frontend's requests, Backend's running and cancelled shards.
#[derive(Clone, Default)]
struct Stats(Arc<Counters>);

#[derive(Default)]
struct Counters {
    searches: AtomicUsize,
    running: AtomicUsize,
    cancelled: AtomicUsize,
}

impl Stats {
    fn shard_started(&self, clock: Clock, i: usize) -> ShardGuard {
        self.0.running.fetch_add(1, Ordering::SeqCst);
        ShardGuard {
            stats: self.clone(),
            clock,
            i,
            finished: false,
        }
    }
    fn searches(&self) -> usize {
        self.0.searches.load(Ordering::SeqCst)
    }
    fn running(&self) -> usize {
        self.0.running.load(Ordering::SeqCst)
    }
    fn cancelled(&self) -> usize {
        self.0.cancelled.load(Ordering::SeqCst)
    }
}

/// Uncounts a shard when its future is dropped, finished or cancelled.
struct ShardGuard {
    stats: Stats,
    clock: Clock,
    i: usize,
    finished: bool,
}

impl Drop for ShardGuard {
    fn drop(&mut self) {
        if !self.finished {
            self.stats.0.cancelled.fetch_add(1, Ordering::SeqCst);
            println!("{}       shard {} cancelled", self.clock.t(), self.i);
        }
        self.stats.0.running.fetch_sub(1, Ordering::SeqCst);
    }
}

// ---------------------------------------------------------------------------------------
// The servers: tonic's routes served by `taskscope_tower::serve`, in a server scope.
// ---------------------------------------------------------------------------------------

/// Serves `svc` on `listener` in a scope named `name`, hands the scope's handle to `started`
/// (cancelling it shuts the server down), and returns once everything the server started
/// is finished. `serve` opens a connection scope per connection and a request scope per
/// request below it (the `ServerLayer`), with the caller's deadline.
async fn run_server<H: Unary>(
    name: &'static str,
    listener: TcpListener,
    svc: H,
    started: oneshot::Sender<ScopeHandle<io::Error>>,
) -> io::Result<()> {
    Scope::builder()
        .name(name)
        // At shutdown, the server has this long to close its connections gracefully.
        .grace(Duration::from_millis(500))
        .run(async |server| -> io::Result<()> {
            let _ = started.send(server.handle());
            taskscope_tower::serve(listener, Routes::new(UnaryServer(svc)))
                .max_timeout(MAX_TIMEOUT)
                .grace(Duration::from_millis(200))
                .await
        })
        .await
}

/// A server that ended by its shutdown (a cancel) or by returning is fine.
fn shut_down(name: &str, r: io::Result<()>) -> Result<(), String> {
    match r {
        Ok(()) => Ok(()),
        Err(e) if e.get_ref().is_some_and(|e| e.is::<Cancelled>()) => Ok(()),
        Err(e) => Err(format!("the {name} server failed: {e}")),
    }
}

// ---------------------------------------------------------------------------------------
// The client.
// ---------------------------------------------------------------------------------------

/// Calls Frontend's Search in a scope with a `timeout`.
async fn search(
    client: &UnaryClient,
    timeout: Duration,
    text: &str,
    work_ms: u64,
) -> Result<Result<pb::Answer, Status>, Cancelled> {
    let mut client = client.clone();
    let query = pb::Query {
        text: text.into(),
        work_ms,
    };
    Scope::builder()
        .name("client")
        .timeout(timeout)
        .run(async |_s| {
            let res = client.call("/demo.Frontend/Search", query).await;
            Ok::<_, Cancelled>(res.map(Response::into_inner))
        })
        .await
}

/// Prints a check and remembers a failed one.
#[derive(Default)]
struct Checks(Vec<String>);

impl Checks {
    fn check(&mut self, ok: bool, what: &str) {
        if ok {
            println!("  ok: {what}");
        } else {
            println!("  FAILED: {what}");
            self.0.push(what.to_owned());
        }
    }
}

/// The client's calls, then the shutdown.
async fn client(
    clock: Clock,
    frontend: SocketAddr,
    stats: Stats,
    servers: [oneshot::Receiver<ScopeHandle<io::Error>>; 2],
    checks: &mut Checks,
) -> Result<(), BoxError> {
    let [frontend_server, backend_server] = servers;
    let (frontend_server, backend_server) = (frontend_server.await?, backend_server.await?);
    let client = UnaryClient::new(frontend, CLIENT_RESERVE);

    println!(
        "\n0. a call without a deadline (it opens the connections): the servers' {} s maximum applies",
        MAX_TIMEOUT.as_secs()
    );
    match client
        .clone()
        .call(
            "/demo.Frontend/Search",
            pb::Query {
                text: "warm-up".into(),
                work_ms: 0,
            },
        )
        .await
    {
        Ok(res) => {
            let fe = Duration::from_micros(res.get_ref().frontend_budget_us);
            println!(
                "{} client: {:?}; Frontend saw {} left",
                clock.t(),
                res.get_ref().text,
                ms(fe)
            );
            checks.check(
                fe <= MAX_TIMEOUT && fe > MAX_TIMEOUT / 2,
                "Frontend's handler saw the servers' maximum",
            );
        }
        Err(status) => checks.check(false, &format!("the warm-up call succeeds: {status:?}")),
    }

    println!(
        "\n1. the client calls Frontend in a scope with a {} ms timeout; Backend works 50 ms",
        CLIENT_TIMEOUT.as_millis()
    );
    let t0 = Instant::now();
    match search(&client, CLIENT_TIMEOUT, "rust", 50).await {
        Ok(Ok(answer)) => {
            let fe = Duration::from_micros(answer.frontend_budget_us);
            let be = Duration::from_micros(answer.backend_budget_us);
            println!(
                "{} client: {:?} after {}; Frontend saw {} left, Backend {}",
                clock.t(),
                answer.text,
                ms(t0.elapsed()),
                ms(fe),
                ms(be)
            );
            let sent = CLIENT_TIMEOUT - CLIENT_RESERVE;
            checks.check(
                fe <= sent && fe > sent - Duration::from_millis(100),
                "Frontend's handler saw the client's deadline (~290 ms left)",
            );
            checks.check(
                be > Duration::ZERO && be <= fe - FRONTEND_RESERVE,
                "Backend's handler saw a smaller budget (Frontend's, less its 20 ms reserve)",
            );
        }
        other => checks.check(false, &format!("the search succeeds: {other:?}")),
    }

    println!(
        "\n2. the same call, but Backend's {SHARDS} shards need 2 s: the budget runs out in Backend"
    );
    let t0 = Instant::now();
    let res = search(&client, CLIENT_TIMEOUT, "slow", 2_000).await;
    let took = t0.elapsed();
    let running = stats.running();
    match &res {
        Ok(Err(status)) => println!(
            "{} client: {:?} ({:?}) after {}; shards running: {running}",
            clock.t(),
            status.code(),
            status.message(),
            ms(took)
        ),
        other => println!("{} client: {other:?} after {}", clock.t(), ms(took)),
    }
    checks.check(
        matches!(&res, Ok(Err(s)) if s.code() == Code::DeadlineExceeded),
        "the client got Code::DeadlineExceeded (not Cancelled)",
    );
    checks.check(
        took < CLIENT_TIMEOUT,
        "it came before the client's own deadline",
    );
    checks.check(
        stats.cancelled() == SHARDS && running == 0,
        "Backend's shards were cancelled and awaited before it answered",
    );

    println!(
        "\n3. a call with {} ms left, less than the client's {} ms reserve",
        SPENT.as_millis(),
        CLIENT_RESERVE.as_millis()
    );
    let searches = stats.searches();
    let res = search(&client, SPENT, "late", 50).await;
    match &res {
        Ok(Err(status)) => println!(
            "{} client: {:?} ({:?})",
            clock.t(),
            status.code(),
            status.message()
        ),
        other => println!("{} client: {other:?}", clock.t()),
    }
    checks.check(
        matches!(&res, Ok(Err(s)) if s.code() == Code::DeadlineExceeded),
        "the client got Code::DeadlineExceeded",
    );
    checks.check(
        stats.searches() == searches,
        "the call was never sent (Frontend saw no request)",
    );

    println!("\n4. shutdown: cancel both server scopes");
    drop(client);
    frontend_server.cancel();
    backend_server.cancel();
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let clock = Clock(Instant::now());
    let stats = Stats::default();
    let mut checks = Checks::default();

    // `serve` sets `TCP_NODELAY` on the connections it accepts.
    let backend_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let frontend_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let backend_addr = backend_listener.local_addr().expect("an address");
    let frontend_addr = frontend_listener.local_addr().expect("an address");
    println!("Backend on {backend_addr}, Frontend on {frontend_addr}");

    let frontend = Frontend {
        backend: UnaryClient::new(backend_addr, FRONTEND_RESERVE),
        stats: stats.clone(),
        clock,
    };
    let backend = Backend {
        stats: stats.clone(),
        clock,
    };
    let (fe_tx, fe_rx) = oneshot::channel();
    let (be_tx, be_rx) = oneshot::channel();
    let (fe, be, client) = tokio::join!(
        run_server("frontend", frontend_listener, frontend, fe_tx),
        run_server("backend", backend_listener, backend, be_tx),
        client(
            clock,
            frontend_addr,
            stats.clone(),
            [fe_rx, be_rx],
            &mut checks
        ),
    );
    println!(
        "{} both server scopes returned; shards running: {}",
        clock.t(),
        stats.running()
    );
    if let Err(e) = client {
        checks.check(false, &format!("the client ran: {e}"));
    }
    for (name, r) in [("frontend", fe), ("backend", be)] {
        if let Err(e) = shut_down(name, r) {
            checks.check(false, &e);
        }
    }
    checks.check(
        stats.running() == 0,
        "nothing Backend started is running after the server scopes returned",
    );

    if checks.0.is_empty() {
        println!("\nall checks passed");
        ExitCode::SUCCESS
    } else {
        println!("\n{} check(s) failed", checks.0.len());
        ExitCode::FAILURE
    }
}
