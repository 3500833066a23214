async fn fetch(id: u32) -> Result<u32, Error> {
    ::taskscope::__private::ScopeBuilder::run_with(
            ::taskscope::__private::ScopeBuilder::new().name("fetch"),
            async move |#[allow(unused_variables)] s| -> Result<u32, Error> {
                let child = s.spawn(async move { Ok(id) });
                child.await
            },
            <Error as ::taskscope::__private::From<
                ::taskscope::__private::Cancelled,
            >>::from,
        )
        .await
}
::core::compile_error! {
    "unknown option `timout`; the options are: a bare identifier to bind the scope handle (`s`), `timeout = \"2s\"`, `deadline = <tokio Instant>`, `name = \"...\"`, `grace = \"100ms\"`, `limit = 8`, `supervise`, `local`, `crate = \"path\"`"
}
