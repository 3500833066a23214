//! R15: scopes inside library `async fn`s are `Send`: they can be `tokio::spawn`ed and boxed
//! as `dyn Future + Send`, with boxed, `std::io::Error` and plain enum error types
//! (`docs/design.md`, 4.16 The body's signature).
//!
//! The checks are compile-time (`assert_send`, `tokio::spawn`, the boxed trait objects): if
//! one regresses, this file stops compiling. Each is also run.

mod common;

use std::error::Error;
use std::future::Future;
use std::pin::Pin;

use common::*;
use taskscope::*;
use tokio::task::yield_now;

type BoxError = Box<dyn Error + Send + Sync>;
type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

fn assert_send<T: Send>(_: &T) {}
fn assert_send_static<T: Send + 'static>(_: &T) {}

// ---------------------------------------------------------------------------------------
// Library functions, written the way users write them
// ---------------------------------------------------------------------------------------

/// Boxed error, async closure body, children awaited with `?`.
async fn sum_boxed(n: u64) -> Result<u64, BoxError> {
    let total = scope(async move |s| {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                s.spawn(async move {
                    yield_now().await;
                    Ok::<_, BoxError>(i)
                })
            })
            .collect();
        let mut sum = 0;
        for h in handles {
            sum += h.await?;
        }
        Ok::<_, BoxError>(sum)
    })
    .await?;
    Ok(total)
}

/// Boxed error, plain closure returning an async block; a child fails with a boxed error
/// that is not `Cancelled`.
async fn fail_boxed(at: u64) -> Result<u64, BoxError> {
    scope(move |s| async move {
        for i in 0..4 {
            s.spawn(async move {
                yield_now().await;
                if i == at {
                    return Err::<(), BoxError>(format!("child {i} failed").into());
                }
                Ok(())
            });
        }
        Ok(0)
    })
    .await
}

/// `std::io::Error`, with a nested scope inside a spawned child (which must be `Send`).
async fn read_all_io(parts: usize) -> std::io::Result<usize> {
    scope(async move |s| {
        let handles: Vec<_> = (0..parts)
            .map(|i| {
                s.spawn(async move {
                    // A library call with its own scope, inside a spawned child.
                    let len = sum_io(i).await?;
                    Ok::<_, std::io::Error>(len)
                })
            })
            .collect();
        let mut total = 0;
        for h in handles {
            total += h.await?;
        }
        Ok(total)
    })
    .await
}

async fn sum_io(n: usize) -> std::io::Result<usize> {
    scope(async move |s| {
        let h = s.spawn(async move {
            yield_now().await;
            Ok::<_, std::io::Error>(n)
        });
        Ok(h.await?)
    })
    .await
}

/// A plain enum error with `From<Cancelled>`.
#[derive(Debug, PartialEq)]
enum AppError {
    Cancelled(CancelReason),
    NotFound(u32),
}

impl From<Cancelled> for AppError {
    fn from(c: Cancelled) -> Self {
        AppError::Cancelled(c.reason())
    }
}

async fn lookup(ids: Vec<u32>, missing: Option<u32>) -> Result<Vec<u32>, AppError> {
    scope(async move |s| {
        let handles: Vec<_> = ids
            .into_iter()
            .map(|id| {
                s.spawn(async move {
                    yield_now().await;
                    if Some(id) == missing {
                        Err(AppError::NotFound(id))
                    } else {
                        Ok(id * 10)
                    }
                })
            })
            .collect();
        let mut out = Vec::new();
        for h in handles {
            out.push(h.await?);
        }
        Ok(out)
    })
    .await
}

/// A scope with a timeout, a handle passed to a child, and a body that borrows a local
/// across awaits (the scope future is still `Send`).
async fn with_builder(n: usize) -> Result<usize, BoxError> {
    let label = String::from("borrowed");
    let counter = Counter::new();
    Scope::builder()
        .name("with_builder")
        .timeout(std::time::Duration::from_secs(3600))
        .run(async |s| {
            let h = s.handle();
            let c = counter.clone();
            s.spawn(async move {
                for _ in 0..n {
                    let c = c.clone();
                    h.spawn(async move {
                        c.inc();
                        Ok(())
                    })?;
                }
                Ok::<_, BoxError>(())
            });
            yield_now().await;
            Ok::<_, BoxError>(label.len())
        })
        .await?;
    Ok(counter.get())
}

/// A trait whose methods return boxed `Send` futures (the `async-trait` shape).
trait Service: Send + Sync {
    fn call(&self, n: u64) -> BoxFuture<'_, Result<u64, BoxError>>;
}

struct Summer {
    offset: u64,
}

impl Service for Summer {
    fn call(&self, n: u64) -> BoxFuture<'_, Result<u64, BoxError>> {
        Box::pin(async move { Ok(sum_boxed(n).await? + self.offset) })
    }
}

/// A generic spawner: the future must be `Send + 'static` (no higher-ranked help).
fn spawn_it<F>(f: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(f)
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r15_library_async_fns_are_send_and_spawnable() {
    // Compile-time: each library future is Send (and 'static).
    assert_send_static(&sum_boxed(3));
    assert_send_static(&fail_boxed(1));
    assert_send_static(&read_all_io(3));
    assert_send_static(&lookup(vec![1], None));
    assert_send_static(&with_builder(2));
    let svc = Summer { offset: 1 };
    assert_send(&svc.call(3));

    // Spawned.
    assert_eq!(
        tokio::spawn(sum_boxed(10))
            .within(HANG, "the spawned sum_boxed's end")
            .await
            .unwrap()
            .unwrap(),
        45
    );
    let err = tokio::spawn(fail_boxed(2))
        .within(HANG, "the spawned fail_boxed's end")
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.to_string(), "child 2 failed");
    assert_eq!(
        tokio::spawn(read_all_io(4))
            .within(HANG, "the spawned read_all_io's end")
            .await
            .unwrap()
            .unwrap(),
        6
    );
    assert_eq!(
        tokio::spawn(lookup(vec![1, 2, 3], None))
            .within(HANG, "the spawned lookup's end")
            .await
            .unwrap(),
        Ok(vec![10, 20, 30])
    );
    assert_eq!(
        tokio::spawn(lookup(vec![1, 2, 3], Some(2)))
            .within(HANG, "the spawned failing lookup's end")
            .await
            .unwrap(),
        Err(AppError::NotFound(2))
    );
    assert_eq!(
        tokio::spawn(with_builder(5))
            .within(HANG, "the spawned with_builder's end")
            .await
            .unwrap()
            .unwrap(),
        5
    );
    assert_eq!(
        spawn_it(sum_boxed(4))
            .within(HANG, "spawn_it's end")
            .await
            .unwrap()
            .unwrap(),
        6
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r15_boxed_as_dyn_future_send() {
    let futs: Vec<BoxFuture<'static, Result<u64, BoxError>>> = vec![
        Box::pin(sum_boxed(5)),
        Box::pin(fail_boxed(0)),
        Box::pin(async { Ok(read_all_io(3).await? as u64) }),
        Box::pin(async {
            lookup(vec![7], None)
                .await
                .map(|v| u64::from(v[0]))
                .map_err(|e| format!("{e:?}").into())
        }),
    ];
    let mut results = Vec::new();
    for f in futs {
        // Boxed trait objects can be spawned as they are.
        results.push(
            tokio::spawn(f)
                .within(HANG, "a spawned boxed future's end")
                .await
                .unwrap()
                .map_err(|e| e.to_string()),
        );
    }
    assert_eq!(
        results,
        vec![Ok(10), Err("child 0 failed".to_string()), Ok(3), Ok(70)]
    );

    let svc: Box<dyn Service> = Box::new(Summer { offset: 100 });
    let svc: &'static dyn Service = Box::leak(svc);
    assert_eq!(
        tokio::spawn(svc.call(4))
            .within(HANG, "the spawned service call's end")
            .await
            .unwrap()
            .unwrap(),
        106
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r15_scope_in_spawned_async_block_is_send() {
    // The scope written inline in a spawned block, with a boxed error, async and plain
    // closures, the scope future awaited directly.
    let t1 = tokio::spawn(async move {
        let v = scope(async move |s| {
            let a = s.spawn(async { Ok::<_, BoxError>(1) });
            Ok::<_, BoxError>(a.await? + 1)
        })
        .await?;
        Ok::<_, BoxError>(v)
    });
    let t2 = tokio::spawn(async move {
        scope(move |s| async move {
            let a = s.spawn(async { Ok::<_, std::io::Error>(2) });
            Ok::<_, std::io::Error>(a.await? + 1)
        })
        .await
    });
    // A scope future pinned and raced in select! inside a spawned task.
    let t3 = tokio::spawn(async move {
        let fut = scope(async move |s| {
            let a = s.spawn(async { Ok::<_, AppError>(3) });
            Ok::<_, AppError>(a.await? + 1)
        });
        tokio::pin!(fut);
        loop {
            tokio::select! {
                r = &mut fut => break r,
                _ = yield_now() => {}
            }
        }
    });
    assert_eq!(
        t1.within(HANG, "the first spawned scope's end")
            .await
            .unwrap()
            .unwrap(),
        2
    );
    assert_eq!(
        t2.within(HANG, "the second spawned scope's end")
            .await
            .unwrap()
            .unwrap(),
        3
    );
    assert_eq!(
        t3.within(HANG, "the selected scope's end").await.unwrap(),
        Ok(4)
    );
}

// ---------------------------------------------------------------------------------------
// A scope future held across an await by a generic `async fn` inside a spawned task: the
// `Send` proof of the outer future must not need `for<'a> ScopeFuture<'a, ..>: Future`
// (rustc's higher-ranked inference). These compile only because the scope future's
// `Future` impl names `T` and `E` as projections of the body's output.
// ---------------------------------------------------------------------------------------

/// A generic async helper, as libraries have them (timing, retries, metrics).
async fn timed<F: Future>(f: F) -> F::Output {
    let start = tokio::time::Instant::now();
    let out = f.await;
    let _ = start.elapsed();
    out
}

async fn timed_lib_fn() -> Result<u32, BoxError> {
    let v = timed(scope(async move |s| {
        let a = s.spawn(async { Ok::<_, BoxError>(1) });
        Ok::<_, BoxError>(a.await?)
    }))
    .await?;
    Ok(v)
}

fn timed_in_spawned_block() -> tokio::task::JoinHandle<std::io::Result<u32>> {
    tokio::spawn(async move {
        timed(scope(move |s| {
            let a = s.spawn(async { Ok::<_, std::io::Error>(2) });
            async move { Ok::<_, std::io::Error>(a.await?) }
        }))
        .await
    })
}

fn timed_boxed() -> Pin<Box<dyn Future<Output = Result<u32, Cancelled>> + Send>> {
    Box::pin(async move {
        timed(scope(async move |s| {
            let a = s.spawn(async { Ok::<_, Cancelled>(3) });
            a.await
        }))
        .await
    })
}

fn timed_builder_collect() -> tokio::task::JoinHandle<Result<u32, Errors<BoxError>>> {
    tokio::spawn(async move {
        timed(
            Scope::builder()
                .timeout(std::time::Duration::from_secs(60))
                .collect_errors()
                .run(async move |s| {
                    let a = s.spawn(async { Ok::<_, BoxError>(4) });
                    Ok::<_, BoxError>(a.await?)
                }),
        )
        .await
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r15_generic_async_wrapper_inside_spawned_task_is_send() {
    let f = timed_lib_fn();
    assert_send_static(&f);
    assert_eq!(
        tokio::spawn(f)
            .within(HANG, "the spawned timed scope's end")
            .await
            .unwrap()
            .unwrap(),
        1
    );
    assert_eq!(
        timed_in_spawned_block()
            .within(HANG, "the timed scope's end in a spawned block")
            .await
            .unwrap()
            .unwrap(),
        2
    );
    assert_eq!(
        timed_boxed()
            .within(HANG, "the boxed timed scope's end")
            .await,
        Ok(3)
    );
    assert_eq!(
        timed_builder_collect()
            .within(HANG, "the timed collecting scope's end")
            .await
            .unwrap()
            .unwrap(),
        4
    );
}
