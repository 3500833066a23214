//! `move_on_after` and `fail_after` build their cancel-tree node only when code under their
//! first poll asks for its scope (a future that completes at once costs no node). Whatever
//! the inner code asks, the answer must be the one an eagerly built node gives.

mod common;

use std::cell::Cell;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use common::{HANG, PAUSED_HANG, Within, rt_test};
use futures_util::FutureExt;
use taskscope::snapshot::NodeKind;
use taskscope::{
    CancelReason, CancelScope, Cancelled, Scope, cancelled, current_deadline, fail_after,
    is_cancelled, move_on_after, scope, shield, snapshot,
};
use tokio::time::{Instant, sleep};

const HOUR: Duration = Duration::from_secs(3600);

rt_test! {
    async fn a_ready_future_gets_its_value_through() {
        let r = move_on_after(HOUR, async { 7 })
            .within(HANG, "move_on_after's return of a ready value")
            .await;
        assert_eq!(r, Some(7));
        let r = fail_after(HOUR, async { 8 })
            .within(HANG, "fail_after's return of a ready value")
            .await;
        assert_eq!(r, Ok(8));
        let r: Result<u32, Cancelled> = scope(async |_| {
            Ok(move_on_after(HOUR, async { 9 }).await.unwrap_or(0))
        })
        .within(HANG, "the scope's return of move_on_after's ready value")
        .await;
        assert_eq!(r, Ok(9));
    }
}

rt_test! {
    async fn the_first_poll_sees_a_soft_cancelled_parent() {
        // The scope is cancelled with a grace period (soft): code inside a timeout entered
        // afterwards is under a cancelled node, as with an eagerly built node.
        let seen = Cell::new(None);
        let _: Result<(), Cancelled> = Scope::builder()
            .grace(HOUR)
            .run(async |s| {
                s.cancel();
                let r = move_on_after(HOUR, async { (is_cancelled(), cancelled().await.reason()) })
                    .await;
                seen.set(r);
                Ok(())
            })
            .within(HANG, "the cancelled scope's return after the timeout inside saw the cancel")
            .await;
        assert_eq!(seen.get(), Some((true, CancelReason::ParentCancelled)));
    }
}

#[tokio::test(start_paused = true)]
async fn the_first_poll_sees_the_timeout_as_its_deadline() {
    let t0 = Instant::now();
    let d = move_on_after(Duration::from_secs(5), async { current_deadline() })
        .within(PAUSED_HANG, "move_on_after's return of its deadline")
        .await;
    assert_eq!(d, Some(Some(t0 + Duration::from_secs(5))));
    // Nested: the inner one is below the outer one, so the earlier deadline is effective.
    let d = move_on_after(
        Duration::from_secs(5),
        fail_after(Duration::from_secs(9), async { current_deadline() }),
    )
    .within(
        PAUSED_HANG,
        "the nested timeouts' return of the effective deadline",
    )
    .await;
    assert_eq!(d, Some(Ok(Some(t0 + Duration::from_secs(5)))));
}

#[tokio::test(start_paused = true)]
async fn a_scope_opened_in_the_first_poll_is_bounded_by_the_timeout() {
    let t0 = Instant::now();
    let r = move_on_after(Duration::from_millis(10), async {
        let r: Result<(), Cancelled> = scope(async |s| {
            s.spawn(async {
                sleep(HOUR).await;
                Ok(())
            });
            Ok(())
        })
        .await;
        r
    })
    .within(
        PAUSED_HANG,
        "move_on_after's return after cancelling the scope opened inside it",
    )
    .await;
    assert_eq!(r, None, "the timeout cancelled the scope opened inside it");
    assert_eq!(t0.elapsed(), Duration::from_millis(10));
    assert_eq!(
        fail_after(Duration::from_millis(10), sleep(HOUR))
            .within(PAUSED_HANG, "fail_after's expiry")
            .await
            .unwrap_err()
            .reason(),
        CancelReason::DeadlineExceeded
    );
}

#[tokio::test(start_paused = true)]
async fn a_node_built_in_the_first_poll_is_in_the_tree_and_leaves_it() {
    let r: Result<(), Cancelled> = scope(async |s| {
        let kinds = move_on_after(HOUR, async {
            snapshot()
                .nodes()
                .iter()
                .map(|n| n.kind)
                .collect::<Vec<_>>()
        })
        .await
        .expect("no timeout");
        assert_eq!(kinds, [NodeKind::Scope, NodeKind::CancelScope]);
        assert_eq!(
            s.snapshot().nodes().len(),
            1,
            "the cancel scope left the tree"
        );
        Ok(())
    })
    .within(
        PAUSED_HANG,
        "the scope's return after its timeout node left the tree",
    )
    .await;
    assert_eq!(r, Ok(()));
}

#[tokio::test(start_paused = true)]
async fn a_panic_after_the_node_was_built_leaves_no_node_behind() {
    let r: Result<(), Cancelled> = scope(async |s| {
        let caught = AssertUnwindSafe(move_on_after(HOUR, async {
            let _ = current_deadline(); // builds the node
            panic!("boom");
        }))
        .catch_unwind()
        .await;
        let payload = caught.expect_err("the panic comes out");
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"boom"));
        assert_eq!(
            s.snapshot().nodes().len(),
            1,
            "the cancel scope left the tree"
        );
        Ok(())
    })
    .within(PAUSED_HANG, "the scope's return after the timeout's panic")
    .await;
    assert_eq!(r, Ok(()));
}

#[tokio::test(start_paused = true)]
async fn a_timeout_under_a_hard_cancelled_node_is_not_polled() {
    // The cancel scope is hard-cancelled while a shield inside it keeps its future polled:
    // a timeout entered next to the shield must not poll its future (invariant #8), lazy
    // node or not.
    let polled = Cell::new(false);
    let cs = CancelScope::new();
    let h = cs.handle();
    let r = cs
        .run(async {
            h.cancel();
            let guarded = shield(async {
                tokio::task::yield_now().await;
            });
            let timed = move_on_after(HOUR, async { polled.set(true) });
            tokio::join!(guarded, timed);
        })
        .within(PAUSED_HANG, "the hard-cancelled cancel scope's return")
        .await;
    assert_eq!(r.unwrap_err().reason(), CancelReason::Explicit);
    assert!(
        !polled.get(),
        "the timeout's future was polled under a hard cancel"
    );
}
