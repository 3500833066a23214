//! Panics: scenarios R10 and R11 (`docs/scenarios.md`), and "no panic path may abort the
//! process" (`docs/design.md`, 4.3 Panics).
//!
//! The in-process tests check what the caller sees (the original payload, re-raised after
//! every child is gone). The `no_abort_*` tests run the risky cases in a subprocess (this
//! test binary re-executed in "child mode", see [`subprocess_entry`]) and check that it
//! exited normally: an abort (SIGABRT, "panic in a destructor during cleanup") would take the
//! whole test binary down otherwise.

mod common;

use std::any::Any;
use std::future::{Future, pending};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::task::Poll;
use std::time::Duration;

use common::*;
use futures_util::FutureExt;
use taskscope::*;
use tokio::task::yield_now;

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// Yields until `cond` holds (not time-based). Panics after many yields instead of hanging.
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..1_000_000 {
        if cond() {
            return;
        }
        yield_now().await;
    }
    panic!("gave up waiting for: {what}");
}

/// The payload a [`PanicOnDrop`] panics with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DropPanic(u32);

/// Panics (with a [`DropPanic`] payload) when dropped.
struct PanicOnDrop(u32);

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        std::panic::panic_any(DropPanic(self.0));
    }
}

/// Panics with `payload`; typed as returning `T` so it can end any block without
/// unreachable-code noise.
fn panic_with<T, P: Any + Send + 'static>(payload: P) -> T {
    std::panic::panic_any(payload)
}

/// A custom panic payload type (not a string).
#[derive(Debug, Clone, PartialEq, Eq)]
struct CustomPayload {
    code: u32,
    detail: String,
}

/// The payload of a panicking scope body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BodyPanic(u32);

fn payload_is<T: Any + PartialEq + std::fmt::Debug>(payload: &(dyn Any + Send), want: &T) {
    match payload.downcast_ref::<T>() {
        Some(got) => assert_eq!(got, want),
        None => panic!(
            "expected a {} payload, got another type (str: {:?}, String: {:?})",
            std::any::type_name::<T>(),
            payload.downcast_ref::<&str>(),
            payload.downcast_ref::<String>()
        ),
    }
}

/// Spawns `n` children into `s` that each hold a census guard and wait forever; counts
/// them in `started` once they run.
fn spawn_sleepers<E: Send + 'static>(
    s: &Scope<'_, E>,
    n: usize,
    census: &Census,
    started: &Counter,
) {
    for _ in 0..n {
        let (g, st) = (census.guard(), started.clone());
        s.spawn(async move {
            let _g = g;
            st.inc();
            pending::<Result<(), E>>().await
        });
    }
}

/// Spawns `n` children into `s` that wait forever holding a [`PanicOnDrop`] (payloads
/// `DropPanic(0..n)`); counts them in `started` once they run.
fn spawn_bombs(s: &Scope<'_, Cancelled>, n: u32, started: &Counter) {
    for k in 0..n {
        let (bomb, st) = (PanicOnDrop(k), started.clone());
        s.spawn(async move {
            let _bomb = bomb;
            st.inc();
            pending::<Result<(), Cancelled>>().await
        });
    }
}

/// The runtime still works: a plain task and a scope with a child run to completion.
async fn runtime_still_works() {
    assert_eq!(
        tokio::spawn(async { 7 })
            .within(HANG, "a plain task's end after the panics")
            .await
            .unwrap(),
        7
    );
    let r: Result<i32, Cancelled> = scope(async |s| Ok(s.spawn(async { Ok(35) }).await? + 7))
        .within(HANG, "a scope's return after the panics")
        .await;
    assert_eq!(r, Ok(42));
}

// ---------------------------------------------------------------------------------------
// R10: a child's Drop panics during cancellation
// ---------------------------------------------------------------------------------------

/// A scope with 3 + 3 sleeping children and one whose Drop panics, cancelled by `cancel`.
async fn r10_scope(census: &Census, cancel: &'static str) -> Result<(), Cancelled> {
    let started = Counter::new();
    scope(async |s| {
        spawn_sleepers(&s, 3, census, &started);
        let (bomb, st) = (PanicOnDrop(10), started.clone());
        s.spawn(async move {
            let _bomb = bomb;
            st.inc();
            pending::<Result<(), Cancelled>>().await
        });
        spawn_sleepers(&s, 3, census, &started);
        until("children started", || started.get() == 7).await;
        match cancel {
            "explicit" => s.cancel(),
            "child error" => {
                s.spawn(async { Err::<(), _>(Cancelled::new(CancelReason::Explicit)) });
            }
            _ => unreachable!(),
        }
        pending().await
    })
    .await
}

rt_test! {
    async fn r10_panicking_drop_during_cancellation() {
        let mut payloads = Vec::new();
        for cancel in ["explicit", "child error"] {
            // Caught with catch_unwind around the scope future.
            let census = Census::new();
            let caught = AssertUnwindSafe(r10_scope(&census, cancel))
                .catch_unwind()
                .within(HANG, "the scope's re-raise of its child's Drop panic")
                .await;
            assert_eq!(census.alive(), 0, "{cancel}: the other children were still dropped");
            let payload = caught.expect_err("the panic of the Drop is re-raised by the scope");
            payloads.push(payload);

            // The scope in a spawned task: the panic arrives as the task's JoinError.
            let census = Census::new();
            let c = census.clone();
            let join = tokio::spawn(async move { r10_scope(&c, cancel).await })
                .within(HANG, "the end of the task whose scope re-raised a Drop panic")
                .await;
            assert_eq!(census.alive(), 0, "{cancel}: the other children were still dropped");
            let err = join.expect_err("the scope's task panicked");
            assert!(err.is_panic());
            payloads.push(err.into_panic());

            runtime_still_works().await;
        }
        // A child dropped by the runtime after the hard cancel aborted it panics in `Drop`:
        // tokio catches that panic and keeps the original payload for the child's
        // TaskHandle, and the scope re-raises a panic that says so (documented under
        // `scope`'s "# Panics"). Catching the original in the task wrapper would cost 8
        // bytes per task and push small children into tokio's 256-byte cell.
        for payload in payloads {
            let msg = payload
                .downcast_ref::<&str>()
                .expect("the scope re-raises a message payload");
            assert!(msg.contains("panicked in `Drop`"), "unexpected payload: {msg}");
        }
    }
}

rt_test! {
    /// The handle of a child that panicked in `Drop` when the hard cancel dropped it says
    /// `ChildPanicked` (the runtime kept the payload), not `ParentCancelled`.
    async fn a_child_panicking_in_drop_after_a_hard_cancel_reports_the_panic_to_its_handle() {
        let started = Counter::new();
        let mut handle = None;
        let caught = AssertUnwindSafe(scope(async |s| {
            let (bomb, st) = (PanicOnDrop(11), started.clone());
            handle = Some(s.spawn(async move {
                let _bomb = bomb;
                st.inc();
                pending::<Result<(), Cancelled>>().await
            }));
            until("the child started", || started.get() == 1).await;
            s.cancel();
            pending::<Result<(), Cancelled>>().await
        }))
        .catch_unwind()
        .within(HANG, "the scope's re-raise of its child's Drop panic")
        .await;
        assert!(caught.is_err(), "the scope re-raised the child's panic");
        let out = handle
            .expect("the body spawned the child")
            .within(HANG, "the handle of the child that panicked in Drop")
            .await;
        assert_eq!(out.unwrap_err().reason(), CancelReason::ChildPanicked);
    }
}

/// A secondary error (a child failing after its scope was cancelled) is dropped by the scope;
/// if that `Drop` panics, the panic is reported like any other (re-raised by the scope).
#[derive(Debug)]
enum BombError {
    Cancelled,
    Bomb(#[allow(dead_code)] PanicOnDrop),
}

impl std::fmt::Debug for PanicOnDrop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PanicOnDrop({})", self.0)
    }
}

impl From<Cancelled> for BombError {
    fn from(_: Cancelled) -> Self {
        BombError::Cancelled
    }
}

rt_test! {
    async fn r10_panicking_drop_of_secondary_error_is_reported() {
        let census = Census::new();
        let started = Counter::new();
        // A grace period, so the child can still fail after the scope was cancelled (its
        // error is then secondary: counted, reported, dropped by the scope).
        let fut = Scope::builder().grace(Duration::from_secs(3600)).run(async |s| {
            let (g, st) = (census.guard(), started.clone());
            s.spawn(async move {
                let _g = g;
                st.inc();
                let why = cancelled().await;
                assert_eq!(why.reason(), CancelReason::Explicit);
                Err::<(), _>(BombError::Bomb(PanicOnDrop(11)))
            });
            until("child started", || started.get() == 1).await;
            s.cancel();
            Ok::<(), BombError>(())
        });
        let caught = AssertUnwindSafe(fut)
            .catch_unwind()
            .within(HANG, "the scope's re-raise of the panic in its secondary error's Drop")
            .await;
        assert_eq!(census.alive(), 0);
        let payload = match caught {
            Ok(r) => panic!(
                "the panic in the secondary error's Drop was not reported to the scope; it \
                 returned {r:?}"
            ),
            Err(p) => p,
        };
        runtime_still_works().await;
        // The original payload (`docs/design.md`, 4.3 Panics).
        payload_is(&*payload, &DropPanic(11));
    }
}

// ---------------------------------------------------------------------------------------
// R11: custom payload type; a body panic while children are being cancelled
// ---------------------------------------------------------------------------------------

rt_test! {
    async fn r11_child_panic_custom_payload_reaches_caller() {
        let census = Census::new();
        let started = Counter::new();
        let fut = scope(async |s| {
            spawn_sleepers(&s, 4, &census, &started);
            until("children started", || started.get() == 4).await;
            s.spawn(async {
                yield_now().await;
                panic_with::<Result<(), Cancelled>, _>(CustomPayload {
                    code: 42,
                    detail: "custom".into(),
                })
            });
            pending::<Result<(), Cancelled>>().await
        });
        let payload = AssertUnwindSafe(fut)
            .catch_unwind()
            .within(HANG, "the scope's re-raise of its child's custom panic")
            .await
            .expect_err("re-raised");
        assert_eq!(census.alive(), 0, "the siblings were cancelled and awaited first");
        let payload = payload.downcast::<CustomPayload>().expect("the same payload type");
        assert_eq!(*payload, CustomPayload { code: 42, detail: "custom".into() });
        runtime_still_works().await;
    }
}

rt_test! {
    async fn r11_body_panic_while_children_cancelled() {
        let census = Census::new();
        let started = Counter::new();
        let fut = scope(async |s| {
            spawn_sleepers(&s, 6, &census, &started);
            until("children started", || started.get() == 6).await;
            s.cancel();
            panic_with::<Result<(), Cancelled>, _>(BodyPanic(3))
        });
        let payload = AssertUnwindSafe(fut)
            .catch_unwind()
            .within(HANG, "the scope's re-raise of its body's panic after the cancel")
            .await
            .expect_err("re-raised");
        assert_eq!(census.alive(), 0, "the children were cancelled and awaited before the panic continued");
        payload_is(&*payload, &BodyPanic(3));
        runtime_still_works().await;
    }
}

/// With a grace period the cancelled children do async cleanup; the body's panic waits for it.
#[tokio::test(start_paused = true)]
async fn r11_body_panic_while_children_clean_up_in_grace() {
    const N: usize = 5;
    let census = Census::new();
    let started = Counter::new();
    let cleaned = Counter::new();
    let t0 = tokio::time::Instant::now();
    let fut = Scope::builder()
        .grace(Duration::from_secs(1))
        .run(async |s| {
            for _ in 0..N {
                let (g, st, cl) = (census.guard(), started.clone(), cleaned.clone());
                s.spawn(async move {
                    let _g = g;
                    st.inc();
                    cancelled().await;
                    tokio::time::sleep(Duration::from_millis(100)).await; // async cleanup
                    cl.inc();
                    Ok::<(), Cancelled>(())
                });
            }
            until("children started", || started.get() == N).await;
            s.cancel();
            yield_now().await;
            panic_with::<Result<(), Cancelled>, _>(BodyPanic(4))
        });
    let payload = AssertUnwindSafe(fut)
        .catch_unwind()
        .within(
            PAUSED_HANG,
            "the scope's re-raise of its body's panic after the children's cleanup",
        )
        .await
        .expect_err("re-raised");
    payload_is(&*payload, &BodyPanic(4));
    assert_eq!(cleaned.get(), N, "every child finished its cleanup");
    assert_eq!(census.alive(), 0);
    assert_eq!(
        t0.elapsed(),
        Duration::from_millis(100),
        "the panic waited for the cleanup, not the grace"
    );
}

// ---------------------------------------------------------------------------------------
// No panic path aborts the process (`docs/design.md`, 4.3): risky cases in a subprocess
// ---------------------------------------------------------------------------------------

const CHILD_ENV: &str = "TASKSCOPE_PANICS_CHILD_CASE";
const CHILD_DONE: &str = "TASKSCOPE-CHILD-CASE-DONE";

/// Child-mode entry point. In a normal run (the variable is unset) it does nothing; the
/// `no_abort_*` tests re-execute this binary with the variable naming a case and
/// `--exact subprocess_entry`, so only this function runs there.
#[test]
fn subprocess_entry() {
    let Ok(case) = std::env::var(CHILD_ENV) else {
        return;
    };
    for flavor in ["current_thread", "multi_thread_1", "multi_thread_4"] {
        let rt = match flavor {
            "current_thread" => tokio::runtime::Builder::new_current_thread(),
            "multi_thread_1" => {
                let mut b = tokio::runtime::Builder::new_multi_thread();
                b.worker_threads(1);
                b
            }
            _ => {
                let mut b = tokio::runtime::Builder::new_multi_thread();
                b.worker_threads(4);
                b
            }
        }
        .enable_all()
        .build()
        .unwrap();
        match case.as_str() {
            "drop_panic_during_cancel" => rt.block_on(case_drop_panic_during_cancel()),
            "body_panic_while_cancelling" => rt.block_on(case_body_panic_while_cancelling()),
            "unwind_drops_running_scope" => rt.block_on(case_unwind_drops_running_scope()),
            "dropped_scope_child_drop_panics" => {
                rt.block_on(case_dropped_scope_child_drop_panics())
            }
            "panicking_payload_drop" => rt.block_on(case_panicking_payload_drop()),
            "shutdown_with_panicking_drops" => {
                case_shutdown_with_panicking_drops(rt);
                continue;
            }
            other => panic!("unknown child case {other:?}"),
        }
        drop(rt);
    }
    println!("{CHILD_DONE} {case}");
}

/// Re-runs this test binary in child mode for `case`; the child must exit normally.
fn run_child(case: &str) {
    let exe = std::env::current_exe().expect("current_exe");
    let out = std::process::Command::new(exe)
        .env(CHILD_ENV, case)
        .env("RUST_BACKTRACE", "0")
        .args([
            "--exact",
            "subprocess_entry",
            "--nocapture",
            "--test-threads=1",
        ])
        .output()
        .expect("spawn the child test process");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail = |s: &str| {
        s.lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    };
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = out.status.signal() {
            panic!(
                "case {case}: the process was killed by signal {sig}{} (an abort)\n--- stderr ---\n{}",
                if sig == 6 { " (SIGABRT)" } else { "" },
                tail(&stderr)
            );
        }
    }
    assert!(
        out.status.success(),
        "case {case}: the child process failed ({}): an assertion in the case failed or the \
         process aborted\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        tail(&stdout),
        tail(&stderr)
    );
    assert!(
        stdout.contains(&format!("{CHILD_DONE} {case}")),
        "case {case}: the child did not run the case to its end\n--- stdout ---\n{}",
        tail(&stdout)
    );
}

/// R10 in the child: several children with panicking Drops are dropped by a cancellation.
async fn case_drop_panic_during_cancel() {
    let census = Census::new();
    let started = Counter::new();
    let fut = scope(async |s| {
        spawn_bombs(&s, 3, &started);
        spawn_sleepers(&s, 3, &census, &started);
        until("children started", || started.get() == 6).await;
        s.cancel();
        Ok(())
    });
    // Re-raised (which payload it carries is checked in-process by R10).
    let _payload = AssertUnwindSafe(fut)
        .catch_unwind()
        .within(
            HANG,
            "the scope's re-raise of the panics of its children's Drops",
        )
        .await
        .expect_err("re-raised");
    assert_eq!(census.alive(), 0);
    runtime_still_works().await;
}

/// The body panics while children whose Drops panic are being cancelled.
async fn case_body_panic_while_cancelling() {
    let census = Census::new();
    let started = Counter::new();
    let fut = scope(async |s| {
        spawn_bombs(&s, 3, &started);
        spawn_sleepers(&s, 3, &census, &started);
        until("children started", || started.get() == 6).await;
        s.cancel();
        panic_with::<Result<(), Cancelled>, _>(BodyPanic(1))
    });
    // Re-raised: the body's payload, or a child's Drop panic if one happened first (on
    // another worker, between `cancel()` and the body's panic).
    let _payload = AssertUnwindSafe(fut)
        .catch_unwind()
        .within(
            HANG,
            "the scope's re-raise of its body's panic during the cancel",
        )
        .await
        .expect_err("re-raised");
    assert_eq!(census.alive(), 0);
    runtime_still_works().await;
}

/// A task panics while it holds a running scope future: the unwind drops the scope future,
/// whose body holds a local with a panicking Drop, and whose children have panicking Drops.
async fn case_unwind_drops_running_scope() {
    let census = Census::new();
    let c = census.clone();
    let task = tokio::spawn(async move {
        let started = Counter::new();
        let st0 = started.clone();
        let c2 = c.clone();
        let mut fut = Box::pin(scope(async move |s| {
            let _local_bomb = PanicOnDrop(100);
            for k in 0..3 {
                let (bomb, st) = (PanicOnDrop(k), st0.clone());
                s.spawn(async move {
                    let _bomb = bomb;
                    st.inc();
                    pending::<Result<(), Cancelled>>().await
                });
            }
            spawn_sleepers(&s, 3, &c2, &st0);
            pending::<()>().await;
            Ok::<(), Cancelled>(())
        }));
        // Polled once by hand. (Not through a generic helper like `poll_once`: a generic
        // async fn holding a scope future inside a spawned task is not provably `Send`, see
        // tests/send_futures.rs, R15.)
        let first = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await;
        assert!(first.is_pending());
        until("children started", || started.get() == 6).await;
        panic_with::<(), _>(BodyPanic(2)); // unwinds through `fut`
        drop(fut);
    });
    let err = task
        .within(
            HANG,
            "the end of the task that panicked holding a scope future",
        )
        .await
        .expect_err("the task panicked");
    payload_is(&*err.into_panic(), &BodyPanic(2));
    // A root scope's children are dropped at their next poll.
    until("children of the dropped root scope dropped", || {
        census.alive() == 0
    })
    .await;
    runtime_still_works().await;
}

/// R1 with panicking Drops: a scope dropped as a lost select! branch inside an outer scope.
async fn case_dropped_scope_child_drop_panics() {
    let census = Census::new();
    let started = Counter::new();
    let fut = scope(async |_outer| {
        let inner = scope(async |s: Scope<'_, Cancelled>| {
            for k in 0..3 {
                let (bomb, st) = (PanicOnDrop(k), started.clone());
                s.spawn(async move {
                    let _bomb = bomb;
                    st.inc();
                    pending::<Result<(), Cancelled>>().await
                });
            }
            spawn_sleepers(&s, 3, &census, &started);
            let _local_bomb = PanicOnDrop(100);
            pending::<()>().await;
            Ok(())
        });
        tokio::select! {
            biased;
            _ = inner => unreachable!(),
            _ = until("children started", || started.get() == 6) => {}
        }
        Ok::<(), Cancelled>(())
    });
    // Whether the outer scope re-raises the panics of its dropped inner scope or only
    // reports them, it must return (or unwind) normally, after the children are gone.
    let _ = AssertUnwindSafe(fut)
        .catch_unwind()
        .within(
            HANG,
            "the outer scope's return after its dropped inner scope's panicking children",
        )
        .await;
    assert_eq!(census.alive(), 0);
    runtime_still_works().await;
}

/// Panic payloads whose own Drop panics: two children panic with them; the scope keeps one
/// and drops the other.
async fn case_panicking_payload_drop() {
    let fut = scope(async |s| {
        for k in 0..2 {
            s.spawn(async move {
                yield_now().await;
                panic_with::<Result<(), Cancelled>, _>(PanicOnDrop(200 + k))
            });
        }
        pending::<Result<(), Cancelled>>().await
    });
    let payload = AssertUnwindSafe(fut)
        .catch_unwind()
        .within(HANG, "the scope's re-raise of a payload whose Drop panics")
        .await
        .expect_err("re-raised");
    assert!(payload.downcast_ref::<PanicOnDrop>().is_some());
    // Dropping the re-raised payload panics in the caller's own code; keep it out of the way.
    std::mem::forget(payload);
    runtime_still_works().await;
}

/// The runtime shuts down while a scope (in a task) has children with panicking Drops and a
/// body holding one.
fn case_shutdown_with_panicking_drops(rt: tokio::runtime::Runtime) {
    let census = Census::new();
    let started = Counter::new();
    let (c, st0) = (census.clone(), started.clone());
    let ready = Arc::new(AtomicBool::new(false));
    let r2 = ready.clone();
    rt.spawn(async move {
        let _ = scope(async move |s| {
            let _local_bomb = PanicOnDrop(100);
            for k in 0..3 {
                let (bomb, st) = (PanicOnDrop(k), st0.clone());
                s.spawn(async move {
                    let _bomb = bomb;
                    st.inc();
                    pending::<Result<(), Cancelled>>().await
                });
            }
            spawn_sleepers(&s, 3, &c, &st0);
            r2.store(true, SeqCst);
            pending::<()>().await;
            Ok::<(), Cancelled>(())
        })
        .await;
    });
    rt.block_on(until("children started", || {
        ready.load(SeqCst) && started.get() == 6
    }));
    drop(rt);
    assert_eq!(census.alive(), 0);
}

#[test]
fn no_abort_panicking_drop_during_cancellation() {
    run_child("drop_panic_during_cancel");
}

#[test]
fn no_abort_body_panic_while_children_cancelled() {
    run_child("body_panic_while_cancelling");
}

#[test]
fn no_abort_unwind_drops_running_scope() {
    run_child("unwind_drops_running_scope");
}

#[test]
fn no_abort_dropped_scope_child_drop_panics() {
    run_child("dropped_scope_child_drop_panics");
}

#[test]
fn no_abort_panicking_payload_drop() {
    run_child("panicking_payload_drop");
}

#[test]
fn no_abort_runtime_shutdown_with_panicking_drops() {
    run_child("shutdown_with_panicking_drops");
}

/// Sets its flag when dropped: a panic payload that says when it is gone.
struct DroppedFlag(Arc<AtomicBool>);

impl Drop for DroppedFlag {
    fn drop(&mut self) {
        self.0.store(true, SeqCst);
    }
}

/// Panics in its `Drop` with a [`DroppedFlag`] payload.
struct PanicsInDrop(Arc<AtomicBool>);

impl Drop for PanicsInDrop {
    fn drop(&mut self) {
        std::panic::panic_any(DroppedFlag(self.0.clone()));
    }
}

/// A scope future is dropped while its body holds a value whose `Drop` panics. Nobody can
/// re-raise that panic: it is reported and its payload dropped right away, not kept in the
/// dropped scope's node for as long as a handle to it lives.
#[tokio::test]
async fn a_dropped_scopes_body_panicking_in_drop_has_its_payload_dropped_at_once() {
    let payload_gone = Arc::new(AtomicBool::new(false));
    let handle: Slot<CancelHandle> = Slot::default();
    let (gone, h) = (payload_gone.clone(), handle.clone());
    let mut fut = Box::pin(scope(async move |s: Scope<'_, Cancelled>| {
        h.push(s.cancel_handle());
        let _bomb = PanicsInDrop(gone);
        pending::<()>().await;
        Ok(())
    }));
    assert!(fut.as_mut().now_or_never().is_none());
    let h = handle.get().pop().expect("the body ran");
    drop(fut);
    assert!(h.is_finished());
    assert!(
        payload_gone.load(SeqCst),
        "the payload outlived the dropped scope future"
    );
}

/// The same for a local child whose `Drop` panics when the scope future is dropped.
#[tokio::test]
async fn a_dropped_scopes_local_child_panicking_in_drop_has_its_payload_dropped_at_once() {
    let payload_gone = Arc::new(AtomicBool::new(false));
    let handle: Slot<CancelHandle> = Slot::default();
    let (gone, h) = (payload_gone.clone(), handle.clone());
    let mut fut = Box::pin(scope(async move |s: Scope<'_, Cancelled>| {
        h.push(s.cancel_handle());
        let _local = s.spawn_local(async move {
            let _bomb = PanicsInDrop(gone);
            pending::<Result<(), Cancelled>>().await
        });
        pending::<()>().await;
        Ok(())
    }));
    assert!(fut.as_mut().now_or_never().is_none());
    let h = handle.get().pop().expect("the body ran");
    drop(fut);
    assert!(
        payload_gone.load(SeqCst),
        "the payload outlived the dropped scope future"
    );
    drop(h);
}

/// A payload whose own `Drop` panics.
struct PayloadPanicsInDrop;

impl Drop for PayloadPanicsInDrop {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("the payload's own drop panics");
        }
    }
}

/// Panics in its `Drop` with a [`PayloadPanicsInDrop`] payload.
struct PanicsWithPanickingPayload;

impl Drop for PanicsWithPanickingPayload {
    fn drop(&mut self) {
        std::panic::panic_any(PayloadPanicsInDrop);
    }
}

/// A dropped scope's body panics in `Drop` with a payload whose own `Drop` panics: the
/// payload is dropped inside the library's `catch_unwind` when the scope future is dropped,
/// never later by user code that drops the last handle to the scope.
#[tokio::test]
async fn a_panicking_payload_of_a_dropped_scope_never_unwinds_into_a_handles_drop() {
    let handle: Slot<CancelHandle> = Slot::default();
    let h = handle.clone();
    let mut fut = Box::pin(scope(async move |s: Scope<'_, Cancelled>| {
        h.push(s.cancel_handle());
        let _bomb = PanicsWithPanickingPayload;
        pending::<()>().await;
        Ok(())
    }));
    assert!(fut.as_mut().now_or_never().is_none());
    let h = handle.get().pop().expect("the body ran");
    drop(fut);
    let dropped = std::panic::catch_unwind(AssertUnwindSafe(move || drop(h)));
    assert!(
        dropped.is_ok(),
        "dropping the handle unwound with the payload's panic"
    );
}
