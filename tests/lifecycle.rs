//! Lifecycle and errors: scenarios L1–L12 (`docs/scenarios.md`).

mod common;

use std::future::pending;
use std::time::Duration;

use common::{
    Census, Counter, HANG, PAUSED_HANG, Within, counting_polls, poll_with_two_wakers, rt_test,
    woken_through_the_latest, yields,
};
use taskscope::{
    CancelReason, CancelScope, Cancelled, Scope, cancelled, checkpoint, move_on_after, scope,
};
use tokio::sync::oneshot;
use tokio::time::{Instant, sleep};

use common::Error;

rt_test! {
    async fn l1_child_error_is_returned() {
        let r: Result<(), Error> = scope(async |s| {
            s.spawn(async { Err::<(), _>(Error::Boom(1)) });
            Ok(())
        })
        .within(HANG, "the scope's return of its child's error")
        .await;
        assert_eq!(r, Err(Error::Boom(1)));
    }
}

rt_test! {
    async fn l2_body_error_without_children_is_returned_as_is() {
        let r: Result<(), Error> = scope(async |_s| Err(Error::Boom(2)))
            .within(HANG, "the scope's return of its body's error")
            .await;
        assert_eq!(r, Err(Error::Boom(2)));
    }
}

rt_test! {
    async fn l3_error_cancels_siblings() {
        let census = Census::new();
        let loops = Counter::new();
        let r = Scope::builder()
            .collect_errors()
            .run(async |s| {
                let (tx, rx) = oneshot::channel();
                let g = census.guard();
                let l = loops.clone();
                s.spawn(async move {
                    let _g = g;
                    let mut tx = Some(tx);
                    loop {
                        checkpoint().await?;
                        if l.inc() == 10 {
                            let _ = tx.take().map(|tx| tx.send(()));
                        }
                        if l.get() == usize::MAX {
                            return Ok::<(), Error>(());
                        }
                    }
                });
                s.spawn(async move {
                    let _ = rx
                        .within(HANG, "the sibling's tenth loop (it signals the failing child)")
                        .await;
                    Err::<(), _>(Error::Boom(3))
                });
                Ok(())
            })
            .within(HANG, "the scope's return after one child failed and the other was cancelled")
            .await;
        let errors = r.unwrap_err().into_vec();
        // Only the failure: the sibling's cancellation is not reported as an error.
        assert_eq!(errors, vec![Error::Boom(3)]);
        assert_eq!(census.made(), 1);
        assert_eq!(census.dropped(), 1, "the sibling was cancelled (dropped) once");
        assert!(loops.get() >= 10);
    }
}

/// An error that owns a census guard: counted when it is dropped.
enum Guarded {
    Failed(#[allow(dead_code)] common::Guard),
    Cancelled(Cancelled),
}

impl std::fmt::Debug for Guarded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Guarded::Failed(_) => f.write_str("Failed"),
            Guarded::Cancelled(c) => write!(f, "Cancelled({c:?})"),
        }
    }
}

impl From<Cancelled> for Guarded {
    fn from(c: Cancelled) -> Self {
        Guarded::Cancelled(c)
    }
}

#[tokio::test(start_paused = true)]
async fn l4_body_failing_after_the_scope_was_cancelled_is_secondary() {
    // An error that arrives after the scope was cancelled is secondary, the body's like a
    // child's (`docs/design.md`, 4.2). The scope returns its cancellation with the error
    // counted as suppressed, and the error value is gone before the scope returns.
    let census = Census::new();
    let r: Result<(), Guarded> = Scope::builder()
        .grace(Duration::from_secs(1))
        .run(async |s| {
            s.cancel();
            cancelled().await;
            Err(Guarded::Failed(census.guard()))
        })
        .within(
            PAUSED_HANG,
            "the cancelled scope's return with its body's error suppressed",
        )
        .await;
    let alive_at_return = census.alive();
    match r {
        Err(Guarded::Cancelled(c)) => {
            assert_eq!(c.reason(), CancelReason::Explicit);
            assert_eq!(c.suppressed_errors(), 1, "the body's error is counted");
        }
        other => panic!("expected the scope's cancellation, got {other:?}"),
    }
    assert_eq!((census.made(), alive_at_return), (1, 0));

    // Collecting mode keeps it: it is the only error, so it is returned.
    let r = Scope::builder()
        .grace(Duration::from_secs(1))
        .collect_errors()
        .run(async |s| {
            s.cancel();
            cancelled().await;
            Err::<(), _>(Error::Boom(6))
        })
        .within(
            PAUSED_HANG,
            "the cancelled collecting scope's return of its body's error",
        )
        .await;
    assert_eq!(r.unwrap_err().into_vec(), vec![Error::Boom(6)]);

    // Before any cancellation the body's error is the primary one, as always.
    let r: Result<(), Error> = Scope::builder()
        .grace(Duration::from_secs(1))
        .run(async |_| Err(Error::Boom(7)))
        .within(PAUSED_HANG, "the scope's return of its body's error")
        .await;
    assert_eq!(r, Err(Error::Boom(7)));
}

#[tokio::test(start_paused = true)]
async fn l4_body_and_child_fail_first_wins_other_kept() {
    // The child fails first; the body fails afterwards, during the grace period.
    let r = Scope::builder()
        .grace(Duration::from_secs(1))
        .collect_errors()
        .run(async |s| {
            s.spawn(async { Err::<(), _>(Error::Boom(1)) });
            cancelled().await;
            Err::<(), _>(Error::Boom(2))
        })
        .await;
    assert_eq!(
        r.unwrap_err().into_vec(),
        vec![Error::Boom(1), Error::Boom(2)]
    );

    // The body fails first; the child fails in its cleanup.
    let r = Scope::builder()
        .grace(Duration::from_secs(1))
        .collect_errors()
        .run(async |s| {
            s.spawn(async {
                cancelled().await;
                Err::<(), _>(Error::Boom(4))
            });
            tokio::task::yield_now().await;
            Err::<(), _>(Error::Boom(3))
        })
        .within(
            PAUSED_HANG,
            "the collecting scope's return after the child then the body failed",
        )
        .await;
    assert_eq!(
        r.unwrap_err().into_vec(),
        vec![Error::Boom(3), Error::Boom(4)]
    );
}

#[tokio::test(start_paused = true)]
async fn l4_two_children_fail_default_mode_loses_nothing_silently() {
    let mut handle = None;
    let r: Result<(), Error> = Scope::builder()
        .grace(Duration::from_secs(1))
        .run(async |s| {
            handle = Some(s.cancel_handle());
            s.spawn(async {
                sleep(Duration::from_millis(10)).await;
                Err::<(), _>(Error::Boom(1))
            });
            s.spawn(async {
                cancelled().await;
                Err::<(), _>(Error::Boom(2))
            });
            Ok(())
        })
        .within(
            PAUSED_HANG,
            "the collecting scope's return after the body then the child failed",
        )
        .await;
    assert_eq!(r, Err(Error::Boom(1)));
    let h = handle.unwrap();
    assert_eq!(
        h.suppressed_errors(),
        1,
        "the second error is counted, not lost"
    );
    assert_eq!(h.reason(), Some(CancelReason::ChildFailed));

    // Collecting mode returns both, in order.
    let r = Scope::builder()
        .grace(Duration::from_secs(1))
        .collect_errors()
        .run(async |s| {
            s.spawn(async {
                sleep(Duration::from_millis(10)).await;
                Err::<(), _>(Error::Boom(1))
            });
            s.spawn(async {
                cancelled().await;
                Err::<(), _>(Error::Boom(2))
            });
            Ok(())
        })
        .within(
            PAUSED_HANG,
            "the collecting scope's return after two children failed",
        )
        .await;
    assert_eq!(
        r.unwrap_err().into_vec(),
        vec![Error::Boom(1), Error::Boom(2)]
    );
}

#[tokio::test(start_paused = true)]
async fn l5_child_error_wakes_a_body_that_awaits_forever() {
    let t0 = Instant::now();
    let r: Result<(), Error> = scope(async |s| {
        s.spawn(async {
            sleep(Duration::from_millis(5)).await;
            Err::<(), _>(Error::Boom(5))
        });
        pending::<()>().await;
        Ok(())
    })
    .within(
        PAUSED_HANG,
        "the scope's return once a child's error woke its pending body",
    )
    .await;
    assert_eq!(r, Err(Error::Boom(5)));
    assert_eq!(t0.elapsed(), Duration::from_millis(5));
}

#[tokio::test(start_paused = true)]
async fn l6_body_returns_while_child_sleeps_scope_exits_when_child_done() {
    let t0 = Instant::now();
    let done = Counter::new();
    let d = done.clone();
    let r: Result<&str, Cancelled> = scope(async |s| {
        s.spawn(async move {
            sleep(Duration::from_secs(5)).await;
            d.inc();
            Ok(())
        });
        Ok("body done")
    })
    .within(
        PAUSED_HANG,
        "the scope's return once its sleeping child finished",
    )
    .await;
    assert_eq!(r, Ok("body done"));
    assert_eq!(t0.elapsed(), Duration::from_secs(5));
    assert_eq!(
        done.get(),
        1,
        "the child ran to completion, it was not cancelled"
    );
}

/// A scope waiting for its children is woken by the end of the last one, not by the end of
/// each: the first of two children ending leaves it parked.
#[tokio::test]
async fn a_scope_waiting_for_its_children_is_woken_by_the_last_ones_end_only() {
    let (polls, ended) = (Counter::new(), Counter::new());
    let (first_tx, first_rx) = oneshot::channel::<()>();
    let (last_tx, last_rx) = oneshot::channel::<()>();
    let (e1, e2) = (ended.clone(), ended.clone());
    let run = tokio::spawn(counting_polls(
        Box::pin(scope(async move |s| {
            s.spawn(async move {
                first_rx.await.ok();
                e1.inc();
                Ok(())
            });
            s.spawn(async move {
                last_rx.await.ok();
                e2.inc();
                Ok(())
            });
            Ok::<_, Cancelled>("body done")
        })),
        polls.clone(),
    ));
    yields(5).await;
    assert_eq!(polls.get(), 1, "the scope ran its body and waits");
    first_tx.send(()).unwrap();
    yields(5).await;
    assert_eq!(ended.get(), 1, "the first child ended");
    assert_eq!(
        polls.get(),
        1,
        "the scope still waits for the other child, unwoken"
    );
    last_tx.send(()).unwrap();
    let r = run
        .within(HANG, "the scope's return once its last child ended")
        .await
        .unwrap();
    assert_eq!(r, Ok("body done"));
    assert_eq!(ended.get(), 2);
    assert_eq!(polls.get(), 2, "woken once, by the last child's end");
}

/// A child spawned into a scope through its handle, from another task, does not wake the
/// scope: it has nothing to do until that child (or its body) ends.
#[tokio::test]
async fn a_spawn_through_a_handle_does_not_wake_the_scope() {
    let polls = Counter::new();
    let (handle_tx, handle_rx) = oneshot::channel();
    let (body_tx, body_rx) = oneshot::channel::<()>();
    let (child_tx, child_rx) = oneshot::channel::<()>();
    let run = tokio::spawn(counting_polls(
        Box::pin(scope(async move |s| {
            handle_tx.send(s.handle()).ok();
            body_rx.await.ok();
            Ok::<_, Cancelled>("body done")
        })),
        polls.clone(),
    ));
    let h = handle_rx.within(HANG, "the scope's handle").await.unwrap();
    yields(5).await;
    assert_eq!(polls.get(), 1, "the scope ran its body, which waits");
    h.spawn(async move {
        child_rx.await.ok();
        Ok(())
    })
    .expect("the scope runs");
    yields(5).await;
    assert_eq!(polls.get(), 1, "the spawn did not wake the scope");
    child_tx.send(()).unwrap();
    body_tx.send(()).unwrap();
    let r = run
        .within(HANG, "the scope's return once its body and child ended")
        .await
        .unwrap();
    assert_eq!(r, Ok("body done"));
}

/// The same one level down: a child spawned into a scope nested in the body of another (from
/// another task, while both wait) makes both busy and wakes neither.
#[tokio::test]
async fn a_spawn_into_a_nested_scope_does_not_wake_the_scope_around_it() {
    let polls = Counter::new();
    let (handle_tx, handle_rx) = oneshot::channel();
    let (body_tx, body_rx) = oneshot::channel::<()>();
    let (child_tx, child_rx) = oneshot::channel::<()>();
    let run = tokio::spawn(counting_polls(
        Box::pin(scope(async move |_outer| {
            scope(async move |inner| {
                handle_tx.send(inner.handle()).ok();
                body_rx.await.ok();
                Ok::<_, Cancelled>(())
            })
            .await?;
            Ok::<_, Cancelled>("body done")
        })),
        polls.clone(),
    ));
    let h = handle_rx
        .within(HANG, "the nested scope's handle")
        .await
        .unwrap();
    yields(5).await;
    assert_eq!(polls.get(), 1, "the scopes ran their bodies, which wait");
    h.spawn(async move {
        child_rx.await.ok();
        Ok(())
    })
    .expect("the nested scope runs");
    yields(5).await;
    assert_eq!(polls.get(), 1, "the spawn did not wake the scopes");
    child_tx.send(()).unwrap();
    body_tx.send(()).unwrap();
    let r = run
        .within(HANG, "the scope's return once the nested scope returned")
        .await
        .unwrap();
    assert_eq!(r, Ok("body done"));
}

/// A scope whose child task runs a nested scope: the nested scope's child ending (the nested
/// scope becomes idle, while its task goes on) does not wake the scope above, which waits
/// for that task anyway.
#[tokio::test]
async fn a_nested_scope_in_a_child_becoming_idle_does_not_wake_the_scope_above() {
    let polls = Counter::new();
    let (handle_tx, handle_rx) = oneshot::channel();
    let (body_tx, body_rx) = oneshot::channel::<()>();
    let (task_tx, task_rx) = oneshot::channel::<()>();
    let (child_tx, child_rx) = oneshot::channel::<()>();
    let run = tokio::spawn(counting_polls(
        Box::pin(scope(async move |s| {
            s.spawn(async move {
                scope(async move |nested| {
                    handle_tx.send(nested.handle()).ok();
                    task_rx.await.ok();
                    Ok(())
                })
                .await
            });
            body_rx.await.ok();
            Ok::<_, Cancelled>("body done")
        })),
        polls.clone(),
    ));
    let h = handle_rx
        .within(HANG, "the nested scope's handle")
        .await
        .unwrap();
    h.spawn(async move {
        child_rx.await.ok();
        Ok(())
    })
    .expect("the nested scope runs");
    yields(5).await;
    let before = polls.get();
    child_tx.send(()).unwrap();
    yields(5).await;
    assert_eq!(
        polls.get(),
        before,
        "the nested scope's child ended without waking the scope above"
    );
    task_tx.send(()).unwrap();
    body_tx.send(()).unwrap();
    let r = run
        .within(HANG, "the scope's return once its child task ended")
        .await
        .unwrap();
    assert_eq!(r, Ok("body done"));
}

rt_test! {
    async fn l7_cancel_reaches_grandchildren_through_nested_scopes() {
        let census = Census::new();
        let (tx, rx) = oneshot::channel::<()>();
        let c = census.clone();
        let r: Result<(), Cancelled> = scope(async |s| {
            s.spawn(async move {
                scope(async |inner| {
                    let g = c.guard();
                    inner.spawn(async move {
                        let _g = g;
                        let _ = tx.send(());
                        pending::<()>().await;
                        Ok::<(), Cancelled>(())
                    });
                    Ok(())
                })
                .within(HANG, "the inner scope's return after its grandchild was cancelled")
                .await
            });
            let _ = rx.within(HANG, "the grandchild's start").await;
            s.cancel();
            Ok(())
        })
        .within(HANG, "the scope's return once the cancel reached the grandchild")
        .await;
        assert_eq!(r, Ok(()), "the body completed: its value is kept");
        assert_eq!(census.made(), 1);
        assert_eq!(census.alive(), 0, "the grandchild is gone before the scope returned");
    }
}

#[tokio::test(start_paused = true)]
async fn l8_timeout_around_spawn_only_has_no_effect_on_child() {
    let t0 = Instant::now();
    let done = Counter::new();
    let d = done.clone();
    let r: Result<(), Cancelled> = scope(async |s| {
        let moved = move_on_after(Duration::from_secs(1), async {
            s.spawn(async move {
                sleep(Duration::from_secs(5)).await;
                d.inc();
                Ok(())
            });
            sleep(Duration::from_secs(2)).await;
        })
        .await;
        assert_eq!(moved, None, "the timeout fired around the spawn call");
        Ok(())
    })
    .within(
        PAUSED_HANG,
        "the scope's return once its child finished (the timeout was around the spawn only)",
    )
    .await;
    assert_eq!(r, Ok(()));
    assert_eq!(
        done.get(),
        1,
        "the child inherits the scope's cancellation, not the spawner's"
    );
    assert_eq!(t0.elapsed(), Duration::from_secs(5));
}

#[tokio::test(start_paused = true)]
async fn l8_timeout_around_whole_scope_cancels_child() {
    let t0 = Instant::now();
    let census = Census::new();
    let done = Counter::new();
    let d = done.clone();
    let r = move_on_after(Duration::from_secs(1), async {
        let g = census.guard();
        scope(async |s| {
            s.spawn(async move {
                let _g = g;
                sleep(Duration::from_secs(5)).await;
                d.inc();
                Ok::<(), Cancelled>(())
            });
            Ok::<(), Cancelled>(())
        })
        .await
    })
    .within(
        PAUSED_HANG,
        "move_on_after's return after cancelling the scope within it",
    )
    .await;
    assert_eq!(r, None);
    assert_eq!(t0.elapsed(), Duration::from_secs(1));
    assert_eq!(done.get(), 0);
    assert_eq!(census.alive(), 0);
}

rt_test! {
    async fn l9_locals_of_cancelled_child_dropped_before_scope_returns() {
        let census = Census::new();
        let c = census.clone();
        let r: Result<(), Cancelled> = scope(async |s| {
            for _ in 0..16 {
                let g = c.guard();
                s.spawn(async move {
                    let _local = g;
                    pending::<()>().await;
                    Ok(())
                });
            }
            tokio::task::yield_now().await;
            s.cancel();
            Ok(())
        })
        .within(HANG, "the cancelled scope's return after dropping 16 pending children")
        .await;
        assert_eq!(r, Ok(()));
        assert_eq!(census.made(), 16);
        assert_eq!(census.alive(), 0);
    }
}

/// `n` nested cancel scopes in one task, boxed to keep each level's future small.
fn nest(
    n: usize,
    census: Census,
    entered: std::sync::mpsc::Sender<()>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
    Box::pin(async move {
        let _ = CancelScope::new()
            .run(async move {
                if n == 0 {
                    let _g = census.guard();
                    let _ = entered.send(());
                    pending::<()>().await;
                } else {
                    nest(n - 1, census, entered).await;
                }
            })
            .await;
    })
}

#[test]
fn l10_five_thousand_nested_cancel_scopes_cancel_outermost() {
    // Polling 5,000 nested futures recurses 5,000 levels whatever the library does, so the
    // test thread gets a big stack; the cancel itself spreads iteratively.
    let census = Census::new();
    let c = census.clone();
    let r = std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .unwrap();
            rt.block_on(async move {
                let (tx, rx) = std::sync::mpsc::channel();
                let outer = CancelScope::new();
                let h = outer.handle();
                let run = outer.run(nest(5_000, c, tx));
                tokio::pin!(run);
                assert!(futures_util::poll!(run.as_mut()).is_pending());
                rx.try_recv().expect("the innermost scope was entered");
                h.cancel();
                run.within(
                    HANG,
                    "the 5,000-deep cancel scope's return after its cancel",
                )
                .await
            })
        })
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(r.unwrap_err().reason(), CancelReason::Explicit);
    assert_eq!(census.made(), 1);
    assert_eq!(census.alive(), 0);
}

#[tokio::test(start_paused = true)]
async fn l11_body_error_children_cleanup_ran_before_caller_sees_error() {
    let census = Census::new();
    let cleaned = Counter::new();
    let r: Result<(), Error> = Scope::builder()
        .grace(Duration::from_millis(50))
        .run(async |s| {
            for _ in 0..3 {
                let g = census.guard();
                let cleaned = cleaned.clone();
                s.spawn(async move {
                    let _g = g;
                    cancelled().await;
                    sleep(Duration::from_millis(10)).await; // async cleanup
                    cleaned.inc();
                    Ok(())
                });
            }
            tokio::task::yield_now().await;
            Err(Error::Boom(11))
        })
        .within(
            PAUSED_HANG,
            "the scope's return after its children's async cleanup",
        )
        .await;
    assert_eq!(r, Err(Error::Boom(11)));
    assert_eq!(
        cleaned.get(),
        3,
        "every child's cleanup ran before the error was returned"
    );
    assert_eq!(census.alive(), 0);
}

#[tokio::test(start_paused = true)]
async fn l12_error_then_own_cancel_returns_the_error() {
    let r: Result<(), Error> = Scope::builder()
        .grace(Duration::from_secs(1))
        .run(async |s| {
            s.spawn(async { Err::<(), _>(Error::Boom(12)) });
            sleep(Duration::from_millis(1)).await;
            s.cancel();
            pending::<()>().await;
            Ok(())
        })
        .within(
            PAUSED_HANG,
            "the scope's return of the first error after its own cancel",
        )
        .await;
    assert_eq!(r, Err(Error::Boom(12)));
}

#[tokio::test(start_paused = true)]
async fn l12_error_then_deadline_returns_the_error() {
    let r: Result<(), Error> = Scope::builder()
        .timeout(Duration::from_secs(1))
        .grace(Duration::from_secs(5))
        .run(async |s| {
            s.spawn(async {
                sleep(Duration::from_millis(500)).await;
                Err::<(), _>(Error::Boom(12))
            });
            s.spawn(async {
                // Ignores the soft cancel: keeps the scope open past its deadline.
                sleep(Duration::from_secs(3)).await;
                Ok(())
            });
            Ok(())
        })
        .within(
            PAUSED_HANG,
            "the scope's return of the error after its deadline and grace",
        )
        .await;
    assert_eq!(r, Err(Error::Boom(12)));
}

#[tokio::test(start_paused = true)]
async fn l12_child_failing_after_cancel_is_secondary() {
    let mut handle = None;
    let r: Result<u32, Error> = Scope::builder()
        .grace(Duration::from_secs(1))
        .run(async |s| {
            handle = Some(s.cancel_handle());
            s.spawn(async {
                cancelled().await;
                Err::<(), _>(Error::Boom(99))
            });
            tokio::task::yield_now().await;
            s.cancel();
            Ok(5)
        })
        .within(
            PAUSED_HANG,
            "the scope's return of the body's value with a late child error",
        )
        .await;
    assert_eq!(
        r,
        Ok(5),
        "the body's value is kept; the late error is secondary"
    );
    let h = handle.unwrap();
    assert_eq!(h.reason(), Some(CancelReason::Explicit));
    assert_eq!(h.suppressed_errors(), 1);
}

#[tokio::test(start_paused = true)]
async fn l12_own_deadline_after_body_completed_is_a_broken_promise() {
    let r: Result<u32, Error> = Scope::builder()
        .timeout(Duration::from_secs(1))
        .run(async |s| {
            s.spawn(async {
                sleep(Duration::from_secs(10)).await;
                Ok(())
            });
            Ok(7)
        })
        .within(
            PAUSED_HANG,
            "the scope's return at its deadline (broken promise)",
        )
        .await;
    assert_eq!(r, Err(Error::Cancelled(CancelReason::DeadlineExceeded)));
}

rt_test! {
    /// The body closure runs when the scope future is built; children it spawns then are
    /// counted by the enclosing scope once the scope is entered below it.
    async fn children_spawned_before_entry_keep_the_parent_waiting() {
        let census = Census::new();
        let done = Counter::new();
        let (c, d) = (census.clone(), done.clone());
        let r: Result<u32, Cancelled> = scope(async |outer| {
            let g = c.guard();
            let inner = scope(move |s| {
                s.spawn(async move {
                    let _g = g;
                    tokio::task::yield_now().await;
                    d.inc();
                    Ok(())
                });
                async move { Ok::<u32, Cancelled>(2) }
            });
            let inner = move_on_after(Duration::from_secs(3600), inner).await;
            assert_eq!(done.get(), 1, "the inner scope awaited its early child");
            outer.spawn(async { Ok(()) });
            Ok(inner.unwrap()? + 1)
        })
        .within(HANG, "the outer scope's return after the inner scope awaited its early child")
        .await;
        assert_eq!(r, Ok(3));
        assert_eq!(census.alive(), 0);
    }
}

rt_test! {
    async fn scope_ended_by_its_parents_cancel_reports_parent_cancelled() {
        let (inner_tx, inner_rx) = tokio::sync::oneshot::channel();
        let r: Result<(), Error> = Scope::builder()
            .grace(Duration::from_secs(5))
            .run(async |outer| {
                outer.cancel();
                // A nested scope whose body stops at the cancellation it inherited.
                let inner: Result<(), Error> = scope(async |_s| {
                    taskscope::checkpoint().await?;
                    Ok(())
                })
                .within(HANG, "the inner scope's return at the cancellation it inherited")
                .await;
                inner_tx.send(inner).ok();
                Ok(())
            })
            .within(HANG, "the cancelled outer scope's return")
            .await;
        assert_eq!(r, Ok(()));
        assert_eq!(
            inner_rx.await.unwrap(),
            Err(Error::Cancelled(CancelReason::ParentCancelled))
        );
    }
}

/// A collecting, supervised scope whose `n` children fail with `Error::Boom(0..n)`, in order.
async fn collected(n: u32) -> taskscope::Errors<Error> {
    common::collected(n, Error::Boom).await
}

#[tokio::test]
async fn collected_errors_read_the_same_in_order_whichever_way_they_are_taken() {
    let want = [Error::Boom(0), Error::Boom(1), Error::Boom(2)];
    let errors = collected(3).await;
    assert!(!errors.is_empty());
    assert_eq!(errors.len(), 3);
    assert_eq!(errors.first(), &Error::Boom(0));
    assert!(errors.iter().eq(want.iter()), "{errors:?}");
    assert_eq!(collected(3).await.into_iter().collect::<Vec<_>>(), want);
    assert_eq!(collected(3).await.into_vec(), want);
    assert_eq!(collected(3).await.into_first(), Error::Boom(0));

    let one = taskscope::Errors::<Error>::from(Cancelled::new(CancelReason::Shutdown));
    assert!(!one.is_empty());
    assert_eq!(one.into_first(), Error::Cancelled(CancelReason::Shutdown));
}

/// A scope future polled again with another waker (moved to another task, or first polled
/// by hand) is woken through that waker when its children end, not the one of its first
/// poll: the scope's owner is the latest poll's.
#[tokio::test]
async fn a_scope_future_polled_with_another_waker_is_woken_through_that_one() {
    let (tx, rx) = oneshot::channel::<()>();
    let mut fut = Box::pin(scope(async |s| {
        s.spawn(async move {
            let _ = rx.await;
            Ok(())
        });
        Ok::<_, Cancelled>(())
    }));
    let (first, latest) = poll_with_two_wakers(fut.as_mut());
    tx.send(()).unwrap();
    woken_through_the_latest(&first, &latest).await;
    let r = fut
        .within(HANG, "the scope's end once its child ended")
        .await;
    assert_eq!(r, Ok(()));
}
