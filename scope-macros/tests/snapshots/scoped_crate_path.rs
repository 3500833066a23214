async fn run(n: u64) -> Result<(), Error> {
    my_reexport::taskscope::__private::ScopeBuilder::run_ambient_with(
            my_reexport::taskscope::__private::ScopeBuilder::new()
                .name_static(&"run")
                .timeout(Duration::from_secs(n)),
            async move || -> Result<(), Error> { Ok(()) },
            <Error as my_reexport::taskscope::__private::From<
                my_reexport::taskscope::__private::Cancelled,
            >>::from,
        )
        .await
}
