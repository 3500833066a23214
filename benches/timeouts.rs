//! Per-call costs of taskscope's timeout and cancellation checks next to their tokio peers:
//! `move_on_after` vs `tokio::time::timeout`, `checkpoint().await` vs
//! `tokio::task::consume_budget().await`, `is_cancelled()` vs a plain atomic load.
//!
//! Run with `cargo bench --bench timeouts`.
//!
//! Every benchmark builds its runtime once, before its timed loop. The async groups run on
//! both runtimes (divan's `types`): `MultiThread` (two worker threads) and `CurrentThread`.
//!
//! # Method
//!
//! - `timeout_ready`, `timeout_yield_once`, `checkpoint`: one iteration is one driver task
//!   ([`run`]) that makes [`CALLS`] calls in a loop, one after the other, each awaited
//!   before the next; divan's `ItemsCount` gives the time per call. The `*_in_scope` rows
//!   run the same loop inside the body of a `taskscope::scope` opened once per iteration
//!   (so taskscope's calls find an enclosing node); the others run it in the bare task.
//!   `empty_loop` is the loop with no call, the fixed cost (driver task, scope) spread over
//!   the calls, to subtract if wanted.
//!   - `timeout_ready`: the wrapped future is `std::future::ready(i)`; the timeout is
//!     [`FAR`] (an hour), so it never fires.
//!   - `timeout_yield_once`: the wrapped future yields once (`tokio::task::yield_now`)
//!     before it returns, so it is polled twice and the timer is live across the yield.
//!   - `checkpoint`: `taskscope::checkpoint().await` (which ends in
//!     `tokio::task::consume_budget().await`) vs `consume_budget().await` alone. Both yield
//!     to the runtime whenever the task's coop budget (128) runs out.
//! - `is_cancelled`: synchronous, so divan times the loop of [`CALLS`] calls directly from
//!   inside a scope body (`block_on` of a scope on a current-thread runtime, the bencher
//!   runs in the body's poll): `taskscope::is_cancelled()`, `Scope::is_cancelled` and a
//!   `Relaxed` load of an `AtomicBool`.

mod common;

use std::future::{Future, ready};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{CurrentThread, Flavor, MultiThread, current_thread, run};
use divan::counter::ItemsCount;
use divan::{Bencher, black_box};
use taskscope::Cancelled;

fn main() {
    divan::main();
}

/// Calls per iteration.
const CALLS: usize = 10_000;

/// A timeout that never fires.
const FAR: Duration = Duration::from_secs(3600);

/// Times one driver task making [`CALLS`] calls of `call(i)`, in a scope if `in_scope`.
fn calls<F, C, Fut>(b: Bencher<'_, '_>, in_scope: bool, call: C)
where
    F: Flavor,
    C: Fn(usize) -> Fut + Send + Sync + Copy + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let rt = F::runtime();
    b.counter(ItemsCount::new(CALLS)).bench_local(|| {
        run(&rt, async move {
            if in_scope {
                taskscope::scope(async |_s| {
                    for i in 0..CALLS {
                        call(i).await;
                    }
                    Ok::<(), Cancelled>(())
                })
                .await
                .expect("scope ok");
            } else {
                for i in 0..CALLS {
                    call(i).await;
                }
            }
        })
    });
}

/// The future `timeout_yield_once` wraps.
async fn yield_once(i: usize) -> usize {
    tokio::task::yield_now().await;
    black_box(i)
}

/// The timeout groups: the same four rows (and the empty loop) around `$fut(i)`.
macro_rules! timeout_group {
    ($group:ident, $fut:expr) => {
        #[divan::bench_group(sample_count = 100, sample_size = 1)]
        mod $group {
            use super::*;

            #[divan::bench(types = [MultiThread, CurrentThread])]
            fn empty_loop<F: Flavor>(b: Bencher<'_, '_>) {
                calls::<F, _, _>(b, false, |i| async move {
                    black_box(i);
                });
            }

            #[divan::bench(types = [MultiThread, CurrentThread])]
            fn tokio_timeout<F: Flavor>(b: Bencher<'_, '_>) {
                calls::<F, _, _>(b, false, |i| async move {
                    black_box(
                        tokio::time::timeout(FAR, $fut(i))
                            .await
                            .expect("no timeout"),
                    );
                });
            }

            #[divan::bench(types = [MultiThread, CurrentThread])]
            fn move_on_after<F: Flavor>(b: Bencher<'_, '_>) {
                calls::<F, _, _>(b, false, |i| async move {
                    black_box(
                        taskscope::move_on_after(FAR, $fut(i))
                            .await
                            .expect("no timeout"),
                    );
                });
            }

            #[divan::bench(types = [MultiThread, CurrentThread])]
            fn empty_loop_in_scope<F: Flavor>(b: Bencher<'_, '_>) {
                calls::<F, _, _>(b, true, |i| async move {
                    black_box(i);
                });
            }

            #[divan::bench(types = [MultiThread, CurrentThread])]
            fn tokio_timeout_in_scope<F: Flavor>(b: Bencher<'_, '_>) {
                calls::<F, _, _>(b, true, |i| async move {
                    black_box(
                        tokio::time::timeout(FAR, $fut(i))
                            .await
                            .expect("no timeout"),
                    );
                });
            }

            #[divan::bench(types = [MultiThread, CurrentThread])]
            fn move_on_after_in_scope<F: Flavor>(b: Bencher<'_, '_>) {
                calls::<F, _, _>(b, true, |i| async move {
                    black_box(
                        taskscope::move_on_after(FAR, $fut(i))
                            .await
                            .expect("no timeout"),
                    );
                });
            }
        }
    };
}

timeout_group!(timeout_ready, ready);
timeout_group!(timeout_yield_once, yield_once);

#[divan::bench_group(sample_count = 100, sample_size = 1)]
mod checkpoint {
    use super::*;

    #[divan::bench(types = [MultiThread, CurrentThread])]
    fn empty_loop_in_scope<F: Flavor>(b: Bencher<'_, '_>) {
        calls::<F, _, _>(b, true, |i| async move {
            black_box(i);
        });
    }

    #[divan::bench(types = [MultiThread, CurrentThread])]
    fn consume_budget_in_scope<F: Flavor>(b: Bencher<'_, '_>) {
        calls::<F, _, _>(b, true, |_| async move {
            tokio::task::consume_budget().await;
        });
    }

    #[divan::bench(types = [MultiThread, CurrentThread])]
    fn checkpoint_in_scope<F: Flavor>(b: Bencher<'_, '_>) {
        calls::<F, _, _>(b, true, |_| async move {
            taskscope::checkpoint().await.expect("not cancelled");
        });
    }

    /// `checkpoint` outside any scope: no node to look at, only the budget.
    #[divan::bench(types = [MultiThread, CurrentThread])]
    fn checkpoint_no_scope<F: Flavor>(b: Bencher<'_, '_>) {
        calls::<F, _, _>(b, false, |_| async move {
            taskscope::checkpoint().await.expect("not cancelled");
        });
    }
}

#[divan::bench_group(sample_count = 300)]
mod is_cancelled {
    use super::*;

    /// Runs `bench` (the timing) inside the body of a scope on a current-thread runtime.
    fn in_scope(
        b: Bencher<'_, '_>,
        bench: impl FnOnce(Bencher<'_, '_>, &taskscope::Scope<'_, Cancelled>),
    ) {
        current_thread().block_on(async {
            taskscope::scope(async |s| {
                bench(b, &s);
                Ok::<(), Cancelled>(())
            })
            .await
            .expect("scope ok");
        });
    }

    #[divan::bench]
    fn atomic_load(b: Bencher<'_, '_>) {
        let flag = AtomicBool::new(false);
        in_scope(b, |b, _| {
            b.counter(ItemsCount::new(CALLS)).bench_local(|| {
                for _ in 0..CALLS {
                    black_box(black_box(&flag).load(Ordering::Relaxed));
                }
            });
        });
    }

    #[divan::bench]
    fn taskscope_is_cancelled(b: Bencher<'_, '_>) {
        in_scope(b, |b, _| {
            b.counter(ItemsCount::new(CALLS)).bench_local(|| {
                for _ in 0..CALLS {
                    black_box(taskscope::is_cancelled());
                }
            });
        });
    }

    #[divan::bench]
    fn scope_is_cancelled(b: Bencher<'_, '_>) {
        in_scope(b, |b, s| {
            b.counter(ItemsCount::new(CALLS)).bench_local(|| {
                for _ in 0..CALLS {
                    black_box(black_box(s).is_cancelled());
                }
            });
        });
    }
}
