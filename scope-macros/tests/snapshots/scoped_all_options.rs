async fn fetch_all(ids: Vec<u32>) -> Result<Vec<u32>, Cancelled> {
    ::taskscope::__private::ScopeBuilder::run_with(
            ::taskscope::__private::ScopeBuilder::new()
                .name("x")
                .timeout(::taskscope::__private::Duration::from_nanos(2000000000u64))
                .grace(::taskscope::__private::Duration::from_nanos(100000000u64)),
            async move |s| -> Result<Vec<u32>, Cancelled> {
                let h = s.spawn(async move { Ok(ids.len() as u32) });
                Ok(vec![h. await ?])
            },
            <Cancelled as ::taskscope::__private::From<
                ::taskscope::__private::Cancelled,
            >>::from,
        )
        .await
}
