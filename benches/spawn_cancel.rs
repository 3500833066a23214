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

mod common;

use std::future::Future;

use common::{N, all_parked, begin_round, parked, parked_on};
use divan::counter::ItemsCount;
use divan::{Bencher, black_box};
use futures_util::stream::{FuturesUnordered, StreamExt};
use taskscope::Cancelled;
use tokio::runtime::Runtime;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

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
    /// aarch64); the trivial child fits a 128-byte cell, this one needs a 256-byte cell. The
    /// difference to `tokio_spawn` is the cost of that size class alone (taskscope's child
    /// wrapper adds only the scope pointer, so the trivial child stays in the 128-byte cell).
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

    #[divan::bench]
    fn joinset_abort_all(b: Bencher<'_, '_>) {
        let rt = runtime();
        b.counter(ItemsCount::new(N))
            .with_inputs(|| {
                begin_round();
                run(&rt, async {
                    let mut set = JoinSet::new();
                    for _ in 0..N {
                        set.spawn(parked::<0>());
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
                begin_round();
                run(&rt, async {
                    let token = CancellationToken::new();
                    let mut set = JoinSet::new();
                    for _ in 0..N {
                        set.spawn(parked_on::<0>(token.clone()));
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
                begin_round();
                run(&rt, async {
                    let token = CancellationToken::new();
                    let tracker = TaskTracker::new();
                    for _ in 0..N {
                        drop(tracker.spawn(parked_on::<0>(token.clone())));
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
                begin_round();
                let (tx, rx) = tokio::sync::oneshot::channel();
                let scope_task = rt.spawn(async move {
                    taskscope::scope(async move |s| {
                        for _ in 0..N {
                            drop(s.spawn(parked::<0>()));
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
