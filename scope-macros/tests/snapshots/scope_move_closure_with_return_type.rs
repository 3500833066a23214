async fn __f() {
    ::taskscope::__private::ScopeBuilder::run(
            ::taskscope::__private::ScopeBuilder::new()
                .name("work")
                .grace(::taskscope::__private::Duration::from_nanos(1000000000u64)),
            async move |s| -> Result<u32, Error> {
                s.spawn(async move { Ok(()) });
                Ok(1)
            },
        )
        .await
}
