//! Children's results in completion order (`Completions`) and in input order (`join_all`,
//! `join_all_in`).
//!
//! Time-based tests run under `start_paused = true` (current_thread) with exact instants;
//! the scheduler-sensitive ones (many children, concurrent completion) run on the three
//! runtimes through `rt_test!`.

mod common;

use std::future::pending;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use common::{
    BoxError, Census, Error, HANG, PAUSED_HANG, Slot, Within, finished_scope_handle, ms,
    require_send, rt_test, secs,
};
use futures_util::FutureExt;
use taskscope::combinators::{Completions, join_all, join_all_in};
use taskscope::{CancelReason, Cancelled, Scope, SpawnError, scope, shield};
use tokio::time::{Instant, sleep};

fn reason<T: std::fmt::Debug>(r: Option<Result<T, Cancelled>>) -> CancelReason {
    r.expect("a result").expect_err("no value").reason()
}

// ---------------------------------------------------------------------------------------
// Completions
// ---------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn completions_yield_in_completion_order() {
    let t0 = Instant::now();
    let seen = Slot::default();
    let r: Result<(), Cancelled> = scope(async |s| {
        let mut c = Completions::new(s.handle());
        for d in [30u64, 10, 40, 20, 0] {
            c.spawn(async move {
                sleep(ms(d)).await;
                Ok(d)
            })
            .unwrap();
        }
        while let Some(r) = c.join_next().await {
            let d = r?;
            // Yielded when it finished, not after a slower one.
            assert_eq!(t0.elapsed(), ms(d));
            seen.push(d);
        }
        Ok(())
    })
    .within(
        PAUSED_HANG,
        "the scope's return after yielding every child in completion order",
    )
    .await;
    assert_eq!(r, Ok(()));
    assert_eq!(seen.get(), [0, 10, 20, 30, 40]);
}

#[tokio::test(start_paused = true)]
async fn len_is_empty_and_join_next_on_empty() {
    let r: Result<(), Cancelled> = scope(async |s| {
        let mut c = Completions::<u32, Cancelled>::new(s.handle());
        assert!(c.is_empty());
        assert_eq!(c.len(), 0);
        assert_eq!(c.join_next().await, None, "nothing spawned: None at once");
        for i in 0..3u32 {
            c.spawn(async move {
                sleep(ms(10 * u64::from(i))).await;
                Ok(i)
            })
            .unwrap();
        }
        assert_eq!((c.len(), c.is_empty()), (3, false));
        assert_eq!(c.join_next().await, Some(Ok(0)));
        assert_eq!(c.len(), 2);
        assert_eq!(c.join_next().await, Some(Ok(1)));
        // A finished child counts until it is yielded.
        sleep(ms(50)).await;
        assert_eq!(c.len(), 1);
        assert_eq!(c.try_join_next(), Some(Ok(2)));
        assert!(c.is_empty());
        assert_eq!(c.join_next().await, None);
        assert_eq!(c.try_join_next(), None);
        Ok(())
    })
    .within(
        PAUSED_HANG,
        "the scope's return after its completions ran dry",
    )
    .await;
    assert_eq!(r, Ok(()));
}

#[tokio::test(start_paused = true)]
async fn failing_child_yields_child_failed_and_fails_the_scope() {
    let census = Census::new();
    let seen = Slot::default();
    let t0 = Instant::now();
    let r: Result<(), Error> = scope(async |s| {
        let mut c = Completions::new(s.handle());
        c.spawn(async {
            sleep(ms(10)).await;
            Err(Error::Boom(7))
        })
        .unwrap();
        let g = census.guard();
        c.spawn(async move {
            let _g = g;
            pending::<()>().await;
            Ok(())
        })
        .unwrap();
        // The failure cancels the scope and with it this body; a shield keeps the reader
        // going so that it sees what becomes of each child.
        shield(async {
            while let Some(r) = c.join_next().await {
                seen.push((r.map_err(|c| c.reason()), t0.elapsed()));
            }
        })
        .await;
        Ok(())
    })
    .within(
        PAUSED_HANG,
        "the scope's return of its child's error after the shielded reader",
    )
    .await;
    assert_eq!(
        r,
        Err(Error::Boom(7)),
        "the scope fails with the child's own error"
    );
    assert_eq!(
        seen.get(),
        [
            (Err(CancelReason::ChildFailed), ms(10)),
            (Err(CancelReason::ParentCancelled), ms(10)),
        ]
    );
    assert_eq!(census.alive(), 0);
}

#[tokio::test(start_paused = true)]
async fn failing_child_fails_the_scope_of_an_unshielded_reader() {
    let census = Census::new();
    let t0 = Instant::now();
    let r: Result<u32, Error> = scope(async |s| {
        let mut c = Completions::new(s.handle());
        for i in 0..3u32 {
            let g = census.guard();
            c.spawn(async move {
                let _g = g;
                sleep(ms(10 + u64::from(i))).await;
                if i == 1 { Err(Error::Boom(i)) } else { Ok(i) }
            })
            .unwrap();
        }
        let mut sum = 0;
        while let Some(r) = c.join_next().await {
            sum += r?;
        }
        Ok(sum)
    })
    .within(
        PAUSED_HANG,
        "the scope's return of its child's error with an unshielded reader",
    )
    .await;
    assert_eq!(r, Err(Error::Boom(1)));
    assert_eq!(
        t0.elapsed(),
        ms(11),
        "fail fast: child 2 was not awaited to its end"
    );
    assert_eq!(census.alive(), 0);
}

#[tokio::test(start_paused = true)]
async fn cancelling_the_scope_yields_parent_cancelled_for_outstanding_children() {
    let census = Census::new();
    let t0 = Instant::now();
    let seen = Slot::default();
    let r: Result<&str, Cancelled> = scope(async |s| {
        let mut c = Completions::new(s.handle());
        c.spawn(async {
            sleep(ms(10)).await;
            Ok(1)
        })
        .unwrap();
        for _ in 0..2 {
            let g = census.guard();
            c.spawn(async move {
                let _g = g;
                sleep(secs(60)).await;
                Ok(2)
            })
            .unwrap();
        }
        assert_eq!(c.join_next().await, Some(Ok(1)));
        s.cancel();
        shield(async {
            while let Some(r) = c.join_next().await {
                seen.push(reason(Some(r)));
            }
        })
        .await;
        // Spawned into a cancelled scope: never runs, yielded as cancelled too.
        c.spawn(async { Ok(3) }).unwrap();
        assert_eq!(c.len(), 1);
        seen.push(reason(c.try_join_next()));
        Ok("body done")
    })
    .within(
        PAUSED_HANG,
        "the cancelled scope's return of its body's value",
    )
    .await;
    assert_eq!(r, Ok("body done"), "a completed body's value is kept");
    assert_eq!(seen.get(), [CancelReason::ParentCancelled; 3]);
    assert_eq!(t0.elapsed(), ms(10));
    assert_eq!(census.alive(), 0);
}

#[tokio::test(start_paused = true)]
async fn cancelling_an_enclosing_node_cancels_and_awaits_the_children() {
    let census = Census::new();
    let t0 = Instant::now();
    let r = taskscope::move_on_after(ms(100), async {
        scope(async |s| {
            let mut c = Completions::new(s.handle());
            for _ in 0..3 {
                let g = census.guard();
                c.spawn(async move {
                    let _g = g;
                    pending::<()>().await;
                    Ok::<(), Cancelled>(())
                })
                .unwrap();
            }
            while let Some(r) = c.join_next().await {
                r?;
            }
            Ok(())
        })
        .await
    })
    .within(
        PAUSED_HANG,
        "move_on_after's return after cancelling and awaiting the children",
    )
    .await;
    assert_eq!(r, None);
    assert_eq!(t0.elapsed(), ms(100));
    assert_eq!(census.made(), 3);
    assert_eq!(
        census.alive(),
        0,
        "the children were dropped before move_on_after returned"
    );
}

#[tokio::test(start_paused = true)]
async fn panicking_child_yields_child_panicked_and_the_scope_re_raises() {
    let census = Census::new();
    let seen = Slot::default();
    let fut = scope(async |s| {
        let mut c = Completions::new(s.handle());
        c.spawn(async {
            sleep(ms(10)).await;
            panic!("boom in a child");
            #[allow(unreachable_code)]
            Ok(())
        })
        .unwrap();
        let g = census.guard();
        c.spawn(async move {
            let _g = g;
            pending::<()>().await;
            Ok(())
        })
        .unwrap();
        shield(async {
            while let Some(r) = c.join_next().await {
                seen.push(reason(Some(r)));
            }
        })
        .await;
        Ok::<(), Cancelled>(())
    });
    let payload = AssertUnwindSafe(fut)
        .catch_unwind()
        .within(PAUSED_HANG, "the scope's re-raise of its child's panic")
        .await
        .expect_err("re-raised");
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"boom in a child"));
    assert_eq!(
        seen.get(),
        [CancelReason::ChildPanicked, CancelReason::ParentCancelled]
    );
    assert_eq!(census.alive(), 0);
}

#[tokio::test(start_paused = true)]
async fn dropping_completions_neither_cancels_children_nor_keeps_their_values() {
    let census = Census::new();
    let finished = Slot::default();
    let t0 = Instant::now();
    let r: Result<(), Cancelled> = scope(async |s| {
        let mut c = Completions::new(s.handle());
        for d in [0u64, 20] {
            let (g, f) = (census.guard(), finished.clone());
            c.spawn(async move {
                sleep(ms(d)).await;
                f.push(d);
                Ok(g) // the value holds a guard
            })
            .unwrap();
        }
        sleep(ms(5)).await; // the first value is queued
        assert_eq!(c.len(), 2);
        drop(c);
        assert_eq!(
            census.alive(),
            1,
            "the queued value was dropped with the Completions"
        );
        Ok(())
    })
    .within(
        PAUSED_HANG,
        "the scope's return after its completions were dropped",
    )
    .await;
    assert_eq!(r, Ok(()));
    assert_eq!(t0.elapsed(), ms(20), "the scope awaited the second child");
    assert_eq!(
        finished.get(),
        [0, 20],
        "dropping did not cancel the children"
    );
    assert_eq!(census.alive(), 0, "the late value was dropped, not kept");
}

#[tokio::test(start_paused = true)]
async fn join_next_is_cancel_safe() {
    let r: Result<Vec<u32>, Cancelled> = scope(async |s| {
        let mut c = Completions::new(s.handle());
        for i in [1u32, 2] {
            c.spawn(async move {
                sleep(ms(10 * u64::from(i))).await;
                Ok(i)
            })
            .unwrap();
        }
        let mut got = Vec::new();
        // A `join_next` that loses a select! race loses no result.
        while !c.is_empty() {
            tokio::select! {
                r = c.join_next() => got.push(r.unwrap()?),
                () = sleep(ms(3)) => {}
            }
        }
        Ok(got)
    })
    .within(
        PAUSED_HANG,
        "the scope's return after a cancelled join_next",
    )
    .await;
    assert_eq!(r, Ok(vec![1, 2]));
}

#[tokio::test(start_paused = true)]
async fn spawning_into_a_finished_scope_fails_and_yields_nothing() {
    let census = Census::new();
    let mut c = Completions::new(finished_scope_handle().await);
    let g = census.guard();
    let spawned = c.spawn(async move {
        let _g = g;
        Ok::<_, Cancelled>(1)
    });
    assert_eq!(spawned, Err(SpawnError::Closed));
    assert_eq!(census.alive(), 0, "the future was dropped");
    assert!(c.is_empty());
    assert_eq!(c.try_join_next(), None);
    assert_eq!(c.join_next().await, None);
}

/// A spawn refused because the scope finished yields nothing for its child: the result of
/// an earlier child, finished and not yet taken, is still yielded.
#[tokio::test(start_paused = true)]
async fn a_refused_spawn_leaves_the_results_of_earlier_children() {
    let mut kept = None;
    let r: Result<(), Cancelled> = scope(async |s| {
        let mut c = Completions::new(s.handle());
        c.spawn(async { Ok(1) }).expect("the scope is running");
        kept = Some(c);
        Ok(())
    })
    .within(PAUSED_HANG, "the scope's return")
    .await;
    assert_eq!(r, Ok(()));
    let mut c = kept.expect("the body kept its set");
    // The scope waited for its child: the result is queued.
    assert_eq!(c.spawn(async { Ok(2) }), Err(SpawnError::Closed));
    assert_eq!(c.len(), 1);
    assert_eq!(c.try_join_next(), Some(Ok(1)));
    assert_eq!(c.try_join_next(), None);
}

/// A spawn refused because the scope's future was dropped while an earlier child still
/// runs (in a shield) yields nothing: the next result is that child's, when it finishes.
#[tokio::test(start_paused = true)]
async fn a_spawn_refused_while_an_earlier_child_runs_yields_nothing_for_it() {
    let t0 = Instant::now();
    let r: Result<(), Cancelled> = scope(async |_| {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let dropped = scope(async |s| {
            let (started_tx, started_rx) = tokio::sync::oneshot::channel();
            let mut c = Completions::new(s.handle());
            c.spawn(async {
                shield(async {
                    let _ = started_tx.send(());
                    sleep(secs(1)).await;
                })
                .await;
                Ok(1)
            })
            .expect("the scope is running");
            started_rx.await.unwrap();
            let _ = tx.send(c);
            pending::<Result<(), Cancelled>>().await
        });
        let mut c = tokio::select! {
            _ = dropped => unreachable!("the scope's body never returns"),
            c = rx => c.unwrap(),
        };
        // The scope's future is gone: it accepts no child, and its child runs on.
        assert_eq!(c.spawn(async { Ok(2) }), Err(SpawnError::Closed));
        assert_eq!(c.len(), 1);
        let first = c
            .join_next()
            .within(PAUSED_HANG, "the result of the child that runs")
            .await;
        assert_eq!(first, Some(Ok(1)), "the child ran on to its value");
        assert_eq!(
            t0.elapsed(),
            secs(1),
            "the first result is the running child's"
        );
        assert_eq!(c.join_next().await, None);
        Ok(())
    })
    .within(PAUSED_HANG, "the scope's return")
    .await;
    assert_eq!(r, Ok(()));
}

rt_test! {
    /// The set keeps the waker of the last poll: a reader that moved to another task after
    /// a first poll is woken there.
    async fn a_reader_polled_from_another_task_is_woken_there() {
        let r: Result<u32, Cancelled> = scope(async |s| {
            let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
            let (waiting_tx, waiting_rx) = tokio::sync::oneshot::channel::<()>();
            let mut c = Completions::new(s.handle());
            c.spawn(async move {
                let _ = go_rx.await;
                Ok(7)
            })
            .expect("the scope is running");
            {
                let mut next = std::pin::pin!(c.join_next());
                assert!(futures_util::poll!(next.as_mut()).is_pending());
            }
            let reader = s.spawn(async move {
                {
                    let mut next = std::pin::pin!(c.join_next());
                    assert!(futures_util::poll!(next.as_mut()).is_pending());
                }
                let _ = waiting_tx.send(());
                c.join_next().await.expect("one child to yield")
            });
            waiting_rx
                .within(HANG, "the reader's first poll in its own task")
                .await
                .unwrap();
            go_tx.send(()).unwrap();
            reader
                .within(HANG, "the reader's result, once it was woken in its task")
                .await
        })
        .within(HANG, "the scope's return")
        .await;
        assert_eq!(r, Ok(7));
    }
}

rt_test! {
    async fn ten_thousand_children_are_all_yielded() {
        const N: usize = 10_000;
        let census = Census::new();
        let r: Result<Vec<usize>, Cancelled> = scope(async |s| {
            let mut c = Completions::new(s.handle());
            for i in 0..N {
                let g = census.guard();
                c.spawn(async move {
                    let _g = g;
                    if i % 3 == 0 {
                        tokio::task::yield_now().await;
                    }
                    Ok(i)
                })
                .unwrap();
            }
            assert_eq!(c.len(), N);
            let mut got = Vec::with_capacity(N);
            while let Some(r) = c.join_next().await {
                got.push(r?);
            }
            assert!(c.is_empty());
            Ok(got)
        })
        .within(HANG, "the scope's return after yielding 10,000 children")
        .await;
        let mut got = r.unwrap();
        assert_eq!(got.len(), N);
        got.sort_unstable();
        assert!(got.iter().copied().eq(0..N), "each child yielded exactly once");
        assert_eq!(census.alive(), 0);
    }
}

rt_test! {
    async fn children_spawned_from_children_are_yielded_as_they_finish() {
        // Spawning and reading interleave: a reader never misses a wake-up.
        let r: Result<usize, Cancelled> = scope(async |s| {
            let mut c = Completions::new(s.handle());
            let mut total = 0;
            for round in 0..50usize {
                for i in 0..20usize {
                    c.spawn(async move {
                        for _ in 0..(i % 4) {
                            tokio::task::yield_now().await;
                        }
                        Ok(round * 20 + i)
                    })
                    .unwrap();
                }
                // Read half of what is outstanding before spawning more.
                for _ in 0..c.len() / 2 {
                    c.join_next().await.unwrap()?;
                    total += 1;
                }
            }
            while let Some(r) = c.join_next().await {
                r?;
                total += 1;
            }
            Ok(total)
        })
        .within(HANG, "the scope's return after yielding children spawned from children")
        .await;
        assert_eq!(r, Ok(1000));
    }
}

// ---------------------------------------------------------------------------------------
// join_all, join_all_in
// ---------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn join_all_returns_values_in_input_order() {
    let t0 = Instant::now();
    let r: Result<Vec<u64>, Error> = join_all([40u64, 10, 30, 0, 20].map(|d| async move {
        sleep(ms(d)).await;
        Ok(d)
    }))
    .within(
        PAUSED_HANG,
        "join_all's return of the values in input order",
    )
    .await;
    assert_eq!(r, Ok(vec![40, 10, 30, 0, 20]));
    assert_eq!(t0.elapsed(), ms(40), "they ran at the same time");
}

#[tokio::test(start_paused = true)]
async fn join_all_of_nothing_is_empty() {
    let r: Result<Vec<u32>, Cancelled> =
        join_all(Vec::<std::future::Ready<Result<u32, Cancelled>>>::new())
            .within(PAUSED_HANG, "join_all's return of nothing")
            .await;
    assert_eq!(r, Ok(vec![]));
}

#[tokio::test(start_paused = true)]
async fn join_all_fails_fast_and_drops_the_others() {
    let census = Census::new();
    let t0 = Instant::now();
    let futs = (0..5u32).map(|i| {
        let g = census.guard();
        async move {
            let _g = g;
            if i == 3 {
                sleep(ms(10)).await;
                return Err(Error::Boom(i));
            }
            sleep(secs(60)).await;
            Ok(i)
        }
    });
    let r = join_all(futs)
        .within(PAUSED_HANG, "join_all's return of the first failure")
        .await;
    assert_eq!(
        r,
        Err(Error::Boom(3)),
        "the first error, not a cancellation"
    );
    assert_eq!(t0.elapsed(), ms(10));
    assert_eq!(census.made(), 5);
    assert_eq!(
        census.alive(),
        0,
        "the others were dropped before join_all returned"
    );
}

#[tokio::test(start_paused = true)]
async fn join_all_in_a_cancelled_caller_cancels_the_children() {
    let census = Census::new();
    let futs: Vec<_> = (0..3)
        .map(|_| {
            let g = census.guard();
            async move {
                let _g = g;
                pending::<()>().await;
                Ok::<(), Cancelled>(())
            }
        })
        .collect();
    let r = taskscope::move_on_after(ms(50), join_all(futs))
        .within(
            PAUSED_HANG,
            "move_on_after's return after cancelling join_all's children",
        )
        .await;
    assert_eq!(r, None);
    assert_eq!(census.alive(), 0);
}

#[tokio::test(start_paused = true)]
async fn join_all_in_respects_the_scope_limit_and_input_order() {
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let t0 = Instant::now();
    let r: Result<Vec<u64>, Cancelled> = Scope::builder()
        .limit(2)
        .run(async |s| {
            let futs = [30u64, 10, 20, 10].map(|d| {
                let (running, most) = (running.clone(), most.clone());
                async move {
                    let n = running.fetch_add(1, SeqCst) + 1;
                    most.fetch_max(n, SeqCst);
                    sleep(ms(d)).await;
                    running.fetch_sub(1, SeqCst);
                    Ok(d)
                }
            });
            join_all_in(&s.handle(), futs).await
        })
        .within(
            PAUSED_HANG,
            "the limited scope's return of join_all_in's values",
        )
        .await;
    assert_eq!(r, Ok(vec![30, 10, 20, 10]));
    assert_eq!(most.load(SeqCst), 2);
    // Slots: [30 | 10, 20] then 10 after the first 30: 30 ms, then 10 more at most.
    assert_eq!(t0.elapsed(), ms(40));
}

#[tokio::test(start_paused = true)]
async fn join_all_in_reports_a_failure_and_the_scope_fails_with_it() {
    let census = Census::new();
    let seen = Slot::default();
    let r: Result<(), Error> = scope(async |s| {
        let futs: Vec<_> = (0..3u32)
            .map(|i| {
                let g = census.guard();
                async move {
                    let _g = g;
                    sleep(ms(10 * u64::from(i + 1))).await;
                    if i == 1 { Err(Error::Boom(i)) } else { Ok(i) }
                }
            })
            .collect();
        let h = s.handle();
        let joined = shield(async move { join_all_in(&h, futs).await }).await;
        seen.push(joined.map_err(|c| c.reason()));
        Ok(())
    })
    .within(PAUSED_HANG, "the scope's return of join_all_in's failure")
    .await;
    assert_eq!(r, Err(Error::Boom(1)));
    assert_eq!(seen.get(), [Err(CancelReason::ChildFailed)]);
    assert_eq!(census.alive(), 0);
}

#[test]
fn futures_are_send() {
    let f = join_all((0..3).map(|i| async move { Ok::<_, BoxError>(i) }));
    require_send(&f);
    let f = async {
        let _ = scope(async |s| {
            let mut c = Completions::<u32, BoxError>::new(s.handle());
            c.join_next().await;
            join_all_in(&s.handle(), [async { Ok::<_, BoxError>(1) }]).await?;
            Ok::<_, BoxError>(())
        })
        .await;
    };
    require_send(&f);
}

#[tokio::test(start_paused = true)]
async fn completions_are_a_stream_in_completion_order() {
    use futures_util::StreamExt;
    let r: Result<Vec<u64>, Cancelled> = scope(async |s| {
        let mut set = Completions::new(s.handle());
        for d in [30u64, 10, 20] {
            set.spawn(async move {
                tokio::time::sleep(std::time::Duration::from_millis(d)).await;
                Ok(d)
            })
            .unwrap();
        }
        assert_eq!(futures_util::Stream::size_hint(&set), (3, Some(3)));
        let all: Vec<_> = set.collect().await;
        Ok(all.into_iter().map(Result::unwrap).collect())
    })
    .within(PAUSED_HANG, "the scope's return of the completions stream")
    .await;
    assert_eq!(r, Ok(vec![10, 20, 30]));
}

/// One child fails while the body waits in `join_next` on a 4-worker runtime: the body
/// wakes with the child's `ChildFailed` entry and fails with it (`?`), but the scope must
/// return the child's own error, every time: the error reaches the scope before the entry
/// is queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn completions_reader_never_hides_the_childs_error() {
    const N: usize = 2000;
    let mut wrong = Vec::new();
    for i in 0..N {
        let r: Result<(), Error> = tokio::time::timeout(
            secs(10),
            taskscope::scope(async |s| {
                let mut done = Completions::new(s.handle());
                done.spawn(async { Err::<(), _>(Error::Boom(1)) }).unwrap();
                while let Some(r) = done.join_next().await {
                    r?;
                }
                Ok(())
            }),
        )
        .await
        .expect("hang: the scope did not return its child's error within 10 s");
        if r != Err(Error::Boom(1)) {
            wrong.push((i, r));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {N} runs: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
}
