use taskscope::{Cancelled, scoped};

// A misspelled option: the only error is about the option. The body's use of the handle
// `s` still resolves (the function is expanded with the options that were valid).
#[scoped(s, timout = "2s")]
async fn misspelled(n: u32) -> Result<u32, Cancelled> {
    let child = s.spawn(async move { Ok(n + 1) });
    child.await
}

fn main() {}
