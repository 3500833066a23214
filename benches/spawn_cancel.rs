//! Spawn and cancel costs of taskscope side by side with the tokio, tokio-util and
//! async-scoped peers.
//!
//! Run with `cargo bench --bench spawn_cancel`.
//!
//! Every benchmark builds its runtime once, before its timed loop. `spawn_join` runs on both
//! runtimes (divan's `types`): `MultiThread` (two worker threads) and `CurrentThread`;
//! `cancel` runs on the multi-thread runtime.
//!
//! # Method
//!
//! The timed work always runs as a task of the runtime ([`run`]): `block_on` of a spawned
//! driver task. Spawning from a worker goes through its local run queue, as it does in an
//! application; spawning from the `block_on` thread would push every child through the
//! runtime's global injection queue instead. The driver task costs the same single spawn and
//! join in every benchmark.
//!
//! - `spawn_join`: one round spawns `n` trivial children (`n` is the divan argument: 1, 100,
//!   10 000) and waits until every one has finished (and its value was read where the API
//!   gives one back). The set, tracker or scope of the round is created and dropped inside
//!   the round, so for `n = 1` the row is "a set/scope with one child". One iteration runs
//!   `10 000 / n` rounds back to back inside one driver task, so every iteration spawns
//!   [`N`] children and the driver's cost is spread alike; divan's `ItemsCount` gives the
//!   time per child.
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
//!
//! # async-scoped
//!
//! `async_scoped::TokioScope::scope_and_block` blocks with `tokio::task::block_in_place`,
//! which panics on a current-thread runtime and, on the multi-thread one, hands the worker's
//! queue to a new thread on every call; so the `async_scoped` rows use the `unsafe`
//! `scope_and_collect`, always awaited to completion (see the SAFETY comment there).

mod common;

use std::future::Future;

use common::{CurrentThread, MultiThread};
use common::{Flavor, N, SPAWN_SIZES, all_parked, begin_round, parked, parked_on, run};
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
    common::multi_thread()
}

/// The trivial child of `spawn_join`.
async fn trivial(i: usize) -> Result<usize, Cancelled> {
    Ok(black_box(i))
}

/// Times one iteration of `N / n` rounds of `round(n)`, on the runtime of `F`, counting `N`
/// children.
fn rounds<F, R, Fut>(b: Bencher<'_, '_>, n: usize, round: R)
where
    F: Flavor,
    R: Fn(usize) -> Fut + Send + Sync + Copy + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    assert_eq!(N % n, 0, "n divides N");
    let rt = F::runtime();
    b.counter(ItemsCount::new(N)).bench_local(|| {
        run(&rt, async move {
            for _ in 0..N / n {
                round(n).await;
            }
        })
    });
}

#[divan::bench_group(sample_count = 200, sample_size = 1)]
mod spawn_join {
    use super::*;

    #[divan::bench(types = [MultiThread, CurrentThread], args = SPAWN_SIZES)]
    fn tokio_spawn<F: Flavor>(b: Bencher<'_, '_>, n: usize) {
        rounds::<F, _, _>(b, n, |n| async move {
            let mut handles = Vec::with_capacity(n);
            for i in 0..n {
                handles.push(tokio::spawn(trivial(i)));
            }
            for h in handles {
                black_box(h.await.expect("child").expect("child ok"));
            }
        });
    }

    /// Diagnostic baseline, not a peer: `tokio_spawn` with a 32-byte child future instead of a
    /// 16-byte one. Tokio allocates a task as one cell aligned to 128 bytes (x86_64,
    /// aarch64); the trivial child fits a 128-byte cell, this one needs a 256-byte cell. The
    /// difference to `tokio_spawn` is the cost of that size class alone (taskscope's child
    /// wrapper adds only the scope pointer, so the trivial child stays in the 128-byte cell).
    #[divan::bench(types = [MultiThread, CurrentThread], args = SPAWN_SIZES)]
    fn tokio_spawn_256b_cell<F: Flavor>(b: Bencher<'_, '_>, n: usize) {
        rounds::<F, _, _>(b, n, |n| async move {
            let mut handles = Vec::with_capacity(n);
            for i in 0..n {
                let pad = [i as u64; 3];
                handles.push(tokio::spawn(async move {
                    Ok::<_, Cancelled>(black_box(pad)[0] as usize)
                }));
            }
            for h in handles {
                black_box(h.await.expect("child").expect("child ok"));
            }
        });
    }

    #[divan::bench(types = [MultiThread, CurrentThread], args = SPAWN_SIZES)]
    fn joinset<F: Flavor>(b: Bencher<'_, '_>, n: usize) {
        rounds::<F, _, _>(b, n, |n| async move {
            let mut set = JoinSet::new();
            for i in 0..n {
                set.spawn(trivial(i));
            }
            while let Some(r) = set.join_next().await {
                black_box(r.expect("child").expect("child ok"));
            }
        });
    }

    #[divan::bench(types = [MultiThread, CurrentThread], args = SPAWN_SIZES)]
    fn task_tracker<F: Flavor>(b: Bencher<'_, '_>, n: usize) {
        rounds::<F, _, _>(b, n, |n| async move {
            let tracker = TaskTracker::new();
            for i in 0..n {
                // The tracker gives no values back; the handle is dropped (detached).
                drop(tracker.spawn(trivial(i)));
            }
            tracker.close();
            tracker.wait().await;
        });
    }

    #[divan::bench(types = [MultiThread, CurrentThread], args = SPAWN_SIZES)]
    fn futures_unordered<F: Flavor>(b: Bencher<'_, '_>, n: usize) {
        rounds::<F, _, _>(b, n, |n| async move {
            let mut all: FuturesUnordered<_> = (0..n).map(|i| tokio::spawn(trivial(i))).collect();
            while let Some(r) = all.next().await {
                black_box(r.expect("child").expect("child ok"));
            }
        });
    }

    #[divan::bench(types = [MultiThread, CurrentThread], args = SPAWN_SIZES)]
    fn async_scoped<F: Flavor>(b: Bencher<'_, '_>, n: usize) {
        rounds::<F, _, _>(b, n, |n| async move {
            // SAFETY: `scope_and_collect` is unsafe because dropping or forgetting its future
            // before it completes could let a spawned child outlive what it borrows. Here the
            // children borrow nothing (they are `'static`), and the future is awaited to
            // completion right here, inside a driver task that is itself always awaited.
            let ((), outputs) = unsafe {
                async_scoped::TokioScope::scope_and_collect(|s| {
                    for i in 0..n {
                        s.spawn(trivial(i));
                    }
                })
            }
            .await;
            for r in outputs {
                black_box(r.expect("child").expect("child ok"));
            }
        });
    }

    #[divan::bench(types = [MultiThread, CurrentThread], args = SPAWN_SIZES)]
    fn taskscope_await_handles<F: Flavor>(b: Bencher<'_, '_>, n: usize) {
        rounds::<F, _, _>(b, n, |n| async move {
            taskscope::scope(async |s| {
                let handles: Vec<_> = (0..n).map(|i| s.spawn(trivial(i))).collect();
                for h in handles {
                    black_box(h.await?);
                }
                Ok::<(), Cancelled>(())
            })
            .await
            .expect("scope ok");
        });
    }

    #[divan::bench(types = [MultiThread, CurrentThread], args = SPAWN_SIZES)]
    fn taskscope_drop_handles<F: Flavor>(b: Bencher<'_, '_>, n: usize) {
        rounds::<F, _, _>(b, n, |n| async move {
            taskscope::scope(async |s| {
                for i in 0..n {
                    drop(s.spawn(trivial(i)));
                }
                Ok::<(), Cancelled>(())
            })
            .await
            .expect("scope ok");
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
