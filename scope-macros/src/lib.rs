#![cfg_attr(docsrs, feature(doc_cfg))]
//! The procedural macros of taskscope: [`macro@scoped`] and [`scope!`]. Use them through the
//! `taskscope` crate, which re-exports them; the documentation there has the examples.
//!
//! Each macro is a pipeline on `proc_macro2` types: parse the input (the function's body is
//! kept as raw tokens), validate it (every problem becomes an error on the user's token, all
//! reported together), expand it (absolute paths into `taskscope::__private`).
#![forbid(unsafe_code)]

mod block;
mod duration;
#[cfg(test)]
mod fuzz;
mod options;
mod scoped;
#[cfg(test)]
mod snapshots;
#[cfg(test)]
mod test_util;

use proc_macro::TokenStream;

/// Runs the body of an `async fn` in a scope that nests in the caller's cancel tree.
///
/// See `taskscope::scoped` for the documentation.
#[proc_macro_attribute]
pub fn scoped(attr: TokenStream, item: TokenStream) -> TokenStream {
    scoped::expand(attr.into(), item.into()).into()
}

/// Runs a scope as an expression and awaits it.
///
/// See `taskscope::scope!` for the documentation.
#[proc_macro]
pub fn scope(input: TokenStream) -> TokenStream {
    block::expand(input.into()).into()
}
