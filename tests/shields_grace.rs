//! Shields and grace periods: scenarios S1–S5 (`docs/scenarios.md`).
//!
//! S1–S4 are time-based and run under `start_paused = true` with exact instants. S5 has a
//! blocking child on a real thread, so it runs on the three runtimes without paused time and
//! synchronises with channels.

mod common;

use std::future::{Future, pending, poll_fn};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::task::Poll;
use std::time::Duration;

use common::{Census, Counter, HANG, PAUSED_HANG, Slot, Within, ms, rt_test, secs};
use taskscope::{
    CancelReason, CancelScope, Cancelled, Scope, cancelled, checkpoint, current_deadline,
    is_cancelled, move_on_after, scope, shield,
};
use tokio::time::{Instant, sleep};

/// Records, when dropped, how long after `t0` that happened.
struct DropTime {
    t0: Instant,
    at: Slot<Duration>,
}

impl DropTime {
    fn new(t0: Instant, at: &Slot<Duration>) -> Self {
        DropTime { t0, at: at.clone() }
    }
}

impl Drop for DropTime {
    fn drop(&mut self) {
        self.at.push(self.t0.elapsed());
    }
}

#[tokio::test(start_paused = true)]
async fn s1_shielded_work_completes_then_next_checkpoint_fails() {
    // (a) No grace: the scope is hard-cancelled at 100ms while a child is inside
    //     `shield(sleep(1s))`. The shielded work completes; the child is dropped at its
    //     first await after the shield.
    let t0 = Instant::now();
    let census = Census::new();
    let shielded: Slot<(Duration, bool)> = Slot::default();
    let after_shield: Slot<bool> = Slot::default();
    let after_checkpoint = Counter::new();
    let r: Result<(), Cancelled> = scope(async |s| {
        let (g, sh, ash, ac) = (
            census.guard(),
            shielded.clone(),
            after_shield.clone(),
            after_checkpoint.clone(),
        );
        s.spawn(async move {
            let _g = g;
            let v = shield(async {
                sleep(secs(1)).await;
                (t0.elapsed(), is_cancelled())
            })
            .await;
            sh.push(v);
            ash.push(is_cancelled());
            let _ = checkpoint().await; // the cancellation lands here
            ac.inc();
            Ok(())
        });
        sleep(ms(100)).await;
        s.cancel();
        pending::<()>().await;
        Ok(())
    })
    .within(
        PAUSED_HANG,
        "the hard-cancelled scope's return once the shielded work finished",
    )
    .await;
    assert_eq!(r.unwrap_err().reason(), CancelReason::Explicit);
    assert_eq!(
        t0.elapsed(),
        secs(1),
        "the scope waited for the shielded work"
    );
    assert_eq!(
        shielded.get(),
        vec![(secs(1), false)],
        "the shielded sleep ran to its end, not cancelled inside"
    );
    assert_eq!(after_shield.get(), vec![true]);
    assert_eq!(after_checkpoint.get(), 0, "dropped at the first checkpoint");
    assert_eq!(census.alive(), 0);

    // (b) With a grace period the next checkpoint returns the error (soft cancel).
    let t0 = Instant::now();
    let census = Census::new();
    let shielded: Slot<(Duration, bool)> = Slot::default();
    let checkpoints: Slot<Result<(), CancelReason>> = Slot::default();
    let r: Result<&str, Cancelled> = Scope::builder()
        .grace(secs(10))
        .run(async |s| {
            let (g, sh, cp) = (census.guard(), shielded.clone(), checkpoints.clone());
            s.spawn(async move {
                let _g = g;
                let v = shield(async {
                    sleep(secs(1)).await;
                    (t0.elapsed(), is_cancelled())
                })
                .await;
                sh.push(v);
                cp.push(checkpoint().await.map_err(|c| c.reason()));
                cp.push(checkpoint().await.map_err(|c| c.reason()));
                Ok(())
            });
            sleep(ms(100)).await;
            s.cancel();
            Ok("body done")
        })
        .within(
            PAUSED_HANG,
            "the scope's return once its child finished its shielded work and checkpoints",
        )
        .await;
    assert_eq!(r, Ok("body done"));
    assert_eq!(t0.elapsed(), secs(1));
    assert_eq!(shielded.get(), vec![(secs(1), false)]);
    assert_eq!(
        checkpoints.get(),
        vec![Err(CancelReason::Explicit), Err(CancelReason::Explicit)]
    );
    assert_eq!(census.alive(), 0);

    // (c) In one task: a hard-cancelled cancel scope with a live shield inside keeps polling
    //     until the shield finished, then drops its future.
    let t0 = Instant::now();
    let cs = CancelScope::new();
    let h = cs.handle();
    let canceller = {
        let h = h.clone();
        tokio::spawn(async move {
            sleep(ms(100)).await;
            h.cancel();
        })
    };
    let shielded: Slot<Duration> = Slot::default();
    let after_checkpoint = Counter::new();
    let r = {
        let (sh, ac) = (shielded.clone(), after_checkpoint.clone());
        cs.run(async move {
            shield(async {
                sleep(secs(1)).await;
                sh.push(t0.elapsed());
            })
            .await;
            let _ = checkpoint().await;
            ac.inc();
        })
        .within(
            PAUSED_HANG,
            "the hard-cancelled cancel scope's return once its shield finished",
        )
        .await
    };
    canceller
        .within(PAUSED_HANG, "the canceller task's end")
        .await
        .unwrap();
    assert_eq!(r.unwrap_err().reason(), CancelReason::Explicit);
    assert_eq!(t0.elapsed(), secs(1));
    assert_eq!(shielded.get(), vec![secs(1)]);
    assert_eq!(after_checkpoint.get(), 0);
    assert!(h.cancelled_caught());

    // (d) The shielded work is a scope with a spawned child (another task): it completes
    //     too, then the cancellation lands at the next checkpoint.
    let t0 = Instant::now();
    let census = Census::new();
    let shielded: Slot<(Result<u32, Cancelled>, Duration)> = Slot::default();
    let after_checkpoint = Counter::new();
    let r: Result<(), Cancelled> = scope(async |s| {
        let (g, sh, ac) = (census.guard(), shielded.clone(), after_checkpoint.clone());
        s.spawn(async move {
            // Written `shield(async { scope(..).await })`: the direct `shield(scope(..))`
            // inside a spawned child does not compile yet (`Run<F>` stores `F::Output`).
            let v: Result<u32, Cancelled> = shield(async {
                scope(async |inner| {
                    let c = inner.spawn(async move {
                        let _g = g;
                        sleep(secs(1)).await;
                        Ok(4)
                    });
                    c.await
                })
                .await
            })
            .await;
            sh.push((v, t0.elapsed()));
            let _ = checkpoint().await;
            ac.inc();
            Ok(())
        });
        sleep(ms(100)).await;
        s.cancel();
        pending::<()>().await;
        Ok(())
    })
    .within(
        PAUSED_HANG,
        "the hard-cancelled scope's return once its shielded nested scope finished",
    )
    .await;
    assert_eq!(r.unwrap_err().reason(), CancelReason::Explicit);
    assert_eq!(t0.elapsed(), secs(1));
    assert_eq!(shielded.get(), vec![(Ok(4), secs(1))]);
    assert_eq!(after_checkpoint.get(), 0);
    assert_eq!(census.alive(), 0);
}

/// A shield counts in the node future it started in. One moved out of there and dropped
/// while another cancel scope is polled takes nothing from that scope's count: the scope,
/// hard-cancelled, still sees its own live shield and waits for it.
#[tokio::test(start_paused = true)]
async fn a_shield_dropped_under_an_unrelated_node_leaves_that_node_s_count_alone() {
    // A shield started (polled once) in one cancel scope, then moved out of it.
    let mut moved = None;
    CancelScope::new()
        .run(async {
            let mut s = Box::pin(shield(pending::<()>()));
            poll_fn(|cx| {
                assert!(s.as_mut().poll(cx).is_pending());
                Poll::Ready(())
            })
            .await;
            moved = Some(s);
        })
        .await
        .unwrap();

    let t0 = Instant::now();
    let cs = CancelScope::new();
    let h = cs.handle();
    let shielded: Slot<Duration> = Slot::default();
    let after_checkpoint = Counter::new();
    let r = {
        let (sh, ac, h) = (shielded.clone(), after_checkpoint.clone(), h.clone());
        cs.run(async move {
            let own = shield(async {
                sleep(secs(1)).await;
                sh.push(t0.elapsed());
            });
            // Polled after `own` started: the other shield ends here, then the scope is
            // hard-cancelled (no grace period) while its own shield runs.
            let other = async {
                drop(moved);
                h.cancel();
            };
            tokio::join!(own, other);
            let _ = checkpoint().await;
            ac.inc();
        })
        .within(
            PAUSED_HANG,
            "the hard-cancelled cancel scope's return once its own shield finished",
        )
        .await
    };
    assert_eq!(r.unwrap_err().reason(), CancelReason::Explicit);
    assert_eq!(
        shielded.get(),
        vec![secs(1)],
        "its own shield ran to its end"
    );
    assert_eq!(t0.elapsed(), secs(1));
    assert_eq!(after_checkpoint.get(), 0);
    assert!(h.cancelled_caught());
}

/// A shield started in a cancel scope and dropped inside a `move_on_after` within it (whose
/// node is never built: nothing in it reads the ambient context) is no longer counted in
/// that cancel scope: hard-cancelled, the scope catches at once instead of polling on for
/// a shield that is gone.
#[tokio::test(start_paused = true)]
async fn a_shield_dropped_inside_a_lazy_timeout_leaves_its_scope_s_count() {
    let t0 = Instant::now();
    let cs = CancelScope::new();
    let h = cs.handle();
    let r = {
        let h = h.clone();
        cs.run(async move {
            let mut started = Box::pin(shield(pending::<()>()));
            poll_fn(|cx| {
                assert!(started.as_mut().poll(cx).is_pending());
                Poll::Ready(())
            })
            .await;
            let r = move_on_after(secs(1), async move { drop(started) }).await;
            assert_eq!(r, Some(()), "the timeout did not expire");
            h.cancel(); // no grace: hard, and nothing shielded is left
            pending::<()>().await;
        })
        .within(
            PAUSED_HANG,
            "the hard-cancelled cancel scope's return with no shield left",
        )
        .await
    };
    assert_eq!(r.unwrap_err().reason(), CancelReason::Explicit);
    assert_eq!(t0.elapsed(), Duration::ZERO);
    assert!(h.cancelled_caught());
}

/// A hard-cancelled cancel scope drops the future it caught only once everything below it
/// finished: a nested scope's child that runs a shield keeps the nested scope's body (and
/// what it holds) alive until the shield ends, as if nothing had been caught early.
#[tokio::test(start_paused = true)]
async fn a_caught_future_is_dropped_only_after_its_subtree_finished() {
    let t0 = Instant::now();
    let cs = CancelScope::new();
    let h = cs.handle();
    let body_dropped: Slot<Duration> = Slot::default();
    let shield_ended: Slot<Duration> = Slot::default();
    let r = {
        let (bd, se) = (body_dropped.clone(), shield_ended.clone());
        cs.run(async move {
            let _ = scope(async move |s| {
                let _in_body = DropTime::new(t0, &bd);
                s.spawn(shield(async move {
                    sleep(secs(1)).await;
                    se.push(t0.elapsed());
                }));
                pending::<()>().await;
                Ok::<_, Cancelled>(())
            })
            .await;
        })
    };
    let canceller = tokio::spawn(async move {
        sleep(ms(100)).await;
        h.cancel(); // no grace: hard
    });
    let r = r
        .within(PAUSED_HANG, "the hard-cancelled cancel scope's return")
        .await;
    canceller
        .within(PAUSED_HANG, "the canceller task's end")
        .await
        .unwrap();
    assert_eq!(r.unwrap_err().reason(), CancelReason::Explicit);
    assert_eq!(shield_ended.get(), vec![secs(1)]);
    assert_eq!(
        body_dropped.get(),
        vec![secs(1)],
        "the caught future went before the shielded child below it finished"
    );
    assert_eq!(t0.elapsed(), secs(1));
}

/// A child in nested shields is shielded from its scope's hard cancel until the outermost
/// shield ends: an inner shield that ended before the cancel leaves the outer one in force.
#[tokio::test(start_paused = true)]
async fn a_child_stays_shielded_until_its_outermost_shield_ends() {
    let t0 = Instant::now();
    let shielded: Slot<Duration> = Slot::default();
    let after_shield = Counter::new();
    let r: Result<(), Cancelled> = scope(async |s| {
        let (sh, after) = (shielded.clone(), after_shield.clone());
        s.spawn(async move {
            shield(async {
                shield(sleep(ms(10))).await; // ends before the cancel
                sleep(secs(1)).await;
                sh.push(t0.elapsed());
            })
            .await;
            let _ = checkpoint().await; // the cancellation lands here
            after.inc();
            Ok(())
        });
        sleep(ms(100)).await;
        s.cancel();
        pending::<()>().await;
        Ok(())
    })
    .within(
        PAUSED_HANG,
        "the hard-cancelled scope's return once the outer shield finished",
    )
    .await;
    assert_eq!(r.unwrap_err().reason(), CancelReason::Explicit);
    assert_eq!(
        shielded.get(),
        vec![ms(1010)],
        "the outer shield's work ran to its end after the inner one ended"
    );
    assert_eq!(after_shield.get(), 0, "dropped at the first checkpoint");
    assert_eq!(t0.elapsed(), ms(1010));
}

#[tokio::test(start_paused = true)]
async fn s2_cancel_scope_inside_shield_still_cancels_and_shield_deadline_fires() {
    let t0 = Instant::now();
    let outer = CancelScope::new();
    let ho = outer.handle();
    let sh = CancelScope::new().shield(true).timeout(secs(2));
    let hs = sh.handle();
    let seen_cancelled: Slot<bool> = Slot::default();
    let inner_result: Slot<(Result<(), CancelReason>, Duration)> = Slot::default();
    let moved_on: Slot<(Option<()>, Duration)> = Slot::default();
    let nested_scope: Slot<(Result<u32, Cancelled>, Duration)> = Slot::default();
    let shield_result: Slot<(Result<(), CancelReason>, Duration)> = Slot::default();
    let after = Counter::new();
    let r = {
        let (ho, sc, ir, mo, ns, sr, after) = (
            ho.clone(),
            seen_cancelled.clone(),
            inner_result.clone(),
            moved_on.clone(),
            nested_scope.clone(),
            shield_result.clone(),
            after.clone(),
        );
        outer
            .run(async move {
                let res = sh
                    .run(async move {
                        ho.cancel(); // the outer is now hard-cancelled
                        sc.push(is_cancelled());
                        // A cancel scope inside the shield still cancels.
                        let inner = CancelScope::new();
                        let hi = inner.handle();
                        let r = inner
                            .run(async move {
                                hi.cancel();
                                let _ = checkpoint().await;
                            })
                            .await;
                        ir.push((r.map_err(|c| c.reason()), t0.elapsed()));
                        // A timeout inside the shield still fires.
                        let m = move_on_after(ms(500), pending::<()>()).await;
                        mo.push((m, t0.elapsed()));
                        // A scope opened inside the shield runs its children normally.
                        let v: Result<u32, Cancelled> = scope(async |s| {
                            let c = s.spawn(async {
                                sleep(ms(500)).await;
                                Ok(5)
                            });
                            c.await
                        })
                        .await;
                        ns.push((v, t0.elapsed()));
                        // The shield's own 2s deadline fires.
                        pending::<()>().await
                    })
                    .await;
                sr.push((res.map_err(|c| c.reason()), t0.elapsed()));
                let _ = checkpoint().await; // the outer cancellation lands here
                after.inc();
            })
            .within(
                PAUSED_HANG,
                "the outer cancel scope's return once the shield's own deadline fired",
            )
            .await
    };
    assert_eq!(seen_cancelled.get(), vec![false]);
    assert_eq!(
        inner_result.get(),
        vec![(Err(CancelReason::Explicit), Duration::ZERO)]
    );
    assert_eq!(moved_on.get(), vec![(None, ms(500))]);
    assert_eq!(nested_scope.get(), vec![(Ok(5), secs(1))]);
    assert_eq!(
        shield_result.get(),
        vec![(Err(CancelReason::DeadlineExceeded), secs(2))]
    );
    assert!(hs.cancel_called() && hs.cancelled_caught());
    assert_eq!(r.unwrap_err().reason(), CancelReason::Explicit);
    assert_eq!(t0.elapsed(), secs(2));
    assert_eq!(after.get(), 0);
    assert!(ho.cancelled_caught());

    // A shield's own explicit cancel still works while the outer is cancelled.
    let t0 = Instant::now();
    let outer = CancelScope::new();
    let ho = outer.handle();
    let sh = CancelScope::new().shield(true);
    let hs = sh.handle();
    let canceller = {
        let hs = hs.clone();
        tokio::spawn(async move {
            sleep(secs(1)).await;
            hs.cancel();
        })
    };
    let shield_result: Slot<(Result<(), CancelReason>, Duration)> = Slot::default();
    let r = {
        let (ho, sr) = (ho.clone(), shield_result.clone());
        outer
            .run(async move {
                let res = sh
                    .run(async move {
                        ho.cancel();
                        sleep(secs(100)).await;
                    })
                    .await;
                sr.push((res.map_err(|c| c.reason()), t0.elapsed()));
                checkpoint().await
            })
            .within(
                PAUSED_HANG,
                "the outer cancel scope's return once the shield's own cancel landed",
            )
            .await
    };
    canceller
        .within(PAUSED_HANG, "the canceller task's end")
        .await
        .unwrap();
    assert_eq!(
        shield_result.get(),
        vec![(Err(CancelReason::Explicit), secs(1))]
    );
    assert!(hs.cancelled_caught());
    assert_eq!(r.unwrap_err().reason(), CancelReason::Explicit);
    assert_eq!(t0.elapsed(), secs(1));
}

#[tokio::test(start_paused = true)]
async fn s3_current_deadline_inside_shield_ignores_outer() {
    let t0 = Instant::now();
    let at = |d: Duration| Some(t0 + d);
    let r = move_on_after(secs(5), async {
        let mut v = vec![current_deadline()];
        // A bare shield: no deadline at all.
        v.push(shield(async { current_deadline() }).await);
        // A shield with a later deadline of its own: that one, not the outer 5s.
        v.push(
            CancelScope::new()
                .shield(true)
                .timeout(secs(10))
                .run(async { current_deadline() })
                .await
                .unwrap(),
        );
        // Nodes inside the shield see the shield as their root.
        v.push(
            shield(move_on_after(secs(20), async { current_deadline() }))
                .await
                .flatten(),
        );
        v.push(
            CancelScope::new()
                .shield(true)
                .timeout(secs(10))
                .run(move_on_after(secs(20), async { current_deadline() }))
                .await
                .unwrap()
                .flatten(),
        );
        // So do spawned children of a scope opened inside the shield.
        let child: Result<Option<Instant>, Cancelled> = shield(scope(async |s| {
            let c = s.spawn(async { Ok(current_deadline()) });
            c.await
        }))
        .await;
        v.push(child.unwrap());
        v
    })
    .within(
        PAUSED_HANG,
        "move_on_after's return of the deadlines seen inside shields",
    )
    .await;
    assert_eq!(
        r,
        Some(vec![
            at(secs(5)),
            None,
            at(secs(10)),
            at(secs(20)),
            at(secs(10)),
            None,
        ])
    );
    assert_eq!(t0.elapsed(), Duration::ZERO);

    // And the outer deadline does not reach the shielded work when it fires.
    let t0 = Instant::now();
    let r = move_on_after(
        secs(1),
        shield(async {
            sleep(secs(3)).await;
            (is_cancelled(), current_deadline(), t0.elapsed())
        }),
    )
    .within(
        PAUSED_HANG,
        "move_on_after's return once the shielded sleep finished",
    )
    .await;
    assert_eq!(r, Some((false, None, secs(3))));
    assert_eq!(t0.elapsed(), secs(3));
}

#[tokio::test(start_paused = true)]
async fn s4_grace_lets_cleanup_finish_then_drops() {
    // (a) Explicit cancel at t=1s with a 100ms grace period.
    let t0 = Instant::now();
    let census = Census::new();
    let cleaned: Slot<(CancelReason, Duration)> = Slot::default();
    let a_dropped: Slot<Duration> = Slot::default();
    let b_dropped: Slot<Duration> = Slot::default();
    let b_after = Counter::new();
    let r: Result<&str, Cancelled> = Scope::builder()
        .grace(ms(100))
        .run(async |s| {
            // A reacts to the soft cancel and cleans up asynchronously.
            let (g, d, c) = (
                census.guard(),
                DropTime::new(t0, &a_dropped),
                cleaned.clone(),
            );
            s.spawn(async move {
                let (_g, _d) = (g, d);
                let why = cancelled().await;
                sleep(ms(50)).await;
                c.push((why.reason(), t0.elapsed()));
                Ok(())
            });
            // B ignores cancellation.
            let (g, d, a) = (
                census.guard(),
                DropTime::new(t0, &b_dropped),
                b_after.clone(),
            );
            s.spawn(async move {
                let (_g, _d) = (g, d);
                sleep(secs(3600)).await;
                a.inc();
                Ok(())
            });
            sleep(secs(1)).await;
            s.cancel();
            Ok("body done")
        })
        .within(
            PAUSED_HANG,
            "the scope's return at the end of its 100 ms grace period",
        )
        .await;
    assert_eq!(r, Ok("body done"), "the body completed: its value is kept");
    assert_eq!(t0.elapsed(), ms(1100));
    assert_eq!(cleaned.get(), vec![(CancelReason::Explicit, ms(1050))]);
    assert_eq!(a_dropped.get(), vec![ms(1050)], "A finished its cleanup");
    assert_eq!(
        b_dropped.get(),
        vec![ms(1100)],
        "B dropped when the grace ended"
    );
    assert_eq!(b_after.get(), 0);
    assert_eq!(census.made(), 2);
    assert_eq!(census.alive(), 0, "both awaited before the scope returned");

    // (b) Deadline at 1s with a 100ms grace period; the body ignores cancellation too.
    let t0 = Instant::now();
    let census = Census::new();
    let cleaned: Slot<(CancelReason, Duration)> = Slot::default();
    let b_dropped: Slot<Duration> = Slot::default();
    let body_dropped: Slot<Duration> = Slot::default();
    let r: Result<(), Cancelled> = Scope::builder()
        .timeout(secs(1))
        .grace(ms(100))
        .run(async |s| {
            let _d = DropTime::new(t0, &body_dropped);
            let (g, c) = (census.guard(), cleaned.clone());
            s.spawn(async move {
                let _g = g;
                let why = cancelled().await;
                sleep(ms(50)).await;
                c.push((why.reason(), t0.elapsed()));
                Ok(())
            });
            let (g, d) = (census.guard(), DropTime::new(t0, &b_dropped));
            s.spawn(async move {
                let (_g, _d) = (g, d);
                pending::<()>().await;
                Ok(())
            });
            pending::<()>().await;
            Ok(())
        })
        .within(PAUSED_HANG, "the scope's return at its deadline plus grace")
        .await;
    assert_eq!(r.unwrap_err().reason(), CancelReason::DeadlineExceeded);
    assert_eq!(t0.elapsed(), ms(1100));
    assert_eq!(
        cleaned.get(),
        vec![(CancelReason::DeadlineExceeded, ms(1050))]
    );
    assert_eq!(b_dropped.get(), vec![ms(1100)]);
    assert_eq!(body_dropped.get(), vec![ms(1100)]);
    assert_eq!(census.alive(), 0);

    // (c) The grace period reaches grandchildren in a nested scope: soft at once, hard when
    //     the outer scope's grace period ends.
    let t0 = Instant::now();
    let census = Census::new();
    let cleaned: Slot<(CancelReason, Duration)> = Slot::default();
    let b_dropped: Slot<Duration> = Slot::default();
    let r: Result<(), Cancelled> = Scope::builder()
        .grace(ms(100))
        .run(async |s| {
            let (ga, gb, c, d) = (
                census.guard(),
                census.guard(),
                cleaned.clone(),
                DropTime::new(t0, &b_dropped),
            );
            s.spawn(async move {
                scope(async |inner| {
                    inner.spawn(async move {
                        let _g = ga;
                        let why = cancelled().await;
                        sleep(ms(50)).await;
                        c.push((why.reason(), t0.elapsed()));
                        Ok(())
                    });
                    inner.spawn(async move {
                        let (_g, _d) = (gb, d);
                        pending::<()>().await;
                        Ok(())
                    });
                    pending::<()>().await;
                    Ok(())
                })
                .await
            });
            sleep(secs(1)).await;
            s.cancel();
            Ok(())
        })
        .within(
            PAUSED_HANG,
            "the scope's return once its grace period reached the grandchildren",
        )
        .await;
    assert_eq!(r, Ok(()));
    assert_eq!(t0.elapsed(), ms(1100));
    assert_eq!(
        cleaned.get(),
        vec![(CancelReason::ParentCancelled, ms(1050))]
    );
    assert_eq!(b_dropped.get(), vec![ms(1100)]);
    assert_eq!(census.made(), 2);
    assert_eq!(census.alive(), 0);
}

rt_test! {
    async fn s5_blocking_child_awaited_on_cancel_sees_is_cancelled() {
        let census = Census::new();
        let (started_tx, started_rx) = tokio::sync::oneshot::channel::<bool>();
        let (saw_tx, saw_rx) = mpsc::channel::<()>();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let scope_returned = Arc::new(AtomicBool::new(false));
        let child_done = Arc::new(AtomicBool::new(false));
        let saw_cancel = Arc::new(AtomicBool::new(false));
        // Releases the child once it saw the cancellation, and notes whether the scope had
        // already returned by then (it must not have: it awaits the blocking child).
        let helper = {
            let scope_returned = scope_returned.clone();
            std::thread::spawn(move || {
                saw_rx.recv().unwrap();
                let returned = scope_returned.load(Ordering::SeqCst);
                release_tx.send(()).unwrap();
                returned
            })
        };
        let r: Result<(), Cancelled> = scope(async |s| {
            let (g, child_done, saw_cancel) =
                (census.guard(), child_done.clone(), saw_cancel.clone());
            s.spawn_blocking(move || {
                let _g = g;
                started_tx.send(is_cancelled()).unwrap();
                // A safety valve so a broken library fails the test instead of hanging it.
                let start = std::time::Instant::now();
                while start.elapsed() < Duration::from_secs(30) {
                    if is_cancelled() {
                        saw_cancel.store(true, Ordering::SeqCst);
                        break;
                    }
                    std::thread::yield_now();
                }
                saw_tx.send(()).unwrap();
                release_rx.recv().unwrap();
                child_done.store(true, Ordering::SeqCst);
                Ok(())
            });
            let cancelled_at_start = started_rx
                .within(HANG, "the blocking child's start")
                .await
                .unwrap();
            assert!(!cancelled_at_start);
            s.cancel();
            pending::<()>().await;
            Ok(())
        })
        .within(HANG, "the cancelled scope's return once its blocking child saw the cancellation")
        .await;
        let done_when_returned = child_done.load(Ordering::SeqCst);
        scope_returned.store(true, Ordering::SeqCst);
        assert_eq!(r.unwrap_err().reason(), CancelReason::Explicit);
        assert!(saw_cancel.load(Ordering::SeqCst), "the blocking child saw is_cancelled()");
        assert!(done_when_returned, "the scope returned only after the blocking child");
        assert!(!helper.join().unwrap(), "the scope had not returned while the child ran");
        assert_eq!(census.made(), 1);
        assert_eq!(census.alive(), 0);
    }
}

// A child cancelled through its own handle (or a `start()` whose caller went away) while it
// runs a shield: the shielded part completes, and the child stops at its first await after
// it, as for a cancel of its scope.

rt_test! {
    async fn task_handle_cancel_waits_for_the_childs_shield() {
        let steps: Slot<&'static str> = Slot::default();
        let st = steps.clone();
        let r: Result<(), Cancelled> = scope(async |s| {
            let (in_shield_tx, in_shield_rx) = tokio::sync::oneshot::channel();
            let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
            let child = s.spawn(async move {
                shield(async {
                    in_shield_tx.send(()).ok();
                    go_rx.await.ok();
                    sleep(ms(10)).await;
                    st.push("shield done");
                })
                .await;
                st.push("after the shield, before its next await");
                tokio::task::yield_now().await;
                st.push("past the next await");
                Ok(())
            });
            in_shield_rx.within(HANG, "the child's entry into its shield").await.ok();
            child.cancel();
            go_tx.send(()).ok();
            let out = tokio::time::timeout(secs(10), child)
                .await
                .expect("hang: the cancelled child did not end after its shield within 10 s");
            assert_eq!(out.unwrap_err().reason(), CancelReason::Explicit);
            Ok(())
        })
        .within(HANG, "the scope's return after its child was cancelled in a shield")
        .await;
        assert_eq!(r, Ok(()));
        assert_eq!(steps.get(), ["shield done", "after the shield, before its next await"]);
    }
}

rt_test! {
    async fn start_dropped_by_its_caller_waits_for_the_childs_shielded_setup() {
        let steps: Slot<&'static str> = Slot::default();
        let st = steps.clone();
        let r: Result<(), Cancelled> = scope(async |s| {
            let (in_setup_tx, in_setup_rx) = tokio::sync::oneshot::channel();
            let (gave_up_tx, gave_up_rx) = tokio::sync::oneshot::channel::<()>();
            let start = s.start(move |ready: taskscope::Ready<u32>| async move {
                shield(async {
                    in_setup_tx.send(()).ok();
                    // The setup ends only after its caller gave up (whatever the scheduler
                    // does meanwhile), so the cancellation is pending when the shield ends.
                    let _ = gave_up_rx.await;
                    sleep(ms(20)).await;
                    st.push("setup done");
                })
                .await;
                tokio::task::yield_now().await;
                st.push("past the next await");
                ready.started(1);
                Ok(())
            });
            // The caller gives up while the child runs its shielded setup.
            let out = tokio::select! {
                v = start => Some(v),
                _ = in_setup_rx => None,
            };
            assert!(out.is_none(), "the child started");
            gave_up_tx.send(()).ok();
            Ok(())
        })
        .within(HANG, "the scope's return once the dropped start's shielded setup finished")
        .await;
        assert_eq!(r, Ok(()));
        assert_eq!(steps.get(), ["setup done"]);
    }
}

/// A nested scope whose body already returned, waiting only for a child, when an enclosing
/// cancel scope is hard-cancelled while a shield beside it keeps that cancel scope polling
/// its future: the child is cancelled and the nested scope returns the body's value as soon
/// as the child is gone, not only when the shield ends (nothing of it is left to drop).
#[tokio::test(start_paused = true)]
async fn a_nested_scope_whose_body_returned_ends_under_a_hard_cancel_while_a_shield_runs_beside_it()
{
    let t0 = Instant::now();
    let outer = CancelScope::new();
    let ho = outer.handle();
    let nested: Slot<(Result<u32, Cancelled>, Duration)> = Slot::default();
    let shielded: Slot<Duration> = Slot::default();
    let canceller = tokio::spawn(async move {
        sleep(secs(1)).await;
        ho.cancel();
    });
    let r = {
        let (nested, shielded) = (nested.clone(), shielded.clone());
        outer
            .run(async move {
                tokio::join!(
                    async {
                        shield(sleep(secs(2))).await;
                        shielded.push(t0.elapsed());
                    },
                    async {
                        let v = scope(async |s: Scope<'_, Cancelled>| {
                            s.spawn(pending::<Result<(), Cancelled>>());
                            Ok(5)
                        })
                        .await;
                        nested.push((v, t0.elapsed()));
                    },
                );
            })
            .within(
                PAUSED_HANG,
                "the cancel scope's return once its shield ended",
            )
            .await
    };
    canceller
        .within(PAUSED_HANG, "the canceller task's end")
        .await
        .unwrap();
    assert_eq!(
        nested.get(),
        vec![(Ok(5), secs(1))],
        "the nested scope returned once its cancelled child was gone"
    );
    assert_eq!(shielded.get(), vec![secs(2)], "the shield ran to its end");
    assert_eq!(
        r,
        Ok(()),
        "the cancel scope's future completed before it was caught"
    );
    assert_eq!(t0.elapsed(), secs(2));
}

/// The end of a scope's grace period reaches the scopes nested in it: a child of a nested
/// scope that ignores the cancel is dropped when the outer scope's grace ends, and the
/// outer scope returns then (its body, caught, is dropped only once that child is gone).
#[tokio::test(start_paused = true)]
async fn the_end_of_a_grace_period_drops_a_stubborn_child_of_a_nested_scope() {
    let t0 = Instant::now();
    let census = Census::new();
    let dropped: Slot<Duration> = Slot::default();
    let r: Result<(), Cancelled> = Scope::builder()
        .grace(ms(100))
        .run(async |s| {
            let outer = s.handle();
            scope(async |inner| {
                let (g, d) = (census.guard(), DropTime::new(t0, &dropped));
                inner.spawn(async move {
                    let (_g, _d) = (g, d);
                    sleep(secs(3600)).await;
                    Ok(())
                });
                sleep(secs(1)).await;
                outer.cancel();
                pending::<()>().await;
                Ok(())
            })
            .await
        })
        .within(
            PAUSED_HANG,
            "the scope's return at the end of its 100 ms grace period",
        )
        .await;
    assert_eq!(r.unwrap_err().reason(), CancelReason::Explicit);
    assert_eq!(t0.elapsed(), ms(1100));
    assert_eq!(
        dropped.get(),
        vec![ms(1100)],
        "the nested scope's child was dropped when the grace ended"
    );
    assert_eq!(census.alive(), 0, "awaited before the scope returned");
}
