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

#[scoped(timeout = "1.2.3s")]
async fn two_points() -> Result<(), Cancelled> {
    Ok(())
}

#[scoped(timeout = "99999999999h")]
async fn too_long() -> Result<(), Cancelled> {
    Ok(())
}

fn main() {}
