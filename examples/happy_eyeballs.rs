//! Happy Eyeballs (RFC 8305) over real loopback sockets: staggered connection attempts, the
//! first server to answer wins, and the losing connections are closed before the race
//! returns.
//!
//! Four "servers" on 127.0.0.1, each on its own ephemeral port:
//!
//! | attempt | server |
//! |---|---|
//! | 0 | accepts, greets after 3 s (a slow path) |
//! | 1 | refuses: the port is bound but not listening |
//! | 2 | accepts, greets after 500 ms |
//! | 3 | accepts, greets after 600 ms |
//!
//! Attempt 0 starts at once, attempt 1 at 250 ms (the stagger). Attempt 1 is refused at once,
//! so attempt 2 starts right away instead of at 500 ms; attempt 3 starts 250 ms after
//! attempt 2. Attempt 2 wins at about 750 ms; attempts 0 and 3 are cancelled and their
//! sockets closed before the race returns (the servers read EOF on them).
//!
//! Run with `cargo run --example happy_eyeballs`.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use taskscope::future::Race;
use taskscope::{move_on_after, scope};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep};

/// RFC 8305's recommended delay between connection attempts.
pub const STAGGER: Duration = Duration::from_millis(250);

/// What the server behind each attempt's address does.
#[derive(Clone, Copy, Debug)]
enum Server {
    /// Accepts, waits this long, then writes a greeting line.
    GreetsAfter(u64),
    /// Nothing listens on the port: the connection is refused.
    Refuses,
}

const SERVERS: [Server; 4] = [
    Server::GreetsAfter(3_000),
    Server::Refuses,
    Server::GreetsAfter(500),
    Server::GreetsAfter(600),
];

/// How an attempt ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The race was decided before this attempt's turn.
    NotStarted,
    /// Connecting or waiting for the greeting (only while the race runs).
    Running,
    /// Read the greeting.
    Succeeded { at: Duration },
    /// Connecting or reading failed.
    Failed {
        at: Duration,
        kind: io::ErrorKind,
        error: String,
    },
    /// Dropped by the race after another attempt won; `connected` if it had a socket.
    Cancelled { at: Duration, connected: bool },
}

/// One attempt as the report shows it.
#[derive(Clone, Debug)]
pub struct Attempt {
    pub addr: SocketAddr,
    /// Since the race started (the attempt's first poll).
    pub started: Option<Duration>,
    pub outcome: Outcome,
}

/// What happened, for `main` to print and the test to check.
#[derive(Debug)]
pub struct Report {
    pub winner: usize,
    pub greeting: String,
    /// When the race returned.
    pub returned_at: Duration,
    pub attempts: Vec<Attempt>,
    /// Attempt futures still alive when the race returned.
    pub still_open: usize,
    /// Attempts whose server read EOF (the client closed) before it greeted.
    pub closed_seen_by_server: Vec<usize>,
}

/// The shared record of the attempts: a log and a count of live attempt futures.
#[derive(Clone)]
struct Tracker {
    start: Instant,
    live: Arc<AtomicUsize>,
    log: Arc<Mutex<Vec<Attempt>>>,
}

impl Tracker {
    fn ms(&self) -> u128 {
        self.start.elapsed().as_millis()
    }

    fn set(&self, index: usize, f: impl FnOnce(&mut Attempt)) {
        f(&mut self.log.lock().unwrap()[index]);
    }

    /// Counts an attempt as live until its guard is dropped.
    fn open(&self, index: usize) -> Guard {
        self.live.fetch_add(1, Ordering::SeqCst);
        let at = self.start.elapsed();
        self.set(index, |a| {
            a.started = Some(at);
            a.outcome = Outcome::Running;
        });
        let addr = self.log.lock().unwrap()[index].addr;
        println!(
            "  [{:>4} ms] attempt {index}: connecting to {addr}",
            self.ms()
        );
        Guard {
            tracker: self.clone(),
            index,
            connected: false,
            done: false,
        }
    }
}

/// Lives as long as the attempt's future: dropping it unfinished records the cancellation.
struct Guard {
    tracker: Tracker,
    index: usize,
    connected: bool,
    done: bool,
}

impl Guard {
    fn finish(&mut self, result: &io::Result<Winner>) {
        self.done = true;
        let at = self.tracker.start.elapsed();
        let (i, ms) = (self.index, at.as_millis());
        let outcome = match result {
            Ok(w) => {
                println!("  [{ms:>4} ms] attempt {i}: got {:?}", w.greeting);
                Outcome::Succeeded { at }
            }
            Err(e) => {
                println!("  [{ms:>4} ms] attempt {i}: failed: {e}");
                Outcome::Failed {
                    at,
                    kind: e.kind(),
                    error: e.to_string(),
                }
            }
        };
        self.tracker.set(self.index, |a| a.outcome = outcome);
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if !self.done {
            let at = self.tracker.start.elapsed();
            let connected = self.connected;
            println!(
                "  [{:>4} ms] attempt {}: cancelled{}",
                at.as_millis(),
                self.index,
                if connected {
                    "; its socket is closed"
                } else {
                    ""
                }
            );
            self.tracker.set(self.index, |a| {
                a.outcome = Outcome::Cancelled { at, connected }
            });
        }
        self.tracker.live.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The winning attempt's value: its connection, already greeted.
struct Winner {
    index: usize,
    greeting: String,
    _stream: TcpStream,
}

/// One connection attempt: connect, then read the greeting line.
async fn attempt(index: usize, addr: SocketAddr, tracker: Tracker) -> io::Result<Winner> {
    let mut guard = tracker.open(index);
    let result = async {
        let stream = TcpStream::connect(addr).await?;
        guard.connected = true;
        println!(
            "  [{:>4} ms] attempt {index}: connected, waiting for the greeting",
            tracker.ms()
        );
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        if reader.read_line(&mut line).await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed before the greeting",
            ));
        }
        Ok(Winner {
            index,
            greeting: line.trim_end().to_owned(),
            _stream: reader.into_inner(),
        })
    }
    .await;
    guard.finish(&result);
    result
}

/// A server for one attempt: accepts one connection and greets after `after`, unless the
/// client closes first; that is reported on `closed`.
async fn serve(
    index: usize,
    listener: TcpListener,
    after: Duration,
    start: Instant,
    closed: mpsc::UnboundedSender<usize>,
) -> io::Result<()> {
    let (mut conn, _) = listener.accept().await?;
    let mut buf = [0u8; 64];
    tokio::select! {
        _ = sleep(after) => {
            conn.write_all(format!("hello from server {index}\n").as_bytes()).await?;
            // Keep the connection until the client is done with it.
            let _ = conn.read(&mut buf).await;
        }
        read = conn.read(&mut buf) => {
            let how = match read {
                Ok(0) => "EOF".to_owned(),
                Ok(n) => format!("{n} unexpected bytes"),
                Err(e) => e.to_string(),
            };
            println!(
                "  [{:>4} ms] server {index}: the client closed before the greeting ({how})",
                start.elapsed().as_millis()
            );
            let _ = closed.send(index);
        }
    }
    Ok(())
}

/// Starts the servers, races the attempts, and waits until the servers saw the losers close.
pub async fn run() -> io::Result<Report> {
    scope(async |s| {
        let (closed_tx, mut closed_rx) = mpsc::unbounded_channel();
        let mut addrs = Vec::new();
        let mut listeners = Vec::new();
        let mut refusing = Vec::new(); // kept bound (so nobody else takes the port) until the end
        for server in SERVERS {
            match server {
                Server::GreetsAfter(ms) => {
                    let l = TcpListener::bind("127.0.0.1:0").await?;
                    addrs.push(l.local_addr()?);
                    listeners.push((l, Duration::from_millis(ms)));
                }
                Server::Refuses => {
                    let socket = TcpSocket::new_v4()?;
                    socket.bind("127.0.0.1:0".parse().unwrap())?;
                    addrs.push(socket.local_addr()?);
                    refusing.push(socket);
                }
            }
        }

        let start = Instant::now();
        // The servers run as background children: cancelled once the rest of the scope is
        // done, and awaited.
        let mut greeting_servers = listeners.into_iter();
        for (i, server) in SERVERS.into_iter().enumerate() {
            if let Server::GreetsAfter(_) = server {
                let (l, after) = greeting_servers.next().unwrap();
                s.spawn_background(serve(i, l, after, start, closed_tx.clone()));
            }
        }

        let tracker = Tracker {
            start,
            live: Arc::default(),
            log: Arc::new(Mutex::new(
                addrs
                    .iter()
                    .map(|&addr| Attempt {
                        addr,
                        started: None,
                        outcome: Outcome::NotStarted,
                    })
                    .collect(),
            )),
        };
        let attempts = addrs
            .iter()
            .enumerate()
            .map(|(i, &addr)| attempt(i, addr, tracker.clone()));
        let winner = match Race::new().stagger(STAGGER).run(attempts).await {
            Ok(w) => w,
            Err(errors) => return Err(errors.into_vec().remove(0)),
        };
        let returned_at = start.elapsed();
        let still_open = tracker.live.load(Ordering::SeqCst);
        println!(
            "  [{:>4} ms] race returned: attempt {} won; losing attempts still open: {still_open}",
            returned_at.as_millis(),
            winner.index
        );

        // Every loser that had a connection: its server reads EOF.
        let attempts = tracker.log.lock().unwrap().clone();
        let expected = attempts
            .iter()
            .filter(|a| {
                matches!(
                    a.outcome,
                    Outcome::Cancelled {
                        connected: true,
                        ..
                    }
                )
            })
            .count();
        let mut closed_seen_by_server = Vec::new();
        move_on_after(Duration::from_secs(2), async {
            while closed_seen_by_server.len() < expected {
                match closed_rx.recv().await {
                    Some(i) => closed_seen_by_server.push(i),
                    None => break,
                }
            }
        })
        .await;
        closed_seen_by_server.sort();
        drop(refusing);
        Ok(Report {
            winner: winner.index,
            greeting: winner.greeting,
            returned_at,
            attempts,
            still_open,
            closed_seen_by_server,
        })
    })
    .await
}

impl Report {
    pub fn print(&self) {
        println!("\nsummary (stagger {} ms)", STAGGER.as_millis());
        for (i, a) in self.attempts.iter().enumerate() {
            let started = match a.started {
                Some(t) => format!("started {:>4} ms", t.as_millis()),
                None => "never started  ".to_owned(),
            };
            let outcome = match &a.outcome {
                Outcome::NotStarted | Outcome::Running => String::new(),
                Outcome::Succeeded { at } if i == self.winner => {
                    format!("won at {} ms: {:?}", at.as_millis(), self.greeting)
                }
                Outcome::Succeeded { at } => format!("also succeeded at {} ms", at.as_millis()),
                Outcome::Failed { at, error, .. } => {
                    format!("failed at {} ms: {error}", at.as_millis())
                }
                Outcome::Cancelled { at, connected } => format!(
                    "cancelled at {} ms{}",
                    at.as_millis(),
                    match (connected, self.closed_seen_by_server.contains(&i)) {
                        (true, true) => "; the server saw the connection close",
                        (true, false) => "; the server did NOT see the connection close",
                        (false, _) => " while connecting",
                    }
                ),
            };
            // Started before the stagger was up: the previous attempt had failed.
            let early = match (i.checked_sub(1).map(|p| &self.attempts[p]), a.started) {
                (Some(prev), Some(t)) => match (prev.started, &prev.outcome) {
                    (Some(p), Outcome::Failed { .. }) if t.saturating_sub(p) < STAGGER => {
                        format!(" (early: attempt {} had failed)", i - 1)
                    }
                    _ => String::new(),
                },
                _ => String::new(),
            };
            println!("  attempt {i}  {}  {started}  {outcome}{early}", a.addr);
        }
        println!(
            "  race returned at {} ms; losing attempts still open: {}",
            self.returned_at.as_millis(),
            self.still_open
        );
    }
}

#[tokio::main]
async fn main() -> io::Result<()> {
    println!(
        "happy eyeballs: {} attempts over loopback TCP, stagger {} ms",
        SERVERS.len(),
        STAGGER.as_millis()
    );
    let report = run().await?;
    report.print();
    Ok(())
}
