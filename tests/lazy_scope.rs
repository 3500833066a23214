//! A scope whose body holds no handle (`#[scoped]` and `scope!({ .. })` without one), and a
//! cancel scope run with nothing set and no handle taken (`CancelScope::new().run(..)`),
//! build their cancel-tree node only when something needs it: code inside that reads the
//! ambient context (a nested scope or cancel scope, `is_cancelled()`, `cancelled()`,
//! `current_deadline()`, a snapshot), or (a scope) a body that fails or panics. Whatever
//! the code inside does, the answer must be the one a node built at entry gives: the tests
//! here run the same code both ways (`#[scoped]` builds lazily, `#[scoped(s)]` at entry; a
//! cancel scope whose handle was taken is built at entry) and compare.

mod common;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use common::{
    Census, HANG, PAUSED_HANG, Seen, Within, look, rt_test, tree_before_and_after_the_build, within,
};
use futures_util::FutureExt;
use futures_util::future::Either;
use taskscope::snapshot::NodeKind;
use taskscope::{
    CancelReason, CancelScope, Cancelled, Scope, cancelled, current_deadline, fail_after,
    is_cancelled, move_on_after, scope, scoped, shield,
};
use tokio::time::{Instant, sleep};

const HOUR: Duration = Duration::from_secs(3600);

#[scoped(name = "work")]
async fn lazy_look() -> Result<Seen, Cancelled> {
    tokio::task::yield_now().await;
    Ok(look())
}

#[scoped(s, name = "work")]
async fn eager_look() -> Result<Seen, Cancelled> {
    let _ = &s;
    tokio::task::yield_now().await;
    Ok(look())
}

/// What `lazy` and `eager` (the same code, with and without a node built at entry) see,
/// each run in a scope named "outer" with `deadline`: the same, returned once.
async fn lazily_and_eagerly_under_outer<L, E>(
    deadline: Instant,
    lazy: impl FnOnce() -> L,
    eager: impl FnOnce() -> E,
) -> Seen
where
    L: Future<Output = Result<Seen, Cancelled>>,
    E: Future<Output = Result<Seen, Cancelled>>,
{
    let r: Result<(Seen, Seen), Cancelled> = Scope::builder()
        .name("outer")
        .deadline(deadline)
        .run(async |_| Ok((lazy().await?, eager().await?)))
        .within(HANG, "the outer scope's return")
        .await;
    let (lazy, eager) = r.expect("both bodies return their value");
    assert_eq!(lazy, eager);
    lazy
}

rt_test! {
    async fn ambient_reads_in_the_body_see_the_scope_a_built_scope_shows() {
        let deadline = Instant::now() + HOUR;
        let seen = lazily_and_eagerly_under_outer(deadline, lazy_look, eager_look).await;
        assert_eq!(
            seen,
            Seen {
                cancelled: false,
                deadline: Some(deadline),
                tree: vec![
                    (0, NodeKind::Scope, Some("outer".into())),
                    (1, NodeKind::Scope, Some("work".into())),
                ],
            }
        );
    }
}

rt_test! {
    async fn scope_block_without_a_closure_returns_the_body_s_value() {
        let r: Result<u32, Cancelled> = within(
            HANG,
            async {
                taskscope::scope!({
                    tokio::task::yield_now().await;
                    Ok(5)
                })
            },
            "the scope's return",
        )
        .await;
        assert_eq!(r, Ok(5));
    }
}

/// Runs `body` in an outer scope that is cancelled with a grace period first (soft: the
/// body goes on), and returns what the outer scope and `body` returned.
async fn under_a_soft_cancel<F, Fut>(
    body: F,
) -> (Result<(), Cancelled>, Option<Result<u8, Cancelled>>)
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<u8, Cancelled>>,
{
    let mut inner = None;
    let outer = Scope::builder()
        .grace(HOUR)
        .run(async |s| {
            s.cancel();
            inner = Some(body().await);
            Ok(())
        })
        .within(PAUSED_HANG, "the soft-cancelled scope's return")
        .await;
    (outer, inner)
}

#[scoped]
async fn lazy_fails() -> Result<u8, Cancelled> {
    tokio::task::yield_now().await;
    Err(Cancelled::new(CancelReason::Explicit))
}

#[scoped(s)]
async fn eager_fails() -> Result<u8, Cancelled> {
    let _ = &s;
    tokio::task::yield_now().await;
    Err(Cancelled::new(CancelReason::Explicit))
}

#[tokio::test(start_paused = true)]
async fn a_body_error_under_a_cancelled_parent_is_suppressed_as_in_a_built_scope() {
    let lazy = under_a_soft_cancel(lazy_fails).await;
    let eager = under_a_soft_cancel(eager_fails).await;
    assert_eq!(lazy, eager);
    // The error came after the cancel: secondary, counted on the cancellation returned.
    let inner = lazy.1.expect("the body ran").unwrap_err();
    assert_eq!(inner.reason(), CancelReason::ParentCancelled);
    assert_eq!(inner.suppressed_errors(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_body_error_is_returned_as_from_a_built_scope() {
    let lazy = lazy_fails().within(PAUSED_HANG, "the scope's return").await;
    let eager = eager_fails()
        .within(PAUSED_HANG, "the scope's return")
        .await;
    assert_eq!(lazy, eager);
    assert_eq!(lazy, Err(Cancelled::new(CancelReason::Explicit)));
}

#[scoped]
async fn lazy_panics() -> Result<(), Cancelled> {
    tokio::task::yield_now().await;
    panic!("lazy boom");
}

rt_test! {
    async fn a_panicking_body_is_re_raised_with_its_payload() {
        let caught = AssertUnwindSafe(lazy_panics())
            .catch_unwind()
            .within(HANG, "the panicking scope's return")
            .await;
        let payload = caught.expect_err("the panic comes out");
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"lazy boom"));
        // Nothing was left in the tree of the enclosing scope.
        let r: Result<usize, Cancelled> = scope(async |s| {
            let _ = AssertUnwindSafe(lazy_panics()).catch_unwind().await;
            Ok(s.snapshot().nodes().len())
        })
        .within(HANG, "the enclosing scope's return")
        .await;
        assert_eq!(r, Ok(1));
    }
}

/// Opens a nested scope that spawns a child and drops the nested scope's future after its
/// first poll: the child is cancelled, but a shield keeps it alive for `HOUR / 2` of paused
/// time (counted by `census`). It is handed up to the scope this runs in, which must await
/// it before it returns.
async fn hand_up_a_child(census: &Census) {
    let guard = census.guard();
    let nested = scope(async move |s| {
        s.spawn(async move {
            shield(async move {
                let _guard = guard;
                sleep(HOUR / 2).await;
            })
            .await;
            Ok::<(), Cancelled>(())
        });
        std::future::pending::<Result<(), Cancelled>>().await
    });
    tokio::select! {
        biased;
        _ = nested => unreachable!("the nested scope never ends by itself"),
        () = tokio::task::yield_now() => {}
    }
}

#[scoped]
async fn lazy_hands_up(census: &Census) -> Result<(), Cancelled> {
    hand_up_a_child(census).await;
    Ok(())
}

#[scoped(s)]
async fn eager_hands_up(census: &Census) -> Result<(), Cancelled> {
    let _ = &s;
    hand_up_a_child(census).await;
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_child_handed_up_by_a_dropped_nested_scope_is_awaited_before_the_return() {
    let census = Census::new();
    let t0 = Instant::now();
    lazy_hands_up(&census)
        .within(PAUSED_HANG, "the scope's return after the handed-up child")
        .await
        .expect("the scope ends well");
    assert_eq!(census.made(), 1);
    assert_eq!(census.alive(), 0, "the handed-up child outlived the scope");
    assert_eq!(
        t0.elapsed(),
        HOUR / 2,
        "the scope did not wait for the child"
    );
    // The same with the scope built at entry.
    let t0 = Instant::now();
    eager_hands_up(&census)
        .within(PAUSED_HANG, "the scope's return after the handed-up child")
        .await
        .expect("the scope ends well");
    assert_eq!(census.alive(), 0);
    assert_eq!(t0.elapsed(), HOUR / 2);
}

/// As `hand_up_a_child`, all in one poll of the body, which returns in the poll that built
/// its scope's node (the nested scope attached below it): the child runs on another worker,
/// and the body waits (blocking its worker, bounded) until the child is inside its shield.
#[scoped]
async fn lazy_hands_up_in_one_poll(census: &Census) -> Result<(), Cancelled> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let guard = census.guard();
    let shielded = Arc::new(AtomicBool::new(false));
    let flag = shielded.clone();
    let nested = scope(async move |s| {
        s.spawn(async move {
            shield(async move {
                let _guard = guard;
                flag.store(true, Ordering::Release);
                sleep(Duration::from_millis(50)).await;
            })
            .await;
            Ok::<(), Cancelled>(())
        });
        std::future::pending::<Result<(), Cancelled>>().await
    });
    let mut nested = std::pin::pin!(nested);
    assert!(futures_util::poll!(nested.as_mut()).is_pending());
    let t0 = std::time::Instant::now();
    while !shielded.load(Ordering::Acquire) {
        assert!(
            t0.elapsed() < HANG,
            "hang: the child did not enter its shield"
        );
        std::thread::yield_now();
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_child_handed_up_in_the_poll_that_built_the_scope_is_awaited() {
    let census = Census::new();
    let t0 = Instant::now();
    lazy_hands_up_in_one_poll(&census)
        .within(HANG, "the scope's return after the handed-up child")
        .await
        .expect("the scope ends well");
    assert_eq!(census.made(), 1);
    assert_eq!(census.alive(), 0, "the handed-up child outlived the scope");
    assert!(
        t0.elapsed() >= Duration::from_millis(50),
        "the scope did not wait for the child"
    );
}

#[scoped]
async fn lazy_waits_forever(census: &Census) -> Result<(), Cancelled> {
    let _guard = census.guard();
    std::future::pending::<()>().await;
    Ok(())
}

rt_test! {
    async fn an_unbuilt_scope_waiting_is_dropped_with_its_parent_s_cancel() {
        let census = Census::new();
        let r = fail_after(Duration::from_millis(20), async {
            let outer: Result<(), Cancelled> =
                scope(async |_| lazy_waits_forever(&census).await).await;
            outer
        })
        .within(HANG, "the timed-out scope's return")
        .await;
        assert_eq!(r.unwrap_err().reason(), CancelReason::DeadlineExceeded);
        assert_eq!(census.made(), 1);
        assert_eq!(census.alive(), 0, "the waiting body outlived the cancel");
    }
}

rt_test! {
    async fn dropping_an_unbuilt_scope_drops_its_body_at_once() {
        let census = Census::new();
        let r = move_on_after(Duration::from_millis(5), lazy_waits_forever(&census))
            .within(HANG, "the timeout's return")
            .await;
        assert!(r.is_none());
        assert_eq!(census.made(), 1);
        assert_eq!(census.alive(), 0);
    }
}

#[scoped(name = "in_child")]
async fn lazy_tree() -> Result<Vec<(usize, NodeKind, Option<String>)>, Cancelled> {
    Ok(look().tree)
}

rt_test! {
    async fn a_scope_in_a_spawned_child_is_built_below_the_child_s_scope() {
        let r: Result<_, Cancelled> = Scope::builder()
            .name("parent")
            .run(async |s| s.spawn(lazy_tree()).await)
            .within(HANG, "the scope's return")
            .await;
        assert_eq!(
            r.expect("the child ends well"),
            [
                (0, NodeKind::Scope, Some("parent".into())),
                (1, NodeKind::Scope, Some("in_child".into())),
            ]
        );
    }
}

#[scoped]
async fn lazy_until_told(
    first: tokio::sync::oneshot::Receiver<()>,
    second: tokio::sync::oneshot::Receiver<()>,
) -> Result<(), Cancelled> {
    let _ = first.await;
    let _ = is_cancelled(); // builds the node
    let _ = second.await;
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_scope_shows_in_the_tree_once_its_body_asked_for_it() {
    let (before, after) = tree_before_and_after_the_build(lazy_until_told).await;
    assert_eq!(
        before,
        [NodeKind::Scope],
        "an unbuilt scope is not in the tree"
    );
    assert_eq!(after, [NodeKind::Scope, NodeKind::Scope]);
}

rt_test! {
    async fn cancelled_resolves_in_an_unbuilt_scope_when_the_parent_is_cancelled() {
        // `cancelled()` builds the node and waits on it; the parent's cancel reaches it.
        let r: Result<CancelReason, Cancelled> = Scope::builder()
            .grace(HOUR)
            .run(async |s| {
                taskscope::scope!({
                    let (reason, ()) = tokio::join!(async { cancelled().await.reason() }, async {
                        tokio::task::yield_now().await;
                        s.cancel();
                    });
                    Ok(reason)
                })
            })
            .within(HANG, "the scope's return once the cancel reached the waiter")
            .await;
        assert_eq!(r, Ok(CancelReason::ParentCancelled));
    }
}

#[test]
fn a_polled_unbuilt_scope_prints_as_started() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut fut = std::pin::pin!(taskscope::__private::ScopeBuilder::ambient(
            None,
            async || {
                std::future::pending::<()>().await;
                Ok::<(), Cancelled>(())
            }
        ));
        assert_eq!(
            format!("{fut:?}"),
            "ScopeFuture { started: false, finished: false, .. }"
        );
        assert!(futures_util::poll!(fut.as_mut()).is_pending());
        assert_eq!(
            format!("{fut:?}"),
            "ScopeFuture { started: true, finished: false, .. }"
        );
    });
}

#[test]
fn a_scope_built_during_a_poll_prints_as_started_then_finished() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let mut fut = std::pin::pin!(taskscope::__private::ScopeBuilder::ambient(
            None,
            async move || {
                let _ = is_cancelled(); // builds the node
                let _ = rx.await;
                Ok::<(), Cancelled>(())
            }
        ));
        assert!(futures_util::poll!(fut.as_mut()).is_pending());
        assert_eq!(
            format!("{fut:?}"),
            "ScopeFuture { started: true, finished: false, .. }"
        );
        tx.send(()).unwrap();
        assert_eq!(
            fut.as_mut().within(HANG, "the scope's return").await,
            Ok(())
        );
        assert_eq!(
            format!("{fut:?}"),
            "ScopeFuture { started: true, finished: true, .. }"
        );
    });
}

/// Runs `fut` in a cancel scope with nothing set: built lazily, or (`eager`) at entry
/// because a handle was taken.
fn cancel_scope<F: Future>(eager: bool, fut: F) -> taskscope::future::Run<F, F::Output> {
    let cs = CancelScope::new();
    if eager {
        let _ = cs.handle();
    }
    cs.run(fut)
}

rt_test! {
    async fn ambient_reads_in_a_cancel_scope_see_the_node_a_built_one_shows() {
        let deadline = Instant::now() + HOUR;
        let r: Result<Vec<Seen>, Cancelled> = Scope::builder()
            .name("outer")
            .deadline(deadline)
            .run(async |_| {
                let mut seen = Vec::new();
                for eager in [false, true] {
                    seen.push(cancel_scope(eager, async {
                        tokio::task::yield_now().await;
                        look()
                    })
                    .await?);
                }
                Ok(seen)
            })
            .within(HANG, "the outer scope's return")
            .await;
        let seen = r.expect("both cancel scopes return their value");
        assert_eq!(seen[0], seen[1]);
        assert_eq!(
            seen[0],
            Seen {
                cancelled: false,
                deadline: Some(deadline),
                tree: vec![
                    (0, NodeKind::Scope, Some("outer".into())),
                    (1, NodeKind::CancelScope, None),
                ],
            }
        );
    }
}

rt_test! {
    async fn a_waiting_cancel_scope_with_nothing_set_goes_with_its_parent_s_cancel() {
        for eager in [false, true] {
            let census = Census::new();
            let guard = census.guard();
            let r = fail_after(Duration::from_millis(20), async {
                cancel_scope(eager, async move {
                    let _guard = guard;
                    std::future::pending::<()>().await;
                })
                .await
            })
            .within(HANG, "the timed-out cancel scope's return")
            .await;
            assert_eq!(r.unwrap_err().reason(), CancelReason::DeadlineExceeded, "eager: {eager}");
            assert_eq!(census.alive(), 0, "eager: {eager}: the waiting future outlived the cancel");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_cancel_scope_waits_for_a_child_handed_up_by_a_nested_scope() {
    for eager in [false, true] {
        let census = Census::new();
        let t0 = Instant::now();
        let r = cancel_scope(eager, hand_up_a_child(&census))
            .within(
                PAUSED_HANG,
                "the cancel scope's return after the handed-up child",
            )
            .await;
        assert_eq!(r, Ok(()));
        assert_eq!(
            census.alive(),
            0,
            "eager: {eager}: the handed-up child outlived it"
        );
        assert_eq!(
            t0.elapsed(),
            HOUR / 2,
            "eager: {eager}: it did not wait for the child"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_cancel_scope_shows_in_the_tree_once_code_inside_asked_for_it() {
    let (before, after) = tree_before_and_after_the_build(|first, second| async move {
        CancelScope::new()
            .run(async move {
                let _ = first.await;
                let _ = current_deadline(); // builds the node
                let _ = second.await;
            })
            .await
    })
    .await;
    assert_eq!(
        before,
        [NodeKind::Scope],
        "an unbuilt cancel scope is not in the tree"
    );
    assert_eq!(after, [NodeKind::Scope, NodeKind::CancelScope]);
}

#[tokio::test(start_paused = true)]
async fn a_cancel_scope_under_a_hard_cancelled_node_is_not_polled() {
    // As for a timeout: the enclosing cancel scope is hard-cancelled while a shield inside
    // keeps its future polled; a cancel scope entered next to the shield must not poll its
    // future (invariant #8), built or not.
    for eager in [false, true] {
        let polled = std::cell::Cell::new(false);
        let cs = CancelScope::new();
        let h = cs.handle();
        let r = cs
            .run(async {
                h.cancel();
                let guarded = shield(async {
                    tokio::task::yield_now().await;
                });
                let inner = cancel_scope(eager, async { polled.set(true) });
                let _ = tokio::join!(guarded, inner);
            })
            .within(PAUSED_HANG, "the hard-cancelled cancel scope's return")
            .await;
        assert_eq!(r.unwrap_err().reason(), CancelReason::Explicit);
        assert!(!polled.get(), "eager: {eager}: polled under a hard cancel");
    }
}

#[tokio::test(start_paused = true)]
async fn a_panic_in_a_cancel_scope_leaves_no_node_behind() {
    for eager in [false, true] {
        let r: Result<(), Cancelled> = scope(async |s| {
            let caught = AssertUnwindSafe(cancel_scope(eager, async {
                let _ = is_cancelled(); // builds the node
                tokio::task::yield_now().await;
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
        .within(PAUSED_HANG, "the scope's return after the panic")
        .await;
        assert_eq!(r, Ok(()), "eager: {eager}");
    }
}

#[scoped]
async fn lazy_sets(polled: &std::cell::Cell<bool>) -> Result<(), Cancelled> {
    polled.set(true);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_scope_without_a_handle_under_a_hard_cancelled_node_is_not_polled() {
    // As for a cancel scope: the enclosing one is hard-cancelled while a shield inside keeps
    // its future polled; a scope entered next to the shield must not poll its body.
    let polled = std::cell::Cell::new(false);
    let cs = CancelScope::new();
    let h = cs.handle();
    let r = cs
        .run(async {
            h.cancel();
            let guarded = shield(async {
                tokio::task::yield_now().await;
            });
            let _ = tokio::join!(guarded, lazy_sets(&polled));
        })
        .within(PAUSED_HANG, "the hard-cancelled cancel scope's return")
        .await;
    assert_eq!(r.unwrap_err().reason(), CancelReason::Explicit);
    assert!(
        !polled.get(),
        "the scope's body was polled under a hard cancel"
    );
}

/// A body future that returns its value and then panics when it is dropped.
struct PanicsOnDrop;

impl Future for PanicsOnDrop {
    type Output = Result<u8, Cancelled>;
    fn poll(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::task::Poll::Ready(Ok(1))
    }
}

impl Drop for PanicsOnDrop {
    fn drop(&mut self) {
        panic!("dropped the body");
    }
}

rt_test! {
    async fn a_body_that_panics_as_it_is_dropped_after_its_value_is_re_raised() {
        for eager in [false, true] {
            let fut = if eager {
                Either::Left(taskscope::__private::ScopeBuilder::new().run(|_| PanicsOnDrop))
            } else {
                Either::Right(taskscope::__private::ScopeBuilder::ambient(None, || PanicsOnDrop))
            };
            let caught = AssertUnwindSafe(fut)
                .catch_unwind()
                .within(HANG, "the scope's return")
                .await;
            let payload = caught.expect_err("the drop's panic comes out");
            assert_eq!(
                payload.downcast_ref::<&str>(),
                Some(&"dropped the body"),
                "eager: {eager}"
            );
        }
    }
}

#[scoped]
async fn lazy_five() -> Result<u8, Cancelled> {
    Ok(5)
}

#[test]
fn a_scope_polled_after_the_ambient_frame_is_gone_still_completes() {
    // A thread's locals are destroyed in the reverse order of their first use: `Late`,
    // used before the ambient frame, is dropped after it, and polls a scope and a cancel
    // scope there. With no frame, neither can be entered lazily; each enters the ordinary
    // way and completes.
    type Polls = [std::task::Poll<Result<u8, Cancelled>>; 2];
    struct Late(std::sync::mpsc::Sender<Polls>);
    impl Drop for Late {
        fn drop(&mut self) {
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            let scope = std::pin::pin!(lazy_five()).as_mut().poll(&mut cx);
            let cancel_scope = std::pin::pin!(CancelScope::new().run(async { 6 }))
                .as_mut()
                .poll(&mut cx);
            let _ = self.0.send([scope, cancel_scope]);
        }
    }
    thread_local! {
        static LATE: std::cell::RefCell<Option<Late>> = const { std::cell::RefCell::new(None) };
    }
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        LATE.with(|l| *l.borrow_mut() = Some(Late(tx)));
        // The frame is used (and registered for destruction) after `LATE`.
        assert!(!is_cancelled());
    })
    .join()
    .expect("the thread ends");
    let polled = rx
        .recv_timeout(HANG)
        .expect("the scopes were polled in the thread-local's destructor");
    assert_eq!(
        polled,
        [std::task::Poll::Ready(Ok(5)), std::task::Poll::Ready(Ok(6))]
    );
}

/// Builds the node (reads the ambient context), waits, and looks again.
async fn build_wait_look() -> Seen {
    let _ = current_deadline();
    tokio::task::yield_now().await;
    look()
}

#[scoped(name = "work")]
async fn lazy_build_wait_look() -> Result<Seen, Cancelled> {
    Ok(build_wait_look().await)
}

#[scoped(s, name = "work")]
async fn eager_build_wait_look() -> Result<Seen, Cancelled> {
    let _ = &s;
    Ok(build_wait_look().await)
}

rt_test! {
    async fn a_node_built_before_a_wait_is_the_one_seen_after_it() {
        // After the poll that built the node, the scope is an ordinary one: a later read
        // finds that node, and no second one is built.
        let r: Result<Vec<Seen>, Cancelled> = Scope::builder()
            .name("outer")
            .run(async |_| {
                Ok(vec![
                    lazy_build_wait_look().await?,
                    eager_build_wait_look().await?,
                    cancel_scope(false, build_wait_look()).await?,
                    cancel_scope(true, build_wait_look()).await?,
                ])
            })
            .within(HANG, "the outer scope's return")
            .await;
        let seen = r.expect("every body returns its value");
        assert_eq!(seen[0], seen[1]);
        assert_eq!(seen[2], seen[3]);
        let tree = |kind, name: Option<&str>| {
            vec![
                (0, NodeKind::Scope, Some("outer".to_owned())),
                (1, kind, name.map(str::to_owned)),
            ]
        };
        assert_eq!(seen[0].tree, tree(NodeKind::Scope, Some("work")));
        assert_eq!(seen[2].tree, tree(NodeKind::CancelScope, None));
    }
}

#[scoped(name = "b")]
async fn lazy_b_look() -> Result<Seen, Cancelled> {
    tokio::task::yield_now().await;
    Ok(look())
}

#[scoped(name = "a")]
async fn lazy_a_polls<F: Future<Output = Result<Result<Seen, Cancelled>, Cancelled>>>(
    entered_elsewhere: std::pin::Pin<&mut F>,
) -> Result<(Seen, Seen), Cancelled> {
    let inner = entered_elsewhere.await??;
    Ok((inner, look()))
}

#[tokio::test(start_paused = true)]
async fn a_cancel_scope_entered_elsewhere_and_polled_in_an_unbuilt_scope_leaves_it_intact() {
    // A cancel scope first polled outside any scope, then polled (and finished) in the body
    // of a scope not built yet; a lazy scope inside the cancel scope builds its own node.
    // The outer scope, built later, must still be the one its body opened.
    let cs = CancelScope::new();
    let _handle = cs.handle();
    let mut entered_elsewhere = std::pin::pin!(cs.run(async {
        tokio::task::yield_now().await;
        lazy_b_look().await
    }));
    assert!(futures_util::poll!(entered_elsewhere.as_mut()).is_pending());
    let (inner, outer) = lazy_a_polls(entered_elsewhere)
        .within(PAUSED_HANG, "the outer scope's return")
        .await
        .expect("both return their value");
    assert_eq!(
        inner.tree,
        vec![
            (0, NodeKind::CancelScope, None),
            (1, NodeKind::Scope, Some("b".into()))
        ]
    );
    assert_eq!(outer.tree, vec![(0, NodeKind::Scope, Some("a".into()))]);
}

// ---------------------------------------------------------------------------------------
// Nested scopes without a handle (an attributed function calling another): the one further
// out is built only when one further in is, and then first, as its parent.
// ---------------------------------------------------------------------------------------

#[scoped(name = "middle")]
async fn lazy_middle_look() -> Result<Seen, Cancelled> {
    lazy_look().await
}

#[scoped(s, name = "middle")]
async fn eager_middle_look() -> Result<Seen, Cancelled> {
    let _ = &s;
    eager_look().await
}

#[scoped(name = "top")]
async fn lazy_top_look() -> Result<Seen, Cancelled> {
    lazy_middle_look().await
}

#[scoped(s, name = "top")]
async fn eager_top_look() -> Result<Seen, Cancelled> {
    let _ = &s;
    eager_middle_look().await
}

rt_test! {
    async fn reads_under_nested_unbuilt_scopes_see_the_chain_built_scopes_show() {
        // Three scopes without a handle, one inside the other; the innermost reads after a
        // wait. Its read builds all three, outermost first: the answers and the tree are
        // those of three scopes built at entry.
        let deadline = Instant::now() + HOUR;
        let seen = lazily_and_eagerly_under_outer(deadline, lazy_top_look, eager_top_look).await;
        assert_eq!(
            seen,
            Seen {
                cancelled: false,
                deadline: Some(deadline),
                tree: vec![
                    (0, NodeKind::Scope, Some("outer".into())),
                    (1, NodeKind::Scope, Some("top".into())),
                    (2, NodeKind::Scope, Some("middle".into())),
                    (3, NodeKind::Scope, Some("work".into())),
                ],
            }
        );
        // At the root: no enclosing scope.
        let (lazy, eager) = (
            lazy_top_look().within(HANG, "the lazy chain's return").await,
            eager_top_look().within(HANG, "the eager chain's return").await,
        );
        assert_eq!(lazy, eager);
        assert_eq!(lazy.expect("no cancel").tree.len(), 3);
    }
}

#[scoped(name = "now")]
async fn lazy_look_now() -> Result<Seen, Cancelled> {
    Ok(look())
}

#[scoped(name = "middle")]
async fn lazy_middle_reads_then_calls() -> Result<(Seen, Seen), Cancelled> {
    // Builds this scope, then enters one more without a handle in the same poll, which
    // reads at once: built below this one.
    let here = look();
    let inner = lazy_look_now().await?;
    Ok((here, inner))
}

#[tokio::test(start_paused = true)]
async fn a_scope_entered_in_the_poll_that_built_the_one_around_it_is_built_below_it() {
    let (here, inner) = Scope::builder()
        .name("outer")
        .run(async |_| lazy_middle_reads_then_calls().await)
        .within(PAUSED_HANG, "the outer scope's return")
        .await
        .expect("both bodies return their value");
    let outer_and = |rest: &[(usize, &str)]| {
        let mut tree = vec![(0, NodeKind::Scope, Some("outer".to_owned()))];
        tree.extend(
            rest.iter()
                .map(|&(d, n)| (d, NodeKind::Scope, Some(n.to_owned()))),
        );
        tree
    };
    assert_eq!(here.tree, outer_and(&[(1, "middle")]));
    assert_eq!(inner.tree, outer_and(&[(1, "middle"), (2, "now")]));
}

#[scoped]
async fn lazy_calls_until_told(
    first: tokio::sync::oneshot::Receiver<()>,
    second: tokio::sync::oneshot::Receiver<()>,
) -> Result<(), Cancelled> {
    lazy_until_told(first, second).await
}

#[tokio::test(start_paused = true)]
async fn nested_scopes_show_in_the_tree_only_once_the_innermost_asked() {
    let (before, after) = tree_before_and_after_the_build(lazy_calls_until_told).await;
    assert_eq!(
        before,
        [NodeKind::Scope],
        "a scope around an unbuilt one is not built for it"
    );
    assert_eq!(after, [NodeKind::Scope, NodeKind::Scope, NodeKind::Scope]);
}

#[scoped]
async fn lazy_calls_waits_forever(census: &Census) -> Result<(), Cancelled> {
    lazy_waits_forever(census).await
}

rt_test! {
    async fn nested_unbuilt_scopes_waiting_are_dropped_with_their_parent_s_cancel() {
        let census = Census::new();
        let r = fail_after(Duration::from_millis(20), async {
            let outer: Result<(), Cancelled> =
                scope(async |_| lazy_calls_waits_forever(&census).await).await;
            outer
        })
        .within(HANG, "the timed-out scope's return")
        .await;
        assert_eq!(r.unwrap_err().reason(), CancelReason::DeadlineExceeded);
        assert_eq!(census.made(), 1);
        assert_eq!(census.alive(), 0, "the waiting body outlived the cancel");
    }
}

#[scoped]
async fn lazy_calls_sets(polled: &std::cell::Cell<bool>) -> Result<(), Cancelled> {
    lazy_sets(polled).await
}

#[tokio::test(start_paused = true)]
async fn nested_unbuilt_scopes_under_a_hard_cancelled_node_are_not_polled() {
    let polled = std::cell::Cell::new(false);
    let cs = CancelScope::new();
    let h = cs.handle();
    let r = cs
        .run(async {
            h.cancel();
            let guarded = shield(async {
                tokio::task::yield_now().await;
            });
            let _ = tokio::join!(guarded, lazy_calls_sets(&polled));
        })
        .within(PAUSED_HANG, "the hard-cancelled cancel scope's return")
        .await;
    assert_eq!(r.unwrap_err().reason(), CancelReason::Explicit);
    assert!(
        !polled.get(),
        "the inner scope's body was polled under a hard cancel"
    );
}

#[scoped(timeout = "1h", name = "timed")]
async fn lazy_timed_calls_look() -> Result<Seen, Cancelled> {
    lazy_look().await
}

#[tokio::test(start_paused = true)]
async fn a_read_under_an_unbuilt_scope_inside_an_unbuilt_timed_one_sees_its_deadline() {
    let t0 = Instant::now();
    let seen = lazy_timed_calls_look()
        .within(PAUSED_HANG, "the timed scope's return")
        .await
        .expect("no timeout");
    assert_eq!(seen.deadline, Some(t0 + HOUR));
    assert_eq!(
        seen.tree,
        vec![
            (0, NodeKind::Scope, Some("timed".into())),
            (1, NodeKind::Scope, Some("work".into())),
        ]
    );
}

#[scoped(name = "fails")]
async fn lazy_calls_fails() -> Result<u8, Cancelled> {
    lazy_fails().await
}

#[tokio::test(start_paused = true)]
async fn an_error_from_a_nested_unbuilt_scope_is_returned_through_the_one_around_it() {
    let r = lazy_calls_fails()
        .within(PAUSED_HANG, "the scopes' return")
        .await;
    let eager: Result<u8, Cancelled> = scope(async |_| eager_fails().await)
        .within(PAUSED_HANG, "the eager scope's return")
        .await;
    assert_eq!(r, eager);
}
