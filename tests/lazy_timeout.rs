//! A timeout whose node is not built: `move_on_after`, `fail_after` and their `_at` forms,
//! and `#[scoped]` / `scope!` without a handle whose only options are a name and a
//! `timeout` or `deadline`. While nothing inside asks for the scope, the time limit is a
//! timer of the future's own and no node is built; code that asks builds it with the
//! timer's deadline. The answers must be those of a node built at entry: the tests run the
//! same code both ways (a cancel scope whose handle was taken, `#[scoped(s, ..)]`) and
//! compare.

mod common;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use common::{Census, HANG, PAUSED_HANG, Within, look, rt_test, tree_before_and_after_the_build};
use futures_util::FutureExt;
use taskscope::snapshot::NodeKind;
use taskscope::{
    CancelReason, CancelScope, Cancelled, current_deadline, fail_after, move_on_after, scope,
    scoped,
};
use tokio::time::{Instant, sleep};

const HOUR: Duration = Duration::from_secs(3600);

/// A timeout around `fut` as `fail_after` runs it (a timer of its own, and a node only once
/// code inside asks for it), or as a cancel scope with the same timeout whose handle was
/// taken (its node built at entry): the answers must be the same.
fn timeout<F: Future>(
    eager: bool,
    d: Duration,
    fut: F,
) -> impl Future<Output = Result<F::Output, Cancelled>> {
    if eager {
        let cs = CancelScope::new().timeout(d);
        let _ = cs.handle();
        futures_util::future::Either::Left(cs.run(fut))
    } else {
        futures_util::future::Either::Right(fail_after(d, fut))
    }
}

#[tokio::test(start_paused = true)]
async fn a_waiting_timeout_expires_as_a_built_one_does() {
    let mut results = Vec::new();
    for eager in [false, true] {
        let census = Census::new();
        let guard = census.guard();
        let start = Instant::now();
        let r = timeout(eager, Duration::from_secs(10), async move {
            let _guard = guard;
            tokio::task::yield_now().await;
            std::future::pending::<()>().await;
        })
        .within(PAUSED_HANG, "the timeout's expiry")
        .await;
        assert_eq!(
            census.alive(),
            0,
            "eager: {eager}: the future outlived the timeout"
        );
        assert_eq!(start.elapsed(), Duration::from_secs(10), "eager: {eager}");
        results.push(r);
    }
    assert_eq!(results[0], results[1]);
    let err = results[0].unwrap_err();
    assert_eq!(err.reason(), CancelReason::DeadlineExceeded);
    assert_eq!(err.suppressed_errors(), 0);
}

rt_test! {
    async fn a_waiting_timeout_fires_on_every_runtime() {
        for eager in [false, true] {
            let census = Census::new();
            let guard = census.guard();
            let r = timeout(eager, Duration::from_millis(20), async move {
                let _guard = guard;
                std::future::pending::<()>().await;
            })
            .within(HANG, "the timeout's expiry")
            .await;
            assert!(r.unwrap_err().is_deadline(), "eager: {eager}");
            assert_eq!(census.alive(), 0, "eager: {eager}: the future outlived the timeout");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn ambient_reads_after_a_wait_see_the_deadline_taken_at_the_first_poll() {
    let start = Instant::now();
    let mut seen = Vec::new();
    for eager in [false, true] {
        let r = timeout(eager, Duration::from_secs(10), async {
            sleep(Duration::from_secs(1)).await;
            look()
        })
        .within(PAUSED_HANG, "the timeout's return")
        .await;
        seen.push(r.expect("the future returns before the deadline"));
    }
    assert_eq!(seen[0].deadline, Some(start + Duration::from_secs(10)));
    // The eager run started a second later, so its deadline is a second later too.
    assert_eq!(seen[1].deadline, Some(start + Duration::from_secs(11)));
    for s in &seen {
        assert!(!s.cancelled);
        assert_eq!(s.tree, vec![(0, NodeKind::CancelScope, None)]);
    }
}

#[tokio::test(start_paused = true)]
async fn a_scope_opened_after_a_wait_is_bounded_by_the_timeout() {
    let mut results = Vec::new();
    for eager in [false, true] {
        let census = Census::new();
        let guard = census.guard();
        let start = Instant::now();
        let r = timeout(eager, Duration::from_secs(10), async move {
            sleep(Duration::from_secs(1)).await;
            scope(async move |s| {
                s.spawn(async move {
                    let _guard = guard;
                    sleep(HOUR).await;
                });
                Ok::<_, Cancelled>(())
            })
            .await
        })
        .within(PAUSED_HANG, "the timeout's expiry")
        .await;
        assert_eq!(
            census.alive(),
            0,
            "eager: {eager}: the child outlived the timeout"
        );
        assert_eq!(start.elapsed(), Duration::from_secs(10), "eager: {eager}");
        results.push(r);
    }
    assert_eq!(results[0], results[1]);
    assert!(results[0].unwrap_err().is_deadline());
}

#[tokio::test(start_paused = true)]
async fn a_deadline_due_with_the_future_is_the_one_that_wins() {
    // The timer and the future are due at the same instant: a node's timer fires before its
    // future is polled again, and so does the timer of a timeout not built.
    let mut results = Vec::new();
    for eager in [false, true] {
        let r = timeout(eager, Duration::from_secs(10), async {
            tokio::task::yield_now().await;
            sleep(Duration::from_secs(10)).await;
            7
        })
        .within(PAUSED_HANG, "the timeout's return")
        .await;
        results.push(r);
    }
    assert_eq!(results[0], results[1]);
    assert!(results[0].unwrap_err().is_deadline());
}

#[tokio::test(start_paused = true)]
async fn a_deadline_already_past_fails_before_the_first_poll() {
    for eager in [false, true] {
        let polled = std::cell::Cell::new(false);
        let at = Instant::now();
        let fut = async {
            polled.set(true);
            7
        };
        let r = if eager {
            let cs = CancelScope::new().deadline(at);
            let _ = cs.handle();
            cs.run(fut).await
        } else {
            taskscope::fail_at(at, fut).await
        };
        assert!(r.unwrap_err().is_deadline(), "eager: {eager}");
        assert!(!polled.get(), "eager: {eager}: the future was polled");
    }
    let r = taskscope::move_on_at(Instant::now() + HOUR, async {
        sleep(Duration::from_secs(1)).await;
        current_deadline()
    })
    .await;
    assert_eq!(
        r,
        Some(Some(Instant::now() - Duration::from_secs(1) + HOUR))
    );
}

#[tokio::test(start_paused = true)]
async fn a_waiting_timeout_goes_with_its_parent_s_cancel() {
    for eager in [false, true] {
        let census = Census::new();
        let guard = census.guard();
        let start = Instant::now();
        let r = move_on_after(Duration::from_secs(1), async {
            timeout(eager, HOUR, async move {
                let _guard = guard;
                std::future::pending::<()>().await;
            })
            .await
        })
        .within(PAUSED_HANG, "the outer timeout's expiry")
        .await;
        assert_eq!(r, None, "eager: {eager}");
        assert_eq!(
            census.alive(),
            0,
            "eager: {eager}: the future outlived the cancel"
        );
        assert_eq!(start.elapsed(), Duration::from_secs(1), "eager: {eager}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_waiting_timeout_prints_as_active() {
    let mut waiting = std::pin::pin!(move_on_after(HOUR, std::future::pending::<()>()));
    assert!(futures_util::poll!(waiting.as_mut()).is_pending());
    let shown = format!("{waiting:?}");
    assert!(shown.contains("active: true, finished: false"), "{shown}");
    let mut done = std::pin::pin!(move_on_after(HOUR, async {
        tokio::task::yield_now().await;
        7
    }));
    assert!(futures_util::poll!(done.as_mut()).is_pending());
    assert_eq!(done.as_mut().await, Some(7));
    let shown = format!("{done:?}");
    assert!(shown.contains("active: false, finished: true"), "{shown}");
}

// Scopes without a handle whose only options are a name and a time limit.

#[scoped(timeout = "10s")]
async fn lazy_waits(guard: common::Guard) -> Result<(), Cancelled> {
    let _guard = guard;
    tokio::task::yield_now().await;
    std::future::pending::<()>().await;
    Ok(())
}

#[scoped(s, timeout = "10s")]
async fn eager_waits(guard: common::Guard) -> Result<(), Cancelled> {
    let _ = &s;
    let _guard = guard;
    tokio::task::yield_now().await;
    std::future::pending::<()>().await;
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_waiting_scope_with_a_timeout_expires_as_a_built_one_does() {
    let mut results = Vec::new();
    for eager in [false, true] {
        let census = Census::new();
        let start = Instant::now();
        let r = if eager {
            eager_waits(census.guard()).await
        } else {
            lazy_waits(census.guard()).await
        };
        assert_eq!(
            census.alive(),
            0,
            "eager: {eager}: the body outlived the scope"
        );
        assert_eq!(start.elapsed(), Duration::from_secs(10), "eager: {eager}");
        results.push(r);
    }
    assert_eq!(results[0], results[1]);
    let err = results[0].unwrap_err();
    assert_eq!(err.reason(), CancelReason::DeadlineExceeded);
    assert_eq!(err.suppressed_errors(), 0);
}

#[scoped(timeout = "20ms")]
async fn lazy_waits_briefly(guard: common::Guard) -> Option<u8> {
    let _guard = guard;
    std::future::pending::<()>().await;
    Some(1)
}

rt_test! {
    async fn a_scope_with_a_timeout_fires_on_every_runtime() {
        let census = Census::new();
        let handle = tokio::spawn(lazy_waits_briefly(census.guard()));
        let r = handle.within(HANG, "the scope's expiry").await.expect("no panic");
        assert_eq!(r, None, "an `Option` function moves on with `None`");
        assert_eq!(census.alive(), 0, "the body outlived the scope");
    }
}

#[scoped(name = "timed", timeout = "10s")]
async fn lazy_timed_look() -> Result<common::Seen, Cancelled> {
    sleep(Duration::from_secs(1)).await;
    Ok(look())
}

#[scoped(s, name = "timed", timeout = "10s")]
async fn eager_timed_look() -> Result<common::Seen, Cancelled> {
    let _ = &s;
    sleep(Duration::from_secs(1)).await;
    Ok(look())
}

#[tokio::test(start_paused = true)]
async fn ambient_reads_in_a_timed_scope_after_a_wait_see_its_deadline_and_name() {
    let start = Instant::now();
    let lazy = lazy_timed_look()
        .await
        .expect("returns before its deadline");
    let eager = eager_timed_look()
        .await
        .expect("returns before its deadline");
    assert_eq!(lazy.deadline, Some(start + Duration::from_secs(10)));
    // The eager one started a second later.
    assert_eq!(eager.deadline, Some(start + Duration::from_secs(11)));
    assert_eq!(lazy.tree, eager.tree);
    assert_eq!(lazy.tree, vec![(0, NodeKind::Scope, Some("timed".into()))]);
    assert!(!lazy.cancelled);
}

#[scoped(timeout = "10s")]
async fn lazy_spawns_after_a_wait(guard: common::Guard) -> Result<(), Cancelled> {
    sleep(Duration::from_secs(1)).await;
    scope(async move |s| {
        s.spawn(async move {
            let _guard = guard;
            sleep(HOUR).await;
        });
        Ok(())
    })
    .await
}

#[scoped(s, timeout = "10s")]
async fn eager_spawns_after_a_wait(guard: common::Guard) -> Result<(), Cancelled> {
    let _ = &s;
    sleep(Duration::from_secs(1)).await;
    scope(async move |s| {
        s.spawn(async move {
            let _guard = guard;
            sleep(HOUR).await;
        });
        Ok(())
    })
    .await
}

#[tokio::test(start_paused = true)]
async fn a_scope_opened_after_a_wait_is_bounded_by_the_timed_scope() {
    let mut results = Vec::new();
    for eager in [false, true] {
        let census = Census::new();
        let start = Instant::now();
        let r = if eager {
            eager_spawns_after_a_wait(census.guard()).await
        } else {
            lazy_spawns_after_a_wait(census.guard()).await
        };
        assert_eq!(
            census.alive(),
            0,
            "eager: {eager}: the child outlived the scope"
        );
        assert_eq!(start.elapsed(), Duration::from_secs(10), "eager: {eager}");
        results.push(r);
    }
    assert_eq!(results[0], results[1]);
    assert!(results[0].unwrap_err().is_deadline());
}

#[scoped(deadline = at)]
async fn lazy_until(at: Instant, polled: &std::cell::Cell<bool>) -> Result<u8, Cancelled> {
    polled.set(true);
    Ok(7)
}

#[scoped(s, deadline = at)]
async fn eager_until(at: Instant, polled: &std::cell::Cell<bool>) -> Result<u8, Cancelled> {
    let _ = &s;
    polled.set(true);
    Ok(7)
}

#[tokio::test(start_paused = true)]
async fn a_scope_whose_deadline_passed_fails_before_its_body_runs() {
    for eager in [false, true] {
        let polled = std::cell::Cell::new(false);
        let at = Instant::now();
        let r = if eager {
            eager_until(at, &polled).await
        } else {
            lazy_until(at, &polled).await
        };
        assert!(r.unwrap_err().is_deadline(), "eager: {eager}");
        assert!(!polled.get(), "eager: {eager}: the body ran");
        let polled = std::cell::Cell::new(false);
        let later = Instant::now() + HOUR;
        let r = if eager {
            eager_until(later, &polled).await
        } else {
            lazy_until(later, &polled).await
        };
        assert_eq!(r, Ok(7), "eager: {eager}");
    }
}

#[scoped(timeout = Duration::ZERO)]
async fn lazy_zero(polled: &std::cell::Cell<bool>) -> Result<(), Cancelled> {
    polled.set(true);
    Ok(())
}

#[scoped(name = "forever", timeout = Duration::MAX)]
async fn lazy_forever() -> Result<common::Seen, Cancelled> {
    tokio::task::yield_now().await;
    Ok(look())
}

#[scoped(s, name = "forever", timeout = Duration::MAX)]
async fn eager_forever() -> Result<common::Seen, Cancelled> {
    let _ = &s;
    tokio::task::yield_now().await;
    Ok(look())
}

#[tokio::test(start_paused = true)]
async fn zero_and_unrepresentable_timeouts_answer_as_a_built_scope() {
    let polled = std::cell::Cell::new(false);
    let r = lazy_zero(&polled)
        .within(PAUSED_HANG, "the zero timeout")
        .await;
    assert!(r.unwrap_err().is_deadline());
    assert!(!polled.get(), "a zero timeout cancels before the body runs");
    // Too long to keep lazily: built at creation, as the scope it is (its kind, its name).
    let lazy = lazy_forever()
        .within(PAUSED_HANG, "the lazily kept scope's return")
        .await
        .expect("no deadline to miss");
    let eager = eager_forever()
        .within(PAUSED_HANG, "the eager scope's return")
        .await
        .expect("no deadline to miss");
    assert_eq!(lazy, eager);
    assert_eq!(
        lazy.deadline, None,
        "a deadline too far to represent is none"
    );
    assert_eq!(
        lazy.tree,
        vec![(0, NodeKind::Scope, Some("forever".into()))]
    );
}

struct PanicsOnDrop;

impl Drop for PanicsOnDrop {
    fn drop(&mut self) {
        panic!("the body's drop panics");
    }
}

#[scoped(timeout = "10s")]
async fn lazy_panics_when_dropped() -> Result<(), Cancelled> {
    let _p = PanicsOnDrop;
    std::future::pending::<()>().await;
    Ok(())
}

#[scoped(s, timeout = "10s")]
async fn eager_panics_when_dropped() -> Result<(), Cancelled> {
    let _ = &s;
    let _p = PanicsOnDrop;
    std::future::pending::<()>().await;
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_body_panicking_as_its_deadline_drops_it_is_re_raised() {
    for eager in [false, true] {
        let r = if eager {
            AssertUnwindSafe(eager_panics_when_dropped())
                .catch_unwind()
                .await
        } else {
            AssertUnwindSafe(lazy_panics_when_dropped())
                .catch_unwind()
                .await
        };
        let payload = r.expect_err("the panic is re-raised over the deadline");
        assert_eq!(
            payload.downcast_ref::<&str>(),
            Some(&"the body's drop panics"),
            "eager: {eager}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_scope_block_with_a_timeout_waits_and_expires() {
    let census = Census::new();
    let guard = census.guard();
    let start = Instant::now();
    let r: Result<(), Cancelled> = async {
        taskscope::scope!(timeout = "10s", {
            let _guard = guard;
            std::future::pending::<()>().await;
            Ok(())
        })
    }
    .within(PAUSED_HANG, "the scope's expiry")
    .await;
    assert!(r.unwrap_err().is_deadline());
    assert_eq!(start.elapsed(), Duration::from_secs(10));
    assert_eq!(census.alive(), 0);
}

#[scoped(timeout = "10ms")]
async fn lazy_overruns_then_asks() -> Result<(), Cancelled> {
    // Waits once (the timer starts), then runs past the deadline within one poll and reads
    // the ambient context: the node is built with its deadline passed already.
    tokio::task::yield_now().await;
    std::thread::sleep(Duration::from_millis(30));
    let _ = current_deadline();
    std::future::pending::<()>().await;
    Ok(())
}

rt_test! {
    async fn a_node_built_after_its_deadline_passed_catches_it() {
        // Nothing else wakes the task: a node that missed its own cancel would wait until the
        // bound's timer polled it again.
        let start = std::time::Instant::now();
        let r = lazy_overruns_then_asks().within(HANG, "the timed scope's return").await;
        assert!(r.unwrap_err().is_deadline());
        assert!(start.elapsed() < Duration::from_secs(2), "the scope waited for nothing");
        let start = std::time::Instant::now();
        let r = move_on_after(Duration::from_millis(10), async {
            tokio::task::yield_now().await;
            std::thread::sleep(Duration::from_millis(30));
            let _ = current_deadline();
            std::future::pending::<()>().await;
        })
        .within(HANG, "the timeout's return")
        .await;
        assert_eq!(r, None);
        assert!(start.elapsed() < Duration::from_secs(2), "the timeout waited for nothing");
    }
}

#[tokio::test(start_paused = true)]
async fn a_waiting_timeout_shows_in_the_tree_once_code_inside_asked_for_it() {
    let (before, after) = tree_before_and_after_the_build(|first, second| async move {
        let r = move_on_after(HOUR, async move {
            let _ = first.await;
            let _ = current_deadline(); // builds the node
            let _ = second.await;
        })
        .await;
        assert_eq!(r, Some(()));
        Ok(())
    })
    .await;
    assert_eq!(
        before,
        [NodeKind::Scope],
        "an unbuilt timeout is not in the tree"
    );
    assert_eq!(after, [NodeKind::Scope, NodeKind::CancelScope]);
}

#[scoped(timeout = "1h")]
async fn lazy_timed_until_told(
    first: tokio::sync::oneshot::Receiver<()>,
    second: tokio::sync::oneshot::Receiver<()>,
) -> Result<(), Cancelled> {
    let _ = first.await;
    let _ = current_deadline(); // builds the node
    let _ = second.await;
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_waiting_timed_scope_shows_in_the_tree_once_its_body_asked_for_it() {
    let (before, after) = tree_before_and_after_the_build(lazy_timed_until_told).await;
    assert_eq!(
        before,
        [NodeKind::Scope],
        "an unbuilt scope is not in the tree"
    );
    assert_eq!(after, [NodeKind::Scope, NodeKind::Scope]);
}

#[scoped(timeout = "10s", grace = "1s")]
async fn cleans_up_in_its_grace(cleaned: &std::cell::Cell<bool>) -> Result<(), Cancelled> {
    taskscope::cancelled().await;
    sleep(Duration::from_millis(500)).await; // cleanup, within the grace period
    cleaned.set(true);
    Ok(())
}

#[scoped(timeout = "10s", deadline = deadline)]
async fn the_earlier_limit_wins(deadline: Instant) -> Result<(), Cancelled> {
    std::future::pending::<()>().await;
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn options_beyond_a_name_and_one_time_limit_keep_their_meaning() {
    // A grace period: the scope's deadline is a soft cancel, and the body cleans up.
    let cleaned = std::cell::Cell::new(false);
    let start = Instant::now();
    let r = cleans_up_in_its_grace(&cleaned)
        .within(PAUSED_HANG, "the end of the grace period after the timeout")
        .await;
    assert!(r.unwrap_err().is_deadline());
    assert!(
        cleaned.get(),
        "the body was dropped without its grace period"
    );
    assert_eq!(start.elapsed(), Duration::from_millis(10_500));
    // Both a timeout and a deadline: the earlier one.
    let start = Instant::now();
    let r = the_earlier_limit_wins(start + Duration::from_secs(2))
        .within(PAUSED_HANG, "the earlier deadline")
        .await;
    assert!(r.unwrap_err().is_deadline());
    assert_eq!(start.elapsed(), Duration::from_secs(2));
}
