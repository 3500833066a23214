//! Nested scopes: a chain of levels where each level runs the next one as its child, built
//! and torn down, or parked and cancelled from the root. taskscope side by side with the raw
//! tokio chain.
//!
//! Run with `cargo bench --bench nested`.
//!
//! Every benchmark builds its runtime once, before its timed loop, and runs on both runtimes
//! (divan's `types`): `MultiThread` (two worker threads) and `CurrentThread`. The divan
//! argument is the depth `d` (10, 100, 1000): the number of spawned levels. Each level's
//! future is boxed (`Pin<Box<dyn Future + Send>>`, the recursion needs it) in both variants
//! alike.
//!
//! # Workloads
//!
//! - `build_teardown`: `raw_spawn_chain`: level `k` does `tokio::spawn(level(k - 1)).await`
//!   and returns the child's value plus one; level 0 returns at once. `taskscope_chain`:
//!   level `k` is a `taskscope::scope` whose body does `s.spawn(level(k - 1)).await?`;
//!   level 0 returns at once without a scope. So both spawn `d` tasks and taskscope opens
//!   `d` scopes on top. The top level runs in the driver task ([`run`]). One iteration runs
//!   `1000 / d` chains back to back in one driver task, 1000 levels in all; divan's
//!   `ItemsCount` gives the time per level.
//! - `cancel`: divan's `with_inputs` builds a parked chain of `d` levels outside the timed
//!   region (each level holds a drop guard and bumps a counter right before it parks; the
//!   setup returns once all `d` did), one chain per sample (`sample_size = 1`). Timed: the
//!   cancel from the root and the wait until the root's task has ended, which in both
//!   variants is only after every level below ended.
//!   - `raw_token_chain`: aborting the root's `JoinHandle` would not reach the levels below
//!     it (a tokio task does not own the tasks it spawned), so the peer is the one tokio
//!     offers: level `k` gets a `CancellationToken`, spawns level `k - 1` with
//!     `token.child_token()`, then waits for its token or its child; once cancelled it
//!     awaits its child's `JoinHandle`. The leaf waits for its token. The root task runs the
//!     top level; the timed part cancels the root token and awaits the root task.
//!   - `taskscope_chain`: level `k` (for `k >= 2`) is a scope whose body spawns level
//!     `k - 1` and awaits its handle; level 1 (the leaf) is a plain child parked forever. The
//!     top scope runs in a task and hands its `ScopeHandle` out; the timed part calls
//!     `ScopeHandle::cancel` and awaits that task. Same `d` tasks as the raw chain, `d - 1`
//!     scopes.

mod common;

use std::future::{Future, pending};
use std::pin::Pin;

use common::{CurrentThread, Flavor, MultiThread, run};
use common::{all_parked, arrive, begin_round_of, guard};
use divan::counter::ItemsCount;
use divan::{Bencher, black_box};
use taskscope::{Cancelled, ScopeHandle};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

fn main() {
    divan::main();
}

/// Depths, one divan argument each.
const DEPTHS: [usize; 3] = [10, 100, 1000];

/// Levels per iteration of `build_teardown`.
const LEVELS: usize = 1000;

/// One boxed level.
type Level<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Each level spawns the next with `tokio::spawn` and awaits it.
fn raw_chain(depth: usize) -> Level<usize> {
    Box::pin(async move {
        if depth == 0 {
            return black_box(0);
        }
        tokio::spawn(raw_chain(depth - 1)).await.expect("level") + 1
    })
}

/// Each level is a scope that spawns the next as its child and awaits it.
fn scope_chain(depth: usize) -> Level<Result<usize, Cancelled>> {
    Box::pin(async move {
        if depth == 0 {
            return Ok(black_box(0));
        }
        taskscope::scope(async move |s| Ok(s.spawn(scope_chain(depth - 1)).await? + 1)).await
    })
}

/// A level of the parked token chain (see the module doc).
fn raw_parked(depth: usize, token: CancellationToken) -> Level<()> {
    Box::pin(async move {
        let _guard = guard();
        if depth == 1 {
            arrive();
            token.cancelled().await;
            return;
        }
        let mut child = tokio::spawn(raw_parked(depth - 1, token.child_token()));
        arrive();
        tokio::select! {
            _ = token.cancelled() => {}
            r = &mut child => {
                r.expect("level");
                return;
            }
        }
        child.await.expect("level");
    })
}

/// A level of the parked scope chain (see the module doc); the top one sends its handle.
fn scope_parked(
    depth: usize,
    tx: Option<oneshot::Sender<ScopeHandle<Cancelled>>>,
) -> Level<Result<(), Cancelled>> {
    Box::pin(async move {
        if depth == 1 {
            let _guard = guard();
            arrive();
            return pending().await;
        }
        taskscope::scope(async move |s| {
            let _guard = guard();
            if let Some(tx) = tx {
                let _ = tx.send(s.handle());
            }
            let child = s.spawn(scope_parked(depth - 1, None));
            arrive();
            child.await?;
            Ok(())
        })
        .await
    })
}

#[divan::bench_group(sample_count = 200, sample_size = 1)]
mod build_teardown {
    use super::*;

    #[divan::bench(types = [MultiThread, CurrentThread], args = DEPTHS)]
    fn raw_spawn_chain<F: Flavor>(b: Bencher<'_, '_>, d: usize) {
        let rt = F::runtime();
        b.counter(ItemsCount::new(LEVELS)).bench_local(|| {
            run(&rt, async move {
                for _ in 0..LEVELS / d {
                    assert_eq!(raw_chain(d).await, d);
                }
            })
        });
    }

    #[divan::bench(types = [MultiThread, CurrentThread], args = DEPTHS)]
    fn taskscope_chain<F: Flavor>(b: Bencher<'_, '_>, d: usize) {
        let rt = F::runtime();
        b.counter(ItemsCount::new(LEVELS)).bench_local(|| {
            run(&rt, async move {
                for _ in 0..LEVELS / d {
                    assert_eq!(scope_chain(d).await.expect("chain ok"), d);
                }
            })
        });
    }
}

#[divan::bench_group(sample_count = 200, sample_size = 1)]
mod cancel {
    use super::*;

    #[divan::bench(types = [MultiThread, CurrentThread], args = DEPTHS)]
    fn raw_token_chain<F: Flavor>(b: Bencher<'_, '_>, d: usize) {
        let rt = F::runtime();
        b.counter(ItemsCount::new(d))
            .with_inputs(|| {
                begin_round_of(d);
                let token = CancellationToken::new();
                let root = rt.spawn(raw_parked(d, token.clone()));
                rt.block_on(all_parked());
                (token, root)
            })
            .bench_local_values(|(token, root)| {
                run(&rt, async move {
                    token.cancel();
                    root.await.expect("root");
                })
            });
    }

    #[divan::bench(types = [MultiThread, CurrentThread], args = DEPTHS)]
    fn taskscope_chain<F: Flavor>(b: Bencher<'_, '_>, d: usize) {
        let rt = F::runtime();
        b.counter(ItemsCount::new(d))
            .with_inputs(|| {
                begin_round_of(d);
                let (tx, rx) = oneshot::channel();
                let root = rt.spawn(scope_parked(d, Some(tx)));
                let handle = rt.block_on(rx).expect("the top scope sends its handle");
                rt.block_on(all_parked());
                (handle, root)
            })
            .bench_local_values(|(handle, root)| {
                run(&rt, async move {
                    handle.cancel();
                    // `Err(Cancelled)`: the top scope was cancelled.
                    let _ = black_box(root.await.expect("root"));
                })
            });
    }
}
