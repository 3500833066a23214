async fn make(x: impl Display) -> Result<impl Display, Error> {
    ::taskscope::__private::ScopeBuilder::ambient_with(
            ::taskscope::__private::Some(&"make"),
            async move || { Ok(x) },
            <Error as ::taskscope::__private::From<
                ::taskscope::__private::Cancelled,
            >>::from,
        )
        .await
}
