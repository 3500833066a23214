async fn tick() {
    match ::taskscope::__private::ScopeBuilder::ambient(
            ::taskscope::__private::Some(&"tick"),
            async move || ::taskscope::__private::Ok::<
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
                        let __taskscope_fake_return: () = loop {};
                        return __taskscope_fake_return;
                    }
                    work().await;
                }
                    .await,
            ),
        )
        .await
    {
        ::taskscope::__private::Ok(__taskscope_value) => __taskscope_value,
        ::taskscope::__private::Err(__taskscope_cancelled) => {
            ::taskscope::__private::unrepresentable(__taskscope_cancelled, "tick")
        }
    }
}
