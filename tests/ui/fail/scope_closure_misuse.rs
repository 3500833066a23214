// The closure of `scope!` takes the handle as its one plain parameter and is made async by the
// macro: each other form is an error on the tokens to change.
use taskscope::{Cancelled, scope};

async fn run() -> Result<(), Cancelled> {
    scope!(|s, t| Ok::<_, Cancelled>(()))?;
    scope!(async |_s| Ok::<_, Cancelled>(()))?;
    scope!(|(a, b)| Ok::<_, Cancelled>(()))?;
    scope!(s, |_t| Ok::<_, Cancelled>(()))?;
    Ok(())
}

fn main() {
    let _ = run();
}
