// Two jumps in one body: each must get its own error, and nothing else.
use taskscope::{Cancelled, scope};

async fn run() -> Result<(), Cancelled> {
    for i in 0..3 {
        scope!(|_s| {
            if i == 1 {
                continue;
            }
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
