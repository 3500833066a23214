// A `#[scoped(local)]` function's future is `!Send` (it awaits a `Local` scope): rustc
// points at the `local` option as the reason.
use std::rc::Rc;
use taskscope::{Cancelled, scoped};

#[scoped(s, local)]
async fn render() -> Result<u32, Cancelled> {
    let rc = Rc::new(1);
    s.spawn_local(async move { Ok(*rc) }).await
}

#[tokio::main]
async fn main() {
    let _ = tokio::spawn(render()).await;
}
