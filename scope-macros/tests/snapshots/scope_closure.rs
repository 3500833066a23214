async fn __f() {
    ::taskscope::__private::ScopeBuilder::run(
            ::taskscope::__private::ScopeBuilder::new(),
            async |s| {
                let a = s.spawn(async { Ok(1) });
                Ok::<_, Cancelled>(a.await?)
            },
        )
        .await
}
