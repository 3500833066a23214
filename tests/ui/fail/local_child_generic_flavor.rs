// Code generic over the scope's flavor spawns a local child without requiring that the
// flavor accepts it: `Accepts` itself is unimplemented, so its
// `#[diagnostic::on_unimplemented]` message and notes are shown.
use taskscope::flavor::Unsupervised;
use taskscope::{Cancelled, Scope};

fn spawn_one<K: Unsupervised>(s: &Scope<'_, Cancelled, K>) {
    s.spawn_local(async { Ok(1u32) });
}

fn main() {
    let _ = spawn_one::<taskscope::flavor::Sendable>;
}
