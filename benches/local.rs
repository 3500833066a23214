//! In-task ("local") children: futures polled concurrently inside the task that awaits them,
//! which may borrow from the caller. taskscope's `spawn_local` side by side with
//! `FuturesUnordered` and `moro_local`.
//!
//! Run with `cargo bench --bench local`.
//!
//! Every benchmark builds one current-thread runtime before its timed loop; an iteration is
//! one `block_on` of the whole round, so no child ever leaves the thread and no task is
//! spawned. Each runs for every child count in [`LOCAL_SIZES`] and reports the time for the
//! round; divan's `ItemsCount` counter adds the throughput per child.
//!
//! # Workloads
//!
//! - `borrow`: `n` children, child `i` reads `data[i]` from a `Vec<u64>` owned by the caller
//!   (outside the timed loop) through a shared borrow and returns it. Polled once each.
//! - `yield_once`: the `borrow` child with one `tokio::task::yield_now().await` before its
//!   read, so each child is polled twice and woken once in between. The difference to
//!   `borrow` is the cost of one wake-up and one more poll per child.
//! - `hold_rc`: the `yield_once` child holding an `Rc<u64>` (a clone of the caller's)
//!   across its yield, so its future is `!Send`; only the variants that take `!Send`
//!   children run it.
//!
//! # Variants
//!
//! - `futures_unordered`: `FuturesUnordered<Pin<Box<dyn Future>>>`, every child pushed, then
//!   drained; each value is read. The floor: one allocation per child, no handles, no
//!   bookkeeping beyond the set.
//! - `moro_local`: `moro_local::async_scope!` with `scope.spawn(child)` and the `Spawned`
//!   handle dropped; the scope waits for every child. moro boxes each child into its own
//!   `FuturesUnordered` and sends the value through a oneshot channel.
//! - `taskscope_scope`: `taskscope::scope` with `s.spawn_local(child)` and the handle dropped
//!   (the default scope: local children must be `Send`, may borrow).
//! - `taskscope_local`: `Scope::builder().local().run(..)`, the local scope that accepts
//!   `!Send` children, with `s.spawn_local(child)` and the handle dropped.
//!
//! Every child returns `Result<u64, Cancelled>` (what taskscope's children return), so
//! every variant polls the same child future. Dropping a moro `Spawned` or a taskscope
//! `LocalHandle` neither cancels nor detaches the child: the scope still runs it to the end.
//!
//! Each variant is one fn of the [`variant`] module, generic over the child; `workload!`
//! declares a group's benchmarks (same names as those fns) from the group's child.
//!
//! # Reading the numbers
//!
//! 500 samples of one round each (about 15 s for the whole run). On a shared two-core
//! machine the medians move by up to half between runs when other processes compete for a
//! core; the `fastest` column is the steadier one for ratios. Beyond 10 000 children every
//! variant slows per child alike (the children no longer fit the cache); none is quadratic.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use common::{LOCAL_SIZES, current_thread};
use divan::counter::ItemsCount;
use divan::{Bencher, black_box};
use futures_util::stream::{FuturesUnordered, StreamExt};
use taskscope::Cancelled;

fn main() {
    divan::main();
}

/// A boxed child as `FuturesUnordered` holds it.
type BoxedChild<'a> = Pin<Box<dyn Future<Output = Result<u64, Cancelled>> + 'a>>;

/// The data the children borrow: `n` values, one per child.
fn data(n: usize) -> Vec<u64> {
    (0..n as u64).collect()
}

/// The child of `borrow`: one read through the caller's borrow.
async fn borrowed(data: &[u64], i: usize) -> Result<u64, Cancelled> {
    Ok(black_box(data[i]))
}

/// The child of `yield_once`: as [`borrowed`], after one yield to the runtime.
async fn yielding(data: &[u64], i: usize) -> Result<u64, Cancelled> {
    tokio::task::yield_now().await;
    Ok(black_box(data[i]))
}

/// The child of `hold_rc`: as [`yielding`], holding an `Rc` across the yield (`!Send`).
async fn holding(data: &[u64], i: usize, rc: Rc<u64>) -> Result<u64, Cancelled> {
    tokio::task::yield_now().await;
    Ok(black_box(data[i] + *rc))
}

/// Pushes every child into a `FuturesUnordered`, then drains it.
async fn drain_all<'a>(children: impl Iterator<Item = BoxedChild<'a>>) {
    let mut all: FuturesUnordered<BoxedChild<'a>> = children.collect();
    while let Some(r) = all.next().await {
        black_box(r.expect("child ok"));
    }
}

/// What a workload gives each variant: `child(data, i)` is the future of child `i`.
trait MakeChild<'d>: Fn(&'d [u64], usize) -> Self::Child {
    type Child: Future<Output = Result<u64, Cancelled>> + 'd;
}

impl<'d, F, C> MakeChild<'d> for F
where
    F: Fn(&'d [u64], usize) -> C,
    C: Future<Output = Result<u64, Cancelled>> + 'd,
{
    type Child = C;
}

/// Builds the runtime, then times one `block_on(round())` per iteration, counting `n`
/// children.
fn rounds<R: Future>(b: Bencher<'_, '_>, n: usize, round: impl Fn() -> R) {
    let rt = current_thread();
    b.counter(ItemsCount::new(n))
        .bench_local(|| rt.block_on(round()));
}

/// The four ways to run a round of `data.len()` children, generic over the child.
mod variant {
    use super::*;

    /// `FuturesUnordered`: every child boxed and pushed, then the set drained.
    pub fn futures_unordered<'d>(b: Bencher<'_, '_>, data: &'d [u64], child: impl MakeChild<'d>) {
        let n = data.len();
        rounds(b, n, || {
            drain_all((0..n).map(|i| Box::pin(child(data, i)) as BoxedChild<'_>))
        });
    }

    /// `moro_local::async_scope!`, each `Spawned` handle dropped.
    pub fn moro_local<'d>(b: Bencher<'_, '_>, data: &'d [u64], child: impl MakeChild<'d>) {
        let n = data.len();
        rounds(b, n, || {
            moro_local::async_scope!(|scope| {
                for i in 0..n {
                    drop(scope.spawn(child(data, i)));
                }
            })
        });
    }

    /// `taskscope::scope` (local children must be `Send`), each handle dropped.
    pub fn taskscope_scope<'d>(
        b: Bencher<'_, '_>,
        data: &'d [u64],
        child: impl MakeChild<'d, Child: Send>,
    ) {
        let n = data.len();
        rounds(b, n, || async {
            taskscope::scope(async |s| {
                for i in 0..n {
                    drop(s.spawn_local(child(data, i)));
                }
                Ok::<(), Cancelled>(())
            })
            .await
            .expect("scope ok");
        });
    }

    /// `Scope::builder().local()` (accepts `!Send` children), each handle dropped.
    pub fn taskscope_local<'d>(b: Bencher<'_, '_>, data: &'d [u64], child: impl MakeChild<'d>) {
        let n = data.len();
        rounds(b, n, || async {
            taskscope::Scope::builder()
                .local()
                .run(async |s| {
                    for i in 0..n {
                        drop(s.spawn_local(child(data, i)));
                    }
                    Ok::<(), Cancelled>(())
                })
                .await
                .expect("scope ok");
        });
    }
}

/// A workload group: the divan group `$group` with one benchmark per listed variant (named
/// as the [`variant`] fn it runs), each over [`LOCAL_SIZES`] with `$child` as the child
/// maker. `$child` is evaluated once per benchmark, outside the timed loop.
macro_rules! workload {
    ($group:ident: [$($variant:ident),+ $(,)?], $child:expr) => {
        #[divan::bench_group(sample_count = 500)]
        mod $group {
            use super::*;

            $(
                #[divan::bench(args = LOCAL_SIZES)]
                fn $variant(b: Bencher<'_, '_>, n: usize) {
                    variant::$variant(b, &data(n), $child);
                }
            )+
        }
    };
}

workload!(
    borrow: [futures_unordered, moro_local, taskscope_scope, taskscope_local],
    borrowed
);

workload!(
    yield_once: [futures_unordered, moro_local, taskscope_scope, taskscope_local],
    yielding
);

// `!Send` children: no `taskscope_scope`.
workload!(hold_rc: [futures_unordered, moro_local, taskscope_local], {
    let rc = Rc::new(1);
    move |data, i| holding(data, i, rc.clone())
});
