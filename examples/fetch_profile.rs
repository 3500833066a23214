//! Fan-out / fan-in with fail fast and a timeout, over a real loopback TCP service.
//!
//! `fetch_profile` is an `async fn` under `#[taskscope::scoped(s, timeout = "500ms")]`: it
//! asks a tiny line-protocol service for a user's name, posts and friends at the same time,
//! one connection per request, and assembles a `Profile`. Three runs:
//!
//! 1. every part answers in time: the profile;
//! 2. `posts` fails fast: `user` and `friends` are cancelled at once, their connections
//!    closed (the service sees them hang up), and the error is returned;
//! 3. `friends` is too slow: at 500 ms everything still running is cancelled and the call
//!    fails with `DeadlineExceeded`.
//!
//! After each run, no task of `fetch_profile` is left running.
//!
//! Run with `cargo run --example fetch_profile`.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use taskscope::{CancelReason, Cancelled, move_on_after, scope};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep};

/// The timeout of `fetch_profile` (the attribute below takes the same as a literal).
pub const TIMEOUT: Duration = Duration::from_millis(500);

/// The three runs: the user id (which decides how the service behaves) and what it shows.
pub const RUNS: [(u32, &str); 3] = [
    (1, "every part answers in time"),
    (2, "posts fails fast"),
    (3, "friends is too slow"),
];

/// The parts of a profile, one request each.
pub const PARTS: [&str; 3] = ["user", "posts", "friends"];

/// What the service answers to `<part> <user>`, and after how many milliseconds.
fn service_reply(part: &str, user: u32) -> (u64, Result<&'static str, &'static str>) {
    match (user, part) {
        (1, "user") => (40, Ok("Ada Lovelace")),
        (1, "posts") => (80, Ok("Notes on the engine,Sketch of the engine")),
        (1, "friends") => (120, Ok("Babbage,Somerville")),
        (2, "user") => (300, Ok("Grace Hopper")),
        (2, "posts") => (50, Err("posts database unavailable")),
        (2, "friends") => (400, Ok("Aiken")),
        (3, "user") => (40, Ok("Alan Turing")),
        (3, "posts") => (80, Ok("Computing machinery")),
        (3, "friends") => (3_000, Ok("Gandy")),
        _ => (0, Err("no such thing")),
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub name: String,
    pub posts: Vec<String>,
    pub friends: Vec<String>,
}

#[derive(Debug)]
pub enum Error {
    Io(io::Error),
    /// The service answered `ERR`.
    Service {
        part: &'static str,
        message: String,
    },
    /// The scope (or a handle) was cancelled; a timeout is `DeadlineExceeded`.
    Cancelled(CancelReason),
}

impl From<Cancelled> for Error {
    fn from(c: Cancelled) -> Self {
        Error::Cancelled(c.reason())
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "i/o: {e}"),
            Error::Service { part, message } => write!(f, "service error on {part}: {message}"),
            Error::Cancelled(reason) => write!(f, "cancelled: {reason}"),
        }
    }
}

impl std::error::Error for Error {}

/// How one part (one request) of a fetch ended.
#[derive(Debug, Clone, PartialEq)]
pub enum PartOutcome {
    Running,
    Answered {
        at: Duration,
    },
    Failed {
        at: Duration,
        error: String,
    },
    /// Dropped by the scope; `request_sent` if the service had the request.
    Cancelled {
        at: Duration,
        request_sent: bool,
    },
}

#[derive(Debug, Clone)]
pub struct Part {
    pub name: &'static str,
    pub started: Duration,
    pub outcome: PartOutcome,
}

/// A client of the service for one run: counts live part tasks and logs them.
#[derive(Clone)]
pub struct Client {
    addr: SocketAddr,
    start: Instant,
    live: Arc<AtomicUsize>,
    log: Arc<Mutex<Vec<Part>>>,
}

impl Client {
    fn new(addr: SocketAddr) -> Self {
        Client {
            addr,
            start: Instant::now(),
            live: Arc::default(),
            log: Arc::default(),
        }
    }

    fn ms(&self) -> u128 {
        self.start.elapsed().as_millis()
    }

    /// Part tasks alive now.
    pub fn live(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }

    fn open(&self, name: &'static str) -> PartGuard {
        self.live.fetch_add(1, Ordering::SeqCst);
        let mut log = self.log.lock().unwrap();
        log.push(Part {
            name,
            started: self.start.elapsed(),
            outcome: PartOutcome::Running,
        });
        PartGuard {
            client: self.clone(),
            slot: log.len() - 1,
            request_sent: false,
            done: false,
        }
    }

    /// Asks the service for `part` of `user`: one connection, one line each way.
    fn get(
        &self,
        part: &'static str,
        user: u32,
    ) -> impl Future<Output = Result<String, Error>> + use<> {
        let client = self.clone();
        async move {
            let mut guard = client.open(part);
            let result = async {
                let mut conn = TcpStream::connect(client.addr).await?;
                conn.write_all(format!("{part} {user}\n").as_bytes())
                    .await?;
                guard.request_sent = true;
                println!("  [{:>4} ms] {part:<7} requested", client.ms());
                let mut line = String::new();
                BufReader::new(&mut conn).read_line(&mut line).await?;
                match line.trim_end().split_once(' ') {
                    Some(("OK", value)) => Ok(value.to_owned()),
                    Some(("ERR", message)) => Err(Error::Service {
                        part,
                        message: message.to_owned(),
                    }),
                    _ => Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("bad reply {line:?}"),
                    )
                    .into()),
                }
            }
            .await;
            guard.finish(&result);
            result
        }
    }
}

/// Lives as long as a part's task: dropping it unfinished records the cancellation.
struct PartGuard {
    client: Client,
    slot: usize,
    request_sent: bool,
    done: bool,
}

impl PartGuard {
    fn set(&self, outcome: PartOutcome) -> &'static str {
        let mut log = self.client.log.lock().unwrap();
        log[self.slot].outcome = outcome;
        log[self.slot].name
    }

    fn finish(&mut self, result: &Result<String, Error>) {
        self.done = true;
        let at = self.client.start.elapsed();
        let ms = at.as_millis();
        match result {
            Ok(v) => {
                let name = self.set(PartOutcome::Answered { at });
                println!("  [{ms:>4} ms] {name:<7} answered {v:?}");
            }
            Err(e) => {
                let name = self.set(PartOutcome::Failed {
                    at,
                    error: e.to_string(),
                });
                println!("  [{ms:>4} ms] {name:<7} failed: {e}");
            }
        }
    }
}

impl Drop for PartGuard {
    fn drop(&mut self) {
        if !self.done {
            let at = self.client.start.elapsed();
            let request_sent = self.request_sent;
            let name = self.set(PartOutcome::Cancelled { at, request_sent });
            println!(
                "  [{:>4} ms] {name:<7} cancelled; its connection is closed",
                at.as_millis()
            );
        }
        self.client.live.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Fetches a user's name, posts and friends concurrently. The first failure cancels the
/// other requests and is returned; after 500 ms everything is cancelled and the call fails
/// with `Error::Cancelled(DeadlineExceeded)`. Returns only after all three tasks are gone.
#[taskscope::scoped(s, timeout = "500ms")]
pub async fn fetch_profile(client: &Client, user_id: u32) -> Result<Profile, Error> {
    let name = s.spawn(client.get("user", user_id));
    let posts = s.spawn(client.get("posts", user_id));
    let friends = s.spawn(client.get("friends", user_id));
    let list = |s: String| s.split(',').map(str::to_owned).collect();
    Ok(Profile {
        name: name.await?,
        posts: list(posts.await?),
        friends: list(friends.await?),
    })
}

/// The service: answers each connection's one request after the delay `service_reply`
/// gives, unless the client hangs up first; that is reported on `hangups`.
async fn service(
    listener: TcpListener,
    hangups: mpsc::UnboundedSender<(u32, String)>,
) -> Result<(), Error> {
    scope(async |s| -> Result<(), Error> {
        loop {
            let (conn, _) = listener.accept().await?;
            s.spawn(answer(conn, hangups.clone()));
        }
    })
    .await
}

/// One connection of the service. A client's misbehaviour is not the service's error.
async fn answer(
    mut conn: TcpStream,
    hangups: mpsc::UnboundedSender<(u32, String)>,
) -> Result<(), Error> {
    let (read, mut write) = conn.split();
    let mut read = BufReader::new(read);
    let mut line = String::new();
    if read.read_line(&mut line).await.unwrap_or(0) == 0 {
        return Ok(());
    }
    let (part, user) = match line.trim_end().split_once(' ') {
        Some((part, user)) => (part.to_owned(), user.parse().unwrap_or(0)),
        None => (line.trim_end().to_owned(), 0),
    };
    let (delay, reply) = service_reply(&part, user);
    let reply = match reply {
        Ok(v) => format!("OK {v}\n"),
        Err(e) => format!("ERR {e}\n"),
    };
    let mut buf = [0u8; 16];
    tokio::select! {
        _ = sleep(Duration::from_millis(delay)) => {
            let _ = write.write_all(reply.as_bytes()).await;
        }
        _ = read.read(&mut buf) => {
            // The client sends one line only: anything now is EOF or a reset.
            let _ = hangups.send((user, part));
        }
    }
    Ok(())
}

/// One call of `fetch_profile` and what happened around it.
#[derive(Debug)]
pub struct RunReport {
    pub user_id: u32,
    pub what: &'static str,
    pub result: Result<Profile, Error>,
    pub elapsed: Duration,
    pub parts: Vec<Part>,
    /// Part tasks alive right after `fetch_profile` returned.
    pub live_after: usize,
    /// Parts whose connection the service saw closed before it answered.
    pub hangups_seen_by_service: Vec<String>,
}

#[derive(Debug)]
pub struct Report {
    pub addr: SocketAddr,
    pub runs: Vec<RunReport>,
}

/// Starts the service and calls `fetch_profile` for each of `RUNS`.
pub async fn run() -> Result<Report, Error> {
    scope(async |s| {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (hangups_tx, mut hangups) = mpsc::unbounded_channel();
        // Cancelled (ScopeDone) and awaited once the runs are done.
        s.spawn_background(service(listener, hangups_tx));
        println!(
            "fetch_profile: user, posts and friends in parallel from {addr}, timeout {} ms",
            TIMEOUT.as_millis()
        );

        let mut runs = Vec::new();
        for (user_id, what) in RUNS {
            println!("\nrun: user {user_id}, {what}");
            let client = Client::new(addr);
            let result = fetch_profile(&client, user_id).await;
            let elapsed = client.start.elapsed();
            let live_after = client.live();
            match &result {
                Ok(p) => println!("  [{:>4} ms] => Ok({p:?})", elapsed.as_millis()),
                Err(e) => println!("  [{:>4} ms] => Err({e})", elapsed.as_millis()),
            }
            println!("  part tasks still running: {live_after}");

            // Every cancelled part whose request reached the service: the service sees
            // its connection close.
            let mut parts = client.log.lock().unwrap().clone();
            parts.sort_by_key(|p| PARTS.iter().position(|&n| n == p.name));
            let expected = parts
                .iter()
                .filter(|p| {
                    matches!(
                        p.outcome,
                        PartOutcome::Cancelled {
                            request_sent: true,
                            ..
                        }
                    )
                })
                .count();
            let mut seen = Vec::new();
            move_on_after(Duration::from_secs(2), async {
                while seen.len() < expected {
                    match hangups.recv().await {
                        Some((user, part)) if user == user_id => seen.push(part),
                        Some(_) => {}
                        None => break,
                    }
                }
            })
            .await;
            seen.sort();
            if expected > 0 {
                println!(
                    "  the service saw these clients hang up: {}",
                    seen.join(", ")
                );
            }
            runs.push(RunReport {
                user_id,
                what,
                result,
                elapsed,
                parts,
                live_after,
                hangups_seen_by_service: seen,
            });
        }
        Ok(Report { addr, runs })
    })
    .await
}

impl Report {
    pub fn print(&self) {
        println!("\nsummary");
        for r in &self.runs {
            let result = match &r.result {
                Ok(p) => format!(
                    "Ok: {}, {} posts, {} friends",
                    p.name,
                    p.posts.len(),
                    p.friends.len()
                ),
                Err(e) => format!("Err: {e}"),
            };
            println!(
                "  user {} ({}): {result} after {} ms; tasks left: {}",
                r.user_id,
                r.what,
                r.elapsed.as_millis(),
                r.live_after
            );
            for p in &r.parts {
                let outcome = match &p.outcome {
                    PartOutcome::Running => "still running?!".to_owned(),
                    PartOutcome::Answered { at } => format!("answered at {} ms", at.as_millis()),
                    PartOutcome::Failed { at, error } => {
                        format!("failed at {} ms: {error}", at.as_millis())
                    }
                    PartOutcome::Cancelled { at, .. } => format!(
                        "cancelled at {} ms{}",
                        at.as_millis(),
                        if r.hangups_seen_by_service.iter().any(|h| h == p.name) {
                            "; the service saw it hang up"
                        } else {
                            ""
                        }
                    ),
                };
                println!("    {:<7} {outcome}", p.name);
            }
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let report = run().await?;
    report.print();
    Ok(())
}
