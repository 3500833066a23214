use taskscope::{Cancelled, scoped};

#[scoped(timeout = "1s", timeout = "2s")]
async fn timeout_twice() -> Result<(), Cancelled> {
    Ok(())
}

#[scoped(
    s,
    grace = "1s",
    grace = "2s",
    name = "a",
    name = "b",
    limit = 1,
    limit = 2,
    deadline = tokio::time::Instant::now(),
    deadline = tokio::time::Instant::now(),
    crate = "taskscope",
    crate = "taskscope"
)]
async fn every_key_twice() -> Result<(), Cancelled> {
    let _ = s;
    Ok(())
}

fn main() {}
