//! What a `JoinSet` (or `TaskTracker`) user reaches for, on a scope: cancel the children but
//! not the body, count the running children, wait for the children so far, a task id on
//! handles.

mod common;

use std::future::{Future, pending};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::task::{Context, Waker};

use common::{
    Census, CountingWaker, Error, HANG, PAUSED_HANG, Within, ms, poll_with_two_wakers, rt_test,
    secs, woken_through_the_latest,
};
use taskscope::{CancelReason, Cancelled, Scope, scope, shield};
use tokio::time::{Instant, sleep};

rt_test! {
    /// `cancel_children` ends the children spawned so far; the body goes on, spawns
    /// another child, and the scope returns the body's value once all are gone.
    async fn cancel_children_ends_the_children_but_not_the_body() {
        let census = Census::new();
        let r: Result<u32, Cancelled> = tokio::time::timeout(secs(10), scope(async |s| {
            let handles: Vec<_> = (0..3)
                .map(|_| {
                    let g = census.guard();
                    s.spawn(async move {
                        let _g = g;
                        pending::<Result<u32, Cancelled>>().await
                    })
                })
                .collect();
            tokio::task::yield_now().await;
            assert_eq!(s.running_children(), 3);
            s.cancel_children();
            for h in handles {
                assert_eq!(h.await.unwrap_err().reason(), CancelReason::ParentCancelled);
            }
            assert!(!s.is_cancelled(), "the scope itself is not cancelled");
            assert_eq!(s.running_children(), 0);
            let later = s.spawn(async { Ok(4) });
            later.await
        }))
        .await
        .expect("hang: the scope whose children were cancelled did not end within 10 s");
        assert_eq!(r, Ok(4));
        assert_eq!(census.alive(), 0);
    }
}

/// A child in a shield finishes the shield before `cancel_children` ends it, as for a
/// cancel of the scope.
#[tokio::test(start_paused = true)]
async fn cancel_children_lets_a_shield_finish() {
    let t0 = Instant::now();
    let r: Result<(), Cancelled> = scope(async |s| {
        let h = s.spawn(async {
            shield(sleep(ms(50))).await;
            pending::<Result<(), Cancelled>>().await
        });
        sleep(ms(10)).await;
        s.cancel_children();
        assert_eq!(h.await.unwrap_err().reason(), CancelReason::ParentCancelled);
        assert_eq!(t0.elapsed(), ms(50), "the shielded part ran to its end");
        Ok(())
    })
    .within(PAUSED_HANG, "the scope's end after the shielded child")
    .await;
    assert_eq!(r, Ok(()));
}

/// `wait_children` returns once the children so far (and those they spawned) are done,
/// and the scope then accepts more.
#[tokio::test(start_paused = true)]
async fn wait_children_waits_for_the_children_so_far_and_the_scope_goes_on() {
    let t0 = Instant::now();
    let done = Arc::new(AtomicUsize::new(0));
    let r: Result<usize, Error> = scope(async |s: Scope<'_, Error>| {
        for i in 1..=3u64 {
            let (d, h) = (done.clone(), s.handle());
            s.spawn(async move {
                sleep(ms(10 * i)).await;
                // A grandchild spawned meanwhile is waited for too.
                h.spawn(async move {
                    sleep(ms(5)).await;
                    d.fetch_add(1, SeqCst);
                    Ok(())
                })
                .expect("the scope runs");
                Ok(())
            });
        }
        s.wait_children()
            .within(
                PAUSED_HANG,
                "wait_children's end once the children so far ended",
            )
            .await;
        assert_eq!(t0.elapsed(), ms(35));
        assert_eq!(done.load(SeqCst), 3);
        assert_eq!(s.running_children(), 0);
        // Still open: `wait_children` does not close the scope.
        let n = s.spawn(async { Ok(7usize) }).await?;
        s.wait_children().await; // nothing left: ready at once
        Ok(n)
    })
    .within(
        PAUSED_HANG,
        "the scope's end after waiting for its children",
    )
    .await;
    assert_eq!(r, Ok(7));
}

/// Dropping a `wait_children` future that waits leaves nothing behind: the scope ends
/// normally and a later wait still works.
#[tokio::test(start_paused = true)]
async fn a_dropped_wait_children_future_is_forgotten() {
    let r: Result<(), Cancelled> = scope(async |s| {
        s.spawn(async {
            sleep(ms(20)).await;
            Ok(())
        });
        assert!(
            tokio::time::timeout(ms(5), s.wait_children())
                .await
                .is_err(),
            "the child still runs at 5 ms"
        );
        s.wait_children()
            .within(
                PAUSED_HANG,
                "wait_children's end once the child ended at 20 ms",
            )
            .await;
        Ok(())
    })
    .within(PAUSED_HANG, "the scope's end")
    .await;
    assert_eq!(r, Ok(()));
}

/// A `wait_children` future dropped while it waits leaves no waker with the scope: the
/// scope neither keeps it (a loop of timed-out `wait_children` would pile them up until the
/// children end) nor wakes it when the children end.
#[tokio::test]
async fn a_dropped_wait_children_future_leaves_no_waker_behind() {
    let r: Result<(), Cancelled> = scope(async |s| {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let child = s.spawn(async move {
            let _ = rx.await;
            Ok(())
        });
        let counting = CountingWaker::new();
        let waker = Waker::from(counting.clone());
        let mut wait = Box::pin(s.wait_children());
        assert!(
            wait.as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_pending(),
            "the child still runs"
        );
        drop(waker);
        assert_eq!(
            Arc::strong_count(&counting),
            2,
            "the scope holds the waiting future's waker"
        );
        drop(wait);
        assert_eq!(
            Arc::strong_count(&counting),
            1,
            "the dropped future's waker is still held"
        );
        tx.send(()).unwrap();
        child.within(HANG, "the child's end once released").await?;
        assert_eq!(counting.wakes(), 0, "the dropped future was woken");
        Ok(())
    })
    .within(HANG, "the scope's end")
    .await;
    assert_eq!(r, Ok(()));
}

/// A `wait_children` future polled again with another waker (moved to another task, or
/// first polled by hand) has the scope wake that waker when the children end, not the one
/// of its first poll.
#[tokio::test]
async fn wait_children_wakes_the_waker_of_its_latest_poll() {
    let r: Result<(), Cancelled> = scope(async |s| {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        s.spawn(async move {
            let _ = rx.await;
            Ok(())
        });
        let mut wait = Box::pin(s.wait_children());
        let (first, latest) = poll_with_two_wakers(wait.as_mut());
        tx.send(()).unwrap();
        woken_through_the_latest(&first, &latest).await;
        wait.within(HANG, "wait_children's end once the child ended")
            .await;
        Ok(())
    })
    .within(HANG, "the scope's end")
    .await;
    assert_eq!(r, Ok(()));
}

/// A `wait_children` future woken by its children's end but polled only after a new child
/// was spawned waits for that child too, and is woken when it ends.
#[tokio::test]
async fn wait_children_polled_after_a_new_spawn_waits_for_the_new_child() {
    let r: Result<(), Cancelled> = scope(async |s| {
        let (first_tx, first_rx) = tokio::sync::oneshot::channel::<()>();
        let (next_tx, next_rx) = tokio::sync::oneshot::channel::<()>();
        let first = s.spawn(async move {
            let _ = first_rx.await;
            Ok(())
        });
        let counting = CountingWaker::new();
        let waker = Waker::from(counting.clone());
        let mut wait = Box::pin(s.wait_children());
        assert!(
            wait.as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_pending(),
            "the first child still runs"
        );
        first_tx.send(()).unwrap();
        first
            .within(HANG, "the first child's end once released")
            .await?;
        assert_eq!(counting.wakes(), 1, "the first child's end woke it");
        let next = s.spawn(async move {
            let _ = next_rx.await;
            Ok(())
        });
        assert!(
            wait.as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_pending(),
            "the next child still runs"
        );
        next_tx.send(()).unwrap();
        next.within(HANG, "the next child's end once released")
            .await?;
        assert_eq!(counting.wakes(), 2, "the next child's end woke it");
        wait.within(HANG, "wait_children's end once the next child ended")
            .await;
        Ok(())
    })
    .within(HANG, "the scope's end")
    .await;
    assert_eq!(r, Ok(()));
}

/// A `wait_children` future dropped after its children's end woke it, unpolled since, does
/// not take away the registration of another one waiting for a child spawned after.
#[tokio::test]
async fn a_woken_wait_children_future_dropped_leaves_a_later_one_registered() {
    let r: Result<(), Cancelled> = scope(async |s| {
        let (first_tx, first_rx) = tokio::sync::oneshot::channel::<()>();
        let (next_tx, next_rx) = tokio::sync::oneshot::channel::<()>();
        let first = s.spawn(async move {
            let _ = first_rx.await;
            Ok(())
        });
        let (early, later) = (CountingWaker::new(), CountingWaker::new());
        let early_waker = Waker::from(early.clone());
        let mut early_wait = Box::pin(s.wait_children());
        assert!(
            early_wait
                .as_mut()
                .poll(&mut Context::from_waker(&early_waker))
                .is_pending(),
            "the first child still runs"
        );
        first_tx.send(()).unwrap();
        first
            .within(HANG, "the first child's end once released")
            .await?;
        assert_eq!(early.wakes(), 1, "the first child's end woke it");
        let next = s.spawn(async move {
            let _ = next_rx.await;
            Ok(())
        });
        let later_waker = Waker::from(later.clone());
        let mut later_wait = Box::pin(s.wait_children());
        assert!(
            later_wait
                .as_mut()
                .poll(&mut Context::from_waker(&later_waker))
                .is_pending(),
            "the next child still runs"
        );
        drop(early_wait);
        next_tx.send(()).unwrap();
        next.within(HANG, "the next child's end once released")
            .await?;
        assert_eq!(later.wakes(), 1, "the next child's end woke the later one");
        later_wait
            .within(
                HANG,
                "the later wait_children's end once the next child ended",
            )
            .await;
        Ok(())
    })
    .within(HANG, "the scope's end")
    .await;
    assert_eq!(r, Ok(()));
}

/// The `Debug` of a `wait_children` future says whether the scope's children are all done.
#[tokio::test]
async fn a_wait_children_future_shows_whether_the_children_are_done() {
    let r: Result<(), Cancelled> = scope(async |s| {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let child = s.spawn(async move {
            let _ = rx.await;
            Ok(())
        });
        let wait = s.wait_children();
        assert_eq!(format!("{wait:?}"), "WaitChildren { idle: false }");
        tx.send(()).unwrap();
        child.within(HANG, "the child's end once released").await?;
        s.wait_children()
            .within(HANG, "wait_children's end after the only child")
            .await;
        assert_eq!(format!("{wait:?}"), "WaitChildren { idle: true }");
        Ok(())
    })
    .within(HANG, "the scope's end")
    .await;
    assert_eq!(r, Ok(()));
}

rt_test! {
    /// A handle's task id is the one the child sees as `tokio::task::id()`.
    async fn a_handle_knows_its_childs_task_id() {
        let r: Result<(), Cancelled> = scope(async |s| {
            let h = s.spawn(async { Ok(tokio::task::id()) });
            let id = h.id().expect("the child was started");
            assert_eq!(h.await?, id);
            Ok(())
        })
        .within(HANG, "the scope's end after its child")
        .await;
        assert_eq!(r, Ok(()));
    }
}

rt_test! {
    /// `wait_children` awaited in another task (through a `ScopeHandle`) is woken by the
    /// last child's end, whichever worker it ends on.
    async fn wait_children_in_another_task_is_woken_by_the_last_child() {
        let r: Result<(), Cancelled> = scope(async |s| {
            let gate = Arc::new(tokio::sync::Notify::new());
            let g = gate.clone();
            s.spawn(async move {
                g.notified().await;
                Ok(())
            });
            let h = s.handle();
            let waiter = tokio::spawn(async move { h.wait_children().await });
            tokio::task::yield_now().await;
            gate.notify_one();
            waiter
                .within(HANG, "the waiting task's wake-up by the last child")
                .await
                .expect("the waiter did not panic");
            Ok(())
        })
        .within(HANG, "the scope's end")
        .await;
        assert_eq!(r, Ok(()));
    }
}
