//! Stress: the scale scenarios and the races at full size, meant for release builds. Each
//! run (ST1–ST4 below, also listed in `docs/scenarios.md`) has a quick variant (runs with
//! the debug test suite) and a full variant marked `#[ignore]`, which `.ci/run` runs in
//! release:
//!
//! ```sh
//! cargo nextest run --release --profile ci --test stress --test scale --run-ignored all
//! # or, without nextest:
//! cargo test --release --test stress --test scale -- --include-ignored
//! ```
//!
//! - ST1: 1,000,000 short children in one limited scope fed through `reserve()`, handles
//!   dropped: the live heap stays bounded (counting allocator, as R12).
//! - ST2: 10,000-deep chains of nested scopes on 256 KiB worker stacks (as R13): cancelled at
//!   the root, and failing at the deepest level (the error travels up every level).
//! - ST3: spawn racing the scope's close and cancel racing completion, 10,000 iterations each
//!   on 4 workers; both outcomes of every race must occur.
//! - ST4: many children failing concurrently (distinct error ids, random yield counts), in
//!   collecting and fail-fast mode, with and without a grace period, with the body failing
//!   or cancelling the scope at a random point: no error is duplicated, none is lost, and
//!   the suppressed count accounts for every error not returned.

mod common;

#[path = "common/counting_alloc.rs"]
mod counting_alloc;

use std::collections::HashSet;
use std::fmt;
use std::future::{Future, pending};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

/// The bound of one whole round of a stress test (a scope with a million children, a chain
/// 10,000 levels deep): far above its release run time, below the nextest budget of this
/// binary (`.config/nextest.toml`), so a lost wake-up fails with the round it hung in.
const ROUND_HANG: Duration = Duration::from_secs(120);
use counting_alloc::live_bytes;
use taskscope::*;
use tokio::task::yield_now;

/// Serialises the tests of this file under `cargo test` (ST1 measures the process-wide heap;
/// the others would disturb it). Under nextest every test has its own process anyway.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn runtime(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .unwrap()
}

/// splitmix64: a deterministic pseudo-random sequence (no dependency; the seeds are printed
/// on failure through the iteration numbers).
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

// ---------------------------------------------------------------------------------------
// ST1: a million short children in one limited scope, bounded memory
// ---------------------------------------------------------------------------------------

/// Children running at once (the scope's limit).
const ST1_LIMIT: usize = 1_000;
/// A heap sample is taken after every this many spawns.
const ST1_SAMPLE_EVERY: usize = 10_000;
/// Samples before the runtime's queues and slabs reach their working size.
const ST1_WARMUP_SAMPLES: usize = 5;
/// Samples whose minimum is compared at each end of the run (as R12: noisy samples).
const ST1_WINDOW: usize = 8;
/// Allowed growth of the settled heap between the start and the end of the run: a leak of
/// 8 bytes per child over the (at least 800,000) children in between is over 6 MB.
const ST1_GROWTH_LIMIT: isize = 2 * 1024 * 1024;
/// Allowed peak above the first settled sample: 1,000 live children and the runtime's
/// buffers. Spawning a million children without back-pressure takes hundreds of MB.
const ST1_PEAK_LIMIT: isize = 32 * 1024 * 1024;

fn st1_million_children_limited(children: usize) {
    let _serial = serial();
    let rt = runtime(4);
    let census = Census::new();
    let completed = Arc::new(AtomicUsize::new(0));
    let gauge = Gauge::default();
    let mut samples: Vec<isize> = Vec::with_capacity(children / ST1_SAMPLE_EVERY + 1);
    let start = Instant::now();
    let r: Result<(), Cancelled> = rt.block_on(
        Scope::builder()
            .name("st1")
            .limit(ST1_LIMIT)
            .run(async |s| {
                for i in 0..children {
                    let permit = s.reserve().await;
                    let (g, done, gauge) = (census.guard(), completed.clone(), gauge.clone());
                    gauge.enter();
                    // The handle is dropped: the child is not detached, the scope awaits it.
                    drop(permit.spawn(async move {
                        yield_now().await; // parks once
                        done.fetch_add(1, SeqCst);
                        gauge.leave();
                        drop(g);
                        Ok(())
                    }));
                    if (i + 1) % ST1_SAMPLE_EVERY == 0 {
                        samples.push(live_bytes());
                    }
                }
                Ok(())
            })
            .within(
                ROUND_HANG,
                "ST1: the limited scope's return after its children",
            ),
    );
    let elapsed = start.elapsed();
    assert_eq!(r, Ok(()));
    assert_eq!(completed.load(SeqCst), children, "every child ran");
    assert_eq!(census.made(), children);
    assert_eq!(
        census.alive(),
        0,
        "every child was dropped before the scope returned"
    );
    assert!(
        gauge.max() <= ST1_LIMIT,
        "the limit bounds the live children: {} at once",
        gauge.max()
    );
    let samples = &samples[ST1_WARMUP_SAMPLES.min(samples.len())..];
    assert!(samples.len() >= 2 * ST1_WINDOW, "{} samples", samples.len());
    let first = samples[0];
    let early = *samples[..ST1_WINDOW].iter().min().unwrap();
    let late = *samples[samples.len() - ST1_WINDOW..].iter().min().unwrap();
    let max = *samples.iter().max().unwrap();
    eprintln!(
        "ST1: {children} children (limit {ST1_LIMIT}) in {elapsed:?} (debug_assertions: {}); \
         live heap {first} B first, settled {early} B early, {late} B late, max {max} B; \
         peak live children {}",
        cfg!(debug_assertions),
        gauge.max()
    );
    assert!(
        late - early < ST1_GROWTH_LIMIT,
        "the settled heap grew by {} bytes over {children} children: memory of finished \
         children is not freed",
        late - early
    );
    assert!(
        max - first < ST1_PEAK_LIMIT,
        "the live heap rose {} bytes above its first sample with at most {ST1_LIMIT} children \
         alive: memory is not bounded by the limit",
        max - first
    );
}

#[test]
fn st1_million_children_limited_scope_bounded_memory_quick() {
    st1_million_children_limited(300_000);
}

#[test]
#[ignore = "release stress: cargo test --release --test stress -- --include-ignored"]
fn st1_million_children_limited_scope_bounded_memory_full() {
    st1_million_children_limited(1_000_000);
}

// ---------------------------------------------------------------------------------------
// ST2: 10,000-deep chains of nested scopes on a small stack
// ---------------------------------------------------------------------------------------

const ST2_STACK: usize = 256 * 1024;

fn small_stack_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .thread_stack_size(ST2_STACK)
        .enable_all()
        .build()
        .unwrap()
}

type Level<E> = Pin<Box<dyn Future<Output = Result<(), E>> + Send>>;

/// Level `depth` of a chain cancelled at the root: a child whose body opens a scope that
/// spawns the next level, then waits forever.
fn cancel_level(
    depth: usize,
    total: usize,
    census: Census,
    deepest: Arc<tokio::sync::Notify>,
) -> Level<Cancelled> {
    Box::pin(async move {
        let _g = census.guard();
        scope(async move |s| {
            if depth < total {
                s.spawn(cancel_level(depth + 1, total, census, deepest));
            } else {
                deepest.notify_one();
            }
            pending::<()>().await;
            Ok(())
        })
        .await
    })
}

/// Level `depth` of a chain whose deepest scope fails: every level's scope gets the error
/// from its only child, cancels its own (waiting) body and returns the error upwards.
fn failing_level(depth: usize, total: usize, census: Census) -> Level<Error> {
    Box::pin(async move {
        let _g = census.guard();
        scope(async move |s| {
            if depth < total {
                s.spawn(failing_level(depth + 1, total, census));
                pending::<()>().await;
                Ok(())
            } else {
                yield_now().await;
                Err(Error::Boom(depth as u32))
            }
        })
        .await
    })
}

fn st2_chains(total: usize, rounds: usize) {
    let _serial = serial();
    for round in 0..rounds {
        // Cancelled at the root.
        let rt = small_stack_runtime();
        let census = Census::new();
        let c = census.clone();
        let t0 = Instant::now();
        let r = rt
            .block_on(rt.spawn(async move {
                let deepest = Arc::new(tokio::sync::Notify::new());
                let r: Result<(), Cancelled> = scope(async |s| {
                    s.spawn(cancel_level(1, total, c.clone(), deepest.clone()));
                    deepest.notified().await;
                    assert_eq!(c.alive(), total, "the whole chain is up");
                    s.cancel();
                    pending::<()>().await;
                    Ok(())
                })
                .within(
                    ROUND_HANG,
                    format!(
                        "ST2 round {round}: the root's return after its cancel tore the chain down"
                    ),
                )
                .await;
                assert_eq!(
                    c.alive(),
                    0,
                    "every level was torn down before the root returned"
                );
                r
            }))
            .expect("the root task did not panic");
        assert_eq!(r.unwrap_err().reason(), CancelReason::Explicit);
        assert_eq!(census.made(), total);
        assert_eq!(census.alive(), 0);
        let cancelled_in = t0.elapsed();

        // Failing at the deepest level.
        let census = Census::new();
        let c = census.clone();
        let t0 = Instant::now();
        let r = rt
            .block_on(rt.spawn(async move {
                let r: Result<(), Error> = scope(async |s| {
                    s.spawn(failing_level(1, total, c.clone()));
                    pending::<()>().await;
                    Ok(())
                })
                .within(
                    ROUND_HANG,
                    format!("ST2 round {round}: the root's return of the deepest error"),
                )
                .await;
                assert_eq!(
                    c.alive(),
                    0,
                    "every level was gone before the root returned"
                );
                r
            }))
            .expect("the root task did not panic");
        assert_eq!(
            r,
            Err(Error::Boom(total as u32)),
            "round {round}: the deepest error travelled up every level"
        );
        assert_eq!(census.made(), total);
        assert_eq!(census.alive(), 0);
        eprintln!(
            "ST2 round {round}: {total} levels on {} KiB stacks: built and cancelled at the \
             root in {cancelled_in:?}, built and failed at the deepest level in {:?}",
            ST2_STACK / 1024,
            t0.elapsed()
        );
    }
}

#[test]
fn st2_deep_chains_cancelled_and_failing_small_stack_quick() {
    st2_chains(1_000, 1);
}

#[test]
#[ignore = "release stress: cargo test --release --test stress -- --include-ignored"]
fn st2_deep_chains_cancelled_and_failing_small_stack_full() {
    st2_chains(10_000, 3);
}

// ---------------------------------------------------------------------------------------
// ST3: races on 4 workers, both outcomes required
// ---------------------------------------------------------------------------------------

/// Another task spawns through a handle while the scope's last child finishes (the R7 race,
/// shared in `common`): accepted and awaited, or refused with `Closed`; both must occur.
fn st3_spawn_vs_close(iterations: usize) {
    let _serial = serial();
    runtime(4).block_on(common::spawn_vs_close_race(iterations, "ST3"));
}

/// Yields until `flag` is set.
async fn until_set(flag: &AtomicBool) {
    while !flag.load(SeqCst) {
        yield_now().await;
    }
}

/// A child's value: owns a census guard, so it is counted when dropped.
struct Value(#[allow(dead_code)] Guard, usize);

/// `TaskHandle::cancel` (a) and a sibling cancelling the scope (b) race the child's
/// completion: the value is delivered or dropped, exactly once, before the scope returns.
fn st3_cancel_vs_complete(iterations: usize) {
    let _serial = serial();
    let rt = runtime(4);
    rt.block_on(async {
        let (mut delivered, mut dropped) = (0usize, 0usize);
        // Side A: the child's completion (delivered when it comes first).
        let mut balance = Balance::default();
        for i in 0..iterations {
            let (child_spin, cancel_spin) = (balance.delay_a(), balance.delay_b());
            let census = Census::new();
            let r: Result<Option<Value>, Cancelled> = scope(async |s| {
                let g = census.guard();
                let started = Arc::new(AtomicBool::new(false));
                let st = started.clone();
                let h = s.spawn(async move {
                    st.store(true, SeqCst);
                    yields(i % 3).await;
                    spin(child_spin);
                    Ok(Value(g, i))
                });
                // The race starts once the child runs (a worker may take a while to pick it
                // up; counting yields from the spawn, as R9 does, delivers in as few as 4 of
                // 1,000 iterations).
                until_set(&started).await;
                yields(i % 4).await;
                spin(cancel_spin);
                h.cancel();
                Ok(h.await.ok())
            })
            .within(
                HANG,
                format!("ST3 iteration {i}: the scope's return after a cancel raced its child"),
            )
            .await;
            let r = r.expect("cancelling a child alone does not fail the scope");
            balance.record(r.is_some());
            match r {
                Some(v) => {
                    assert_eq!(v.1, i);
                    assert_eq!(
                        census.alive(),
                        1,
                        "iteration {i}: the delivered value is alive"
                    );
                    delivered += 1;
                }
                None => {
                    assert_eq!(
                        census.alive(),
                        0,
                        "iteration {i}: the undelivered value is gone"
                    );
                    dropped += 1;
                }
            }
            assert_eq!(census.made(), 1);
            assert_eq!(census.dropped(), 1, "iteration {i}: dropped exactly once");
        }
        eprintln!(
            "ST3 (a) TaskHandle::cancel vs completion: {delivered} delivered, {dropped} dropped"
        );
        assert_eq!(delivered + dropped, iterations);
        assert!(
            delivered > 0 && dropped > 0,
            "(a) both outcomes of the race occurred: {delivered} delivered, {dropped} dropped"
        );

        let (mut delivered, mut dropped) = (0usize, 0usize);
        let mut balance = Balance::default();
        for i in 0..iterations {
            let (child_spin, cancel_spin) = (balance.delay_a(), balance.delay_b());
            let census = Census::new();
            let r: Result<Option<Value>, Cancelled> = scope(async |s| {
                let g = census.guard();
                let started = Arc::new(AtomicBool::new(false));
                let st = started.clone();
                let h = s.spawn(async move {
                    st.store(true, SeqCst);
                    yields(i % 3).await;
                    spin(child_spin);
                    Ok(Value(g, i))
                });
                let sh = s.handle();
                s.spawn(async move {
                    until_set(&started).await;
                    // Wider than the child's delay: the body must also be woken with the
                    // value before the cancel for "delivered".
                    yields(i % 8).await;
                    spin(cancel_spin);
                    sh.cancel();
                    Ok(())
                });
                Ok(h.await.ok())
            })
            .within(
                HANG,
                format!(
                    "ST3 iteration {i}: the scope's return after a sibling's cancel raced its child"
                ),
            )
            .await;
            let delivered_now = matches!(r, Ok(Some(_)));
            balance.record(delivered_now);
            let alive_at_return = census.alive();
            if let Ok(Some(v)) = &r {
                assert_eq!(v.1, i);
            }
            drop(r);
            assert_eq!(
                alive_at_return,
                usize::from(delivered_now),
                "iteration {i}: when the scope returned, the value was delivered or dropped"
            );
            if delivered_now {
                delivered += 1;
            } else {
                dropped += 1;
            }
            assert_eq!(census.made(), 1);
            assert_eq!(census.dropped(), 1, "iteration {i}: dropped exactly once");
        }
        eprintln!("ST3 (b) scope cancel vs completion: {delivered} delivered, {dropped} dropped");
        assert_eq!(delivered + dropped, iterations);
        assert!(
            delivered > 0 && dropped > 0,
            "(b) both outcomes of the race occurred: {delivered} delivered, {dropped} dropped"
        );
    });
}

#[test]
fn st3_spawn_vs_close_both_outcomes_quick() {
    st3_spawn_vs_close(1_000);
}

#[test]
#[ignore = "release stress: cargo test --release --test stress -- --include-ignored"]
fn st3_spawn_vs_close_both_outcomes_full() {
    st3_spawn_vs_close(10_000);
}

#[test]
fn st3_cancel_vs_complete_both_outcomes_quick() {
    st3_cancel_vs_complete(1_000);
}

#[test]
#[ignore = "release stress: cargo test --release --test stress -- --include-ignored"]
fn st3_cancel_vs_complete_both_outcomes_full() {
    st3_cancel_vs_complete(10_000);
}

// ---------------------------------------------------------------------------------------
// ST4: concurrent errors (the Kotlin "exceptions aggregation" stress)
// ---------------------------------------------------------------------------------------

/// One failure with its id; the guard counts the error values made and dropped, so an error
/// neither returned nor dropped (lost) or dropped twice shows up in the census.
struct Failure {
    id: u32,
    _guard: Guard,
}

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Failure({})", self.id)
    }
}

#[derive(Debug)]
enum StressError {
    Failed(Failure),
    Cancelled {
        reason: CancelReason,
        suppressed: u32,
    },
}

impl From<Cancelled> for StressError {
    fn from(c: Cancelled) -> Self {
        StressError::Cancelled {
            reason: c.reason(),
            suppressed: c.suppressed_errors(),
        }
    }
}

/// The body's own error id (children have 0..children).
const BODY_ID: u32 = u32::MAX;

#[derive(Clone, Copy, Debug)]
enum BodyDoes {
    /// Returns `Ok(())` at once; the scope waits for the children.
    Returns,
    /// Fails with `BODY_ID` after some yields (unless it was dropped before).
    Fails(usize),
    /// Cancels the scope (`Explicit`) after some yields, then returns `Ok(())`: the scope
    /// keeps the body's value (fail-fast) unless a child failed first.
    Cancels(usize),
    /// Cancels the scope after some yields and waits to be dropped (no grace period only):
    /// the scope returns `Cancelled`, with every later error counted as suppressed.
    CancelsAndWaits(usize),
}

#[derive(Default, Debug)]
struct ST4Totals {
    rounds: usize,
    errors_made: usize,
    errors_returned: usize,
    suppressed: usize,
    cancelled_first: usize,
    ok: usize,
}

/// What a round of ST4 counted besides the errors' census.
#[derive(Clone, Default)]
struct ST4Counts {
    /// Children that were polled at all: a child spawned after the scope was cancelled is
    /// dropped without running (R8), every other one fails unless it is dropped first.
    started: Counter,
}

/// Spawns `children` children that each fail with their own id after a random number of
/// yields, and runs the body's part; `s` is a collecting or a fail-fast scope. With
/// `barrier`, the children wait until all of them are spawned, so they fail together.
async fn st4_fan<E: From<Cancelled> + Send + 'static>(
    s: &Scope<'_, E>,
    children: usize,
    seed: u64,
    body: BodyDoes,
    census: &Census,
    counts: &ST4Counts,
    fail: fn(Failure) -> E,
) -> Result<(), E> {
    let barrier = mix(seed ^ 0xBA22) % 2 == 0;
    let (go, ready) = tokio::sync::watch::channel(!barrier);
    for id in 0..children {
        let k = (mix(seed ^ ((id as u64) << 20)) % 24) as usize;
        let (c, started, mut ready) = (census.clone(), counts.started.clone(), ready.clone());
        s.spawn(async move {
            started.inc();
            let _ = ready.wait_for(|go| *go).await;
            yields(k).await;
            // Made in the poll that returns it: a made error was returned by its child.
            Err::<(), E>(fail(Failure {
                id: id as u32,
                _guard: c.guard(),
            }))
        });
    }
    let _ = go.send(true);
    match body {
        BodyDoes::Returns => Ok(()),
        BodyDoes::Fails(k) => {
            yields(k).await;
            Err(fail(Failure {
                id: BODY_ID,
                _guard: census.guard(),
            }))
        }
        BodyDoes::Cancels(k) => {
            yields(k).await;
            s.cancel();
            Ok(())
        }
        BodyDoes::CancelsAndWaits(k) => {
            yields(k).await;
            s.cancel();
            pending().await
        }
    }
}

fn st4_body(seed: u64, grace: bool) -> BodyDoes {
    let k = (mix(seed ^ 0xB0D7) % 32) as usize;
    match mix(seed ^ 0x5EED) % 4 {
        0 => BodyDoes::Returns,
        1 => BodyDoes::Fails(k),
        // With a grace period the waiting body would hold the scope for all of it.
        2 if !grace => BodyDoes::CancelsAndWaits(k),
        _ => BodyDoes::Cancels(k),
    }
}

/// Collecting mode: every error made (by a child or the body) is returned exactly once, in
/// cancellation too; nothing is suppressed.
fn st4_collect(children: usize, rounds: usize, grace: bool) -> ST4Totals {
    let rt = runtime(4);
    let mut t = ST4Totals::default();
    for round in 0..rounds {
        let seed = mix(round as u64 ^ if grace { 0x6AC3 } else { 0 });
        let body = st4_body(seed, grace);
        let census = Census::new();
        let counts = ST4Counts::default();
        let mut handle = None;
        let mut b = Scope::builder().name("s4-collect");
        if grace {
            b = b.grace(Duration::from_secs(3600));
        }
        let r = rt.block_on(
            b.collect_errors()
                .run(async |s| {
                    handle = Some(s.cancel_handle());
                    st4_fan(
                        &s,
                        children,
                        seed,
                        body,
                        &census,
                        &counts,
                        StressError::Failed,
                    )
                    .await
                })
                .within(
                    ROUND_HANG,
                    format!("ST4 round {round}: the scope's return after its fan of children"),
                ),
        );
        let ctx = format!("round {round} (grace {grace}, body {body:?})");
        let made = census.made();
        let mut returned_failed = 0usize;
        match r {
            Ok(()) => {
                assert_eq!(
                    made, 0,
                    "{ctx}: the scope returned Ok but {made} errors were made"
                );
                t.ok += 1;
            }
            Err(errors) => {
                let mut ids = HashSet::new();
                let mut cancelled = 0usize;
                for e in errors.iter() {
                    match e {
                        StressError::Failed(f) => {
                            assert!(
                                f.id == BODY_ID || (f.id as usize) < children,
                                "{ctx}: unknown id {}",
                                f.id
                            );
                            assert!(ids.insert(f.id), "{ctx}: error {} returned twice", f.id);
                            returned_failed += 1;
                        }
                        StressError::Cancelled { reason, suppressed } => {
                            assert_eq!(*suppressed, 0, "{ctx}: collecting mode suppresses nothing");
                            assert_eq!(
                                *reason,
                                CancelReason::Explicit,
                                "{ctx}: only the body cancels"
                            );
                            cancelled += 1;
                        }
                    }
                }
                if cancelled > 0 {
                    // Only the scope's own cancellation, when no error was made at all.
                    assert_eq!(
                        (cancelled, errors.len(), made),
                        (1, 1, 0),
                        "{ctx}: {errors:?}"
                    );
                    t.cancelled_first += 1;
                }
                assert_eq!(
                    returned_failed,
                    made,
                    "{ctx}: {made} errors were made, {returned_failed} returned (ids {:?})",
                    missing_ids(&ids, children)
                );
                assert_eq!(census.alive(), made, "{ctx}: every returned error is alive");
                drop(errors);
            }
        }
        let suppressed = handle.unwrap().suppressed_errors();
        assert_eq!(suppressed, 0, "{ctx}: collecting mode suppresses nothing");
        st4_check_grace(grace, made, body, &counts, children, &ctx);
        assert_eq!(census.alive(), 0, "{ctx}");
        t.rounds += 1;
        t.errors_made += made;
        t.errors_returned += returned_failed;
    }
    t
}

/// Fail-fast mode: exactly one error is returned; every other error made was dropped before
/// the scope returned and counted as suppressed.
fn st4_fail_fast(children: usize, rounds: usize, grace: bool) -> ST4Totals {
    let rt = runtime(4);
    let mut t = ST4Totals::default();
    for round in 0..rounds {
        let seed = mix(round as u64 ^ if grace { 0xFA57 } else { 0xFA56 });
        let body = st4_body(seed, grace);
        let census = Census::new();
        let counts = ST4Counts::default();
        let mut handle = None;
        let mut b = Scope::builder().name("s4-fail-fast");
        if grace {
            b = b.grace(Duration::from_secs(3600));
        }
        let r = rt.block_on(
            b.run(async |s| {
                handle = Some(s.cancel_handle());
                st4_fan(
                    &s,
                    children,
                    seed,
                    body,
                    &census,
                    &counts,
                    StressError::Failed,
                )
                .await
            })
            .within(
                ROUND_HANG,
                format!("ST4 round {round}: the scope's return after its fan of children"),
            ),
        );
        let ctx = format!("round {round} (grace {grace}, body {body:?})");
        let made = census.made();
        let alive_at_return = census.alive();
        let suppressed = handle.unwrap().suppressed_errors() as usize;
        match &r {
            Ok(()) => {
                // No error at all, or the body cancelled the scope before any and completed:
                // its value is kept, every error after the cancel was suppressed.
                if made > 0 {
                    assert!(
                        matches!(body, BodyDoes::Cancels(_)),
                        "{ctx}: Ok with {made} errors"
                    );
                }
                assert_eq!(alive_at_return, 0, "{ctx}: every error made was dropped");
                assert_eq!(
                    suppressed, made,
                    "{ctx}: {made} errors made, {suppressed} suppressed"
                );
                t.ok += 1;
            }
            Err(StressError::Failed(f)) => {
                assert!(
                    f.id == BODY_ID || (f.id as usize) < children,
                    "{ctx}: id {}",
                    f.id
                );
                assert_eq!(
                    alive_at_return, 1,
                    "{ctx}: only the returned error is alive"
                );
                assert_eq!(
                    suppressed,
                    made - 1,
                    "{ctx}: {made} errors made, one returned, {suppressed} suppressed"
                );
                t.errors_returned += 1;
            }
            Err(StressError::Cancelled {
                reason,
                suppressed: on_error,
            }) => {
                assert!(
                    matches!(body, BodyDoes::CancelsAndWaits(_)),
                    "{ctx}: cancelled ({reason}) but the body was not dropped by its cancel"
                );
                assert_eq!(*reason, CancelReason::Explicit, "{ctx}");
                assert_eq!(alive_at_return, 0, "{ctx}: every error made was dropped");
                assert_eq!(
                    (*on_error as usize, suppressed),
                    (made, made),
                    "{ctx}: every error made after the cancel is counted as suppressed"
                );
                t.cancelled_first += 1;
            }
        }
        st4_check_grace(grace, made, body, &counts, children, &ctx);
        drop(r);
        assert_eq!(census.alive(), 0, "{ctx}");
        t.rounds += 1;
        t.errors_made += made;
        t.suppressed += suppressed;
    }
    t
}

/// Every child that started made its error (with a grace period nothing is dropped before
/// it ends; without one, a started child may be dropped at its next poll).
fn st4_check_grace(
    grace: bool,
    made: usize,
    body: BodyDoes,
    counts: &ST4Counts,
    children: usize,
    ctx: &str,
) {
    let started = counts.started.get();
    assert!(started <= children, "{ctx}");
    let body_failed = usize::from(matches!(body, BodyDoes::Fails(_)));
    if grace {
        assert_eq!(
            made,
            started + body_failed,
            "{ctx}: {started} children started, {made} errors made (body failed: {body_failed})"
        );
    } else {
        assert!(
            made <= started + body_failed,
            "{ctx}: {made} made, {started} started"
        );
    }
}

fn missing_ids(ids: &HashSet<u32>, children: usize) -> Vec<u32> {
    (0..children as u32)
        .filter(|id| !ids.contains(id))
        .take(10)
        .collect()
}

fn st4_all(children: usize, rounds: usize) {
    let _serial = serial();
    for grace in [false, true] {
        let start = Instant::now();
        let t = st4_collect(children, rounds, grace);
        eprintln!(
            "ST4 collect_errors, grace {grace}: {children} children x {} rounds in {:?}: {t:?}",
            t.rounds,
            start.elapsed()
        );
        assert_eq!(t.errors_returned, t.errors_made);
        let start = Instant::now();
        let t = st4_fail_fast(children, rounds, grace);
        eprintln!(
            "ST4 fail-fast, grace {grace}: {children} children x {} rounds in {:?}: {t:?}",
            t.rounds,
            start.elapsed()
        );
        assert_eq!(t.errors_returned + t.suppressed, t.errors_made);
    }
}

#[test]
fn st4_concurrent_errors_none_lost_none_duplicated_quick() {
    st4_all(100, 20);
}

#[test]
#[ignore = "release stress: cargo test --release --test stress -- --include-ignored"]
fn st4_concurrent_errors_none_lost_none_duplicated_full() {
    st4_all(1_000, 200);
}
