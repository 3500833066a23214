async fn __f() {
    ::taskscope::__private::ScopeBuilder::run(
            ::taskscope::__private::ScopeBuilder::new()
                .timeout(::taskscope::__private::Duration::from_nanos(1000000000u64)),
            async |_| {
                sleep(Duration::from_secs(5)).await;
                Ok::<_, Cancelled>(())
            },
        )
        .await
}
