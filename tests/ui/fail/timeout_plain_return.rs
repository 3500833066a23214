use taskscope::scoped;

#[scoped(timeout = "2s")]
async fn returns_plain() -> u32 {
    1
}

#[scoped(timeout = "2s")]
async fn returns_unit() {}

#[scoped(deadline = tokio::time::Instant::now())]
async fn returns_plain_by_deadline() -> u32 {
    1
}

fn main() {}
