//! Expansion snapshots: the pretty-printed output of both macros for their main forms,
//! compared with `scope-macros/tests/snapshots/<name>.rs`. Run with `UPDATE_SNAPSHOTS=1` to
//! write the files instead.

use std::path::PathBuf;

use proc_macro2::TokenStream;
use quote::quote;

fn pretty_item(tokens: TokenStream) -> String {
    let file: syn::File = syn::parse2(tokens.clone())
        .unwrap_or_else(|e| panic!("the expansion is not a file: {e}\n{tokens}"));
    prettyplease::unparse(&file)
}

fn pretty_expr(tokens: TokenStream) -> String {
    let expr: syn::Expr = syn::parse2(tokens.clone())
        .unwrap_or_else(|e| panic!("the expansion is not an expression: {e}\n{tokens}"));
    pretty_item(quote!(async fn __f() { #expr }))
}

fn check(name: &str, actual: String) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(format!("{name}.rs"));
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "missing snapshot {} ({e}); run with UPDATE_SNAPSHOTS=1",
            path.display()
        )
    });
    assert!(
        expected == actual,
        "snapshot {name} differs; run with UPDATE_SNAPSHOTS=1 to update\n--- expected\n{expected}\n--- actual\n{actual}"
    );
}

fn scoped(name: &str, attr: TokenStream, item: TokenStream) {
    check(name, pretty_item(crate::scoped::expand(attr, item)));
}

fn block(name: &str, input: TokenStream) {
    check(name, pretty_expr(crate::block::expand(input)));
}

#[test]
fn scoped_plain_result() {
    scoped(
        "scoped_plain_result",
        quote!(),
        quote! {
            pub async fn fetch(id: u32) -> Result<String, Error> {
                let page = get(id).await?;
                Ok(page)
            }
        },
    );
}

#[test]
fn scoped_all_options() {
    scoped(
        "scoped_all_options",
        quote!(s, timeout = "2s", name = "x", grace = "100ms"),
        quote! {
            async fn fetch_all(ids: Vec<u32>) -> Result<Vec<u32>, Cancelled> {
                let h = s.spawn(async move { Ok(ids.len() as u32) });
                Ok(vec![h.await?])
            }
        },
    );
}

#[test]
fn scoped_option_timeout() {
    scoped(
        "scoped_option_timeout",
        quote!(s, timeout = "250ms"),
        quote! {
            async fn lookup(key: &str) -> Option<u32> {
                let v = cache(key).await?;
                Some(v)
            }
        },
    );
}

#[test]
fn scoped_plain_return_type() {
    scoped(
        "scoped_plain_return_type",
        quote!(s),
        quote! {
            async fn count(n: u32) -> u32 {
                s.spawn(async { Ok(()) });
                n + 1
            }
        },
    );
}

#[test]
fn scoped_unit_return() {
    scoped(
        "scoped_unit_return",
        quote!(),
        quote! {
            async fn tick() {
                work().await;
            }
        },
    );
}

#[test]
fn scoped_method_ref_self() {
    scoped(
        "scoped_method_ref_self",
        quote!(s, deadline = self.deadline),
        quote! {
            #[inline]
            pub(crate) async fn call<'a, T>(&'a self, arg: T) -> Result<&'a str, Error>
            where
                T: Send + 'static,
            {
                s.spawn(async move { drop(arg); Ok(()) });
                Ok(&self.name)
            }
        },
    );
}

#[test]
fn scoped_impl_trait_return() {
    scoped(
        "scoped_impl_trait_return",
        quote!(),
        quote! {
            async fn make(x: impl Display) -> Result<impl Display, Error> {
                Ok(x)
            }
        },
    );
}

#[test]
fn scoped_crate_path() {
    scoped(
        "scoped_crate_path",
        quote!(
            crate = "my_reexport::taskscope",
            timeout = Duration::from_secs(n)
        ),
        quote! {
            async fn run(n: u64) -> Result<(), Error> {
                Ok(())
            }
        },
    );
}

#[test]
fn scoped_errors() {
    scoped(
        "scoped_errors",
        quote!(timeout = "2 sec", bogus),
        quote! {
            fn not_async() -> u32 { 1 }
        },
    );
}

#[test]
fn scoped_local() {
    scoped(
        "scoped_local",
        quote!(s, local, timeout = "1s", limit = 4),
        quote! {
            async fn render(items: Vec<u32>) -> Result<u32, Error> {
                let shared = Rc::new(items);
                let h = s.spawn_local(async move {
                    yield_now().await;
                    Ok(shared.len() as u32)
                });
                Ok(h.await?)
            }
        },
    );
}

#[test]
fn scoped_local_plain_return_type() {
    scoped(
        "scoped_local_plain_return_type",
        quote!(local, s),
        quote! {
            async fn count(cell: &RefCell<u32>) -> u32 {
                s.spawn_local(async { *cell.borrow_mut() += 1; Ok(()) });
                *cell.borrow()
            }
        },
    );
}

#[test]
fn scope_closure() {
    block(
        "scope_closure",
        quote!(|s| {
            let a = s.spawn(async { Ok(1) });
            Ok::<_, Cancelled>(a.await?)
        }),
    );
}

#[test]
fn scope_move_closure_with_return_type() {
    block(
        "scope_move_closure_with_return_type",
        quote!(
            name = "work",
            grace = "1s",
            move |s| -> Result<u32, Error> {
                s.spawn(async move { Ok(()) });
                Ok(1)
            }
        ),
    );
}

#[test]
fn scope_block_with_timeout() {
    block(
        "scope_block_with_timeout",
        quote!(timeout = "1s", {
            sleep(Duration::from_secs(5)).await;
            Ok::<_, Cancelled>(())
        }),
    );
}

#[test]
fn scope_local() {
    block(
        "scope_local",
        quote!(local, name = "ui", move |s| {
            let h = s.spawn_local(async move { Ok(Rc::new(1)) });
            Ok::<_, Cancelled>(*h.await?)
        }),
    );
}

#[test]
fn scope_crate_path() {
    block(
        "scope_crate_path",
        quote!(crate = "ts", |_| { Ok::<_, ts::Cancelled>(()) }),
    );
}

/// A misspelled option: the function is still expanded (with the options that were valid)
/// next to the error, so the body's `s` resolves to the scope handle instead of being
/// reported (or flagged by an IDE) as unknown.
#[test]
fn scoped_bad_option_still_binds_the_handle() {
    let out = crate::scoped::expand(
        quote!(s, timout = "2s"),
        quote! {
            async fn fetch(id: u32) -> Result<u32, Error> {
                let child = s.spawn(async move { Ok(id) });
                child.await
            }
        },
    );
    let text = out.to_string();
    assert!(text.contains("compile_error"), "{text}");
    assert!(
        text.contains("ScopeBuilder"),
        "the function was not expanded: {text}"
    );
    check("scoped_bad_option", pretty_item(out));
}

/// `local` with `supervise`: one error, on the second of the two, and the function is still
/// expanded with the first (a scope that is both does not exist).
#[test]
fn scoped_local_and_supervise_keeps_the_first() {
    let out = crate::scoped::expand(
        quote!(s, local, supervise),
        quote! {
            async fn f() -> Result<(), Error> {
                Ok(())
            }
        },
    );
    let text = out.to_string();
    assert_eq!(text.matches("compile_error").count(), 1, "{text}");
    assert!(
        text.contains("`supervise` cannot be combined with `local`"),
        "{text}"
    );
    assert!(text.contains(". local ()"), "{text}");
    assert!(!text.contains(". supervise ()"), "{text}");
    let out = crate::block::expand(quote!(supervise, local, |s| { Ok::<_, Error>(()) }));
    let text = out.to_string();
    assert!(
        text.contains("`local` cannot be combined with `supervise`"),
        "{text}"
    );
}

/// `local` is a keyword: it is never taken for the handle's name, wherever it stands.
#[test]
fn local_is_not_a_handle_name() {
    for attr in [quote!(local), quote!(local, s), quote!(s, local)] {
        let out = crate::scoped::expand(
            attr.clone(),
            quote! {
                async fn f() -> Result<(), Error> { Ok(()) }
            },
        );
        let text = out.to_string();
        assert!(!text.contains("compile_error"), "{attr}: {text}");
        assert!(text.contains(". local ()"), "{attr}: {text}");
        let handle = if attr.to_string().contains('s') {
            "| s |"
        } else {
            "| _ |"
        };
        assert!(text.contains(handle), "{attr}: {text}");
    }
}
