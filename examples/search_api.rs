//! The zombie-task story, over a real hyper 1 HTTP server on loopback: a client abandons a
//! search request, and everything the server started for it is cancelled and awaited.
//!
//! The server's accept loop is the body of a scope named `server`; each connection is a
//! child task of it that runs hyper's `serve_connection` inside its own scope (`conn N`).
//! `GET /search?q=...` fans the query out to three slow in-process backends (`docs`,
//! `crates`, `forum`: 150-600 ms each) inside a per-request scope `request q=...`, and
//! answers with the three results.
//!
//! A search box in the same program (raw HTTP/1.1 over a `TcpStream`) types "rust", then
//! 100 ms later "python", before any result came back. It sends the new request and
//! abandons the outdated one by cancelling its fetch task, which closes that connection.
//!
//! What happens on the server: hyper 1's HTTP/1 connection keeps reading the socket while a
//! request is in flight, so it sees the EOF, fails with "connection closed before message
//! completed" and is dropped together with the pending service future. That future owns the
//! `request q=rust` scope: dropping a scope hard-cancels its children (the backends) and
//! hands them to the nearest live ancestor scope, `conn 1`, which awaits them before it
//! returns. So once `conn 1`'s scope has returned, no backend of "rust" is running: the
//! drop guards count them. (The per-connection scope is what makes this hold per
//! connection: without it the nearest live ancestor would be `server`, which awaits such
//! hand-offs only when it exits. hyper polls the service future inline, inside the
//! connection's future, so the request scope nests below `conn N` by itself.) Without the scope (a `tokio::spawn` per backend, or a `JoinSet`
//! that aborts without waiting) the backends would go on, or still be running, after the
//! connection is gone: zombie tasks.
//!
//! The client only ever shows the "python" results. At the end the server is shut down by
//! cancelling its scope; it returns once its last task is gone.
//!
//! Run with `cargo run --example search_api`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use taskscope::{CancelReason, CancelScope, Cancelled, Ready, Scope, ScopeHandle, snapshot};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, sleep};

/// The backends every query fans out to.
pub const BACKENDS: [&str; 3] = ["docs", "crates", "forum"];

/// What the search box types, and when (since it started).
pub const TYPED: [(&str, u64); 2] = [("rust", 0), ("python", 100)];

/// How long a backend takes for a query: "rust" is the slow one (its last backend answers
/// at 600 ms, long after the search box gave up on it), "python" answers within 350 ms.
fn backend_delay(backend: &str, q: &str) -> Duration {
    let ms = match (q, backend) {
        ("rust", "docs") => 300,
        ("rust", "crates") => 450,
        ("rust", _) => 600,
        (_, "docs") => 150,
        (_, "crates") => 250,
        _ => 350,
    };
    Duration::from_millis(ms)
}

/// What the backends of one query did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueryStats {
    pub started: usize,
    pub finished: usize,
    /// Dropped before they finished.
    pub cancelled: usize,
    /// Running now (started, not yet finished or dropped).
    pub live: usize,
}

/// Shared by the server's tasks: the clock and the backends' counters, per query.
#[derive(Clone)]
struct Shared {
    start: Instant,
    queries: Arc<Mutex<HashMap<String, QueryStats>>>,
    connections_live: Arc<AtomicUsize>,
}

impl Shared {
    fn ms(&self) -> u128 {
        self.start.elapsed().as_millis()
    }

    fn stats(&self, q: &str) -> QueryStats {
        self.queries
            .lock()
            .unwrap()
            .get(q)
            .cloned()
            .unwrap_or_default()
    }

    fn update(&self, q: &str, f: impl FnOnce(&mut QueryStats)) {
        f(self
            .queries
            .lock()
            .unwrap()
            .entry(q.to_owned())
            .or_default());
    }

    fn backends_live(&self) -> usize {
        self.queries.lock().unwrap().values().map(|s| s.live).sum()
    }
}

/// Counts a backend as live for its query until dropped; dropped unfinished, it counts as
/// cancelled.
struct BackendGuard {
    shared: Shared,
    q: String,
    name: &'static str,
    done: bool,
}

impl Drop for BackendGuard {
    fn drop(&mut self) {
        let done = self.done;
        self.shared.update(&self.q, |s| {
            s.live -= 1;
            if done {
                s.finished += 1;
            } else {
                s.cancelled += 1;
            }
        });
        if !done {
            println!(
                "  [{:>4} ms] server: backend {:<6} q={}: cancelled",
                self.shared.ms(),
                self.name,
                self.q
            );
        }
    }
}

/// One slow backend: a named cancel scope around the work, so that it shows in the tree.
async fn backend(name: &'static str, q: String, shared: Shared) -> Result<String, Cancelled> {
    shared.update(&q, |s| {
        s.started += 1;
        s.live += 1;
    });
    let mut guard = BackendGuard {
        shared,
        q: q.clone(),
        name,
        done: false,
    };
    CancelScope::new()
        .name(format!("backend {name}"))
        .run(sleep(backend_delay(name, &q)))
        .await?;
    guard.done = true;
    Ok(format!("{name}: top hit for {q:?}"))
}

/// Says so when hyper drops a request's future before it answered.
struct RequestGuard {
    shared: Shared,
    q: String,
    conn: usize,
    answered: bool,
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        if !self.answered {
            println!(
                "  [{:>4} ms] server: request q={} dropped by hyper (the client went away) with \
                 {} backends running: taskscope hard-cancels them, conn {}'s scope awaits them",
                self.shared.ms(),
                self.q,
                self.shared.stats(&self.q).live,
                self.conn
            );
        }
    }
}

/// `GET /search?q=...`: the three backends in parallel, in a scope of their own.
async fn search(
    req: Request<Incoming>,
    conn: usize,
    shared: Shared,
    seen: Arc<Mutex<Vec<String>>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let q = req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix("q="))
        .unwrap_or("")
        .to_owned();
    if req.uri().path() != "/search" || q.is_empty() {
        let mut not_found = Response::new(Full::new(Bytes::from("try /search?q=...\n")));
        *not_found.status_mut() = StatusCode::NOT_FOUND;
        return Ok(not_found);
    }
    seen.lock().unwrap().push(q.clone());
    println!(
        "  [{:>4} ms] server: conn {conn}: GET /search?q={q}",
        shared.ms()
    );
    let mut guard = RequestGuard {
        shared: shared.clone(),
        q: q.clone(),
        conn,
        answered: false,
    };
    let result: Result<Vec<String>, Cancelled> = Scope::builder()
        .name(format!("request q={q}"))
        .timeout(Duration::from_secs(2))
        .run(async |s| {
            let hits: Vec<_> = BACKENDS
                .iter()
                .map(|&b| s.spawn(backend(b, q.clone(), shared.clone())))
                .collect();
            let mut out = Vec::new();
            for h in hits {
                out.push(h.await?);
            }
            Ok(out)
        })
        .await;
    guard.answered = true;
    let (status, body) = match result {
        Ok(hits) => (StatusCode::OK, hits.join("\n") + "\n"),
        Err(c) if c.is_deadline() => (StatusCode::GATEWAY_TIMEOUT, format!("{c}\n")),
        Err(c) => (StatusCode::SERVICE_UNAVAILABLE, format!("{c}\n")),
    };
    println!(
        "  [{:>4} ms] server: conn {conn}: q={q} answered {status}",
        shared.ms()
    );
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    Ok(response)
}

/// What the server tells the demo: a connection's scope returned.
#[derive(Clone, Debug)]
pub struct ConnClosed {
    pub conn: usize,
    /// The queries it served.
    pub queries: Vec<String>,
    /// How hyper's connection ended.
    pub how: String,
    /// Backends of those queries still running right after the connection's scope returned.
    pub backends_live: usize,
    pub stats: Vec<QueryStats>,
}

/// One connection: hyper's `serve_connection` in a scope of its own. Everything a request
/// started is below it, and awaited by it.
async fn connection(
    conn: usize,
    stream: TcpStream,
    shared: Shared,
    events: mpsc::UnboundedSender<ConnClosed>,
) -> io::Result<()> {
    shared.connections_live.fetch_add(1, Ordering::SeqCst);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let served = Scope::builder()
        .name(format!("conn {conn}"))
        .run(async |_s| -> io::Result<_> {
            let shared = shared.clone();
            let seen = seen.clone();
            let service = service_fn(move |req| search(req, conn, shared.clone(), seen.clone()));
            Ok(http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await)
        })
        .await;
    // The connection's scope returned: it awaited every task its requests started.
    let queries = seen.lock().unwrap().clone();
    let stats: Vec<_> = queries.iter().map(|q| shared.stats(q)).collect();
    let backends_live = stats.iter().map(|s| s.live).sum();
    let how = match served {
        Ok(Ok(())) => "closed after the response".to_owned(),
        Ok(Err(e)) if e.is_incomplete_message() => format!("the client went away ({e})"),
        Ok(Err(e)) => format!("failed: {e}"),
        Err(e) => format!("scope failed: {e}"),
    };
    println!(
        "  [{:>4} ms] server: conn {conn} ({}) {how}; its scope returned, backends of it still \
         running: {backends_live}",
        shared.ms(),
        queries
            .iter()
            .map(|q| format!("q={q}"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    shared.connections_live.fetch_sub(1, Ordering::SeqCst);
    let _ = events.send(ConnClosed {
        conn,
        queries,
        how,
        backends_live,
        stats,
    });
    Ok(()) // a client's misbehaviour is not the server's error
}

/// How the server scope ended.
#[derive(Clone, Debug)]
pub struct ServerDone {
    /// Why its scope returned (`Err` with `CancelReason::Explicit` after `cancel()`).
    pub result: Result<(), String>,
    pub reason: Option<CancelReason>,
    /// Spawned children still alive in the server's tree after its scope returned.
    pub tasks_left: usize,
    pub connections_live: usize,
    pub backends_live: usize,
}

/// The server: a scope whose body is the accept loop and whose children are the
/// connections. Ready once it listens, with a handle to its scope (to look at and cancel).
async fn server(
    listener: TcpListener,
    ready: Ready<ScopeHandle<io::Error>>,
    shared: Shared,
    events: mpsc::UnboundedSender<ConnClosed>,
    done: oneshot::Sender<ServerDone>,
) -> io::Result<()> {
    let mut handle = None;
    let result = Scope::builder()
        .name("server")
        .run(async |s| -> io::Result<()> {
            handle = Some(s.handle());
            ready.started(s.handle());
            let mut n = 0;
            loop {
                let (stream, _peer) = listener.accept().await?;
                n += 1;
                s.spawn(connection(n, stream, shared.clone(), events.clone()));
            }
        })
        .await;
    let reason = result.as_ref().err().and_then(|e| {
        e.get_ref()
            .and_then(|inner| inner.downcast_ref::<Cancelled>())
            .map(Cancelled::reason)
    });
    let tasks_left = handle
        .map(|h| h.snapshot().nodes().iter().map(|n| n.live_children).sum())
        .unwrap_or(0);
    let _ = done.send(ServerDone {
        result: result.map_err(|e| e.to_string()),
        reason,
        tasks_left,
        connections_live: shared.connections_live.load(Ordering::SeqCst),
        backends_live: shared.backends_live(),
    });
    Ok(()) // shut down on purpose
}

/// One HTTP/1.1 GET over a fresh connection; gives the status code and the body.
async fn http_get(addr: SocketAddr, path: &str) -> io::Result<(u16, String)> {
    let mut conn = TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    conn.write_all(request.as_bytes()).await?;
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

/// Results the search box displayed.
#[derive(Clone, Debug)]
pub struct Shown {
    pub q: String,
    pub status: u16,
    pub hits: Vec<String>,
    pub at: Duration,
}

#[derive(Debug)]
pub struct Report {
    pub addr: SocketAddr,
    /// `snapshot()` of the whole program while the server works on both requests.
    pub tree_both_running: String,
    /// After the abandoned request's connection scope returned.
    pub tree_after_disconnect: String,
    /// After the client is done, before the shutdown.
    pub tree_at_end: String,
    /// Everything the search box displayed, in order.
    pub shown: Vec<Shown>,
    /// How the client's fetch of "rust" ended (it was cancelled).
    pub rust_fetch: Result<(), CancelReason>,
    /// The connection that served "rust", as the server saw it close.
    pub rust_conn: ConnClosed,
    /// Backends of "rust" running right after that connection's scope returned.
    pub rust_backends_live_after_abandon: usize,
    pub python_conn: ConnClosed,
    pub server: ServerDone,
}

/// Waits (bounded) for the server to report a connection that served `q`.
async fn closed_conn(
    events: &mut mpsc::UnboundedReceiver<ConnClosed>,
    backlog: &mut Vec<ConnClosed>,
    q: &str,
) -> io::Result<ConnClosed> {
    let has_q = |c: &ConnClosed| c.queries.iter().any(|x| x == q);
    if let Some(i) = backlog.iter().position(has_q) {
        return Ok(backlog.remove(i));
    }
    let waited = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(c) = events.recv().await {
            if has_q(&c) {
                return Some(c);
            }
            backlog.push(c);
        }
        None
    })
    .await;
    waited
        .ok()
        .flatten()
        .ok_or_else(|| io::Error::other(format!("the connection of q={q} never closed")))
}

/// Starts the server, runs the search box against it, then shuts the server down.
pub async fn run() -> io::Result<Report> {
    Scope::builder()
        .name("search_api")
        .run(async |s| {
            let start = Instant::now();
            let shared = Shared {
                start,
                queries: Arc::default(),
                connections_live: Arc::default(),
            };
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            let (events_tx, mut events) = mpsc::unbounded_channel();
            let (done_tx, done_rx) = oneshot::channel();
            let server_scope = {
                let shared = shared.clone();
                s.start(|ready| server(listener, ready, shared, events_tx, done_tx))
                    .await?
            };
            println!("search_api: hyper server on http://{addr}, backends {BACKENDS:?}");
            let ms = || start.elapsed().as_millis();
            let shown = Arc::new(Mutex::new(Vec::<Shown>::new()));
            let mut backlog = Vec::new();

            // The search box: each typed query is a fetch task of the client scope; the
            // outdated one is cancelled, which closes its connection.
            let (tree_both_running, rust_fetch, rust_conn, tree_after_disconnect) = Scope::builder()
                .name("search box")
                .run(async |c| -> io::Result<_> {
                    let fetch = |q: &'static str| {
                        let shown = shown.clone();
                        c.spawn(async move {
                            let path = format!("/search?q={q}");
                            let (status, body) = CancelScope::new()
                                .name(format!("fetch q={q}"))
                                .run(http_get(addr, &path))
                                .await??;
                            let hits: Vec<String> = body.lines().map(str::to_owned).collect();
                            let at = start.elapsed();
                            println!(
                                "  [{:>4} ms] client: showing {} results for {q:?} ({status}): {hits:?}",
                                at.as_millis(),
                                hits.len()
                            );
                            shown.lock().unwrap().push(Shown {
                                q: q.to_owned(),
                                status,
                                hits,
                                at,
                            });
                            Ok::<_, io::Error>(())
                        })
                    };
                    let [(first, _), (second, after)] = TYPED;
                    println!("  [{:>4} ms] client: typed {first:?}", ms());
                    let rust = fetch(first);
                    sleep(Duration::from_millis(after)).await;
                    println!("  [{:>4} ms] client: typed {second:?}", ms());
                    let python = fetch(second);

                    // (For the demo: wait until the server works on both, to show the tree.)
                    for _ in 0..400 {
                        let tree = server_scope.snapshot();
                        if [first, second]
                            .iter()
                            .all(|q| tree.find(&format!("request q={q}")).is_some())
                        {
                            break;
                        }
                        sleep(Duration::from_millis(5)).await;
                    }
                    let tree = snapshot().to_string();
                    println!(
                        "\n  [{:>4} ms] the live tree while both requests run:\n{}",
                        ms(),
                        indent(&tree)
                    );

                    // The rust results are stale now: abandon the request.
                    println!(
                        "  [{:>4} ms] client: abandons {first:?}: cancels its fetch, which \
                         closes its connection",
                        ms()
                    );
                    rust.cancel();
                    let rust_fetch = match rust.await {
                        Ok(()) => Ok(()),
                        Err(e) => Err(e.reason()),
                    };
                    // (For the demo: wait until the server saw the disconnect.)
                    let rust_conn = closed_conn(&mut events, &mut backlog, first).await?;
                    let tree_after = snapshot().to_string();
                    println!(
                        "\n  [{:>4} ms] the live tree after the disconnect:\n{}",
                        ms(),
                        indent(&tree_after)
                    );
                    python.await?;
                    Ok((tree, rust_fetch, rust_conn, tree_after))
                })
                .await?;
            let rust_backends_live_after_abandon = rust_conn.backends_live;
            // The server closes python's connection after answering (`Connection: close`).
            let python_conn = closed_conn(&mut events, &mut backlog, "python").await?;
            let tree_at_end = snapshot().to_string();
            println!(
                "\n  [{:>4} ms] the live tree at the end:\n{}",
                ms(),
                indent(&tree_at_end)
            );

            println!("  [{:>4} ms] shutting the server down: cancel its scope", ms());
            server_scope.cancel();
            let server = done_rx
                .await
                .map_err(|_| io::Error::other("the server did not report"))?;
            println!(
                "  [{:>4} ms] server scope returned ({}) with {} tasks left ({} connections, {} \
                 backends)",
                ms(),
                match &server.result {
                    Ok(()) => "Ok".to_owned(),
                    Err(e) => format!("Err: {e}"),
                },
                server.tasks_left,
                server.connections_live,
                server.backends_live
            );
            let shown = shown.lock().unwrap().clone();
            Ok(Report {
                addr,
                tree_both_running,
                tree_after_disconnect,
                tree_at_end,
                shown,
                rust_fetch,
                rust_conn,
                rust_backends_live_after_abandon,
                python_conn,
                server,
            })
        })
        .await
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}\n")).collect()
}

impl Report {
    pub fn print(&self) {
        println!("\nsummary");
        let rust = self.rust_conn.stats.first().cloned().unwrap_or_default();
        println!(
            "  \"rust\" (abandoned): client fetch {:?}; conn {} {}; backends started {}, finished \
             {}, cancelled {}; still running after its connection's scope returned: {}",
            self.rust_fetch,
            self.rust_conn.conn,
            self.rust_conn.how,
            rust.started,
            rust.finished,
            rust.cancelled,
            self.rust_backends_live_after_abandon
        );
        let python = self.python_conn.stats.first().cloned().unwrap_or_default();
        println!(
            "  \"python\": conn {} {}; backends started {}, finished {}, cancelled {}",
            self.python_conn.conn,
            self.python_conn.how,
            python.started,
            python.finished,
            python.cancelled
        );
        for s in &self.shown {
            println!(
                "  the client showed {:?} at {} ms: {:?}",
                s.q,
                s.at.as_millis(),
                s.hits
            );
        }
        println!(
            "  server: {:?} (reason {:?}), tasks left {}",
            self.server.result, self.server.reason, self.server.tasks_left
        );
    }
}

#[tokio::main]
async fn main() -> io::Result<()> {
    let report = run().await?;
    report.print();
    Ok(())
}
