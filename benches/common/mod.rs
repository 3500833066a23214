//! The parked child the benches use, and the counters that tell when every child parked and
//! when every child is gone; the runtimes (the current-thread one of the `local` bench, the
//! two [`Flavor`]s the other timed benches run on) and the driver task ([`run`]).
#![allow(dead_code)]

use std::future::{Future, pending};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};

use taskscope::Cancelled;
use tokio::runtime::Runtime;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Children per round.
pub const N: usize = 10_000;

/// Children per round of the `local` bench, one divan argument each.
pub const LOCAL_SIZES: [usize; 3] = [100, 1_000, 10_000];

/// Children per round of the `spawn_join` benches, one divan argument each.
pub const SPAWN_SIZES: [usize; 3] = [1, 100, 10_000];

/// A current-thread runtime with the IO and time drivers, built once per benchmark.
pub fn current_thread() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("build the runtime")
}

/// A multi-thread runtime with two worker threads and the IO and time drivers.
pub fn multi_thread() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("build the runtime")
}

/// The runtime a benchmark runs on; divan's `types = [MultiThread, CurrentThread]` runs a
/// benchmark once on each and names the row after the type.
pub trait Flavor {
    fn runtime() -> Runtime;
}

/// [`multi_thread`]: two worker threads.
pub struct MultiThread;

/// [`current_thread`].
pub struct CurrentThread;

impl Flavor for MultiThread {
    fn runtime() -> Runtime {
        multi_thread()
    }
}

impl Flavor for CurrentThread {
    fn runtime() -> Runtime {
        current_thread()
    }
}

/// Runs `fut` as a task of the runtime and waits for it: `block_on` of a spawned driver
/// task. On the multi-thread runtime the timed work then runs on a worker thread, so what it
/// spawns goes through that worker's local run queue, as it does in an application (spawning
/// from the `block_on` thread would push every child through the global injection queue).
/// The driver costs the same single spawn and join in every benchmark.
pub fn run<F>(rt: &Runtime, fut: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    rt.block_on(rt.spawn(fut))
        .expect("the driver task panicked")
}

/// Drop guards alive.
static LIVE: AtomicUsize = AtomicUsize::new(0);
/// Children that reached their parking point in the current round.
static PARKED: AtomicUsize = AtomicUsize::new(0);
/// Arrivals that complete the current round; `N` unless set by [`begin_round_of`].
static TARGET: AtomicUsize = AtomicUsize::new(N);
/// Notified (one stored permit) when `PARKED` reaches `TARGET`.
static ALL_PARKED: Notify = Notify::const_new();

/// The small value every parked child holds; dropping it is part of "gone".
pub struct Guard(u64);

/// A drop guard: alive until the value is dropped, counted by [`live`].
pub fn guard() -> Guard {
    Guard::new()
}

impl Guard {
    fn new() -> Self {
        LIVE.fetch_add(1, Ordering::SeqCst);
        Guard(black_box(0))
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        black_box(self.0);
        LIVE.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Guards alive now.
pub fn live() -> usize {
    LIVE.load(Ordering::SeqCst)
}

/// Starts a round of `N` parked children: no child of an earlier round may be alive.
pub fn begin_round() {
    begin_round_of(N);
}

/// Starts a round that is complete after `target` calls of [`arrive`]: no child of an
/// earlier round may be alive.
pub fn begin_round_of(target: usize) {
    assert_eq!(live(), 0, "a child outlived its round");
    TARGET.store(target, Ordering::SeqCst);
    PARKED.store(0, Ordering::SeqCst);
}

/// Called by each child right before it parks.
pub fn arrive() {
    if PARKED.fetch_add(1, Ordering::AcqRel) + 1 == TARGET.load(Ordering::SeqCst) {
        ALL_PARKED.notify_one();
    }
}

/// Resolves once all children of the round parked.
pub async fn all_parked() {
    ALL_PARKED.notified().await;
}

/// A guard, then parked forever; only an abort or a scope's cancel ends it. `PAD` bytes of
/// state are held across the park, to see how the task cell's size class moves with the
/// size of the child's future.
pub async fn parked<const PAD: usize>() -> Result<usize, Cancelled> {
    let _guard = Guard::new();
    let state = black_box([0u8; PAD]);
    arrive();
    pending::<()>().await;
    black_box(&state);
    Ok(0)
}

/// Parked until `token` is cancelled, as a child of a token-based design is.
pub async fn parked_on<const PAD: usize>(token: CancellationToken) -> Result<usize, Cancelled> {
    let _guard = Guard::new();
    let state = black_box([0u8; PAD]);
    arrive();
    tokio::select! {
        _ = token.cancelled() => {}
        _ = pending::<()>() => {}
    }
    black_box(&state);
    Ok(0)
}
