// `local` is a flag: giving it twice is an error on the second one.
#[taskscope::scoped(s, local, local)]
async fn render() -> Result<(), taskscope::Cancelled> {
    let _ = s;
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let _ = taskscope::scope!(local, local, |_s| Ok::<_, taskscope::Cancelled>(()));
}
