use taskscope::{Cancelled, scope};

async fn run() -> Result<(), Cancelled> {
    for i in 0..3 {
        scope!(|_s| {
            if i == 2 {
                break;
            }
            Ok::<_, Cancelled>(())
        })?;
    }
    Ok(())
}

fn main() {
    let _ = run();
}
