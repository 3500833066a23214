use taskscope::{Cancelled, scoped};

#[scoped(timeout = "2 sec")]
async fn spelled_out_unit() -> Result<(), Cancelled> {
    Ok(())
}

#[scoped(timeout = "2")]
async fn no_unit() -> Result<(), Cancelled> {
    Ok(())
}

#[scoped(timeout = "fast")]
async fn no_number() -> Result<(), Cancelled> {
    Ok(())
}

fn main() {}
