//! The parked child both benches use, and the counters that tell when every child parked and
//! when every child is gone; the current-thread runtime and child counts of the `local` bench.
#![allow(dead_code)]

use std::future::pending;
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};

use taskscope::Cancelled;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Children per round.
pub const N: usize = 10_000;

/// Children per round of the `local` bench, one divan argument each.
pub const LOCAL_SIZES: [usize; 3] = [100, 1_000, 10_000];

/// A current-thread runtime with the IO and time drivers, built once per benchmark.
pub fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("build the runtime")
}

/// Drop guards alive.
static LIVE: AtomicUsize = AtomicUsize::new(0);
/// Children that reached their parking point in the current round.
static PARKED: AtomicUsize = AtomicUsize::new(0);
/// Notified (one stored permit) when `PARKED` reaches `N`.
static ALL_PARKED: Notify = Notify::const_new();

/// The small value every parked child holds; dropping it is part of "gone".
struct Guard(u64);

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

/// Starts a round: no child of an earlier round may be alive.
pub fn begin_round() {
    assert_eq!(live(), 0, "a child outlived its round");
    PARKED.store(0, Ordering::SeqCst);
}

/// Called by each child right before it parks.
fn arrive() {
    if PARKED.fetch_add(1, Ordering::AcqRel) + 1 == N {
        ALL_PARKED.notify_one();
    }
}

/// Resolves once all `N` children of the round parked.
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
