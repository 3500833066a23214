//! Helpers of the unit tests: what an expansion reports.

use proc_macro2::{TokenStream, TokenTree};

/// The messages of the `compile_error!`s in `tokens`, in order, wherever they are nested.
pub(crate) fn compile_errors(tokens: &TokenStream) -> Vec<String> {
    let mut out = Vec::new();
    collect(tokens.clone(), &mut out);
    out
}

fn collect(tokens: TokenStream, out: &mut Vec<String>) {
    let mut iter = tokens.into_iter().peekable();
    while let Some(tt) = iter.next() {
        match tt {
            TokenTree::Ident(i) if i == "compile_error" => {
                if matches!(iter.peek(), Some(TokenTree::Punct(p)) if p.as_char() == '!') {
                    iter.next();
                    if let Some(TokenTree::Group(g)) = iter.next() {
                        let lit: syn::LitStr = syn::parse2(g.stream())
                            .unwrap_or_else(|e| panic!("not a message: {e}: {g}"));
                        out.push(lit.value());
                    }
                }
            }
            TokenTree::Group(g) => collect(g.stream(), out),
            _ => {}
        }
    }
}
