//! Deadlines: scenarios D1–D11 (`docs/scenarios.md`).
//!
//! All of them are time-based, so they run under `start_paused = true` (current_thread) and
//! assert exact instants.

mod common;

use std::future::pending;
use std::time::Duration;

use common::{Census, Counter, PAUSED_HANG, Slot, Within, ms, secs};
use taskscope::{
    CancelReason, CancelScope, Cancelled, Scope, checkpoint, current_deadline, fail_after, fail_at,
    is_cancelled, move_on_after, move_on_at, scope,
};
use tokio::time::{Instant, sleep};

const DAY: Duration = Duration::from_secs(24 * 3600);

/// The bound of a wait in the D10 tests, which sleep for years of paused time: past their
/// century-away deadline (`PAUSED_HANG`, a day, would cut them short).
const BEYOND_FAR: Duration = Duration::from_secs(1000 * 365 * 24 * 3600);

#[tokio::test(start_paused = true)]
async fn d1_deadline_after_exit_does_nothing() {
    let t0 = Instant::now();
    let r: Result<(), Cancelled> = scope(async |s| {
        // A cancel scope whose deadline passes after it exited.
        let cs = CancelScope::new().timeout(secs(1));
        let h = cs.handle();
        assert_eq!(
            cs.run(async { 5 })
                .within(PAUSED_HANG, "the cancel scope's return of its value")
                .await,
            Ok(5)
        );
        assert_eq!(h.deadline(), Some(t0 + secs(1)));

        // The same with `fail_after` / `move_on_after` and a nested scope with a timeout.
        assert_eq!(
            fail_after(secs(1), async { 6 })
                .within(PAUSED_HANG, "fail_after's return of its value")
                .await,
            Ok(6)
        );
        assert_eq!(
            move_on_after(secs(1), async { 7 })
                .within(PAUSED_HANG, "move_on_after's return of its value")
                .await,
            Some(7)
        );
        let mut inner_handle = None;
        let v: Result<u32, Cancelled> = Scope::builder()
            .timeout(secs(1))
            .run(async |s| {
                inner_handle = Some(s.cancel_handle());
                Ok(8)
            })
            .within(PAUSED_HANG, "the inner scope's return before its deadline")
            .await;
        assert_eq!(v, Ok(8), "finished before its deadline: not a timeout");
        let inner_handle = inner_handle.unwrap();

        sleep(secs(2)).await;
        assert_eq!(t0.elapsed(), secs(2));

        // Nothing happened: neither to the exited nodes nor to the enclosing scope.
        assert!(!h.cancel_called());
        assert!(!h.cancelled_caught());
        assert!(!h.is_cancelled());
        assert_eq!(h.reason(), None);
        assert!(!inner_handle.cancel_called());
        assert_eq!(inner_handle.reason(), None);
        assert!(!s.is_cancelled());
        assert!(!is_cancelled());
        assert_eq!(checkpoint().await, Ok(()));
        assert_eq!(
            current_deadline(),
            None,
            "the exited deadlines are not ambient"
        );
        let outer = s.cancel_handle();
        assert!(!outer.cancel_called());
        Ok(())
    })
    .within(PAUSED_HANG, "the scope's return")
    .await;
    assert_eq!(r, Ok(()));
    assert_eq!(t0.elapsed(), secs(2));
}

#[tokio::test(start_paused = true)]
async fn d2_nested_deadlines_take_minimum() {
    let t0 = Instant::now();
    let at = |n: u64| t0 + secs(n);

    // Cancel scopes: outer 5s, inner 10s, moved to 3s, moved back to 10s.
    let seen: Slot<Option<Instant>> = Slot::default();
    let outer = CancelScope::new().deadline(at(5));
    let ho = outer.handle();
    let inner = CancelScope::new().deadline(at(10));
    let hi = inner.handle();
    let after = Counter::new();
    let r = {
        let (seen, hi, after) = (seen.clone(), hi.clone(), after.clone());
        outer
            .run(async move {
                inner
                    .run(async move {
                        seen.push(current_deadline()); // 5s
                        hi.set_deadline(at(3));
                        seen.push(current_deadline()); // 3s
                        hi.set_deadline(at(10));
                        seen.push(current_deadline()); // 5s
                        // The 3s deadline was moved away before it fired: not cancelled at 4s.
                        sleep(secs(4)).await;
                        assert!(!is_cancelled());
                        assert_eq!(checkpoint().await, Ok(()));
                        seen.push(current_deadline()); // still 5s
                        sleep(secs(100)).await;
                        after.inc();
                    })
                    .await
            })
            .within(
                PAUSED_HANG,
                "the outer cancel scope's return at its 5 s deadline",
            )
            .await
    };
    assert_eq!(
        seen.get(),
        vec![Some(at(5)), Some(at(3)), Some(at(5)), Some(at(5))]
    );
    // The outer deadline fires at 5s and the outer scope catches it.
    assert_eq!(r.unwrap_err().reason(), CancelReason::DeadlineExceeded);
    assert_eq!(t0.elapsed(), secs(5));
    assert_eq!(after.get(), 0);
    assert!(ho.cancel_called() && ho.cancelled_caught());
    assert!(!hi.cancel_called() && !hi.cancelled_caught());
    assert_eq!(hi.deadline(), Some(at(10)));

    // Scopes and spawned children see the minimum too.
    let t1 = Instant::now();
    let r: Result<Vec<Option<Instant>>, Cancelled> = Scope::builder()
        .deadline(t1 + secs(5))
        .run(async |s| {
            let c = s.spawn(async {
                let mut v = vec![current_deadline()];
                v.push(
                    move_on_after(secs(10), async { current_deadline() })
                        .await
                        .flatten(),
                );
                v.push(
                    move_on_after(secs(3), async { current_deadline() })
                        .await
                        .flatten(),
                );
                Ok(v)
            });
            c.await
        })
        .within(PAUSED_HANG, "the scope's return of its child's deadlines")
        .await;
    assert_eq!(
        r,
        Ok(vec![
            Some(t1 + secs(5)),
            Some(t1 + secs(5)),
            Some(t1 + secs(3))
        ])
    );
    assert_eq!(t1.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn d3_relative_timeout_counts_from_entry() {
    let t0 = Instant::now();

    // Cancel scope built at t=0 with a 5s timeout, entered (first polled) at t=3.
    let cs = CancelScope::new().timeout(secs(5));
    let h = cs.handle();
    let seen: Slot<Option<Instant>> = Slot::default();
    let s2 = seen.clone();
    let fut = cs.run(async move {
        s2.push(current_deadline());
        sleep(secs(100)).await;
    });
    sleep(secs(3)).await;
    assert_eq!(h.deadline(), None, "not entered yet: no absolute deadline");
    let r = fut
        .within(PAUSED_HANG, "the cancel scope's return 5 s after its entry")
        .await;
    assert_eq!(r.unwrap_err().reason(), CancelReason::DeadlineExceeded);
    assert_eq!(t0.elapsed(), secs(8));
    assert_eq!(seen.get(), vec![Some(t0 + secs(8))]);
    assert_eq!(h.deadline(), Some(t0 + secs(8)));
    assert!(h.cancelled_caught());

    // A scope with a timeout, built at t1 and awaited 3s later.
    let t1 = Instant::now();
    let seen: Slot<Option<Instant>> = Slot::default();
    let s2 = seen.clone();
    let fut = Scope::builder().timeout(secs(5)).run(async move |_s| {
        s2.push(current_deadline());
        sleep(secs(100)).await;
        Ok::<(), Cancelled>(())
    });
    sleep(secs(3)).await;
    let r = fut
        .within(PAUSED_HANG, "the scope's return 5 s after its entry")
        .await;
    assert_eq!(r.unwrap_err().reason(), CancelReason::DeadlineExceeded);
    assert_eq!(t1.elapsed(), secs(8));
    assert_eq!(seen.get(), vec![Some(t1 + secs(8))]);

    // `move_on_after` and `fail_after` too.
    let t2 = Instant::now();
    let fut = move_on_after(secs(5), pending::<()>());
    sleep(secs(3)).await;
    assert_eq!(
        fut.within(
            PAUSED_HANG,
            "move_on_after's return 5 s after its first poll"
        )
        .await,
        None
    );
    assert_eq!(t2.elapsed(), secs(8));

    let t3 = Instant::now();
    let fut = fail_after(secs(5), pending::<()>());
    sleep(secs(3)).await;
    assert_eq!(
        fut.within(PAUSED_HANG, "fail_after's return 5 s after its first poll")
            .await
            .unwrap_err()
            .reason(),
        CancelReason::DeadlineExceeded
    );
    assert_eq!(t3.elapsed(), secs(8));
}

#[tokio::test(start_paused = true)]
async fn d4_moving_deadline_earlier_or_later() {
    // (a) Moved earlier, into the past: cancelled at once (no timer round trip).
    let t0 = Instant::now();
    let cs = CancelScope::new().deadline(t0 + secs(10));
    let h = cs.handle();
    let seen: Slot<bool> = Slot::default();
    let after = Counter::new();
    let r = {
        let (h, seen, after) = (h.clone(), seen.clone(), after.clone());
        cs.run(async move {
            sleep(secs(2)).await;
            h.set_deadline(t0 + secs(1));
            seen.push(is_cancelled());
            seen.push(h.cancel_called());
            let _ = checkpoint().await; // hard-cancelled: dropped here
            after.inc();
        })
        .within(
            PAUSED_HANG,
            "the cancel scope's return at a deadline moved into the past",
        )
        .await
    };
    assert_eq!(r.unwrap_err().reason(), CancelReason::DeadlineExceeded);
    assert_eq!(t0.elapsed(), secs(2), "cancelled at once, not at 10s");
    assert_eq!(seen.get(), vec![true, true]);
    assert_eq!(after.get(), 0);
    assert!(h.cancelled_caught());

    // (b) Moved earlier, still in the future: fires at the new deadline.
    let t0 = Instant::now();
    let cs = CancelScope::new().deadline(t0 + secs(10));
    let h = cs.handle();
    let r = {
        let h = h.clone();
        cs.run(async move {
            sleep(secs(2)).await;
            h.set_deadline(t0 + secs(4));
            assert!(!is_cancelled());
            sleep(secs(100)).await;
        })
        .within(
            PAUSED_HANG,
            "the cancel scope's return at a deadline moved earlier",
        )
        .await
    };
    assert_eq!(r.unwrap_err().reason(), CancelReason::DeadlineExceeded);
    assert_eq!(t0.elapsed(), secs(4));

    // (c) Moved later from inside: postponed.
    let t0 = Instant::now();
    let cs = CancelScope::new().deadline(t0 + secs(5));
    let h = cs.handle();
    let r = {
        let h = h.clone();
        cs.run(async move {
            sleep(secs(2)).await;
            h.set_deadline(t0 + secs(20));
            sleep(secs(100)).await;
        })
        .within(
            PAUSED_HANG,
            "the cancel scope's return at a deadline moved later",
        )
        .await
    };
    assert_eq!(r.unwrap_err().reason(), CancelReason::DeadlineExceeded);
    assert_eq!(t0.elapsed(), secs(20));
    assert_eq!(h.deadline(), Some(t0 + secs(20)));

    // (d) Moved by another task while the scope waits: later postpones, earlier-in-the-past
    //     cancels at once, `set_timeout` counts from the call.
    let t0 = Instant::now();
    let cs = CancelScope::new().deadline(t0 + secs(5));
    let h = cs.handle();
    let mover = {
        let h = h.clone();
        tokio::spawn(async move {
            sleep(secs(2)).await;
            h.set_deadline(t0 + secs(20)); // later
            sleep(secs(4)).await; // t=6: past the old 5s deadline
            h.set_timeout(secs(3)); // t=9
        })
    };
    let r = cs
        .run(sleep(secs(100)))
        .within(
            PAUSED_HANG,
            "the cancel scope's return at the deadline another task moved",
        )
        .await;
    assert_eq!(r.unwrap_err().reason(), CancelReason::DeadlineExceeded);
    assert_eq!(t0.elapsed(), secs(9));
    mover
        .within(PAUSED_HANG, "the mover task's end")
        .await
        .unwrap();

    let t0 = Instant::now();
    let cs = CancelScope::new().deadline(t0 + secs(10));
    let h = cs.handle();
    let mover = {
        let h = h.clone();
        tokio::spawn(async move {
            sleep(secs(2)).await;
            h.set_deadline(t0); // in the past
        })
    };
    let r = cs
        .run(sleep(secs(100)))
        .within(
            PAUSED_HANG,
            "the cancel scope's return at the deadline another task moved into the past",
        )
        .await;
    assert_eq!(r.unwrap_err().reason(), CancelReason::DeadlineExceeded);
    assert_eq!(t0.elapsed(), secs(2));
    mover
        .within(PAUSED_HANG, "the mover task's end")
        .await
        .unwrap();

    // (e) A scope's own deadline, moved through its cancel handle: earlier fires earlier,
    //     later lets a child finish that the old deadline would have cut off.
    let t0 = Instant::now();
    let r: Result<(), Cancelled> = Scope::builder()
        .timeout(secs(5))
        .run(async |s| {
            s.spawn(async {
                sleep(secs(100)).await;
                Ok(())
            });
            sleep(secs(1)).await;
            s.cancel_handle().set_deadline(t0 + secs(3));
            Ok(())
        })
        .within(
            PAUSED_HANG,
            "the scope's return at its deadline moved earlier",
        )
        .await;
    assert_eq!(r.unwrap_err().reason(), CancelReason::DeadlineExceeded);
    assert_eq!(t0.elapsed(), secs(3));

    let t0 = Instant::now();
    let r: Result<u32, Cancelled> = Scope::builder()
        .timeout(secs(1))
        .run(async |s| {
            let c = s.spawn(async {
                sleep(secs(2)).await;
                Ok(2)
            });
            s.cancel_handle().set_deadline(t0 + secs(3));
            c.await
        })
        .within(
            PAUSED_HANG,
            "the scope's return of its child's value before the deadline moved later",
        )
        .await;
    assert_eq!(r, Ok(2));
    assert_eq!(t0.elapsed(), secs(2));
}

/// A deadline cleared by another task while the scope waits: the scope runs past it, and
/// neither its handle nor the code inside sees a deadline any more.
#[tokio::test(start_paused = true)]
async fn d4_a_cleared_deadline_no_longer_cancels() {
    let t0 = Instant::now();
    let cs = CancelScope::new().deadline(t0 + secs(5));
    let h = cs.handle();
    let clearer = {
        let h = h.clone();
        tokio::spawn(async move {
            sleep(secs(2)).await;
            h.clear_deadline();
        })
    };
    let r = cs
        .run(async {
            sleep(secs(10)).await;
            current_deadline()
        })
        .within(
            PAUSED_HANG,
            "the cancel scope's return after its deadline was cleared",
        )
        .await;
    assert_eq!(r, Ok(None), "ran past the cleared deadline and saw none");
    assert_eq!(t0.elapsed(), secs(10));
    assert_eq!(h.deadline(), None);
    assert!(!h.cancel_called());
    clearer
        .within(PAUSED_HANG, "the clearing task's end")
        .await
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn d5_fail_after_fails_at_deadline_or_succeeds() {
    let t0 = Instant::now();
    let census = Census::new();
    let after = Counter::new();
    let g = census.guard();
    let a = after.clone();
    let r = fail_after(secs(1), async move {
        let _g = g;
        sleep(secs(100)).await;
        a.inc();
    })
    .within(PAUSED_HANG, "fail_after's return at its deadline")
    .await;
    let c = r.unwrap_err();
    assert_eq!(c.reason(), CancelReason::DeadlineExceeded);
    assert!(c.is_deadline());
    assert_eq!(t0.elapsed(), secs(1));
    assert_eq!(after.get(), 0);
    assert_eq!(census.alive(), 0, "the timed-out future was dropped");

    let t1 = Instant::now();
    assert_eq!(
        fail_after(secs(100), async { 7 })
            .within(PAUSED_HANG, "fail_after's return of a ready value")
            .await,
        Ok(7)
    );
    assert_eq!(
        fail_after(secs(100), std::future::ready("ready"))
            .within(PAUSED_HANG, "fail_after's return of a ready future's value")
            .await,
        Ok("ready")
    );
    assert_eq!(t1.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn d6_fail_after_cancelled_explicitly_reports_explicit() {
    // (a) A fail_after-shaped cancel scope (timeout 10s) cancelled explicitly at 1s.
    let t0 = Instant::now();
    let cs = CancelScope::new().timeout(secs(10));
    let h = cs.handle();
    let r = {
        let h = h.clone();
        cs.run(async move {
            sleep(secs(1)).await;
            h.cancel();
            sleep(secs(100)).await;
        })
        .within(
            PAUSED_HANG,
            "the explicitly cancelled cancel scope's return",
        )
        .await
    };
    assert_eq!(r.unwrap_err().reason(), CancelReason::Explicit);
    assert_eq!(t0.elapsed(), secs(1));
    sleep(secs(20)).await; // past the old deadline: the first reason sticks
    assert_eq!(h.reason(), Some(CancelReason::Explicit));
    assert!(h.cancelled_caught());

    // (b) The same, cancelled by another task while the body waits.
    let t0 = Instant::now();
    let cs = CancelScope::new().timeout(secs(10));
    let h = cs.handle();
    let canceller = {
        let h = h.clone();
        tokio::spawn(async move {
            sleep(secs(1)).await;
            h.cancel();
        })
    };
    let r = cs
        .run(sleep(secs(100)))
        .within(
            PAUSED_HANG,
            "the cancel scope's return after another task cancelled it",
        )
        .await;
    assert_eq!(r.unwrap_err().reason(), CancelReason::Explicit);
    assert_eq!(t0.elapsed(), secs(1));
    canceller
        .within(PAUSED_HANG, "the canceller task's end")
        .await
        .unwrap();

    // (c) `fail_after` around a scope that cancels itself: the explicit cancellation passes
    //     through `fail_after` as the scope's own value, not as a timeout.
    let t0 = Instant::now();
    let r = fail_after(
        secs(10),
        scope(async |s| {
            sleep(secs(1)).await;
            s.cancel();
            pending::<()>().await;
            Ok::<(), Cancelled>(())
        }),
    )
    .within(
        PAUSED_HANG,
        "fail_after's return of the self-cancelled scope",
    )
    .await;
    let inner = r.expect("fail_after's own deadline did not fire");
    assert_eq!(inner.unwrap_err().reason(), CancelReason::Explicit);
    assert_eq!(t0.elapsed(), secs(1));

    // (d) `fail_after` inside an enclosing scope cancelled explicitly before the deadline:
    //     the enclosing scope catches, reason Explicit.
    let t0 = Instant::now();
    let outer = CancelScope::new();
    let ho = outer.handle();
    let after = Counter::new();
    let r = {
        let (ho, after) = (ho.clone(), after.clone());
        outer
            .run(async move {
                let r = fail_after(secs(10), async move {
                    sleep(secs(1)).await;
                    ho.cancel();
                    sleep(secs(100)).await;
                })
                .await;
                after.inc();
                r
            })
            .within(
                PAUSED_HANG,
                "the outer cancel scope's return after it was cancelled around fail_after",
            )
            .await
    };
    assert_eq!(r.unwrap_err().reason(), CancelReason::Explicit);
    assert_eq!(t0.elapsed(), secs(1));
    assert_eq!(
        after.get(),
        0,
        "fail_after did not return a value of its own"
    );
    assert!(ho.cancelled_caught());

    // (e) With a grace period: cancelled explicitly at 1s; the 2s deadline passes during the
    //     grace period, and the deadline is even moved into the past: still `Explicit`.
    let t0 = Instant::now();
    let cs = CancelScope::new().timeout(secs(2)).grace(secs(10));
    let h = cs.handle();
    let seen: Slot<(CancelReason, Duration)> = Slot::default();
    let r = {
        let (h, seen) = (h.clone(), seen.clone());
        cs.run(async move {
            sleep(secs(1)).await;
            h.cancel();
            sleep(secs(2)).await; // soft: the sleep runs to its end, past the deadline
            let c = checkpoint().await.unwrap_err();
            seen.push((c.reason(), t0.elapsed()));
            h.set_deadline(t0);
            let c = checkpoint().await.unwrap_err();
            seen.push((c.reason(), t0.elapsed()));
            sleep(secs(100)).await; // dropped when the grace period ends
        })
        .within(
            PAUSED_HANG,
            "the cancel scope's return at the end of its grace period",
        )
        .await
    };
    assert_eq!(
        seen.get(),
        vec![
            (CancelReason::Explicit, secs(3)),
            (CancelReason::Explicit, secs(3))
        ]
    );
    assert_eq!(r.unwrap_err().reason(), CancelReason::Explicit);
    assert_eq!(
        t0.elapsed(),
        secs(11),
        "the grace period counts from the explicit cancel"
    );
    assert_eq!(h.reason(), Some(CancelReason::Explicit));
}

#[tokio::test(start_paused = true)]
async fn d7_inner_timeout_error_passes_through_outer() {
    // The inner fail_after expires: the outer move_on_after passes its error through.
    let t0 = Instant::now();
    let r = move_on_after(Duration::MAX, fail_after(ms(10), pending::<()>()))
        .within(
            PAUSED_HANG,
            "the inner fail_after's expiry through move_on_after",
        )
        .await;
    let inner = r.expect("the outer timeout did not expire");
    assert_eq!(inner.unwrap_err().reason(), CancelReason::DeadlineExceeded);
    assert_eq!(t0.elapsed(), ms(10));

    // The other way round: the outer expires, the inner never does.
    let t0 = Instant::now();
    let r = move_on_after(ms(10), fail_after(Duration::MAX, pending::<()>()))
        .within(PAUSED_HANG, "the outer move_on_after's expiry")
        .await;
    assert_eq!(r, None);
    assert_eq!(t0.elapsed(), ms(10));

    // fail_after in fail_after: each reports only its own expiry.
    let t0 = Instant::now();
    let r = fail_after(secs(1), fail_after(ms(10), pending::<()>()))
        .within(
            PAUSED_HANG,
            "the inner fail_after's expiry through fail_after",
        )
        .await;
    let inner = r.expect("the outer timeout did not expire");
    assert_eq!(inner.unwrap_err().reason(), CancelReason::DeadlineExceeded);
    assert_eq!(t0.elapsed(), ms(10));

    let t0 = Instant::now();
    let r = fail_after(ms(10), move_on_after(secs(1), pending::<()>()))
        .within(PAUSED_HANG, "the outer fail_after's expiry")
        .await;
    assert_eq!(r.unwrap_err().reason(), CancelReason::DeadlineExceeded);
    assert_eq!(t0.elapsed(), ms(10));

    // Both expire at the same instant: the outermost catches (`docs/design.md`, 4.7).
    let t0 = Instant::now();
    let r = move_on_after(ms(10), fail_after(ms(10), pending::<()>()))
        .within(
            PAUSED_HANG,
            "the outer move_on_after's expiry at the same instant as the inner one",
        )
        .await;
    assert_eq!(r, None);
    assert_eq!(t0.elapsed(), ms(10));
}

#[tokio::test(start_paused = true)]
async fn d8_repeated_inner_timeouts_outer_still_fires() {
    let t0 = Instant::now();
    let expired = Counter::new();
    let deadlines: Slot<Option<Instant>> = Slot::default();
    let r = {
        let (expired, deadlines) = (expired.clone(), deadlines.clone());
        move_on_after(secs(1), async move {
            for _ in 0u64.. {
                let r = move_on_after(ms(300), async {
                    deadlines.push(current_deadline());
                    pending::<()>().await
                })
                .await;
                assert_eq!(r, None);
                expired.inc();
            }
        })
        .within(
            PAUSED_HANG,
            "the outer move_on_after's expiry after repeated inner timeouts",
        )
        .await
    };
    assert_eq!(r, None);
    assert_eq!(t0.elapsed(), secs(1));
    assert_eq!(expired.get(), 3, "inner timeouts at 0.3s, 0.6s, 0.9s");
    assert_eq!(
        deadlines.get(),
        vec![
            Some(t0 + ms(300)),
            Some(t0 + ms(600)),
            Some(t0 + ms(900)),
            Some(t0 + secs(1)), // the fourth is bounded by the outer deadline
        ]
    );

    // The same with fail_after in a loop under a scope's timeout.
    let t0 = Instant::now();
    let failed = Counter::new();
    let r: Result<(), Cancelled> = Scope::builder()
        .timeout(secs(1))
        .run(async |_s| {
            for _ in 0u64.. {
                let r = fail_after(ms(300), pending::<()>()).await;
                assert_eq!(r.unwrap_err().reason(), CancelReason::DeadlineExceeded);
                failed.inc();
            }
            Ok(())
        })
        .within(
            PAUSED_HANG,
            "the scope's return at its deadline after repeated inner fail_afters",
        )
        .await;
    assert_eq!(r.unwrap_err().reason(), CancelReason::DeadlineExceeded);
    assert_eq!(t0.elapsed(), secs(1));
    assert_eq!(failed.get(), 3);
}

#[tokio::test(start_paused = true)]
async fn d9_past_deadline_cancels_before_first_poll() {
    let census = Census::new();
    let polled = Counter::new();
    let probe = |census: &Census, polled: &Counter| {
        let (g, p) = (census.guard(), polled.clone());
        async move {
            let _g = g;
            p.inc();
            7
        }
    };
    sleep(secs(1)).await;
    let t0 = Instant::now();
    let past = t0 - secs(1);

    let cs = CancelScope::new().deadline(past);
    let h = cs.handle();
    let r = cs
        .run(probe(&census, &polled))
        .within(
            PAUSED_HANG,
            "the return of a cancel scope with a past deadline",
        )
        .await;
    assert_eq!(r.unwrap_err().reason(), CancelReason::DeadlineExceeded);
    assert!(h.cancel_called() && h.cancelled_caught());

    // A deadline of exactly "now" has passed too.
    let r = CancelScope::new()
        .deadline(Instant::now())
        .run(probe(&census, &polled))
        .within(
            PAUSED_HANG,
            "the return of a cancel scope with a deadline of now",
        )
        .await;
    assert_eq!(r.unwrap_err().reason(), CancelReason::DeadlineExceeded);

    // A zero timeout.
    let r = CancelScope::new()
        .timeout(Duration::ZERO)
        .run(probe(&census, &polled))
        .within(
            PAUSED_HANG,
            "the return of a cancel scope with a zero timeout",
        )
        .await;
    assert_eq!(r.unwrap_err().reason(), CancelReason::DeadlineExceeded);

    // Even an always-ready future is not polled.
    let r = fail_at(past, probe(&census, &polled))
        .within(PAUSED_HANG, "fail_at's return with a past deadline")
        .await;
    assert_eq!(r.unwrap_err().reason(), CancelReason::DeadlineExceeded);
    assert_eq!(
        move_on_at(past, probe(&census, &polled))
            .within(PAUSED_HANG, "move_on_at's return with a past deadline")
            .await,
        None
    );
    assert_eq!(
        move_on_after(Duration::ZERO, probe(&census, &polled))
            .within(PAUSED_HANG, "move_on_after's return with a zero timeout")
            .await,
        None
    );

    // A scope: its body is never polled and it spawns nothing.
    let body_polled = Counter::new();
    let r: Result<u32, Cancelled> = Scope::builder()
        .deadline(past)
        .run(async |s| {
            body_polled.inc();
            s.spawn(async { Ok(()) });
            Ok(1)
        })
        .within(PAUSED_HANG, "the return of a scope with a past deadline")
        .await;
    assert_eq!(r.unwrap_err().reason(), CancelReason::DeadlineExceeded);
    assert_eq!(body_polled.get(), 0);

    assert_eq!(polled.get(), 0, "no inner future was polled");
    assert_eq!(census.made(), 6);
    assert_eq!(census.alive(), 0, "every inner future was dropped");
    assert_eq!(t0.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn d10_duration_max_timeout_never_fires() {
    let year = 365 * DAY;

    // move_on_after / fail_after with Duration::MAX: no overflow, no expiry.
    let t0 = Instant::now();
    let seen: Slot<Option<Instant>> = Slot::default();
    let s2 = seen.clone();
    let r = move_on_after(Duration::MAX, async move {
        s2.push(current_deadline());
        sleep(year).await;
        "slept a year"
    })
    .within(
        BEYOND_FAR,
        "move_on_after(Duration::MAX)'s return after a year",
    )
    .await;
    assert_eq!(r, Some("slept a year"));
    assert_eq!(t0.elapsed(), year);
    let d = seen.get()[0];
    assert!(
        d.is_none_or(|d| d > t0 + 100 * year),
        "a Duration::MAX timeout is no effective deadline: {d:?}"
    );

    let t0 = Instant::now();
    assert_eq!(
        fail_after(Duration::MAX, async { 7 })
            .within(
                BEYOND_FAR,
                "fail_after(Duration::MAX)'s return of a ready value"
            )
            .await,
        Ok(7)
    );
    let r = fail_after(Duration::MAX, sleep(year))
        .within(
            BEYOND_FAR,
            "fail_after(Duration::MAX)'s return after a year",
        )
        .await;
    assert_eq!(r, Ok(()));
    assert_eq!(t0.elapsed(), year);

    // A scope with a Duration::MAX timeout and a child running for a year.
    let t0 = Instant::now();
    let r: Result<u32, Cancelled> = Scope::builder()
        .timeout(Duration::MAX)
        .run(async |s| {
            let c = s.spawn(async move {
                sleep(year).await;
                Ok(3)
            });
            c.await
        })
        .within(
            BEYOND_FAR,
            "the return of a scope with a Duration::MAX timeout after its child's year",
        )
        .await;
    assert_eq!(r, Ok(3));
    assert_eq!(t0.elapsed(), year);

    // Duration::MAX under a finite deadline: the finite one is effective and fires.
    let t0 = Instant::now();
    let r = move_on_after(
        secs(5),
        move_on_after(Duration::MAX, async {
            let d = current_deadline();
            sleep(secs(100)).await;
            d
        }),
    )
    .within(
        BEYOND_FAR,
        "the outer move_on_after's expiry around a Duration::MAX one",
    )
    .await;
    assert_eq!(r, None);
    assert_eq!(t0.elapsed(), secs(5));
    let t0 = Instant::now();
    let r = move_on_after(
        secs(5),
        move_on_after(Duration::MAX, async { current_deadline() }),
    )
    .within(
        BEYOND_FAR,
        "the outer move_on_after's return around a Duration::MAX one",
    )
    .await;
    assert_eq!(r, Some(Some(Some(t0 + secs(5)))));

    // Combined with a finite timeout or deadline on the same node: the finite one wins.
    let t0 = Instant::now();
    let r = CancelScope::new()
        .timeout(Duration::MAX)
        .deadline(t0 + secs(2))
        .run(sleep(secs(100)))
        .within(
            BEYOND_FAR,
            "the cancel scope's return at its finite deadline",
        )
        .await;
    assert_eq!(r.unwrap_err().reason(), CancelReason::DeadlineExceeded);
    assert_eq!(t0.elapsed(), secs(2));
    let t0 = Instant::now();
    let r: Result<(), Cancelled> = Scope::builder()
        .timeout(Duration::MAX)
        .timeout(secs(2))
        .run(async |_s| {
            sleep(secs(100)).await;
            Ok(())
        })
        .within(BEYOND_FAR, "the scope's return at its finite timeout")
        .await;
    assert_eq!(r.unwrap_err().reason(), CancelReason::DeadlineExceeded);
    assert_eq!(t0.elapsed(), secs(2));

    // Moving a deadline to Duration::MAX from now removes it.
    let t0 = Instant::now();
    let cs = CancelScope::new().timeout(secs(1));
    let h = cs.handle();
    let r = {
        let h = h.clone();
        cs.run(async move {
            h.set_timeout(Duration::MAX);
            sleep(year).await;
            1
        })
        .within(
            BEYOND_FAR,
            "the cancel scope's return a year after its deadline was removed",
        )
        .await
    };
    assert_eq!(r, Ok(1));
    assert_eq!(t0.elapsed(), year);
    assert!(!h.cancel_called());
}

#[tokio::test(start_paused = true)]
async fn d10_far_deadline_instant_no_overflow() {
    // Far instants must not overflow (`docs/design.md`, 4.10 Deadlines). A deadline a
    // century away is kept as is, does not fire years early, and fires exactly when it is
    // reached.
    let year = 365 * DAY;
    let t0 = Instant::now();
    let far = t0 + 100 * year;
    let cs = CancelScope::new().deadline(far);
    let h = cs.handle();
    let r = cs
        .run(async {
            assert_eq!(current_deadline(), Some(far));
            for _ in 0..4 {
                sleep(year).await;
            }
            "four years later"
        })
        .within(
            BEYOND_FAR,
            "the cancel scope's return after four years under a century's deadline",
        )
        .await;
    assert_eq!(r, Ok("four years later"));
    assert_eq!(t0.elapsed(), 4 * year);
    assert!(!h.cancel_called());
    assert_eq!(h.deadline(), Some(far));

    let r = move_on_at(far, pending::<()>())
        .within(BEYOND_FAR, "move_on_at's expiry a century away")
        .await;
    assert_eq!(r, None);
    assert_eq!(t0.elapsed(), 100 * year);
}

#[tokio::test(start_paused = true)]
async fn d11_scope_timeout_bounds_children_child_move_on_is_not_error() {
    // A child's own move_on_after expiring is not an error for the parent.
    let t0 = Instant::now();
    let r: Result<&str, Cancelled> = Scope::builder()
        .timeout(secs(5))
        .run(async |s| {
            let c = s.spawn(async {
                let moved_on = move_on_after(secs(1), pending::<()>()).await.is_none();
                Ok(moved_on)
            });
            assert_eq!(c.await, Ok(true));
            assert_eq!(t0.elapsed(), secs(1));
            assert!(!s.is_cancelled());
            Ok("done")
        })
        .within(
            PAUSED_HANG,
            "the scope's return after its child's own move_on_after expired",
        )
        .await;
    assert_eq!(r, Ok("done"));
    assert_eq!(t0.elapsed(), secs(1));

    // The scope's timeout bounds its children: they see it as their deadline and are
    // cancelled (and awaited) when it fires.
    let t0 = Instant::now();
    let census = Census::new();
    let after = Counter::new();
    let seen: Slot<Option<Instant>> = Slot::default();
    let mut handle = None;
    let r: Result<(), Cancelled> = Scope::builder()
        .timeout(secs(5))
        .run(async |s| {
            handle = Some(s.cancel_handle());
            let (g, a, sn) = (census.guard(), after.clone(), seen.clone());
            s.spawn(async move {
                let _g = g;
                sn.push(current_deadline());
                // A longer timeout of its own does not extend the scope's.
                let r = move_on_after(secs(10), async {
                    sn.push(current_deadline());
                    sleep(secs(100)).await;
                })
                .await;
                a.inc();
                let _ = r;
                Ok(())
            });
            let (g, sn) = (census.guard(), seen.clone());
            s.spawn(async move {
                let _g = g;
                let r = move_on_after(secs(1), async {
                    sn.push(current_deadline());
                    pending::<()>().await
                })
                .await;
                assert_eq!(r, None, "its own timeout expired");
                sleep(secs(100)).await;
                Ok(())
            });
            Ok(())
        })
        .within(
            PAUSED_HANG,
            "the scope's return at its deadline after cancelling both children",
        )
        .await;
    assert_eq!(r.unwrap_err().reason(), CancelReason::DeadlineExceeded);
    assert_eq!(t0.elapsed(), secs(5));
    assert_eq!(after.get(), 0, "the child was dropped, not resumed");
    assert_eq!(census.made(), 2);
    assert_eq!(
        census.alive(),
        0,
        "both children were dropped before the scope returned"
    );
    let mut seen = seen.get();
    seen.sort();
    assert_eq!(
        seen,
        vec![Some(t0 + secs(1)), Some(t0 + secs(5)), Some(t0 + secs(5))]
    );
    let handle = handle.unwrap();
    assert_eq!(handle.reason(), Some(CancelReason::DeadlineExceeded));
    assert!(handle.cancel_called());
}

#[tokio::test(start_paused = true)]
async fn deadline_moved_into_the_past_before_entry_cancels_at_once_and_for_good() {
    let cs = CancelScope::new();
    let h = cs.handle();
    tokio::time::sleep(Duration::from_millis(5)).await;
    h.set_deadline(Instant::now() - Duration::from_millis(1));
    assert!(
        h.cancel_called(),
        "a past deadline is the cancel it will be"
    );
    assert_eq!(h.reason(), Some(CancelReason::DeadlineExceeded));
    // A later deadline does not revive it (level-triggered).
    h.set_deadline(Instant::now() + Duration::from_secs(10));
    assert!(h.cancel_called());
    let polled = std::sync::atomic::AtomicBool::new(false);
    let r = cs
        .run(async { polled.store(true, std::sync::atomic::Ordering::SeqCst) })
        .within(
            PAUSED_HANG,
            "the return of a cancel scope whose deadline was moved into the past",
        )
        .await;
    assert_eq!(r.unwrap_err().reason(), CancelReason::DeadlineExceeded);
    assert!(
        !polled.load(std::sync::atomic::Ordering::SeqCst),
        "cancelled at entry"
    );
    assert!(h.cancelled_caught());
}
