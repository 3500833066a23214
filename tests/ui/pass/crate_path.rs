use taskscope as ts;

mod reexport {
    pub use taskscope;
}

#[ts::scoped(crate = "::taskscope")]
async fn absolute() -> Result<u32, ts::Cancelled> {
    Ok(1)
}

#[ts::scoped(s, timeout = "1s", crate = "reexport::taskscope")]
async fn through_reexport() -> Result<u32, ts::Cancelled> {
    s.spawn(async { Ok(2) }).await
}

#[ts::scoped(timeout = "1s", crate = "crate::reexport::taskscope")]
async fn option_through_reexport() -> Option<u32> {
    Some(3)
}

async fn scope_through_reexport() -> Result<u32, ts::Cancelled> {
    ts::scope!(crate = "reexport::taskscope", timeout = "1s", |s| {
        s.spawn(async { Ok(4) }).await
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    assert_eq!(absolute().await, Ok(1));
    assert_eq!(through_reexport().await, Ok(2));
    assert_eq!(option_through_reexport().await, Some(3));
    assert_eq!(scope_through_reexport().await, Ok(4));
}
