// A child whose future returns another error type than the scope's: the error says how to
// convert it.
use taskscope::{Cancelled, Scope, scope};

#[derive(Debug)]
struct DbError;

async fn fetch() -> Result<usize, DbError> {
    Ok(1)
}

async fn run() -> Result<usize, Cancelled> {
    scope(async |s: Scope<'_, Cancelled>| {
        let h = s.spawn(fetch());
        h.await
    })
    .await
}

fn main() {
    drop(run());
}
