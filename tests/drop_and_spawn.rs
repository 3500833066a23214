//! Dropping, leaks and spawning rules: scenarios R1–R9 and R14 (`docs/scenarios.md`); the
//! rules are in `docs/design.md`, 4.1 Guaranteed await, 4.12 A dropped scope future and
//! 4.13 Spawning rules.
//!
//! Leaks are checked with census guards right after the scope returned, never "eventually".
//! Scheduler-sensitive scenarios run on three runtimes (`rt_test!`); the ones that build
//! their own runtimes (R2, R3) loop over the same three flavours.

mod common;

use std::future::{Future, pending};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex, mpsc};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use common::*;
use taskscope::*;
use tokio::task::yield_now;

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// Yields until `cond` holds (not time-based). Panics after `max` yields instead of hanging.
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    const MAX_YIELDS: usize = 1_000_000;
    for _ in 0..MAX_YIELDS {
        if cond() {
            return;
        }
        yield_now().await;
    }
    panic!("gave up waiting for: {what}");
}

/// Polls `fut` exactly once with the current task's context.
async fn poll_once<F: Future + ?Sized>(mut fut: Pin<&mut F>) -> Poll<F::Output> {
    std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await
}

/// An ordered record of events, shared between a test and its children.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<&'static str>>>);

impl Log {
    fn push(&self, event: &'static str) {
        self.0.lock().unwrap().push(event);
    }
    fn take(&self) -> Vec<&'static str> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// A child-owned value whose `Drop` takes a while and then records itself. The census guard
/// is a field, so it is counted only after the slow part of the drop finished.
struct SlowDrop {
    log: Log,
    _guard: Guard,
}

impl Drop for SlowDrop {
    fn drop(&mut self) {
        // Only widens the window in which a scope that did not wait would already have
        // returned; nothing depends on its length.
        std::thread::sleep(Duration::from_millis(2));
        self.log.push("child dropped");
    }
}

/// A child future that records whether it was ever polled and owns a census guard.
fn probe(
    census: &Census,
    polled: &Arc<AtomicBool>,
) -> impl Future<Output = Result<(), Cancelled>> + Send + 'static {
    let guard = census.guard();
    let polled = polled.clone();
    async move {
        polled.store(true, SeqCst);
        drop(guard);
        Ok(())
    }
}

#[derive(Clone, Copy, Debug)]
enum Flavor {
    CurrentThread,
    MultiThread(usize),
}

const FLAVORS: [Flavor; 3] = [
    Flavor::CurrentThread,
    Flavor::MultiThread(1),
    Flavor::MultiThread(4),
];

fn runtime(flavor: Flavor) -> tokio::runtime::Runtime {
    match flavor {
        Flavor::CurrentThread => tokio::runtime::Builder::new_current_thread(),
        Flavor::MultiThread(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
    }
    .enable_all()
    .build()
    .unwrap()
}

/// Runs `f` on its own thread and fails the test if it does not finish within `secs`
/// (a hang detector only: a passing run never waits for it).
fn within(secs: u64, what: &str, f: impl FnOnce() + Send + 'static) {
    let (tx, rx) = mpsc::channel();
    let t = std::thread::spawn(move || {
        f();
        let _ = tx.send(());
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(()) => t.join().unwrap(),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            // `f` panicked: re-raise its panic here.
            if let Err(p) = t.join() {
                std::panic::resume_unwind(p);
            }
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("hang: {what} did not finish in {secs}s"),
    }
}

// ---------------------------------------------------------------------------------------
// R1: a scope future dropped as a lost `select!` branch inside an outer scope
// ---------------------------------------------------------------------------------------

const R1_CHILDREN: usize = 8;

async fn r1_scenario() {
    let census = Census::new();
    let started = Counter::new();
    let log = Log::default();
    let r: Result<&str, Cancelled> = scope(async |_outer| {
        let inner = scope(async |s: Scope<'_, Cancelled>| {
            for _ in 0..R1_CHILDREN {
                let slow = SlowDrop {
                    log: log.clone(),
                    _guard: census.guard(),
                };
                let started = started.clone();
                s.spawn(async move {
                    let _slow = slow;
                    started.inc();
                    pending::<Result<(), Cancelled>>().await
                });
            }
            pending::<()>().await;
            Ok(())
        });
        tokio::select! {
            biased;
            _ = inner => unreachable!("the inner scope never finishes on its own"),
            _ = until("all children started", || started.get() == R1_CHILDREN) => {}
        }
        // `inner` is gone; its children were running when it was dropped.
        assert_eq!(census.made(), R1_CHILDREN);
        log.push("outer body returned");
        Ok("outer")
    })
    .within(
        HANG,
        "the outer scope's return after the dropped inner scope's children were dropped",
    )
    .await;
    log.push("outer scope returned");
    assert_eq!(
        census.alive(),
        0,
        "every child of the dropped scope is gone before the outer scope returns"
    );
    assert_eq!(r, Ok("outer"), "the outer scope itself is not cancelled");
    let log = log.take();
    assert_eq!(
        log.iter().filter(|e| **e == "child dropped").count(),
        R1_CHILDREN,
        "every child was cancelled (dropped), exactly once: {log:?}"
    );
    assert_eq!(
        log.last(),
        Some(&"outer scope returned"),
        "the outer scope returned only after every child's Drop finished: {log:?}"
    );
}

rt_test! {
    async fn r1_dropped_scope_children_awaited_by_outer() {
        r1_scenario().await;
    }
}

/// A scope future created outside any runtime takes the runtime it is first polled in:
/// its children are spawned there.
#[test]
fn a_scope_created_outside_any_runtime_spawns_on_the_one_it_runs_in() {
    for flavor in FLAVORS {
        assert!(tokio::runtime::Handle::try_current().is_err());
        let fut = scope(async |s| {
            let child = s.spawn(async { Ok::<_, Cancelled>(7) });
            child.await
        });
        let rt = runtime(flavor);
        let r = rt.block_on(fut.within(HANG, "the scope's return"));
        assert_eq!(r, Ok(7), "{flavor:?}");
    }
}

// ---------------------------------------------------------------------------------------
// R2: scope future dropped outside any runtime, or after the runtime shut down
// ---------------------------------------------------------------------------------------

const R2_CHILDREN: usize = 4;

type BoxedScope = Pin<Box<dyn Future<Output = Result<(), Cancelled>>>>;

/// Enters a scope on `rt` (polls it once inside `block_on`) and waits until its children
/// run; returns the still-pending scope future and a handle that escaped it.
#[allow(clippy::async_yields_async)] // handing the started scope future out is the point
fn start_scope_on(
    rt: &tokio::runtime::Runtime,
    census: &Census,
) -> (BoxedScope, ScopeHandle<Cancelled>) {
    let census = census.clone();
    let started = Counter::new();
    let (tx, rx) = std::sync::mpsc::channel();
    let fut = rt.block_on(async move {
        let st = started.clone();
        let mut fut: BoxedScope = Box::pin(scope(async move |s| {
            tx.send(s.handle()).unwrap();
            for _ in 0..R2_CHILDREN {
                let g = census.guard();
                let st = st.clone();
                s.spawn(async move {
                    let _g = g;
                    st.inc();
                    pending::<Result<(), Cancelled>>().await
                });
            }
            pending::<()>().await;
            Ok(())
        }));
        assert!(poll_once(fut.as_mut()).await.is_pending());
        until("children started", || started.get() == R2_CHILDREN).await;
        assert!(poll_once(fut.as_mut()).await.is_pending());
        fut
    });
    (fut, rx.recv().unwrap())
}

#[test]
fn r2_scope_dropped_outside_runtime_no_panic() {
    for flavor in FLAVORS {
        let census = Census::new();
        let rt = runtime(flavor);
        let (fut, handle) = start_scope_on(&rt, &census);
        assert_eq!(census.alive(), R2_CHILDREN);
        assert!(
            tokio::runtime::Handle::try_current().is_err(),
            "this thread is outside any runtime"
        );
        // Dropped outside any runtime context while its children run: no panic.
        drop(fut);
        // Spawning into the dropped scope (from outside any runtime): no panic, and the
        // future never runs (whether it is refused is R6's business).
        let polled = Arc::new(AtomicBool::new(false));
        drop(handle.spawn(probe(&census, &polled)));
        // A root scope has no ancestor to hand its children to: they are dropped at their
        // next poll ("abort requested"). Let the runtime run them.
        rt.block_on(until(
            "children of the dropped root scope are dropped",
            || census.alive() == 0,
        ));
        assert!(!polled.load(SeqCst));
        drop(rt);
        assert_eq!(census.alive(), 0, "{flavor:?}");
    }
    // A scope future that was never polled, dropped outside any runtime.
    let census = Census::new();
    let g = census.guard();
    let never: Pin<Box<dyn Future<Output = Result<(), Cancelled>>>> =
        Box::pin(scope(async move |_s| {
            drop(g);
            Ok(())
        }));
    drop(never);
    assert_eq!(census.alive(), 0);
}

#[test]
fn r2_scope_dropped_after_runtime_shutdown_no_panic() {
    for flavor in FLAVORS {
        let census = Census::new();
        let rt = runtime(flavor);
        let (fut, handle) = start_scope_on(&rt, &census);
        assert_eq!(census.alive(), R2_CHILDREN);
        // Shutting the runtime down drops every child task.
        drop(rt);
        assert_eq!(
            census.alive(),
            0,
            "{flavor:?}: runtime shutdown dropped every child"
        );
        // Spawning through an escaped handle after shutdown: no panic, and the future is
        // never run (accepted-and-dropped by the dead runtime, or refused).
        let polled = Arc::new(AtomicBool::new(false));
        let r = handle.spawn(probe(&census, &polled));
        drop(r);
        assert!(!polled.load(SeqCst));
        assert_eq!(census.alive(), 0, "{flavor:?}");
        // Dropped after its runtime is gone: no panic.
        drop(fut);
        assert_eq!(census.alive(), 0, "{flavor:?}");
    }
}

// ---------------------------------------------------------------------------------------
// R3: runtime shut down while a scope runs in a spawned task
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Shutdown {
    Drop,
    Timeout,
}

#[test]
fn r3_runtime_shutdown_drops_every_child() {
    for flavor in FLAVORS {
        for how in [Shutdown::Drop, Shutdown::Timeout] {
            within(60, &format!("R3 {flavor:?} {how:?}"), move || {
                r3_case(flavor, how)
            });
        }
    }
}

fn r3_case(flavor: Flavor, how: Shutdown) {
    const CHILDREN: usize = 6;
    const NESTED: usize = 3;
    // A blocking child cannot be dropped: it must see the cancellation of its scope (whose
    // task the shutdown drops) and stop. Not with `shutdown_timeout` on a current_thread
    // runtime: tokio waits for the blocking pool there *before* it drops the tasks, so the
    // blocking child can only be released by the timeout (tokio's order, not ours).
    let with_blocking = !matches!((flavor, how), (Flavor::CurrentThread, Shutdown::Timeout));
    let census = Census::new();
    let started = Counter::new();
    let blocking_saw_cancel = Arc::new(AtomicBool::new(false));
    let blocking_started = Arc::new(AtomicBool::new(!with_blocking));
    let rt = runtime(flavor);
    let (c, st, bsc, bst) = (
        census.clone(),
        started.clone(),
        blocking_saw_cancel.clone(),
        blocking_started.clone(),
    );
    let task = rt.spawn(async move {
        let body_guard = c.guard();
        let r: Result<(), Cancelled> = scope(async move |s| {
            let _body_guard = body_guard;
            for _ in 0..CHILDREN {
                let (g, st) = (c.guard(), st.clone());
                s.spawn(async move {
                    let _g = g;
                    st.inc();
                    pending::<Result<(), Cancelled>>().await
                });
            }
            // A child that runs a nested scope with children of its own.
            let (c2, st2) = (c.clone(), st.clone());
            s.spawn(async move {
                let g = c2.guard();
                scope(async move |inner| {
                    let _g = g;
                    for _ in 0..NESTED {
                        let (g, st) = (c2.guard(), st2.clone());
                        inner.spawn(async move {
                            let _g = g;
                            st.inc();
                            pending::<Result<(), Cancelled>>().await
                        });
                    }
                    pending::<()>().await;
                    Ok(())
                })
                .await
            });
            if with_blocking {
                s.spawn_blocking(move || {
                    bst.store(true, SeqCst);
                    // Polls its token, as blocking children do; bounded so a bug cannot hang.
                    for _ in 0..20_000 {
                        if is_cancelled() {
                            bsc.store(true, SeqCst);
                            return Ok(());
                        }
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Ok(())
                });
            }
            pending::<()>().await;
            Ok(())
        })
        .await;
        unreachable!("the scope never finishes: {r:?}");
    });
    rt.block_on(until("children started", || {
        started.get() == CHILDREN + NESTED && blocking_started.load(SeqCst)
    }));
    // The body, the direct children, the nested scope's child and its children.
    assert_eq!(census.alive(), 1 + CHILDREN + 1 + NESTED);
    match how {
        Shutdown::Drop => drop(rt),
        Shutdown::Timeout => rt.shutdown_timeout(Duration::from_secs(30)),
    }
    assert_eq!(
        census.alive(),
        0,
        "{flavor:?} {how:?}: every child future (and the body) dropped by the shutdown"
    );
    if with_blocking {
        assert!(
            blocking_saw_cancel.load(SeqCst),
            "{flavor:?} {how:?}: the blocking child saw the cancellation of its dropped scope \
             before the shutdown returned"
        );
    }
    drop(task);
}

// ---------------------------------------------------------------------------------------
// R4: dropping a child's handle does not detach it
// ---------------------------------------------------------------------------------------

async fn r4_scenario() {
    let census = Census::new();
    let done = Counter::new();
    let r: Result<(), Cancelled> = scope(async |s| {
        for k in 0..4 {
            let (g, done) = (census.guard(), done.clone());
            let h = s.spawn(async move {
                yields(20 * (k + 1)).await;
                done.inc();
                drop(g);
                Ok(())
            });
            drop(h);
        }
        Ok(())
    })
    .within(
        HANG,
        "the scope's return after its four children with dropped handles ran",
    )
    .await;
    assert_eq!(r, Ok(()));
    assert_eq!(
        done.get(),
        4,
        "every child ran to completion before the scope returned"
    );
    assert_eq!(census.alive(), 0);
}

rt_test! {
    async fn r4_dropped_handle_does_not_detach() {
        r4_scenario().await;
    }
}

// ---------------------------------------------------------------------------------------
// R5: permits held by children are all back after the scope returns
// ---------------------------------------------------------------------------------------

#[derive(Debug, PartialEq)]
enum R5Error {
    Cancelled(CancelReason),
    Boom,
}

impl From<Cancelled> for R5Error {
    fn from(c: Cancelled) -> Self {
        R5Error::Cancelled(c.reason())
    }
}

rt_test! {
    async fn r5_semaphore_permits_all_returned() {
        use tokio::sync::Semaphore;
        const PERMITS: usize = 4;
        let sem = Arc::new(Semaphore::new(PERMITS));
        let finished = Counter::new();
        let waiting = Arc::new(AtomicBool::new(false));
        let r: Result<(), R5Error> = scope(async |s| {
            // Two children hold a permit and finish; two hold one forever (cancelled).
            for k in 0..PERMITS {
                let permit = sem.clone().acquire_owned().await.unwrap();
                let finished = finished.clone();
                s.spawn(async move {
                    if k < 2 {
                        yield_now().await;
                        drop(permit);
                        finished.inc();
                        Ok(())
                    } else {
                        let _permit = permit;
                        pending().await
                    }
                });
            }
            until("two holders finished", || finished.get() == 2).await;
            assert_eq!(sem.available_permits(), 2);
            // One child waits for more permits than are free and is cancelled while waiting.
            let (sem2, w) = (sem.clone(), waiting.clone());
            s.spawn(async move {
                w.store(true, SeqCst);
                let _p = sem2.acquire_many_owned(3).await.unwrap();
                Ok(())
            });
            until("waiter queued", || waiting.load(SeqCst)).await;
            yield_now().await;
            // One child fails: the scope cancels the rest.
            s.spawn(async { Err::<(), _>(R5Error::Boom) });
            pending().await
        })
        .within(
            HANG,
            "the scope's return after a child failed and the permit holders were cancelled",
        )
        .await;
        assert_eq!(r, Err(R5Error::Boom));
        assert_eq!(sem.available_permits(), PERMITS, "every permit is back when the scope returned");
    }
}

// ---------------------------------------------------------------------------------------
// R6: a handle escapes; spawning after the scope finished returns Closed
// ---------------------------------------------------------------------------------------

/// Spawning (async and blocking) through `h` is refused with `Closed`; the refused future and
/// closure are dropped without ever running.
fn assert_closed(h: &ScopeHandle<Cancelled>, what: &str) {
    let census = Census::new();
    let polled = Arc::new(AtomicBool::new(false));
    let r = h.spawn(probe(&census, &polled));
    assert!(
        matches!(r, Err(SpawnError::Closed)),
        "{what}: spawn after the scope finished must be Err(Closed), got {r:?}"
    );
    let g = census.guard();
    let ran = polled.clone();
    let r = h.spawn_blocking(move || {
        ran.store(true, SeqCst);
        drop(g);
        Ok(())
    });
    assert!(
        matches!(r, Err(SpawnError::Closed)),
        "{what}: spawn_blocking after the scope finished must be Err(Closed), got {r:?}"
    );
    assert!(!polled.load(SeqCst), "{what}: a refused child never runs");
    assert_eq!(census.alive(), 0, "{what}: a refused child is dropped");
}

rt_test! {
    async fn r6_escaped_handle_spawn_after_finish_is_closed() {
        let h: ScopeHandle<Cancelled> = scope(async |s| {
            s.spawn(async { Ok(()) });
            Ok(s.handle())
        })
        .within(HANG, "the scope's return of its handle")
        .await
        .unwrap();
        assert_closed(&h, "scope that succeeded");
        // A handle that escaped through a child, used after the scope finished.
        let (tx, rx) = tokio::sync::oneshot::channel();
        let r: Result<(), Cancelled> = scope(async |s| {
            let h = s.handle();
            s.spawn(async move {
                tx.send(h).unwrap();
                Ok(())
            });
            Ok(())
        })
        .within(HANG, "the scope's return after the child smuggled its handle out")
        .await;
        assert_eq!(r, Ok(()));
        assert_closed(&rx.await.unwrap(), "handle smuggled out by a child");
    }
}

rt_test! {
    async fn r6_escaped_handle_of_cancelled_or_failed_scope_is_closed() {
        // The scope was cancelled (explicitly), then finished.
        let h: ScopeHandle<Cancelled> = scope(async |s| {
            s.cancel();
            Ok(s.handle())
        })
        .within(HANG, "the cancelled scope's return of its handle")
        .await
        .unwrap();
        assert_closed(&h, "scope that was cancelled and finished");
        // The scope failed (a child error), then finished.
        let (tx, rx) = tokio::sync::oneshot::channel();
        let r: Result<(), Cancelled> = scope(async |s| {
            tx.send(s.handle()).unwrap();
            s.spawn(async { Err::<(), _>(Cancelled::new(CancelReason::Explicit)) });
            pending().await
        })
        .within(HANG, "the failed scope's return")
        .await;
        assert!(r.is_err());
        assert_closed(&rx.await.unwrap(), "scope that failed and finished");
    }
}

rt_test! {
    async fn r6_escaped_handle_of_dropped_scope_is_closed() {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let fut = scope(async |s: Scope<'_, Cancelled>| {
            tx.send(s.handle()).unwrap();
            pending::<()>().await;
            Ok(())
        });
        let mut fut = Box::pin(fut);
        assert!(poll_once(fut.as_mut()).await.is_pending());
        drop(fut);
        assert_closed(&rx.await.unwrap(), "scope whose future was dropped");
    }
}

// ---------------------------------------------------------------------------------------
// R7: spawning while the scope waits for its last children; racing the last child
// ---------------------------------------------------------------------------------------

const R7_CHAIN: usize = 100;

fn r7_link(
    h: ScopeHandle<Cancelled>,
    k: usize,
    body_done: Arc<AtomicBool>,
    census: Census,
    completed: Counter,
) -> Pin<Box<dyn Future<Output = Result<(), Cancelled>> + Send + 'static>> {
    let g = census.guard();
    Box::pin(async move {
        // Spawn the next sibling only once the body has returned, i.e. while the scope is
        // waiting for its last children (this child is one of them).
        until("the body returned", || body_done.load(SeqCst)).await;
        if k + 1 < R7_CHAIN {
            let next = r7_link(h.clone(), k + 1, body_done, census, completed.clone());
            let r = h.spawn(next);
            assert!(
                r.is_ok(),
                "link {k}: spawn while the scope waits must be accepted: {r:?}"
            );
        }
        yield_now().await;
        completed.inc();
        drop(g);
        Ok(())
    })
}

async fn r7_scenario() {
    let census = Census::new();
    let completed = Counter::new();
    let body_done = Arc::new(AtomicBool::new(false));
    let r: Result<(), Cancelled> = scope(async |s| {
        s.spawn(r7_link(
            s.handle(),
            0,
            body_done.clone(),
            census.clone(),
            completed.clone(),
        ));
        body_done.store(true, SeqCst);
        Ok(())
    })
    .within(
        HANG,
        "the scope's return after its 100-link chain of late siblings",
    )
    .await;
    assert_eq!(r, Ok(()));
    assert_eq!(census.made(), R7_CHAIN, "every link was spawned");
    assert_eq!(
        completed.get(),
        R7_CHAIN,
        "every accepted sibling ran before the scope returned"
    );
    assert_eq!(census.alive(), 0);
}

rt_test! {
    async fn r7_child_spawns_sibling_while_scope_waits() {
        r7_scenario().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn r7_spawn_racing_last_child_stress() {
    common::spawn_vs_close_race(10_000, "R7").await;
}

/// Two threads spawn at the same moment into an idle nested scope, round after round: the
/// nested scope is one unit of its parent's count while it has children, however its first
/// two spawns interleave, so the parent counts nothing once the nested scope returned.
#[test]
fn simultaneous_first_spawns_into_an_idle_nested_scope_count_once_in_its_parent() {
    const ROUNDS: u64 = 1024;
    /// Spins until `flag` is set, yielding the thread now and then (the machine may have
    /// fewer cores than spinning threads).
    fn await_flag(flag: &AtomicBool) {
        let mut n = 0u32;
        while !flag.load(SeqCst) {
            std::hint::spin_loop();
            n += 1;
            if n % 1024 == 0 {
                std::thread::yield_now();
            }
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let spawned = Counter::new();
    let r: Result<(), Cancelled> = rt.block_on(
        scope(async |outer| {
            let parent = Parent::from(&outer.handle());
            for i in 0..ROUNDS {
                scope(async |inner| {
                    let (ready, go) = (Counter::new(), AtomicBool::new(false));
                    std::thread::scope(|threads| {
                        // The delays sweep the offset between the two spawns.
                        for delay in [i % 32, (i / 32) % 32] {
                            let (h, ready, go, spawned) = (inner.handle(), &ready, &go, &spawned);
                            threads.spawn(move || {
                                ready.inc();
                                await_flag(go);
                                spin(delay);
                                h.spawn(async { Ok(()) }).expect("the nested scope runs");
                                spawned.inc();
                            });
                        }
                        while ready.get() < 2 {
                            std::thread::yield_now();
                        }
                        go.store(true, SeqCst);
                    });
                    Ok(())
                })
                .await?;
                assert_eq!(
                    parent.snapshot().nodes()[0].live_children,
                    0,
                    "round {i}: the nested scope returned, and its parent still counts it"
                );
            }
            Ok(())
        })
        .within(
            HANG,
            "the outer scope's return after its nested scopes' simultaneous spawns",
        ),
    );
    assert_eq!(r, Ok(()));
    assert_eq!(spawned.get() as u64, 2 * ROUNDS);
}

// ---------------------------------------------------------------------------------------
// R8: spawning into an already-cancelled scope
// ---------------------------------------------------------------------------------------

rt_test! {
    async fn r8_spawn_into_cancelled_scope_never_polls() {
        let census = Census::new();
        let polled = Arc::new(AtomicBool::new(false));
        let blocking_ran = Arc::new(AtomicBool::new(false));
        // 1. From the body, after `s.cancel()`.
        let r: Result<_, Cancelled> = scope(async |s| {
            s.cancel();
            let h = s.spawn(probe(&census, &polled));
            let (g, ran) = (census.guard(), blocking_ran.clone());
            let hb = s.spawn_blocking(move || {
                ran.store(true, SeqCst);
                drop(g);
                Ok(())
            });
            Ok((h, hb))
        })
        .within(HANG, "the cancelled scope's return with two refused children")
        .await;
        assert_eq!(census.alive(), 0, "the refused child and closure were dropped");
        assert!(!polled.load(SeqCst), "a child spawned into a cancelled scope is never polled");
        assert!(!blocking_ran.load(SeqCst), "a blocking child spawned into a cancelled scope never runs");
        let (h, hb) = r.expect("the body completed: its value is kept");
        let h = h.within(HANG, "the refused child's handle resolving").await;
        assert_eq!(h.unwrap_err().reason(), CancelReason::ParentCancelled);
        let hb = hb.within(HANG, "the refused blocking child's handle resolving").await;
        assert_eq!(hb.unwrap_err().reason(), CancelReason::ParentCancelled);

        // 2. Through a handle, from a child, after the scope was cancelled.
        let census = Census::new();
        let polled = Arc::new(AtomicBool::new(false));
        let (c, p) = (census.clone(), polled.clone());
        let r: Result<(), Cancelled> = scope(async |s| {
            let h = s.handle();
            s.spawn(async move {
                h.cancel();
                let r = h.spawn(probe(&c, &p));
                let handle = r.expect("the scope has not finished: not Closed");
                assert_eq!(handle.await.unwrap_err().reason(), CancelReason::ParentCancelled);
                Ok(())
            });
            pending().await
        })
        .within(HANG, "the scope's return after a child cancelled it through a handle")
        .await;
        assert_eq!(r.unwrap_err().reason(), CancelReason::Explicit);
        assert_eq!(census.made(), 1);
        assert_eq!(census.alive(), 0);
        assert!(!polled.load(SeqCst));

        // 3. A scope that inherits its parent's cancellation (during the parent's grace).
        let census = Census::new();
        let polled = Arc::new(AtomicBool::new(false));
        let r: Result<(), Cancelled> = Scope::builder()
            .grace(Duration::from_secs(3600))
            .run(async |outer| {
                outer.cancel();
                let inner: Result<(), Cancelled> = scope(async |s| {
                    assert!(s.is_cancelled());
                    drop(s.spawn(probe(&census, &polled)));
                    Ok(())
                })
                .within(HANG, "the inner scope's return under its parent's cancellation")
                .await;
                assert_eq!(inner, Ok(()));
                Ok(())
            })
            .within(HANG, "the cancelled outer scope's return")
            .await;
        assert_eq!(r, Ok(()));
        assert_eq!(census.alive(), 0);
        assert!(!polled.load(SeqCst));
    }
}

// ---------------------------------------------------------------------------------------
// R9: cancel racing completion: the value is delivered or dropped, exactly once
// ---------------------------------------------------------------------------------------

/// A child's value: owns a census guard, so it is counted when dropped.
struct Value(#[allow(dead_code)] Guard, usize);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn r9_cancel_racing_completion_exactly_once() {
    const ITERATIONS: usize = 5_000;
    let (mut delivered, mut dropped) = (0, 0);
    // (a) `TaskHandle::cancel` racing the child's completion.
    for i in 0..ITERATIONS {
        let census = Census::new();
        let r: Result<Option<Value>, Cancelled> = scope(async |s| {
            let g = census.guard();
            let h = s.spawn(async move {
                yields(i % 3).await;
                Ok(Value(g, i))
            });
            yields(i % 4).await;
            h.cancel();
            Ok(h.await.ok())
        })
        .within(
            HANG,
            "the scope's return after a child's cancel raced its completion",
        )
        .await;
        let r = r.expect("cancelling a child alone does not fail the scope");
        match &r {
            Some(v) => {
                assert_eq!(v.1, i);
                delivered += 1;
                assert_eq!(
                    census.alive(),
                    1,
                    "iteration {i}: the delivered value is alive"
                );
            }
            None => {
                dropped += 1;
                assert_eq!(
                    census.alive(),
                    0,
                    "iteration {i}: the undelivered value was dropped"
                );
            }
        }
        drop(r);
        assert_eq!(census.made(), 1);
        assert_eq!(census.dropped(), 1, "iteration {i}: dropped exactly once");
    }
    eprintln!("R9 (a) TaskHandle::cancel: {delivered} delivered, {dropped} dropped");
    assert_eq!(delivered + dropped, ITERATIONS);

    // (b) A sibling cancelling the whole scope racing the child's completion.
    let (mut delivered, mut dropped) = (0, 0);
    for i in 0..ITERATIONS {
        let census = Census::new();
        let r: Result<Option<Value>, Cancelled> = scope(async |s| {
            let g = census.guard();
            let h = s.spawn(async move {
                yields(i % 3).await;
                Ok(Value(g, i))
            });
            let sh = s.handle();
            s.spawn(async move {
                yields(i % 4).await;
                sh.cancel();
                Ok(())
            });
            Ok(h.await.ok())
        })
        .within(
            HANG,
            "the scope's return after a sibling's cancel raced a child's completion",
        )
        .await;
        let delivered_now = matches!(r, Ok(Some(_)));
        let alive_at_return = census.alive();
        if let Ok(Some(v)) = &r {
            assert_eq!(v.1, i);
        }
        drop(r);
        assert_eq!(
            alive_at_return,
            usize::from(delivered_now),
            "iteration {i}: when the scope returned, the value was either delivered or \
             already dropped"
        );
        if delivered_now {
            delivered += 1;
        } else {
            dropped += 1;
        }
        assert_eq!(census.made(), 1);
        assert_eq!(census.dropped(), 1, "iteration {i}: dropped exactly once");
    }
    eprintln!("R9 (b) scope cancel: {delivered} delivered, {dropped} dropped");
    assert_eq!(delivered + dropped, ITERATIONS);
}

/// Wakes the task, then (when woken from a thread other than the one polling) stalls the
/// waking thread briefly. On the first such wake it can first run `on_foreign_wake` (a third
/// party acting at exactly that moment). Only widens a window that a preempted thread opens
/// just the same; nothing depends on the stall's length.
struct StallingWaker {
    inner: Waker,
    poller: std::thread::ThreadId,
    on_foreign_wake: Arc<Mutex<Option<Action>>>,
}

type Action = Box<dyn FnOnce() + Send>;

impl Wake for StallingWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        if std::thread::current().id() != self.poller {
            let action = self.on_foreign_wake.lock().unwrap().take();
            if let Some(action) = action {
                action();
            }
            self.inner.wake_by_ref();
            std::thread::sleep(Duration::from_millis(50));
        } else {
            self.inner.wake_by_ref();
        }
    }
}

async fn with_stalling_wakes<F: Future>(on_foreign_wake: Option<Action>, fut: F) -> F::Output {
    let action = Arc::new(Mutex::new(on_foreign_wake));
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(|cx| {
        let waker = Waker::from(Arc::new(StallingWaker {
            inner: cx.waker().clone(),
            poller: std::thread::current().id(),
            on_foreign_wake: action.clone(),
        }));
        fut.as_mut().poll(&mut Context::from_waker(&waker))
    })
    .await
}

/// The deterministic forms of the race R9 (b) hits now and then: a child produces its value
/// just as its scope is cancelled, so the body (holding the child's handle) is dropped
/// instead of receiving it. The value must be gone when the scope returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r9_value_of_child_finishing_as_scope_is_cancelled_dropped_before_return() {
    // (1) The child cancels its scope and returns its value in the same poll.
    let census = Census::new();
    let r: Result<Option<Value>, Cancelled> = with_stalling_wakes(
        None,
        scope(async |s| {
            let g = census.guard();
            let sh = s.handle();
            let h = s.spawn(async move {
                sh.cancel();
                Ok(Value(g, 1))
            });
            Ok(h.await.ok())
        }),
    )
    .within(
        HANG,
        "the scope's return after its child cancelled it and returned its value",
    )
    .await;
    let alive_at_return = census.alive();
    let delivered = matches!(r, Ok(Some(_)));
    drop(r);
    assert_eq!(
        alive_at_return,
        usize::from(delivered),
        "(1) the child's value was neither delivered nor dropped when the scope returned"
    );
    assert_eq!(census.dropped(), 1);

    // (2) A third party cancels the scope right after the child returned its value: at the
    // moment the child is counted as finished (which wakes the scope), before the runtime
    // stored the value in the task for the handle.
    let census = Census::new();
    let (tx, rx) = std::sync::mpsc::channel::<ScopeHandle<Cancelled>>();
    let cancel_now: Action = Box::new(move || rx.recv().unwrap().cancel());
    let r: Result<Option<Value>, Cancelled> = with_stalling_wakes(
        Some(cancel_now),
        scope(async |s| {
            tx.send(s.handle()).unwrap();
            let g = census.guard();
            let h = s.spawn(async move { Ok(Value(g, 2)) });
            Ok(h.await.ok())
        }),
    )
    .within(
        HANG,
        "the scope's return after a third party cancelled it as its child finished",
    )
    .await;
    let alive_at_return = census.alive();
    let delivered = matches!(r, Ok(Some(_)));
    let outcome = format!("{:?}", r.as_ref().map(|v| v.as_ref().map(|v| v.1)));
    drop(r);
    assert_eq!(
        alive_at_return,
        usize::from(delivered),
        "(2) the child's value was neither delivered nor dropped when the scope returned \
         (scope returned {outcome})"
    );
    assert_eq!(census.dropped(), 1);
}

// ---------------------------------------------------------------------------------------
// R14: the scenarios above on a current_thread runtime (rt_test!) and inside a LocalSet
// ---------------------------------------------------------------------------------------

async fn r14_all() {
    r1_scenario().await;
    r4_scenario().await;
    r7_scenario().await;
    // R6 and R8 in short form.
    let h: ScopeHandle<Cancelled> = scope(async |s| Ok(s.handle()))
        .within(HANG, "the scope's return of its handle")
        .await
        .unwrap();
    assert_closed(&h, "inside a LocalSet");
    let census = Census::new();
    let polled = Arc::new(AtomicBool::new(false));
    let r: Result<(), Cancelled> = scope(async |s| {
        s.cancel();
        drop(s.spawn(probe(&census, &polled)));
        Ok(())
    })
    .within(HANG, "the cancelled scope's return")
    .await;
    assert_eq!(r, Ok(()));
    assert_eq!(census.alive(), 0);
    assert!(!polled.load(SeqCst));
}

async fn r14_in_local_set() {
    let local = tokio::task::LocalSet::new();
    // Directly in `run_until`, and in a `spawn_local` task (the scope future is !Send-capable
    // there; its children still run on the runtime).
    local
        .run_until(async {
            r14_all().await;
            let not_send = std::rc::Rc::new(5);
            let t = tokio::task::spawn_local(async move {
                r14_all().await;
                *not_send
            });
            assert_eq!(t.await.unwrap(), 5);
        })
        .await;
}

rt_test! {
    async fn r14_drop_and_spawn_inside_local_set() {
        r14_in_local_set().await;
    }
}
