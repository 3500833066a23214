//! Scale: scenarios R12 (a million short children in one scope, memory of finished children
//! freed) and R13 (a 10,000-deep chain of nested spawned scopes cancelled at the root on a
//! small stack), defined in `docs/scenarios.md`.
//!
//! Memory is measured with a counting global allocator (live heap bytes of this test
//! binary), so a per-child leak shows up as growth proportional to the number of children.
//! Beside them, what a scope's child costs the allocator is compared with a raw task: the
//! heap a parked child holds, and the `realloc` calls of spawning many. The tests take one
//! lock so that none allocates while another measures.

mod common;

use std::future::{Future, pending};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use common::*;

/// The bound of one whole scale run (a million children, a 10,000-level chain): far above
/// its release run time, below the nextest budget of this binary (`.config/nextest.toml`),
/// so a lost wake-up fails with what did not finish instead of being killed.
const SCALE_HANG: Duration = Duration::from_secs(120);
use taskscope::*;
use tokio::task::yield_now;

#[path = "common/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::{live_bytes, reallocs};

/// Serialises the tests of this file (they measure the process-wide heap).
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------------------
// R12: a million short children in one scope
// ---------------------------------------------------------------------------------------

/// 1,000,000 also in debug builds (a few seconds here).
const R12_CHILDREN: usize = 1_000_000;
/// Children are spawned in waves of this size; the body waits for each wave.
const R12_WAVE: usize = 10_000;
/// Waves before heap samples count (runtime queues, slabs and vectors reach their working
/// size).
const R12_WARMUP_WAVES: usize = 4;
/// Heap samples (one per awaited wave) compared at each end of the run.
const R12_WINDOW: usize = 8;
/// Allowed growth of the settled heap between the start and the end of the run. Samples are
/// noisy (tasks of the last wave still being released), so the minimum over a window of
/// samples is compared: a per-child leak raises the minimum too, by at least 8 bytes for
/// each of the (at least 660,000) children spawned in between (over 5 MB). Buffers that grow to the
/// largest wave seen (waker slabs, abort-handle registries, runtime queues) stay below
/// this: observed up to ~0.7 MB in release builds, where a whole wave is live at once.
const R12_GROWTH_LIMIT: isize = 2 * 1024 * 1024;

#[test]
fn r12_million_short_children_complete_and_memory_is_freed() {
    let _serial = serial();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let census = Census::new();
    let completed = Arc::new(AtomicUsize::new(0));
    let waves = R12_CHILDREN / R12_WAVE;
    let mut samples: Vec<isize> = Vec::with_capacity(waves);
    let mut peak_alive = 0usize;
    let start = Instant::now();
    let r: Result<u64, Cancelled> = rt.block_on(
        scope(async |s| {
            let mut handles = Vec::with_capacity(R12_WAVE);
            let mut sum = 0u64;
            for wave in 0..waves {
                for i in 0..R12_WAVE {
                    let n = (wave * R12_WAVE + i) as u64;
                    let (g, done) = (census.guard(), completed.clone());
                    let h = s.spawn(async move {
                        yield_now().await; // parks once
                        // The guard first: the body counts a wave whose handles were dropped as
                        // gone once `completed` reaches its end (counting first raced that
                        // check, seen in release builds).
                        drop(g);
                        done.fetch_add(1, SeqCst);
                        Ok(n)
                    });
                    handles.push(h);
                }
                peak_alive = peak_alive.max(census.alive());
                if wave % 2 == 0 {
                    for h in handles.drain(..) {
                        sum += h.await?;
                    }
                } else {
                    // Handles dropped: the children are not detached; wait for them by count.
                    handles.clear();
                    let target = (wave + 1) * R12_WAVE;
                    while completed.load(SeqCst) < target {
                        yield_now().await;
                    }
                    sum += (wave * R12_WAVE..target).map(|n| n as u64).sum::<u64>();
                }
                assert_eq!(
                    census.alive(),
                    0,
                    "wave {wave}: every child of the wave is gone"
                );
                // Sample after awaited waves (their tasks are completed and mostly released).
                if wave % 2 == 0 && wave >= R12_WARMUP_WAVES {
                    samples.push(live_bytes());
                }
            }
            Ok(sum)
        })
        .within(
            SCALE_HANG,
            "R12: the scope's return after a million children",
        ),
    );
    let elapsed = start.elapsed();
    let n = R12_CHILDREN as u64;
    assert_eq!(r, Ok(n * (n - 1) / 2), "every child's value arrived");
    assert_eq!(completed.load(SeqCst), R12_CHILDREN);
    assert_eq!(census.made(), R12_CHILDREN);
    assert_eq!(census.alive(), 0);
    assert!(
        peak_alive <= R12_WAVE,
        "live children bounded by the wave size: {peak_alive}"
    );
    assert!(samples.len() >= 2 * R12_WINDOW);
    let early = *samples[..R12_WINDOW].iter().min().unwrap();
    let late = *samples[samples.len() - R12_WINDOW..].iter().min().unwrap();
    let max = *samples.iter().max().unwrap();
    eprintln!(
        "R12: {R12_CHILDREN} children in {elapsed:?} (debug_assertions: {}); settled heap \
         {early} B early, {late} B late (max sample {max} B); peak live children {peak_alive}",
        cfg!(debug_assertions)
    );
    // Samples are taken at even waves from the warm-up on: the windows are this far apart.
    let between = (2 * (samples.len() - R12_WINDOW) - 2 * (R12_WINDOW - 1)) * R12_WAVE;
    assert!(
        late - early < R12_GROWTH_LIMIT,
        "the settled heap grew by {} bytes while at least {between} children ran and \
         finished: memory of finished children is not freed",
        late - early,
    );
}

/// Live children spawned into one scope: each spawn costs the same however many are alive
/// (the scope's list of children is swept of finished ones only when it has doubled).
const MANY_LIVE: usize = 100_000;
/// Far above the time `MANY_LIVE` spawns take in a debug build on 2 cores (under a second);
/// a spawn whose cost grows with the live children (quadratic in all) takes minutes.
const MANY_LIVE_BOUND: Duration = Duration::from_secs(30);

#[test]
fn spawning_among_many_live_children_costs_the_same_each_time() {
    let _serial = serial();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let census = Census::new();
    let r: Result<(), Cancelled> = rt.block_on(
        scope(async |s| {
            let start = Instant::now();
            for i in 0..MANY_LIVE {
                let g = census.guard();
                s.spawn(async move {
                    let _g = g;
                    pending::<()>().await;
                    Ok(())
                });
                if i % 1024 == 0 {
                    assert!(
                        start.elapsed() < MANY_LIVE_BOUND,
                        "{i} spawns among live children took {:?}",
                        start.elapsed()
                    );
                }
            }
            eprintln!("{MANY_LIVE} live children spawned in {:?}", start.elapsed());
            assert_eq!(s.running_children(), MANY_LIVE);
            s.cancel_children();
            Ok(())
        })
        .within(
            SCALE_HANG,
            "the scope's return once its many live children were cancelled",
        ),
    );
    assert_eq!(r, Ok(()));
    assert_eq!(census.alive(), 0);
}

// ---------------------------------------------------------------------------------------
// The heap of a parked child against a raw task's
// ---------------------------------------------------------------------------------------

/// Children parked per measurement of the heap one of them holds.
const PARKED: usize = 10_000;

/// Children of [`Parked`] polled at least once.
static ARRIVED: AtomicUsize = AtomicUsize::new(0);
/// Children of [`Parked`] not yet dropped.
static LIVE: AtomicUsize = AtomicUsize::new(0);

/// A small child, 16 bytes with no niche in its layout (an enum wrapped around it, such as
/// `FutureExt::map`'s, needs a word of its own for its state): counts itself in on its first
/// poll, then parks for good.
struct Parked {
    polled: u64,
    _state: u64,
}

impl Parked {
    fn new() -> Self {
        LIVE.fetch_add(1, SeqCst);
        Parked {
            polled: 0,
            _state: 0,
        }
    }
}

impl Future for Parked {
    type Output = Result<(), Cancelled>;

    fn poll(
        mut self: Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        if self.polled == 0 {
            self.polled = 1;
            ARRIVED.fetch_add(1, SeqCst);
        }
        std::task::Poll::Pending
    }
}

impl Drop for Parked {
    fn drop(&mut self) {
        LIVE.fetch_sub(1, SeqCst);
    }
}

/// Yields until the `PARKED` children of this round were polled once and parked.
async fn until_parked() {
    while ARRIVED.load(SeqCst) < PARKED {
        yield_now().await;
    }
}

/// Yields until every child of this round was dropped.
async fn until_gone() {
    while LIVE.load(SeqCst) > 0 {
        yield_now().await;
    }
}

/// Heap bytes per parked child spawned with `tokio::spawn` (its `AbortHandle` kept in a
/// `Vec` allocated before the measurement), then aborted.
async fn raw_parked_bytes() -> isize {
    ARRIVED.store(0, SeqCst);
    let mut aborts = Vec::with_capacity(PARKED);
    let before = live_bytes();
    for _ in 0..PARKED {
        aborts.push(tokio::spawn(Parked::new()).abort_handle());
    }
    until_parked().await;
    let per_child = (live_bytes() - before) / PARKED as isize;
    aborts.iter().for_each(tokio::task::AbortHandle::abort);
    until_gone().await;
    per_child
}

/// Heap bytes per parked child spawned into a scope (handles dropped), then cancelled.
async fn scope_parked_bytes() -> isize {
    ARRIVED.store(0, SeqCst);
    let r: Result<isize, Cancelled> = scope(async |s| {
        let before = live_bytes();
        for _ in 0..PARKED {
            drop(s.spawn(Parked::new()));
        }
        until_parked().await;
        let per_child = (live_bytes() - before) / PARKED as isize;
        s.cancel_children();
        Ok(per_child)
    })
    .await;
    assert_eq!(
        LIVE.load(SeqCst),
        0,
        "every child is gone when the scope returns"
    );
    r.expect("cancelling the children does not fail the scope")
}

/// Runs `rounds` on a current-thread runtime (counts of bytes and calls do not depend on
/// the scheduler), bounded by `HANG`: a lost child fails with `what` in seconds instead of
/// hanging.
#[track_caller]
fn on_one_thread<T>(what: &str, rounds: impl Future<Output = T>) -> T {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(rounds.within(HANG, what))
}

/// Tokio allocates a task as one cell aligned to 128 bytes: a child's wrapper one word larger
/// than the scope's pointer moves a 16-byte child into the 256-byte cell, twice the heap of
/// a raw task. A scope's child holds the raw task's cell and its place in the scope's
/// registry.
#[test]
fn a_small_parked_child_holds_about_the_heap_of_a_raw_task() {
    let _serial = serial();
    let (raw, ours) = on_one_thread("the rounds of parked children", async {
        // The first round grows the runtime's queues to their working size.
        raw_parked_bytes().await;
        (raw_parked_bytes().await, scope_parked_bytes().await)
    });
    eprintln!("heap per parked child: tokio::spawn {raw} bytes, a scope's child {ours} bytes");
    assert!(
        ours <= raw + 64,
        "a scope's parked child holds {ours} bytes of heap, a raw task {raw}: \
         more than its registry entry above the raw task's cell"
    );
}

/// Children spawned by each round of the realloc test: the registry of a scope this wide
/// grows five times from its first allocation.
const FAN: usize = 100;

/// `realloc` calls made while `FAN` children are spawned with `tokio::spawn` (their
/// `AbortHandle`s kept in a `Vec` allocated before), then awaited.
async fn raw_fan_reallocs() -> usize {
    let mut handles = Vec::with_capacity(FAN);
    let before = reallocs();
    for _ in 0..FAN {
        handles.push(tokio::spawn(async { 1u64 }));
    }
    let spawned = reallocs() - before;
    for h in handles {
        h.await.expect("the task ends well");
    }
    spawned
}

/// `realloc` calls made while `FAN` children are spawned into a scope (the handles
/// dropped), then awaited by the scope's end.
async fn scope_fan_reallocs() -> usize {
    let r: Result<usize, Cancelled> = scope(async |s| {
        let before = reallocs();
        for _ in 0..FAN {
            drop(s.spawn(async { Ok(1u64) }));
        }
        Ok(reallocs() - before)
    })
    .await;
    r.expect("the children end well")
}

/// A scope's registry of its children grows by fresh allocations, not `realloc`: glibc
/// serves `realloc` past its thread cache, about 2,400 instructions a call, five calls for a
/// scope of 100 children (`benches/instructions.rs`, `scope_fan`). Counted, not timed: a
/// scope spawning `FAN` children makes no more `realloc` calls than `FAN` raw spawns (the
/// runtime's own queues, grown by a first round).
#[test]
fn spawning_many_children_makes_no_more_reallocs_than_tokio_spawn() {
    let _serial = serial();
    let (raw, ours) = on_one_thread("the rounds of spawned children", async {
        raw_fan_reallocs().await;
        scope_fan_reallocs().await;
        (raw_fan_reallocs().await, scope_fan_reallocs().await)
    });
    eprintln!("reallocs spawning {FAN} children: tokio::spawn {raw}, a scope {ours}");
    assert!(
        ours <= raw,
        "spawning {FAN} children into a scope made {ours} realloc calls, {raw} for raw spawns: \
         the scope's registry grows by realloc"
    );
}

// ---------------------------------------------------------------------------------------
// R13: a chain of 10,000 nested spawned scopes, cancelled at the root, on a small stack
// ---------------------------------------------------------------------------------------

const R13_STACK: usize = 256 * 1024;

type Level = Pin<Box<dyn Future<Output = Result<(), Cancelled>> + Send>>;

/// Level `depth` of the chain: a child whose body opens a scope that spawns the next level.
fn level(depth: usize, total: usize, census: Census, deepest: Arc<tokio::sync::Notify>) -> Level {
    Box::pin(async move {
        let _g = census.guard();
        scope(async move |s| {
            if depth < total {
                s.spawn(level(depth + 1, total, census, deepest));
            } else {
                deepest.notify_one();
            }
            pending::<()>().await;
            Ok(())
        })
        .await
    })
}

/// Builds the chain, cancels it at the root, and returns (build time, teardown time).
fn r13_chain(total: usize) -> (Duration, Duration) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .thread_stack_size(R13_STACK)
        .enable_all()
        .build()
        .unwrap();
    let census = Census::new();
    let c = census.clone();
    let root = rt.spawn(async move {
        let deepest = Arc::new(tokio::sync::Notify::new());
        let t0 = Instant::now();
        let mut teardown_start = t0;
        let r: Result<(), Cancelled> = scope(async |s| {
            s.spawn(level(1, total, c.clone(), deepest.clone()));
            deepest.notified().await;
            assert_eq!(c.alive(), total, "the whole chain is up");
            teardown_start = Instant::now();
            s.cancel();
            pending::<()>().await;
            Ok(())
        })
        .await;
        let teardown = teardown_start.elapsed();
        // Right after the root scope returned.
        assert_eq!(
            c.alive(),
            0,
            "every level was torn down before the root returned"
        );
        (r, teardown_start - t0, teardown)
    });
    let (r, build, teardown) = rt
        .block_on(root.within(
            SCALE_HANG,
            format!("R13: the return of the {total}-level chain's root after its cancel"),
        ))
        .expect("the root task did not panic");
    assert_eq!(r.unwrap_err().reason(), CancelReason::Explicit);
    assert_eq!(census.made(), total);
    assert_eq!(census.alive(), 0);
    (build, teardown)
}

#[test]
fn r13_chain_of_10000_nested_scopes_cancelled_at_root_small_stack() {
    let _serial = serial();
    let (build_small, teardown_small) = r13_chain(2_500);
    let (build, teardown) = r13_chain(10_000);
    eprintln!(
        "R13 on {} KiB worker stacks: 2,500 levels built in {build_small:?}, torn down in \
         {teardown_small:?}; 10,000 levels built in {build:?}, torn down in {teardown:?}",
        R13_STACK / 1024
    );
    // Roughly linear: 4x the levels may take 4x the time, not 16x (quadratic). The floor
    // keeps scheduler noise on tiny durations from deciding.
    let limit = (teardown_small * 10).max(Duration::from_millis(500));
    assert!(
        teardown <= limit,
        "teardown is not roughly linear: 2,500 levels {teardown_small:?}, 10,000 levels \
         {teardown:?}"
    );
}
