//! Task handles (value, failed, panicked, cancelled one by one), the ambient functions
//! outside any scope, and the error conversions.

mod common;

use std::future::{Future, pending};
use std::sync::Arc;
use std::task::{Context, Waker};
use std::time::Duration;

use common::{Census, Counter, CountingWaker, HANG, Within, rt_test};
use futures_util::FutureExt;
use taskscope::{
    CancelReason, CancelScope, Cancelled, cancelled, checkpoint, current_deadline, is_cancelled,
    scope,
};

rt_test! {
    async fn task_handle_cancel_cancels_one_child_only() {
        let census = Census::new();
        let finished = Counter::new();
        let (c, f) = (census.clone(), finished.clone());
        let mut cancel_called = None;
        let r: Result<u32, Cancelled> = scope(async |s| {
            cancel_called = Some(s.cancel_handle());
            let g = c.guard();
            let stuck = s.spawn(async move {
                let _g = g;
                pending::<()>().await;
                Ok(0)
            });
            let fine = s.spawn(async move {
                tokio::task::yield_now().await;
                f.inc();
                Ok(7)
            });
            stuck.cancel();
            stuck.cancel(); // idempotent
            assert_eq!(stuck.await.unwrap_err().reason(), CancelReason::Explicit);
            assert!(!taskscope::is_cancelled(), "the scope is not cancelled");
            fine.await
        })
        .within(HANG, "the scope's return after one child was cancelled through its handle")
        .await;
        assert_eq!(r, Ok(7));
        assert_eq!(finished.get(), 1);
        assert_eq!(census.alive(), 0);
        assert!(!cancel_called.unwrap().cancel_called(), "the scope itself was never cancelled");
    }
}

rt_test! {
    async fn task_handle_tells_failed_from_panicked_from_cancelled() {
        #[derive(Debug, PartialEq)]
        struct Boom;
        impl From<Cancelled> for Boom {
            fn from(_: Cancelled) -> Self {
                Boom
            }
        }
        // Failed: the error goes to the scope, the handle says ChildFailed.
        let r: Result<(), Boom> = scope(async |s| {
            let h = s.spawn(async { Err::<(), _>(Boom) });
            let sibling = s.spawn(async {
                pending::<()>().await;
                Ok(())
            });
            assert_eq!(h.await.unwrap_err().reason(), CancelReason::ChildFailed);
            assert_eq!(sibling.await.unwrap_err().reason(), CancelReason::ParentCancelled);
            Ok(())
        })
        .within(HANG, "the scope's return of its child's error")
        .await;
        assert_eq!(r, Err(Boom));

        // Panicked: the handle says ChildPanicked, the scope re-raises the payload.
        let caught = std::panic::AssertUnwindSafe(scope(async |s| {
            let h = s.spawn(async {
                if true {
                    std::panic::panic_any(42u32);
                }
                Ok::<(), Cancelled>(())
            });
            assert_eq!(h.await.unwrap_err().reason(), CancelReason::ChildPanicked);
            Ok::<(), Cancelled>(())
        }))
        .catch_unwind()
        .within(HANG, "the scope's re-raise of its child's panic")
        .await;
        assert_eq!(caught.unwrap_err().downcast_ref::<u32>(), Some(&42));
    }
}

rt_test! {
    /// `is_finished` (and the handle's `Debug`) says whether the child ended: `false` while
    /// it runs, `true` once it ended (before the handle is awaited), and `true` for a child
    /// never started (spawned into a cancelled scope).
    async fn a_task_handle_says_whether_its_child_finished() {
        let r: Result<(), Cancelled> = scope(async |s| {
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let h = s.spawn(async move {
                rx.await.ok();
                Ok(5)
            });
            assert!(!h.is_finished(), "the child waits");
            assert_eq!(format!("{h:?}"), "TaskHandle { finished: false }");
            tx.send(()).unwrap();
            async {
                while !h.is_finished() {
                    tokio::task::yield_now().await;
                }
            }
            .within(HANG, "the handle's report of the child's end")
            .await;
            assert_eq!(format!("{h:?}"), "TaskHandle { finished: true }");
            assert_eq!(h.await, Ok(5));
            s.cancel();
            let refused = s.spawn(async { Ok(()) });
            assert_eq!(refused.id(), None, "never started");
            assert!(refused.is_finished(), "a child never started is finished");
            Ok(())
        })
        .within(HANG, "the scope's return after its child ended")
        .await;
        assert_eq!(r, Ok(()));
    }
}

#[tokio::test(start_paused = true)]
async fn ambient_functions_outside_any_scope_are_harmless() {
    assert!(!is_cancelled());
    assert_eq!(checkpoint().await, Ok(()));
    assert_eq!(current_deadline(), None);
    let never = tokio::time::timeout(Duration::from_secs(3600), cancelled()).await;
    assert!(never.is_err(), "outside a scope nothing is ever cancelled");
    // And in a plain spawned task.
    let r = tokio::spawn(async { (is_cancelled(), current_deadline()) })
        .await
        .unwrap();
    assert_eq!(r, (false, None));
    // In a blocking thread.
    let r = tokio::task::spawn_blocking(is_cancelled).await.unwrap();
    assert!(!r);
}

/// A `cancelled()` future dropped while it waits leaves no waker with its node: the node
/// neither keeps it (a `select!` loop that drops a `cancelled()` each turn would pile them
/// up until the cancel) nor wakes it at the cancel.
#[tokio::test]
async fn a_dropped_cancelled_future_leaves_no_waker_behind() {
    let cs = CancelScope::new();
    let h = cs.handle();
    let counting = CountingWaker::new();
    let c = counting.clone();
    let r = cs
        .run(async move {
            let waker = Waker::from(c.clone());
            let mut wait = Box::pin(cancelled());
            assert!(
                wait.as_mut()
                    .poll(&mut Context::from_waker(&waker))
                    .is_pending(),
                "nothing is cancelled yet"
            );
            drop(waker);
            assert_eq!(
                Arc::strong_count(&c),
                3,
                "the node holds the waiting future's waker"
            );
            drop(wait);
            assert_eq!(
                Arc::strong_count(&c),
                2,
                "the dropped future's waker is still with the node"
            );
            h.cancel();
            assert_eq!(c.wakes(), 0, "the cancel woke the dropped future");
            checkpoint().await
        })
        .within(HANG, "the cancelled cancel scope's return")
        .await;
    assert_eq!(r.unwrap_err().reason(), CancelReason::Explicit);
    assert_eq!(counting.wakes(), 0);
}

#[test]
fn cancelled_is_an_error_and_converts_into_io_error() {
    fn is_error<E: std::error::Error + Send + Sync + 'static>(_: &E) {}
    let c = Cancelled::new(CancelReason::DeadlineExceeded);
    is_error(&c);
    assert_eq!(c.to_string(), "cancelled: deadline exceeded");
    let io: std::io::Error = c.into();
    assert_eq!(io.kind(), std::io::ErrorKind::TimedOut);
    let inner = io.get_ref().and_then(|e| e.downcast_ref::<Cancelled>());
    assert_eq!(inner, Some(&c));
    let io: std::io::Error = Cancelled::new(CancelReason::Explicit).into();
    assert_eq!(
        io.kind(),
        std::io::ErrorKind::Other,
        "never Interrupted (I/O loops retry it)"
    );
    let boxed: Box<dyn std::error::Error + Send + Sync> = c.into();
    assert!(boxed.downcast_ref::<Cancelled>().is_some());
}

rt_test! {
    async fn a_scope_handle_counts_and_cancels_the_children_and_reads_the_scope_state() {
        let mut kept = None;
        let r: Result<(), Cancelled> = scope(async |s| {
            let h = s.handle();
            kept = Some(h.clone());
            let a = s.spawn(pending::<Result<(), Cancelled>>());
            let b = s.spawn(pending::<Result<(), Cancelled>>());
            tokio::task::yield_now().await;
            assert_eq!(h.running_children(), 2);
            h.cancel_children();
            for child in [a, b] {
                let r = child
                    .within(HANG, "a child's end after the handle cancelled the children")
                    .await;
                assert_eq!(r.unwrap_err().reason(), CancelReason::ParentCancelled);
            }
            assert_eq!(h.running_children(), 0);
            assert!(!h.is_cancelled(), "the scope itself is not cancelled");
            assert!(!h.is_closed(), "the scope runs");
            s.cancel();
            assert!(h.is_cancelled());
            Ok(())
        })
        .within(HANG, "the scope's return")
        .await;
        assert_eq!(r, Ok(()));
        assert!(kept.unwrap().is_closed(), "the scope finished");
    }
}
