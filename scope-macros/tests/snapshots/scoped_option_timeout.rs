async fn lookup(key: &str) -> Option<u32> {
    match ::taskscope::__private::ScopeBuilder::run(
            ::taskscope::__private::ScopeBuilder::new()
                .name("lookup")
                .timeout(::taskscope::__private::Duration::from_nanos(250000000u64)),
            async move |s| ::taskscope::__private::Ok::<
                _,
                ::taskscope::__private::Cancelled,
            >(
                async move {
                    #[allow(
                        unreachable_code,
                        clippy::diverging_sub_expression,
                        clippy::let_unit_value
                    )]
                    if false {
                        let __taskscope_fake_return: Option<u32> = loop {};
                        return __taskscope_fake_return;
                    }
                    let v = cache(key).await?;
                    Some(v)
                }
                    .await,
            ),
        )
        .await
    {
        ::taskscope::__private::Ok(__taskscope_value) => __taskscope_value,
        ::taskscope::__private::Err(__taskscope_cancelled) => {
            let _ = __taskscope_cancelled;
            ::taskscope::__private::None
        }
    }
}
