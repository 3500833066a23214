// The expansion drops the body on error, so the label looks unused; that warning is noise here.
#![allow(unused_labels)]

use taskscope::{Cancelled, scope};

async fn run() -> Result<(), Cancelled> {
    'outer: for i in 0..3 {
        scope!(|_s| {
            if i == 1 {
                continue 'outer;
            }
            Ok::<_, Cancelled>(())
        })?;
    }
    Ok(())
}

fn main() {
    let _ = run();
}
