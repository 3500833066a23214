use taskscope::{Cancelled, scoped};

#[scoped(s, limit = 0)]
async fn none_may_run() -> Result<(), Cancelled> {
    Ok(())
}

#[scoped(s, limit = "8")]
async fn limit_as_text() -> Result<(), Cancelled> {
    Ok(())
}

fn main() {}
