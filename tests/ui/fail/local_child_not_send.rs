// A `!Send` local child in a default (`Sendable`) scope. The `Accepts` impl for `Sendable` exists
// and only its `F: Send` bound fails, so rustc reports that bound with its own message and
// leaves out `Accepts`'s `#[diagnostic::on_unimplemented]` (see local_child_generic_flavor.rs).
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
