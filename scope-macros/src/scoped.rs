//! `#[scoped]`: parse -> validate -> expand. The signature is never rewritten; only the
//! body is wrapped.

use proc_macro2::{Delimiter, Group, Span, TokenStream, TokenTree};
use quote::{ToTokens, quote, quote_spanned};
use syn::parse::{Parse, ParseStream, Parser};
use syn::spanned::Spanned;
use syn::{Attribute, ReturnType, Signature, Token, Type, Visibility};

use crate::options::{AttrOptions, Errors, Options};

/// An `fn` item, trait method or impl method, with its body kept as raw tokens: a syntax
/// error in the body is the compiler's to report, on the original tokens, not ours.
pub(crate) struct FnItem {
    attrs: Vec<Attribute>,
    vis: Visibility,
    defaultness: Option<Token![default]>,
    sig: Signature,
    /// `None` for a trait method without a default body.
    body: Option<Group>,
}

impl Parse for FnItem {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let attrs = input.call(Attribute::parse_outer)?;
        let vis: Visibility = input.parse()?;
        let defaultness = input.parse()?;
        let sig: Signature = input.parse()?;
        let body = if input.peek(Token![;]) {
            input.parse::<Token![;]>()?;
            None
        } else {
            match input.parse::<TokenTree>()? {
                TokenTree::Group(g) if g.delimiter() == Delimiter::Brace => Some(g),
                other => return Err(syn::Error::new_spanned(other, "expected the function body")),
            }
        };
        Ok(FnItem {
            attrs,
            vis,
            defaultness,
            sig,
            body,
        })
    }
}

/// What the return type can say about a deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Returns {
    /// `Result<T, E>`: the scope's error type; a timeout fails with `E::from(Cancelled)`.
    Result,
    /// `Option<T>`: a timeout moves on with `None`.
    Option,
    /// Anything else: no timeout or deadline possible.
    Other,
}

fn classify(output: &ReturnType) -> Returns {
    let ReturnType::Type(_, ty) = output else {
        return Returns::Other;
    };
    match &**ty {
        Type::Path(p) if p.qself.is_none() => match p.path.segments.last() {
            Some(seg) if seg.ident == "Result" => Returns::Result,
            Some(seg) if seg.ident == "Option" => Returns::Option,
            _ => Returns::Other,
        },
        _ => Returns::Other,
    }
}

/// The `E` of a return type spelled `Result<T, E>` (not an alias such as `io::Result<T>`).
fn error_type(output: &ReturnType) -> Option<&Type> {
    let ReturnType::Type(_, ty) = output else {
        return None;
    };
    let Type::Path(p) = &**ty else { return None };
    let seg = p.path.segments.last()?;
    let syn::PathArguments::AngleBracketed(args) = &seg.arguments else {
        return None;
    };
    let mut types = args.args.iter().filter_map(|a| match a {
        syn::GenericArgument::Type(t) => Some(t),
        _ => None,
    });
    let (_ok, err) = (types.next()?, types.next()?);
    types.next().is_none().then_some(err)
}

fn contains_impl(tokens: TokenStream) -> bool {
    tokens.into_iter().any(|tt| match tt {
        TokenTree::Ident(i) => i == "impl",
        TokenTree::Group(g) => contains_impl(g.stream()),
        _ => false,
    })
}

/// The entry point. On an error in the options, the function is still expanded with the
/// options that were valid (tokio-macros does the same with a default configuration), next
/// to the errors: a body that uses the scope handle then type-checks as it will once the
/// option is fixed, so the error about the option is the only one. If the item itself
/// cannot be expanded (not an `async fn`, no body, not a function), it is emitted
/// unchanged next to the errors, so the rest of the program (and the IDE) still sees it.
pub(crate) fn expand(attr: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let mut options = Options::default();
    match AttrOptions::parse.parse2(attr) {
        Ok(AttrOptions(metas)) => {
            for meta in metas {
                options.add(meta, &mut errors);
            }
        }
        Err(e) => errors.push(e),
    }
    let parsed = match syn::parse2::<FnItem>(item.clone()) {
        Ok(f) => f,
        Err(e) => {
            errors.push(e);
            return with_errors(item, errors);
        }
    };
    validate(&parsed, &mut options, &mut errors);
    if !errors.has_any() {
        return expand_fn(parsed, &options, false);
    }
    if parsed.sig.asyncness.is_none() || parsed.body.is_none() {
        return with_errors(item, errors);
    }
    with_errors(expand_fn(parsed, &options, true), errors)
}

fn with_errors(item: TokenStream, mut errors: Errors) -> TokenStream {
    let errors = errors.take().map(|e| e.to_compile_error());
    quote!(#item #errors)
}

/// Checks the item against the options. An option the return type cannot honour (a
/// timeout on a function that cannot say "timed out") is reported and dropped.
fn validate(f: &FnItem, options: &mut Options, errors: &mut Errors) {
    if f.sig.asyncness.is_none() {
        errors.push(syn::Error::new_spanned(
            f.sig.fn_token,
            format!(
                "#[scoped] wraps the body of an `async fn` in a scope; make it `async fn {}`",
                f.sig.ident
            ),
        ));
    }
    if f.body.is_none() {
        errors.push(syn::Error::new_spanned(
            &f.sig,
            "#[scoped] needs a body to wrap; put it on a method with a default body or on the \
             impl's method",
        ));
    }
    if options.has_deadline() && classify(&f.sig.output) == Returns::Other {
        let what = match &f.sig.output {
            ReturnType::Default => "`()`".to_owned(),
            ReturnType::Type(_, ty) => format!("`{}`", ty.to_token_stream()),
        };
        let span = match &f.sig.output {
            ReturnType::Default => f.sig.ident.span(),
            ReturnType::Type(_, ty) => ty.span(),
        };
        errors.push(syn::Error::new(
            span,
            format!(
                "a timeout or deadline needs a return type that can say \"timed out\": \
                 `Result<T, E>` with `E: From<taskscope::Cancelled>` (the timeout is an error) \
                 or `Option<T>` (the timeout moves on with `None`); `{}` returns {what}",
                f.sig.ident
            ),
        ));
        options.timeout = None;
        options.deadline = None;
    }
}

/// Input:
/// ```text
/// #[scoped(s, timeout = "2s")]
/// async fn fetch(id: u32) -> Result<Page, Error> { body }
/// ```
/// Output:
/// ```text
/// async fn fetch(id: u32) -> Result<Page, Error> {
///     ::taskscope::__private::ScopeBuilder::run(
///         ::taskscope::__private::ScopeBuilder::new().name("fetch").timeout(..),
///         async move |s| -> Result<Page, Error> { body },
///     )
///     .await
/// }
/// ```
/// Without a handle and with no option but a name and at most one time limit (`#[scoped]`,
/// `#[scoped(timeout = "2s")]`): `ScopeBuilder::ambient(Some(&"fetch"), async move || ..)`
/// (`ambient_after(Some(&"fetch"), <duration>, ..)`, `ambient_at(.., <deadline>, ..)`), a
/// scope that builds its node only when something needs it.
/// `Option<T>` and other return types run the body in an inner `async move` block (so
/// `return` still leaves only the body) under a scope whose error type is `Cancelled`.
/// With `local`, the builder ends in `.local()` and the scope future is bound before it is
/// awaited (`Options::await_scope`), so a `!Send` error points at the `local` option.
///
/// `after_errors`: expanded next to errors about the options; a handle the body does not
/// use is then not warned about (the warning would only add noise to the error).
fn expand_fn(f: FnItem, options: &Options, after_errors: bool) -> TokenStream {
    let FnItem {
        attrs,
        vis,
        defaultness,
        sig,
        body,
    } = f;
    let Some(body) = body else {
        return TokenStream::new();
    };
    let private = options.private();
    let name = sig.ident.to_string();
    let ret_span = match &sig.output {
        ReturnType::Default => sig.ident.span(),
        ReturnType::Type(_, ty) => ty.span(),
    };
    let ret_ty = match &sig.output {
        ReturnType::Default => quote!(()),
        ReturnType::Type(_, ty) => ty.to_token_stream(),
    };
    let nameable = !contains_impl(ret_ty.clone());
    // What runs the scope, its first arguments and the closure's head. Without a handle and
    // with no option but a name and at most one time limit (`Options::is_lazy`), the body
    // takes no `Scope` and the scope builds its node only when something needs it
    // (`ScopeBuilder::ambient` and its timed forms); otherwise the builder's `run`.
    let (run, run_with, first, head) = match &options.handle {
        None if options.is_lazy() => {
            let (run, run_with, name_arg) = options.ambient(Some(&name), ret_span);
            (run, run_with, name_arg, quote!(async move ||))
        }
        handle => {
            let head = match handle {
                Some(h) if after_errors => quote!(async move |#[allow(unused_variables)] #h|),
                Some(h) => quote!(async move |#h|),
                None => quote!(async move |_|),
            };
            (
                quote_spanned!(ret_span=> #private::ScopeBuilder::run),
                quote_spanned!(ret_span=> #private::ScopeBuilder::run_with),
                options.builder(Some(&name)),
                head,
            )
        }
    };
    let new_body = match classify(&sig.output) {
        Returns::Result => {
            let annotation = if nameable {
                quote!(-> #ret_ty)
            } else {
                TokenStream::new()
            };
            match error_type(&sig.output) {
                // `Result<T, E>` spelled out: the conversion from `Cancelled` is named on the
                // user's `E`, so a missing `From<Cancelled>` is reported there.
                Some(e) => {
                    let from = quote_spanned!(e.span()=>
                        <#e as #private::From<#private::Cancelled>>::from
                    );
                    options.await_scope(quote! {
                        #run_with(#first, #head #annotation #body, #from)
                    })
                }
                None => options.await_scope(quote! {
                    #run(#first, #head #annotation #body)
                }),
            }
        }
        kind => {
            let inner = inner_block(&body, &ret_ty, nameable);
            let value = syn::Ident::new("__taskscope_value", Span::mixed_site());
            let cancelled = syn::Ident::new("__taskscope_cancelled", Span::mixed_site());
            let on_cancel = match kind {
                Returns::Option => quote!({
                    let _ = #cancelled;
                    #private::None
                }),
                _ => quote!(#private::unrepresentable(#cancelled, #name)),
            };
            let scope = options.await_scope(quote! {
                #run(
                    #first,
                    #head #private::Ok::<_, #private::Cancelled>(#inner.await),
                )
            });
            quote! {
                match #scope {
                    #private::Ok(#value) => #value,
                    #private::Err(#cancelled) => #on_cancel,
                }
            }
        }
    };
    let brace = body.delim_span().join();
    let mut wrapped = Group::new(Delimiter::Brace, new_body);
    wrapped.set_span(brace);
    quote! {
        #(#attrs)*
        #vis #defaultness #sig #wrapped
    }
}

/// `async move { <fake return edge> stmts }`: the fake return edge (never taken) tells type
/// inference the block's output type, so `?` in the body converts into the function's
/// return type as it would in the function itself (tracing-attributes does the same).
fn inner_block(body: &Group, ret_ty: &TokenStream, nameable: bool) -> TokenStream {
    let stmts = body.stream();
    let fake = if nameable {
        let ret = syn::Ident::new("__taskscope_fake_return", Span::mixed_site());
        quote! {
            #[allow(unreachable_code, clippy::diverging_sub_expression, clippy::let_unit_value)]
            if false {
                let #ret: #ret_ty = loop {};
                return #ret;
            }
        }
    } else {
        TokenStream::new()
    };
    let mut block = Group::new(Delimiter::Brace, quote!(#fake #stmts));
    block.set_span(body.span());
    quote!(async move #block)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::compile_errors;

    fn errors(attr: TokenStream, item: TokenStream) -> Vec<String> {
        compile_errors(&expand(attr, item))
    }

    fn no_time_limit_on(function: &str, returns: &str) -> String {
        format!(
            "a timeout or deadline needs a return type that can say \"timed out\": \
             `Result<T, E>` with `E: From<taskscope::Cancelled>` (the timeout is an error) \
             or `Option<T>` (the timeout moves on with `None`); `{function}` returns {returns}"
        )
    }

    #[test]
    fn a_timeout_or_a_deadline_on_a_plain_return_type_is_an_error() {
        assert_eq!(
            errors(
                quote!(timeout = "2s"),
                quote!(
                    async fn f() -> u32 {
                        1
                    }
                )
            ),
            [no_time_limit_on("f", "`u32`")]
        );
        assert_eq!(
            errors(
                quote!(deadline = at),
                quote!(
                    async fn g() {}
                )
            ),
            [no_time_limit_on("g", "`()`")]
        );
        assert_eq!(
            errors(
                quote!(s, deadline = at),
                quote!(
                    async fn h() -> Result<u32, E> {
                        Ok(1)
                    }
                )
            ),
            Vec::<String>::new()
        );
    }

    #[test]
    fn a_qualified_path_ending_in_result_is_a_plain_return_type() {
        // `<T as Trait>::Result` names an associated type, not `core::result::Result`.
        assert_eq!(
            errors(
                quote!(timeout = "2s"),
                quote!(
                    async fn f() -> <T as Tr>::Result {
                        x
                    }
                )
            ),
            [no_time_limit_on("f", "`< T as Tr > :: Result`")]
        );
        assert_eq!(
            errors(
                quote!(timeout = "2s"),
                quote!(
                    async fn f() -> my::Result<u32, E> {
                        Ok(1)
                    }
                )
            ),
            Vec::<String>::new()
        );
    }

    #[test]
    fn a_body_that_is_not_a_block_is_an_error() {
        // rustc parses an item before it expands an attribute on it, so only a direct call of
        // the expander (an IDE's, a test's) can give it such an item: no UI test can.
        let item = quote!(async fn f() -> u32 [1]);
        let out = expand(TokenStream::new(), item.clone());
        assert_eq!(compile_errors(&out), ["expected the function body"]);
        // The item is emitted as it was, next to the error.
        assert!(out.to_string().starts_with(&item.to_string()), "{out}");
    }

    #[test]
    fn a_return_type_with_impl_trait_in_parentheses_is_written_only_in_the_signature() {
        // `impl Trait` is allowed in the return type only: the expansion must not name the
        // type anywhere else (a `let` or a closure's return type), however deep the `impl`.
        for item in [
            quote!(
                async fn f() -> Option<(impl Display, u32)> {
                    Some((1, 2))
                }
            ),
            quote!(
                async fn f() -> Result<[impl Display; 1], E> {
                    Ok([1])
                }
            ),
        ] {
            let out = expand(quote!(s), item.clone()).to_string();
            assert_eq!(out.matches("impl").count(), 1, "{out}");
        }
    }

    #[test]
    fn a_second_handle_name_is_an_error() {
        assert_eq!(
            errors(
                quote!(s, t),
                quote!(
                    async fn f() -> Result<(), E> {
                        Ok(())
                    }
                )
            ),
            ["the scope handle is named twice; give one identifier, e.g. `#[scoped(s)]`"]
        );
    }
}
