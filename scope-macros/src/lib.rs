//! Procedural macros of taskscope: `#[scoped]` and `scope!` (coming with the macros issue).
//!
//! This crate is re-exported by the `taskscope` facade; do not depend on it directly.
#![forbid(unsafe_code)]
