//! The options both macros take: `s` (the handle), `timeout`, `deadline`, `name`, `grace`,
//! `limit`, the flags `supervise` and `local`, `crate`. Parsing collects every error instead
//! of stopping at the first.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Expr, ExprLit, Ident, Lit, LitStr, Meta, Path, Token};

use crate::duration::DurationArg;

/// Every key, for the "unknown key" error.
pub(crate) const VALID: &str = "a bare identifier to bind the scope handle (`s`), \
     `timeout = \"2s\"`, `deadline = <tokio Instant>`, `name = \"...\"`, `grace = \"100ms\"`, \
     `limit = 8`, `supervise`, `local`, `crate = \"path\"`";

/// The options that are bare keywords, never a handle's name.
const FLAGS: [&str; 2] = ["supervise", "local"];

#[derive(Default)]
pub(crate) struct Options {
    pub(crate) handle: Option<Ident>,
    pub(crate) timeout: Option<(Span, DurationArg)>,
    pub(crate) deadline: Option<(Span, Expr)>,
    pub(crate) name: Option<LitStr>,
    pub(crate) grace: Option<DurationArg>,
    pub(crate) limit: Option<Expr>,
    /// `supervise`: a child's error goes to its handle instead of failing the scope.
    pub(crate) supervise: Option<Span>,
    /// `local`: the scope's local children need not be `Send` (`ScopeBuilder::local`); its
    /// future is then `!Send`.
    pub(crate) local: Option<Span>,
    pub(crate) krate: Option<Path>,
}

/// Accumulates errors; `into_result` combines them into one.
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    pub(crate) fn push(&mut self, e: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(e),
            None => self.0 = Some(e),
        }
    }
    pub(crate) fn take(&mut self) -> Option<syn::Error> {
        self.0.take()
    }
    pub(crate) fn has_any(&self) -> bool {
        self.0.is_some()
    }
}

impl Options {
    /// The path every generated name starts with: `::taskscope::__private` by default.
    pub(crate) fn private(&self) -> TokenStream {
        match &self.krate {
            Some(path) => quote!(#path::__private),
            None => quote!(::taskscope::__private),
        }
    }

    /// No option but a name (and the crate path) and at most one time limit (`timeout` or
    /// `deadline`): nothing that needs the scope's node from the start.
    pub(crate) fn is_lazy(&self) -> bool {
        !(self.timeout.is_some() && self.deadline.is_some())
            && self.grace.is_none()
            && self.limit.is_none()
            && self.supervise.is_none()
            && self.local.is_none()
    }

    /// For a scope whose body takes no handle and whose options are `is_lazy`: the paths of
    /// the `ScopeBuilder` entry and its `_with` form, spanned at `span` (`ambient`, or
    /// `ambient_after` with a timeout, `ambient_at` with a deadline), and their leading
    /// arguments: the name (`default_name` unless a `name` was given), then the time limit.
    pub(crate) fn ambient(
        &self,
        default_name: Option<&str>,
        span: Span,
    ) -> (TokenStream, TokenStream, TokenStream) {
        let private = self.private();
        let name = match (&self.name, default_name) {
            (Some(n), _) => quote!(#private::Some(&#n)),
            (None, Some(n)) => quote!(#private::Some(&#n)),
            (None, None) => quote!(#private::None),
        };
        let (entry, args) = match (&self.timeout, &self.deadline) {
            (Some((_, t)), _) => {
                let t = t.to_tokens(&private);
                ("ambient_after", quote!(#name, #t))
            }
            (None, Some((_, d))) => ("ambient_at", quote!(#name, #d)),
            (None, None) => ("ambient", name),
        };
        let run = Ident::new(entry, span);
        let run_with = Ident::new(&format!("{entry}_with"), span);
        (
            quote_spanned!(span=> #private::ScopeBuilder::#run),
            quote_spanned!(span=> #private::ScopeBuilder::#run_with),
            args,
        )
    }

    /// `true` if the scope can end by its own deadline.
    pub(crate) fn has_deadline(&self) -> bool {
        self.timeout.is_some() || self.deadline.is_some()
    }

    /// `scope_future.await`. With `local`, a block whose `.await` carries that option's
    /// span: the scope future is `!Send` because of it, and rustc's "future is not `Send` as it
    /// awaits another future which is not `Send`" then points at `local` instead of the whole
    /// attribute or `scope!` call (an await on a call spanned across the macro input is shown
    /// at the macro call).
    pub(crate) fn await_scope(&self, scope_future: TokenStream) -> TokenStream {
        match self.local {
            Some(span) => {
                let f = Ident::new("__taskscope_scope", Span::mixed_site().located_at(span));
                let awaited = quote_spanned!(span=> #f.await);
                quote!({
                    let #f = #scope_future;
                    #awaited
                })
            }
            None => quote!(#scope_future.await),
        }
    }

    /// Input: `ScopeBuilder::new()`. Output: the same with `.name(..)`, `.timeout(..)`,
    /// `.deadline(..)`, `.grace(..)` and `.limit(..)` calls for the options given, then the
    /// flavor: `.supervise()` or `.local()` (at most one of them; `add` refuses both).
    pub(crate) fn builder(&self, default_name: Option<&str>) -> TokenStream {
        let private = self.private();
        let mut b = quote!(#private::ScopeBuilder::new());
        match (&self.name, default_name) {
            (Some(n), _) => b = quote!(#b.name(#n)),
            (None, Some(n)) => b = quote!(#b.name(#n)),
            (None, None) => {}
        }
        if let Some((_, t)) = &self.timeout {
            let t = t.to_tokens(&private);
            b = quote!(#b.timeout(#t));
        }
        if let Some((_, d)) = &self.deadline {
            b = quote!(#b.deadline(#d));
        }
        if let Some(g) = &self.grace {
            let g = g.to_tokens(&private);
            b = quote!(#b.grace(#g));
        }
        if let Some(l) = &self.limit {
            b = quote!(#b.limit(#l));
        }
        if self.supervise.is_some() {
            b = quote!(#b.supervise());
        }
        if self.local.is_some() {
            b = quote!(#b.local());
        }
        b
    }

    /// Adds one `key = value` or bare-identifier option, reporting duplicates and unknown
    /// keys on their own tokens.
    pub(crate) fn add(&mut self, meta: Meta, errors: &mut Errors) {
        match meta {
            Meta::Path(path) => match path.get_ident() {
                Some(ident) if ident == "supervise" => {
                    if self.supervise.is_some() {
                        errors.push(syn::Error::new_spanned(
                            ident,
                            "`supervise` is given twice; give it once",
                        ));
                    } else if self.local.is_some() {
                        errors.push(local_and_supervise(ident, "supervise", "local"));
                    } else {
                        self.supervise = Some(ident.span());
                    }
                }
                Some(ident) if ident == "local" => {
                    if self.local.is_some() {
                        errors.push(syn::Error::new_spanned(
                            ident,
                            "`local` is given twice; give it once",
                        ));
                    } else if self.supervise.is_some() {
                        errors.push(local_and_supervise(ident, "local", "supervise"));
                    } else {
                        self.local = Some(ident.span());
                    }
                }
                Some(ident) if self.handle.is_none() => self.handle = Some(ident.clone()),
                Some(ident) => errors.push(syn::Error::new_spanned(
                    ident,
                    "the scope handle is named twice; give one identifier, e.g. `#[scoped(s)]`",
                )),
                None => errors.push(unknown(&path)),
            },
            Meta::NameValue(nv) => {
                let key = nv.path.get_ident().map(|i| i.to_string());
                let span = syn::spanned::Spanned::span(&nv.path);
                let dup = |what: &str| {
                    syn::Error::new(span, format!("`{what}` is given twice; give it once"))
                };
                match key.as_deref() {
                    Some(flag) if FLAGS.contains(&flag) => errors.push(flag_with_value(flag, &nv)),
                    Some("timeout") if self.timeout.is_some() => errors.push(dup("timeout")),
                    Some("timeout") => match DurationArg::from_expr(nv.value) {
                        Ok(d) => self.timeout = Some((span, d)),
                        Err(e) => errors.push(e),
                    },
                    Some("grace") if self.grace.is_some() => errors.push(dup("grace")),
                    Some("grace") => match DurationArg::from_expr(nv.value) {
                        Ok(d) => self.grace = Some(d),
                        Err(e) => errors.push(e),
                    },
                    Some("deadline") if self.deadline.is_some() => errors.push(dup("deadline")),
                    Some("deadline") => self.deadline = Some((span, nv.value)),
                    Some("name") if self.name.is_some() => errors.push(dup("name")),
                    Some("name") => match string(&nv.value) {
                        Some(s) => self.name = Some(s),
                        None => errors.push(syn::Error::new_spanned(
                            &nv.value,
                            "`name` takes a string literal: `name = \"fetch\"`",
                        )),
                    },
                    Some("limit") if self.limit.is_some() => errors.push(dup("limit")),
                    Some("limit") => match &nv.value {
                        Expr::Lit(ExprLit {
                            lit: Lit::Int(i), ..
                        }) if i.base10_parse::<usize>().map_or(true, |n| n == 0) => {
                            errors.push(syn::Error::new_spanned(
                                i,
                                "`limit` is how many children may run at once: a number of \
                                 at least 1, e.g. `limit = 8`",
                            ));
                        }
                        Expr::Lit(ExprLit { lit, .. }) if !matches!(lit, Lit::Int(_)) => {
                            errors.push(syn::Error::new_spanned(
                                lit,
                                "`limit` takes a number (`limit = 8`) or an expression of type \
                                 `usize`",
                            ));
                        }
                        _ => self.limit = Some(nv.value),
                    },
                    Some("crate") if self.krate.is_some() => errors.push(dup("crate")),
                    Some("crate") => match string(&nv.value).map(|s| s.parse::<Path>()) {
                        Some(Ok(p)) => self.krate = Some(p),
                        _ => errors.push(syn::Error::new_spanned(
                            &nv.value,
                            "`crate` takes the path of the taskscope crate as a string: \
                             `crate = \"my_reexport::taskscope\"`",
                        )),
                    },
                    _ => errors.push(unknown(&nv.path)),
                }
            }
            Meta::List(list) => match list.path.get_ident().map(|i| i.to_string()) {
                Some(flag) if FLAGS.contains(&flag.as_str()) => {
                    errors.push(flag_with_value(&flag, &list));
                }
                _ => errors.push(syn::Error::new_spanned(
                    list,
                    format!("unexpected list; the options are: {VALID}"),
                )),
            },
        }
    }
}

fn string(e: &Expr) -> Option<LitStr> {
    match e {
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => Some(s.clone()),
        _ => None,
    }
}

/// `local = true`, `supervise(..)`: a flag given a value.
fn flag_with_value(flag: &str, tokens: impl quote::ToTokens) -> syn::Error {
    syn::Error::new_spanned(
        tokens,
        format!("`{flag}` is a flag and takes no value: write just `{flag}`"),
    )
}

/// `local` and `supervise` both choose the scope's flavor: the builder has no scope that is
/// both (`ScopeBuilder::local` and `ScopeBuilder::supervise` each take a default scope).
fn local_and_supervise(second: &Ident, this: &str, other: &str) -> syn::Error {
    syn::Error::new_spanned(
        second,
        format!(
            "`{this}` cannot be combined with `{other}`: a supervising scope takes no local \
             children (`spawn_local` is for failing-fast scopes), so there is no scope that \
             is both; nest a `scope!(local, |l| {{ .. }})` in the supervising scope's body for \
             the `!Send` children"
        ),
    )
}

fn unknown(path: &Path) -> syn::Error {
    let shown = quote!(#path).to_string().replace(' ', "");
    syn::Error::new_spanned(
        path,
        format!("unknown option `{shown}`; the options are: {VALID}"),
    )
}

/// The options of `#[scoped(..)]`: a comma-separated list.
pub(crate) struct AttrOptions(pub(crate) Punctuated<Meta, Token![,]>);

impl Parse for AttrOptions {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        Ok(AttrOptions(Punctuated::parse_terminated(input)?))
    }
}

#[cfg(test)]
mod tests {
    use proc_macro2::TokenStream;
    use quote::quote;

    use crate::test_util::compile_errors;

    /// The errors of `#[scoped(<attr>)]` on a function any option fits.
    fn errors(attr: TokenStream) -> Vec<String> {
        compile_errors(&crate::scoped::expand(
            attr,
            quote!(
                async fn f() -> Result<(), E> {
                    Ok(())
                }
            ),
        ))
    }

    #[test]
    fn a_repeated_option_is_an_error() {
        for (key, twice) in [
            ("timeout", quote!(timeout = "1s", timeout = "2s")),
            ("grace", quote!(grace = "1s", grace = "2s")),
            ("deadline", quote!(deadline = a, deadline = b)),
            ("name", quote!(name = "a", name = "b")),
            ("limit", quote!(s, limit = 1, limit = 2)),
            ("crate", quote!(crate = "a", crate = "b")),
        ] {
            assert_eq!(
                errors(twice),
                [format!("`{key}` is given twice; give it once")],
                "{key}"
            );
        }
    }

    #[test]
    fn a_flag_given_a_value_is_an_error() {
        for (flag, given) in [
            ("local", quote!(local = true)),
            ("supervise", quote!(s, supervise = 1)),
            ("local", quote!(local(true))),
            ("supervise", quote!(supervise())),
        ] {
            assert_eq!(
                errors(given.clone()),
                [format!(
                    "`{flag}` is a flag and takes no value: write just `{flag}`"
                )],
                "{given}"
            );
        }
    }

    #[test]
    fn an_option_given_a_list_is_an_error() {
        for given in [quote!(timeout("2s")), quote!(limit(8))] {
            assert_eq!(
                errors(given.clone()),
                [format!(
                    "unexpected list; the options are: {}",
                    super::VALID
                )],
                "{given}"
            );
        }
    }

    #[test]
    fn a_limit_of_zero_or_not_a_number_is_an_error() {
        let at_least_one = "`limit` is how many children may run at once: a number of at least \
                            1, e.g. `limit = 8`";
        assert_eq!(errors(quote!(s, limit = 0)), [at_least_one]);
        // Too large for a `usize`: not a count of children either.
        assert_eq!(
            errors(quote!(s, limit = 100000000000000000000000)),
            [at_least_one]
        );
        assert_eq!(
            errors(quote!(s, limit = "8")),
            ["`limit` takes a number (`limit = 8`) or an expression of type `usize`"]
        );
        assert_eq!(errors(quote!(s, limit = 1)), Vec::<String>::new());
        assert_eq!(errors(quote!(s, limit = n + 1)), Vec::<String>::new());
    }
}
