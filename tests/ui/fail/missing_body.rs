// `scope!` needs a body after its options; `#[scoped]` needs a function body to wrap.
use taskscope::{Cancelled, scope, scoped};

trait Fetch {
    #[scoped]
    async fn fetch(&self) -> Result<u32, Cancelled>;
}

async fn run() -> Result<(), Cancelled> {
    scope!()?;
    scope!(timeout = "1s")?;
    Ok(())
}

fn main() {
    let _ = run();
}
