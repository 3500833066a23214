use taskscope::{Cancelled, scoped};

#[scoped(timout = "2s")]
async fn misspelled() -> Result<(), Cancelled> {
    Ok(())
}

fn main() {}
