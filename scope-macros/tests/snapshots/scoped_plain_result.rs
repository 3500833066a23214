pub async fn fetch(id: u32) -> Result<String, Error> {
    ::taskscope::__private::ScopeBuilder::ambient_with(
            ::taskscope::__private::Some(&"fetch"),
            async move || -> Result<String, Error> {
                let page = get(id).await?;
                Ok(page)
            },
            <Error as ::taskscope::__private::From<
                ::taskscope::__private::Cancelled,
            >>::from,
        )
        .await
}
