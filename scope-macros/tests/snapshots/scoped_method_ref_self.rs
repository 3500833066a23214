#[inline]
pub(crate) async fn call<'a, T>(&'a self, arg: T) -> Result<&'a str, Error>
where
    T: Send + 'static,
{
    ::taskscope::__private::ScopeBuilder::run_with(
            ::taskscope::__private::ScopeBuilder::new()
                .name("call")
                .deadline(self.deadline),
            async move |s| -> Result<&'a str, Error> {
                s.spawn(async move {
                    drop(arg);
                    Ok(())
                });
                Ok(&self.name)
            },
            <Error as ::taskscope::__private::From<
                ::taskscope::__private::Cancelled,
            >>::from,
        )
        .await
}
