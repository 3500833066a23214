//! Local children (`Scope::spawn_local`): polled inside the scope's own future, so they may
//! borrow from the caller and, in a `.local()` scope, be `!Send`. They follow the scope's
//! rules like spawned children: errors fail it, panics are re-raised, deadlines and cancels
//! drop them, limits admit them, and the scope returns only after they finished.
//!
//! Time-based tests run under `start_paused = true`; scheduler-sensitive ones run on the
//! three runtimes through `rt_test!`.

mod common;

use std::any::Any;
use std::cell::RefCell;
use std::future::{Future, pending};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::task::{Context, Poll};
use std::time::Duration;

use common::{
    Census, Counter, Error, Gauge, HANG, PAUSED_HANG, Slot, Within, counting_polls, ms, rt_test,
    secs, yields,
};
use futures_util::FutureExt;
use taskscope::flavor::Local;
use taskscope::{
    CancelReason, Cancelled, LocalHandle, Scope, cancelled, move_on_after, scope, shield,
};
use tokio::sync::oneshot;
use tokio::task::yield_now;
use tokio::time::{Instant, sleep};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// Records (paused-clock) instant at which it is dropped.
struct DropAt(Slot<Instant>);

impl Drop for DropAt {
    fn drop(&mut self) {
        self.0.push(Instant::now());
    }
}

/// The payload a panicking local child panics with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LocalPanic(u32);

/// Panics with `payload`; typed as returning `T` so it can end any block.
fn panic_with<T, P: Any + Send + 'static>(payload: P) -> T {
    std::panic::panic_any(payload)
}

fn expect_payload<T: Any + PartialEq + std::fmt::Debug>(payload: Box<dyn Any + Send>, want: T) {
    match payload.downcast::<T>() {
        Ok(got) => assert_eq!(*got, want),
        Err(p) => panic!(
            "expected a {} payload, got another one (str: {:?}, String: {:?})",
            std::any::type_name::<T>(),
            p.downcast_ref::<&str>(),
            p.downcast_ref::<String>()
        ),
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

async fn reason<T: std::fmt::Debug>(h: LocalHandle<T>) -> CancelReason {
    h.within(
        HANG,
        "the local child's handle resolving with its cancellation",
    )
    .await
    .expect_err("the child was not expected to succeed")
    .reason()
}

// ---------------------------------------------------------------------------------------
// 1. Borrowing
// ---------------------------------------------------------------------------------------

rt_test! {
    async fn borrows_caller_data_and_nests_through_a_scope_clone() {
        let words = vec![String::from("a"), String::from("bb"), String::from("ccc")];
        let extra = vec![10u32, 20, 30];
        let nested_done = AtomicBool::new(false);
        let r: Result<(usize, u32), Cancelled> = scope(async |s| {
            // Children borrow `words` (owned by the test, not 'static).
            let lens: Vec<LocalHandle<usize>> = words
                .iter()
                .map(|w| {
                    s.spawn_local(async move {
                        yield_now().await;
                        Ok(w.len())
                    })
                })
                .collect();
            let s2 = s.clone();
            let (extra, nested_done) = (&extra, &nested_done);
            let outer = s.spawn_local(async move {
                // A local child spawns local children through a clone of the scope; they
                // borrow the caller's data too.
                let inner = s2.spawn_local(async move {
                    yield_now().await;
                    Ok(extra.iter().sum::<u32>())
                });
                // Never awaited: the scope itself waits for it.
                s2.spawn_local(async move {
                    yields(5).await;
                    nested_done.store(true, SeqCst);
                    Ok(())
                });
                let sum = inner.await?;
                Ok(extra[0] + sum)
            });
            let mut total = 0;
            for h in lens {
                total += h.await?;
            }
            Ok((total, outer.await?))
        })
        .within(HANG, "the scope's return after its borrowing local children and their nested ones")
        .await;
        assert_eq!(r, Ok((6, 70)));
        assert!(nested_done.load(SeqCst), "the scope waited for the unawaited nested child");
        // Still the caller's: usable and movable after the scope.
        let moved = (words, extra);
        assert_eq!(moved.0.len() + moved.1.len(), 6);
    }
}

// ---------------------------------------------------------------------------------------
// 2. `!Send` local children in a `.local()` scope
// ---------------------------------------------------------------------------------------

/// A `.local()` scope whose children hold an `Rc` across awaits, borrow a `RefCell` from
/// the caller, and return an `Rc` through their handles.
async fn rc_fan_out(log: &Rc<RefCell<Vec<u32>>>, total: &RefCell<u32>) -> Result<u32, Cancelled> {
    Scope::builder()
        .local()
        .run(async |s| {
            let hs: Vec<LocalHandle<Rc<u32>>> = (0..4u32)
                .map(|i| {
                    let log = log.clone();
                    s.spawn_local(async move {
                        let mine = Rc::new(i);
                        yield_now().await;
                        log.borrow_mut().push(*mine);
                        *total.borrow_mut() += *mine;
                        yield_now().await;
                        Ok(mine)
                    })
                })
                .collect();
            let mut sum = 0;
            for h in hs {
                sum += *h.await?;
            }
            Ok(sum)
        })
        .within(
            HANG,
            "the .local() scope's return after its four !Send children",
        )
        .await
}

#[tokio::test(flavor = "current_thread")]
async fn not_send_children_in_a_local_scope_on_current_thread() {
    let log = Rc::new(RefCell::new(Vec::new()));
    let total = RefCell::new(0);
    assert_eq!(rc_fan_out(&log, &total).await, Ok(6));
    let mut seen = log.borrow().clone();
    seen.sort_unstable();
    assert_eq!(seen, [0, 1, 2, 3]);
    assert_eq!(*total.borrow(), 6);
}

rt_test! {
    async fn not_send_children_in_a_local_scope_inside_a_local_set() {
        let local = tokio::task::LocalSet::new();

        // Run in place with `run_until`: the children borrow from the caller.
        let log = Rc::new(RefCell::new(Vec::new()));
        let total = RefCell::new(0);
        let r = local.run_until(rc_fan_out(&log, &total)).await;
        assert_eq!(r, Ok(6));
        assert_eq!(*total.borrow(), 6);

        // As a `'static` task of the `LocalSet` (`spawn_local`), with a `!Send` spawned
        // task of the set inside a local child too.
        let log2 = log.clone();
        let r = local
            .run_until(async move {
                let task = tokio::task::spawn_local(Scope::builder().local().run(
                    async move |s: Scope<'static, Cancelled, Local>| {
                        let shared = Rc::new(RefCell::new(0u32));
                        for i in 0..3u32 {
                            let (shared, log) = (shared.clone(), log2.clone());
                            s.spawn_local(async move {
                                let inner = tokio::task::spawn_local({
                                    let shared = shared.clone();
                                    async move {
                                        yield_now().await;
                                        *shared.borrow_mut() += i;
                                    }
                                });
                                inner.await.expect("a task of the LocalSet");
                                log.borrow_mut().push(100 + i);
                                Ok(())
                            });
                        }
                        let h = s.spawn_local(async { Ok(Rc::new(7u32)) });
                        let v = *h.await?;
                        yields(10).await;
                        let sum = *shared.borrow();
                        Ok(v + sum)
                    },
                ));
                task.await.expect("the scope task did not panic")
            })
            .within(HANG, "the LocalSet task's end with its .local() scope")
            .await;
        // The scope waited for every local child (each awaited its inner task).
        assert_eq!(r.map(|_| ()), Ok(()));
        let mut seen: Vec<u32> = log.borrow().iter().copied().filter(|&v| v >= 100).collect();
        seen.sort_unstable();
        assert_eq!(seen, [100, 101, 102]);
    }
}

// ---------------------------------------------------------------------------------------
// 3. Concurrency (not parallelism)
// ---------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn local_children_run_concurrently() {
    let start = Instant::now();
    let r: Result<(Instant, Instant), Cancelled> = scope(async |s| {
        let a = s.spawn_local(async {
            sleep(secs(1)).await;
            Ok(Instant::now())
        });
        let b = s.spawn_local(async {
            sleep(secs(1)).await;
            Ok(Instant::now())
        });
        // The body sleeps concurrently with them, too.
        sleep(secs(1)).await;
        Ok((a.await?, b.await?))
    })
    .within(
        PAUSED_HANG,
        "the scope's return after its concurrently sleeping local children",
    )
    .await;
    let (a, b) = r.unwrap();
    assert_eq!(a - start, secs(1));
    assert_eq!(b - start, secs(1));
    assert_eq!(start.elapsed(), secs(1), "1s, not 2s or 3s");
}

rt_test! {
    async fn local_children_interleave_ping_pong() {
        // Only possible if both make progress while the other waits.
        let r: Result<(u32, u32), Cancelled> = scope(async |s| {
            let (tx1, rx1) = oneshot::channel::<u32>();
            let (tx2, rx2) = oneshot::channel::<u32>();
            let a = s.spawn_local(async move {
                tx1.send(1).unwrap();
                Ok(rx2.await.unwrap())
            });
            let b = s.spawn_local(async move {
                let v = rx1.await.unwrap();
                tx2.send(v + 1).unwrap();
                Ok(v)
            });
            Ok((a.await?, b.await?))
        })
        .within(HANG, "the scope's return after its ping-pong local children")
        .await;
        assert_eq!(r, Ok((2, 1)));
    }
}

// ---------------------------------------------------------------------------------------
// 4. Errors fail the scope fast
// ---------------------------------------------------------------------------------------

rt_test! {
    async fn a_local_childs_error_fails_the_scope_and_cancels_the_siblings() {
        let census = Census::new();
        let mut siblings = Vec::new();
        let mut failed = None;
        let r: Result<(), Error> = scope(async |s| {
            for _ in 0..2 {
                let g = census.guard();
                siblings.push(s.spawn_local(async move {
                    let _g = g;
                    pending::<()>().await;
                    Ok(())
                }));
            }
            for _ in 0..2 {
                let g = census.guard();
                s.spawn(async move {
                    let _g = g;
                    pending::<()>().await;
                    Ok(())
                });
            }
            failed = Some(s.spawn_local(async {
                yield_now().await;
                Err::<u32, _>(Error::Boom(4))
            }));
            pending::<()>().await;
            Ok(())
        })
        .within(HANG, "the scope's return after a local child failed and the siblings were dropped")
        .await;
        assert_eq!(census.alive(), 0, "every sibling was dropped before the scope returned");
        assert_eq!(census.made(), 4);
        assert_eq!(r, Err(Error::Boom(4)));
        assert_eq!(reason(failed.unwrap()).await, CancelReason::ChildFailed);
        for h in siblings {
            assert_eq!(reason(h).await, CancelReason::ParentCancelled);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_local_childs_error_the_body_sees_child_failed_during_the_grace() {
    let census = Census::new();
    let dropped_at = Slot::default();
    let mut seen = None;
    let start = Instant::now();
    let r: Result<(), Error> = Scope::builder()
        .grace(secs(1))
        .run(async |s| {
            let (g, d) = (census.guard(), DropAt(dropped_at.clone()));
            s.spawn_local(async move {
                let (_g, _d) = (g, d);
                pending::<()>().await;
                Ok(())
            });
            let g = census.guard();
            s.spawn(async move {
                let _g = g;
                pending::<()>().await;
                Ok(())
            });
            let failing = s.spawn_local(async {
                sleep(ms(10)).await;
                Err::<u32, _>(Error::Boom(5))
            });
            let e = failing.await.unwrap_err();
            assert!(s.is_cancelled(), "the error cancelled the scope");
            seen = Some(e.reason());
            Ok(())
        })
        .within(
            PAUSED_HANG,
            "the scope's return at the end of the grace after a local child failed",
        )
        .await;
    assert_eq!(r, Err(Error::Boom(5)));
    assert_eq!(seen, Some(CancelReason::ChildFailed));
    assert_eq!(census.alive(), 0);
    // The siblings ignored the soft cancel: dropped at the end of the grace.
    assert_eq!(dropped_at.get(), [start + ms(1010)]);
    assert_eq!(start.elapsed(), ms(1010));
}

// ---------------------------------------------------------------------------------------
// 5. Panics are re-raised with the original payload, after the siblings finished
// ---------------------------------------------------------------------------------------

rt_test! {
    async fn a_local_childs_panic_is_reraised_with_its_payload() {
        let census = Census::new();
        let r = AssertUnwindSafe(scope(async |s| {
            for _ in 0..3 {
                let g = census.guard();
                s.spawn_local(async move {
                    let _g = g;
                    pending::<()>().await;
                    Ok(())
                });
                let g = census.guard();
                s.spawn(async move {
                    let _g = g;
                    pending::<()>().await;
                    Ok(())
                });
            }
            s.spawn_local(async {
                yield_now().await;
                panic_with::<Result<(), Cancelled>, _>(LocalPanic(7))
            });
            pending::<()>().await;
            Ok::<(), Cancelled>(())
        }))
        .catch_unwind()
        .within(HANG, "the scope's re-raise of a local child's panic after dropping the siblings")
        .await;
        assert_eq!(census.alive(), 0, "every sibling was gone before the panic resumed");
        assert_eq!(census.made(), 6);
        expect_payload(r.unwrap_err(), LocalPanic(7));
    }
}

rt_test! {
    async fn a_local_childs_panic_reaches_a_join_handle() {
        let census = Census::new();
        let c = census.clone();
        let join = tokio::spawn(async move {
            scope(async |s| {
                let g = c.guard();
                s.spawn_local(async move {
                    let _g = g;
                    pending::<()>().await;
                    Ok(())
                });
                let h = s.spawn_local(async {
                    yields(2).await;
                    panic_with::<Result<u32, Cancelled>, _>(LocalPanic(8))
                });
                let r = h.await;
                // Only reached if the body kept running; the panic still wins.
                assert_eq!(r.unwrap_err().reason(), CancelReason::ChildPanicked);
                Ok::<(), Cancelled>(())
            })
            .await
        })
        .within(HANG, "the task's end with its scope's local child's panic")
        .await;
        assert_eq!(census.alive(), 0);
        expect_payload(join.unwrap_err().into_panic(), LocalPanic(8));
    }
}

#[tokio::test(start_paused = true)]
async fn a_local_childs_panic_waits_for_sibling_cleanup() {
    let census = Census::new();
    let cleaned = Slot::default();
    let start = Instant::now();
    let r = AssertUnwindSafe(Scope::builder().grace(secs(1)).run(async |s| {
        let (g, c) = (census.guard(), cleaned.clone());
        s.spawn_local(async move {
            let _g = g;
            cancelled().await;
            sleep(ms(100)).await;
            c.push("local");
            Ok(())
        });
        let (g, c) = (census.guard(), cleaned.clone());
        s.spawn(async move {
            let _g = g;
            cancelled().await;
            sleep(ms(200)).await;
            c.push("spawned");
            Ok(())
        });
        s.spawn_local(async {
            sleep(ms(10)).await;
            panic_with::<Result<(), Cancelled>, _>(LocalPanic(9))
        });
        // The body stops at once when cancelled; the siblings take their time.
        cancelled().await;
        Ok::<(), Cancelled>(())
    }))
    .catch_unwind()
    .within(
        PAUSED_HANG,
        "the scope's re-raise of a local child's panic after the siblings' cleanup",
    )
    .await;
    assert_eq!(census.alive(), 0);
    assert_eq!(cleaned.get(), ["local", "spawned"]);
    assert_eq!(
        start.elapsed(),
        ms(210),
        "resumed once the slowest cleanup finished"
    );
    expect_payload(r.unwrap_err(), LocalPanic(9));
}

// ---------------------------------------------------------------------------------------
// 6. Deadlines and grace
// ---------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn the_scope_deadline_drops_parked_local_children() {
    let census = Census::new();
    let mut handles = Vec::new();
    let start = Instant::now();
    let r: Result<(), Cancelled> = Scope::builder()
        .timeout(secs(1))
        .run(async |s| {
            for i in 0..4 {
                let g = census.guard();
                handles.push(s.spawn_local(async move {
                    let _g = g;
                    if i % 2 == 0 {
                        pending::<()>().await;
                    } else {
                        sleep(secs(60)).await;
                    }
                    Ok(())
                }));
            }
            Ok(())
        })
        .within(
            PAUSED_HANG,
            "the scope's return at its deadline with its parked local children dropped",
        )
        .await;
    assert_eq!(start.elapsed(), secs(1));
    assert_eq!(r.unwrap_err().reason(), CancelReason::DeadlineExceeded);
    assert_eq!(census.alive(), 0);
    for h in handles {
        assert!(h.is_finished());
        assert_eq!(reason(h).await, CancelReason::ParentCancelled);
    }
}

#[tokio::test(start_paused = true)]
async fn with_grace_local_children_clean_up_or_are_dropped_at_its_end() {
    let census = Census::new();
    let dropped_at = Slot::default();
    let mut polite = None;
    let mut stubborn = None;
    let start = Instant::now();
    let r: Result<(), Cancelled> = Scope::builder()
        .timeout(secs(1))
        .grace(ms(500))
        .run(async |s| {
            let g = census.guard();
            polite = Some(s.spawn_local(async move {
                let _g = g;
                cancelled().await;
                let seen_at = Instant::now();
                sleep(ms(100)).await; // async cleanup, shorter than the grace
                Ok((seen_at, Instant::now()))
            }));
            let (g, d) = (census.guard(), DropAt(dropped_at.clone()));
            stubborn = Some(s.spawn_local(async move {
                let (_g, _d) = (g, d);
                pending::<()>().await;
                Ok(())
            }));
            Ok(())
        })
        .await;
    assert_eq!(r.unwrap_err().reason(), CancelReason::DeadlineExceeded);
    assert_eq!(census.alive(), 0);
    let (seen_at, done_at) = polite
        .unwrap()
        .within(PAUSED_HANG, "the polite local child's handle resolving")
        .await
        .expect("cleaned up in time");
    assert_eq!(seen_at - start, secs(1));
    assert_eq!(done_at - start, ms(1100));
    assert_eq!(dropped_at.get(), [start + ms(1500)]);
    assert_eq!(
        reason(stubborn.unwrap()).await,
        CancelReason::ParentCancelled
    );
    assert_eq!(start.elapsed(), ms(1500));
}

#[tokio::test(start_paused = true)]
async fn an_ancestors_deadline_drops_the_local_children_of_a_nested_scope() {
    let census = Census::new();
    let start = Instant::now();
    // The nested scope's body returned; only its parked local children are left.
    let r = tokio::time::timeout(
        secs(60),
        move_on_after(
            secs(1),
            scope(async |s| {
                for _ in 0..2 {
                    let g = census.guard();
                    s.spawn_local(async move {
                        let _g = g;
                        pending::<()>().await;
                        Ok(())
                    });
                }
                Ok::<(), Cancelled>(())
            }),
        ),
    )
    .await
    .expect("hang: the ancestor's deadline did not drop the nested scope's parked local children");
    assert_eq!(r, None);
    assert_eq!(start.elapsed(), secs(1));
    assert_eq!(census.alive(), 0);

    // The same with the nested scope inside a local child of a scope with a timeout.
    let start = Instant::now();
    let r: Result<(), Cancelled> = tokio::time::timeout(
        secs(60),
        Scope::builder().timeout(secs(1)).run(async |outer| {
            outer.spawn_local(scope(async |inner| {
                let g = census.guard();
                inner.spawn_local(async move {
                    let _g = g;
                    pending::<()>().await;
                    Ok(())
                });
                Ok::<(), Cancelled>(())
            }));
            Ok(())
        }),
    )
    .await
    .expect("hang: the outer scope's deadline did not drop the nested scope's parked local child");
    assert_eq!(r.unwrap_err().reason(), CancelReason::DeadlineExceeded);
    assert_eq!(start.elapsed(), secs(1));
    assert_eq!(census.alive(), 0);
}

// ---------------------------------------------------------------------------------------
// 7. `LocalHandle::cancel`
// ---------------------------------------------------------------------------------------

rt_test! {
    async fn cancel_of_a_local_handle_cancels_that_child_alone() {
        let census = Census::new();
        let never_polled = AtomicBool::new(true);
        let r: Result<u32, Cancelled> = scope(async |s| {
            let g = census.guard();
            let stuck = s.spawn_local(async move {
                let _g = g;
                pending::<()>().await;
                Ok(0u32)
            });
            let sibling = s.spawn_local(async {
                yields(3).await;
                Ok(5u32)
            });
            // Cancelled before its first poll: never runs.
            let np = &never_polled;
            let early = s.spawn_local(async move {
                np.store(false, SeqCst);
                Ok(1u32)
            });
            early.cancel();
            yield_now().await; // `stuck` is parked now
            stuck.cancel();
            assert_eq!(reason(stuck).await, CancelReason::Explicit);
            assert_eq!(reason(early).await, CancelReason::Explicit);
            assert!(!s.is_cancelled(), "the scope goes on");
            let v = sibling.await?;
            // Cancelling a finished child changes nothing.
            let done = s.spawn_local(async { Ok(2u32) });
            while !done.is_finished() {
                yield_now().await;
            }
            done.cancel();
            Ok(v + done.await?)
        })
        .within(
            HANG,
            "the scope's return after two local children were cancelled through their handles",
        )
        .await;
        assert_eq!(r, Ok(7));
        assert_eq!(census.alive(), 0);
        assert!(never_polled.load(SeqCst));
    }
}

/// A future whose first poll takes a while (it signals `entered`, then blocks the thread),
/// and which never completes nor wakes anybody by itself.
struct SlowFirstPoll {
    entered: Arc<AtomicBool>,
    polled: bool,
}

impl Future for SlowFirstPoll {
    type Output = Result<(), Error>;
    fn poll(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Self::Output> {
        if !self.polled {
            self.polled = true;
            self.entered.store(true, SeqCst);
            // Another thread calls `LocalHandle::cancel` meanwhile.
            std::thread::sleep(Duration::from_millis(100));
        }
        Poll::Pending
    }
}

/// `LocalHandle::cancel` from another thread while the local child is in its first poll.
/// A regression test: the child had no stored waker yet, so `cancel` woke nobody, and the
/// child stored its waker only after its cancel check; nothing polled it again and the scope
/// hung.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_handle_cancel_during_first_poll_is_not_lost() {
    let entered = Arc::new(AtomicBool::new(false));
    let fut = scope(async |s| -> Result<(), Error> {
        let h = s.spawn_local(SlowFirstPoll {
            entered: entered.clone(),
            polled: false,
        });
        let entered = entered.clone();
        std::thread::spawn(move || {
            while !entered.load(SeqCst) {
                std::thread::yield_now();
            }
            h.cancel(); // the child is inside its first poll right now
        });
        Ok(())
    });
    let r = tokio::time::timeout(secs(5), fut).await;
    assert!(
        matches!(r, Ok(Ok(()))),
        "the cancelled local child must be dropped and the scope must return: {r:?}"
    );
}

/// Same, on a current-thread runtime (the canceller is a plain thread): deterministic.
#[tokio::test(flavor = "current_thread")]
async fn local_handle_cancel_during_first_poll_is_not_lost_current_thread() {
    let entered = Arc::new(AtomicBool::new(false));
    let fut = scope(async |s| -> Result<(), Error> {
        let h = s.spawn_local(SlowFirstPoll {
            entered: entered.clone(),
            polled: false,
        });
        let entered = entered.clone();
        std::thread::spawn(move || {
            while !entered.load(SeqCst) {
                std::thread::yield_now();
            }
            h.cancel();
        });
        Ok(())
    });
    let r = tokio::time::timeout(secs(5), fut).await;
    assert!(matches!(r, Ok(Ok(()))), "scope hung: {r:?}");
}

/// `LocalHandle::cancel` from another thread after the child's first poll: the stored waker
/// is woken, the child is dropped, the scope returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_handle_cancel_from_another_thread_after_first_poll() {
    let census = Census::new();
    let fut = scope(async |s| -> Result<(), Error> {
        let g = census.guard();
        let h = s.spawn_local(async move {
            let _g = g;
            std::future::pending::<()>().await;
            Ok(())
        });
        tokio::task::yield_now().await; // the child was polled once
        let t = std::thread::spawn(move || {
            h.cancel();
            h
        });
        let h = tokio::task::spawn_blocking(move || t.join().unwrap())
            .await
            .unwrap();
        assert_eq!(h.await.unwrap_err().reason(), CancelReason::Explicit);
        Ok(())
    });
    let r = tokio::time::timeout(secs(5), fut).await;
    assert!(matches!(r, Ok(Ok(()))), "{r:?}");
    assert_eq!(census.alive(), 0);
}

// ---------------------------------------------------------------------------------------
// 8. Dropping the scope future drops the local children at once
// ---------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn dropping_the_scope_future_drops_local_children_synchronously() {
    let census = Census::new();
    let mut handles = Vec::new();
    let r = tokio::time::timeout(
        ms(10),
        scope(async |s| {
            for _ in 0..3 {
                let g = census.guard();
                handles.push(s.spawn_local(async move {
                    let _g = g;
                    pending::<()>().await;
                    Ok(())
                }));
            }
            // A nested local child, spawned by a local child.
            let s2 = s.clone();
            let g = census.guard();
            handles.push(s.spawn_local(async move {
                let inner = s2.spawn_local(async move {
                    let _g = g;
                    pending::<()>().await;
                    Ok(())
                });
                inner.await
            }));
            pending::<()>().await;
            Ok::<(), Cancelled>(())
        }),
    )
    .await;
    assert!(r.is_err(), "the timeout fired");
    assert_eq!(census.made(), 4);
    assert_eq!(census.alive(), 0, "dropped with the scope future");
    for h in handles {
        assert_eq!(reason(h).await, CancelReason::ParentCancelled);
    }
}

rt_test! {
    async fn losing_a_select_drops_local_children_synchronously() {
        let census = Census::new();
        let started = Counter::new();
        let (tx, rx) = oneshot::channel::<()>();
        let mut tx = Some(tx);
        tokio::select! {
            biased;
            _ = rx => {}
            _ = scope(async |s| {
                for _ in 0..5 {
                    let (g, st) = (census.guard(), &started);
                    s.spawn_local(async move {
                        let _g = g;
                        st.inc();
                        pending::<()>().await;
                        Ok(())
                    });
                }
                until(|| started.get() == 5).await;
                let _ = tx.take().unwrap().send(());
                pending::<()>().await;
                Ok::<(), Cancelled>(())
            }) => panic!("the scope never finishes"),
        }
        assert_eq!(census.made(), 5);
        assert_eq!(census.alive(), 0);
    }
}

/// Yields until `cond` holds; panics after many yields instead of hanging.
async fn until(mut cond: impl FnMut() -> bool) {
    for _ in 0..100_000 {
        if cond() {
            return;
        }
        yield_now().await;
    }
    panic!("gave up waiting");
}

// ---------------------------------------------------------------------------------------
// 9. Limits
// ---------------------------------------------------------------------------------------

rt_test! {
    async fn limit_3_of_10_local_children() {
        let gauge = Gauge::default();
        let finished = Counter::new();
        let order = Slot::default();
        let r: Result<(), Cancelled> = Scope::builder()
            .limit(3)
            .run(async |s| {
                for i in 0..10usize {
                    let (g, f, o) = (&gauge, &finished, &order);
                    s.spawn_local(async move {
                        g.enter();
                        o.push((i, f.get()));
                        yields(3 + i % 4).await;
                        g.leave();
                        f.inc();
                        Ok(())
                    });
                }
                Ok(())
            })
            .within(HANG, "the limited scope's return after 10 local children ran three at a time")
            .await;
        assert_eq!(r, Ok(()));
        assert_eq!(finished.get(), 10);
        assert_eq!(gauge.max(), 3, "the limit was reached, never exceeded");
        let order = order.get();
        let started: Vec<usize> = order.iter().map(|&(i, _)| i).collect();
        assert_eq!(started, (0..10).collect::<Vec<_>>(), "FIFO start order");
        for (i, finished_at_start) in order {
            assert!(
                finished_at_start + 3 > i,
                "child {i} started when only {finished_at_start} had finished"
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn limit_3_of_10_sleeping_local_children() {
    let gauge = Gauge::default();
    let order = Slot::default();
    let start = Instant::now();
    let r: Result<(), Cancelled> = Scope::builder()
        .limit(3)
        .run(async |s| {
            for i in 0..10u64 {
                let (g, o) = (&gauge, &order);
                s.spawn_local(async move {
                    g.enter();
                    o.push(i);
                    sleep(ms(10 + 7 * (i % 3))).await;
                    g.leave();
                    Ok(())
                });
            }
            Ok(())
        })
        .within(
            PAUSED_HANG,
            "the limited scope's return after 10 sleeping local children",
        )
        .await;
    assert_eq!(r, Ok(()));
    assert_eq!(gauge.max(), 3);
    assert_eq!(order.get(), (0..10).collect::<Vec<_>>());
    // 10 children of 10..24ms, 3 at a time: more than a third of the serial time.
    let elapsed = start.elapsed();
    assert!(elapsed >= ms(40) && elapsed < ms(160), "{elapsed:?}");
}

rt_test! {
    async fn local_and_spawned_children_share_the_limit() {
        let order = Slot::default();
        let r: Result<(), Cancelled> = Scope::builder()
            .limit(1)
            .run(async |s| {
                for i in 0..6u32 {
                    let o = order.clone();
                    if i % 2 == 0 {
                        s.spawn(async move {
                            o.push(i);
                            yields(3).await;
                            o.push(100 + i);
                            Ok(())
                        });
                    } else {
                        s.spawn_local(async move {
                            o.push(i);
                            yields(3).await;
                            o.push(100 + i);
                            Ok(())
                        });
                    }
                }
                Ok(())
            })
            .within(
                HANG,
                "the scope's return after its local and spawned children shared the limit",
            )
            .await;
        assert_eq!(r, Ok(()));
        let want: Vec<u32> = (0..6).flat_map(|i| [i, 100 + i]).collect();
        assert_eq!(order.get(), want, "one at a time, in spawn order");
    }
}

// ---------------------------------------------------------------------------------------
// 10. Spawning into a cancelled scope
// ---------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn spawn_local_into_a_cancelled_scope_never_polls_the_child() {
    let census = Census::new();
    let polled = AtomicBool::new(false);
    let r: Result<(), Cancelled> = Scope::builder()
        .grace(secs(1))
        .run(async |s| {
            s.cancel();
            let g = census.guard();
            let h = s.spawn_local(async {
                polled.store(true, SeqCst);
                drop(g);
                Ok(())
            });
            assert_eq!(census.alive(), 0, "the refused child was dropped at once");
            assert!(h.is_finished());
            assert_eq!(reason(h).await, CancelReason::ParentCancelled);
            // Also from a local child spawned before the cancel, during the grace.
            yield_now().await;
            Ok(())
        })
        .within(
            PAUSED_HANG,
            "the cancelled scope's return with a refused local child",
        )
        .await;
    assert_eq!(r, Ok(()), "the body completed: its value is kept");
    assert!(!polled.load(SeqCst), "never polled");
}

#[tokio::test(start_paused = true)]
async fn a_local_child_spawning_into_its_cancelled_scope_gets_parent_cancelled() {
    let polled = AtomicBool::new(false);
    let r: Result<(), Cancelled> = Scope::builder()
        .grace(secs(1))
        .run(async |s| {
            let s2 = s.clone();
            let polled = &polled;
            let spawner = s.spawn_local(async move {
                cancelled().await;
                let h = s2.spawn_local(async move {
                    polled.store(true, SeqCst);
                    Ok(())
                });
                Ok(reason(h).await)
            });
            s.cancel();
            assert_eq!(spawner.await, Ok(CancelReason::ParentCancelled));
            Ok(())
        })
        .within(
            PAUSED_HANG,
            "the cancelled scope's return after a local child spawned into it",
        )
        .await;
    assert_eq!(r, Ok(()));
    assert!(!polled.load(SeqCst));
}

// ---------------------------------------------------------------------------------------
// 11. An escaped `Scope`
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn spawn_local_on_an_escaped_scope_panics() {
    let s = scope(async |s| Ok::<_, Cancelled>(s))
        .within(HANG, "the scope's return of itself")
        .await
        .unwrap();
    let census = Census::new();
    let g = census.guard();
    let r = std::panic::catch_unwind(AssertUnwindSafe(|| {
        s.spawn_local(async move {
            let _g = g;
            Ok(())
        })
    }));
    let msg = panic_message(&*r.unwrap_err());
    assert!(msg.contains("cannot spawn a local child"), "{msg}");
    assert_eq!(census.alive(), 0, "the refused future was dropped");
}

#[tokio::test]
#[should_panic(expected = "cannot spawn a local child")]
async fn spawn_local_on_an_escaped_scope_panics_should_panic() {
    let s = scope(async |s| Ok::<_, Cancelled>(s))
        .within(HANG, "the scope's return of itself")
        .await
        .unwrap();
    drop(s.spawn_local(async { Ok(()) }));
}

// ---------------------------------------------------------------------------------------
// 12. Scale
// ---------------------------------------------------------------------------------------

rt_test! {
    async fn ten_thousand_local_children() {
        let r: Result<usize, Cancelled> = scope(async |s| {
            let hs: Vec<_> = (0..10_000usize)
                .map(|i| s.spawn_local(async move { Ok(i) }))
                .collect();
            let mut sum = 0;
            for h in hs {
                sum += h.await?;
            }
            Ok(sum)
        })
        .within(HANG, "the scope's return after 10,000 local children")
        .await;
        assert_eq!(r, Ok(49_995_000));
    }
}

rt_test! {
    async fn ten_thousand_local_children_that_yield_once() {
        let census = Census::new();
        let done = AtomicUsize::new(0);
        let r: Result<(), Cancelled> = scope(async |s| {
            for _ in 0..10_000 {
                let (g, done) = (census.guard(), &done);
                // Not awaited: the scope waits for them.
                s.spawn_local(async move {
                    let _g = g;
                    yield_now().await;
                    done.fetch_add(1, SeqCst);
                    Ok(())
                });
            }
            Ok(())
        })
        .within(HANG, "the scope's return after 10,000 local children that yield once")
        .await;
        assert_eq!(r, Ok(()));
        assert_eq!(done.load(SeqCst), 10_000);
        assert_eq!(census.made(), 10_000);
        assert_eq!(census.alive(), 0);
    }
}

// ---------------------------------------------------------------------------------------
// 13. Spawning from another task through a `Scope<'static, _>`
// ---------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn spawn_local_from_another_task_wakes_the_parked_scope() {
    let r = tokio::time::timeout(
        secs(10),
        scope(async |s: Scope<'static, Cancelled>| {
            let (tx, rx) = oneshot::channel::<u32>();
            let s2 = s.clone();
            let other = tokio::spawn(async move {
                sleep(ms(10)).await;
                // The body is parked on `rx`: only this spawn can wake the scope future,
                // and only the local child sends.
                let h = s2.spawn_local(async move {
                    let _ = tx.send(7);
                    Ok(8u32)
                });
                h.await
            });
            let v = rx.await.expect("the local child ran");
            let w = other.await.expect("no panic")?;
            Ok(v + w)
        }),
    )
    .await
    .expect("hang: the spawn_local from another task did not wake the parked scope");
    assert_eq!(r, Ok(15));
}

rt_test! {
    async fn spawn_local_from_another_task_on_every_runtime() {
        let r = scope(async |s: Scope<'static, Cancelled>| {
            let (tx, rx) = oneshot::channel::<u32>();
            let (go_tx, go_rx) = oneshot::channel::<()>();
            let s2 = s.clone();
            let other = tokio::spawn(async move {
                let _ = go_rx.await;
                let h = s2.spawn_local(async move {
                    let _ = tx.send(7);
                    Ok(8u32)
                });
                h.await
            });
            go_tx.send(()).unwrap();
            let v = rx.await.expect("the local child ran");
            let w = other.await.expect("no panic")?;
            Ok(v + w)
        })
        .within(HANG, "the scope's run of the local child spawned from another task")
        .await;
        assert_eq!(r, Ok(15));
    }
}

rt_test! {
    async fn a_spawned_child_spawns_a_local_child_after_the_body_returned() {
        let ran = Arc::new(AtomicBool::new(false));
        let r = scope(async |s: Scope<'static, Cancelled>| {
            let (s2, ran) = (s.clone(), ran.clone());
            s.spawn(async move {
                yields(3).await;
                let h = s2.spawn_local(async move {
                    yield_now().await;
                    ran.store(true, SeqCst);
                    Ok(3u32)
                });
                assert_eq!(h.await, Ok(3));
                Ok(())
            });
            Ok(())
        })
        .within(HANG, "the scope's run of the late local child of a spawned child")
        .await;
        assert_eq!(r, Ok(()));
        assert!(ran.load(SeqCst), "the scope ran the late local child before returning");
    }
}

/// A local child queued from another task while the scope is parked, and the scope then
/// cancelled (hard: no grace) before it polls again: the scope catches its cancellation and
/// closes with the child still queued. The child is dropped with the scope, never run, and
/// its handle resolves to `ParentCancelled`. (The scope future runs on a thread of its own,
/// so that a scope stuck in its poll fails the test instead of hanging it.)
#[test]
fn a_local_child_queued_before_the_scope_s_own_hard_cancel_is_dropped_not_run() {
    let ran = Arc::new(AtomicBool::new(false));
    let census = Census::new();
    let (tx, rx) = std::sync::mpsc::channel();
    let (ran2, guard) = (ran.clone(), census.guard());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let r = rt.block_on(async move {
            let (handle_tx, handle_rx) = oneshot::channel();
            let r = scope(async |s: Scope<'static, Cancelled>| {
                let (s2, canceller) = (s.clone(), s.cancel_handle());
                tokio::spawn(async move {
                    // The body waits below: the child is queued, not taken over yet.
                    let h = s2.spawn_local(async move {
                        let _guard = guard;
                        ran2.store(true, SeqCst);
                        Ok(1u32)
                    });
                    canceller.cancel();
                    let _ = handle_tx.send(h.await);
                });
                pending::<()>().await;
                Ok(())
            })
            .await;
            let handle = handle_rx.within(HANG, "the local child's handle").await;
            (r, handle)
        });
        let _ = tx.send(r);
    });
    let (r, handle) = rx
        .recv_timeout(HANG)
        .expect("hang: the scope cancelled with a local child queued did not return");
    assert_eq!(r.unwrap_err().reason(), CancelReason::Explicit);
    assert!(
        !ran.load(SeqCst),
        "the child queued before the cancel was run"
    );
    assert_eq!(
        census.alive(),
        0,
        "the queued child was dropped with the scope"
    );
    assert_eq!(
        handle.expect("the handle's task ran").unwrap_err().reason(),
        CancelReason::ParentCancelled
    );
}

/// A local child spawned from another task through a `'static` `Scope` clone, after the
/// scope parked (body done, waiting for that task): `spawn_local` wakes the scope, which
/// takes the child over and awaits it. (The racy variant is
/// `first_local_child_spawned_from_another_thread_is_not_lost`, below.)
#[tokio::test(start_paused = true)]
async fn local_child_spawned_from_another_task_while_the_scope_waits_is_run() {
    let ran = Arc::new(AtomicBool::new(false));
    let ran2 = ran.clone();
    let r: Result<(), Error> = scope(async |s: Scope<'static, Error>| {
        let s2 = s.clone();
        s.spawn(async move {
            tokio::time::sleep(ms(10)).await; // the scope's body is done and it parked
            let h = s2.spawn_local(async move {
                ran2.store(true, SeqCst);
                Ok(1u32)
            });
            drop(s2);
            assert_eq!(h.await?, 1);
            Ok(())
        });
        Ok(())
    })
    .within(
        PAUSED_HANG,
        "the scope's return after running a local child spawned from another task",
    )
    .await;
    assert_eq!(r, Ok(()));
    assert!(ran.load(SeqCst));
}

/// A child task (on a worker) spawns the scope's first local child through a `'static`
/// `Scope` clone while the scope's first poll (on the test's thread) is about to poll its
/// local children. A regression test: if the scope loaded `used == true` (set by `spawn`
/// before it locks the queue), found the queue still empty and `running == None`, it
/// returned from `Locals::poll` through `park()` *without clearing `polling`*. The spawner
/// then pushed, saw `polling == true` and did not wake the scope: the local child never ran,
/// the child task waited for it forever, the scope hung.
///
/// Timing-dependent: run it alone (`-- --exact first_local_child_...`); before the fix it
/// hung in 4 of 4 such runs, after 25 to 9140 iterations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_local_child_spawned_from_another_thread_is_not_lost() {
    for i in 0..20_000u32 {
        let about_to_spawn = Arc::new(AtomicBool::new(false));
        let flag = about_to_spawn.clone();
        let fut = scope(async |s: Scope<'static, Error>| {
            let s2 = s.clone();
            s.spawn(async move {
                flag.store(true, SeqCst);
                let h = s2.spawn_local(async { Ok(1u32) });
                drop(s2);
                Ok(h.await?)
            });
            // Stay inside this poll until the child is about to spawn, then return: the
            // scope polls its local children right after the body.
            let t0 = std::time::Instant::now();
            while !about_to_spawn.load(SeqCst) && t0.elapsed() < Duration::from_millis(50) {
                std::hint::spin_loop();
            }
            for _ in 0..(i % 64) {
                std::hint::spin_loop();
            }
            Ok(())
        });
        let r = tokio::time::timeout(secs(5), fut).await;
        assert!(matches!(r, Ok(Ok(()))), "iteration {i}: {r:?}");
    }
}

// ---------------------------------------------------------------------------------------
// 14. `mem::forget`
// ---------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn forgetting_a_scope_future_leaks_its_borrowing_local_children() {
    let census = Census::new();
    let data = vec![1u32, 2, 3];
    {
        let mut fut = Box::pin(scope(async |s| {
            for x in &data {
                let g = census.guard();
                s.spawn_local(async move {
                    let _g = g;
                    pending::<()>().await;
                    Ok(*x)
                });
            }
            pending::<()>().await;
            Ok::<(), Cancelled>(())
        }));
        assert!(tokio::time::timeout(ms(5), fut.as_mut()).await.is_err());
        assert_eq!(census.alive(), 3, "the children run");
        std::mem::forget(fut);
    }
    // The borrowed data can go: the leaked children are never polled again.
    drop(data);
    tokio::time::sleep(ms(5)).await;
    assert_eq!(census.made(), 3);
    assert_eq!(census.alive(), 3, "leaked, not dropped");
}

// ---------------------------------------------------------------------------------------
// More: the scope's rules seen from local children
// ---------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn local_children_see_the_scopes_deadline_and_cancel_signal() {
    let start = Instant::now();
    let r: Result<(), Cancelled> = Scope::builder()
        .timeout(secs(3))
        .grace(secs(1))
        .run(async |s| {
            let h = s.spawn_local(async {
                assert_eq!(taskscope::current_deadline(), Some(start + secs(3)));
                assert!(!taskscope::is_cancelled());
                let why = cancelled().await;
                assert!(taskscope::is_cancelled());
                assert!(taskscope::checkpoint().await.is_err());
                Ok((why.reason(), Instant::now()))
            });
            let (why, at) = h.await?;
            assert_eq!(why, CancelReason::DeadlineExceeded);
            assert_eq!(at, start + secs(3));
            Ok(())
        })
        .within(
            PAUSED_HANG,
            "the scope's return after its local children saw the deadline and cancel",
        )
        .await;
    assert_eq!(r.unwrap_err().reason(), CancelReason::DeadlineExceeded);
    assert_eq!(start.elapsed(), secs(3));
}

#[tokio::test(start_paused = true)]
async fn a_shield_in_a_local_child_outlives_the_scopes_hard_cancel() {
    let done = AtomicBool::new(false);
    let start = Instant::now();
    let r: Result<(), Cancelled> = tokio::time::timeout(
        secs(60),
        Scope::builder().timeout(secs(1)).run(async |s| {
            let done = &done;
            s.spawn_local(async move {
                taskscope::shield(async {
                    sleep(secs(2)).await;
                    done.store(true, SeqCst);
                })
                .await;
                Ok(())
            });
            Ok(())
        }),
    )
    .await
    .expect("hang: the scope did not return after the shielded cleanup of its local child");
    assert_eq!(r.unwrap_err().reason(), CancelReason::DeadlineExceeded);
    assert!(done.load(SeqCst), "the shielded cleanup ran to its end");
    assert_eq!(start.elapsed(), secs(2));
}

rt_test! {
    async fn a_local_child_fails_after_the_body_returned() {
        let r: Result<u32, Error> = scope(async |s| {
            s.spawn_local(async {
                yields(3).await;
                Err::<(), _>(Error::Boom(6))
            });
            Ok(1)
        })
        .within(HANG, "the scope's return of the local child's error after the body returned")
        .await;
        assert_eq!(r, Err(Error::Boom(6)));
    }
}

rt_test! {
    async fn the_bodys_error_drops_parked_local_children() {
        let census = Census::new();
        let r: Result<(), Error> = scope(async |s| {
            for _ in 0..3 {
                let g = census.guard();
                s.spawn_local(async move {
                    let _g = g;
                    pending::<()>().await;
                    Ok(())
                });
            }
            yield_now().await;
            Err(Error::Boom(7))
        })
        .within(
            HANG,
            "the scope's return of the body's error with its parked local children dropped",
        )
        .await;
        assert_eq!(r, Err(Error::Boom(7)));
        assert_eq!(census.alive(), 0);
    }
}

#[tokio::test(start_paused = true)]
async fn collect_errors_keeps_every_local_childs_error_in_order() {
    let r = Scope::builder()
        .grace(secs(1))
        .collect_errors()
        .run(async |s| {
            s.spawn_local(async {
                sleep(ms(10)).await;
                Err::<(), _>(Error::Boom(1))
            });
            s.spawn_local(async {
                cancelled().await;
                sleep(ms(10)).await;
                Err::<(), _>(Error::Boom(2))
            });
            Ok(())
        })
        .within(
            PAUSED_HANG,
            "the collecting scope's return of every local child's error",
        )
        .await;
    assert_eq!(
        r.unwrap_err().into_vec(),
        vec![Error::Boom(1), Error::Boom(2)]
    );
}

/// Panics (with a `LocalPanic`) when dropped.
struct PanicOnDrop(u32);

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        std::panic::panic_any(LocalPanic(self.0));
    }
}

#[tokio::test(start_paused = true)]
async fn a_local_child_panicking_in_drop_at_the_deadline_is_reraised() {
    let census = Census::new();
    let r = AssertUnwindSafe(Scope::builder().timeout(secs(1)).run(async |s| {
        let bomb = PanicOnDrop(11);
        s.spawn_local(async move {
            let _bomb = bomb;
            pending::<()>().await;
            Ok(())
        });
        let g = census.guard();
        s.spawn_local(async move {
            let _g = g;
            pending::<()>().await;
            Ok(())
        });
        Ok::<(), Cancelled>(())
    }))
    .catch_unwind()
    .within(
        PAUSED_HANG,
        "the scope's re-raise of a local child's panic in drop at the deadline",
    )
    .await;
    assert_eq!(census.alive(), 0);
    expect_payload(r.unwrap_err(), LocalPanic(11));
}

#[tokio::test(start_paused = true)]
async fn a_local_child_panicking_in_drop_when_the_scope_future_is_dropped_does_not_unwind_the_drop()
{
    // The scope future's `Drop` catches the panic (it must not unwind out of a `Drop` while
    // other children still need dropping): the siblings are dropped all the same.
    let census = Census::new();
    let r = tokio::time::timeout(
        ms(10),
        scope(async |s| {
            s.spawn_local(async {
                let _bomb = PanicOnDrop(12);
                pending::<()>().await;
                Ok(())
            });
            let g = census.guard();
            s.spawn_local(async move {
                let _g = g;
                pending::<()>().await;
                Ok(())
            });
            pending::<()>().await;
            Ok::<(), Cancelled>(())
        }),
    )
    .await;
    assert!(r.is_err());
    assert_eq!(census.alive(), 0);
}

/// A value whose `Drop` panics with the message "PanicOnDrop dropped" (unless the thread is
/// already unwinding); [`PanicOnDrop`] panics with a [`LocalPanic`] payload instead.
struct PanicOnDropMessage;

impl Drop for PanicOnDropMessage {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("PanicOnDrop dropped");
        }
    }
}

/// A finished local child's value is dropped by the library (its handle is gone) and its
/// `Drop` panics. A regression test: that panic escaped the scope's poll, with no
/// guaranteed await and no "cancel, wait, then re-raise".
#[tokio::test(start_paused = true)]
async fn local_child_output_drop_panic_waits_for_the_children_then_re_raises() {
    let sibling_done = Arc::new(AtomicBool::new(false));
    let census = Census::new();
    let done = sibling_done.clone();
    let g = census.guard();
    let fut = scope(async |s| -> Result<(), Error> {
        s.spawn(async move {
            let _g = g;
            // Not cancellable in time: it cleans up under a shield (or just finishes).
            shield(tokio::time::sleep(ms(500))).await;
            done.store(true, SeqCst);
            Ok(())
        });
        // The handle is dropped: the value is dropped by the library when the child ends.
        drop(s.spawn_local(async { Ok(PanicOnDropMessage) }));
        tokio::time::sleep(secs(1)).await;
        Ok(())
    });
    let r = AssertUnwindSafe(fut)
        .catch_unwind()
        .within(
            PAUSED_HANG,
            "the scope's re-raise of a local child's output's drop panic",
        )
        .await;
    let payload = r.expect_err("the panic is re-raised by the scope");
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"PanicOnDrop dropped"));
    // The panic cancelled the scope: the spawned child (not yet in its shield) was dropped,
    // and the scope awaited that before it re-raised (`docs/design.md`, 4.1 and 4.3).
    assert_eq!(
        census.alive(),
        0,
        "the scope re-raised before its child was gone"
    );
    let _ = sibling_done.load(SeqCst);
    tokio::task::yield_now().await;
    assert_eq!(census.alive(), 0);
}

/// A local child fails while its handle is awaited in another task (a spawned child holding
/// a `'static` `Scope` clone) on another worker. The local child's error reaches the scope
/// before its handle says `ChildFailed`, so the awaiting child's own error (converted from
/// that `ChildFailed`) is the secondary one and the scope returns the local child's error.
/// When the handle was told first, the awaiting child could fail the scope first, and the
/// scope returned `Cancelled(ChildFailed)` instead: in 2 to 54 of 2,000 rounds on four
/// workers before the fix (five runs), in none after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_childs_error_wins_over_the_error_of_a_task_awaiting_its_handle() {
    let mut wrong = 0;
    for _ in 0..2_000 {
        let r: Result<(), Error> = tokio::time::timeout(
            secs(10),
            scope(async |s: Scope<'static, Error>| {
                let s2 = s.clone();
                s.spawn(async move {
                    let h = s2.spawn_local(async {
                        yield_now().await;
                        Err::<u32, _>(Error::Boom(7))
                    });
                    drop(s2);
                    h.await?;
                    Ok(())
                });
                Ok(())
            }),
        )
        .await
        .expect("hang: the scope did not end after its local child's error");
        match r {
            Err(Error::Boom(7)) => {}
            Err(Error::Cancelled(CancelReason::ChildFailed)) => wrong += 1,
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    assert_eq!(
        wrong, 0,
        "{wrong} of 2000 scopes returned the awaiting child's error"
    );
}

/// A scope polls its body and its local children again only when one of them was woken:
/// each is polled once at the start and once after its wake-up.
#[tokio::test]
async fn the_body_and_a_local_child_are_polled_once_per_wake_up() {
    let (body_polls, child_polls) = (Counter::new(), Counter::new());
    let (body_tx, body_rx) = oneshot::channel::<()>();
    let (child_tx, child_rx) = oneshot::channel::<()>();
    let run = scope(async |s| {
        let child = s.spawn_local(async {
            counting_polls(child_rx, child_polls.clone()).await.unwrap();
            Ok(())
        });
        counting_polls(body_rx, body_polls.clone()).await.unwrap();
        child.await
    });
    let wake = async {
        tokio::task::yield_now().await;
        assert_eq!((body_polls.get(), child_polls.get()), (1, 1), "first polls");
        body_tx.send(()).unwrap();
        tokio::task::yield_now().await;
        child_tx.send(()).unwrap();
    };
    let (r, ()) = async { tokio::join!(run, wake) }
        .within(HANG, "the scope's return once both were woken")
        .await;
    assert_eq!(r, Ok(()));
    assert_eq!((body_polls.get(), child_polls.get()), (2, 2));
}

rt_test! {
    /// A handle keeps the waker of its last poll: one awaited in the body first and then in
    /// a spawned child is woken there.
    async fn a_local_handle_awaited_from_another_task_is_woken_there() {
        let r: Result<u32, Cancelled> = scope(async |s| {
            let (go_tx, go_rx) = oneshot::channel::<()>();
            let (waiting_tx, waiting_rx) = oneshot::channel::<()>();
            let mut h = s.spawn_local(async move {
                let _ = go_rx.await;
                Ok(7)
            });
            assert!(futures_util::poll!(&mut h).is_pending());
            let reader = s.spawn(async move {
                assert!(futures_util::poll!(&mut h).is_pending());
                let _ = waiting_tx.send(());
                h.await
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

/// Logs its name into a slot when dropped.
struct Logged(&'static str, Slot<&'static str>);

impl Drop for Logged {
    fn drop(&mut self) {
        self.1.push(self.0);
    }
}

/// Ready at once with a `Logged` value; logs its own drop.
struct ReadyWith {
    value: Option<Logged>,
    log: Slot<&'static str>,
}

impl Future for ReadyWith {
    type Output = Result<Logged, Cancelled>;

    fn poll(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Self::Output> {
        Poll::Ready(Ok(self.value.take().expect("polled once")))
    }
}

impl Drop for ReadyWith {
    fn drop(&mut self) {
        self.log.push("future");
    }
}

/// Nobody can take the value of a local child whose handle was dropped: it is dropped as the
/// child completes, before the child's future is.
#[tokio::test]
async fn a_local_childs_value_without_a_handle_is_dropped_as_it_completes() {
    let log = Slot::default();
    let r: Result<(), Cancelled> = scope(async |s| {
        drop(s.spawn_local(ReadyWith {
            value: Some(Logged("value", log.clone())),
            log: log.clone(),
        }));
        Ok(())
    })
    .within(HANG, "the scope's return after its local child")
    .await;
    assert_eq!(r, Ok(()));
    assert_eq!(log.get(), ["value", "future"]);
}
