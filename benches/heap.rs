//! Live heap bytes per parked child: taskscope next to the tokio and tokio-util peers.
//!
//! Run with `cargo bench --bench heap`.
//!
//! A counting global allocator (wrapping `std::alloc::System`) keeps the number of bytes
//! requested and not yet freed, and the number of live allocations. For each contender, on a
//! multi-thread runtime with two worker threads, it reads both right before the first child
//! is spawned and again once all [`N`] children have been polled once and parked (each bumps
//! a counter right before parking; the measuring thread waits for the last one), and divides
//! the difference by `N`. Whatever keeps the children (a `Vec` of handles, a `JoinSet`, the
//! scope's state) is alive at the second reading, so it is counted; so is the O(1) state of
//! the set, tracker or scope, spread over `N`. Bytes are the sizes requested from the
//! allocator (`Layout::size`), without the allocator's own overhead.
//!
//! Every contender runs [`ROUNDS`] times; the first round warms up lazily grown runtime
//! state, and the table shows the last round (the rounds after the first agree).
//!
//! Two tables: the parked child of `spawn_cancel` (a 16-byte future), and the same child
//! holding 96 more bytes across its park. Tokio allocates a task as one cell aligned to 128
//! bytes on x86_64, so a few bytes of wrapper state can move a small child into the next
//! size class while a larger child absorbs them.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::future::{Future, pending};
use std::sync::atomic::{AtomicIsize, Ordering};

use common::{N, all_parked, begin_round, live, parked, parked_on};
use taskscope::Cancelled;
use tokio::runtime::Runtime;
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Parked children per measurement.
/// Measurements per contender; the last one is reported.
const ROUNDS: usize = 3;

static BYTES: AtomicIsize = AtomicIsize::new(0);
static ALLOCS: AtomicIsize = AtomicIsize::new(0);

/// Counts live bytes and allocations; everything else is `System`'s.
struct Counting;

// SAFETY: every method forwards its arguments unchanged to `System`, which upholds the
// `GlobalAlloc` contract; the counters are plain atomics and never affect the result.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is; the caller guarantees `layout` is valid.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            count(layout.size() as isize, 1);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            count(layout.size() as isize, 1);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout` (all our allocations are).
        unsafe { System.dealloc(ptr, layout) };
        count(-(layout.size() as isize), -1);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as `dealloc`; the caller guarantees `new_size` is valid for `layout`.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            count(new_size as isize - layout.size() as isize, 0);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn count(bytes: isize, allocs: isize) {
    BYTES.fetch_add(bytes, Ordering::Relaxed);
    ALLOCS.fetch_add(allocs, Ordering::Relaxed);
}

#[derive(Clone, Copy)]
struct Reading {
    bytes: isize,
    allocs: isize,
}

fn reading() -> Reading {
    Reading {
        bytes: BYTES.load(Ordering::SeqCst),
        allocs: ALLOCS.load(Ordering::SeqCst),
    }
}

fn run<F>(rt: &Runtime, fut: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    rt.block_on(rt.spawn(fut))
        .expect("the driver task panicked")
}

/// Ends a parked state: cancels the children and waits until they are gone.
type Stop = Box<dyn FnOnce(&Runtime)>;
/// Builds a parked state and returns how to end it.
type Park = fn(&Runtime) -> Stop;

/// One measurement: `park` builds the parked state (what keeps it alive is moved into the
/// returned `Stop`); the reading is taken right after it, before the children are stopped.
fn measure(rt: &Runtime, park: Park) -> Reading {
    begin_round();
    let before = reading();
    let stop = park(rt);
    let after = reading();
    stop(rt);
    assert_eq!(live(), 0, "a child outlived its round");
    Reading {
        bytes: after.bytes - before.bytes,
        allocs: after.allocs - before.allocs,
    }
}

fn tokio_spawn_vec<const PAD: usize>(rt: &Runtime) -> Stop {
    let handles = run(rt, async {
        let handles: Vec<_> = (0..N).map(|_| tokio::spawn(parked::<PAD>())).collect();
        all_parked().await;
        handles
    });
    Box::new(move |rt| {
        run(rt, async move {
            for h in &handles {
                h.abort();
            }
            for h in handles {
                let _ = h.await;
            }
        })
    })
}

fn joinset<const PAD: usize>(rt: &Runtime) -> Stop {
    let mut set = run(rt, async {
        let mut set = JoinSet::new();
        for _ in 0..N {
            set.spawn(parked::<PAD>());
        }
        all_parked().await;
        set
    });
    Box::new(move |rt| {
        run(rt, async move {
            set.abort_all();
            while set.join_next().await.is_some() {}
        })
    })
}

fn joinset_token<const PAD: usize>(rt: &Runtime) -> Stop {
    let (token, mut set) = run(rt, async {
        let token = CancellationToken::new();
        let mut set = JoinSet::new();
        for _ in 0..N {
            set.spawn(parked_on::<PAD>(token.clone()));
        }
        all_parked().await;
        (token, set)
    });
    Box::new(move |rt| {
        run(rt, async move {
            token.cancel();
            while set.join_next().await.is_some() {}
        })
    })
}

fn task_tracker_token<const PAD: usize>(rt: &Runtime) -> Stop {
    let (token, tracker) = run(rt, async {
        let token = CancellationToken::new();
        let tracker = TaskTracker::new();
        for _ in 0..N {
            drop(tracker.spawn(parked_on::<PAD>(token.clone())));
        }
        tracker.close();
        all_parked().await;
        (token, tracker)
    });
    Box::new(move |rt| {
        run(rt, async move {
            token.cancel();
            tracker.wait().await;
        })
    })
}

/// A scope whose body spawns the parked children, keeping their handles in a `Vec` if
/// `keep`, and hands its `ScopeHandle` out once they are parked.
fn taskscope<const PAD: usize>(rt: &Runtime, keep: bool) -> Stop {
    let (tx, rx) = oneshot::channel();
    let scope_task = rt.spawn(async move {
        taskscope::scope(async move |s| {
            let mut handles = Vec::new();
            if keep {
                handles.reserve_exact(N);
                handles.extend((0..N).map(|_| s.spawn(parked::<PAD>())));
            } else {
                for _ in 0..N {
                    drop(s.spawn(parked::<PAD>()));
                }
            }
            all_parked().await;
            let _ = tx.send(s.handle());
            // Keep the handles alive until the cancel drops the body.
            pending::<()>().await;
            drop(handles);
            Ok::<(), Cancelled>(())
        })
        .await
    });
    let handle = rt.block_on(rx).expect("the scope body sends its handle");
    Box::new(move |rt| {
        handle.cancel();
        let _ = rt.block_on(scope_task).expect("the scope task");
    })
}

fn main() {
    // `cargo bench` passes `--bench`; this binary takes no options.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("build the runtime");

    // The first table is the child of `spawn_cancel`; the second holds 96 more bytes.
    table::<0>(&rt);
    table::<96>(&rt);
}

fn table<const PAD: usize>(rt: &Runtime) {
    let contenders: [(&str, Park); 6] = [
        ("tokio::spawn, JoinHandles in a Vec", tokio_spawn_vec::<PAD>),
        ("JoinSet", joinset::<PAD>),
        ("JoinSet + CancellationToken", joinset_token::<PAD>),
        ("TaskTracker + CancellationToken", task_tracker_token::<PAD>),
        ("taskscope scope, TaskHandles in a Vec", |rt| {
            taskscope::<PAD>(rt, true)
        }),
        ("taskscope scope, handles dropped", |rt| {
            taskscope::<PAD>(rt, false)
        }),
    ];
    println!(
        "live heap per parked child, {N} children, multi-thread runtime with 2 workers\n\
         child future: {} bytes ({PAD} bytes of state); with a CancellationToken: {} bytes\n",
        size_of_val(&parked::<PAD>()),
        size_of_val(&parked_on::<PAD>(CancellationToken::new())),
    );
    println!(
        "{:<40} {:>14} {:>16}   rounds (bytes/child)",
        "contender", "bytes/child", "allocs/child"
    );
    for (name, park) in contenders {
        let rounds: Vec<Reading> = (0..ROUNDS).map(|_| measure(rt, park)).collect();
        let last = rounds[ROUNDS - 1];
        let all: Vec<String> = rounds
            .iter()
            .map(|r| format!("{:.1}", r.bytes as f64 / N as f64))
            .collect();
        println!(
            "{:<40} {:>14.1} {:>16.2}   {}",
            name,
            last.bytes as f64 / N as f64,
            last.allocs as f64 / N as f64,
            all.join(" / "),
        );
    }
    println!();
}
