use taskscope::{Cancelled, scope};

async fn forms() -> Result<u32, Cancelled> {
    let a = scope!(|s| {
        let h = s.spawn(async { Ok(1) });
        Ok::<_, Cancelled>(h.await?)
    })?;

    let b = scope!(timeout = "1s", name = "x", |s| {
        let h = s.spawn(async { Ok(2) });
        Ok::<_, Cancelled>(h.await?)
    })?;

    let owned = String::from("three");
    let c = scope!(move |_s| { Ok::<_, Cancelled>(owned.len() as u32) })?;

    let d = scope!(|s| -> Result<u32, Cancelled> {
        let h = s.spawn(async { Ok(4) });
        h.await
    })?;

    let e = scope!({ Ok::<_, Cancelled>(5) })?;

    let f = scope!(timeout = "1s", { Ok::<u32, Cancelled>(6) })?;

    let mut total = 0;
    for i in 0..3 {
        // Loops inside the body may `break` and `continue`.
        total += scope!(|_s| {
            let mut n = 0;
            for j in 0..10 {
                if j == i {
                    continue;
                }
                if j > 4 {
                    break;
                }
                n += j;
            }
            Ok::<_, Cancelled>(n)
        })?;
    }

    Ok(a + b + c + d + e + f + total)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    // 1 + 2 + 5 + 4 + 5 + 6 + (10 - 0) + (10 - 1) + (10 - 2)
    assert_eq!(forms().await, Ok(50));
}
