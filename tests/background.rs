//! Background children: `spawn_background` children are cancelled with their own
//! reason (`ScopeDone`) once the body and every other child finished, and are awaited.
//!
//! A background spawn racing the drop of the scope future once leaked two nodes; that race
//! is guarded by a unit test that counts live nodes, in `scope-core/src/background.rs`
//! (scenario P6, `docs/scenarios.md`).

mod common;

use std::future::pending;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Census, Error, HANG, PAUSED_HANG, Within, finished_scope_handle, ms, rt_test, secs};
use taskscope::{CancelReason, Cancelled, Scope, cancelled, checkpoint, scope};
use tokio::time::Instant;

/// A service that runs until cancelled and reports why and when.
async fn service(log: Arc<Mutex<Vec<(CancelReason, Duration)>>>, t0: Instant) -> Result<(), Error> {
    let why = cancelled().await;
    log.lock().unwrap().push((why.reason(), t0.elapsed()));
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn background_child_is_cancelled_with_scope_done_after_body_and_children() {
    let t0 = Instant::now();
    let log = Arc::new(Mutex::new(Vec::new()));
    let census = Census::new();
    // With a grace period the service sees the soft signal and its reason; without one it is
    // dropped at once (below).
    let r: Result<&str, Error> = Scope::builder()
        .grace(ms(100))
        .run(async |s| {
            let g = census.guard();
            let l = log.clone();
            s.spawn_background(async move {
                let _g = g;
                service(l, t0).await
            });
            s.spawn(async {
                tokio::time::sleep(secs(3)).await;
                Ok(())
            });
            tokio::time::sleep(secs(1)).await;
            Ok("body done at 1s")
        })
        .within(
            PAUSED_HANG,
            "the scope's return once its last foreground child finished and the service stopped",
        )
        .await;
    assert_eq!(r, Ok("body done at 1s"));
    // Cancelled when the last foreground child finished (3s), not when the body did.
    assert_eq!(*log.lock().unwrap(), [(CancelReason::ScopeDone, secs(3))]);
    assert_eq!(census.alive(), 0);
    assert_eq!(t0.elapsed(), secs(3));
}

/// The foreground work that ends last is a nested scope whose future was dropped (its
/// shielded child still runs, so the scope keeps it as a zombie): when that child ends, the
/// zombie's count reaching zero is carried up into the scope, which is left with only its
/// background node, and that wakes the scope to stop its background children.
#[tokio::test(start_paused = true)]
async fn background_children_stop_when_a_dropped_nested_scope_drains_last() {
    let t0 = Instant::now();
    let log = Arc::new(Mutex::new(Vec::new()));
    let r: Result<(), Error> = Scope::builder()
        .grace(ms(100))
        .run(async |s| {
            let l = log.clone();
            s.spawn_background(service(l, t0));
            let mut nested = Box::pin(scope(async |n| {
                n.spawn(async {
                    taskscope::shield(tokio::time::sleep(secs(3))).await;
                    Ok(())
                });
                pending::<Result<(), Error>>().await
            }));
            // Enter the nested scope (its child is spawned), then drop it at 1s.
            assert!(futures_util::poll!(nested.as_mut()).is_pending());
            tokio::time::sleep(secs(1)).await;
            drop(nested);
            Ok(())
        })
        .within(
            PAUSED_HANG,
            "the scope's return once the dropped nested scope's last child finished",
        )
        .await;
    assert_eq!(r, Ok(()));
    assert_eq!(*log.lock().unwrap(), [(CancelReason::ScopeDone, secs(3))]);
    assert_eq!(t0.elapsed(), secs(3));
}

rt_test! {
    async fn background_children_outlive_every_foreground_child_and_are_awaited() {
        let census = Census::new();
        let done = Arc::new(Mutex::new(Vec::new()));
        let r: Result<(), Error> = Scope::builder().grace(secs(60)).run(async |s| {
            for i in 0..4 {
                let g = census.guard();
                let d = done.clone();
                s.spawn_background(async move {
                    let _g = g;
                    cancelled().await;
                    d.lock().unwrap().push(format!("bg{i}"));
                    Ok(())
                });
            }
            for i in 0..50 {
                let d = done.clone();
                s.spawn(async move {
                    for _ in 0..(i % 7) {
                        tokio::task::yield_now().await;
                    }
                    d.lock().unwrap().push(format!("fg{i}"));
                    Ok(())
                });
            }
            Ok(())
        })
        .within(
            HANG,
            "the scope's return after the foreground children and the background ones",
        )
        .await;
        assert_eq!(r, Ok(()));
        assert_eq!(census.alive(), 0);
        let done = done.lock().unwrap();
        assert_eq!(done.len(), 54);
        let first_bg = done.iter().position(|x| x.starts_with("bg")).unwrap();
        assert!(
            done[first_bg..].iter().all(|x| x.starts_with("bg")),
            "a background child stopped before every foreground child finished: {done:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn without_grace_background_children_are_dropped_when_the_foreground_is_done() {
    let t0 = Instant::now();
    let census = Census::new();
    let dropped_at = Arc::new(Mutex::new(None));
    struct At(Arc<Mutex<Option<Duration>>>, Instant);
    impl Drop for At {
        fn drop(&mut self) {
            *self.0.lock().unwrap() = Some(self.1.elapsed());
        }
    }
    let at = At(dropped_at.clone(), t0);
    let r: Result<(), Error> = scope(async |s| {
        let g = census.guard();
        let h = s.spawn_background(async move {
            let _g = g;
            let _at = at;
            pending::<Result<(), Error>>().await
        });
        s.spawn(async {
            tokio::time::sleep(secs(2)).await;
            Ok(())
        });
        // The body may await its background child: it resolves once the scope let it go.
        tokio::time::sleep(ms(10)).await;
        drop(h);
        Ok(())
    })
    .within(
        PAUSED_HANG,
        "the scope's return once the foreground was done and the background child dropped",
    )
    .await;
    assert_eq!(r, Ok(()));
    assert_eq!(census.alive(), 0);
    assert_eq!(*dropped_at.lock().unwrap(), Some(secs(2)));
}

#[tokio::test(start_paused = true)]
async fn grace_lets_background_children_clean_up_and_drops_the_stubborn_ones() {
    let t0 = Instant::now();
    let census = Census::new();
    let cleaned = Arc::new(Mutex::new(None));
    let c = cleaned.clone();
    let r: Result<(), Error> = Scope::builder()
        .grace(ms(500))
        .run(async |s| {
            s.spawn_background(async move {
                cancelled().await;
                tokio::time::sleep(ms(200)).await; // async cleanup within the grace
                *c.lock().unwrap() = Some(t0.elapsed());
                Ok(())
            });
            let g = census.guard();
            s.spawn_background(async move {
                let _g = g;
                pending::<Result<(), Error>>().await // ignores cancellation
            });
            tokio::time::sleep(secs(1)).await;
            Ok(())
        })
        .within(
            PAUSED_HANG,
            "the scope's return at the end of its background children's grace",
        )
        .await;
    assert_eq!(r, Ok(()));
    assert_eq!(*cleaned.lock().unwrap(), Some(ms(1200)));
    assert_eq!(census.alive(), 0);
    assert_eq!(
        t0.elapsed(),
        ms(1500),
        "the stubborn one is dropped when the grace ends"
    );
}

#[tokio::test(start_paused = true)]
async fn background_error_before_scope_done_fails_the_scope() {
    let census = Census::new();
    let r: Result<(), Error> = scope(async |s| {
        s.spawn_background(async {
            tokio::time::sleep(secs(1)).await;
            Err::<(), _>(Error::Boom(1))
        });
        let g = census.guard();
        s.spawn(async move {
            let _g = g;
            pending::<Result<(), Error>>().await
        });
        Ok(())
    })
    .within(
        PAUSED_HANG,
        "the scope's return of its background child's error",
    )
    .await;
    assert_eq!(r, Err(Error::Boom(1)));
    assert_eq!(census.alive(), 0);
}

#[tokio::test(start_paused = true)]
async fn background_stopping_with_checkpoint_error_does_not_fail_the_scope() {
    let r: Result<u8, Error> = scope(async |s| {
        s.spawn_background(async {
            loop {
                checkpoint().await?; // Err(Cancelled(ScopeDone)) once no longer needed
                tokio::time::sleep(ms(100)).await;
            }
            #[allow(unreachable_code)]
            Ok::<(), Error>(())
        });
        tokio::time::sleep(secs(1)).await;
        Ok(7)
    })
    .within(
        PAUSED_HANG,
        "the scope's return once its background child stopped at a checkpoint",
    )
    .await;
    assert_eq!(r, Ok(7));
}

#[tokio::test(start_paused = true)]
async fn cancelling_the_scope_reaches_background_children_with_parent_cancelled() {
    let t0 = Instant::now();
    let log = Arc::new(Mutex::new(Vec::new()));
    let r: Result<(), Error> = Scope::builder()
        .timeout(secs(2))
        .grace(secs(1))
        .run(async |s| {
            let l = log.clone();
            s.spawn_background(service(l, t0));
            pending::<()>().await;
            Ok(())
        })
        .within(
            PAUSED_HANG,
            "the scope's return at its deadline with its background child cancelled",
        )
        .await;
    assert_eq!(r, Err(Error::Cancelled(CancelReason::DeadlineExceeded)));
    assert_eq!(
        *log.lock().unwrap(),
        [(CancelReason::ParentCancelled, secs(2))]
    );
}

#[tokio::test(start_paused = true)]
async fn children_spawn_background_children_through_the_handle() {
    let t0 = Instant::now();
    let log = Arc::new(Mutex::new(Vec::new()));
    let r: Result<(), Error> = Scope::builder()
        .grace(ms(1))
        .run(async |s| {
            let h = s.handle();
            let l = log.clone();
            s.spawn(async move {
                h.spawn_background(service(l, t0)).unwrap();
                tokio::time::sleep(secs(2)).await;
                Ok(())
            });
            Ok(())
        })
        .within(
            PAUSED_HANG,
            "the scope's return once the background child spawned through a handle stopped",
        )
        .await;
    assert_eq!(r, Ok(()));
    assert_eq!(*log.lock().unwrap(), [(CancelReason::ScopeDone, secs(2))]);
}

#[tokio::test]
async fn background_only_scope_cancels_them_when_the_body_returns() {
    let census = Census::new();
    let r: Result<(), Cancelled> = scope(async |s| {
        for _ in 0..3 {
            let g = census.guard();
            s.spawn_background(async move {
                let _g = g;
                pending::<Result<(), Cancelled>>().await
            });
        }
        Ok(())
    })
    .within(
        HANG,
        "the scope's return once its background-only children were cancelled",
    )
    .await;
    assert_eq!(r, Ok(()));
    assert_eq!(census.alive(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_scope_hands_its_background_children_to_the_ancestor() {
    let census = Census::new();
    let r: Result<(), Error> = Scope::builder()
        .run(async |_outer| {
            let g = census.guard();
            let inner = Scope::builder().run(async |s| {
                s.spawn_background(async move {
                    let _g = g;
                    // Ignores cancellation for a while: the outer scope must wait for it.
                    taskscope::shield(tokio::time::sleep(secs(5))).await;
                    Ok::<_, Error>(())
                });
                pending::<Result<(), Error>>().await
            });
            let dropped = tokio::time::timeout(secs(1), inner).await;
            assert!(dropped.is_err());
            Ok(())
        })
        .within(
            PAUSED_HANG,
            "the outer scope's return once the handed-over background child finished",
        )
        .await;
    assert_eq!(r, Ok(()));
    assert_eq!(
        census.alive(),
        0,
        "the outer scope awaited the handed-over background child"
    );
}

#[tokio::test]
async fn background_panic_is_re_raised() {
    let r = tokio::spawn(async {
        scope(async |s| {
            s.spawn_background(async {
                panic!("bg boom");
                #[allow(unreachable_code)]
                Ok::<(), Cancelled>(())
            });
            tokio::task::yield_now().await;
            Ok::<_, Cancelled>(())
        })
        .await
    })
    .within(
        HANG,
        "the task's end with the background child's panic re-raised",
    )
    .await;
    assert_eq!(
        r.unwrap_err().into_panic().downcast_ref::<&str>(),
        Some(&"bg boom")
    );
}

#[tokio::test]
async fn spawn_background_into_a_finished_scope_is_closed() {
    let e = finished_scope_handle()
        .await
        .spawn_background(async { Ok::<(), Cancelled>(()) })
        .unwrap_err();
    assert_eq!(e, taskscope::SpawnError::Closed);
}
