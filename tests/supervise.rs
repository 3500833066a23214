//! Supervise mode: `Scope::builder().supervise()`: a child's error does not cancel the
//! scope; it is delivered through the child's `Supervised` handle, and an error nobody
//! took is returned by the scope when it ends.

mod common;

use std::future::pending;
use std::time::Duration;

use common::{Census, Error, HANG, PAUSED_HANG, Within, ms, rt_test, within};
use taskscope::{CancelReason, Cancelled, Scope, cancelled};

rt_test! {
    async fn child_error_goes_to_its_handle_and_siblings_go_on() {
        let census = Census::new();
        let r: Result<u32, Error> = Scope::builder()
            .supervise()
            .run(async |s| {
                let g = census.guard();
                let sibling = s.spawn(async move {
                    let _g = g;
                    tokio::task::yield_now().await;
                    tokio::task::yield_now().await;
                    Ok(5)
                });
                let bad = s.spawn(async { Err::<u32, _>(Error::Boom(1)) });
                assert_eq!(bad.await, Err(Error::Boom(1)));
                assert!(!s.is_cancelled(), "a supervised failure must not cancel the scope");
                let v = sibling.await?;
                Ok(v)
            })
            .within(
                HANG,
                "the supervised scope's return after its child's error went to its handle",
            )
            .await;
        assert_eq!(r, Ok(5));
        assert_eq!(census.alive(), 0);
    }
}

rt_test! {
    async fn error_of_a_dropped_handle_is_returned_by_the_scope_without_cancelling() {
        let census = Census::new();
        let r: Result<&str, Error> = Scope::builder()
            .supervise()
            .run(async |s| {
                // Dropped before the child fails.
                drop(s.spawn(async {
                    tokio::task::yield_now().await;
                    Err::<(), _>(Error::Boom(2))
                }));
                let g = census.guard();
                let sibling = s.spawn(async move {
                    let _g = g;
                    for _ in 0..10 {
                        tokio::task::yield_now().await;
                    }
                    Ok("sibling done")
                });
                // The sibling completes: nothing was cancelled.
                let v = sibling.await?;
                Ok(v)
            })
            .within(HANG, "the supervised scope's return of a dropped handle's error")
            .await;
        assert_eq!(r, Err(Error::Boom(2)));
        assert_eq!(census.alive(), 0);
    }
}

#[tokio::test(start_paused = true)]
async fn error_held_by_a_handle_dropped_unawaited_is_returned() {
    let r: Result<(), Error> = Scope::builder()
        .supervise()
        .run(async |s| {
            let h = s.spawn(async { Err::<(), _>(Error::Boom(3)) });
            // The child fails while the handle is alive, then the handle goes unawaited.
            tokio::time::sleep(ms(10)).await;
            assert!(h.is_finished());
            drop(h);
            assert!(!s.is_cancelled());
            Ok(())
        })
        .within(
            PAUSED_HANG,
            "the supervised scope's return of the error of a handle dropped unawaited",
        )
        .await;
    assert_eq!(r, Err(Error::Boom(3)));
}

#[tokio::test]
async fn collect_errors_returns_every_unobserved_error_in_order() {
    let r = Scope::builder()
        .supervise()
        .collect_errors()
        .run(async |s| {
            for i in 0..3u32 {
                drop(s.spawn(async move {
                    for _ in 0..i {
                        tokio::task::yield_now().await;
                    }
                    Err::<(), _>(Error::Boom(i))
                }));
            }
            Ok::<_, Error>(())
        })
        .within(
            HANG,
            "the collecting supervised scope's return of every unobserved error",
        )
        .await;
    let errs: Vec<Error> = r.unwrap_err().into_iter().collect();
    assert_eq!(errs, [Error::Boom(0), Error::Boom(1), Error::Boom(2)]);
}

#[tokio::test]
async fn an_observed_error_is_not_returned_again() {
    let r: Result<u32, Error> = Scope::builder()
        .supervise()
        .run(async |s| {
            let h = s.spawn(async { Err::<u32, _>(Error::Boom(4)) });
            Ok(h.await.unwrap_or(9))
        })
        .within(
            HANG,
            "the supervised scope's return after its handle observed the error",
        )
        .await;
    assert_eq!(r, Ok(9));
}

#[tokio::test(start_paused = true)]
async fn cancellation_reaches_supervised_children_and_their_handles() {
    let census = Census::new();
    let r: Result<(), Error> = Scope::builder()
        .supervise()
        .timeout(Duration::from_secs(1))
        .run(async |s| {
            let g = census.guard();
            let h = s.spawn(async move {
                let _g = g;
                pending::<Result<(), Error>>().await
            });
            let h2 = s.handle().spawn(async { Ok::<_, Error>(1) }).unwrap();
            assert_eq!(h2.await, Ok(1));
            let e = h.await.unwrap_err();
            assert_eq!(e, Error::Cancelled(CancelReason::ParentCancelled));
            cancelled().await;
            Ok(())
        })
        .within(
            PAUSED_HANG,
            "the supervised scope's return after its cancel reached the children",
        )
        .await;
    assert_eq!(r, Err(Error::Cancelled(CancelReason::DeadlineExceeded)));
    assert_eq!(census.alive(), 0);
}

#[tokio::test]
async fn handle_cancel_cancels_that_child_alone() {
    let r: Result<u32, Error> = Scope::builder()
        .supervise()
        .run(async |s| {
            let h = s.spawn(pending::<Result<u32, Error>>());
            h.cancel();
            assert_eq!(h.await, Err(Error::Cancelled(CancelReason::Explicit)));
            Ok(1)
        })
        .within(
            HANG,
            "the supervised scope's return after one child was cancelled through its handle",
        )
        .await;
    assert_eq!(r, Ok(1));
}

rt_test! {
    /// A supervised handle says, as a `TaskHandle` does, whether its child finished and
    /// which task it runs in; its `Debug` shows whether it finished.
    async fn a_supervised_handle_knows_its_childs_task_id_and_whether_it_finished() {
        let r: Result<(), Error> = Scope::builder()
            .supervise()
            .run(async |s| {
                let (tx, rx) = tokio::sync::oneshot::channel::<()>();
                let mut h = s.spawn(async move {
                    let _ = rx.await;
                    Ok(tokio::task::id())
                });
                assert!(!h.is_finished(), "the child waits for its release");
                assert_eq!(format!("{h:?}"), "Supervised { finished: false }");
                let id = h.id().expect("the child was started");
                tx.send(()).unwrap();
                let seen = (&mut h)
                    .within(HANG, "the released supervised child's end")
                    .await?;
                assert_eq!(seen, id, "the id is the child's task's");
                assert!(h.is_finished());
                assert_eq!(format!("{h:?}"), "Supervised { finished: true }");
                Ok(())
            })
            .within(HANG, "the supervised scope's return after its child ended")
            .await;
        assert_eq!(r, Ok(()));
    }
}

#[tokio::test]
async fn body_error_still_fails_and_cancels_the_scope() {
    let census = Census::new();
    let r: Result<(), Error> = Scope::builder()
        .supervise()
        .run(async |s| {
            let g = census.guard();
            drop(s.spawn(async move {
                let _g = g;
                pending::<Result<(), Error>>().await
            }));
            tokio::task::yield_now().await;
            Err(Error::Boom(7))
        })
        .within(HANG, "the supervised scope's return of its body's error")
        .await;
    assert_eq!(r, Err(Error::Boom(7)));
    assert_eq!(census.alive(), 0);
}

#[tokio::test]
async fn child_panic_is_still_re_raised() {
    let r = tokio::spawn(async {
        Scope::builder()
            .supervise()
            .run(async |s| {
                drop(s.spawn(async {
                    panic!("supervised boom");
                    #[allow(unreachable_code)]
                    Ok::<(), Cancelled>(())
                }));
                Ok::<_, Cancelled>(())
            })
            .await
    })
    .within(HANG, "the supervised scope's re-raise of its child's panic")
    .await;
    let payload = r.unwrap_err().into_panic();
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"supervised boom"));
}

rt_test! {
    async fn many_failing_children_fail_none_of_their_siblings() {
        let r: Result<usize, Error> = Scope::builder()
            .supervise()
            .run(async |s| {
                let hs: Vec<_> = (0..1000u32)
                    .map(|i| {
                        s.spawn(async move {
                            tokio::task::yield_now().await;
                            if i % 2 == 0 { Err(Error::Boom(i)) } else { Ok(i) }
                        })
                    })
                    .collect();
                let mut ok = 0;
                for (i, h) in hs.into_iter().enumerate() {
                    match h.await {
                        Ok(v) => {
                            assert_eq!(v as usize, i);
                            ok += 1;
                        }
                        Err(e) => assert_eq!(e, Error::Boom(i as u32)),
                    }
                }
                Ok(ok)
            })
            .within(HANG, "the supervised scope's return after many children failed")
            .await;
        assert_eq!(r, Ok(500));
    }
}

#[tokio::test]
async fn the_scoped_macro_takes_supervise() {
    #[taskscope::scoped(s, supervise, limit = 2)]
    async fn check_all(ids: Vec<u32>) -> Result<Vec<Result<u32, Error>>, Error> {
        let hs: Vec<_> = ids
            .into_iter()
            .map(|id| {
                s.spawn(async move {
                    tokio::task::yield_now().await;
                    if id == 2 {
                        Err(Error::Boom(id))
                    } else {
                        Ok(id * 10)
                    }
                })
            })
            .collect();
        let mut out = Vec::new();
        for h in hs {
            out.push(h.await); // one failure does not cancel the others
        }
        Ok(out)
    }
    let r = check_all(vec![1, 2, 3])
        .within(HANG, "the #[scoped(supervise)] function's return")
        .await
        .unwrap();
    assert_eq!(r, [Ok(10), Err(Error::Boom(2)), Ok(30)]);
}

#[tokio::test]
async fn the_scope_macro_takes_supervise() {
    let r: Result<u32, Error> = within(
        HANG,
        async {
            taskscope::scope!(supervise, |s| {
                drop(s.spawn(async { Err::<(), _>(Error::Boom(5)) }));
                let ok = s.spawn(async { Ok(1) });
                ok.await
            })
        },
        "the return of scope!(supervise) with an unobserved error",
    )
    .await;
    assert_eq!(
        r,
        Err(Error::Boom(5)),
        "the unobserved error is returned at the end"
    );
}

// A child whose handle was dropped fails during its cleanup, after the scope was cancelled:
// that error is secondary, as in fail-fast mode. It neither replaces the deadline's
// `DeadlineExceeded` nor the body's value; it is counted as suppressed.

#[tokio::test(start_paused = true)]
async fn late_unobserved_error_after_the_deadline_is_secondary() {
    // The child's own error is a `Cancelled` with reason `Shutdown`, told apart by it.
    let r: Result<(), Cancelled> = Scope::builder()
        .supervise()
        .timeout(ms(100))
        .grace(ms(50))
        .run(async |s| {
            drop(s.spawn(async {
                cancelled().await;
                // Fails in its cleanup.
                Err::<(), _>(Cancelled::new(CancelReason::Shutdown))
            }));
            Ok(())
        })
        .within(
            PAUSED_HANG,
            "the supervised scope's return at its deadline with a late error",
        )
        .await;
    let c = r.unwrap_err();
    assert_eq!(c.reason(), CancelReason::DeadlineExceeded);
    assert_eq!(c.suppressed_errors(), 1);
}

rt_test! {
    async fn late_unobserved_error_after_an_explicit_cancel_keeps_the_bodys_value() {
        let r: Result<u32, Error> = Scope::builder()
            .supervise()
            .grace(Duration::from_secs(5))
            .run(async |s| {
                drop(s.spawn(async {
                    cancelled().await;
                    Err::<(), _>(Error::Boom(8))
                }));
                tokio::task::yield_now().await;
                s.cancel();
                Ok(42)
            })
            .within(HANG, "the supervised scope's return of its body's value after its cancel")
            .await;
        assert_eq!(r, Ok(42));
    }
}
