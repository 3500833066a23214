//! taskscope-tower over real loopback sockets (127.0.0.1, port 0) in real time: clients
//! that go away mid-request (an HTTP/1 connection closed, an HTTP/2 stream reset) under each
//! disconnect policy, shutdown with a detached handler and under load, `ServerLayer` under
//! `axum::serve`, a deadline carried across three servers, and a gRPC request whose budget
//! is spent on arrival.
//!
//! Every wait is bounded (a regression fails in seconds instead of hanging), request loops
//! are bounded in count, and what handlers start is counted by drop guards, read right
//! after the scope that owns it returned.

// The workspace's shared test helpers (drop-counting `Census`, `Slot`, `ms`, the
// three-runtime `rt_test!`).
#[path = "../../tests/common/mod.rs"]
mod common;

use common::{Census, Slot, ms, rt_test};
use std::convert::Infallible;
use std::future::{Future, IntoFuture};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use taskscope::{CancelReason, Cancelled, Scope};
use taskscope_tower::{
    ClientLayer, OnDisconnect, PropagateDeadline, Serve, ServerLayer, Stats, serve,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep};
use tower::{ServiceBuilder, ServiceExt as _, service_fn};

/// The longest any single wait of these tests may take.
const BOUND: Duration = Duration::from_secs(5);

/// Bounds a wait: a regression fails in seconds instead of hanging.
async fn bounded<F: Future>(what: &str, f: F) -> F::Output {
    match tokio::time::timeout(BOUND, f).await {
        Ok(out) => out,
        Err(_) => panic!("timed out waiting for: {what}"),
    }
}

/// Polls `done` every millisecond until it holds (at most `BOUND`).
async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + BOUND;
    while !done() {
        assert!(Instant::now() < until, "timed out waiting for: {what}");
        sleep(ms(1)).await;
    }
}

/// The next event a handler sent (bounded).
async fn next<T>(rx: &mut mpsc::UnboundedReceiver<T>, what: &str) -> T {
    bounded(what, rx.recv())
        .await
        .unwrap_or_else(|| panic!("the event channel closed while waiting for: {what}"))
}

fn ok(body: impl Into<String>) -> Result<Response<String>, Infallible> {
    Ok(Response::new(body.into()))
}

fn status(code: StatusCode, body: impl Into<String>) -> Response<String> {
    let mut res = Response::new(body.into());
    *res.status_mut() = code;
    res
}

/// A `serve` server on 127.0.0.1:0, running in a task of its own until `shutdown`.
struct Server {
    addr: SocketAddr,
    stats: Stats,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<io::Result<()>>,
}

/// Starts `serve(listener, svc)`, configured by `configure`, with a shutdown trigger that
/// fires on [`Server::shutdown`] (or when the `Server` is dropped).
async fn start<S>(svc: S, configure: impl FnOnce(Serve<S>) -> Serve<S>) -> Server
where
    Serve<S>: IntoFuture<Output = io::Result<()>>,
    <Serve<S> as IntoFuture>::IntoFuture: Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = configure(serve(listener, svc)).shutdown_on(async move {
        let _ = stopped.await;
    });
    let stats = server.stats();
    Server {
        addr,
        stats,
        stop: Some(stop),
        task: tokio::spawn(server.into_future()),
    }
}

impl Server {
    /// Fires the shutdown trigger; waits (bounded) for `serve` to return, and checks that it
    /// ended by that shutdown.
    async fn shutdown(self) {
        ended_by_shutdown(self.stop().await);
    }

    /// Fires the shutdown trigger; `serve`'s result (bounded).
    async fn stop(mut self) -> io::Result<()> {
        let _ = self.stop.take().unwrap().send(());
        bounded("serve returns after the shutdown", &mut self.task)
            .await
            .expect("the serve task panicked")
    }
}

/// `serve`'s result after its shutdown trigger fired: always `Ok` (its own shutdown is how
/// a server ends, with or without a grace period).
fn ended_by_shutdown(r: io::Result<()>) {
    if let Err(e) = r {
        panic!("serve failed: {e}");
    }
}

type H1 = hyper::client::conn::http1::SendRequest<String>;
type H2 = hyper::client::conn::http2::SendRequest<String>;

/// An HTTP/1 client connection: its sender, and the task driving it (which ends when the
/// connection is closed).
async fn http1(addr: SocketAddr) -> io::Result<(H1, JoinHandle<()>)> {
    let stream = TcpStream::connect(addr).await?;
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(io::Error::other)?;
    Ok((
        send,
        tokio::spawn(async move {
            let _ = conn.await;
        }),
    ))
}

/// An HTTP/2 client connection with prior knowledge (no upgrade): its sender, and the task
/// driving it.
async fn http2(addr: SocketAddr) -> (H2, JoinHandle<()>) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    (
        send,
        tokio::spawn(async move {
            let _ = conn.await;
        }),
    )
}

fn get(uri: &str) -> Request<String> {
    Request::builder()
        .uri(uri)
        .header(http::header::HOST, "127.0.0.1")
        .body(String::new())
        .unwrap()
}

/// The status and body of a response.
async fn read(res: Response<Incoming>) -> (StatusCode, String) {
    let status = res.status();
    let body = bounded("the response body", res.into_body().collect())
        .await
        .expect("the response body")
        .to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

/// Sends `GET path` on a new HTTP/1 connection, waits until `started` resolves (a handler
/// said it started), then goes away: drops the response future and the sender, so hyper
/// closes the socket. Returns `started`'s value once the client's socket is closed.
async fn leave_mid_request<T>(addr: SocketAddr, path: &str, started: impl Future<Output = T>) -> T {
    let (mut send, conn) = http1(addr).await.expect("connect");
    let call = send.send_request(get(path));
    let out = bounded("the handler starts", async {
        tokio::select! {
            r = call => panic!(
                "answered before the client left: {:?}",
                r.map(|r| r.status())
            ),
            v = started => v,
        }
    })
    .await;
    drop(send);
    bounded("the client's connection closes", conn)
        .await
        .expect("the connection task");
    out
}

/// What the handlers of `work_until_cancelled` share with the test.
#[derive(Clone)]
struct Work {
    /// The handlers' children alive.
    live: Census,
    /// Blocking children that finished their cleanup.
    cleaned: Arc<AtomicUsize>,
    /// A handler started its children: (route, children alive then).
    started: mpsc::UnboundedSender<(&'static str, usize)>,
    /// What a handler saw once cancelled: the reason, and its children alive then.
    seen: Slot<(CancelReason, usize)>,
    /// Handlers that ran to their end.
    finished: Arc<AtomicUsize>,
}

impl Work {
    fn new() -> (Work, mpsc::UnboundedReceiver<(&'static str, usize)>) {
        let (started, rx) = mpsc::unbounded_channel();
        let work = Work {
            live: Census::new(),
            cleaned: Arc::default(),
            started,
            seen: Slot::default(),
            finished: Arc::default(),
        };
        (work, rx)
    }
    fn cleaned(&self) -> usize {
        self.cleaned.load(SeqCst)
    }
    fn finished(&self) -> usize {
        self.finished.load(SeqCst)
    }
}

/// A handler whose work never ends by itself: in a scope of its own, three async children
/// that wait for their cancellation (then clean up for 10 ms) and a blocking child that
/// polls `is_cancelled()` and takes 30 ms to clean up. Once that scope returned (all four
/// saw a cancellation and finished), the handler records the reason it sees, and answers.
async fn work_until_cancelled(w: Work) -> Result<Response<String>, Infallible> {
    let _ = taskscope::scope(async |s| {
        for _ in 0..3 {
            let g = w.live.guard();
            s.spawn(async move {
                let _g = g;
                taskscope::cancelled().await;
                sleep(ms(10)).await;
                Ok(())
            });
        }
        let (g, cleaned) = (w.live.guard(), w.cleaned.clone());
        s.spawn_blocking(move || {
            let _g = g;
            while !taskscope::is_cancelled() {
                std::thread::sleep(ms(1));
            }
            std::thread::sleep(ms(30));
            cleaned.fetch_add(1, SeqCst);
            Ok(())
        });
        w.started.send(("work", w.live.alive())).ok();
        Ok::<_, Cancelled>(())
    })
    .await;
    let why = taskscope::cancelled().await;
    w.seen.push((why.reason(), w.live.alive()));
    w.finished.fetch_add(1, SeqCst);
    ok("done")
}

rt_test! {
    async fn http1_client_leaving_drops_the_handler_and_its_children_are_cancelled_and_awaited() {
        let (w, mut started) = Work::new();
        let svc = {
            let w = w.clone();
            service_fn(move |_req: Request<Incoming>| work_until_cancelled(w.clone()))
        };
        // The default policy: `OnDisconnect::Drop`.
        let server = start(svc, |s| s).await;
        let stats = server.stats.clone();

        // A client leaves: the handler's children go without any shutdown.
        let first = next(&mut started, "the first handler starts");
        let (_, alive) = leave_mid_request(server.addr, "/", first).await;
        assert_eq!(alive, 4);
        wait_until("the first handler's children are gone", || w.live.alive() == 0).await;
        assert_eq!(w.cleaned(), 1, "the blocking child finished its cleanup");
        assert_eq!(stats.disconnected(), 1);

        // Another client leaves and the server shuts down at once (no grace): `serve`
        // returns only once the dropped handler's blocking child finished its cleanup.
        let second = next(&mut started, "the second handler starts");
        let (_, alive) = leave_mid_request(server.addr, "/", second).await;
        assert_eq!(alive, 4);
        wait_until("the second client is seen gone", || stats.disconnected() == 2).await;
        server.shutdown().await;
        assert_eq!(w.live.alive(), 0, "right after serve returned");
        assert_eq!(w.cleaned(), 2, "right after serve returned");
        // Dropped handlers never reached the code after their scope.
        assert_eq!(w.finished(), 0);
        assert_eq!((stats.requests(), stats.disconnected()), (2, 2));
    }
}

rt_test! {
    async fn http1_client_leaving_cancels_the_handler_which_sees_disconnected() {
        let (w, mut started) = Work::new();
        let svc = {
            let w = w.clone();
            service_fn(move |_req: Request<Incoming>| work_until_cancelled(w.clone()))
        };
        let cancel = OnDisconnect::Cancel { grace: ms(2000) };
        let server = start(svc, |s| s.on_disconnect(cancel)).await;
        let stats = server.stats.clone();

        let (_, alive) = leave_mid_request(server.addr, "/", next(&mut started, "start")).await;
        assert_eq!(alive, 4);
        // The handler sees the cancellation, its children clean up, and it runs to its end.
        wait_until("the handler finishes its cleanup", || w.finished() == 1).await;
        assert_eq!(w.seen.get(), [(CancelReason::Disconnected, 0)]);
        assert_eq!(w.live.alive(), 0);
        assert_eq!(w.cleaned(), 1);
        assert_eq!((stats.requests(), stats.disconnected()), (1, 1));

        server.shutdown().await;
        assert_eq!(w.live.alive(), 0, "right after serve returned");
    }
}

rt_test! {
    async fn http2_stream_reset_cancels_its_handler_while_a_sibling_stream_completes() {
        let (w, mut started) = Work::new();
        let (release, released) = watch::channel(false);
        let sibling_cancelled = Slot::default();
        let svc = {
            let (w, sibling_cancelled) = (w.clone(), sibling_cancelled.clone());
            service_fn(move |req: Request<Incoming>| {
                let (w, sibling_cancelled) = (w.clone(), sibling_cancelled.clone());
                let mut released = released.clone();
                async move {
                    if req.uri().path() == "/work" {
                        return work_until_cancelled(w).await;
                    }
                    w.started.send(("sibling", 0)).ok();
                    let _ = released.wait_for(|r| *r).await;
                    sibling_cancelled.push(taskscope::is_cancelled());
                    ok("sibling done")
                }
            })
        };
        let cancel = OnDisconnect::Cancel { grace: ms(2000) };
        let server = start(svc, |s| s.on_disconnect(cancel)).await;
        let stats = server.stats.clone();
        let addr = server.addr;

        let (send, conn) = http2(addr).await;
        let sibling_req = get(&format!("http://{addr}/sibling"));
        let sibling = tokio::spawn(send.clone().send_request(sibling_req));
        assert_eq!(next(&mut started, "the sibling starts").await.0, "sibling");
        // The second stream on the same connection: reset (its response future dropped)
        // once its handler started.
        let call = send.clone().send_request(get(&format!("http://{addr}/work")));
        let (route, alive) = bounded("the handler starts", async {
            tokio::select! {
                r = call => panic!("answered before the reset: {:?}", r.map(|r| r.status())),
                e = next(&mut started, "the handler starts") => e,
            }
        })
        .await;
        assert_eq!((route, alive), ("work", 4));

        wait_until("the reset stream's handler finishes its cleanup", || w.finished() == 1).await;
        assert_eq!(w.seen.get(), [(CancelReason::Disconnected, 0)]);
        assert_eq!(w.live.alive(), 0);
        assert_eq!(w.cleaned(), 1);
        assert_eq!(stats.disconnected(), 1);

        // The sibling stream still runs, untouched; it completes once released.
        assert!(sibling_cancelled.get().is_empty());
        assert!(!sibling.is_finished());
        release.send(true).unwrap();
        let res = bounded("the sibling's response", sibling)
            .await
            .unwrap()
            .expect("the sibling stream completes");
        assert_eq!(read(res).await, (StatusCode::OK, "sibling done".to_owned()));
        assert_eq!(sibling_cancelled.get(), [false]);
        assert_eq!((stats.requests(), stats.disconnected()), (2, 1));

        drop(send);
        bounded("the client's connection closes", conn).await.unwrap();
        server.shutdown().await;
        assert_eq!(w.live.alive(), 0, "right after serve returned");
    }
}

#[tokio::test]
async fn detached_handler_runs_to_completion_after_its_client_left() {
    let live = Census::new();
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let done = Slot::default();
    let svc = {
        let (live, done) = (live.clone(), done.clone());
        service_fn(move |_req: Request<Incoming>| {
            let (live, done, started_tx) = (live.clone(), done.clone(), started_tx.clone());
            async move {
                let g = live.guard();
                // The work: a child in the handler's own scope.
                let r = taskscope::scope(async |s| {
                    s.spawn(async move {
                        let _g = g;
                        sleep(ms(100)).await;
                        Ok(())
                    });
                    started_tx.send(()).ok();
                    Ok::<_, Cancelled>(())
                })
                .await;
                done.push((r, taskscope::is_cancelled()));
                ok("written")
            }
        })
    };
    let server = start(svc, |s| s.on_disconnect(OnDisconnect::Detach)).await;
    let stats = server.stats.clone();

    leave_mid_request(server.addr, "/", next(&mut started, "the handler starts")).await;
    wait_until("the client is seen gone", || stats.disconnected() == 1).await;
    // Nobody cancelled the handler: its work completed.
    wait_until("the detached handler finishes", || !done.get().is_empty()).await;
    assert_eq!(done.get(), [(Ok(()), false)]);
    assert_eq!(live.alive(), 0);

    server.shutdown().await;
    assert_eq!(live.alive(), 0, "right after serve returned");
    assert_eq!((stats.requests(), stats.disconnected()), (1, 1));
}

#[tokio::test]
async fn shutdown_waits_for_a_detached_handler_whose_client_left() {
    let live = Census::new();
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let done = Slot::default();
    let svc = {
        let (live, done) = (live.clone(), done.clone());
        service_fn(move |_req: Request<Incoming>| {
            let (live, done, started_tx) = (live.clone(), done.clone(), started_tx.clone());
            async move {
                let g = live.guard();
                let shutdown_seen = Slot::default();
                let seen = shutdown_seen.clone();
                // The work, in a child: runs on after its client left until the server's
                // shutdown reaches it, then finishes within the shutdown's grace.
                let r = taskscope::scope(async |s| {
                    s.spawn(async move {
                        let _g = g;
                        taskscope::cancelled().await;
                        seen.push(Instant::now());
                        sleep(ms(100)).await;
                        Ok(())
                    });
                    started_tx.send(()).ok();
                    Ok::<_, Cancelled>(())
                })
                .await;
                let why = taskscope::cancelled().await;
                let shutdown_seen = shutdown_seen.get()[0];
                done.push((why.reason(), r.is_ok(), shutdown_seen, Instant::now()));
                ok("written")
            }
        })
    };
    let server = start(svc, |s| {
        s.on_disconnect(OnDisconnect::Detach)
            .grace(Duration::from_secs(5))
    })
    .await;
    let stats = server.stats.clone();

    leave_mid_request(server.addr, "/", next(&mut started, "the handler starts")).await;
    wait_until("the client is seen gone", || stats.disconnected() == 1).await;
    assert!(done.get().is_empty(), "the handler waits for the shutdown");
    let fired = Instant::now();
    server.shutdown().await;
    let returned = Instant::now();

    assert_eq!(live.alive(), 0, "right after serve returned");
    let done = done.get();
    assert_eq!(
        done.len(),
        1,
        "the handler ran to its end before serve returned"
    );
    let (reason, work_ok, shutdown_seen, finished) = done[0];
    // The request scope is cancelled through its ancestors (the server scope).
    assert_eq!(reason, CancelReason::ParentCancelled);
    // A soft cancel: the work's scope ran its child to the end.
    assert!(work_ok, "the work's scope completed");
    assert!(fired <= shutdown_seen && shutdown_seen < finished && finished <= returned);
    assert!(finished - shutdown_seen >= ms(100));
    // Returned once the handler finished, not at the end of the 5 s grace.
    assert!(
        returned - fired < Duration::from_secs(2),
        "{:?}",
        returned - fired
    );
}

/// What the load test's clients got, per request sent (or tried).
#[derive(Clone, Copy, Debug, Default)]
struct Outcomes {
    ok: usize,
    unavailable: usize,
    /// The connection failed or closed under the request.
    closed: usize,
    /// A new connection was refused.
    refused: usize,
}

impl Outcomes {
    fn total(&self) -> usize {
        self.ok + self.unavailable + self.closed + self.refused
    }
}

/// One load client: `n` requests one after another on a keep-alive HTTP/1 connection,
/// reconnecting after a connection ends. Every request is bounded.
async fn load_client(addr: SocketAddr, n: usize, served: Arc<AtomicUsize>) -> Outcomes {
    let mut out = Outcomes::default();
    let mut conn: Option<H1> = None;
    for i in 0..n {
        bounded(&format!("request {i} of a load client"), async {
            let send = match &mut conn {
                Some(send) => send,
                None => match http1(addr).await {
                    Ok((send, _task)) => conn.insert(send),
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                        out.refused += 1;
                        return;
                    }
                    // Connected to the backlog of a listener that then closed.
                    Err(_) => {
                        out.closed += 1;
                        return;
                    }
                },
            };
            if send.ready().await.is_err() {
                conn = None;
                out.closed += 1;
                return;
            }
            match send.send_request(get("/")).await {
                Ok(res) => match res.status() {
                    StatusCode::OK => {
                        assert_eq!(read(res).await.1, "ok");
                        out.ok += 1;
                        served.fetch_add(1, SeqCst);
                    }
                    StatusCode::SERVICE_UNAVAILABLE => out.unavailable += 1,
                    other => panic!("unexpected status {other}"),
                },
                Err(_) => {
                    conn = None;
                    out.closed += 1;
                }
            }
        })
        .await;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_under_load_answers_every_request_and_leaves_nothing_running() {
    const CLIENTS: usize = 4;
    const REQUESTS: usize = 50;
    const GRACE: Duration = Duration::from_millis(500);
    let live = Census::new();
    let svc = {
        let live = live.clone();
        service_fn(move |_req: Request<Incoming>| {
            let live = live.clone();
            async move {
                // 50 ms of work in a child of the handler's scope.
                let _ = taskscope::scope(async |s| {
                    let g = live.guard();
                    s.spawn(async move {
                        let _g = g;
                        sleep(ms(50)).await;
                        Ok(())
                    });
                    Ok::<_, Cancelled>(())
                })
                .await;
                ok("ok")
            }
        })
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| tokio::spawn(load_client(addr, REQUESTS, served.clone())))
        .collect();
    // The shutdown fires in the middle of the load: once half the requests were answered.
    let fired = Arc::new(Mutex::new(None));
    let server = {
        let (served, fired) = (served.clone(), fired.clone());
        serve(listener, svc).grace(GRACE).shutdown_on(async move {
            while served.load(SeqCst) < CLIENTS * REQUESTS / 2 {
                sleep(ms(1)).await;
            }
            *fired.lock().unwrap() = Some(Instant::now());
        })
    };
    let stats = server.stats();

    // Bounded by the load's length (about 1.3 s here), not by `BOUND`.
    let outer = tokio::time::timeout(
        Duration::from_secs(20),
        Scope::builder().name("outer").run(async |outer| {
            let r = server.await;
            let returned = Instant::now();
            // Right after serve returned: nothing below the outer scope, nothing running.
            let tree = outer.snapshot();
            assert_eq!(live.alive(), 0, "right after serve returned");
            assert_eq!(tree.nodes().len(), 1, "{tree}");
            assert_eq!(tree.nodes()[0].live_children, 0, "{tree}");
            r.expect("serve");
            let fired = fired.lock().unwrap().expect("the shutdown fired");
            assert!(
                returned - fired < GRACE + ms(250),
                "serve returned {:?} after the shutdown fired",
                returned - fired
            );
            Ok(())
        }),
    );
    let r: Result<(), Cancelled> = outer.await.expect("the load and the shutdown timed out");
    assert_eq!(r, Ok(()));

    // New connections are refused.
    let e = TcpStream::connect(addr)
        .await
        .expect_err("connected after shutdown");
    assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e}");

    let mut total = Outcomes::default();
    for c in clients {
        let o = bounded("a load client", c).await.unwrap();
        assert_eq!(o.total(), REQUESTS, "{o:?}");
        total.ok += o.ok;
        total.unavailable += o.unavailable;
        total.closed += o.closed;
        total.refused += o.refused;
    }
    eprintln!("load outcomes: {total:?}; server stats: {stats:?}");
    assert!(total.ok >= CLIENTS * REQUESTS / 2, "{total:?}");
    assert!(
        total.refused > 0,
        "the clients went on after the shutdown: {total:?}"
    );
    // Every request that reached the server was answered.
    assert_eq!(
        stats.requests() as usize,
        total.ok + total.unavailable,
        "{total:?} {stats:?}"
    );
    assert_eq!(stats.disconnected(), 0, "{stats:?}");
}

#[tokio::test]
async fn axum_serve_with_server_layer_awaits_a_departed_clients_orphans() {
    use axum::Router;
    use axum::routing::get as route_get;

    let live = Census::new();
    let cleaned = Arc::new(AtomicUsize::new(0));
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut stats = None;
    let mut cleaned_at_cancel = None;

    let r: Result<(), io::Error> = bounded(
        "the server scope",
        Scope::builder()
            .name("server")
            .grace(Duration::from_secs(1))
            .run(async |server| -> io::Result<()> {
                let layer = ServerLayer::new(server.handle());
                stats = Some(layer.stats());
                let handler = {
                    let (live, cleaned) = (live.clone(), cleaned.clone());
                    move || {
                        let (live, cleaned, started_tx) =
                            (live.clone(), cleaned.clone(), started_tx.clone());
                        async move {
                            let _ = taskscope::scope(async |s| {
                                let g = live.guard();
                                s.spawn(async move {
                                    let _g = g;
                                    std::future::pending::<()>().await;
                                    Ok(())
                                });
                                // Takes about 30 ms to notice the cancellation and clean up.
                                let g = live.guard();
                                s.spawn_blocking(move || {
                                    let _g = g;
                                    while !taskscope::is_cancelled() {
                                        std::thread::sleep(ms(1));
                                    }
                                    std::thread::sleep(ms(30));
                                    cleaned.fetch_add(1, SeqCst);
                                    Ok(())
                                });
                                started_tx.send(live.alive()).ok();
                                std::future::pending::<()>().await;
                                Ok::<_, Cancelled>(())
                            })
                            .await;
                            "unreachable"
                        }
                    }
                };
                let app = Router::new()
                    .route("/work", route_get(handler))
                    .layer(layer);
                let shutdown = taskscope::cancelled();
                let serving = axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        shutdown.await;
                    })
                    .into_future();
                let client = async {
                    let alive =
                        leave_mid_request(addr, "/work", next(&mut started, "the handler starts"))
                            .await;
                    assert_eq!(alive, 2);
                    let stats = stats.clone().unwrap();
                    wait_until("the client is seen gone", || stats.disconnected() == 1).await;
                    // Shut down at once, while the orphans may still be cleaning up.
                    cleaned_at_cancel = Some(cleaned.load(SeqCst));
                    server.cancel();
                };
                let (r, ()) = tokio::join!(serving, client);
                r
            }),
    )
    .await;
    // Right after the server scope returned: the orphans were awaited.
    let (alive, cleaned_now) = (live.alive(), cleaned.load(SeqCst));
    match r {
        Ok(()) => {}
        Err(e) => {
            let reason = e
                .get_ref()
                .and_then(|e| e.downcast_ref::<Cancelled>())
                .map(Cancelled::reason);
            assert_eq!(reason, Some(CancelReason::Explicit), "{e}");
        }
    }
    assert_eq!(alive, 0, "right after the server scope returned");
    assert_eq!(cleaned_now, 1, "right after the server scope returned");
    eprintln!("blocking cleanups done when the server was cancelled: {cleaned_at_cancel:?}");
    let stats = stats.unwrap();
    assert_eq!((stats.requests(), stats.disconnected()), (1, 1));
}

type HttpClient = PropagateDeadline<Client<HttpConnector, String>>;

fn http_client() -> HttpClient {
    ServiceBuilder::new()
        .layer(ClientLayer::new())
        .service(Client::builder(TokioExecutor::new()).build_http())
}

/// One hop of the deadline chain.
#[derive(Clone)]
struct Hop {
    name: &'static str,
    next: Option<(SocketAddr, HttpClient)>,
    /// The handler and its work, alive.
    live: Census,
    /// Work that ran its 50 ms to the end.
    worked: Arc<AtomicUsize>,
}

/// A hop: reports the budget it sees (microseconds, or `none`), does 50 ms of work in a
/// child, calls the next hop (through `ClientLayer`) and appends its answer.
async fn hop(h: Hop, _req: Request<Incoming>) -> Result<Response<String>, Infallible> {
    let _g = h.live.guard();
    let seen = match taskscope::current_deadline() {
        Some(d) => d
            .saturating_duration_since(Instant::now())
            .as_micros()
            .to_string(),
        None => "none".to_owned(),
    };
    let me = format!("{}={seen}", h.name);
    let g = h.live.guard();
    let worked = h.worked.clone();
    let _ = taskscope::scope(async |s| {
        s.spawn(async move {
            let _g = g;
            sleep(ms(50)).await;
            worked.fetch_add(1, SeqCst);
            Ok(())
        });
        Ok::<_, Cancelled>(())
    })
    .await;
    let Some((addr, client)) = h.next else {
        return ok(me);
    };
    let req = Request::get(format!("http://{addr}/"))
        .body(String::new())
        .unwrap();
    Ok(match client.oneshot(req).await {
        Ok(res) => match read(res).await {
            (StatusCode::OK, body) => Response::new(format!("{me};{body}")),
            (code, body) => status(code, format!("{me};{body}")),
        },
        Err(e) => status(StatusCode::BAD_GATEWAY, format!("{me};{e}")),
    })
}

/// Parses `A=300000;B=...` into (name, budget in microseconds) pairs.
fn budgets(body: &str) -> Vec<(String, Option<u64>)> {
    body.split(';')
        .map(|part| {
            let (name, v) = part.split_once('=').expect(body);
            (name.to_owned(), v.parse().ok())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deadline_shrinks_along_a_chain_of_servers_and_ends_its_work_when_spent() {
    // C, then B calling C, then A calling B.
    let mut servers = Vec::new();
    let mut hops = Vec::new();
    let mut next = None;
    for name in ["C", "B", "A"] {
        let h = Hop {
            name,
            next: next.take(),
            live: Census::new(),
            worked: Arc::default(),
        };
        let svc = {
            let h = h.clone();
            service_fn(move |req| hop(h.clone(), req))
        };
        let server = start(svc, |s| s).await;
        next = Some((server.addr, http_client()));
        servers.push(server);
        hops.push(h);
    }
    let (a, root) = next.unwrap();
    let call = |budget: Option<Duration>| {
        let root = root.clone();
        async move {
            let req = Request::get(format!("http://{a}/"))
                .body(String::new())
                .unwrap();
            let mut builder = Scope::builder();
            if let Some(b) = budget {
                builder = builder.timeout(b);
            }
            builder
                .run(async |_s| {
                    let res = root.oneshot(req).await.expect("A answers");
                    Ok::<_, Cancelled>(read(res).await)
                })
                .await
        }
    };
    let all_idle = |hops: &[Hop]| hops.iter().all(|h| h.live.alive() == 0);

    // Without a deadline nothing is sent on (this also opens the pooled connections).
    let (code, body) = bounded("the chain without a deadline", call(None))
        .await
        .unwrap();
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body, "A=none;B=none;C=none");

    // 300 ms: each hop sees what is left of it.
    let (code, body) = bounded("the chain with 300 ms", call(Some(ms(300))))
        .await
        .unwrap();
    assert_eq!(code, StatusCode::OK, "{body}");
    let seen = budgets(&body);
    let names: Vec<_> = seen.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["A", "B", "C"]);
    let us: Vec<u64> = seen.iter().map(|(_, b)| b.expect(&body)).collect();
    assert!(us[0] <= 300_000 && us[0] > us[1] && us[1] > us[2], "{body}");
    // Each hop's 50 ms of work (and nothing much else) came off: C has about 200 ms.
    assert!((260_000..=300_000).contains(&us[0]), "{body}");
    assert!((160_000..=200_000).contains(&us[2]), "{body}");
    wait_until("every hop is idle after the 300 ms run", || all_idle(&hops)).await;

    // 120 ms: C arrives with about 20 ms for its 50 ms of work.
    let worked_before: Vec<usize> = hops.iter().map(|h| h.worked.load(SeqCst)).collect();
    let started = Instant::now();
    let r = bounded("the chain with 120 ms", call(Some(ms(120)))).await;
    let took = started.elapsed();
    match &r {
        Err(c) => assert_eq!(c.reason(), CancelReason::DeadlineExceeded),
        Ok((code, body)) => assert_eq!(*code, StatusCode::GATEWAY_TIMEOUT, "{body}"),
    }
    assert!(took < ms(120 + 80), "the root waited {took:?}");
    // Every hop's handler and work end; C's work never completed.
    wait_until("every hop is idle after the 120 ms run", || all_idle(&hops)).await;
    let c = &hops[0];
    assert_eq!(c.name, "C");
    assert_eq!(c.worked.load(SeqCst), worked_before[0], "C's work was cut");

    let stats: Vec<Stats> = servers.iter().map(|s| s.stats.clone()).collect();
    for s in servers {
        s.shutdown().await;
    }
    assert!(all_idle(&hops), "right after the servers returned");
    eprintln!("hop stats (C, B, A): {stats:?}");
    // C answered the first two runs; in the 120 ms run it was either called and cut (by its
    // own deadline or by B's, which went away), or not called at all (B's `ClientLayer`
    // found nothing left to send).
    let c = &stats[0];
    let cut = c.deadline_exceeded() + c.expired_on_arrival() + c.disconnected();
    assert!(c.requests() <= 3, "{c:?}");
    assert_eq!(cut, c.requests() - 2, "{c:?}");
}

#[tokio::test]
async fn grpc_request_with_a_spent_budget_is_answered_deadline_exceeded_without_the_handler() {
    let called = Arc::new(AtomicUsize::new(0));
    let svc = {
        let called = called.clone();
        service_fn(move |_req: Request<Incoming>| {
            called.fetch_add(1, SeqCst);
            async { ok("called") }
        })
    };
    let server = start(svc, |s| s).await;
    let stats = server.stats.clone();
    let addr = server.addr;

    let (mut send, conn) = http2(addr).await;
    let req = Request::post(format!("http://{addr}/pkg.Search/Query"))
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .header("te", "trailers")
        .header("grpc-timeout", "0n")
        .body(String::new())
        .unwrap();
    let res = bounded("the gRPC answer", send.send_request(req))
        .await
        .expect("answered");
    // A trailers-only response: HTTP 200, the gRPC status in the headers.
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["grpc-status"], "4");
    assert_eq!(
        res.headers()[http::header::CONTENT_TYPE],
        "application/grpc"
    );
    let (_, body) = read(res).await;
    assert!(body.is_empty());
    assert_eq!(called.load(SeqCst), 0, "the handler was never called");
    assert_eq!((stats.requests(), stats.expired_on_arrival()), (1, 1));

    drop(send);
    bounded("the client's connection closes", conn)
        .await
        .unwrap();
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_trigger_ends_serve_with_ok_whatever_the_grace() {
    for grace in [ms(1), Duration::ZERO] {
        let svc = service_fn(|_req: Request<Incoming>| async { ok("idle") });
        let server = start(svc, |s| s.grace(grace)).await;
        // An idle server: no connection was ever made.
        let r = server.stop().await;
        assert!(r.is_ok(), "grace {grace:?}: serve returned {r:?}");
    }
}
