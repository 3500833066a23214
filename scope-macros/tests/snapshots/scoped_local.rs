async fn render(items: Vec<u32>) -> Result<u32, Error> {
    {
        let __taskscope_scope = ::taskscope::__private::ScopeBuilder::run_with(
            ::taskscope::__private::ScopeBuilder::new()
                .name("render")
                .timeout(::taskscope::__private::Duration::from_nanos(1000000000u64))
                .limit(4)
                .local(),
            async move |s| -> Result<u32, Error> {
                let shared = Rc::new(items);
                let h = s
                    .spawn_local(async move {
                        yield_now().await;
                        Ok(shared.len() as u32)
                    });
                Ok(h.await?)
            },
            <Error as ::taskscope::__private::From<
                ::taskscope::__private::Cancelled,
            >>::from,
        );
        __taskscope_scope.await
    }
}
