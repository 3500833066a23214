//! Limits: `Scope::builder().limit(n)`, FIFO admission, `try_spawn`, `reserve`.

mod common;

use std::future::{Future, pending};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::task::Poll;

use common::{Census, Counter, Gauge, HANG, Slot, Within, rt_test, yields};
use taskscope::{CancelReason, Cancelled, Scope, TrySpawnError};

rt_test! {
    async fn limit_3_of_10_never_exceeds_3_and_admits_in_spawn_order() {
        let gauge = Gauge::default();
        let finished = Counter::new();
        let order = Slot::default();
        let r: Result<(), Cancelled> = Scope::builder()
            .limit(3)
            .run(async |s| {
                for i in 0..10usize {
                    let (g, f, o) = (gauge.clone(), finished.clone(), order.clone());
                    s.spawn(async move {
                        g.enter();
                        // Child i may start only once i - 2 children finished (3 slots).
                        o.push((i, f.get()));
                        yields(3 + i % 4).await;
                        g.leave();
                        f.inc();
                        Ok(())
                    });
                }
                Ok(())
            })
            .within(HANG, "the limited scope's return once its 10 children ran three at a time")
            .await;
        assert_eq!(r, Ok(()));
        assert_eq!(finished.get(), 10);
        assert!(gauge.max() <= 3, "the limit was exceeded: {}", gauge.max());
        // Reaching the limit is certain only on one thread: on a loaded multi-thread runtime
        // a child may finish before the third one is first polled.
        if tokio::runtime::Handle::current().runtime_flavor()
            == tokio::runtime::RuntimeFlavor::CurrentThread
        {
            assert_eq!(gauge.max(), 3, "the limit was reached");
        }
        for (i, finished_at_start) in order.get() {
            assert!(
                finished_at_start + 3 > i,
                "child {i} started when only {finished_at_start} had finished"
            );
        }
    }
}

rt_test! {
    async fn limit_1_starts_children_strictly_in_spawn_order() {
        let order = Slot::default();
        let r: Result<(), Cancelled> = Scope::builder()
            .limit(1)
            .run(async |s| {
                for i in 0..8usize {
                    let o = order.clone();
                    s.spawn(async move {
                        o.push(i);
                        yields(2).await;
                        Ok(())
                    });
                }
                Ok(())
            })
            .within(HANG, "the limit-1 scope's return once its 8 children ran one after the other")
            .await;
        assert_eq!(r, Ok(()));
        assert_eq!(order.get(), (0..8).collect::<Vec<_>>());
    }
}

rt_test! {
    async fn try_spawn_reports_the_limit_and_gives_the_future_back() {
        let r: Result<u32, Cancelled> = Scope::builder()
            .limit(1)
            .run(async |s| {
                let (tx, rx) = tokio::sync::oneshot::channel::<()>();
                let first = s.try_spawn(async move {
                    let _ = rx.await;
                    Ok(1)
                });
                let first = first.expect("a free slot: starts at once");
                let refused = s.try_spawn(async { Ok(2) });
                let fut = match refused {
                    Err(e @ TrySpawnError::AtLimit(_)) => {
                        assert!(e.is_at_limit());
                        e.into_inner()
                    }
                    other => panic!("expected AtLimit, got {other:?}"),
                };
                tx.send(()).unwrap();
                let a = first
                    .within(HANG, "the first child's end (its handle) once it was released")
                    .await?;
                // The slot is free again: the returned future can be spawned now.
                let b = s
                    .try_spawn(fut)
                    .expect("the slot was given back")
                    .within(HANG, "the given-back future's run in the freed slot")
                    .await?;
                Ok(a + b)
            })
            .within(HANG, "the scope's return after try_spawn's children finished")
            .await;
        assert_eq!(r, Ok(3));
    }
}

rt_test! {
    async fn reserve_gives_back_pressure_to_a_producer() {
        let gauge = Gauge::default();
        let started = Counter::new();
        let finished = Counter::new();
        let r: Result<(), Cancelled> = Scope::builder()
            .limit(2)
            .run(async |s| {
                for _ in 0..12 {
                    let permit = s
                        .reserve()
                        .within(HANG, "a reserved slot, freed by a finished child")
                        .await;
                    // Never more than the limit spawned and unfinished: nothing queues.
                    assert!(started.get() - finished.get() < 2);
                    let (g, st, f) = (gauge.clone(), started.clone(), finished.clone());
                    st.inc();
                    permit
                        .spawn(async move {
                            g.enter();
                            yields(3).await;
                            g.leave();
                            f.inc();
                            Ok(())
                        })
                        .expect("the scope runs");
                }
                // An unused permit gives its slot back.
                let unused = s.reserve().within(HANG, "a slot once every child finished").await;
                drop(unused);
                Ok(())
            })
            .within(HANG, "the scope's return after its reserve/spawn loop")
            .await;
        assert_eq!(r, Ok(()));
        assert_eq!(finished.get(), 12);
        assert!(gauge.max() <= 2);
    }
}

rt_test! {
    async fn queued_children_of_a_cancelled_scope_are_never_polled() {
        let census = Census::new();
        let polled = Arc::new(AtomicBool::new(false));
        let r: Result<(), Cancelled> = Scope::builder()
            .limit(1)
            .run(async |s| {
                let (tx, rx) = tokio::sync::oneshot::channel();
                let g = census.guard();
                s.spawn(async move {
                    let _g = g;
                    let _ = tx.send(());
                    pending::<()>().await;
                    Ok(())
                });
                for _ in 0..5 {
                    let (g, p) = (census.guard(), polled.clone());
                    s.spawn(async move {
                        p.store(true, SeqCst);
                        drop(g);
                        Ok(())
                    });
                }
                let _ = rx.within(HANG, "the first child's start (in the only slot)").await;
                s.cancel();
                Ok(())
            })
            .within(HANG, "the cancelled scope's return without polling its queued children")
            .await;
        assert_eq!(r, Ok(()));
        assert_eq!(census.made(), 6);
        assert_eq!(census.alive(), 0);
        assert!(!polled.load(SeqCst), "a queued child never started");
    }
}

rt_test! {
    async fn a_cancelled_running_child_frees_its_slot() {
        let r: Result<u32, Cancelled> = Scope::builder()
            .limit(1)
            .run(async |s| {
                let stuck = s.spawn(async {
                    pending::<()>().await;
                    Ok(0)
                });
                let next = s.spawn(async { Ok(7) });
                stuck.cancel();
                next
                    .within(HANG, "the queued child's run in the slot freed by the cancelled one")
                    .await
            })
            .within(HANG, "the scope's return after a cancelled child freed its slot")
            .await;
        assert_eq!(r, Ok(7));
    }
}

rt_test! {
    /// Children cancelled while they wait for a slot leave the line without taking or
    /// freeing a slot: one cancelled behind another waiting child, then the front one, then
    /// the new front one. Nobody starts while the running child runs, and the children
    /// still in line start one at a time, in spawn order, once it ends.
    async fn children_cancelled_while_waiting_for_a_slot_leave_the_line() {
        let gauge = Gauge::default();
        let order = Slot::default();
        let r: Result<(), Cancelled> = Scope::builder()
            .limit(1)
            .run(async |s| {
                let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
                let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
                let (g, o) = (gauge.clone(), order.clone());
                let running = s.spawn(async move {
                    g.enter();
                    o.push('a');
                    let _ = started_tx.send(());
                    let _ = release_rx.await;
                    g.leave();
                    Ok(())
                });
                started_rx
                    .within(HANG, "the first child's start (in the only slot)")
                    .await
                    .unwrap();
                let mut line: Vec<_> = ['b', 'c', 'd', 'e', 'f']
                    .into_iter()
                    .map(|name| {
                        let (g, o) = (gauge.clone(), order.clone());
                        s.spawn(async move {
                            g.enter();
                            o.push(name);
                            yields(2).await;
                            g.leave();
                            Ok(())
                        })
                    })
                    .collect();
                let f = line.pop().unwrap();
                let e = line.pop().unwrap();
                let d = line.pop().unwrap();
                let c = line.pop().unwrap();
                let b = line.pop().unwrap();
                for (h, name) in [(d, 'd'), (b, 'b'), (c, 'c')] {
                    h.cancel();
                    let err = h
                        .within(HANG, format!("the end of child {name}, cancelled in line"))
                        .await
                        .unwrap_err();
                    assert_eq!(err.reason(), CancelReason::Explicit);
                    // Time for a child wrongly given the slot to start.
                    yields(5).await;
                    assert_eq!(
                        order.get(),
                        ['a'],
                        "a child started beside the running one after {name} left the line"
                    );
                }
                release_tx.send(()).unwrap();
                running.within(HANG, "the first child's end once released").await?;
                e.within(HANG, "child e's run, next in line").await?;
                f.within(HANG, "child f's run, last in line").await?;
                Ok(())
            })
            .within(HANG, "the limited scope's return after its line was thinned out")
            .await;
        assert_eq!(r, Ok(()));
        assert_eq!(order.get(), ['a', 'e', 'f']);
        assert_eq!(gauge.max(), 1, "the limit of 1 was exceeded");
    }
}

rt_test! {
    /// A reservation given a slot while nobody polled it (the running child ended), then
    /// dropped unused, gives the slot back: the next child gets it at once.
    async fn a_reservation_dropped_after_its_slot_came_gives_the_slot_back() {
        let r: Result<u32, Cancelled> = Scope::builder()
            .limit(1)
            .run(async |s| {
                let (tx, rx) = tokio::sync::oneshot::channel::<()>();
                let first = s.spawn(async move {
                    let _ = rx.await;
                    Ok(1)
                });
                let mut reserve = s.reserve();
                let waits = std::future::poll_fn(|cx| {
                    Poll::Ready(Pin::new(&mut reserve).poll(cx).is_pending())
                })
                .await;
                assert!(waits, "the only slot is taken: the reservation waits in line");
                tx.send(()).unwrap();
                // The first child's end hands its slot to the reservation, not polled since.
                let a = first.within(HANG, "the first child's end once released").await?;
                drop(reserve);
                let b = s
                    .try_spawn(async { Ok(2) })
                    .expect("the dropped reservation gave its slot back")
                    .within(HANG, "the run of a child in the given-back slot")
                    .await?;
                Ok(a + b)
            })
            .within(HANG, "the limited scope's return after the dropped reservation")
            .await;
        assert_eq!(r, Ok(3));
    }
}

#[tokio::test]
async fn the_scoped_macro_takes_a_limit() {
    #[taskscope::scoped(s, limit = 2)]
    async fn fan_out(n: usize, gauge: Gauge) -> Result<usize, Cancelled> {
        let hs: Vec<_> = (0..n)
            .map(|i| {
                let g = gauge.clone();
                s.spawn(async move {
                    g.enter();
                    yields(2).await;
                    g.leave();
                    Ok(i)
                })
            })
            .collect();
        let mut sum = 0;
        for h in hs {
            sum += h
                .within(HANG, "a handle's end under the macro's limit")
                .await?;
        }
        Ok(sum)
    }
    let gauge = Gauge::default();
    assert_eq!(
        fan_out(6, gauge.clone())
            .within(HANG, "the #[scoped(limit = 2)] function's return")
            .await,
        Ok(15)
    );
    assert_eq!(gauge.max(), 2);
}
