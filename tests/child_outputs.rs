//! What a spawned child may return: the scope's `Result`, another error converted before the
//! spawn, or `()` for a child that cannot fail.

mod common;

use common::{Error, HANG, Within, rt_test};
use futures_util::TryFutureExt;
use taskscope::{Cancelled, scope};

#[derive(Debug, PartialEq)]
struct DbError(u32);

impl From<DbError> for Error {
    fn from(e: DbError) -> Self {
        Error::Boom(e.0)
    }
}

async fn fetch(fail: bool) -> Result<u32, DbError> {
    if fail { Err(DbError(9)) } else { Ok(3) }
}

rt_test! {
    /// A child that cannot fail returns `()`: no `Ok(())` wrapper.
    async fn a_child_returning_unit_needs_no_ok() {
        let counter = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let r: Result<(), Cancelled> = scope(async |s| {
            for _ in 0..3 {
                let c = counter.clone();
                s.spawn(async move {
                    c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                });
            }
            let h = s.spawn(async {});
            h.await
        })
        .within(HANG, "the scope's end")
        .await;
        assert_eq!(r, Ok(()));
        assert_eq!(counter.load(std::sync::atomic::Ordering::SeqCst), 3);
    }
}

rt_test! {
    /// A child whose future has another error type converts it before the spawn, and the
    /// converted error fails the scope like any child's.
    async fn a_childs_other_error_type_converts_with_err_into() {
        let r: Result<u32, Error> = scope(async |s| {
            let ok = s.spawn(fetch(false).err_into());
            Ok(ok.await?)
        })
        .within(HANG, "the scope's end")
        .await;
        assert_eq!(r, Ok(3));
        let r: Result<u32, Error> = scope(async |s| {
            let h = s.spawn(fetch(true).err_into());
            Ok(h.await?)
        })
        .within(HANG, "the scope's end")
        .await;
        assert_eq!(r, Err(Error::Boom(9)));
    }
}

rt_test! {
    /// An async block child still takes the scope's error type by inference, and its `?`
    /// converts into it.
    async fn an_async_block_childs_question_mark_converts_into_the_scopes_error() {
        let r: Result<u32, Error> = scope(async |s| {
            let h = s.spawn(async { Ok(fetch(true).await? + 1) });
            Ok(h.await?)
        })
        .within(HANG, "the scope's end")
        .await;
        assert_eq!(r, Err(Error::Boom(9)));
    }
}
