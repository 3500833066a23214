async fn count(cell: &RefCell<u32>) -> u32 {
    match {
        let __taskscope_scope = ::taskscope::__private::ScopeBuilder::run(
            ::taskscope::__private::ScopeBuilder::new().name("count").local(),
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
                        let __taskscope_fake_return: u32 = loop {};
                        return __taskscope_fake_return;
                    }
                    s.spawn_local(async {
                        *cell.borrow_mut() += 1;
                        Ok(())
                    });
                    *cell.borrow()
                }
                    .await,
            ),
        );
        __taskscope_scope.await
    } {
        ::taskscope::__private::Ok(__taskscope_value) => __taskscope_value,
        ::taskscope::__private::Err(__taskscope_cancelled) => {
            ::taskscope::__private::unrepresentable(__taskscope_cancelled, "count")
        }
    }
}
