// A `!Send` local child in a default (`Sendable`) scope. `Accepts` carries a
// `#[diagnostic::on_unimplemented]` ("this scope's local children must be `Send`"), but
// rustc reports the failed nested `Send` obligation instead, with its own message.
use std::rc::Rc;
use taskscope::{Cancelled, scope};

#[tokio::main]
async fn main() {
    let r = scope(async |s| {
        let h = s.spawn_local(async {
            let shared = Rc::new(1u32);
            tokio::task::yield_now().await;
            Ok(*shared)
        });
        h.await
    })
    .await;
    let _: Result<u32, Cancelled> = r;
}
