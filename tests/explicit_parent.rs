//! Scopes opened under an explicit parent (`ScopeBuilder::parent`, `CancelScope::parent`):
//! a scope that runs in a task the tree does not own (as a web server's connection task) is
//! still a child of the given scope: counted, cancelled, bounded and awaited by it.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::*;
use taskscope::{
    CancelReason, CancelScope, Cancelled, Parent, Scope, SpawnError, cancelled, current_deadline,
    scope,
};
use tokio::sync::oneshot;

rt_test! {
    async fn parent_waits_for_a_scope_opened_under_it_in_a_foreign_task() {
        let done = Arc::new(AtomicBool::new(false));
        let d = done.clone();
        let r: Result<(), Cancelled> = taskscope::scope(async |server| {
            let request = Scope::builder().name("request").parent(server.handle()).expect("the parent runs");
            // The body spawns nothing: only the hold keeps the server scope open.
            tokio::spawn(request.run(async move |_s| {
                tokio::time::sleep(ms(30)).await;
                d.store(true, Ordering::SeqCst);
                Ok::<_, Cancelled>(())
            }));
            Ok(())
        })
        .within(HANG, "the server scope's return after the request opened in another task")
        .await;
        assert_eq!(r, Ok(()));
        assert!(done.load(Ordering::SeqCst), "the server scope returned first");
    }
}

rt_test! {
    async fn scope_under_a_parent_sees_the_parents_soft_cancel() {
        let (seen_tx, seen_rx) = oneshot::channel();
        // With a grace period the cancel is soft first: the request sees it and returns.
        let r: Result<(), Cancelled> = Scope::builder().grace(secs(5)).run(async |server| {
            let (started_tx, started_rx) = oneshot::channel();
            let request = Scope::builder().parent(server.handle()).expect("the parent runs");
            tokio::spawn(request.run(async move |_s| {
                started_tx.send(()).ok();
                cancelled().await;
                seen_tx.send(taskscope::is_cancelled()).ok();
                Ok::<_, Cancelled>(())
            }));
            started_rx.await.ok();
            server.cancel();
            Ok(())
        })
        .within(HANG, "the server scope's return after the request saw its soft cancel")
        .await;
        assert_eq!(r, Ok(()));
        let seen = seen_rx.within(HANG, "the request's report of the soft cancel").await;
        assert_eq!(seen, Ok(true));
    }
}

rt_test! {
    async fn parents_hard_cancel_is_caught_as_parent_cancelled() {
        let census = Census::new();
        let (out_tx, out_rx) = oneshot::channel();
        let g = census.guard();
        let c = census.clone();
        let r: Result<(), Cancelled> = taskscope::scope(async |server| {
            let (started_tx, started_rx) = oneshot::channel();
            let request = Scope::builder().parent(server.handle()).expect("the parent runs");
            tokio::spawn(async move {
                let r = request
                    .run(async move |s| {
                        let child = c.guard();
                        s.spawn(async move {
                            let _child = child;
                            std::future::pending::<Result<(), Cancelled>>().await
                        });
                        let _g = g;
                        started_tx.send(()).ok();
                        std::future::pending::<Result<(), Cancelled>>().await
                    })
                    .await;
                out_tx.send(r).ok();
            });
            started_rx.await.ok();
            server.cancel(); // no grace: hard at once
            Ok(())
        })
        .within(HANG, "the server scope's return after its hard cancel reached the request")
        .await;
        assert_eq!(r, Ok(()));
        // Right after the server scope returned: the request's body and child are gone.
        assert_eq!(census.alive(), 0);
        let caught = out_rx
            .within(HANG, "the request task's report of its outcome")
            .await
            .expect("the request future finished");
        assert_eq!(caught.unwrap_err().reason(), CancelReason::ParentCancelled);
    }
}

#[tokio::test(start_paused = true)]
async fn scope_under_a_parent_is_bounded_by_the_parents_deadline() {
    let (tx, rx) = oneshot::channel();
    let r: Result<(), Cancelled> = Scope::builder()
        .timeout(secs(1))
        .run(async |server| {
            let expected = current_deadline();
            let request = Scope::builder()
                .timeout(secs(60))
                .parent(server.handle())
                .expect("the parent runs");
            tokio::spawn(request.run(async move |_s| {
                tx.send((expected, current_deadline())).ok();
                Ok::<_, Cancelled>(())
            }));
            Ok(())
        })
        .within(
            PAUSED_HANG,
            "the server scope's return after the request under its deadline",
        )
        .await;
    assert_eq!(r, Ok(()));
    let (server, request) = rx
        .within(PAUSED_HANG, "the request's report of the deadlines")
        .await
        .unwrap();
    assert!(server.is_some());
    assert_eq!(
        request, server,
        "the request's 60 s is capped by the server's 1 s"
    );
}

rt_test! {
    async fn children_of_a_dropped_scope_under_a_parent_are_awaited_by_the_parent() {
        let cleaned = Arc::new(AtomicBool::new(false));
        let c = cleaned.clone();
        let r: Result<(), Cancelled> = taskscope::scope(async |server| {
            let (started_tx, started_rx) = oneshot::channel();
            let request = Scope::builder().parent(server.handle()).expect("the parent runs");
            let task = tokio::spawn(request.run(async move |s| {
                // A blocking child cannot be dropped: it stops when it sees the cancel,
                // after a cleanup that takes a while.
                s.spawn_blocking(move || {
                    while !taskscope::is_cancelled() {
                        std::thread::sleep(ms(1));
                    }
                    std::thread::sleep(ms(30));
                    c.store(true, Ordering::SeqCst);
                    Ok(())
                });
                started_tx.send(()).ok();
                std::future::pending::<Result<(), Cancelled>>().await
            }));
            started_rx.await.ok();
            task.abort(); // the foreign task drops the request scope's future
            Ok(())
        })
        .within(HANG, "the server scope's return after the dropped request's blocking child")
        .await;
        assert_eq!(r, Ok(()));
        assert!(
            cleaned.load(Ordering::SeqCst),
            "the server scope returned before the orphaned child finished"
        );
    }
}

#[tokio::test]
async fn opening_under_a_finished_scope_is_refused_with_closed() {
    let finished = finished_scope_handle().await;
    let parent = Parent::from(&finished);
    assert!(parent.is_closed());
    assert_eq!(
        Scope::builder().parent(&parent).unwrap_err(),
        SpawnError::Closed
    );
    assert_eq!(
        CancelScope::new().parent(finished).unwrap_err(),
        SpawnError::Closed
    );
}

rt_test! {
    async fn builder_and_future_dropped_unused_release_the_parent() {
        let r: Result<(), Cancelled> = taskscope::scope(async |server| {
            let h = server.handle();
            drop(Scope::builder().parent(&h).expect("the parent runs"));
            drop(CancelScope::new().parent(&h).expect("the parent runs"));
            drop(Scope::builder().parent(&h).expect("the parent runs").run(async |_s| Ok::<_, Cancelled>(())));
            drop(CancelScope::new().parent(&h).expect("the parent runs").run(async {}));
            Ok(())
        })
        .within(HANG, "the server scope's return once unused builders and futures released it")
        .await;
        assert_eq!(r, Ok(()));
    }
}

rt_test! {
    async fn cancel_scope_under_a_parent_catches_its_hard_cancel_and_its_own_reason() {
        let (out_tx, out_rx) = oneshot::channel();
        let (reason_tx, reason_rx) = oneshot::channel();
        let r: Result<(), Cancelled> = taskscope::scope(async |server| {
            let h = server.handle();
            // One cancelled by the parent ...
            let (started_tx, started_rx) = oneshot::channel();
            let cs = CancelScope::new().parent(&h).expect("the parent runs");
            tokio::spawn(async move {
                let r = cs
                    .run(async move {
                        started_tx.send(()).ok();
                        std::future::pending::<()>().await
                    })
                    .await;
                out_tx.send(r).ok();
            });
            // ... and one cancelled with a reason of its own.
            let cs = CancelScope::new().parent(&h).expect("the parent runs");
            let handle = cs.handle();
            tokio::spawn(async move {
                handle.cancel_with(CancelReason::Disconnected);
                reason_tx.send(cs.run(std::future::pending::<()>()).await).ok();
            });
            started_rx.await.ok();
            server.cancel();
            Ok(())
        })
        .within(HANG, "the server scope's return after cancelling the cancel scopes under it")
        .await;
        assert_eq!(r, Ok(()));
        let by_parent = out_rx
            .within(HANG, "the first cancel scope's report of its parent's cancel")
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(by_parent.reason(), CancelReason::ParentCancelled);
        let own = reason_rx
            .within(HANG, "the second cancel scope's report of its own cancel")
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(own.reason(), CancelReason::Disconnected);
    }
}

#[tokio::test]
async fn scope_under_a_parent_appears_below_it_in_a_snapshot() {
    let (tx, rx) = oneshot::channel();
    let (release_tx, release_rx) = oneshot::channel::<()>();
    let server = tokio::spawn(Scope::builder().name("server").run(async |server| {
        let request = Scope::builder()
            .name("request")
            .parent(server.handle())
            .expect("the parent runs");
        let parent = Parent::from(server.handle());
        tokio::spawn(request.run(async move |_s| {
            let tree = parent.snapshot();
            tx.send((tree.to_string(), tree.nodes()[0].live_children))
                .ok();
            release_rx.await.ok();
            Ok::<_, Cancelled>(())
        }));
        Ok::<_, Cancelled>(())
    }));
    let (dump, live_children) = rx
        .within(HANG, "the request's snapshot of the tree")
        .await
        .unwrap();
    drop(release_tx);
    // The request scope is a node below the server, not one of its tasks.
    assert_eq!(live_children, 0, "{dump}");
    assert!(!dump.contains("blocking or starting"), "{dump}");
    assert_eq!(
        server
            .within(HANG, "the server task's end once the request was released")
            .await
            .unwrap(),
        Ok(())
    );
    let server = dump
        .find("server")
        .expect("the server scope is in the dump");
    let request = dump
        .find("request")
        .expect("the request scope is in the dump");
    assert!(server < request, "request below server:\n{dump}");
}

/// A builder opened under the scope and kept unrun in the scope's own body: the scope
/// catches its own deadline and drops its body (releasing the builder's unit) once nothing
/// else keeps it busy, instead of waiting for that unit forever.
#[tokio::test(start_paused = true)]
async fn a_scope_catching_its_own_cancel_drops_a_builder_held_in_its_body() {
    let census = Census::new();
    let g = census.guard();
    let r: Result<(), Cancelled> = Scope::builder()
        .timeout(secs(1))
        .run(async |server| {
            let _g = g;
            let request = Scope::builder()
                .parent(server.handle())
                .expect("the parent runs");
            tokio::time::sleep(secs(2)).await; // the deadline fires here
            drop(request);
            Ok(())
        })
        .within(
            HANG,
            "the scope's return at its deadline with a builder held in its body",
        )
        .await;
    assert_eq!(r.unwrap_err().reason(), CancelReason::DeadlineExceeded);
    assert_eq!(census.alive(), 0);
}

/// The same with a request scope running in another task as well: the scope drops its body,
/// then waits for the request, which catches the scope's hard cancel on its own.
#[tokio::test(start_paused = true)]
async fn a_scope_catching_its_own_cancel_still_awaits_scopes_opened_under_it_elsewhere() {
    let (out_tx, out_rx) = oneshot::channel();
    let r: Result<(), Cancelled> = Scope::builder()
        .timeout(secs(1))
        .run(async |server| {
            let held = Scope::builder()
                .parent(server.handle())
                .expect("the parent runs");
            let elsewhere = CancelScope::new()
                .parent(server.handle())
                .expect("the parent runs");
            tokio::spawn(async move {
                let r = elsewhere.run(std::future::pending::<()>()).await;
                out_tx.send(r).ok();
            });
            tokio::time::sleep(secs(2)).await;
            drop(held);
            Ok(())
        })
        .within(
            HANG,
            "the scope's return at its deadline after the request elsewhere caught its cancel",
        )
        .await;
    assert_eq!(r.unwrap_err().reason(), CancelReason::DeadlineExceeded);
    let elsewhere = out_rx
        .within(
            PAUSED_HANG,
            "the request elsewhere's report of its parent's cancel",
        )
        .await
        .expect("the request finished before the scope returned");
    assert_eq!(
        elsewhere.unwrap_err().reason(),
        CancelReason::ParentCancelled
    );
}

/// Records its name in a [`Slot`] when dropped.
struct Dropped(&'static str, Slot<&'static str>);

impl Drop for Dropped {
    fn drop(&mut self) {
        self.1.push(self.0);
    }
}

/// The same with a spawned child still running a shield past the deadline: the scope keeps
/// its body (and the builder) while more than the builder's unit keeps it busy, and the
/// child's end, which leaves only that unit, wakes it to drop the body and return.
#[tokio::test(start_paused = true)]
async fn a_scope_catching_its_own_cancel_drops_a_held_builder_once_its_shielded_child_ended() {
    let order: Slot<&'static str> = Slot::default();
    let (body_mark, child_mark) = (
        Dropped("body", order.clone()),
        Dropped("child", order.clone()),
    );
    let t0 = tokio::time::Instant::now();
    let r: Result<(), Cancelled> = Scope::builder()
        .timeout(secs(1))
        .run(async |server| {
            let _mark = body_mark;
            let request = Scope::builder()
                .parent(server.handle())
                .expect("the parent runs");
            server.spawn(async move {
                let _mark = child_mark;
                taskscope::shield(tokio::time::sleep(secs(2))).await;
                tokio::task::yield_now().await; // the cancellation lands here
                Ok(())
            });
            tokio::time::sleep(secs(5)).await; // the deadline fires here
            drop(request);
            Ok(())
        })
        .within(
            PAUSED_HANG,
            "the scope's return once its shielded child ended, with a builder held in its body",
        )
        .await;
    assert_eq!(r.unwrap_err().reason(), CancelReason::DeadlineExceeded);
    assert_eq!(
        order.get(),
        vec!["child", "body"],
        "the body went once only the builder's unit kept the scope busy"
    );
    assert_eq!(
        t0.elapsed(),
        secs(2),
        "the scope returned as the shielded child ended"
    );
}

/// A cancel scope opened under a scope as explicit parent, run by one of that scope's local
/// children: the scope, cancelled from another task while parked, catches; its local
/// children are no longer polled, so the one holding the request goes (with the body) as
/// soon as only such holds keep the scope busy, and the request sees its parent's cancel.
/// (Before, only the body went and the scope waited for the hold forever.)
#[tokio::test(start_paused = true)]
async fn a_catching_scope_drops_local_children_that_hold_scopes_opened_under_it() {
    let r = tokio::time::timeout(
        secs(10),
        scope(async |s: Scope<'_, Cancelled>| {
            let request = CancelScope::new()
                .parent(Parent::from(&s.handle()))
                .expect("the scope runs");
            let _local = s.spawn_local(async move {
                let _ = request.run(std::future::pending::<()>()).await;
                Ok::<(), Cancelled>(())
            });
            let h = s.cancel_handle();
            tokio::spawn(async move {
                tokio::time::sleep(secs(1)).await;
                h.cancel();
            });
            std::future::pending::<()>().await;
            Ok(())
        }),
    )
    .await
    .expect("the scope ends instead of waiting for a hold its own local child owns");
    assert_eq!(r.unwrap_err().reason(), CancelReason::Explicit);
}

/// The same once the body has returned: a child's error cancels the scope while a local
/// child holds a request opened under it; the local child stops being polled and goes, and
/// the scope returns the child's error.
#[tokio::test(start_paused = true)]
async fn a_scope_failing_after_its_body_returned_drops_local_children_holding_requests() {
    let r = tokio::time::timeout(
        secs(10),
        scope(async |s: Scope<'_, Error>| {
            let request = CancelScope::new()
                .parent(Parent::from(&s.handle()))
                .expect("the scope runs");
            let _local = s.spawn_local(async move {
                let _ = request.run(std::future::pending::<()>()).await;
                Ok::<(), Error>(())
            });
            s.spawn(async move {
                tokio::time::sleep(secs(1)).await;
                Err::<(), _>(Error::Boom(3))
            });
            Ok(())
        }),
    )
    .await
    .expect("the scope ends instead of waiting for a hold its own local child owns");
    assert_eq!(r, Err(Error::Boom(3)));
}

/// What a `Parent` reports about its scope: open and not cancelled while the scope runs,
/// cancelled once the scope was, closed once it finished; its `Debug` shows the same.
#[tokio::test]
async fn a_parent_reports_whether_its_scope_is_cancelled_or_closed() {
    let mut kept = None;
    let r: Result<(), Cancelled> = Scope::builder()
        .name("server")
        .run(async |server| {
            let parent = Parent::from(&server.handle());
            assert!(!parent.is_closed(), "the scope runs");
            assert!(!parent.is_cancelled(), "nothing cancelled the scope yet");
            assert_eq!(
                format!("{parent:?}"),
                "Parent { name: Some(\"server\"), reason: None, closed: false }"
            );
            server.cancel();
            assert!(parent.is_cancelled(), "the scope was cancelled");
            assert!(!parent.is_closed(), "the body still runs");
            assert_eq!(
                format!("{parent:?}"),
                "Parent { name: Some(\"server\"), reason: Some(Explicit), closed: false }"
            );
            kept = Some(parent);
            Ok(())
        })
        .within(HANG, "the cancelled server scope's return")
        .await;
    assert_eq!(r, Ok(()));
    let parent = kept.expect("the body ran");
    assert!(parent.is_closed(), "the scope finished");
    assert_eq!(
        format!("{parent:?}"),
        "Parent { name: Some(\"server\"), reason: Some(Explicit), closed: true }"
    );
}

/// A scope under an explicit parent catches the parent's hard cancel itself (no node future
/// further out in its task belongs to the tree), then waits for a shielded child, during
/// which its own deadline passes: it fails with the cancellation it caught,
/// `ParentCancelled`, not with the later deadline.
#[tokio::test(start_paused = true)]
async fn a_scope_that_caught_its_parent_s_cancel_reports_it_over_a_later_deadline() {
    let t0 = tokio::time::Instant::now();
    let (result_tx, result_rx) = oneshot::channel();
    let r: Result<(), Cancelled> = scope(async |server| {
        let request = Scope::builder()
            .timeout(secs(2))
            .parent(server.handle())
            .expect("the parent runs");
        tokio::spawn(async move {
            let r = request
                .run(async |s: Scope<'_, Cancelled>| {
                    s.spawn(async {
                        taskscope::shield(tokio::time::sleep(secs(3))).await;
                        Ok(())
                    });
                    std::future::pending::<()>().await;
                    Ok(())
                })
                .await;
            let _ = result_tx.send((r, t0.elapsed()));
        });
        tokio::time::sleep(secs(1)).await;
        server.cancel(); // hard: no grace
        Ok(())
    })
    .within(PAUSED_HANG, "the server scope's return")
    .await;
    assert_eq!(
        r,
        Ok(()),
        "the body cancelled its own scope and returned a value"
    );
    let (r, at) = result_rx
        .within(PAUSED_HANG, "the request scope's result")
        .await
        .expect("the request task sent its result");
    assert_eq!(
        at,
        secs(3),
        "the request scope waited for its shielded child"
    );
    assert_eq!(r.unwrap_err().reason(), CancelReason::ParentCancelled);
}
