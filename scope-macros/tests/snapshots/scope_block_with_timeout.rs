async fn __f() {
    ::taskscope::__private::ScopeBuilder::ambient_after(
            ::taskscope::__private::None,
            ::taskscope::__private::Duration::from_nanos(1000000000u64),
            async || {
                sleep(Duration::from_secs(5)).await;
                Ok::<_, Cancelled>(())
            },
        )
        .await
}
