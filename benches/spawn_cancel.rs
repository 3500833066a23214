//! Spawn and cancel costs of taskscope side by side with the tokio and tokio-util peers.
//!
//! Run with `cargo bench --bench spawn_cancel`.
//!
//! Every benchmark builds its own multi-thread runtime with two worker threads once, before
//! its timed loop, and reports the time for [`N`] children; divan's `ItemsCount` counter adds
//! the throughput per child.
//!
//! # Method
//!
//! The timed work always runs as a task on a worker thread ([`run`]): `block_on` of a
//! spawned driver task. Spawning from a worker goes through its local run queue, as it does in
//! an application; spawning from the `block_on` thread would push every child through the
//! runtime's global injection queue instead. The driver task costs the same single spawn and
//! join in every benchmark.
//!
//! - `spawn_join`: one iteration spawns `N` trivial children and waits until every one has
//!   finished (and its value was read where the API gives one back).
//! - `cancel`: divan's `with_inputs` builds the parked state outside the timed region: `N`
//!   children are spawned, each holds a drop guard and bumps a counter right before it parks
//!   forever; the setup returns once the counter reached `N` (all polled once and parked).
//!   Only the consuming closure is timed: issue the cancel, then wait until the API says that
//!   every child is gone. With `sample_size = 1` each sample is exactly one such
//!   cancel -> all-done round, so no other set of parked children exists while one is timed.
//!   For taskscope the parked state lives inside the scope body, so the setup runs the scope
//!   in a task whose body spawns the children, waits until they are parked, hands a
//!   `ScopeHandle` out through a oneshot channel and returns (the scope then waits for its
//!   children). The timed part calls `ScopeHandle::cancel` and awaits the task that runs the
//!   scope: it stops exactly when the scope future resolved, which it does only after every
//!   child was dropped. That is `s.cancel()` from inside the body minus the wake-up of the
//!   body, which would be an extra cost the peers do not pay.

use std::future::{Future, pending};
use std::sync::atomic::{AtomicUsize, Ordering};

use divan::counter::ItemsCount;
use divan::{Bencher, black_box};
use futures_util::stream::{FuturesUnordered, StreamExt};
use taskscope::Cancelled;
use tokio::runtime::Runtime;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Children per iteration.
const N: usize = 10_000;

fn main() {
    divan::main();
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("build the runtime")
}

/// Runs `fut` as a task on a worker thread and waits for it (see the module doc).
fn run<F>(rt: &Runtime, fut: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    rt.block_on(rt.spawn(fut))
        .expect("the driver task panicked")
}

/// The trivial child of `spawn_join`.
async fn trivial(i: usize) -> Result<usize, Cancelled> {
    Ok(black_box(i))
}

#[divan::bench_group(sample_count = 300, sample_size = 1)]
mod spawn_join {
    use super::*;

    #[divan::bench]
    fn tokio_spawn(b: Bencher<'_, '_>) {
        let rt = runtime();
        b.counter(ItemsCount::new(N)).bench_local(|| {
            run(&rt, async {
                let mut handles = Vec::with_capacity(N);
                for i in 0..N {
                    handles.push(tokio::spawn(trivial(i)));
                }
                for h in handles {
                    black_box(h.await.expect("child").expect("child ok"));
                }
            })
        });
    }

    /// Diagnostic baseline, not a peer: `tokio_spawn` with a 32-byte child future instead of a
    /// 16-byte one. Tokio allocates a task as one cell aligned to 128 bytes (x86_64,
    /// aarch64); the trivial child fits a 128-byte cell, this one (like the trivial child
    /// inside taskscope's wrapper) needs a 256-byte cell. The difference to `tokio_spawn` is
    /// the cost of that size class alone.
    #[divan::bench]
    fn tokio_spawn_256b_cell(b: Bencher<'_, '_>) {
        let rt = runtime();
        b.counter(ItemsCount::new(N)).bench_local(|| {
            run(&rt, async {
                let mut handles = Vec::with_capacity(N);
                for i in 0..N {
                    let pad = [i as u64; 3];
                    handles.push(tokio::spawn(async move {
                        Ok::<_, Cancelled>(black_box(pad)[0] as usize)
                    }));
                }
                for h in handles {
                    black_box(h.await.expect("child").expect("child ok"));
                }
            })
        });
    }

    #[divan::bench]
    fn joinset(b: Bencher<'_, '_>) {
        let rt = runtime();
        b.counter(ItemsCount::new(N)).bench_local(|| {
            run(&rt, async {
                let mut set = JoinSet::new();
                for i in 0..N {
                    set.spawn(trivial(i));
                }
                while let Some(r) = set.join_next().await {
                    black_box(r.expect("child").expect("child ok"));
                }
            })
        });
    }

    #[divan::bench]
    fn task_tracker(b: Bencher<'_, '_>) {
        let rt = runtime();
        b.counter(ItemsCount::new(N)).bench_local(|| {
            run(&rt, async {
                let tracker = TaskTracker::new();
                for i in 0..N {
                    // The tracker gives no values back; the handle is dropped (detached).
                    drop(tracker.spawn(trivial(i)));
                }
                tracker.close();
                tracker.wait().await;
            })
        });
    }

    #[divan::bench]
    fn futures_unordered(b: Bencher<'_, '_>) {
        let rt = runtime();
        b.counter(ItemsCount::new(N)).bench_local(|| {
            run(&rt, async {
                let mut all: FuturesUnordered<_> =
                    (0..N).map(|i| tokio::spawn(trivial(i))).collect();
                while let Some(r) = all.next().await {
                    black_box(r.expect("child").expect("child ok"));
                }
            })
        });
    }

    #[divan::bench]
    fn taskscope_await_handles(b: Bencher<'_, '_>) {
        let rt = runtime();
        b.counter(ItemsCount::new(N)).bench_local(|| {
            run(&rt, async {
                taskscope::scope(async |s| {
                    let handles: Vec<_> = (0..N).map(|i| s.spawn(trivial(i))).collect();
                    for h in handles {
                        black_box(h.await?);
                    }
                    Ok::<(), Cancelled>(())
                })
                .await
                .expect("scope ok");
            })
        });
    }

    #[divan::bench]
    fn taskscope_drop_handles(b: Bencher<'_, '_>) {
        let rt = runtime();
        b.counter(ItemsCount::new(N)).bench_local(|| {
            run(&rt, async {
                taskscope::scope(async |s| {
                    for i in 0..N {
                        drop(s.spawn(trivial(i)));
                    }
                    Ok::<(), Cancelled>(())
                })
                .await
                .expect("scope ok");
            })
        });
    }
}

#[divan::bench_group(sample_count = 150, sample_size = 1)]
mod cancel {
    use super::*;

    /// Drop guards alive; checked to be zero before each setup.
    static LIVE: AtomicUsize = AtomicUsize::new(0);
    /// Children that reached their parking point in the current setup.
    static PARKED: AtomicUsize = AtomicUsize::new(0);
    /// Notified (one stored permit) when `PARKED` reaches `N`.
    static ALL_PARKED: Notify = Notify::const_new();

    /// The small value every parked child holds; dropping it is part of "gone".
    struct Guard(u64);

    impl Guard {
        fn new() -> Self {
            LIVE.fetch_add(1, Ordering::Relaxed);
            Guard(black_box(0))
        }
    }

    impl Drop for Guard {
        fn drop(&mut self) {
            black_box(self.0);
            LIVE.fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn begin_setup() {
        assert_eq!(
            LIVE.load(Ordering::Relaxed),
            0,
            "a child outlived its round"
        );
        PARKED.store(0, Ordering::Relaxed);
    }

    /// Called by each child right before it parks.
    fn arrive() {
        if PARKED.fetch_add(1, Ordering::AcqRel) + 1 == N {
            ALL_PARKED.notify_one();
        }
    }

    async fn all_parked() {
        ALL_PARKED.notified().await;
    }

    /// Parks forever; only an abort or a scope's cancel ends it.
    async fn parked() -> Result<usize, Cancelled> {
        let _guard = Guard::new();
        arrive();
        pending::<()>().await;
        Ok(0)
    }

    /// Parks until `token` is cancelled, as a child of a token-based design does.
    async fn parked_on(token: CancellationToken) -> Result<usize, Cancelled> {
        let _guard = Guard::new();
        arrive();
        tokio::select! {
            _ = token.cancelled() => {}
            _ = pending::<()>() => {}
        }
        Ok(0)
    }

    #[divan::bench]
    fn joinset_abort_all(b: Bencher<'_, '_>) {
        let rt = runtime();
        b.counter(ItemsCount::new(N))
            .with_inputs(|| {
                begin_setup();
                run(&rt, async {
                    let mut set = JoinSet::new();
                    for _ in 0..N {
                        set.spawn(parked());
                    }
                    all_parked().await;
                    set
                })
            })
            .bench_local_values(|mut set| {
                run(&rt, async move {
                    set.abort_all();
                    while set.join_next().await.is_some() {}
                })
            });
    }

    #[divan::bench]
    fn joinset_token(b: Bencher<'_, '_>) {
        let rt = runtime();
        b.counter(ItemsCount::new(N))
            .with_inputs(|| {
                begin_setup();
                run(&rt, async {
                    let token = CancellationToken::new();
                    let mut set = JoinSet::new();
                    for _ in 0..N {
                        set.spawn(parked_on(token.clone()));
                    }
                    all_parked().await;
                    (token, set)
                })
            })
            .bench_local_values(|(token, mut set)| {
                run(&rt, async move {
                    token.cancel();
                    while set.join_next().await.is_some() {}
                })
            });
    }

    #[divan::bench]
    fn task_tracker_token(b: Bencher<'_, '_>) {
        let rt = runtime();
        b.counter(ItemsCount::new(N))
            .with_inputs(|| {
                begin_setup();
                run(&rt, async {
                    let token = CancellationToken::new();
                    let tracker = TaskTracker::new();
                    for _ in 0..N {
                        drop(tracker.spawn(parked_on(token.clone())));
                    }
                    tracker.close();
                    all_parked().await;
                    (token, tracker)
                })
            })
            .bench_local_values(|(token, tracker)| {
                run(&rt, async move {
                    token.cancel();
                    tracker.wait().await;
                })
            });
    }

    #[divan::bench]
    fn taskscope_cancel(b: Bencher<'_, '_>) {
        let rt = runtime();
        b.counter(ItemsCount::new(N))
            .with_inputs(|| {
                begin_setup();
                let (tx, rx) = tokio::sync::oneshot::channel();
                let scope_task = rt.spawn(async move {
                    taskscope::scope(async move |s| {
                        for _ in 0..N {
                            drop(s.spawn(parked()));
                        }
                        all_parked().await;
                        let _ = tx.send(s.handle());
                        Ok::<(), Cancelled>(())
                    })
                    .await
                });
                let handle = rt.block_on(rx).expect("the scope body sends its handle");
                (handle, scope_task)
            })
            .bench_local_values(|(handle, scope_task)| {
                run(&rt, async move {
                    handle.cancel();
                    // `Ok(())` (the body completed); `Err` only if the cancel raced the
                    // body's return, which does not change what is timed.
                    let _ = black_box(scope_task.await.expect("the scope task"));
                })
            });
    }
}
