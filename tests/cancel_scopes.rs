//! Cancel scopes: scenarios C1–C7 (`docs/scenarios.md`).

mod common;

use std::future::pending;
use std::time::Duration;

use common::{Counter, HANG, PAUSED_HANG, Within, rt_test};
use taskscope::{CancelReason, CancelScope, Cancelled, Scope, checkpoint, is_cancelled, scope};
use tokio::time::sleep;

rt_test! {
    async fn c1_checkpoint_noop_until_cancelled_then_fails_every_time() {
        // Soft phase (a grace period): checkpoint() reports the cancellation, every time.
        let cs = CancelScope::new().grace(Duration::from_secs(3600));
        let h = cs.handle();
        let r = cs
            .run(async move {
                for _ in 0..3 {
                    assert_eq!(checkpoint().await, Ok(()));
                }
                h.cancel();
                for _ in 0..3 {
                    let e = checkpoint().await.unwrap_err();
                    assert_eq!(e.reason(), CancelReason::Explicit);
                }
                "finished during grace"
            })
            .within(HANG, "the cancel scope's return during its grace period")
            .await;
        assert_eq!(r, Ok("finished during grace"));
    }
}

rt_test! {
    async fn c1_checkpoint_under_hard_cancel_never_returns() {
        let after = Counter::new();
        let a = after.clone();
        let cs = CancelScope::new();
        let h = cs.handle();
        let r = cs
            .run(async move {
                h.cancel();
                let _ = checkpoint().await;
                a.inc();
            })
            .within(HANG, "the hard-cancelled cancel scope's return at its checkpoint")
            .await;
        assert_eq!(r.unwrap_err().reason(), CancelReason::Explicit);
        assert_eq!(after.get(), 0, "the future was dropped at the checkpoint");
    }
}

rt_test! {
    async fn c2_cancel_is_idempotent_and_does_nothing_after_exit() {
        let cs = CancelScope::new();
        let h = cs.handle();
        let h2 = h.clone();
        let r = cs
            .run(async move {
                h2.cancel();
                h2.cancel();
                checkpoint().await
            })
            .within(HANG, "the cancelled cancel scope's return")
            .await;
        assert_eq!(r.unwrap_err().reason(), CancelReason::Explicit);
        assert!(h.cancel_called() && h.cancelled_caught());

        let cs = CancelScope::new();
        let h = cs.handle();
        let r = cs
            .run(async { 1 })
            .within(HANG, "the cancel scope's return of its value")
            .await;
        assert_eq!(r, Ok(1));
        assert!(h.is_finished());
        h.cancel();
        h.cancel();
        assert!(!h.cancel_called(), "a cancel after exit does nothing");
        assert!(!h.is_cancelled());
        assert_eq!(h.reason(), None);
    }
}

rt_test! {
    async fn c3_nested_outer_cancelled_catches() {
        let s1 = CancelScope::new();
        let s2 = CancelScope::new();
        let s3 = CancelScope::new();
        let (h1, h2, h3) = (s1.handle(), s2.handle(), s3.handle());
        let (i2, i3) = (h2.clone(), h3.clone());
        let r1 = s1
            .run(async move {
                s2.run(async move {
                    s3.run(async move {
                        i3.cancel();
                        i2.cancel();
                        checkpoint().await
                    })
                    .await
                })
                .await
            })
            .within(HANG, "the return of three nested cancel scopes, the middle one catching")
            .await;
        let r2 = r1.expect("s1 untouched");
        assert_eq!(r2.unwrap_err().reason(), CancelReason::Explicit);
        assert!(h3.cancel_called());
        assert!(!h3.cancelled_caught(), "s3 was cancelled but s2, further out, caught");
        assert!(h2.cancel_called() && h2.cancelled_caught());
        assert!(!h1.cancel_called() && !h1.cancelled_caught());
    }
}

rt_test! {
    async fn c4_undelivered_cancel_is_discarded_at_exit() {
        let outer = CancelScope::new();
        let oh = outer.handle();
        let r = outer
            .run(async {
                let cs = CancelScope::new();
                let h = cs.handle();
                let inner = cs
                    .run(async move {
                        h.cancel(); // no checkpoint after this
                        42
                    })
                    .await;
                // The enclosing code is not affected.
                (inner, is_cancelled(), checkpoint().await)
            })
            .within(
                HANG,
                "the outer cancel scope's return after the inner one discarded its cancel",
            )
            .await;
        assert_eq!(r, Ok((Ok(42), false, Ok(()))));
        assert!(!oh.cancel_called());
    }
}

#[tokio::test(start_paused = true)]
async fn c5_reasons_reported_and_first_sticks() {
    // Explicit.
    let r: Result<(), Cancelled> = scope(async |s| {
        s.cancel();
        pending::<()>().await;
        Ok(())
    })
    .within(PAUSED_HANG, "the explicitly cancelled scope's return")
    .await;
    assert_eq!(r.unwrap_err().reason(), CancelReason::Explicit);

    // Deadline.
    let r: Result<(), Cancelled> = Scope::builder()
        .timeout(Duration::from_secs(1))
        .run(async |_s| {
            pending::<()>().await;
            Ok(())
        })
        .within(PAUSED_HANG, "the scope's return at its deadline")
        .await;
    assert_eq!(r.unwrap_err().reason(), CancelReason::DeadlineExceeded);

    // Child failure: the scope's node records ChildFailed; a sibling's handle says it was
    // cancelled from above.
    let mut handle = None;
    let r: Result<(), Cancelled> = scope(async |s| {
        handle = Some(s.cancel_handle());
        let sib = s.spawn(async {
            pending::<()>().await;
            Ok(())
        });
        s.spawn(async { Err::<(), _>(Cancelled::new(CancelReason::Shutdown)) });
        let e = sib
            .within(
                PAUSED_HANG,
                "the sibling's handle resolving after the other child failed",
            )
            .await
            .unwrap_err();
        assert_eq!(e.reason(), CancelReason::ParentCancelled);
        Ok(())
    })
    .within(PAUSED_HANG, "the scope's return after a child failed")
    .await;
    assert_eq!(
        r.unwrap_err().reason(),
        CancelReason::Shutdown,
        "the child's own error"
    );
    assert_eq!(handle.unwrap().reason(), Some(CancelReason::ChildFailed));

    // First reason sticks: an explicit cancel, then the deadline passes during the grace.
    let cs = CancelScope::new()
        .timeout(Duration::from_secs(1))
        .grace(Duration::from_secs(10));
    let h = cs.handle();
    let r = cs
        .run(async move {
            h.cancel();
            sleep(Duration::from_secs(5)).await; // past the deadline, within the grace
            pending::<()>().await
        })
        .within(PAUSED_HANG, "the cancel scope's return after its grace")
        .await;
    assert_eq!(r.unwrap_err().reason(), CancelReason::Explicit);
}

rt_test! {
    async fn c6_cancelled_before_entry_cancels_at_once() {
        let polled = Counter::new();
        let p = polled.clone();
        let cs = CancelScope::new();
        let h = cs.handle();
        h.cancel();
        assert!(h.cancel_called());
        let r = cs
            .run(async move { p.inc() })
            .within(HANG, "the return of a cancel scope cancelled before entry")
            .await;
        assert_eq!(r.unwrap_err().reason(), CancelReason::Explicit);
        assert_eq!(polled.get(), 0, "the inner future was never polled");
        assert!(h.cancelled_caught());
    }
}

rt_test! {
    async fn c7_cancelling_middle_node_cancels_only_its_subtree() {
        let s1 = CancelScope::new();
        let s2 = CancelScope::new().grace(Duration::from_secs(3600));
        let h1 = s1.handle();
        let h2 = s2.handle();
        let r = s1
            .run(async move {
                let middle = s2.run(async move {
                    h2.cancel();
                    let in_s2 = is_cancelled();
                    let in_s3 = CancelScope::new().run(async { is_cancelled() }).await;
                    (in_s2, in_s3)
                });
                let sibling = CancelScope::new().run(async { is_cancelled() });
                let (m, sib) = tokio::join!(middle, sibling);
                (m, sib, is_cancelled())
            })
            .within(HANG, "the cancel scope's return after its middle node was cancelled")
            .await;
        assert_eq!(r, Ok((Ok((true, Ok(true))), Ok(false), false)));
        assert!(!h1.cancel_called());
    }
}

rt_test! {
    async fn c7_cancelling_middle_scope_spares_parent_and_sibling_scopes() {
        let survived = Counter::new();
        let r: Result<(), Cancelled> = scope(async |outer| {
            let sv = survived.clone();
            outer.spawn(async move {
                // Sibling subtree: keeps running after the middle node is cancelled.
                tokio::task::yield_now().await;
                sv.inc();
                Ok(())
            });
            let middle: Result<(), Cancelled> = scope(async |m| {
                m.spawn(async {
                    pending::<()>().await;
                    Ok(())
                });
                m.cancel();
                Ok(())
            })
            .within(HANG, "the middle scope's return after its own cancel")
            .await;
            assert_eq!(middle, Ok(()));
            assert!(!is_cancelled(), "the parent is untouched");
            Ok(())
        })
        .within(HANG, "the outer scope's return after the middle scope was cancelled")
        .await;
        assert_eq!(r, Ok(()));
        assert_eq!(survived.get(), 1);
    }
}

/// A cancel scope's future dropped before its first poll is finished, as a scope's is: its
/// node never entered the tree and leaves it for good, so a later cancel does nothing.
#[tokio::test]
async fn a_cancel_scope_dropped_before_its_first_poll_is_finished() {
    let cs = CancelScope::new();
    let h = cs.handle();
    drop(cs.run(async {}));
    assert!(h.is_finished());
    h.cancel();
    assert!(!h.cancel_called(), "a cancel after the end is discarded");
}

/// A soft cancel (a grace period to run) made while nothing waits on the scope yet (its
/// future is in its first poll, before any wait: no owner registered, no `cancelled()`
/// waiter, no task to abort) still reaches the scopes nested below it: there is nothing to
/// wake, but there is a cancel to spread.
#[tokio::test(start_paused = true)]
async fn a_soft_cancel_with_nothing_to_wake_still_reaches_the_nested_scopes() {
    let r: Result<bool, Cancelled> = Scope::builder()
        .grace(Duration::from_secs(1))
        .run(async |outer| {
            scope(async |_inner: Scope<'_, Cancelled>| {
                outer.cancel(); // soft: the grace period starts
                Ok(is_cancelled())
            })
            .await
        })
        .within(PAUSED_HANG, "the scopes' return")
        .await;
    assert_eq!(
        r,
        Ok(true),
        "the nested scope saw the cancel of the scope around it"
    );
}

/// A cancel scope's handle answers what happened to the scope: cancelled (on its own
/// account or an ancestor's), finished, no error suppressed.
#[tokio::test(start_paused = true)]
async fn a_cancel_scope_s_handle_answers_what_happened_to_it() {
    let cs = CancelScope::new();
    let h = cs.handle();
    assert!(!h.is_cancelled() && !h.is_finished());
    assert_eq!(h.suppressed_errors(), 0);
    let inside = h.clone();
    let r = cs
        .run(async move {
            assert!(!inside.is_cancelled() && !inside.is_finished());
            inside.cancel();
            assert!(inside.is_cancelled(), "cancelled on its own account");
            assert!(!inside.is_finished(), "still running");
            pending::<()>().await;
        })
        .within(
            PAUSED_HANG,
            "the cancel scope's return after its own cancel",
        )
        .await;
    assert_eq!(r.unwrap_err().reason(), CancelReason::Explicit);
    assert!(h.is_cancelled() && h.is_finished());
    assert_eq!(h.suppressed_errors(), 0);

    // Cancelled through an ancestor: the handle sees it too, with no reason of its own.
    let r: Result<(), Cancelled> = scope(async |s| {
        let cs = CancelScope::new();
        let h = cs.handle();
        cs.run(async {
            s.cancel();
            assert!(h.is_cancelled(), "an ancestor's cancel reaches it");
            assert_eq!(h.reason(), None);
        })
        .await?;
        Ok(())
    })
    .within(PAUSED_HANG, "the scope's return after its own cancel")
    .await;
    assert_eq!(r, Ok(()), "the body completed: its value is kept");
}

/// A grace period set through the handle holds for the scope's next cancel: the future
/// inside sees the cancel, cleans up within the grace period and returns its value.
#[tokio::test(start_paused = true)]
async fn a_grace_period_set_through_the_handle_lets_the_future_clean_up() {
    let t0 = tokio::time::Instant::now();
    let cs = CancelScope::new();
    let h = cs.handle();
    h.set_grace(Duration::from_millis(100));
    let r = cs
        .run(async {
            sleep(Duration::from_secs(1)).await;
            h.cancel();
            taskscope::cancelled().await;
            sleep(Duration::from_millis(50)).await;
            "cleaned up"
        })
        .within(PAUSED_HANG, "the cancel scope's return after the cleanup")
        .await;
    assert_eq!(r, Ok("cleaned up"));
    assert_eq!(t0.elapsed(), Duration::from_millis(1050));
}

/// A cancel scope that caught its own cancel drops the future it ran before it returns
/// (not later, with the cancel scope's own future).
#[tokio::test(start_paused = true)]
async fn a_cancel_scope_drops_the_future_it_caught_before_it_returns() {
    use std::task::{Context, Poll, Waker};

    let census = common::Census::new();
    let g = census.guard();
    let cs = CancelScope::new();
    let h = cs.handle();
    let mut run = Box::pin(cs.run(async move {
        let _g = g;
        pending::<()>().await;
    }));
    let mut cx = Context::from_waker(Waker::noop());
    assert!(run.as_mut().poll(&mut cx).is_pending());
    assert_eq!(census.alive(), 1);
    h.cancel();
    match run.as_mut().poll(&mut cx) {
        Poll::Ready(r) => assert_eq!(r.unwrap_err().reason(), CancelReason::Explicit),
        Poll::Pending => panic!("a cancel scope with nothing below waits after its cancel"),
    }
    assert_eq!(
        census.alive(),
        0,
        "the caught future was dropped before the return"
    );
}
