// M6: a syntax error in the body is reported by the compiler on the user's tokens, and the
// function still exists (no "cannot find function" cascade where it is called).
use taskscope::{Cancelled, scoped};

#[scoped(s)]
async fn broken() -> Result<u32, Cancelled> {
    let x = ;
    Ok(x)
}

fn main() {
    let _ = broken();
}
