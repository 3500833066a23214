//! A deadline that crosses three services: each hop sees what is left of its caller's
//! budget, passes on less, and a budget too small for the chain ends where it runs out,
//! with nothing left running anywhere.
//!
//! Three axum servers, `A -> B -> C`, each on its own 127.0.0.1 port and in its own server
//! scope, with `taskscope_tower::ServerLayer` as a layer: every request runs in a request
//! scope whose deadline is the caller's budget, read from the `grpc-timeout` and
//! `x-timeout-ms` headers. Each hop does 50 ms of work, then calls the next one through a
//! hyper-util client wrapped in `ClientLayer` (a tower `ServiceBuilder`), which writes the
//! hop's own remaining time, less a 10 ms reserve for answering, onto the outgoing request.
//! The root client calls `A` the same way, inside `Scope::builder().timeout(..)`.
//!
//! Three runs:
//!
//! 1. **300 ms**: the chain takes about 150 ms. Each hop prints the budget it sees; they
//!    decrease hop by hop (the work and the reserve are taken off), and the root gets `200`.
//! 2. **160 ms**: `C` arrives with at most 40 ms, less than its work: its request scope's
//!    deadline passes, its handler is dropped and the layer answers `504` with
//!    `x-deadline-exhausted: 1` (the caller's own budget ran out: a retry would fail the
//!    same way). `B` and `A` still have their reserve, pass the `504` on, and the root gets
//!    it before its own deadline.
//! 3. **125 ms**: `B` arrives with at most 55 ms; after its work less than its reserve is
//!    left, so `ClientLayer` does not send the call at all (an error at once): `C` is never
//!    called, `B` answers `504`, and so does `A`.
//!
//! After each run every server scope's tree is empty and no handler runs. At the end the
//! three servers are shut down by cancelling their scopes.
//!
//! Run with `cargo run --example deadline_chain`. It checks its own claims and exits
//! non-zero if one fails.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use taskscope::snapshot::TreeSnapshot;
use taskscope::{CancelReason, Cancelled, Ready, Scope, ScopeHandle};
use taskscope_tower::{
    ClientLayer, DEADLINE_EXHAUSTED, PropagateDeadline, ServerLayer, Stats, TIMEOUT_MS,
    grpc_timeout,
};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::time::{Instant, sleep};
use tower::{ServiceBuilder, ServiceExt};

/// The hops, in call order.
pub const HOPS: [&str; 3] = ["A", "B", "C"];

/// The work each hop does before it calls the next one (or answers, for the last).
pub const WORK: Duration = Duration::from_millis(50);

/// What each caller keeps back from the budget it passes on, to build its answer.
pub const RESERVE: Duration = Duration::from_millis(10);

/// The runs: a name and the root's budget.
pub const RUNS: [(&str, u64); 3] = [
    ("fits", 300),
    ("runs out in C", 160),
    ("spent before C", 125),
];

/// A hyper-util client that writes the caller's remaining time on each request.
type HttpClient = PropagateDeadline<Client<HttpConnector, Full<Bytes>>>;

fn http_client() -> HttpClient {
    ServiceBuilder::new()
        .layer(ClientLayer::new().reserve(RESERVE))
        .service(Client::builder(TokioExecutor::new()).build_http())
}

/// How a hop's handler ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    /// Still running when the run was over (never expected).
    Running,
    /// It answered with `status`.
    Answered { status: u16, why: String },
    /// Its future was dropped: its request scope's deadline passed (the layer answered 504).
    DroppedAtDeadline,
    /// Its future was dropped before its deadline: its caller went away.
    DroppedCallerGone,
}

/// One hop's handler, as it saw its request.
#[derive(Clone, Debug)]
pub struct HopRecord {
    pub hop: &'static str,
    /// Since the run started.
    pub arrived: Duration,
    /// `current_deadline()` minus now, on arrival.
    pub budget: Option<Duration>,
    pub grpc_timeout: Option<String>,
    pub timeout_ms: Option<String>,
    pub ended: Ending,
}

/// What a caller got back from a call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// No answer yet: the caller was dropped while it waited.
    Pending,
    /// A response.
    Status { status: u16, exhausted: bool },
    /// `ClientLayer` refused to send it: the caller's budget was spent.
    NotSent,
    /// Another error.
    Failed(String),
}

/// One call from a hop (or the root) to the next hop.
#[derive(Clone, Debug)]
pub struct CallRecord {
    pub from: &'static str,
    pub to: &'static str,
    pub answer: Answer,
}

/// What one run recorded, in the order it happened.
#[derive(Default)]
struct Journal {
    start: Option<Instant>,
    hops: Vec<HopRecord>,
    calls: Vec<CallRecord>,
}

/// Shared by the root, the three servers and their handlers.
#[derive(Clone, Default)]
struct Shared {
    journal: Arc<Mutex<Journal>>,
    /// Handlers running now.
    live: Arc<AtomicUsize>,
}

impl Shared {
    fn with<R>(&self, f: impl FnOnce(&mut Journal) -> R) -> R {
        f(&mut self.journal.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn since_start(&self) -> Duration {
        self.with(|j| j.start.map_or(Duration::ZERO, |s| s.elapsed()))
    }

    fn set_ending(&self, hop: &'static str, ending: Ending) {
        self.with(|j| {
            if let Some(h) = j.hops.iter_mut().rev().find(|h| h.hop == hop) {
                h.ended = ending;
            }
        });
    }

    /// Records a call about to be made; gives its index.
    fn call(&self, from: &'static str, to: &'static str) -> usize {
        self.with(|j| {
            j.calls.push(CallRecord {
                from,
                to,
                answer: Answer::Pending,
            });
            j.calls.len() - 1
        })
    }

    fn answered(&self, call: usize, answer: Answer) {
        self.with(|j| j.calls[call].answer = answer);
    }
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

/// A header's value as text, if it was sent.
fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// Marks a hop's handler as running until it is dropped, and says how it ended if it
/// never answered.
struct HopGuard {
    shared: Shared,
    hop: &'static str,
    deadline: Option<Instant>,
    answered: bool,
}

impl Drop for HopGuard {
    fn drop(&mut self) {
        if !self.answered {
            let at_deadline = self.deadline.is_some_and(|d| Instant::now() >= d);
            let ending = if at_deadline {
                Ending::DroppedAtDeadline
            } else {
                Ending::DroppedCallerGone
            };
            println!(
                "  [{:>3} ms] {}: dropped {}",
                ms(self.shared.since_start()),
                self.hop,
                if at_deadline {
                    "at its deadline; its layer answers 504"
                } else {
                    "before its deadline: its caller went away"
                }
            );
            self.shared.set_ending(self.hop, ending);
        }
        self.shared.live.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The next hop of a server: its name, where it listens, and the client to call it with.
#[derive(Clone)]
struct Next {
    name: &'static str,
    addr: SocketAddr,
    client: HttpClient,
}

#[derive(Clone)]
struct Hop {
    name: &'static str,
    next: Option<Next>,
    shared: Shared,
}

/// Calls `next`; the status, the exhaustion header and the body, or how the call failed.
async fn call(from: &'static str, next: &Next, shared: &Shared) -> (Answer, String) {
    let i = shared.call(from, next.name);
    let req = Request::get(format!("http://{}/", next.addr))
        .body(Full::default())
        .expect("a valid request");
    let answer = match next.client.clone().oneshot(req).await {
        Ok(res) => {
            let status = res.status().as_u16();
            let exhausted = res.headers().contains_key(DEADLINE_EXHAUSTED);
            let body = match res.into_body().collect().await {
                Ok(b) => String::from_utf8_lossy(&b.to_bytes()).into_owned(),
                Err(e) => {
                    let a = Answer::Failed(format!("reading the body: {e}"));
                    shared.answered(i, a.clone());
                    return (a, String::new());
                }
            };
            shared.answered(i, Answer::Status { status, exhausted });
            return (Answer::Status { status, exhausted }, body);
        }
        Err(e) if e.downcast_ref::<Cancelled>().is_some() => Answer::NotSent,
        Err(e) => Answer::Failed(e.to_string()),
    };
    shared.answered(i, answer.clone());
    (answer, String::new())
}

/// `GET /` on every hop: 50 ms of work, then the next hop, then the answer.
async fn hop(State(hop): State<Hop>, headers: HeaderMap) -> Response {
    let Hop { name, next, shared } = hop;
    let deadline = taskscope::current_deadline();
    let budget = deadline.map(|d| d.saturating_duration_since(Instant::now()));
    let grpc_timeout = header(&headers, "grpc-timeout");
    let timeout_ms = header(&headers, TIMEOUT_MS.as_str());
    let arrived = shared.since_start();
    println!(
        "  [{:>3} ms] {name}: {} ms left (received grpc-timeout: {}, x-timeout-ms: {})",
        ms(arrived),
        budget.map_or("no deadline, ".to_owned(), |b| ms(b).to_string()),
        grpc_timeout.as_deref().unwrap_or("-"),
        timeout_ms.as_deref().unwrap_or("-"),
    );
    shared.with(|j| {
        j.hops.push(HopRecord {
            hop: name,
            arrived,
            budget,
            grpc_timeout,
            timeout_ms,
            ended: Ending::Running,
        })
    });
    shared.live.fetch_add(1, Ordering::SeqCst);
    let mut guard = HopGuard {
        shared: shared.clone(),
        hop: name,
        deadline,
        answered: false,
    };
    let me = format!("{name} ({} ms)", budget.map_or(0, ms));

    sleep(WORK).await;

    let (status, exhausted, body, why) = match &next {
        None => (200, false, me, "did its work".to_owned()),
        Some(next) => match call(name, next, &shared).await {
            (Answer::Status { status: 200, .. }, body) => (
                200,
                false,
                format!("{me} > {body}"),
                format!("{} answered 200", next.name),
            ),
            (Answer::Status { status, exhausted }, body) => (
                status,
                exhausted,
                body,
                format!("passed on {}'s {status}", next.name),
            ),
            (Answer::NotSent, _) => (
                504,
                true,
                String::new(),
                format!("budget spent: did not call {}", next.name),
            ),
            (other, _) => (
                502,
                false,
                String::new(),
                format!("calling {} failed: {other:?}", next.name),
            ),
        },
    };
    guard.answered = true;
    println!(
        "  [{:>3} ms] {name}: answers {status}{} ({why})",
        ms(shared.since_start()),
        if exhausted {
            ", x-deadline-exhausted: 1"
        } else {
            ""
        }
    );
    shared.set_ending(name, Ending::Answered { status, why });
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut res = (status, body).into_response();
    if exhausted {
        res.headers_mut()
            .insert(DEADLINE_EXHAUSTED, HeaderValue::from_static("1"));
    }
    res
}

/// How a server scope ended.
#[derive(Clone, Debug)]
pub struct ServerDone {
    pub hop: &'static str,
    pub result: Result<(), String>,
    /// Scopes and tasks left in its tree after its scope returned.
    pub tasks_left: usize,
}

/// One hop's server: `axum::serve` in a server scope, `ServerLayer` under it.
async fn run_server(
    hop: Hop,
    listener: TcpListener,
    ready: Ready<(ScopeHandle<io::Error>, Stats)>,
    done: oneshot::Sender<ServerDone>,
) -> io::Result<()> {
    let name = hop.name;
    let mut handle = None;
    let result = Scope::builder()
        .name(format!("server {name}"))
        .grace(Duration::from_secs(1))
        .run(async |server| -> io::Result<()> {
            handle = Some(server.handle());
            // Requests without a deadline header get at most 2 s.
            let layer = ServerLayer::new(server.handle()).max_timeout(Duration::from_secs(2));
            ready.started((server.handle(), layer.stats()));
            let router = Router::new()
                .route("/", get(self::hop))
                .with_state(hop)
                .layer(layer);
            let shutdown = taskscope::cancelled();
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    shutdown.await;
                })
                .await
        })
        .await;
    let _ = done.send(ServerDone {
        hop: name,
        result: result.map_err(|e| e.to_string()),
        tasks_left: handle.map_or(0, |h| busy(&h.snapshot())),
    });
    Ok(())
}

/// Scopes below the root of `tree`, plus tasks alive anywhere in it.
fn busy(tree: &TreeSnapshot) -> usize {
    let nodes = tree.nodes();
    nodes.len().saturating_sub(1) + nodes.iter().map(|n| n.live_children).sum::<usize>()
}

/// A running server.
struct Server {
    hop: &'static str,
    handle: ScopeHandle<io::Error>,
    stats: Stats,
    done: oneshot::Receiver<ServerDone>,
}

/// What the root got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RootOutcome {
    Response {
        status: u16,
        exhausted: bool,
        body: String,
    },
    /// The root's scope ended first (its deadline, normally).
    Cancelled(CancelReason),
    Failed(String),
}

/// One run of the chain.
#[derive(Clone, Debug)]
pub struct RunReport {
    pub name: &'static str,
    pub budget: Duration,
    pub root: RootOutcome,
    pub elapsed: Duration,
    /// The hops that were called, in arrival order.
    pub hops: Vec<HopRecord>,
    pub calls: Vec<CallRecord>,
    /// Per server (A, B, C): requests its layer answered 504 because their deadline passed
    /// in the handler, and because it was spent on arrival, during this run.
    pub deadline_exceeded: [u64; 3],
    pub expired_on_arrival: [u64; 3],
    /// Whether every server's tree emptied after the run (waited for at most 5 s).
    pub servers_idle: bool,
    /// Then: handlers running, plus scopes and tasks in the three servers' trees.
    pub left_running: usize,
}

impl RunReport {
    pub fn hop(&self, name: &str) -> Option<&HopRecord> {
        self.hops.iter().find(|h| h.hop == name)
    }
}

/// Everything the demo saw.
#[derive(Debug)]
pub struct Report {
    pub runs: Vec<RunReport>,
    pub servers: Vec<ServerDone>,
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

/// One run: the root calls `A` with `budget`, then waits until the servers are idle.
async fn one_run(
    name: &'static str,
    budget: Duration,
    a: SocketAddr,
    servers: &[Server],
    shared: &Shared,
) -> RunReport {
    let before: Vec<_> = servers
        .iter()
        .map(|s| (s.stats.deadline_exceeded(), s.stats.expired_on_arrival()))
        .collect();
    let start = Instant::now();
    shared.with(|j| {
        *j = Journal {
            start: Some(start),
            ..Journal::default()
        }
    });
    println!(
        "\nrun {name:?}: the root calls A with a budget of {} ms",
        ms(budget)
    );
    let next = Next {
        name: "A",
        addr: a,
        client: http_client(),
    };
    let root = Scope::builder()
        .name("root")
        .timeout(budget)
        .run(async |_s| -> Result<RootOutcome, Cancelled> {
            Ok(match call("root", &next, shared).await {
                (Answer::Status { status, exhausted }, body) => RootOutcome::Response {
                    status,
                    exhausted,
                    body,
                },
                (answer, _) => RootOutcome::Failed(format!("{answer:?}")),
            })
        })
        .await
        .unwrap_or_else(|c| RootOutcome::Cancelled(c.reason()));
    let elapsed = start.elapsed();
    drop(next);
    println!("  [{:>3} ms] root: {}", ms(elapsed), describe_root(&root));

    let servers_idle = wait_until(|| {
        shared.live.load(Ordering::SeqCst) == 0
            && servers.iter().all(|s| busy(&s.handle.snapshot()) == 0)
    })
    .await;
    let left_running = shared.live.load(Ordering::SeqCst)
        + servers
            .iter()
            .map(|s| busy(&s.handle.snapshot()))
            .sum::<usize>();
    let mut deadline_exceeded = [0; 3];
    let mut expired_on_arrival = [0; 3];
    for (i, (s, (d, e))) in servers.iter().zip(before).enumerate() {
        deadline_exceeded[i] = s.stats.deadline_exceeded() - d;
        expired_on_arrival[i] = s.stats.expired_on_arrival() - e;
    }
    let (hops, calls) = shared.with(|j| (j.hops.clone(), j.calls.clone()));
    RunReport {
        name,
        budget,
        root,
        elapsed,
        hops,
        calls,
        deadline_exceeded,
        expired_on_arrival,
        servers_idle,
        left_running,
    }
}

fn describe_root(root: &RootOutcome) -> String {
    match root {
        RootOutcome::Response {
            status,
            exhausted,
            body,
        } => format!(
            "{status}{}{}",
            if *exhausted {
                ", x-deadline-exhausted: 1"
            } else {
                ""
            },
            if body.is_empty() {
                String::new()
            } else {
                format!(": {body:?}")
            }
        ),
        RootOutcome::Cancelled(reason) => format!("its own scope ended: {reason}"),
        RootOutcome::Failed(e) => format!("failed: {e}"),
    }
}

/// Starts the three servers, runs the chain three times, shuts the servers down.
pub async fn run() -> io::Result<Report> {
    let shared = Shared::default();
    Scope::builder()
        .name("deadline_chain")
        .run(async |top| -> io::Result<Report> {
            // C first, so that B knows where C listens, then B, then A.
            let mut servers = Vec::new();
            let mut next: Option<Next> = None;
            let mut a = None;
            for name in HOPS.into_iter().rev() {
                let listener = TcpListener::bind("127.0.0.1:0").await?;
                let addr = listener.local_addr()?;
                let hop = Hop {
                    name,
                    next: next.take(),
                    shared: shared.clone(),
                };
                let (done_tx, done) = oneshot::channel();
                let (handle, stats) = top
                    .start(|ready| run_server(hop, listener, ready, done_tx))
                    .await?;
                println!("deadline_chain: {name} listens on http://{addr}");
                servers.push(Server {
                    hop: name,
                    handle,
                    stats,
                    done,
                });
                next = Some(Next {
                    name,
                    addr,
                    client: http_client(),
                });
                a = Some(addr);
            }
            servers.reverse(); // A, B, C
            let a = a.expect("three servers");

            let mut runs = Vec::new();
            for (name, budget) in RUNS {
                let r = one_run(name, Duration::from_millis(budget), a, &servers, &shared).await;
                println!(
                    "  after the run: still running in the three servers: {}",
                    r.left_running
                );
                runs.push(r);
            }

            println!("\nshutting down: cancel the three server scopes");
            for s in &servers {
                s.handle.cancel();
            }
            let mut done = Vec::new();
            for s in servers {
                let d = tokio::time::timeout(Duration::from_secs(5), s.done)
                    .await
                    .map_err(|_| {
                        io::Error::other(format!("server {} did not return in 5 s", s.hop))
                    })?
                    .map_err(|_| io::Error::other(format!("server {} did not report", s.hop)))?;
                println!(
                    "  server {} returned ({}), tasks left in its tree: {}",
                    d.hop,
                    match &d.result {
                        Ok(()) => "Ok".to_owned(),
                        Err(e) => format!("Err: {e}"),
                    },
                    d.tasks_left
                );
                done.push(d);
            }
            Ok(Report {
                runs,
                servers: done,
            })
        })
        .await
}

fn describe_ending(e: &Ending) -> String {
    match e {
        Ending::Running => "still running".to_owned(),
        Ending::Answered { status, why } => format!("answered {status} ({why})"),
        Ending::DroppedAtDeadline => "dropped at its deadline".to_owned(),
        Ending::DroppedCallerGone => "dropped: its caller went away".to_owned(),
    }
}

impl Report {
    pub fn print(&self) {
        println!("\nsummary");
        for r in &self.runs {
            println!(
                "  run {:?} ({} ms): root got {} after {} ms",
                r.name,
                ms(r.budget),
                describe_root(&r.root),
                ms(r.elapsed)
            );
            for (i, name) in HOPS.iter().enumerate() {
                match r.hop(name) {
                    Some(h) => {
                        let got = r.calls.iter().find(|c| c.to == *name).map_or(
                            String::new(),
                            |c| match c.answer {
                                Answer::Status { status, exhausted } => format!(
                                    "; {} got {status}{}",
                                    c.from,
                                    if exhausted {
                                        ", x-deadline-exhausted: 1"
                                    } else {
                                        ""
                                    }
                                ),
                                Answer::Pending => format!("; {} stopped waiting", c.from),
                                _ => String::new(),
                            },
                        );
                        println!(
                            "    {name}: arrived at {:>3} ms with {:>3} ms left, {}{got}",
                            ms(h.arrived),
                            h.budget.map_or(0, ms),
                            describe_ending(&h.ended)
                        );
                    }
                    None => {
                        let why = r.calls.iter().find(|c| c.to == *name).map_or(
                            "nobody called it".to_owned(),
                            |c| match &c.answer {
                                Answer::NotSent => {
                                    format!("{}'s budget was spent, the call was not sent", c.from)
                                }
                                a => format!("{}'s call: {a:?}", c.from),
                            },
                        );
                        println!("    {name}: never called ({why})");
                    }
                }
                let (late, on_arrival) = (r.deadline_exceeded[i], r.expired_on_arrival[i]);
                if late + on_arrival > 0 {
                    println!(
                        "    {name}'s layer answered 504: {late} at the deadline, {on_arrival} on \
                         arrival"
                    );
                }
            }
            println!(
                "    still running in the servers afterwards: {}",
                r.left_running
            );
        }
        for d in &self.servers {
            println!(
                "  server {}: {:?}, tasks left {}",
                d.hop, d.result, d.tasks_left
            );
        }
    }

    /// The demo's claims; panics if one does not hold.
    pub fn check(&self) {
        let [fits, in_c, before_c] = &self.runs[..] else {
            panic!("three runs")
        };
        for r in &self.runs {
            assert!(
                r.servers_idle,
                "run {:?}: a server's tree never emptied",
                r.name
            );
            assert_eq!(r.left_running, 0, "run {:?}", r.name);
            for h in &r.hops {
                assert_ne!(h.ended, Ending::Running, "run {:?}: {h:?}", r.name);
            }
        }

        // 1. In time: every hop saw a deadline, both headers, and less time than its caller
        //    sent; the budgets decrease hop by hop; the root got the whole chain's answer.
        assert_eq!(
            fits.root,
            RootOutcome::Response {
                status: 200,
                exhausted: false,
                body: format!(
                    "A ({} ms) > B ({} ms) > C ({} ms)",
                    budget_ms(fits, "A"),
                    budget_ms(fits, "B"),
                    budget_ms(fits, "C")
                ),
            }
        );
        let names: Vec<_> = fits.hops.iter().map(|h| h.hop).collect();
        assert_eq!(names, HOPS);
        let mut above = fits.budget.saturating_sub(RESERVE);
        for h in &fits.hops {
            let budget = h.budget.expect("a deadline");
            let sent_ms: u64 = h
                .timeout_ms
                .as_deref()
                .and_then(|v| v.parse().ok())
                .expect("an x-timeout-ms header");
            let grpc = h.grpc_timeout.as_deref().expect("a grpc-timeout header");
            assert!(
                budget <= Duration::from_millis(sent_ms),
                "{}: {budget:?} seen, {sent_ms} ms sent",
                h.hop
            );
            assert!(
                Duration::from_millis(sent_ms) <= above,
                "{}: {sent_ms} ms sent, at most {above:?} expected",
                h.hop
            );
            // Both headers carry the same budget; the millisecond one is rounded down.
            let grpc = grpc_timeout::decode(&HeaderValue::from_str(grpc).expect("a header"))
                .expect("a valid grpc-timeout");
            assert!(
                Duration::from_millis(sent_ms) <= grpc && grpc < Duration::from_millis(sent_ms + 1),
                "{}: grpc-timeout {grpc:?}, x-timeout-ms {sent_ms}",
                h.hop
            );
            assert!(
                matches!(h.ended, Ending::Answered { status: 200, .. }),
                "{h:?}"
            );
            // The next hop gets at most this one's budget, less its work and its reserve.
            above = budget.saturating_sub(WORK + RESERVE);
        }
        let budgets: Vec<_> = fits.hops.iter().map(|h| h.budget).collect();
        assert!(
            budgets.windows(2).all(|w| w[0] > w[1]),
            "budgets decrease: {budgets:?}"
        );

        // 2 and 3. Too small: the root got a 504 (or its own deadline error), no hop
        //    answered 200.
        for r in [in_c, before_c] {
            match &r.root {
                RootOutcome::Response { status: 504, .. }
                | RootOutcome::Cancelled(CancelReason::DeadlineExceeded) => {}
                other => panic!("run {:?}: root got {other:?}", r.name),
            }
            for h in &r.hops {
                assert!(
                    !matches!(h.ended, Ending::Answered { status: 200, .. }),
                    "run {:?}: {h:?}",
                    r.name
                );
            }
            assert!(r.hop("A").is_some(), "run {:?}: A was called", r.name);
        }
        // 2. If C was called, it had less than its work's time: it could not answer.
        if let Some(c) = in_c.hop("C") {
            assert!(c.budget.expect("a deadline") < WORK, "{c:?}");
            assert_ne!(
                c.ended,
                Ending::Answered {
                    status: 200,
                    why: "did its work".to_owned()
                }
            );
        }
        // 3. B had at most 55 ms: after its 50 ms of work less than its reserve was left,
        //    so C was never called.
        assert!(before_c.hop("C").is_none(), "{:?}", before_c.hops);

        // The three servers returned after their shutdown, with nothing left.
        assert_eq!(self.servers.len(), 3);
        for d in &self.servers {
            assert_eq!(d.tasks_left, 0, "server {}", d.hop);
        }
    }
}

/// The budget `hop` saw in run `r`, in whole milliseconds.
fn budget_ms(r: &RunReport, hop: &str) -> u128 {
    r.hop(hop).and_then(|h| h.budget).map_or(0, ms)
}

#[tokio::main]
async fn main() -> io::Result<()> {
    let report = run().await?;
    report.print();
    report.check();
    Ok(())
}
