//! Seeing the tree: `snapshot()`, `ScopeHandle::snapshot`, `TreeSnapshot` as text and as a
//! value, on a three-level tree (names, states, deadlines, reasons).

mod common;

use std::future::pending;
use std::time::Duration;

use common::{HANG, PAUSED_HANG, Within, ms, rt_test, secs};
use taskscope::snapshot::{NodeKind, NodeState, TreeSnapshot};
use taskscope::{CancelReason, CancelScope, Cancelled, Scope, cancelled, snapshot};
use tokio::sync::oneshot;

/// Builds: scope "root" (deadline 10s)
///           ├─ scope "api" (timeout 3s, grace 5s, cancelled explicitly at 1s)
///           │    ├─ cancel scope "backend-a" in its own task (waits in its grace)
///           │    └─ a bare task
///           └─ scope "idle" (body done, finishing: one child left)
/// and takes a snapshot at 1.5s from inside "root".
async fn three_levels() -> TreeSnapshot {
    let (tx, rx) = oneshot::channel();
    let r: Result<(), Cancelled> = Scope::builder()
        .name("root")
        .timeout(secs(10))
        .run(async |root| {
            let api = Scope::builder()
                .name("api")
                .timeout(secs(3))
                .grace(secs(5))
                .run(async |s| {
                    s.spawn(async {
                        CancelScope::new()
                            .name("backend-a")
                            .run(async {
                                cancelled().await;
                                pending::<()>().await; // stuck in its cleanup
                            })
                            .await?;
                        Ok(())
                    });
                    s.spawn(pending::<Result<(), Cancelled>>());
                    tokio::time::sleep(secs(1)).await;
                    s.cancel();
                    pending::<()>().await;
                    Ok(())
                });
            let idle = Scope::builder().name("idle").run(async |s| {
                s.spawn(async {
                    tokio::time::sleep(secs(4)).await;
                    Ok(())
                });
                Ok::<(), Cancelled>(())
            });
            let probe = async move {
                tokio::time::sleep(ms(1500)).await;
                let _ = tx.send(snapshot());
                root.cancel();
                Ok::<(), Cancelled>(())
            };
            let (a, b, c) = tokio::join!(api, idle, probe);
            assert!(a.is_err() && b.is_err() && c.is_ok());
            Ok(())
        })
        .within(
            PAUSED_HANG,
            "the root scope's return after the probe cancelled it",
        )
        .await;
    assert!(r.is_err());
    rx.within(PAUSED_HANG, "the probe's snapshot")
        .await
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn snapshot_of_a_three_level_tree_as_a_value() {
    let tree = three_levels().await;
    let nodes = tree.nodes();
    let root = &nodes[0];
    assert_eq!(root.kind, NodeKind::Scope);
    assert_eq!(root.name.as_deref(), Some("root"));
    assert_eq!(root.state, NodeState::Running);
    assert_eq!(root.depth, 0);
    assert_eq!(root.time_left, Some(ms(8500)));

    let api = tree.find("api").expect("api is in the tree");
    assert_eq!(api.depth, 1);
    assert_eq!(
        api.state,
        NodeState::Cancelling {
            reason: CancelReason::Explicit,
            hard: false
        }
    );
    assert_eq!(api.time_left, Some(ms(1500)));
    assert_eq!(api.live_children, 2);
    assert_eq!(api.tasks.len(), 2);

    let backend = tree.find("backend-a").expect("backend-a is in the tree");
    assert_eq!(backend.depth, 2);
    assert_eq!(backend.kind, NodeKind::CancelScope);
    assert_eq!(
        backend.state,
        NodeState::Cancelling {
            reason: CancelReason::ParentCancelled,
            hard: false
        }
    );
    assert!(api.tasks.contains(&backend.task.expect("runs in a task")));
    assert_eq!(nodes[backend.parent.unwrap()].name.as_deref(), Some("api"));

    let idle = tree.find("idle").unwrap();
    assert_eq!(idle.state, NodeState::Finishing);
    assert_eq!(idle.live_children, 1);
    assert_eq!(idle.time_left, None);
    let kids: Vec<_> = tree.children(0).map(|i| nodes[i].name.clone()).collect();
    assert_eq!(kids.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn snapshot_of_a_three_level_tree_as_text() {
    let tree = three_levels().await;
    let text = tree.to_string();
    let backend_task = tree.find("backend-a").unwrap().task.unwrap();
    let api = tree.find("api").unwrap();
    let bare = api.tasks.iter().find(|t| **t != backend_task).unwrap();
    let expected = format!(
        "scope \"root\" [running] deadline in 8.5s\n\
         ├─ scope \"api\" [cancelling: cancelled explicitly] deadline in 1.5s\n\
         │  ├─ cancel scope \"backend-a\" (task {backend_task}) [cancelling: the parent scope was cancelled]\n\
         │  └─ task {bare}\n\
         └─ scope \"idle\" [finishing]\n   \
            └─ task {}\n",
        tree.find("idle").unwrap().tasks[0]
    );
    assert_eq!(text, expected, "got:\n{text}");
}

#[tokio::test]
async fn outside_any_scope_the_snapshot_is_empty() {
    assert!(snapshot().is_empty());
    assert_eq!(snapshot().to_string(), "");
}

#[tokio::test(start_paused = true)]
async fn a_handle_snapshots_its_subtree_and_a_child_sees_the_whole_tree() {
    let r: Result<(), Cancelled> = Scope::builder()
        .name("outer")
        .run(async |s| {
            let h = s.handle();
            let seen = s
                .spawn(async move {
                    // From a spawned child: the ambient tree goes up to "outer".
                    let all = snapshot();
                    assert_eq!(all.nodes()[0].name.as_deref(), Some("outer"));
                    let inner = Scope::builder().name("inner").run(async |i| {
                        let sub = i.snapshot();
                        assert_eq!(sub.nodes().len(), 1);
                        assert_eq!(sub.nodes()[0].name.as_deref(), Some("inner"));
                        Ok::<_, Cancelled>(h.snapshot().find("inner").is_some())
                    });
                    inner.await
                })
                .await?;
            assert!(seen);
            Ok(())
        })
        .within(
            PAUSED_HANG,
            "the scope's return after its handle and child snapshots",
        )
        .await;
    assert!(r.is_ok());
}

#[tokio::test(start_paused = true)]
async fn background_and_shield_nodes_are_labelled() {
    let r: Result<(), Cancelled> = Scope::builder()
        .name("svc")
        .run(async |s| {
            s.spawn_background(pending::<Result<(), Cancelled>>());
            let text = taskscope::shield(async { snapshot().to_string() }).await;
            assert!(text.contains("background [running]"), "{text}");
            assert!(text.contains("shield [running]"), "{text}");
            Ok(())
        })
        .within(
            PAUSED_HANG,
            "the scope's return after labelling its background and shield nodes",
        )
        .await;
    assert!(r.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deep_tree_snapshots_prints_and_drops_without_recursion() {
    // A chain of scopes, each in its own task (so polling does not nest): the snapshot taken
    // at the bottom walks up to the root and copies all of it.
    type Level = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), Cancelled>> + Send>>;
    fn level(n: usize, tx: std::sync::mpsc::Sender<(usize, usize)>) -> Level {
        Box::pin(taskscope::scope(async move |s| {
            if n == 0 {
                let tree = snapshot();
                let text = tree.to_string();
                let _ = tx.send((tree.nodes().len(), text.lines().count()));
            } else {
                s.spawn(level(n - 1, tx));
            }
            Ok(())
        }))
    }
    let depth = 5_000;
    let (tx, rx) = std::sync::mpsc::channel();
    level(depth, tx)
        .within(HANG, "the return of a 5,000-deep chain of scopes")
        .await
        .unwrap();
    let (nodes, lines) = rx.recv().unwrap();
    assert_eq!(nodes, depth + 1);
    assert!(lines > depth);
    let _ = Duration::ZERO;
}

#[tokio::test(start_paused = true)]
async fn on_stuck_names_the_children_that_hold_the_scope_up() {
    let reports = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let out = reports.clone();
    let t0 = tokio::time::Instant::now();
    let r: Result<(), Cancelled> = Scope::builder()
        .name("shutdown")
        .grace(secs(1))
        .on_stuck(secs(3), move |tree| {
            out.lock().unwrap().push((t0.elapsed(), tree.to_string()))
        })
        .run(async |s| {
            // Reacts to the cancel: gone within the grace period.
            s.spawn(async {
                cancelled().await;
                Ok(())
            });
            // Ignores it: cleans up under a named shield for 10s.
            s.spawn(async {
                CancelScope::new()
                    .name("flush-logs")
                    .shield(true)
                    .run(tokio::time::sleep(secs(10)))
                    .await?;
                Ok(())
            });
            tokio::time::sleep(secs(2)).await;
            s.cancel();
            Ok(())
        })
        .within(PAUSED_HANG, "the scope's return after its on_stuck report")
        .await;
    assert_eq!(r, Ok(()), "the body completed: its value is kept");
    let reports = reports.lock().unwrap();
    assert_eq!(reports.len(), 1, "reported once");
    let (at, text) = &reports[0];
    assert_eq!(*at, secs(5), "3s after the cancel at 2s");
    assert!(
        text.starts_with("scope \"shutdown\" [dropping: cancelled explicitly]"),
        "{text}"
    );
    assert!(text.contains("shield \"flush-logs\""), "{text}");
    assert_eq!(
        text.lines().count(),
        2,
        "only the stuck child is left: {text}"
    );
}

#[tokio::test(start_paused = true)]
async fn on_stuck_stays_quiet_when_the_scope_finishes_in_time() {
    let reports = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let out = reports.clone();
    let r: Result<(), Cancelled> = Scope::builder()
        .timeout(secs(1))
        .on_stuck(secs(1), move |_| {
            out.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        })
        .run(async |s| {
            s.spawn(pending::<Result<(), Cancelled>>());
            Ok(())
        })
        .within(
            PAUSED_HANG,
            "the scope's return before its on_stuck deadline",
        )
        .await;
    assert!(r.is_err());
    tokio::time::sleep(secs(10)).await;
    assert_eq!(reports.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn a_limited_scope_shows_its_waiting_children_and_a_finished_scope_is_done() {
    let r: Result<(), Cancelled> = Scope::builder()
        .name("crawl")
        .limit(2)
        .run(async |s| {
            for _ in 0..5 {
                s.spawn(async {
                    tokio::time::sleep(secs(1)).await;
                    Ok(())
                });
            }
            tokio::task::yield_now().await;
            let tree = s.snapshot();
            let i = tree.position("crawl").unwrap();
            assert_eq!(tree.nodes()[i].waiting, 3);
            assert_eq!(tree.nodes()[i].live_children, 5);
            assert!(
                tree.to_string()
                    .starts_with("scope \"crawl\" [running] 3 waiting for a slot\n")
            );
            Ok(())
        })
        .within(
            PAUSED_HANG,
            "the limited scope's return after its waiting children",
        )
        .await;
    assert!(r.is_ok());
    let mut kept = None;
    let r: Result<(), Cancelled> = Scope::builder()
        .name("short")
        .run(async |s| {
            kept = Some(s.handle());
            Ok(())
        })
        .within(PAUSED_HANG, "the scope's return")
        .await;
    assert!(r.is_ok());
    assert_eq!(
        kept.unwrap().snapshot().to_string(),
        "scope \"short\" [done]\n"
    );
}

#[tokio::test(start_paused = true)]
async fn a_snapshot_indexes_a_subtree_by_name() {
    let tree = three_levels().await;
    assert!(!tree.is_empty());
    let api = tree.position("api").expect("api is in the tree");
    assert_eq!(tree.nodes()[api].name.as_deref(), Some("api"));
    let backend = tree
        .position("backend-a")
        .expect("backend-a is in the tree");
    assert!(api > 0 && backend > api);
    assert_eq!(tree.children(api).collect::<Vec<_>>(), vec![backend]);
    assert_eq!(tree.children(backend).count(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_scope_past_its_deadline_in_its_grace_period_shows_the_deadline_passed() {
    let r: Result<(), Cancelled> = Scope::builder()
        .name("late")
        .timeout(secs(1))
        .grace(secs(10))
        .run(async |s| {
            tokio::time::sleep(secs(2)).await;
            let tree = s.snapshot();
            assert_eq!(tree.nodes()[0].time_left, Some(Duration::ZERO));
            let text = tree.to_string();
            let first = text.lines().next().unwrap();
            assert!(first.starts_with("scope \"late\" [cancelling: "), "{text}");
            assert!(first.ends_with("] deadline passed"), "{text}");
            Ok(())
        })
        .within(PAUSED_HANG, "the late scope's return")
        .await;
    assert!(r.is_err());
}

/// A blocking child that polls its cancel token, bounded so that a bug cannot hang the test.
fn blocking_until_cancelled() -> Result<(), Cancelled> {
    for _ in 0..10_000 {
        if taskscope::is_cancelled() {
            return Ok(());
        }
        std::thread::sleep(ms(1));
    }
    Ok(())
}

rt_test! {
    async fn blocking_children_are_counted_on_a_line_after_the_tasks() {
        let r: Result<(), Cancelled> = Scope::builder()
            .name("mixed")
            .run(async |s| {
                let first = s.spawn(pending::<Result<(), Cancelled>>()).id().unwrap();
                let second = s.spawn(pending::<Result<(), Cancelled>>()).id().unwrap();
                s.spawn_blocking(blocking_until_cancelled);
                s.spawn_blocking(blocking_until_cancelled);
                let text = s.snapshot().to_string();
                s.cancel();
                assert_eq!(
                    text,
                    format!(
                        "scope \"mixed\" [running]\n\
                         ├─ task {first}\n\
                         ├─ task {second}\n\
                         └─ 2 blocking or starting\n"
                    )
                );
                Ok(())
            })
            .within(HANG, "the scope's return after cancelling its children")
            .await;
        assert_eq!(r, Ok(()), "the body completed: its value is kept");
    }
}

rt_test! {
    async fn a_dropped_scope_whose_blocking_child_still_runs_is_done_with_children_handed_up() {
        let r: Result<(), Cancelled> = Scope::builder()
            .name("outer")
            .run(async |_| {
                let (handle_tx, handle_rx) = oneshot::channel();
                let (started_tx, started_rx) = oneshot::channel();
                let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
                let dropped = Scope::builder().name("dropped").run(async |s| {
                    let _ = handle_tx.send(s.handle());
                    s.spawn_blocking(move || {
                        let _ = started_tx.send(());
                        // Not cancellable: it waits for the test.
                        let _ = release_rx.recv_timeout(HANG);
                        Ok(())
                    });
                    pending::<()>().await;
                    Ok::<(), Cancelled>(())
                });
                tokio::select! {
                    _ = dropped => unreachable!("the scope's body never returns"),
                    r = started_rx => r.unwrap(),
                }
                // The scope's future is gone; its blocking child is handed up to "outer".
                let h = handle_rx.await.unwrap();
                let text = h.snapshot().to_string();
                release_tx.send(()).unwrap();
                assert_eq!(
                    text,
                    "scope \"dropped\" [done, children handed up]\n\
                     └─ 1 blocking or starting\n"
                );
                Ok(())
            })
            .within(HANG, "the outer scope's return after the blocking child")
            .await;
        assert!(r.is_ok());
    }
}

/// A cancel scope's handle snapshots the subtree below (and including) the cancel scope,
/// from inside it and from the scope around it.
#[tokio::test(start_paused = true)]
async fn a_cancel_scope_s_handle_snapshots_its_subtree() {
    let r: Result<(), Cancelled> = Scope::builder()
        .name("outer")
        .run(async |_s| {
            let cs = CancelScope::new().name("guarded");
            let h = cs.handle();
            cs.run(async {
                Scope::builder()
                    .name("inside")
                    .run(async |_i| {
                        let tree = h.snapshot();
                        let names: Vec<_> =
                            tree.nodes().iter().map(|n| n.name.as_deref()).collect();
                        assert_eq!(names, [Some("guarded"), Some("inside")]);
                        assert_eq!(tree.children(0).collect::<Vec<_>>(), [1]);
                        Ok::<_, Cancelled>(())
                    })
                    .await
            })
            .await??;
            Ok(())
        })
        .within(PAUSED_HANG, "the scope's return after the snapshot")
        .await;
    assert_eq!(r, Ok(()));
}
