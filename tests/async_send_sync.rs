//! Pins which public types and futures are `Send`, `Sync` and `Unpin` (tokio's
//! `async_send_sync.rs` pattern): a change of an auto trait is a compile error here.
#![allow(dead_code, clippy::diverging_sub_expression)]

mod common;

use std::rc::Rc;
use std::time::Duration;

use common::{HANG, Within};
use taskscope::*;

fn require_send<T: Send>(_: &T) {}
fn require_sync<T: Sync>(_: &T) {}
fn require_unpin<T: Unpin>(_: &T) {}

// `<T as AmbiguousIfSend<_>>::some_item()` compiles only if `T` is *not* Send (for a Send
// type both impls apply and the call is ambiguous).
trait AmbiguousIfSend<A> {
    fn some_item(&self) {}
}
impl<T: ?Sized> AmbiguousIfSend<()> for T {}
impl<T: ?Sized + Send> AmbiguousIfSend<u8> for T {}

trait AmbiguousIfSync<A> {
    fn some_item(&self) {}
}
impl<T: ?Sized> AmbiguousIfSync<()> for T {}
impl<T: ?Sized + Sync> AmbiguousIfSync<u8> for T {}

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type BoxedSend<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

#[test]
fn handles_and_values() {
    let cs = CancelScope::new();
    require_send(&cs);
    require_sync(&cs);
    let h = cs.handle();
    require_send(&h);
    require_sync(&h);
    let c = Cancelled::new(CancelReason::Explicit);
    require_send(&c);
    require_sync(&c);
    require_send(&SpawnError::Closed);
    require_sync(&SpawnError::Closed);
    let errs: Errors<std::io::Error> = Errors::from(c);
    require_send(&errs);
    require_sync(&errs);
    let b = Scope::builder().name("x");
    require_send(&b);
    require_sync(&b);
}

#[tokio::test]
async fn scope_types() {
    let r: Result<(), Cancelled> = scope(async |s| {
        require_send(&s);
        require_sync(&s);
        let h = s.handle();
        require_send(&h);
        require_sync(&h);
        let t = s.spawn(async { Ok(1u8) });
        require_send(&t);
        require_sync(&t);
        require_unpin(&t);
        // A handle to a `!Sync` (but `Send`) value is still `Send`.
        let cell = s.spawn(async { Ok(std::cell::Cell::new(1)) });
        require_send(&cell);
        let _ = t.await;
        let _ = cell.await;
        Ok(())
    })
    .within(HANG, "the scope's return after its handles resolved")
    .await;
    assert_eq!(r, Ok(()));
}

#[test]
fn futures_are_send_when_their_contents_are() {
    let f = scope(async |s| {
        s.spawn(async { Ok::<_, BoxError>(()) });
        tokio::task::yield_now().await;
        Ok::<_, BoxError>(())
    });
    require_send(&f);
    require_sync(&f);

    let f = Scope::builder()
        .timeout(Duration::from_secs(1))
        .collect_errors()
        .run(async |_s| Ok::<_, std::io::Error>(()));
    require_send(&f);

    require_send(&move_on_after(Duration::from_secs(1), async {}));
    require_send(&fail_after(Duration::from_secs(1), async {}));
    require_send(&shield(async {}));
    require_send(&CancelScope::new().run(async {}));
    require_send(&cancelled());
    require_sync(&cancelled());
    require_unpin(&cancelled());
    require_send(&checkpoint());
    require_send(&cancelable(async {}));
}

// Built in their own functions: auto traits of a coroutine are only known outside the body
// that defines it.
fn rc_scope() -> impl std::future::Future<Output = Result<(), Cancelled>> {
    scope(async |_s| {
        let rc = Rc::new(1);
        tokio::task::yield_now().await;
        drop(rc);
        Ok::<_, Cancelled>(())
    })
}

fn rc_cancel_scope() -> impl std::future::Future<Output = Result<(), Cancelled>> {
    CancelScope::new().run(async {
        let rc = Rc::new(1);
        tokio::task::yield_now().await;
        drop(rc);
    })
}

fn rc_shield() -> impl std::future::Future<Output = ()> {
    shield(async {
        let rc = Rc::new(1);
        tokio::task::yield_now().await;
        drop(rc);
    })
}

#[test]
fn futures_are_not_send_when_their_contents_are_not() {
    AmbiguousIfSend::some_item(&rc_scope());
    AmbiguousIfSend::some_item(&rc_cancel_scope());
    AmbiguousIfSend::some_item(&rc_shield());
    AmbiguousIfSync::some_item(&rc_shield());
}

/// Cancel scopes wrapped around a scope, inside a spawned (`Send + 'static`) task: the
/// output is a type parameter of `Run`, not a projection `F::Output`, so proving `Send`
/// does not go through higher-ranked inference over the scope's `'env`.
#[tokio::test]
async fn scopes_inside_cancel_scopes_in_spawned_tasks() {
    let r = tokio::spawn(async move {
        let a = move_on_after(
            Duration::from_secs(1),
            scope(async |_s| Ok::<u32, Cancelled>(4)),
        );
        let a = a.await;
        let b = fail_after(
            Duration::from_secs(1),
            scope(async move |s| {
                s.spawn(async { Ok::<_, Cancelled>(()) });
                Ok::<u32, Cancelled>(5)
            }),
        )
        .await;
        let c = shield(scope(async |_s| Ok::<u32, Cancelled>(6))).await;
        let d = CancelScope::new()
            .run(scope(async |_s| Ok::<u32, Cancelled>(7)))
            .await;
        (a, b, c, d)
    })
    .within(HANG, "the task's end with its scopes inside cancel scopes")
    .await
    .unwrap();
    assert_eq!(r, (Some(Ok(4)), Ok(Ok(5)), Ok(6), Ok(Ok(7))));

    let boxed: BoxedSend<Option<Result<u32, BoxError>>> = Box::pin(move_on_after(
        Duration::from_secs(1),
        scope(async |s| {
            s.spawn(async { Ok::<_, BoxError>(()) });
            Ok::<u32, BoxError>(8)
        }),
    ));
    assert_eq!(
        boxed
            .within(
                HANG,
                "the boxed move_on_after's return of its scope's value"
            )
            .await
            .map(|r| r.unwrap()),
        Some(8)
    );
}

/// The body as a plain closure returning an async block, in a spawned task.
#[tokio::test]
async fn closure_returning_async_block_in_spawned_task() {
    let r = tokio::spawn(async move {
        let plain = scope(|_s| async move { Ok::<u32, Cancelled>(1) }).await;
        let timed = move_on_after(
            Duration::from_secs(1),
            scope(|s| {
                s.spawn(async { Ok(()) });
                async move { Ok::<u32, Cancelled>(2) }
            }),
        )
        .await;
        (plain, timed)
    })
    .within(HANG, "the task's end with its closure-bodied scopes")
    .await
    .unwrap();
    assert_eq!(r, (Ok(1), Some(Ok(2))));
}

// ---------------------------------------------------------------------------------------
// Local children (`Scope::spawn_local`)
// ---------------------------------------------------------------------------------------

#[test]
fn default_scope_with_send_local_children_is_send_and_sync() {
    let f = scope(async |s| {
        let h = s.spawn_local(async {
            tokio::task::yield_now().await;
            Ok::<_, BoxError>(1u8)
        });
        tokio::task::yield_now().await;
        let _ = h.await?;
        Ok::<_, BoxError>(())
    });
    require_send(&f);
    require_sync(&f);

    // Borrowing local children keep it `Send` too.
    let data: Vec<u32> = (1..=3).collect();
    let f = scope(async |s| {
        let hs: Vec<_> = data
            .iter()
            .map(|x| {
                s.spawn_local(async move {
                    tokio::task::yield_now().await;
                    Ok::<_, Cancelled>(*x)
                })
            })
            .collect();
        let mut sum = 0;
        for h in hs {
            sum += h.await?;
        }
        Ok::<_, Cancelled>(sum)
    });
    require_send(&f);
    require_sync(&f);

    let f = Scope::builder().limit(2).collect_errors().run(async |s| {
        s.spawn_local(async { Ok::<_, std::io::Error>(()) });
        Ok::<_, std::io::Error>(())
    });
    require_send(&f);
    require_sync(&f);
}

/// A default scope future with `Send` local children can be `tokio::spawn`ed.
#[tokio::test]
async fn default_scope_with_local_children_in_a_spawned_task() {
    let r = tokio::spawn(async {
        let data: Vec<u32> = (1..=3).collect();
        scope(async |s| {
            let hs: Vec<_> = data
                .iter()
                .map(|x| s.spawn_local(async move { Ok::<_, Cancelled>(*x) }))
                .collect();
            let mut sum = 0;
            for h in hs {
                sum += h.await?;
            }
            Ok::<_, Cancelled>(sum)
        })
        .await
    })
    .within(HANG, "the task's end with its scope's local children")
    .await
    .unwrap();
    assert_eq!(r, Ok(6));
}

fn local_scope_with_rc_child() -> impl std::future::Future<Output = Result<(), Cancelled>> {
    Scope::builder().local().run(async |s| {
        s.spawn_local(async {
            let rc = Rc::new(1);
            tokio::task::yield_now().await;
            drop(rc);
            Ok(())
        });
        Ok::<_, Cancelled>(())
    })
}

fn local_scope_with_send_contents() -> impl std::future::Future<Output = Result<(), Cancelled>> {
    Scope::builder().local().run(async |s| {
        s.spawn_local(async { Ok(()) });
        tokio::task::yield_now().await;
        Ok::<_, Cancelled>(())
    })
}

fn local_scope_without_children() -> impl std::future::Future<Output = Result<(), Cancelled>> {
    Scope::builder()
        .local()
        .run(async |_s| Ok::<_, Cancelled>(()))
}

#[test]
fn local_scope_futures_are_not_send() {
    AmbiguousIfSend::some_item(&local_scope_with_rc_child());
    // `!Send` by kind, whatever its children hold.
    AmbiguousIfSend::some_item(&local_scope_with_send_contents());
    AmbiguousIfSend::some_item(&local_scope_without_children());
}

#[tokio::test(flavor = "current_thread")]
async fn local_scope_types() {
    let r: Result<(), Cancelled> = Scope::builder()
        .local()
        .run(async |s| {
            // A local scope's `Scope` cannot leave the thread (its queue holds `!Send`
            // children).
            AmbiguousIfSend::some_item(&s);
            let h = s.spawn_local(async { Ok(Rc::new(1u8)) });
            // A handle to a `!Send` value is `!Send`.
            AmbiguousIfSend::some_item(&h);
            let _ = h.await?;
            Ok(())
        })
        .within(HANG, "the local scope's return after its !Send child")
        .await;
    assert_eq!(r, Ok(()));
}

#[tokio::test]
async fn local_handle_is_send_sync_unpin() {
    let r: Result<(), Cancelled> = scope(async |s| {
        let h: LocalHandle<u8> = s.spawn_local(async { Ok(1u8) });
        require_send(&h);
        require_sync(&h);
        require_unpin(&h);
        assert_eq!(h.await, Ok(1));
        Ok(())
    })
    .within(HANG, "the scope's return after its local handle resolved")
    .await;
    assert_eq!(r, Ok(()));
}
