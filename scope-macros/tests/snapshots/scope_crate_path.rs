async fn __f() {
    ts::__private::ScopeBuilder::run(
            ts::__private::ScopeBuilder::new(),
            async |_| { Ok::<_, ts::Cancelled>(()) },
        )
        .await
}
