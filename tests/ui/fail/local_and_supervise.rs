// `local` and `supervise` each choose the scope's flavor, and the builder has no scope that
// is both (a supervising scope takes no local children): an error on the second one.
#[taskscope::scoped(s, local, supervise)]
async fn both() -> Result<(), taskscope::Cancelled> {
    let _ = s;
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let _ = taskscope::scope!(supervise, local, |_s| Ok::<_, taskscope::Cancelled>(()));
}
