use std::time::Duration;
use taskscope::scoped;

#[scoped(timeout = "10ms")]
async fn slow() -> Option<u32> {
    tokio::time::sleep(Duration::from_secs(60)).await;
    Some(1)
}

#[scoped(s, timeout = Duration::from_secs(1), grace = "5ms", name = "fast")]
async fn fast() -> Option<u32> {
    let h = s.spawn(async { Ok(2) });
    h.await.ok()
}

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() {
    assert_eq!(slow().await, None);
    assert_eq!(fast().await, Some(2));
}
