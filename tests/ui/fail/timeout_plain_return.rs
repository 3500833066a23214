use taskscope::scoped;

#[scoped(timeout = "2s")]
async fn returns_plain() -> u32 {
    1
}

#[scoped(timeout = "2s")]
async fn returns_unit() {}

fn main() {}
