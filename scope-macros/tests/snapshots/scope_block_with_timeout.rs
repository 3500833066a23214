async fn __f() {
    ::taskscope::__private::ScopeBuilder::run_ambient(
            ::taskscope::__private::ScopeBuilder::new()
                .timeout(::taskscope::__private::Duration::from_nanos(1000000000u64)),
            async || {
                sleep(Duration::from_secs(5)).await;
                Ok::<_, Cancelled>(())
            },
        )
        .await
}
