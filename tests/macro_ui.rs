//! Compile-time tests of `#[scoped]` and `scope!`: every misuse is a spanned error that
//! says what to write instead, and every supported form compiles.
//!
//! Regenerate the expected errors with `TRYBUILD=overwrite cargo test --test macro_ui`.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/fail/*.rs");
    t.pass("tests/ui/pass/*.rs");
}
