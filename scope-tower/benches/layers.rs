//! Per-request cost of `ServerLayer` and `ClientLayer` next to their tower peers, in memory,
//! and the loopback throughput of `taskscope_tower::serve` next to a plain hyper-util loop.
//!
//! ```text
//! cargo bench -p taskscope-tower --bench layers                  # wall time (divan), then throughput
//! cargo bench -p taskscope-tower --bench layers -- server        # a divan filter: one group, no throughput
//! cargo bench -p taskscope-tower --bench layers -- --throughput  # the throughput alone
//! cargo bench -p taskscope-tower --bench layers -- --callgrind   # instructions per request (valgrind)
//! cargo bench -p taskscope-tower --bench layers -- --callgrind server_layer  # the cases whose name contains it
//! ```
//!
//! # In memory
//!
//! Every request goes through `tower::ServiceExt::oneshot` on a clone of the service (what
//! hyper-util's `TowerToHyperService` does for each request), on a current-thread runtime,
//! and is awaited before the next. The handler is a `service_fn` that returns
//! `Response::new(String::new())` at once.
//!
//! - `server`: the request carries `grpc-timeout: 1S`; the loop runs in the body of a
//!   `taskscope::scope` (the server scope), for all three rows. `bare` is the handler alone,
//!   `tower_http_timeout` is tower-http's `TimeoutLayer` (1 s, status 408, what its
//!   deprecated `TimeoutLayer::new` builds), `server_layer` is `ServerLayer::new(server.handle())`.
//! - `client`: the request carries no header. The loop runs in chunks of [`CHUNK`] calls,
//!   each chunk inside `taskscope::move_on_after(1s, ..)` whose cancel-tree node is built
//!   once at the start of the chunk (a `current_deadline()` call, in every row), so each
//!   call finds a deadline, as a call made from a handler in a request scope does; the
//!   `client_layer` row writes `grpc-timeout` and `x-timeout-ms`. `bare` is the inner
//!   service alone, `tower_timeout` is `tower::timeout::TimeoutLayer` (1 s).
//! - `client_own_scope`: the same three services, each call wrapped in its own
//!   `taskscope::move_on_after(1s, ..)` (the pattern of `ClientLayer`'s doc example). The
//!   peers leave that timeout's node lazy (never built); `ClientLayer` reads the deadline,
//!   which builds it.
//!
//! Wall time: divan, one sample = [`REQS`] requests (one `block_on`, one server scope or
//! `REQS / CHUNK` chunks), 100 samples; time per request.
//!
//! # Instructions (callgrind)
//!
//! `--callgrind` runs this binary again under `valgrind --tool=callgrind` once per case and
//! per request count, with the arguments `--count <case> <n>`: build the runtime, run
//! [`WARMUP`] requests, then `n` more (n = 0 and n = [`CALLGRIND_N`]); the difference of
//! the two totals divided by `n` is the cost per request (the runtime, the scope and the
//! warm-up cancel out). Besides the in-memory rows it runs two loopback cases,
//! `loopback_serve` and `loopback_plain`: the two servers of the throughput part on the
//! current-thread runtime with one keep-alive client making the `n` requests (user-space
//! instructions of client and server together; the kernel's share is not counted).
//! The `client` rows include 1/[`CHUNK`] of a `move_on_after` per request (a few
//! instructions, the same in each row). One case by hand, and its profile (inclusive costs
//! per function):
//!
//! ```text
//! cargo bench -p taskscope-tower --bench layers --no-run   # prints the binary's path
//! valgrind --tool=callgrind --callgrind-out-file=cg.0 target/release/deps/layers-<hash> --count server_layer 0
//! valgrind --tool=callgrind --callgrind-out-file=cg.n target/release/deps/layers-<hash> --count server_layer 20000
//! callgrind_annotate --inclusive=yes cg.n | head -60
//! ```
//!
//! A function's cost per request is its inclusive cost in `cg.n` less that in `cg.0`,
//! divided by `n`.
//!
//! `--callgrind` keeps its output files in `target/release/layers-callgrind/`
//! (`<case>.<n>.out`), ready for `callgrind_annotate`.
//!
//! # Loopback throughput
//!
//! `serve(listener, service_fn(handler))` against the same `service_fn` served by a plain
//! accept loop: `tokio::spawn` per connection, hyper-util's `auto::Builder` with
//! `TokioExecutor` and `TowerToHyperService`, no layer, no scopes. Both set `TCP_NODELAY` on
//! accepted sockets. Load: [`CLIENTS`] concurrent HTTP/1 keep-alive clients (hyper's
//! `client::conn::http1`, one connection each) making [`PER_CLIENT`] sequential `GET /`
//! requests each, with `grpc-timeout: 1S`, on 127.0.0.1; requests/s over the whole batch,
//! connects included, and the CPU time of the whole process (clients included, from
//! `/proc/self/stat`, 10 ms ticks) over all timed batches of a server, per request. Both servers run on the same runtime (one of each flavor, in turn);
//! one untimed warm-up batch each, then [`ROUNDS`] batches each, alternating which goes
//! first. Run without `--bench` (`cargo test --benches`), divan runs each bench once and
//! the throughput part makes one short batch per server.

use std::convert::Infallible;
use std::fmt::Debug;
use std::future::IntoFuture;
use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use divan::Bencher;
use divan::counter::ItemsCount;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use taskscope::Cancelled;
use taskscope_tower::{ClientLayer, ServerLayer};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio::sync::oneshot;
use tower::{Layer, Service, ServiceExt, service_fn};

#[path = "../../benches/common/callgrind.rs"]
mod callgrind;

/// Requests per divan sample.
const REQS: usize = 10_000;
/// Requests per enclosing `move_on_after` in the `client` group.
const CHUNK: usize = 1_000;
/// Requests of the larger callgrind run.
const CALLGRIND_N: usize = 20_000;
/// Requests run before the counted ones in a callgrind run.
const WARMUP: usize = 1_000;
/// Every timeout of the bench: never reached.
const BUDGET: Duration = Duration::from_secs(1);

/// Concurrent keep-alive clients of a throughput batch.
const CLIENTS: usize = 4;
/// Sequential requests per client and batch.
const PER_CLIENT: usize = 2_000;
/// Timed batches per server and runtime flavor.
const ROUNDS: usize = 15;

const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "--count") {
        let case = args.get(i + 1).expect("--count <case> <n>");
        let n = args
            .get(i + 2)
            .and_then(|n| n.parse().ok())
            .expect("--count <case> <n>");
        count(Case::named(case), n);
    } else if let Some(i) = args.iter().position(|a| a == "--callgrind") {
        // `cargo bench` appends `--bench`: a filter is the next argument that is no option.
        let filter = args.get(i + 1).filter(|a| !a.starts_with('-'));
        callgrind(filter.map_or("", String::as_str));
    } else if args.iter().any(|a| a == "--throughput") {
        throughput(ROUNDS, CLIENTS, PER_CLIENT);
    } else {
        divan::main();
        let bench_mode = args.iter().any(|a| a == "--bench");
        if !bench_mode {
            // `cargo test --benches`: one short batch per server.
            throughput(1, 2, 50);
        } else if args.len() == 1 {
            throughput(ROUNDS, CLIENTS, PER_CLIENT);
        } else {
            println!("\nthroughput skipped (divan options given); run it with `-- --throughput`");
        }
    }
}

// ---------------------------------------------------------------------------------------
// The in-memory cases.

/// One row of the in-memory benches, or (callgrind only) one loopback server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Case {
    ServerBare,
    TowerHttpTimeout,
    ServerLayer,
    ClientBare,
    TowerTimeout,
    ClientLayer,
    OwnScopeBare,
    OwnScopeTowerTimeout,
    OwnScopeClientLayer,
    /// `serve` on 127.0.0.1, one keep-alive client: only under `--callgrind`.
    LoopbackServe,
    /// The plain hyper-util loop on 127.0.0.1, one keep-alive client.
    LoopbackPlain,
}

impl Case {
    const ALL: [Case; 11] = [
        Case::ServerBare,
        Case::TowerHttpTimeout,
        Case::ServerLayer,
        Case::ClientBare,
        Case::TowerTimeout,
        Case::ClientLayer,
        Case::OwnScopeBare,
        Case::OwnScopeTowerTimeout,
        Case::OwnScopeClientLayer,
        Case::LoopbackServe,
        Case::LoopbackPlain,
    ];

    fn name(self) -> &'static str {
        match self {
            Case::ServerBare => "server_bare",
            Case::TowerHttpTimeout => "tower_http_timeout",
            Case::ServerLayer => "server_layer",
            Case::ClientBare => "client_bare",
            Case::TowerTimeout => "tower_timeout",
            Case::ClientLayer => "client_layer",
            Case::OwnScopeBare => "own_scope_bare",
            Case::OwnScopeTowerTimeout => "own_scope_tower_timeout",
            Case::OwnScopeClientLayer => "own_scope_client_layer",
            Case::LoopbackServe => "loopback_serve",
            Case::LoopbackPlain => "loopback_plain",
        }
    }

    fn named(name: &str) -> Case {
        Case::ALL
            .into_iter()
            .find(|c| c.name() == name)
            .unwrap_or_else(|| panic!("no case {name:?}"))
    }

    /// The row this one is compared with (`None` for the peers and the bare rows).
    fn peer(self) -> Option<Case> {
        match self {
            Case::ServerLayer => Some(Case::TowerHttpTimeout),
            Case::ClientLayer => Some(Case::TowerTimeout),
            Case::OwnScopeClientLayer => Some(Case::OwnScopeTowerTimeout),
            Case::LoopbackServe => Some(Case::LoopbackPlain),
            _ => None,
        }
    }

    /// The row without any layer in the same group.
    fn bare(self) -> Option<Case> {
        match self {
            Case::ServerBare | Case::TowerHttpTimeout | Case::ServerLayer => Some(Case::ServerBare),
            Case::ClientBare | Case::TowerTimeout | Case::ClientLayer => Some(Case::ClientBare),
            Case::OwnScopeBare | Case::OwnScopeTowerTimeout | Case::OwnScopeClientLayer => {
                Some(Case::OwnScopeBare)
            }
            Case::LoopbackServe | Case::LoopbackPlain => None,
        }
    }
}

fn current_thread() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("build the runtime")
}

fn multi_thread() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("build the runtime")
}

/// The handler of every case: a response at once.
async fn handler<B>(_req: Request<B>) -> Result<Response<String>, Infallible> {
    Ok(Response::new(String::new()))
}

/// The request of the `server` group: a gRPC-style budget of one second.
fn server_request() -> Request<()> {
    let mut req = Request::new(());
    req.headers_mut()
        .insert(GRPC_TIMEOUT, HeaderValue::from_static("1S"));
    req
}

/// The request of the client groups: no header.
fn client_request() -> Request<()> {
    Request::new(())
}

/// `n` requests through `svc`, one after the other.
async fn requests<S>(svc: &S, n: usize, request: fn() -> Request<()>)
where
    S: Service<Request<()>, Response = Response<String>> + Clone,
    S::Error: Debug,
{
    for _ in 0..n {
        let res = svc.clone().oneshot(request()).await.expect("handler ok");
        black_box(res);
    }
}

/// `n` requests through `svc` in chunks of [`CHUNK`], each chunk in a `move_on_after` whose
/// node is built at its start.
async fn chunked<S>(svc: &S, n: usize)
where
    S: Service<Request<()>, Response = Response<String>> + Clone,
    S::Error: Debug,
{
    let mut left = n;
    while left > 0 {
        let k = left.min(CHUNK);
        taskscope::move_on_after(BUDGET, async {
            black_box(taskscope::current_deadline().expect("a deadline"));
            requests(svc, k, client_request).await;
        })
        .await
        .expect("the chunk ran within its budget");
        left -= k;
    }
}

/// `n` requests through `svc`, each in its own `move_on_after`.
async fn own_scope<S>(svc: &S, n: usize)
where
    S: Service<Request<()>, Response = Response<String>> + Clone,
    S::Error: Debug,
{
    for _ in 0..n {
        let res = taskscope::move_on_after(BUDGET, svc.clone().oneshot(client_request()))
            .await
            .expect("within the budget")
            .expect("handler ok");
        black_box(res);
    }
}

/// Runs `n` requests of `case` on `rt`.
fn run_case(rt: &Runtime, case: Case, n: usize) {
    let bare = service_fn(handler::<()>);
    rt.block_on(async move {
        match case {
            Case::ServerBare | Case::TowerHttpTimeout | Case::ServerLayer => {
                taskscope::scope(async |server| {
                    match case {
                        Case::ServerBare => requests(&bare, n, server_request).await,
                        Case::TowerHttpTimeout => {
                            let layer = tower_http::timeout::TimeoutLayer::with_status_code(
                                StatusCode::REQUEST_TIMEOUT,
                                BUDGET,
                            );
                            requests(&layer.layer(bare), n, server_request).await
                        }
                        _ => {
                            let layer = ServerLayer::new(server.handle());
                            requests(&layer.layer(bare), n, server_request).await
                        }
                    }
                    Ok::<(), Cancelled>(())
                })
                .await
                .expect("the server scope ends well");
            }
            Case::ClientBare => chunked(&bare, n).await,
            Case::TowerTimeout => {
                chunked(&tower::timeout::TimeoutLayer::new(BUDGET).layer(bare), n).await
            }
            Case::ClientLayer => chunked(&ClientLayer::new().layer(bare), n).await,
            Case::OwnScopeBare => own_scope(&bare, n).await,
            Case::OwnScopeTowerTimeout => {
                own_scope(&tower::timeout::TimeoutLayer::new(BUDGET).layer(bare), n).await
            }
            Case::OwnScopeClientLayer => own_scope(&ClientLayer::new().layer(bare), n).await,
            Case::LoopbackServe | Case::LoopbackPlain => {
                let server = if case == Case::LoopbackServe {
                    start_serve().await.0
                } else {
                    start_plain().await
                };
                client(server.addr, n).await;
                let _ = server.stop.send(());
                server.task.await.expect("the server task");
            }
        }
    });
}

fn bench_case(b: Bencher<'_, '_>, case: Case) {
    let rt = current_thread();
    b.counter(ItemsCount::new(REQS))
        .bench_local(|| run_case(&rt, case, REQS));
}

#[divan::bench_group(sample_count = 100, sample_size = 1)]
mod server {
    use super::*;

    #[divan::bench]
    fn bare(b: Bencher<'_, '_>) {
        bench_case(b, Case::ServerBare);
    }

    #[divan::bench]
    fn tower_http_timeout(b: Bencher<'_, '_>) {
        bench_case(b, Case::TowerHttpTimeout);
    }

    #[divan::bench]
    fn server_layer(b: Bencher<'_, '_>) {
        bench_case(b, Case::ServerLayer);
    }
}

#[divan::bench_group(sample_count = 100, sample_size = 1)]
mod client {
    use super::*;

    #[divan::bench]
    fn bare(b: Bencher<'_, '_>) {
        bench_case(b, Case::ClientBare);
    }

    #[divan::bench]
    fn tower_timeout(b: Bencher<'_, '_>) {
        bench_case(b, Case::TowerTimeout);
    }

    #[divan::bench]
    fn client_layer(b: Bencher<'_, '_>) {
        bench_case(b, Case::ClientLayer);
    }
}

#[divan::bench_group(sample_count = 100, sample_size = 1)]
mod client_own_scope {
    use super::*;

    #[divan::bench]
    fn bare(b: Bencher<'_, '_>) {
        bench_case(b, Case::OwnScopeBare);
    }

    #[divan::bench]
    fn tower_timeout(b: Bencher<'_, '_>) {
        bench_case(b, Case::OwnScopeTowerTimeout);
    }

    #[divan::bench]
    fn client_layer(b: Bencher<'_, '_>) {
        bench_case(b, Case::OwnScopeClientLayer);
    }
}

// ---------------------------------------------------------------------------------------
// Instruction counts.

/// `--count <case> <n>`: the work one callgrind run measures.
fn count(case: Case, n: usize) {
    let rt = current_thread();
    run_case(&rt, case, WARMUP);
    run_case(&rt, case, n);
}

/// `--callgrind [filter]`: every case (whose name contains `filter`) at 0 and
/// [`CALLGRIND_N`] requests under callgrind; prints instructions per request.
fn callgrind(filter: &str) {
    if !callgrind::available() {
        println!("layers: valgrind is not on PATH, nothing measured");
        return;
    }
    let (exe, dir) = callgrind::setup("layers");
    println!(
        "instructions per request: (Ir at n = {CALLGRIND_N} - Ir at n = 0) / {CALLGRIND_N}, \
         after {WARMUP} warm-up requests; current-thread runtime"
    );
    println!("callgrind output: {}\n", dir.display());
    let mut per_request: Vec<(Case, f64)> = Vec::new();
    for case in Case::ALL {
        if !case.name().contains(filter) {
            continue;
        }
        let ir = |n: usize| callgrind::instructions(&exe, &dir, case.name(), n);
        let (zero, many) = (ir(0), ir(CALLGRIND_N));
        let per = (many as f64 - zero as f64) / CALLGRIND_N as f64;
        println!(
            "{:<26} n = 0: {zero:>12}  n = {CALLGRIND_N}: {many:>12}  per request: {per:>8.1}",
            case.name()
        );
        per_request.push((case, per));
    }
    let of = |c: Case| per_request.iter().find(|(d, _)| *d == c).map(|&(_, p)| p);
    println!();
    for &(case, per) in &per_request {
        let Some(peer) = case.peer() else { continue };
        let Some(peer_per) = of(peer) else { continue };
        print!(
            "{:<26} {per:>8.1} vs {:<24} {peer_per:>8.1}: {:.2}x",
            case.name(),
            peer.name(),
            per / peer_per,
        );
        match case.bare().and_then(|b| Some((b, of(b)?))) {
            Some((bare, bare_per)) => println!(
                "; above {}: {:.1} vs {:.1} ({:.2}x)",
                bare.name(),
                per - bare_per,
                peer_per - bare_per,
                (per - bare_per) / (peer_per - bare_per),
            ),
            None => println!("; {:.1} more", per - peer_per),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Loopback throughput.

/// A server to load: its address, its stop signal and its task.
struct Running {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

async fn listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1")
}

/// `taskscope_tower::serve` with the trivial handler; returns its stats too.
async fn start_serve() -> (Running, taskscope_tower::Stats) {
    let listener = listener().await;
    let addr = listener.local_addr().expect("local address");
    let (stop, stopped) = oneshot::channel::<()>();
    let serve = taskscope_tower::serve(listener, service_fn(handler::<hyper::body::Incoming>))
        .shutdown_on(async move {
            let _ = stopped.await;
        });
    let stats = serve.stats();
    let task = tokio::spawn(async move {
        if let Err(e) = serve.into_future().await {
            // Stopped by its `shutdown_on` trigger, the server scope ends `Cancelled`.
            let cancelled = e.get_ref().and_then(|e| e.downcast_ref::<Cancelled>());
            assert!(cancelled.is_some(), "serve failed: {e}");
        }
    });
    (Running { addr, stop, task }, stats)
}

/// The same handler behind a plain hyper-util accept loop.
async fn start_plain() -> Running {
    let listener = listener().await;
    let addr = listener.local_addr().expect("local address");
    let (stop, mut stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        loop {
            let (stream, _) = tokio::select! {
                _ = &mut stopped => break,
                r = listener.accept() => r.expect("accept"),
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let svc = TowerToHyperService::new(service_fn(handler::<hyper::body::Incoming>));
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Running { addr, stop, task }
}

/// One keep-alive HTTP/1 client: `n` sequential requests.
async fn client(addr: SocketAddr, n: usize) {
    let stream = TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("TCP_NODELAY");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake::<_, String>(TokioIo::new(stream))
            .await
            .expect("handshake");
    let conn = tokio::spawn(conn);
    for _ in 0..n {
        sender.ready().await.expect("connection ready");
        let req = Request::builder()
            .uri("/")
            .header(GRPC_TIMEOUT, "1S")
            .body(String::new())
            .expect("a valid request");
        let res = sender.send_request(req).await.expect("a response");
        assert_eq!(res.status(), StatusCode::OK);
        res.into_body().collect().await.expect("the body");
    }
    drop(sender);
    conn.await
        .expect("the connection task")
        .expect("the connection ends well");
}

/// CPU time of this process so far (all threads, user and system), in clock ticks of
/// 10 ms: fields 14 and 15 of `/proc/self/stat` (Linux only).
fn cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) is in parentheses and may hold spaces.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// One batch's measures.
struct Batch {
    /// Requests per second of wall time.
    rate: f64,
    /// CPU ticks of the whole process (clients included) spent in the batch.
    cpu_ticks: Option<u64>,
}

/// One batch: `clients` concurrent clients of `per_client` requests, on `rt`.
fn batch(rt: &Runtime, addr: SocketAddr, clients: usize, per_client: usize) -> Batch {
    let requests = (clients * per_client) as f64;
    let cpu = cpu_ticks();
    let start = Instant::now();
    rt.block_on(async {
        let tasks: Vec<_> = (0..clients)
            .map(|_| tokio::spawn(client(addr, per_client)))
            .collect();
        for t in tasks {
            t.await.expect("a client task");
        }
    });
    let rate = requests / start.elapsed().as_secs_f64();
    let cpu_ticks = cpu.zip(cpu_ticks()).map(|(a, b)| b - a);
    Batch { rate, cpu_ticks }
}

fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(f64::total_cmp);
    let m = xs.len() / 2;
    if xs.len() % 2 == 1 {
        xs[m]
    } else {
        (xs[m - 1] + xs[m]) / 2.0
    }
}

fn throughput(rounds: usize, clients: usize, per_client: usize) {
    println!(
        "\nloopback throughput: {clients} keep-alive HTTP/1 clients x {per_client} requests per \
         batch, {rounds} timed batches per server (after one warm-up batch), alternating; \
         cpu = CPU time of the whole process (clients included) over all timed batches, \
         per request"
    );
    for (flavor, rt) in [
        ("current_thread", current_thread()),
        ("multi_thread(2)", multi_thread()),
    ] {
        let ((served, stats), plain) =
            rt.block_on(async { (start_serve().await, start_plain().await) });
        let mut batches: [Vec<Batch>; 2] = [Vec::new(), Vec::new()];
        for round in 0..=rounds {
            let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
            for i in order {
                let addr = [served.addr, plain.addr][i];
                let b = batch(&rt, addr, clients, per_client);
                if round > 0 {
                    batches[i].push(b);
                }
            }
        }
        let expected = ((rounds + 1) * clients * per_client) as u64;
        assert_eq!(stats.requests(), expected, "serve saw every request");
        for s in [served, plain] {
            let _ = s.stop.send(());
            rt.block_on(s.task).expect("the server task");
        }
        let mut rates = batches
            .each_ref()
            .map(|b| b.iter().map(|b| b.rate).collect::<Vec<_>>());
        let requests = (rounds * clients * per_client) as f64;
        let cpu = batches.each_ref().map(|b| {
            let ticks: Option<u64> = b.iter().map(|b| b.cpu_ticks).sum();
            ticks.map(|t| t as f64 * 10_000.0 / requests)
        });
        let best = rates
            .each_ref()
            .map(|r| r.iter().copied().fold(0.0, f64::max));
        let med = rates.each_mut().map(|r| median(r));
        let cpu_text = |c: Option<f64>| c.map_or(String::from("n/a"), |c| format!("{c:.2} us"));
        println!("{flavor}:");
        for (i, name) in ["taskscope_tower::serve", "plain hyper-util loop"]
            .into_iter()
            .enumerate()
        {
            println!(
                "  {name:<22} median {:>7.0} req/s  best {:>7.0} req/s  cpu/request {}",
                med[i],
                best[i],
                cpu_text(cpu[i]),
            );
        }
        let cpu_ratio = match cpu {
            [Some(a), Some(b)] if b > 0.0 => format!("{:.3}", a / b),
            _ => String::from("n/a"),
        };
        println!(
            "  serve / plain: {:.3} req/s (median), {:.3} req/s (best), {cpu_ratio} cpu/request",
            med[0] / med[1],
            best[0] / best[1],
        );
        let all = |r: &[f64]| {
            r.iter()
                .map(|x| format!("{x:.0}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        println!("  req/s of each batch, sorted: serve {}", all(&rates[0]));
        println!("                               plain {}", all(&rates[1]));
    }
}
