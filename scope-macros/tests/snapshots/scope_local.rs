async fn __f() {
    {
        let __taskscope_scope = ::taskscope::__private::ScopeBuilder::run(
            ::taskscope::__private::ScopeBuilder::new().name("ui").local(),
            async move |s| {
                let h = s.spawn_local(async move { Ok(Rc::new(1)) });
                Ok::<_, Cancelled>(*h.await?)
            },
        );
        __taskscope_scope.await
    }
}
