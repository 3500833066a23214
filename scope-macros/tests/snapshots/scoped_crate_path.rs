async fn run(n: u64) -> Result<(), Error> {
    my_reexport::taskscope::__private::ScopeBuilder::run_with(
            my_reexport::taskscope::__private::ScopeBuilder::new()
                .name("run")
                .timeout(Duration::from_secs(n)),
            async move |_| -> Result<(), Error> { Ok(()) },
            <Error as my_reexport::taskscope::__private::From<
                my_reexport::taskscope::__private::Cancelled,
            >>::from,
        )
        .await
}
