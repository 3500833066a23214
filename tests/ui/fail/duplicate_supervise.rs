// `supervise` is a flag: giving it twice is an error on the second one.
#[taskscope::scoped(s, supervise, supervise)]
async fn serve() -> Result<(), taskscope::Cancelled> {
    let _ = s;
    Ok(())
}

fn main() {}
