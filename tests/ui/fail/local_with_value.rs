// `local` (like `supervise`) is a flag: a value or a list is an error that says so, not
// "unknown option".
#[taskscope::scoped(s, local = 1)]
async fn one() -> Result<(), taskscope::Cancelled> {
    let _ = s;
    Ok(())
}

#[taskscope::scoped(local(true))]
async fn list() -> Result<(), taskscope::Cancelled> {
    Ok(())
}

#[taskscope::scoped(supervise = true)]
async fn supervised() -> Result<(), taskscope::Cancelled> {
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let _ = taskscope::scope!(local = true, |_s| Ok::<_, taskscope::Cancelled>(()));
}
