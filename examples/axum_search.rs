//! An axum app whose handlers' tasks belong to the server: a client abandons a search, and
//! the backends its handler started are cancelled and awaited, not left behind.
//!
//! The app is served with plain `axum::serve`, inside a scope named `server`. The router has
//! `taskscope_tower::ServerLayer::new(server.handle())` as a layer, so every request runs in
//! a *request scope* that is a child of the server scope, although axum runs each connection
//! in a task of its own (`tokio::spawn`). `GET /search?q=...` opens a scope (`search`, a
//! `#[taskscope::scoped]` function) and fans the query out to three slow backends (`docs`,
//! `crates`, `forum`: 200, 300 and 400 ms), each a spawned child that counts itself in a
//! shared live counter while it runs.
//!
//! A client in the same program (raw HTTP/1.1 over a `TcpStream`):
//!
//! 1. sends `q=rust` and closes its socket 50 ms later, before any backend answered.
//!    hyper sees the connection close and drops the handler's future; the layer's default
//!    policy (`OnDisconnect::Drop`) cancels the request scope, the `search` scope
//!    hard-cancels its backends and hands them to the server scope, which awaits them. The
//!    server scope's tree is empty again, and no backend is still running, well before the
//!    fastest backend would have answered;
//! 2. sends `q=tokio` and waits: all three backends answer;
//! 3. shuts the server down by cancelling its scope: `axum::serve` stops accepting
//!    (`with_graceful_shutdown(cancelled)`), and the scope returns once nothing it owns runs.
//!
//! Without the layer, the `search` scope would be a root of its own in axum's connection
//! task: dropping it would still tell the backends to stop, but nothing would wait for them,
//! the server scope would not know about them (nor cancel them at shutdown), and the
//! caller's deadline would not reach them.
//!
//! Run with `cargo run --example axum_search`. It checks its own claims and exits non-zero
//! if one fails.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use taskscope::snapshot::TreeSnapshot;
use taskscope::{CancelReason, Cancelled, Ready, Scope, ScopeHandle};
use taskscope_tower::{ServerLayer, Stats};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::time::{Instant, sleep};

/// The backends every query fans out to, and how long each takes.
pub const BACKENDS: [(&str, u64); 3] = [("docs", 200), ("crates", 300), ("forum", 400)];

/// How long the client waits before it abandons its first search.
pub const ABANDON_AFTER: Duration = Duration::from_millis(50);

/// The backends' counters, shared by the server's tasks and the demo.
#[derive(Default)]
struct Counters {
    live: AtomicUsize,
    started: AtomicUsize,
    finished: AtomicUsize,
    cancelled: AtomicUsize,
}

/// What the handlers share.
#[derive(Clone)]
struct App {
    start: Instant,
    counters: Arc<Counters>,
}

impl App {
    fn ms(&self) -> u128 {
        self.start.elapsed().as_millis()
    }

    fn live(&self) -> usize {
        self.counters.live.load(Ordering::SeqCst)
    }

    fn counts(&self) -> BackendCounts {
        let c = &self.counters;
        BackendCounts {
            started: c.started.load(Ordering::SeqCst),
            finished: c.finished.load(Ordering::SeqCst),
            cancelled: c.cancelled.load(Ordering::SeqCst),
            live: c.live.load(Ordering::SeqCst),
        }
    }
}

/// The backends' counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackendCounts {
    pub started: usize,
    pub finished: usize,
    /// Dropped before they answered.
    pub cancelled: usize,
    /// Running (started, not yet finished or dropped).
    pub live: usize,
}

impl BackendCounts {
    fn since(self, before: BackendCounts) -> BackendCounts {
        BackendCounts {
            started: self.started - before.started,
            finished: self.finished - before.finished,
            cancelled: self.cancelled - before.cancelled,
            live: self.live,
        }
    }
}

/// Counts a backend as live until it is dropped, finished or not.
struct LiveGuard {
    app: App,
    name: &'static str,
    q: String,
    finished: bool,
}

impl LiveGuard {
    fn enter(app: &App, name: &'static str, q: &str) -> LiveGuard {
        app.counters.started.fetch_add(1, Ordering::SeqCst);
        app.counters.live.fetch_add(1, Ordering::SeqCst);
        LiveGuard {
            app: app.clone(),
            name,
            q: q.to_owned(),
            finished: false,
        }
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        let c = &self.app.counters;
        if self.finished {
            c.finished.fetch_add(1, Ordering::SeqCst);
        } else {
            c.cancelled.fetch_add(1, Ordering::SeqCst);
            println!(
                "  [{:>4} ms] server: backend {:<6} q={}: cancelled",
                self.app.ms(),
                self.name,
                self.q
            );
        }
        c.live.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One slow backend.
async fn backend(name: &'static str, ms: u64, q: String, app: App) -> Result<String, Cancelled> {
    let mut guard = LiveGuard::enter(&app, name, &q);
    sleep(Duration::from_millis(ms)).await;
    guard.finished = true;
    println!(
        "  [{:>4} ms] server: backend {name:<6} q={q}: answered",
        app.ms()
    );
    Ok(format!("{name}: top hit for {q:?}"))
}

/// The three backends in parallel, in a scope of their own. It nests in the request scope
/// the layer opened, so it is a grandchild of the server scope.
#[taskscope::scoped(s, name = "search")]
async fn fan_out(q: String, app: App) -> Result<Vec<String>, Cancelled> {
    let hits: Vec<_> = BACKENDS
        .iter()
        .map(|&(name, ms)| s.spawn(backend(name, ms, q.clone(), app.clone())))
        .collect();
    let mut out = Vec::new();
    for h in hits {
        out.push(h.await?);
    }
    Ok(out)
}

/// `GET /search?q=...`.
async fn search(
    State(app): State<App>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<String, (StatusCode, String)> {
    let q = params.get("q").cloned().unwrap_or_default();
    if q.is_empty() {
        return Err((StatusCode::BAD_REQUEST, "try /search?q=...\n".to_owned()));
    }
    println!("  [{:>4} ms] server: GET /search?q={q}", app.ms());
    match fan_out(q.clone(), app.clone()).await {
        Ok(hits) => {
            println!("  [{:>4} ms] server: q={q} answered 200", app.ms());
            Ok(hits.join("\n") + "\n")
        }
        Err(c) => Err((StatusCode::SERVICE_UNAVAILABLE, format!("{c}\n"))),
    }
}

/// How the server scope ended.
#[derive(Clone, Debug)]
pub struct ServerDone {
    /// What its scope returned.
    pub result: Result<(), String>,
    /// The cancel reason in the scope's error, if it returned one.
    pub reason: Option<CancelReason>,
    /// Tasks still alive anywhere in the server's tree after its scope returned.
    pub tasks_left: usize,
    /// Backends running after its scope returned.
    pub backends_live: usize,
}

/// The server: `axum::serve` in the server scope, with the request scopes under it.
async fn run_server(
    listener: TcpListener,
    app: App,
    ready: Ready<(ScopeHandle<io::Error>, Stats)>,
    done: oneshot::Sender<ServerDone>,
) -> io::Result<()> {
    let mut handle = None;
    let result = Scope::builder()
        .name("server")
        // At shutdown, in-flight requests get up to a second to finish.
        .grace(Duration::from_secs(1))
        .run(async |server| -> io::Result<()> {
            handle = Some(server.handle());
            let layer = ServerLayer::new(server.handle()).max_timeout(Duration::from_secs(5));
            ready.started((server.handle(), layer.stats()));
            let router = Router::new()
                .route("/search", get(search))
                .with_state(app.clone())
                .layer(layer);
            // Created here, so it waits for the server scope's cancellation.
            let shutdown = taskscope::cancelled();
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    shutdown.await;
                })
                .await
        })
        .await;
    let reason = result.as_ref().err().and_then(|e| {
        e.get_ref()
            .and_then(|inner| inner.downcast_ref::<Cancelled>())
            .map(Cancelled::reason)
    });
    let _ = done.send(ServerDone {
        result: result.map_err(|e| e.to_string()),
        reason,
        tasks_left: handle.map_or(0, |h| busy(&h.snapshot())),
        backends_live: app.live(),
    });
    Ok(()) // shut down on purpose
}

/// Scopes below the root of `tree`, plus tasks alive anywhere in it.
fn busy(tree: &TreeSnapshot) -> usize {
    let nodes = tree.nodes();
    nodes.len().saturating_sub(1) + nodes.iter().map(|n| n.live_children).sum::<usize>()
}

/// Polls `done` every 5 ms, for at most 5 s; whether it became true.
async fn wait_until(mut done: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + Duration::from_secs(5);
    while !done() {
        if Instant::now() >= until {
            return false;
        }
        sleep(Duration::from_millis(5)).await;
    }
    true
}

fn request(addr: SocketAddr, path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
}

/// One HTTP/1.1 GET over a fresh connection: the status code and the body.
async fn http_get(addr: SocketAddr, path: &str) -> io::Result<(u16, String)> {
    let mut conn = TcpStream::connect(addr).await?;
    conn.write_all(request(addr, path).as_bytes()).await?;
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).await?;
    let raw = String::from_utf8_lossy(&raw);
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no end of headers"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no status"))?;
    Ok((status, body.to_owned()))
}

/// What the demo saw.
#[derive(Debug)]
pub struct Report {
    /// Backends running once the first search's backends had started.
    pub live_in_flight: usize,
    /// The server scope's tree while the abandoned search ran.
    pub tree_in_flight: String,
    /// How long the client kept the abandoned search's socket open.
    pub abandoned_after: Duration,
    /// Whether the server's tree emptied (no request scope, no task) after the abandon.
    pub server_idle_after_abandon: bool,
    /// From the socket's close until the tree was empty and no backend ran.
    pub cleaned_up_in: Duration,
    /// What the abandoned search's backends did.
    pub abandoned: BackendCounts,
    /// The second search: status and the hits shown.
    pub status: u16,
    pub hits: Vec<String>,
    /// What the second search's backends did.
    pub completed: BackendCounts,
    /// The layer's counters before the shutdown.
    pub requests: u64,
    pub disconnected: u64,
    pub server: ServerDone,
}

/// Starts the server, runs the client against it, then shuts the server down.
pub async fn run() -> io::Result<Report> {
    let start = Instant::now();
    let app = App {
        start,
        counters: Arc::default(),
    };
    let ms = || start.elapsed().as_millis();
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    Scope::builder()
        .name("axum_search")
        .run(async |top| -> io::Result<Report> {
            let (done_tx, done_rx) = oneshot::channel();
            let (server, stats) = {
                let app = app.clone();
                top.start(|ready| run_server(listener, app, ready, done_tx))
                    .await?
            };
            println!(
                "axum_search: axum::serve on http://{addr} with ServerLayer, backends {BACKENDS:?}"
            );

            // 1. A search the client gives up on.
            let before = app.counts();
            println!("  [{:>4} ms] client: GET /search?q=rust", ms());
            let mut conn = TcpStream::connect(addr).await?;
            conn.write_all(request(addr, "/search?q=rust").as_bytes())
                .await?;
            let sent = Instant::now();
            let all_started = wait_until(|| app.live() == BACKENDS.len()).await;
            let live_in_flight = app.live();
            if !all_started {
                return Err(io::Error::other("the backends of q=rust never all started"));
            }
            let tree_in_flight = server.snapshot().to_string();
            println!(
                "  [{:>4} ms] the server scope's tree, {} backends running:\n{}",
                ms(),
                live_in_flight,
                indent(&tree_in_flight)
            );
            tokio::time::sleep_until(sent + ABANDON_AFTER).await;
            let abandoned_after = sent.elapsed();
            println!(
                "  [{:>4} ms] client: gives up on q=rust after {} ms: closes its socket",
                ms(),
                abandoned_after.as_millis()
            );
            drop(conn);
            let closed = Instant::now();
            let server_idle_after_abandon =
                wait_until(|| app.live() == 0 && busy(&server.snapshot()) == 0).await;
            let cleaned_up_in = closed.elapsed();
            let abandoned = app.counts().since(before);
            println!(
                "  [{:>4} ms] server scope: no request scope and no task left {} ms after the \
                 close; backends still running: {}",
                ms(),
                cleaned_up_in.as_millis(),
                abandoned.live
            );

            // 2. A search that completes.
            let before = app.counts();
            println!("  [{:>4} ms] client: GET /search?q=tokio", ms());
            let (status, body) = http_get(addr, "/search?q=tokio").await?;
            let hits: Vec<String> = body.lines().map(str::to_owned).collect();
            println!("  [{:>4} ms] client: {status}, {} hits:", ms(), hits.len());
            for h in &hits {
                println!("      {h}");
            }
            // The layer awaited the request scope before answering, so its backends are done.
            let completed = app.counts().since(before);

            // 3. Shutdown.
            let (requests, disconnected) = (stats.requests(), stats.disconnected());
            println!(
                "  [{:>4} ms] layer stats before the shutdown: {stats:?}",
                ms()
            );
            println!("  [{:>4} ms] shutting down: cancel the server scope", ms());
            server.cancel();
            let server = tokio::time::timeout(Duration::from_secs(5), done_rx)
                .await
                .map_err(|_| io::Error::other("the server scope did not return in 5 s"))?
                .map_err(|_| io::Error::other("the server did not report"))?;
            println!(
                "  [{:>4} ms] server scope returned ({}), tasks left in its tree: {}",
                ms(),
                match &server.result {
                    Ok(()) => "Ok".to_owned(),
                    Err(e) => format!("Err: {e}"),
                },
                server.tasks_left
            );
            println!("  still running: {}", server.backends_live);
            Ok(Report {
                live_in_flight,
                tree_in_flight,
                abandoned_after,
                server_idle_after_abandon,
                cleaned_up_in,
                abandoned,
                status,
                hits,
                completed,
                requests,
                disconnected,
                server,
            })
        })
        .await
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("      {l}\n")).collect()
}

impl Report {
    pub fn print(&self) {
        println!("\nsummary");
        let a = &self.abandoned;
        println!(
            "  q=rust (abandoned after {} ms): backends started {}, answered {}, cancelled {}; \
             the server's tree was empty {} ms after the close",
            self.abandoned_after.as_millis(),
            a.started,
            a.finished,
            a.cancelled,
            self.cleaned_up_in.as_millis()
        );
        let c = &self.completed;
        println!(
            "  q=tokio: {} with {} hits; backends started {}, answered {}, cancelled {}",
            self.status,
            self.hits.len(),
            c.started,
            c.finished,
            c.cancelled
        );
        println!(
            "  layer: {} requests, {} clients went away",
            self.requests, self.disconnected
        );
        println!(
            "  server scope: {:?} (reason {:?}), tasks left {}, still running: {}",
            self.server.result,
            self.server.reason,
            self.server.tasks_left,
            self.server.backends_live
        );
    }

    /// The demo's claims; panics if one does not hold.
    pub fn check(&self) {
        // While the abandoned search ran, its backends ran under the server scope: a
        // request scope, the handler's `search` scope inside it.
        assert_eq!(self.live_in_flight, BACKENDS.len());
        let tree = &self.tree_in_flight;
        assert!(tree.starts_with("scope \"server\""), "{tree}");
        let request = tree.find("cancel scope \"request\"").expect(tree);
        let search = tree.find("scope \"search\"").expect(tree);
        assert!(
            request < search,
            "the search scope is inside the request scope:\n{tree}"
        );

        // The client went away before any backend answered: all three were cancelled (none
        // answered), and the server scope's tree was empty again.
        assert!(self.abandoned_after >= ABANDON_AFTER);
        assert!(
            self.server_idle_after_abandon,
            "the server's tree never emptied"
        );
        let a = self.abandoned;
        assert_eq!(
            (a.started, a.finished, a.cancelled, a.live),
            (3, 0, 3, 0),
            "{a:?}"
        );

        // The second search answered with all three backends.
        assert_eq!(self.status, 200);
        assert_eq!(self.hits.len(), BACKENDS.len(), "{:?}", self.hits);
        for (hit, (name, _)) in self.hits.iter().zip(BACKENDS) {
            assert_eq!(*hit, format!("{name}: top hit for \"tokio\""));
        }
        let c = self.completed;
        assert_eq!(
            (c.started, c.finished, c.cancelled, c.live),
            (3, 3, 0, 0),
            "{c:?}"
        );

        // The layer saw both requests, and one client that went away.
        assert_eq!((self.requests, self.disconnected), (2, 1));

        // The server scope returned after the shutdown, with nothing left running.
        assert_eq!(self.server.tasks_left, 0);
        assert_eq!(self.server.backends_live, 0);
    }
}

#[tokio::main]
async fn main() -> io::Result<()> {
    let report = run().await?;
    report.print();
    report.check();
    Ok(())
}
