use taskscope::{Cancelled, scoped};

#[scoped(s, t)]
async fn handle_twice() -> Result<(), Cancelled> {
    Ok(())
}

fn main() {}
