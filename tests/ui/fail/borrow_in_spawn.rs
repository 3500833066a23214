// A spawned child borrows from the caller: `s.spawn` needs a `'static` future, and the
// borrow checker reports the borrow against the scope's body, not the `spawn` call. A child
// that borrows belongs in `s.spawn_local`, but no stable diagnostic attribute reaches a
// borrow-check error, so the error cannot say so (rust-lang/rust#131683).
use taskscope::{Cancelled, scope, scoped};

#[scoped(s)]
async fn lookup(query: &str) -> Result<usize, Cancelled> {
    let h = s.spawn(async { Ok(query.len()) });
    h.await
}

async fn lookup_owned() -> Result<usize, Cancelled> {
    let query = String::from("q");
    scope!(|s| {
        let h = s.spawn(async { Ok(query.len()) });
        h.await
    })
}

fn main() {
    let _ = lookup("q");
    let _ = lookup_owned();
}
