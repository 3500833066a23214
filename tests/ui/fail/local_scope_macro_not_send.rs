// A future that awaits `scope!(local, ..)` is `!Send`: rustc points at the `local` option,
// not at the whole (possibly long) `scope!` call.
use taskscope::{Cancelled, scope};

#[tokio::main]
async fn main() {
    let _ = tokio::spawn(async {
        scope!(local, name = "ui", |s| {
            let h = s.spawn_local(async { Ok(1) });
            h.await
        })
        .map_err(|e: Cancelled| e.reason())
    })
    .await;
}
