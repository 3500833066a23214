//! Background children ([`Scope::spawn_background`](crate::Scope::spawn_background)):
//! service tasks that run as long as the scope's foreground work (the body, its local
//! children and its other children) does, are then cancelled with
//! [`CancelReason::ScopeDone`](crate::CancelReason::ScopeDone), and are still awaited.
//!
//! They run under a hidden node below the scope's, created at the first background spawn.
//! Its `busy` count is carried into the scope's like any child node's, so the scope awaits
//! them and a dropped scope hands them to its ancestor. The scope future sees that its
//! foreground work is done when its count is exactly the one unit of the background node
//! (`Node::foreground_idle`; a count dropping to one wakes it), then cancels the background
//! node (softly, with the scope's grace period) and waits for the rest. Errors and panics of
//! background children are recorded with the scope (the node *forwards*); an error that
//! arrives once the background node was cancelled is secondary (a service that stops with
//! `checkpoint()?` did not fail the scope).

use crate::error::SpawnError;
use crate::parent::Parent;
use crate::sync::{Arc, Ordering};
use crate::tree::{Config, Node};

/// The scope's background node, created (and attached below the scope) if needed.
pub(crate) fn node(scope: &Arc<Node>) -> Result<Arc<Node>, SpawnError> {
    let grace = {
        let inner = scope.lock();
        if let Some(bg) = &inner.background {
            return Ok(bg.clone());
        }
        inner.grace
    };
    if scope.is_closed() {
        return Err(SpawnError::Closed);
    }
    let bg = Node::new(Config {
        // Unnamed: it is shown as `background` below its scope.
        grace,
        forward: true,
        kind: crate::tree::NodeKind::Background,
        ..Config::default()
    });
    if let Some(rt) = scope.runtime.get() {
        let _ = bg.runtime.set(rt.clone());
    }
    bg.attach(Some(scope));
    #[cfg(feature = "tracing")]
    {
        let parent = scope.lock().span.clone();
        let mut inner = bg.lock();
        let name = inner.name.as_deref().unwrap_or("");
        inner.span = tracing::debug_span!(parent: &parent, "background", name);
    }
    let mut inner = scope.lock();
    if inner.is_done() {
        // The scope future went away meanwhile and already took its background node out:
        // one set now would never be taken (a reference cycle through `parent`).
        drop(inner);
        bg.detach();
        return Err(SpawnError::Closed);
    }
    if let Some(existing) = &inner.background {
        // Another spawn created one meanwhile: use it.
        let existing = existing.clone();
        drop(inner);
        bg.detach();
        return Ok(existing);
    }
    inner.background = Some(bg.clone());
    // Stored under the lock that `is_done` was read under: a scope future that left after
    // this section sees the flag (`take`), one that left before made this spawn fail above.
    scope.has_background.store(true, Ordering::Release);
    drop(inner);
    Ok(bg)
}

/// Spawns through `spawn` into the scope's background node, holding the scope open while
/// doing so: the background node carries its first unit into the scope without looking at
/// the scope's `CLOSED` bit, so the scope must not be able to close in between (#7).
pub(crate) fn spawn<R>(
    scope: &Arc<Node>,
    spawn: impl FnOnce(&Arc<Node>) -> Result<R, SpawnError>,
) -> Result<R, SpawnError> {
    let _hold = Parent::new(scope.clone()).hold()?;
    let bg = node(scope)?;
    spawn(&bg)
}

/// Takes the background node out of the scope (breaking the cycle through `parent`).
pub(crate) fn take(scope: &Node) -> Option<Arc<Node>> {
    // Called once the scope's node is done (it left the tree): no background node can be
    // set from now on (`node` checks `is_done` under the lock), and one set before carries
    // the flag, so a scope that never had background children takes no lock here.
    if !scope.has_background.load(Ordering::Acquire) {
        return None;
    }
    scope.lock().background.take()
}

#[cfg(all(test, not(taskscope_loom)))]
mod tests {
    use futures_util::FutureExt as _;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

    use crate::tree::node::LIVE_NODES;
    use crate::{Cancelled, ScopeHandle, scope};

    /// The scope future is dropped (cancel, close, take the background node out) while
    /// another thread spawns the scope's first background child through a handle. The
    /// spawn can count itself before the close and create the background node after the
    /// drop took the (absent) one: a node set then would never be taken, and the scope and
    /// background nodes would keep each other alive (a cycle through `parent`).
    ///
    /// Counts live nodes process-wide, so it runs alone, in a child process of the test
    /// binary (other tests hold nodes while they run).
    #[test]
    fn background_spawn_racing_the_scope_drop_leaks_no_node() {
        let _alone = crate::tree::node::node_tests_alone();
        const ALONE: &str = "TASKSCOPE_LEAK_TEST_ALONE";
        const NAME: &str =
            "background::tests::background_spawn_racing_the_scope_drop_leaks_no_node";
        if std::env::var(ALONE).is_err() {
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .env(ALONE, "1")
                .args(["--exact", NAME, "--test-threads=1"])
                .output()
                .unwrap();
            let log = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "{log}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                log.contains("1 passed"),
                "the test did not run alone: {log}"
            );
            return;
        }
        const N: usize = 2000;
        let before = LIVE_NODES.load(SeqCst);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let mut spawned = 0;
        for i in 0..N {
            let (htx, hrx) = std::sync::mpsc::channel::<ScopeHandle<Cancelled>>();
            let go = Arc::new(AtomicUsize::new(0));
            let go2 = go.clone();
            let spawner = std::thread::spawn(move || {
                let h = hrx.recv().unwrap();
                go2.fetch_add(1, SeqCst);
                while go2.load(SeqCst) < 2 {
                    std::hint::spin_loop();
                }
                for _ in 0..(i % 32) * 8 {
                    std::hint::spin_loop();
                }
                h.spawn_background(std::future::pending::<Result<(), Cancelled>>())
                    .is_ok()
            });
            rt.block_on(async {
                let mut fut = Box::pin(scope(async |s| -> Result<(), Cancelled> {
                    htx.send(s.handle()).ok();
                    std::future::pending::<()>().await;
                    Ok(())
                }));
                assert!(fut.as_mut().now_or_never().is_none(), "the body waits");
                go.fetch_add(1, SeqCst);
                while go.load(SeqCst) < 2 {
                    std::hint::spin_loop();
                }
                for _ in 0..(i % 7) * 16 {
                    std::hint::spin_loop();
                }
                drop(fut);
            });
            spawned += usize::from(spawner.join().unwrap());
        }
        drop(rt);
        // Both outcomes of the race occurred: some spawns won, some were refused.
        assert!(
            0 < spawned && spawned < N,
            "{spawned} of {N} spawns accepted"
        );
        let leaked = LIVE_NODES.load(SeqCst) - before;
        assert_eq!(leaked, 0, "{leaked} nodes leaked over {N} races");
    }
}
