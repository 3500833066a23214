//! M5 (`docs/scenarios.md`): the expansions of `#[scoped]` and `scope!` use only absolute paths
//! into `::taskscope::__private` and names the user cannot see, so local modules named like
//! crates, items named like prelude names, and variables named like the macros' internals
//! change nothing.
//!
//! The waits are bounded by `common::within(common::PAUSED_HANG, ..)`, called by path: the file
//! imports nothing at its root, so no name of the test helpers is in scope where a macro
//! expands.

mod common;

/// Local modules shadowing the crates an expansion might name, and variables named like the
/// macros' internals.
mod shadow_crates {
    #![allow(dead_code)]

    mod core {}
    mod std {}
    mod tokio {}
    mod __private {}

    use ::taskscope::{Cancelled, scope, scoped};

    #[scoped(s, timeout = "1s", name = "hyg", grace = "10ms")]
    pub async fn result_fn(
        __taskscope_value: u32,
        __taskscope_cancelled: u32,
    ) -> Result<u32, Cancelled> {
        let __taskscope_fake_return = 100;
        let h = s.spawn(async move { Ok(__taskscope_value * 2) });
        Ok(h.await? + __taskscope_cancelled + __taskscope_fake_return)
    }

    #[scoped(s, timeout = "1s")]
    pub async fn option_fn(__taskscope_value: Option<u32>) -> Option<u32> {
        let __taskscope_cancelled = 1;
        let __taskscope_fake_return = 2;
        s.spawn(async { Ok(()) });
        let v = __taskscope_value?;
        Some(v + __taskscope_cancelled + __taskscope_fake_return)
    }

    #[scoped]
    pub async fn plain_fn(s: u32, __taskscope_fake_return: u32) -> u32 {
        let __taskscope_value = s;
        let __taskscope_cancelled = __taskscope_fake_return;
        __taskscope_value + __taskscope_cancelled
    }

    /// `local`: the builder's `.local()` is a method call, so nothing named `local` (or
    /// `Local`) at the call site changes it.
    #[scoped(s, local, timeout = "1s", name = "hyg_local")]
    pub async fn local_fn(__taskscope_value: Option<u32>) -> Option<u32> {
        #[allow(non_snake_case)]
        fn Local() -> u32 {
            1
        }
        let local = ::std::rc::Rc::new(__taskscope_value?);
        let h = s.spawn_local(async move {
            ::tokio::task::yield_now().await;
            Ok(*local + Local())
        });
        h.await.ok()
    }

    pub async fn local_scope_macro(local: u32) -> Result<u32, Cancelled> {
        let __taskscope_value = ::std::rc::Rc::new(local);
        scope!(local, move |t| {
            let h = t.spawn_local(async move {
                ::tokio::task::yield_now().await;
                Ok(*__taskscope_value + 1)
            });
            h.await
        })
    }

    pub async fn with_scope_macro(__taskscope_value: u32) -> Result<u32, Cancelled> {
        let s = 7;
        let __taskscope_cancelled = 1;
        let a = scope!(timeout = "1s", name = "inner", move |t| {
            let h = t.spawn(async move { Ok(__taskscope_value + s) });
            Ok::<_, Cancelled>(h.await? + __taskscope_cancelled)
        })?;
        let b = scope!(grace = "5ms", { Ok::<_, Cancelled>(s * 2) })?;
        Ok(a + b)
    }
}

/// Items named like the prelude and like the library's types, in the scope of the macro call.
mod shadow_prelude {
    #![allow(dead_code, non_camel_case_types)]

    pub struct Duration;
    pub struct Ok;
    pub struct Err;
    pub struct None;
    pub struct Some;
    pub struct Cancelled;
    pub struct ScopeBuilder;
    pub struct Scope;
    pub struct unrepresentable;
    pub type Result = ();
    pub type Option = ();

    #[::taskscope::scoped(s, timeout = "1s", grace = "1ms")]
    pub async fn result_fn(x: u32) -> ::core::result::Result<u32, ::taskscope::Cancelled> {
        let h = s.spawn(async move { ::core::result::Result::Ok(x + 1) });
        let _unit: Duration = Duration;
        let v = h.await?;
        ::core::result::Result::Ok(v)
    }

    #[::taskscope::scoped(timeout = "1s")]
    pub async fn option_fn(x: u32) -> ::core::option::Option<u32> {
        let _ = (Ok, Err, None, Some);
        ::core::option::Option::Some(x * 3)
    }

    #[::taskscope::scoped(timeout = "1s")]
    pub async fn option_timeout() -> ::core::option::Option<u32> {
        ::tokio::time::sleep(::std::time::Duration::from_secs(5)).await;
        ::core::option::Option::Some(0)
    }

    #[::taskscope::scoped]
    pub async fn plain_fn(x: u32) -> u32 {
        x + 2
    }

    pub async fn with_scope_macro() -> ::core::result::Result<u32, ::taskscope::Cancelled> {
        ::taskscope::scope!(timeout = "1s", |s| {
            let h = s.spawn(async { ::core::result::Result::Ok(5) });
            let v = h.await?;
            ::core::result::Result::Ok(v)
        })
    }
}

/// The crate renamed: `crate = ".."` points the expansion at it.
mod renamed {
    pub mod reexport {
        pub use ::taskscope as ts;
    }

    mod taskscope {}

    #[reexport::ts::scoped(s, crate = "reexport::ts")]
    pub async fn via_reexport(x: u32) -> Result<u32, reexport::ts::Cancelled> {
        let v = s.spawn(async move { Ok(x + 10) }).await?;
        Ok(v)
    }
}

fn rt() -> ::tokio::runtime::Runtime {
    ::tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap()
}

#[test]
fn m5_local_crate_named_modules_and_internal_names_do_not_interfere() {
    rt().block_on(async {
        assert_eq!(
            common::within(
                common::PAUSED_HANG,
                shadow_crates::result_fn(3, 4),
                "`result_fn`'s return"
            )
            .await,
            Ok(110)
        );
        assert_eq!(
            common::within(
                common::PAUSED_HANG,
                shadow_crates::option_fn(Some(10)),
                "`option_fn`'s return"
            )
            .await,
            Some(13)
        );
        assert_eq!(
            common::within(
                common::PAUSED_HANG,
                shadow_crates::option_fn(None),
                "`option_fn`'s return after `?` on `None`"
            )
            .await,
            None
        );
        assert_eq!(
            common::within(
                common::PAUSED_HANG,
                shadow_crates::plain_fn(5, 6),
                "`plain_fn`'s return"
            )
            .await,
            11
        );
        assert_eq!(
            common::within(
                common::PAUSED_HANG,
                shadow_crates::with_scope_macro(1),
                "`with_scope_macro`'s return"
            )
            .await,
            Ok(9 + 14)
        );
        assert_eq!(
            common::within(
                common::PAUSED_HANG,
                shadow_crates::local_fn(Some(2)),
                "`local_fn`'s return"
            )
            .await,
            Some(3)
        );
        assert_eq!(
            common::within(
                common::PAUSED_HANG,
                shadow_crates::local_fn(None),
                "`local_fn`'s return after `?` on `None`"
            )
            .await,
            None
        );
        assert_eq!(
            common::within(
                common::PAUSED_HANG,
                shadow_crates::local_scope_macro(4),
                "`local_scope_macro`'s return"
            )
            .await,
            Ok(5)
        );
    });
}

#[test]
fn m5_prelude_and_library_names_shadowed_at_the_call_site() {
    rt().block_on(async {
        assert_eq!(
            common::within(
                common::PAUSED_HANG,
                shadow_prelude::result_fn(1),
                "`result_fn`'s return"
            )
            .await,
            Ok(2)
        );
        assert_eq!(
            common::within(
                common::PAUSED_HANG,
                shadow_prelude::option_fn(2),
                "`option_fn`'s return"
            )
            .await,
            Some(6)
        );
        let start = ::tokio::time::Instant::now();
        assert_eq!(
            common::within(
                common::PAUSED_HANG,
                shadow_prelude::option_timeout(),
                "`option_timeout`'s `None` at its deadline"
            )
            .await,
            None
        );
        assert_eq!(start.elapsed(), ::std::time::Duration::from_secs(1));
        assert_eq!(
            common::within(
                common::PAUSED_HANG,
                shadow_prelude::plain_fn(1),
                "`plain_fn`'s return"
            )
            .await,
            3
        );
        assert_eq!(
            common::within(
                common::PAUSED_HANG,
                shadow_prelude::with_scope_macro(),
                "`with_scope_macro`'s return"
            )
            .await,
            Ok(5)
        );
    });
}

#[test]
fn m5_renamed_crate_path() {
    rt().block_on(async {
        assert_eq!(
            common::within(
                common::PAUSED_HANG,
                renamed::via_reexport(1),
                "`via_reexport`'s return"
            )
            .await,
            Ok(11)
        );
    });
}
