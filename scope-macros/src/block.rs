//! `scope!`: an expression that runs a scope and awaits it. parse -> validate -> expand.

use proc_macro2::{Delimiter, Group, TokenStream, TokenTree};
use quote::{ToTokens, quote, quote_spanned};
use syn::parse::{Parse, ParseStream, Parser};
use syn::spanned::Spanned;
use syn::{ExprClosure, Meta, Pat, Token};

use crate::options::{Errors, Options};

/// The body: a closure taking the handle, or a block (a scope nobody spawns into).
enum Body {
    Closure(Box<ExprClosure>),
    Block(Group),
}

struct Input {
    metas: Vec<Meta>,
    body: Body,
}

impl Parse for Input {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut metas = Vec::new();
        loop {
            if input.is_empty() {
                return Err(input.error(
                    "expected the scope's body: `scope!(|s| { .. })`, \
                     `scope!(timeout = \"2s\", |s| { .. })` or `scope!({ .. })`",
                ));
            }
            // `async |s|` too, to say that the macro makes the closure async itself.
            if input.peek(Token![|])
                || input.peek(Token![||])
                || input.peek(Token![move])
                || input.peek(Token![async])
            {
                let closure: ExprClosure = input.parse()?;
                input.parse::<Option<Token![,]>>()?;
                return Ok(Input {
                    metas,
                    body: Body::Closure(Box::new(closure)),
                });
            }
            if input.peek(syn::token::Brace) {
                let TokenTree::Group(g) = input.parse::<TokenTree>()? else {
                    unreachable!("peeked a brace group");
                };
                input.parse::<Option<Token![,]>>()?;
                return Ok(Input {
                    metas,
                    body: Body::Block(g),
                });
            }
            metas.push(input.parse()?);
            // Options and no body (`scope!(timeout = "1s")`): the error at the loop's top.
            if !input.is_empty() {
                input.parse::<Token![,]>()?;
            }
        }
    }
}

/// Input: `scope!(timeout = "1s", move |s| -> R { body })` (or `scope!({ body })`).
/// Output:
/// ```text
/// ::taskscope::__private::ScopeBuilder::run(
///     ::taskscope::__private::ScopeBuilder::new().timeout(..),
///     async move |s| -> R { body },
/// )
/// .await
/// ```
/// `scope!({ body })` (no option but a name and at most one time limit):
/// `ScopeBuilder::ambient(None, async || { body })` (`ambient_after(None, <duration>, ..)`
/// with a `timeout`, `ambient_at` with a `deadline`).
/// With `local`: `{ let __taskscope_scope = run(new().local(), ..); __taskscope_scope.await }`.
pub(crate) fn expand(input: TokenStream) -> TokenStream {
    let parsed = match Input::parse.parse2(input) {
        Ok(p) => p,
        Err(e) => return errors_as_expr(e),
    };
    let mut errors = Errors::default();
    let mut options = Options::default();
    for meta in parsed.metas {
        options.add(meta, &mut errors);
    }
    if let Some(h) = &options.handle {
        errors.push(syn::Error::new_spanned(
            h,
            "`scope!` takes the handle as the closure's parameter: `scope!(|s| { .. })`",
        ));
    }
    let (closure_head, body) = match &parsed.body {
        Body::Closure(c) => (Some(closure_head(c, &mut errors)), c.body.to_token_stream()),
        Body::Block(g) => (None, g.to_token_stream()),
    };
    check_jumps(body.clone(), &mut Vec::new(), &mut errors);
    if let Some(e) = errors.take() {
        return errors_as_expr(e);
    }
    let private = options.private();
    let span = body.span();
    // Without a closure and with no option but a name and at most one time limit, the body
    // takes no `Scope` and the scope builds its node only when something needs it
    // (`ScopeBuilder::ambient` and its timed forms).
    let (run, first, head) = match closure_head {
        None if options.is_lazy() => {
            let (run, _, name) = options.ambient(None, span);
            (run, name, quote!(async ||))
        }
        head => (
            quote_spanned!(span=> #private::ScopeBuilder::run),
            options.builder(None),
            head.unwrap_or_else(|| quote!(async |_|)),
        ),
    };
    options.await_scope(quote!(#run(#first, #head #body)))
}

/// Several `compile_error!`s in expression position must sit in a block.
fn errors_as_expr(e: syn::Error) -> TokenStream {
    let e = e.to_compile_error();
    quote!({ #e })
}

/// `move |s| -> R` of the user's closure, turned into `async move |s| -> R`.
fn closure_head(c: &ExprClosure, errors: &mut Errors) -> TokenStream {
    if let Some(a) = &c.asyncness {
        errors.push(syn::Error::new_spanned(
            a,
            "`scope!` makes the closure async itself; write `|s| { .. }`",
        ));
    }
    if c.inputs.len() > 1 {
        errors.push(syn::Error::new_spanned(
            &c.inputs,
            "the scope's closure takes one parameter, the scope handle: `|s| { .. }`",
        ));
    }
    let inputs = &c.inputs;
    let movability = &c.capture;
    let output = &c.output;
    for input in inputs {
        if !matches!(input, Pat::Ident(_) | Pat::Wild(_) | Pat::Type(_)) {
            errors.push(syn::Error::new_spanned(
                input,
                "the scope's closure parameter is the handle: a plain name such as `s`",
            ));
        }
    }
    let inputs = if inputs.is_empty() {
        quote!(_)
    } else {
        quote!(#inputs)
    };
    quote!(async #movability |#inputs| #output)
}

/// Reports `break`/`continue` that would leave the `scope!` body for a loop outside it.
///
/// The body runs as a closure (the scope must wait for its children before control goes on),
/// so it cannot jump to an enclosing loop. Only jumps the macro can see for certain are
/// reported: inside loops, closures and async blocks of the body they are left alone.
fn check_jumps(tokens: TokenStream, labels: &mut Vec<String>, errors: &mut Errors) {
    let mut skip_next_group = false;
    let mut prev_label: Option<String> = None;
    let mut iter = tokens.into_iter().peekable();
    while let Some(tt) = iter.next() {
        match &tt {
            TokenTree::Ident(i) if i == "loop" || i == "while" || i == "for" => {
                skip_next_group = true;
                if let Some(l) = prev_label.take() {
                    labels.push(l);
                }
            }
            TokenTree::Ident(i) if i == "async" => skip_next_group = true,
            TokenTree::Punct(p) if p.as_char() == '|' => skip_next_group = true,
            TokenTree::Punct(p) if p.as_char() == '\'' => {
                // A lifetime or label: `'name`, a label definition if `:` follows.
                if let Some(TokenTree::Ident(name)) = iter.peek() {
                    let name = format!("'{name}");
                    iter.next();
                    if matches!(iter.peek(), Some(TokenTree::Punct(c)) if c.as_char() == ':') {
                        prev_label = Some(name.clone());
                        labels.push(name);
                    }
                }
            }
            TokenTree::Ident(i) if i == "break" || i == "continue" => {
                let target = match iter.peek() {
                    Some(TokenTree::Punct(p)) if p.as_char() == '\'' => {
                        let mut look = iter.clone();
                        look.next();
                        match look.next() {
                            Some(TokenTree::Ident(name)) => Some(format!("'{name}")),
                            _ => None,
                        }
                    }
                    _ => None,
                };
                let inside = match &target {
                    Some(label) => labels.contains(label),
                    None => false,
                };
                if !inside {
                    errors.push(syn::Error::new(
                        i.span(),
                        format!(
                            "`{i}` cannot leave a `scope!` body: the body runs as a closure, \
                             because the scope must wait for its children before control moves \
                             on; return a value from the body and `{i}` after the `scope!`"
                        ),
                    ));
                }
            }
            TokenTree::Group(g) => {
                let loop_body = g.delimiter() == Delimiter::Brace && skip_next_group;
                if g.delimiter() == Delimiter::Brace {
                    skip_next_group = false;
                }
                if !loop_body {
                    check_jumps(g.stream(), labels, errors);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jumps(src: &str) -> usize {
        let mut errors = Errors::default();
        check_jumps(src.parse().unwrap(), &mut Vec::new(), &mut errors);
        errors.take().map_or(0, |e| e.into_iter().count())
    }

    #[test]
    fn jumps_out_are_found_jumps_inside_are_not() {
        assert_eq!(jumps("{ break; }"), 1);
        assert_eq!(jumps("{ if x { continue; } }"), 1);
        assert_eq!(jumps("{ break 'outer; }"), 1);
        assert_eq!(jumps("{ loop { break; } }"), 0);
        assert_eq!(jumps("{ for i in 0..3 { if i > 1 { continue; } } }"), 0);
        assert_eq!(jumps("{ 'a: { break 'a; } }"), 0);
        assert_eq!(jumps("{ 'l: loop { loop { break 'l; } } }"), 0);
        assert_eq!(jumps("{ let f = || { break; }; }"), 0);
        assert_eq!(jumps("{ async { break; } }"), 0);
        assert_eq!(jumps("{ while a { break; } match x { _ => {} } }"), 0);
    }

    #[test]
    fn a_jump_after_other_punctuation_is_found() {
        // `=`, `;` and `(..)` before the jump: only `|` starts a closure, only `'` a label.
        assert_eq!(jumps("{ if a == b { break; } }"), 1);
        assert_eq!(jumps("{ f(); break; }"), 1);
        assert_eq!(jumps("{ let x = 1; { continue; } }"), 1);
    }

    #[test]
    fn a_jump_in_a_closure_passed_to_a_call_is_left_alone() {
        assert_eq!(jumps("{ f(|| { break; }) }"), 0);
        assert_eq!(
            jumps("{ v.iter().for_each(|x| { if *x { continue; } }) }"),
            0
        );
    }

    #[test]
    fn a_jump_in_a_loop_whose_head_has_parentheses_is_left_alone() {
        assert_eq!(jumps("{ for i in range(0, 3) { break; } }"), 0);
        assert_eq!(jumps("{ while ready(x) { continue; } }"), 0);
    }

    #[test]
    fn an_unlabeled_break_in_a_labeled_block_is_found() {
        // The name after `break;` is not its label, even when a block has that label.
        assert_eq!(jumps("{ 'a: { break; a } }"), 1);
        assert_eq!(jumps("{ 'a: { break 'a; } }"), 0);
    }

    fn errors(input: TokenStream) -> Vec<String> {
        crate::test_util::compile_errors(&expand(input))
    }

    #[test]
    fn a_closure_without_a_parameter_is_accepted() {
        let out = expand(quote!(|| { Ok::<_, Cancelled>(1) }));
        assert_eq!(crate::test_util::compile_errors(&out), Vec::<String>::new());
        // The closure gets the handle as `_`.
        assert!(out.to_string().contains("async | _ |"), "{out}");
    }

    #[test]
    fn an_async_closure_is_an_error() {
        for input in [
            quote!(async |s| { Ok::<_, Cancelled>(1) }),
            quote!(async move |s| { Ok::<_, Cancelled>(1) }),
            quote!(name = "x", async |s| { Ok::<_, Cancelled>(1) }),
        ] {
            assert_eq!(
                errors(input.clone()),
                ["`scope!` makes the closure async itself; write `|s| { .. }`"],
                "{input}"
            );
        }
    }

    #[test]
    fn a_closure_parameter_that_is_a_pattern_is_an_error() {
        assert_eq!(
            errors(quote!(|(a, b)| { Ok::<_, Cancelled>(1) })),
            ["the scope's closure parameter is the handle: a plain name such as `s`"]
        );
    }

    #[test]
    fn a_handle_among_the_options_is_an_error() {
        assert_eq!(
            errors(quote!(s, |t| { Ok::<_, Cancelled>(1) })),
            ["`scope!` takes the handle as the closure's parameter: `scope!(|s| { .. })`"]
        );
    }

    #[test]
    fn a_scope_without_a_body_is_an_error() {
        let no_body = "unexpected end of input, expected the scope's body: `scope!(|s| { .. })`, \
                       `scope!(timeout = \"2s\", |s| { .. })` or `scope!({ .. })`";
        for input in [
            quote!(),
            quote!(timeout = "1s"),
            quote!(timeout = "1s", name = "x",),
        ] {
            assert_eq!(errors(input.clone()), [no_body], "{input}");
        }
        assert_eq!(
            errors(quote!(timeout = "1s" name = "x", {})),
            ["expected `,`"]
        );
    }

    #[test]
    fn a_closure_with_two_parameters_is_an_error() {
        assert_eq!(
            errors(quote!(|s, t| { Ok::<_, Cancelled>(1) })),
            ["the scope's closure takes one parameter, the scope handle: `|s| { .. }`"]
        );
    }
}
