use taskscope::{Cancelled, scoped};

#[scoped(timeout = "1s", timeout = "2s")]
async fn timeout_twice() -> Result<(), Cancelled> {
    Ok(())
}

fn main() {}
