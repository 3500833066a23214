//! What users read: the `Display` of the errors and the `Debug` of the handles and futures.
//! A message is behaviour (it lands in logs and test failures), so each is pinned here.

mod common;

use std::error::Error as _;
use std::fmt;
use std::time::Duration;

use common::{HANG, PAUSED_HANG, Within};
use taskscope::{CancelReason, CancelScope, Cancelled, Scope, SpawnError, TrySpawnError, scope};

/// An error type with a message of its own.
#[derive(Debug, PartialEq)]
enum Failure {
    Disk(u32),
    Cancelled(CancelReason),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Disk(n) => write!(f, "disk {n} failed"),
            Failure::Cancelled(r) => write!(f, "cancelled ({r})"),
        }
    }
}

impl std::error::Error for Failure {}

impl From<Cancelled> for Failure {
    fn from(c: Cancelled) -> Self {
        Failure::Cancelled(c.reason())
    }
}

/// A collecting, supervised scope whose `n` children fail with `Failure::Disk(0..n)`, in order.
async fn collected(n: u32) -> taskscope::Errors<Failure> {
    common::collected(n, Failure::Disk).await
}

#[tokio::test]
async fn errors_display_the_first_error_and_how_many_more_there_are() {
    let one = collected(1).await;
    assert_eq!(one.to_string(), "disk 0 failed");

    let three = collected(3).await;
    assert_eq!(three.len(), 3);
    assert_eq!(three.to_string(), "disk 0 failed (and 2 more error(s))");
    let source = three.source().expect("the first error is the source");
    assert_eq!(source.to_string(), "disk 0 failed");
}

#[tokio::test(start_paused = true)]
async fn cancelled_displays_its_reason_and_the_errors_it_suppressed() {
    let plain = taskscope::fail_after(Duration::from_millis(5), std::future::pending::<()>())
        .within(PAUSED_HANG, "the deadline")
        .await
        .expect_err("the deadline passed");
    assert_eq!(plain.to_string(), "cancelled: deadline exceeded");

    // The body and a child fail after their scope was cancelled (with a grace period, so
    // they see it): secondary errors, counted.
    let r: Result<(), Cancelled> = Scope::builder()
        .grace(Duration::from_secs(1))
        .run(async |s| {
            s.spawn(async {
                taskscope::cancelled().await;
                Err::<(), _>(Cancelled::new(CancelReason::Explicit))
            });
            tokio::task::yield_now().await;
            s.cancel();
            taskscope::cancelled().await;
            // Let the child fail first, then fail the body too.
            tokio::time::sleep(Duration::from_millis(1)).await;
            Err(Cancelled::new(CancelReason::Explicit))
        })
        .within(PAUSED_HANG, "the cancelled scope's return")
        .await;
    let c = r.expect_err("the scope caught its own cancel");
    assert_eq!(c.suppressed_errors(), 2, "{c:?}");
    assert_eq!(
        c.to_string(),
        "cancelled: cancelled explicitly (2 error(s) suppressed)"
    );
}

#[tokio::test(start_paused = true)]
async fn futures_debug_whether_they_started_and_finished() {
    let mut run = Box::pin(CancelScope::new().run(tokio::task::yield_now()));
    assert_eq!(
        format!("{run:?}"),
        "Run { active: false, finished: false, .. }"
    );
    assert!(futures_util::poll!(run.as_mut()).is_pending());
    assert_eq!(
        format!("{run:?}"),
        "Run { active: true, finished: false, .. }"
    );
    run.as_mut()
        .within(PAUSED_HANG, "the run's end")
        .await
        .unwrap();
    assert_eq!(
        format!("{run:?}"),
        "Run { active: false, finished: true, .. }"
    );

    let fut = scope(async |_s| Ok::<_, Cancelled>(()));
    assert_eq!(
        format!("{fut:?}"),
        "ScopeFuture { started: false, finished: false, .. }"
    );
    // Built at entry (a handle taken, the body holds one): started once entered.
    let cs = CancelScope::new();
    let _h = cs.handle();
    let mut run = Box::pin(cs.run(tokio::task::yield_now()));
    assert!(futures_util::poll!(run.as_mut()).is_pending());
    assert_eq!(
        format!("{run:?}"),
        "Run { active: true, finished: false, .. }"
    );
    let mut fut = Box::pin(scope(async |_s| {
        tokio::task::yield_now().await;
        Ok::<_, Cancelled>(())
    }));
    assert!(futures_util::poll!(fut.as_mut()).is_pending());
    assert_eq!(
        format!("{fut:?}"),
        "ScopeFuture { started: true, finished: false, .. }"
    );
    fut.as_mut()
        .within(PAUSED_HANG, "the scope's end")
        .await
        .unwrap();
    assert_eq!(
        format!("{fut:?}"),
        "ScopeFuture { started: true, finished: true, .. }"
    );

    let shield = taskscope::shield(async {});
    assert_eq!(
        format!("{shield:?}"),
        "Shield { run: Run { active: false, finished: false, .. } }"
    );
    let moving = taskscope::move_on_after(Duration::from_secs(1), async {});
    assert_eq!(
        format!("{moving:?}"),
        "MoveOnAfter { run: Run { active: false, finished: false, .. } }"
    );
    let failing = taskscope::fail_after(Duration::from_secs(1), async {});
    assert_eq!(
        format!("{failing:?}"),
        "FailAfter { run: Run { active: false, finished: false, .. } }"
    );
}

#[test]
fn builders_debug_their_on_stuck_delay() {
    let plain = format!("{:?}", Scope::builder());
    assert!(
        plain.contains("watches: Watches { on_stuck: None, .. }"),
        "{plain}"
    );
    let watched = format!(
        "{:?}",
        Scope::builder().on_stuck(Duration::from_secs(3), |_| {})
    );
    assert!(
        watched.contains("watches: Watches { on_stuck: Some(3s), .. }"),
        "{watched}"
    );
}

#[tokio::test(start_paused = true)]
async fn waits_debug_what_they_wait_on() {
    let outside = taskscope::cancelled();
    assert_eq!(
        format!("{outside:?}"),
        "WaitForCancel { in_scope: false, registered: false }"
    );

    let r: Result<(), Cancelled> = scope(async |s| {
        let mut wait = Box::pin(taskscope::cancelled());
        assert_eq!(
            format!("{wait:?}"),
            "WaitForCancel { in_scope: true, registered: false }"
        );
        assert!(futures_util::poll!(wait.as_mut()).is_pending());
        assert_eq!(
            format!("{wait:?}"),
            "WaitForCancel { in_scope: true, registered: true }"
        );

        let start = s.start(|ready: taskscope::Ready<u32>| async move {
            assert_eq!(format!("{ready:?}"), "Ready");
            ready.started(7);
            Ok(())
        });
        assert_eq!(format!("{start:?}"), "Start { pending: true }");
        assert_eq!(start.within(PAUSED_HANG, "the child's start").await, Ok(7));

        let h = s.spawn(async { std::future::pending::<Result<(), Cancelled>>().await });
        assert_eq!(format!("{h:?}"), "TaskHandle { finished: false }");
        let children = s.wait_children();
        assert_eq!(format!("{children:?}"), "WaitChildren { idle: false }");
        s.cancel();
        Ok(())
    })
    .within(PAUSED_HANG, "the scope's return")
    .await;
    assert_eq!(r, Ok(()));
}

#[tokio::test]
async fn spawn_errors_say_why_the_child_was_not_spawned_and_what_to_do() {
    const CLOSED: &str = "the scope is closed: it already finished, so it cannot await a new \
                          child (spawn while the scope is running, or open a new scope)";
    const NO_RUNTIME: &str = "the scope was entered outside a Tokio runtime, so it cannot spawn \
                              (await the scope inside a runtime, e.g. under #[tokio::main])";
    const AT_LIMIT: &str = "the scope's concurrency limit is reached; wait for a slot with \
                            `reserve().await` or spawn to queue the child";

    // A handle that outlived its scope.
    let handle = scope(async |s| Ok::<_, Cancelled>(s.handle()))
        .within(HANG, "the scope's return")
        .await
        .unwrap();
    let closed = handle
        .spawn(async { Ok(()) })
        .expect_err("the scope finished");
    assert_eq!(closed.to_string(), CLOSED);
    let refused = handle
        .try_spawn(async { Ok(()) })
        .expect_err("the scope finished");
    assert_eq!(format!("{refused:?}"), "Closed(..)");
    assert!(
        !refused.is_at_limit(),
        "waiting would not help a closed scope"
    );
    assert_eq!(refused.to_string(), CLOSED);

    assert_eq!(SpawnError::NoRuntime.to_string(), NO_RUNTIME);
    let no_runtime = TrySpawnError::NoRuntime(());
    assert_eq!(format!("{no_runtime:?}"), "NoRuntime(..)");
    assert_eq!(no_runtime.to_string(), NO_RUNTIME);

    let r: Result<(), Cancelled> = Scope::builder()
        .limit(1)
        .run(async |s| {
            s.spawn(async { std::future::pending::<Result<(), Cancelled>>().await });
            let at_limit = s
                .try_spawn(async { Ok(()) })
                .expect_err("the only slot is taken");
            assert_eq!(format!("{at_limit:?}"), "AtLimit(..)");
            assert!(at_limit.is_at_limit());
            assert_eq!(at_limit.to_string(), AT_LIMIT);
            s.cancel();
            Ok(())
        })
        .within(HANG, "the limited scope's return")
        .await;
    assert_eq!(r, Ok(()));
}

#[tokio::test]
async fn reservations_debug_whether_they_wait_in_line() {
    let r: Result<(), Cancelled> = Scope::builder()
        .limit(1)
        .run(async |s| {
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let first = s.spawn(async move {
                let _ = rx.await;
                Ok(())
            });
            let mut reserve = s.reserve();
            assert_eq!(
                format!("{reserve:?}"),
                "Reserve(HandleReserve { queued: false })"
            );
            assert!(futures_util::poll!(&mut reserve).is_pending());
            assert_eq!(
                format!("{reserve:?}"),
                "Reserve(HandleReserve { queued: true })"
            );
            tx.send(()).unwrap();
            first.within(HANG, "the first child's end").await?;
            let permit = reserve.within(HANG, "the slot the first child freed").await;
            assert_eq!(format!("{permit:?}"), "SpawnPermit { .. }");
            drop(permit);
            let from_handle = s.handle().reserve();
            assert_eq!(
                format!("{from_handle:?}"),
                "HandleReserve { queued: false }"
            );
            Ok(())
        })
        .within(HANG, "the limited scope's return")
        .await;
    assert_eq!(r, Ok(()));
}

#[test]
fn races_debug_their_stagger() {
    use taskscope::future::Race;
    assert_eq!(format!("{:?}", Race::new()), "Race { stagger: None }");
    assert_eq!(
        format!("{:?}", Race::new().stagger(Duration::from_millis(250))),
        "Race { stagger: Some(250ms) }"
    );
}

#[tokio::test]
async fn scope_handles_debug_the_scope_they_point_to() {
    let h = Scope::builder()
        .name("jobs")
        .run(async |s| {
            let h = s.handle();
            assert_eq!(
                format!("{h:?}"),
                "ScopeHandle { name: Some(\"jobs\"), reason: None, deadline: None, closed: false }"
            );
            s.cancel();
            assert_eq!(
                format!("{h:?}"),
                "ScopeHandle { name: Some(\"jobs\"), reason: Some(Explicit), deadline: None, \
                 closed: false }"
            );
            Ok::<_, Cancelled>(h)
        })
        .within(HANG, "the scope's return of its handle")
        .await
        .unwrap();
    assert_eq!(
        format!("{h:?}"),
        "ScopeHandle { name: Some(\"jobs\"), reason: Some(Explicit), deadline: None, closed: true }"
    );
}

#[tokio::test]
async fn completions_debug_their_scope_and_how_many_results_are_left() {
    let r: Result<(), Cancelled> = Scope::builder()
        .name("fan-out")
        .run(async |s| {
            let mut c = taskscope::combinators::Completions::new(s.handle());
            c.spawn(async { Ok(1) }).expect("the scope is running");
            c.spawn(async { Ok(2) }).expect("the scope is running");
            assert_eq!(
                format!("{c:?}"),
                "Completions { scope: ScopeHandle { name: Some(\"fan-out\"), reason: None, \
                 deadline: None, closed: false }, len: 2 }"
            );
            Ok(())
        })
        .within(HANG, "the scope's return")
        .await;
    assert_eq!(r, Ok(()));
}

#[tokio::test(start_paused = true)]
async fn a_scope_debugs_its_name_reason_and_deadline() {
    let r: Result<(), Cancelled> = Scope::builder()
        .name("batch")
        .timeout(Duration::from_secs(2))
        .run(async |s| {
            let shown = format!("{s:?}");
            assert!(
                shown.starts_with("Scope { name: Some(\"batch\"), reason: None, deadline: Some("),
                "{shown}"
            );
            assert!(shown.ends_with("), closed: false }"), "{shown}");
            s.cancel();
            let shown = format!("{s:?}");
            assert!(shown.contains("reason: Some(Explicit)"), "{shown}");
            Ok(())
        })
        .within(PAUSED_HANG, "the scope's return")
        .await;
    assert_eq!(r, Ok(()));
}

#[tokio::test]
async fn local_handles_debug_whether_the_child_finished() {
    let r: Result<(), Cancelled> = scope(async |s| {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let h = s.spawn_local(async move {
            let _ = rx.await;
            Ok(())
        });
        assert_eq!(format!("{h:?}"), "LocalHandle { finished: false }");
        tx.send(()).unwrap();
        while !h.is_finished() {
            tokio::task::yield_now().await;
        }
        assert_eq!(format!("{h:?}"), "LocalHandle { finished: true }");
        h.await
    })
    .within(HANG, "the scope's return after its local child")
    .await;
    assert_eq!(r, Ok(()));
}

/// A cancel scope and its handle print what was set on the scope and what happened to it.
#[tokio::test(start_paused = true)]
async fn cancel_scopes_and_their_handles_debug_their_settings_and_cancel() {
    assert_eq!(
        format!("{:?}", CancelScope::new()),
        "CancelScope { name: None, deadline: None, shield: false, cancel_called: false }"
    );
    let named = CancelScope::new().name("fetch").shield(true);
    let handle = named.handle();
    assert_eq!(
        format!("{named:?}"),
        "CancelScope { name: Some(\"fetch\"), deadline: None, shield: true, cancel_called: false }"
    );
    assert_eq!(
        format!("{handle:?}"),
        "CancelHandle { name: Some(\"fetch\"), reason: None, deadline: None }"
    );
    handle.cancel();
    assert_eq!(
        format!("{named:?}"),
        "CancelScope { name: Some(\"fetch\"), deadline: None, shield: true, cancel_called: true }"
    );
    assert_eq!(
        format!("{handle:?}"),
        "CancelHandle { name: Some(\"fetch\"), reason: Some(Explicit), deadline: None }"
    );
    let timed = CancelScope::new().deadline(tokio::time::Instant::now() + Duration::from_secs(1));
    let printed = format!("{:?}", timed.handle());
    assert!(
        printed.starts_with("CancelHandle { name: None, reason: None, deadline: Some(")
            && printed.ends_with(") }"),
        "{printed}"
    );
}
