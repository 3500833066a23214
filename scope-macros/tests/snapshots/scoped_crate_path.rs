async fn run(n: u64) -> Result<(), Error> {
    my_reexport::taskscope::__private::ScopeBuilder::ambient_after_with(
            my_reexport::taskscope::__private::Some(&"run"),
            Duration::from_secs(n),
            async move || -> Result<(), Error> { Ok(()) },
            <Error as my_reexport::taskscope::__private::From<
                my_reexport::taskscope::__private::Cancelled,
            >>::from,
        )
        .await
}
