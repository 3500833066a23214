//! `start()`: trio's readiness handshake (modelled on trio's `test_nursery_start*`).

mod common;

use std::future::pending;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::time::Duration;

use common::{Census, Error, HANG, PAUSED_HANG, Within, finished_scope_handle, ms, rt_test, secs};
use taskscope::{CancelReason, Cancelled, Ready, Scope, ScopeHandle, move_on_after, scope, shield};
use tokio::time::Instant;

rt_test! {
    async fn start_returns_the_started_value_and_the_child_keeps_running() {
        let ran_on = Arc::new(AtomicBool::new(false));
        let flag = ran_on.clone();
        let r: Result<u32, Error> = scope(async |s| {
            let v = s
                .start(|ready| async move {
                    ready.started(42);
                    tokio::task::yield_now().await;
                    flag.store(true, SeqCst);
                    Ok(())
                })
                .await?;
            Ok(v)
        })
        .within(HANG, "the scope's return after the started child kept running")
        .await;
        assert_eq!(r, Ok(42));
        // The scope awaited the child after it started.
        assert!(ran_on.load(SeqCst));
    }
}

rt_test! {
    async fn error_before_started_comes_out_of_start_not_the_scope() {
        let r: Result<&str, Error> = scope(async |s| {
            let e = s
                .start(|_ready: taskscope::Ready<u32>| async { Err(Error::Boom(1)) })
                .await;
            assert_eq!(e, Err(Error::Boom(1)));
            assert!(!s.is_cancelled(), "an error before `started` must not fail the scope");
            Ok("scope ok")
        })
        .within(HANG, "the scope's return after start gave the child's early error")
        .await;
        assert_eq!(r, Ok("scope ok"));
    }
}

#[tokio::test]
async fn error_after_started_fails_the_scope() {
    let r: Result<(), Error> = scope(async |s| {
        let v = s
            .start(|ready| async move {
                ready.started(1u8);
                tokio::task::yield_now().await;
                Err(Error::Boom(2))
            })
            .await?;
        assert_eq!(v, 1);
        pending::<()>().await; // the child's error cancels the body
        Ok(())
    })
    .within(HANG, "the scope's return of the error after started")
    .await;
    assert_eq!(r, Err(Error::Boom(2)));
}

#[tokio::test]
async fn returning_without_started_is_an_error() {
    let r: Result<(), Error> = scope(async |s| {
        let e = s
            .start(|_ready: taskscope::Ready<()>| async { Ok(()) })
            .await;
        assert_eq!(e, Err(Error::Cancelled(CancelReason::NotStarted)));
        Ok(())
    })
    .within(
        HANG,
        "the scope's return after a child returned without started",
    )
    .await;
    assert_eq!(r, Ok(()));
}

#[tokio::test]
async fn panic_before_started_is_resumed_in_the_caller() {
    let r = tokio::spawn(async {
        scope(async |s| {
            let caught = futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(
                s.start(|_ready: taskscope::Ready<()>| async {
                    panic!("not ready");
                    #[allow(unreachable_code)]
                    Ok::<(), Cancelled>(())
                }),
            ))
            .await;
            let payload = caught.unwrap_err();
            assert_eq!(payload.downcast_ref::<&str>(), Some(&"not ready"));
            Ok::<_, Cancelled>("scope survives")
        })
        .await
    })
    .within(HANG, "the task's end after start resumed the child's panic")
    .await
    .unwrap();
    assert_eq!(r, Ok("scope survives"));
}

#[tokio::test(start_paused = true)]
async fn cancelling_the_caller_cancels_the_child_before_it_started() {
    let census = Census::new();
    let r: Result<(), Error> = scope(async |s| {
        let g = census.guard();
        let out = move_on_after(
            secs(1),
            s.start(|_ready: taskscope::Ready<()>| async move {
                let _g = g;
                pending::<()>().await;
                Ok(())
            }),
        )
        .await;
        assert!(out.is_none(), "the caller timed out");
        Ok(())
    })
    .within(
        PAUSED_HANG,
        "the scope's return after the caller's timeout cancelled the unstarted child",
    )
    .await;
    assert_eq!(r, Ok(()));
    assert_eq!(census.alive(), 0);
}

#[tokio::test(start_paused = true)]
async fn caller_cancel_scope_cancel_reaches_the_unstarted_child() {
    let census = Census::new();
    let r: Result<Result<(), Error>, Cancelled> = taskscope::CancelScope::new()
        .grace(secs(10))
        .timeout(secs(1))
        .run(scope(async |s| {
            // A scope inside the cancel scope: the caller is the body, whose ancestor is
            // cancelled (softly) at 1s; the child has not started: `start` gives up.
            let g = census.guard();
            let t0 = Instant::now();
            let out = s
                .start(|_ready: taskscope::Ready<()>| async move {
                    let _g = g;
                    pending::<()>().await;
                    Ok(())
                })
                .await;
            assert_eq!(out, Err(Error::Cancelled(CancelReason::ParentCancelled)));
            assert_eq!(t0.elapsed(), secs(1));
            Ok(())
        }))
        .within(
            PAUSED_HANG,
            "the scope's return after a cancel scope's cancel reached the unstarted child",
        )
        .await;
    assert!(r.is_ok());
    assert_eq!(census.alive(), 0);
}

/// The caller of `start` is not under the scope's node (a plain task holding a
/// `ScopeHandle`). The scope is cancelled before the child called `started`: the child is
/// aborted, so it never writes an outcome, and the caller's `cancelled()` is not the scope's.
/// A regression test: `Start` did not watch the child's task, so it waited forever.
#[tokio::test(start_paused = true)]
async fn start_from_outside_resolves_when_the_unstarted_child_is_cancelled() {
    let (tx, rx) = tokio::sync::oneshot::channel::<ScopeHandle<Error>>();
    let caller = tokio::spawn(async move {
        let h = rx.await.unwrap();
        let st = h
            .start(|ready: Ready<u8>| async move {
                tokio::time::sleep(secs(10)).await;
                ready.started(1);
                Ok(())
            })
            .unwrap();
        tokio::time::timeout(secs(60), st).await
    });
    let r: Result<(), Error> = scope(async |s| {
        tx.send(s.handle()).ok();
        tokio::time::sleep(ms(100)).await; // the child of `start` is running, not started
        s.cancel();
        Ok(())
    })
    .within(
        PAUSED_HANG,
        "the cancelled scope's return with an unstarted child of an outside caller",
    )
    .await;
    assert_eq!(r, Ok(()));
    let res = caller
        .within(PAUSED_HANG, "the outside caller's end")
        .await
        .unwrap();
    assert!(
        matches!(res, Ok(Err(Error::Cancelled(_)))),
        "start() must resolve (with a cancellation) once its child is gone, got {res:?}"
    );
}

/// `start()` into a soft-cancelled scope (during its grace period) from a shield: the child is
/// refused (never runs), and the caller's `cancelled()` is the shield's. A regression test:
/// `start` never resolved, the shield never ended, and the scope (which keeps polling a live
/// shield) hung.
#[tokio::test(start_paused = true)]
async fn start_in_a_cancelled_scope_from_a_shield_does_not_hang() {
    let fut = Scope::builder()
        .grace(secs(1))
        .run(async |s| -> Result<(), Error> {
            s.cancel(); // soft: cleanup time
            // Cleanup that must not be interrupted: start a helper and wait until it is ready.
            let r = shield(async {
                s.start(|ready: Ready<u8>| async move {
                    ready.started(5);
                    Ok(())
                })
                .await
            })
            .await;
            assert!(r.is_err(), "a cancelled scope refuses the child: {r:?}");
            Ok(())
        });
    let r = tokio::time::timeout(secs(60), fut).await;
    assert!(
        r.is_ok(),
        "the scope hung on a start() whose child was refused"
    );
}

#[tokio::test(start_paused = true)]
async fn after_started_the_callers_cancellation_no_longer_reaches_the_child() {
    let done = Arc::new(AtomicBool::new(false));
    let flag = done.clone();
    let r: Result<(), Error> = scope(async |s| {
        let h = s.handle();
        // The caller is a cancel scope that times out after the child started.
        let out = move_on_after(secs(1), async move {
            let v = h
                .start(|ready| async move {
                    ready.started(());
                    tokio::time::sleep(secs(5)).await;
                    flag.store(true, SeqCst);
                    Ok(())
                })
                .unwrap()
                .await;
            assert!(v.is_ok());
            pending::<()>().await;
        })
        .await;
        assert!(out.is_none());
        Ok(())
    })
    .within(
        PAUSED_HANG,
        "the scope's return after its started child ran to its end",
    )
    .await;
    assert_eq!(r, Ok(()));
    assert!(
        done.load(SeqCst),
        "the started child ran to its end in the scope"
    );
}

#[tokio::test(start_paused = true)]
async fn a_pending_start_keeps_the_scope_open() {
    let t0 = Instant::now();
    let started_at = Arc::new(std::sync::Mutex::new(None));
    let at = started_at.clone();
    let r: Result<(), Error> = scope(async |s| {
        let h = s.handle();
        // A child calls start on the scope and the body returns at once: the scope must
        // stay open until the started child finished.
        s.spawn(async move {
            let v = h
                .start(|ready| async move {
                    tokio::time::sleep(ms(300)).await;
                    ready.started(7u8);
                    tokio::time::sleep(ms(200)).await;
                    Ok(())
                })
                .unwrap()
                .await?;
            *at.lock().unwrap() = Some((v, t0.elapsed()));
            Ok(())
        });
        Ok(())
    })
    .within(
        PAUSED_HANG,
        "the scope's return after the pending start's child finished",
    )
    .await;
    assert_eq!(r, Ok(()));
    assert_eq!(t0.elapsed(), ms(500));
    assert_eq!(*started_at.lock().unwrap(), Some((7, ms(300))));
}

#[tokio::test]
async fn start_into_a_finished_scope_is_a_clear_error() {
    let e = finished_scope_handle()
        .await
        .start(|ready| async move {
            ready.started(());
            Ok(())
        })
        .unwrap_err();
    assert_eq!(e, taskscope::SpawnError::Closed);
}

#[tokio::test(start_paused = true)]
async fn failure_before_started_after_the_caller_left_goes_to_the_scope() {
    // The caller drops the `start` future (a select lost) after the child failed but before
    // the failure was looked at: the error is not lost, the scope returns it.
    let r: Result<(), Error> = Scope::builder()
        .run(async |s| {
            let st = s.start(|_ready: taskscope::Ready<()>| async { Err(Error::Boom(9)) });
            tokio::time::sleep(Duration::from_millis(10)).await; // the child ran and failed
            drop(st);
            Ok(())
        })
        .within(
            PAUSED_HANG,
            "the scope's return of the error of a child whose start was dropped",
        )
        .await;
    assert_eq!(r, Err(Error::Boom(9)));
}

#[tokio::test]
async fn a_panic_after_started_is_re_raised_by_the_scope() {
    let task = tokio::spawn(async {
        scope(async |s| {
            s.start(|ready| async move {
                ready.started(());
                tokio::task::yield_now().await;
                panic!("after started");
                #[allow(unreachable_code)]
                Ok::<(), Cancelled>(())
            })
            .await?;
            pending::<()>().await; // the child's panic cancels the body
            Ok::<_, Cancelled>(())
        })
        .await
    })
    .within(
        HANG,
        "the end of the task whose scope re-raised the child's panic",
    )
    .await;
    let payload = task
        .expect_err("the scope re-raised the panic")
        .into_panic();
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"after started"));
}

#[tokio::test(start_paused = true)]
async fn a_panic_before_started_after_the_caller_left_is_re_raised_by_the_scope() {
    // As `failure_before_started_after_the_caller_left_goes_to_the_scope`, with a panic.
    let task = tokio::spawn(async {
        scope(async |s| {
            let st = s.start(|_ready: Ready<()>| async {
                panic!("not ready, nobody looking");
                #[allow(unreachable_code)]
                Ok::<(), Cancelled>(())
            });
            tokio::time::sleep(Duration::from_millis(10)).await; // the child ran and panicked
            drop(st);
            Ok::<_, Cancelled>(())
        })
        .await
    })
    .within(
        PAUSED_HANG,
        "the end of the task whose scope re-raised the panic of a child whose start was dropped",
    )
    .await;
    let payload = task
        .expect_err("the scope re-raised the panic")
        .into_panic();
    assert_eq!(
        payload.downcast_ref::<&str>(),
        Some(&"not ready, nobody looking")
    );
}

#[tokio::test(start_paused = true)]
async fn a_child_that_fails_after_its_caller_gave_up_on_it_fails_the_scope() {
    // The caller of `start` runs in a cancel scope that times out (with a grace period, so
    // `start` sees the cancellation) before the child started: `start` gives up and cancels
    // the child, which finishes its shielded part and fails. Nobody waits for the start any
    // more, so the error is the scope's, as any child's.
    let r: Result<(), Error> = scope(async |s| {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let out = taskscope::CancelScope::new()
            .grace(secs(10))
            .timeout(secs(1))
            .run(async {
                s.start(|_ready: Ready<()>| async move {
                    shield(async move {
                        let _ = rx.await;
                    })
                    .await;
                    Err(Error::Boom(5))
                })
                .await
            })
            .await;
        assert_eq!(
            out,
            Ok(Err(Error::Cancelled(CancelReason::DeadlineExceeded))),
            "start gave up at its caller's deadline"
        );
        tx.send(()).unwrap();
        pending::<()>().await; // the child's error cancels the body
        Ok(())
    })
    .within(
        PAUSED_HANG,
        "the scope's return of the error of a child whose caller gave up",
    )
    .await;
    assert_eq!(r, Err(Error::Boom(5)));
}
