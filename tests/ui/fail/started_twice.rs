// `Ready::started` takes the `Ready` by value: signalling twice does not compile.
#[tokio::main(flavor = "current_thread")]
async fn main() {
    let _ = taskscope::scope(async |s| {
        let v = s
            .start(|ready| async move {
                ready.started(1);
                ready.started(2);
                Ok::<(), taskscope::Cancelled>(())
            })
            .await?;
        Ok::<i32, taskscope::Cancelled>(v)
    })
    .await;
}
