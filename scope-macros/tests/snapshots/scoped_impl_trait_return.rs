async fn make(x: impl Display) -> Result<impl Display, Error> {
    ::taskscope::__private::ScopeBuilder::run_with(
            ::taskscope::__private::ScopeBuilder::new().name("make"),
            async move |_| { Ok(x) },
            <Error as ::taskscope::__private::From<
                ::taskscope::__private::Cancelled,
            >>::from,
        )
        .await
}
