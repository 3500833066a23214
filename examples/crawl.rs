//! A bounded-concurrency crawler over a generated site served on loopback TCP.
//!
//! The site has 40 pages, each linking to 2-4 others; some are slow (200-250 ms), most are
//! quick (20-80 ms), and page 13 never answers. Pages 37-39 are linked from nowhere, and
//! page 36 only from page 13. A tiny line-protocol server (`GET /p/N` -> `200 /p/3 /p/9`)
//! serves them, one request per connection.
//!
//! The crawl is one scope built with `.limit(4)`: at most four page tasks run at once, the
//! others wait (in spawn order) for a slot. Each page task fetches its page inside a named
//! cancel scope with a 300 ms timeout (`fail_after` with a name, so it shows in the tree),
//! and spawns a task for every page it discovers that nobody visited yet, through the
//! scope's handle (nursery passing): children spawn children, and the scope returns when
//! the last of them is done. The hanging page times out; its connection is closed and the
//! server sees the client give up.
//!
//! Mid-crawl, the live tree is printed: the `crawl` scope with at most four `fetch` cancel
//! scopes running and the waiting page tasks listed as bare tasks. At the end: pages
//! fetched, timed out and never reached, and the most page tasks ever seen running at once.
//!
//! Run with `cargo run --example crawl`.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use taskscope::snapshot::NodeKind;
use taskscope::{CancelScope, Cancelled, Scope, ScopeHandle, snapshot};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::time::{Instant, sleep};

/// Pages of the site; page 0 is the root.
pub const PAGES: usize = 40;
/// The page whose server never answers.
pub const HANGS: usize = 13;
/// At most this many page tasks run at once.
pub const LIMIT: usize = 4;
/// Per-page timeout.
pub const TIMEOUT: Duration = Duration::from_millis(300);
/// Once this many pages were fetched, the tree is printed.
pub const MID_AFTER: usize = 8;

/// A page of the generated site.
#[derive(Clone, Debug)]
pub struct Page {
    pub links: Vec<usize>,
    /// How long the server takes to answer; `None`: never.
    pub delay: Option<Duration>,
}

/// The site: deterministic (a fixed-seed LCG), so every run crawls the same graph.
pub fn site() -> Vec<Page> {
    let mut seed: u64 = 0x5eed_cafe;
    let mut next = |n: u64| {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) % n
    };
    (0..PAGES)
        .map(|i| {
            let k = 2 + next(3) as usize;
            let mut links = Vec::new();
            while links.len() < k {
                // Pages 36-39 are never linked by chance.
                let t = next(36) as usize;
                if t != i && !links.contains(&t) {
                    links.push(t);
                }
            }
            if i == HANGS {
                links.push(36); // 36 is behind the hanging page only
            }
            let delay = match i {
                HANGS => None,
                _ if i % 6 == 5 => Some(200 + next(50)),
                _ => Some(20 + next(60)),
            };
            Page {
                links,
                delay: delay.map(Duration::from_millis),
            }
        })
        .collect()
}

/// The pages a crawl from the root can reach: the links of a page that never answers are
/// never seen.
pub fn reachable(site: &[Page]) -> BTreeSet<usize> {
    let mut seen = BTreeSet::from([0]);
    let mut queue = VecDeque::from([0]);
    while let Some(p) = queue.pop_front() {
        if site[p].delay.is_none() {
            continue;
        }
        for &l in &site[p].links {
            if seen.insert(l) {
                queue.push_back(l);
            }
        }
    }
    seen
}

/// The site's server: one request per connection, answered after the page's delay.
async fn serve(listener: TcpListener, site: Arc<Vec<Page>>, gave_up: Arc<Mutex<Vec<usize>>>) {
    let served: io::Result<()> = Scope::builder()
        .name("site server")
        .run(async |s| {
            loop {
                let (conn, _) = listener.accept().await?;
                s.spawn(answer(conn, site.clone(), gave_up.clone()));
            }
        })
        .await;
    let _ = served; // cancelled (ScopeDone) once the crawl is over
}

async fn answer(
    mut conn: TcpStream,
    site: Arc<Vec<Page>>,
    gave_up: Arc<Mutex<Vec<usize>>>,
) -> io::Result<()> {
    let (read, mut write) = conn.split();
    let mut read = BufReader::new(read);
    let mut line = String::new();
    read.read_line(&mut line).await?;
    let page = line
        .trim_end()
        .strip_prefix("GET /p/")
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|&n| n < site.len());
    let Some(page) = page else {
        write.write_all(b"404\n").await?;
        return Ok(());
    };
    let mut buf = [0u8; 16];
    match site[page].delay {
        Some(d) => {
            sleep(d).await;
            let links: Vec<_> = site[page].links.iter().map(|l| format!("/p/{l}")).collect();
            write
                .write_all(format!("200 {}\n", links.join(" ")).as_bytes())
                .await?;
        }
        None => {
            // Never answers; the client gives up by closing (EOF).
            let _ = read.read(&mut buf).await;
            gave_up.lock().unwrap().push(page);
        }
    }
    Ok(())
}

/// `GET /p/N` over a fresh connection: the page's links.
async fn fetch(addr: SocketAddr, page: usize) -> io::Result<Vec<usize>> {
    let mut conn = TcpStream::connect(addr).await?;
    conn.write_all(format!("GET /p/{page}\n").as_bytes())
        .await?;
    let mut line = String::new();
    BufReader::new(conn).read_line(&mut line).await?;
    let bad = || io::Error::new(io::ErrorKind::InvalidData, format!("bad answer {line:?}"));
    let rest = line.trim_end().strip_prefix("200").ok_or_else(bad)?;
    rest.split_whitespace()
        .map(|l| {
            l.strip_prefix("/p/")
                .and_then(|n| n.parse().ok())
                .ok_or_else(bad)
        })
        .collect()
}

/// What became of a page the crawl visited.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Fetched { links: Vec<usize>, at: Duration },
    TimedOut { at: Duration },
    Failed { error: String },
}

/// The crawl's shared state.
struct Crawl {
    addr: SocketAddr,
    start: Instant,
    visited: Mutex<HashSet<usize>>,
    outcomes: Mutex<BTreeMap<usize, Outcome>>,
    /// The gauge: page tasks running (past the limit's queue) now, and the most ever.
    running: AtomicUsize,
    max_running: AtomicUsize,
    fetched: AtomicUsize,
    mid: Mutex<Option<oneshot::Sender<()>>>,
}

/// Counts a page task as running until dropped.
struct Running<'a>(&'a Crawl);

impl<'a> Running<'a> {
    fn enter(crawl: &'a Crawl) -> Self {
        let now = crawl.running.fetch_add(1, Ordering::SeqCst) + 1;
        crawl.max_running.fetch_max(now, Ordering::SeqCst);
        Running(crawl)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Spawns the task of `page` into the crawl scope. It waits for a slot of the limit
/// before its first poll. (Boxed: `crawl_page` spawns itself, and the compiler cannot see
/// that a recursive `async fn` is `Send` without a type that breaks the cycle.)
fn spawn_page(page: usize, crawl: &Arc<Crawl>, s: &ScopeHandle<Cancelled>) {
    let task: BoxedTask = Box::pin(crawl_page(page, crawl.clone(), s.clone()));
    s.spawn(task)
        .expect("the crawl scope waits for the spawning task, so it is open");
}

type BoxedTask = Pin<Box<dyn Future<Output = Result<(), Cancelled>> + Send>>;

/// One page task: fetch with a timeout, record, spawn tasks for the new links.
async fn crawl_page(
    page: usize,
    crawl: Arc<Crawl>,
    s: ScopeHandle<Cancelled>,
) -> Result<(), Cancelled> {
    let _running = Running::enter(&crawl);
    let ms = || crawl.start.elapsed().as_millis();
    let fetched = CancelScope::new()
        .name(format!("fetch /p/{page}"))
        .timeout(TIMEOUT)
        .run(fetch(crawl.addr, page))
        .await;
    let at = crawl.start.elapsed();
    let outcome = match fetched {
        Ok(Ok(links)) => {
            let new: Vec<_> = {
                let mut visited = crawl.visited.lock().unwrap();
                links
                    .iter()
                    .copied()
                    .filter(|&l| visited.insert(l))
                    .collect()
            };
            println!(
                "  [{:>4} ms] /p/{page:<2} fetched ({} running): links {links:?}, new {new:?}",
                ms(),
                crawl.running.load(Ordering::SeqCst)
            );
            for l in new {
                // Waits for a slot of the limit before its first poll.
                spawn_page(l, &crawl, &s);
            }
            if crawl.fetched.fetch_add(1, Ordering::SeqCst) + 1 == MID_AFTER {
                if let Some(tx) = crawl.mid.lock().unwrap().take() {
                    let _ = tx.send(());
                }
            }
            Outcome::Fetched { links, at }
        }
        Err(c) if c.is_deadline() => {
            println!(
                "  [{:>4} ms] /p/{page:<2} timed out after {} ms; its connection is closed",
                ms(),
                TIMEOUT.as_millis()
            );
            Outcome::TimedOut { at }
        }
        // The crawl itself was cancelled: not this page's outcome.
        Err(c) => return Err(c),
        Ok(Err(e)) => {
            println!("  [{:>4} ms] /p/{page:<2} failed: {e}", ms());
            Outcome::Failed {
                error: e.to_string(),
            }
        }
    };
    crawl.outcomes.lock().unwrap().insert(page, outcome);
    Ok(())
}

#[derive(Debug)]
pub struct Report {
    pub site: Vec<Page>,
    pub outcomes: BTreeMap<usize, Outcome>,
    pub fetched: Vec<usize>,
    pub timed_out: Vec<usize>,
    pub failed: Vec<usize>,
    pub never_reached: Vec<usize>,
    /// The most page tasks seen running at once (the gauge).
    pub max_running: usize,
    /// `snapshot()` of the whole program mid-crawl.
    pub tree_mid: String,
    /// Mid-crawl, in the `crawl` scope: fetch cancel scopes running, and live page tasks
    /// (running or waiting for a slot).
    pub mid_fetching: usize,
    pub mid_tasks: usize,
    pub crawl_result: Result<(), Cancelled>,
    pub elapsed: Duration,
    /// Page tasks running, and live children in the crawl scope's tree, after it returned.
    pub running_after: usize,
    pub tasks_left: usize,
    /// Pages whose connection the server saw the client close before it answered.
    pub server_saw_give_up: Vec<usize>,
}

/// Starts the site's server and crawls it from the root.
pub async fn run() -> io::Result<Report> {
    Scope::builder()
        .name("crawl demo")
        .run(async |s| {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            let site = site();
            let gave_up = Arc::new(Mutex::new(Vec::new()));
            // Cancelled (ScopeDone) and awaited once the crawl is done.
            s.spawn_background({
                let (site, gave_up) = (Arc::new(site.clone()), gave_up.clone());
                async move {
                    serve(listener, site, gave_up).await;
                    Ok(())
                }
            });
            println!(
                "crawl: {PAGES} pages on {addr}, at most {LIMIT} at once, {} ms per page",
                TIMEOUT.as_millis()
            );

            let (mid_tx, mid_rx) = oneshot::channel();
            let crawl = Arc::new(Crawl {
                addr,
                start: Instant::now(),
                visited: Mutex::new(HashSet::from([0])),
                outcomes: Mutex::default(),
                running: AtomicUsize::new(0),
                max_running: AtomicUsize::new(0),
                fetched: AtomicUsize::new(0),
                mid: Mutex::new(Some(mid_tx)),
            });
            let mut handle = None;
            let mut tree_mid = String::new();
            let (mut mid_fetching, mut mid_tasks) = (0, 0);
            let crawl_result = Scope::builder()
                .name("crawl")
                .limit(LIMIT)
                .run(async |c| {
                    let h = c.handle();
                    handle = Some(h.clone());
                    spawn_page(0, &crawl, &h);
                    // The body runs beside the page tasks: once a few pages are in, look at
                    // the tree.
                    if mid_rx.await.is_ok() {
                        let tree = snapshot();
                        if let Some(i) = tree.nodes().iter().position(|n| {
                            n.name.as_deref() == Some("crawl") && n.kind == NodeKind::Scope
                        }) {
                            mid_fetching = tree
                                .children(i)
                                .filter(|&k| {
                                    tree.nodes()[k]
                                        .name
                                        .as_deref()
                                        .is_some_and(|n| n.starts_with("fetch "))
                                })
                                .count();
                            mid_tasks = tree.nodes()[i].live_children;
                        }
                        tree_mid = tree.to_string();
                        println!(
                            "\n  [{:>4} ms] the live tree mid-crawl: {mid_tasks} page tasks, \
                         {mid_fetching} of them fetching (limit {LIMIT}); the bare tasks wait \
                         for a slot (or are just finishing):\n{}",
                            crawl.start.elapsed().as_millis(),
                            tree_mid
                                .lines()
                                .map(|l| format!("    {l}\n"))
                                .collect::<String>()
                        );
                    }
                    Ok(())
                })
                .await;
            let elapsed = crawl.start.elapsed();
            let running_after = crawl.running.load(Ordering::SeqCst);
            let tasks_left = handle
                .map(|h| h.snapshot().nodes().iter().map(|n| n.live_children).sum())
                .unwrap_or(0);

            // The server saw the hanging page's client give up (it closed the connection).
            let timed_out_count = crawl
                .outcomes
                .lock()
                .unwrap()
                .values()
                .filter(|o| matches!(o, Outcome::TimedOut { .. }))
                .count();
            for _ in 0..200 {
                if gave_up.lock().unwrap().len() >= timed_out_count {
                    break;
                }
                sleep(Duration::from_millis(10)).await;
            }

            let outcomes = crawl.outcomes.lock().unwrap().clone();
            let pick = |f: fn(&Outcome) -> bool| -> Vec<usize> {
                outcomes
                    .iter()
                    .filter(|(_, o)| f(o))
                    .map(|(&p, _)| p)
                    .collect()
            };
            let fetched = pick(|o| matches!(o, Outcome::Fetched { .. }));
            let timed_out = pick(|o| matches!(o, Outcome::TimedOut { .. }));
            let failed = pick(|o| matches!(o, Outcome::Failed { .. }));
            let never_reached = (0..PAGES).filter(|p| !outcomes.contains_key(p)).collect();
            let mut server_saw_give_up = gave_up.lock().unwrap().clone();
            server_saw_give_up.sort();
            Ok(Report {
                site,
                outcomes,
                fetched,
                timed_out,
                failed,
                never_reached,
                max_running: crawl.max_running.load(Ordering::SeqCst),
                tree_mid,
                mid_fetching,
                mid_tasks,
                crawl_result,
                elapsed,
                running_after,
                tasks_left,
                server_saw_give_up,
            })
        })
        .await
}

impl Report {
    pub fn print(&self) {
        println!(
            "\nsummary: crawl returned {:?} after {} ms",
            self.crawl_result,
            self.elapsed.as_millis()
        );
        println!(
            "  fetched       {:>2}: {:?}",
            self.fetched.len(),
            self.fetched
        );
        println!(
            "  timed out     {:>2}: {:?}",
            self.timed_out.len(),
            self.timed_out
        );
        if !self.failed.is_empty() {
            println!(
                "  failed        {:>2}: {:?}",
                self.failed.len(),
                self.failed
            );
        }
        println!(
            "  never reached {:>2}: {:?}",
            self.never_reached.len(),
            self.never_reached
        );
        println!(
            "  max page tasks running at once: {} (limit {LIMIT})",
            self.max_running
        );
        println!(
            "  after the crawl scope returned: page tasks running {}, tasks left in its tree {}",
            self.running_after, self.tasks_left
        );
        println!(
            "  the server saw the client give up on: {:?}",
            self.server_saw_give_up
        );
    }
}

#[tokio::main]
async fn main() -> io::Result<()> {
    let report = run().await?;
    report.print();
    Ok(())
}
