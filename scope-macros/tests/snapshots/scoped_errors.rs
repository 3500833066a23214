fn not_async() -> u32 {
    1
}
::core::compile_error! {
    "`sec` is not a unit; a duration is a string literal of a number and a unit: \"250ms\", \"2s\", \"1.5s\", \"1m\", \"1h\" (units: ns, us, ms, s, m, h), or any expression of type `std::time::Duration`"
}
::core::compile_error! {
    "#[scoped] wraps the body of an `async fn` in a scope; make it `async fn not_async`"
}
