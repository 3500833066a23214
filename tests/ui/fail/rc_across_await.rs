use std::rc::Rc;
use taskscope::{Cancelled, scoped};

#[scoped]
async fn holds_rc() -> Result<u32, Cancelled> {
    let shared = Rc::new(1);
    tokio::task::yield_now().await;
    Ok(*shared)
}

#[tokio::main]
async fn main() {
    let _ = tokio::spawn(holds_rc()).await;
}
