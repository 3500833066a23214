use std::time::Duration;
use taskscope::*;

mod common;
use common::{HANG, PAUSED_HANG, Within};

#[tokio::test]
async fn smoke() {
    let r: Result<i32, Cancelled> = scope(async |s| {
        let a = s.spawn(async { Ok(1) });
        let b = s.spawn(async { Ok(2) });
        Ok(a.within(HANG, "child a's handle resolving").await?
            + b.within(HANG, "child b's handle resolving").await?)
    })
    .within(HANG, "the scope's return after its two children")
    .await;
    assert_eq!(r, Ok(3));
}

#[tokio::test(start_paused = true)]
async fn timeout_smoke() {
    let t0 = tokio::time::Instant::now();
    let r: Result<(), Cancelled> = Scope::builder()
        .timeout(Duration::from_secs(2))
        .run(async |s| {
            s.spawn(async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                Ok(())
            });
            Ok(())
        })
        .within(PAUSED_HANG, "the scope's return at its 2 s deadline")
        .await;
    assert_eq!(r.unwrap_err().reason(), CancelReason::DeadlineExceeded);
    assert_eq!(t0.elapsed(), Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many() {
    let r: Result<usize, Cancelled> = scope(async |s| {
        let hs: Vec<_> = (0..10_000).map(|i| s.spawn(async move { Ok(i) })).collect();
        let mut sum = 0;
        for h in hs {
            sum += h.await?;
        }
        Ok(sum)
    })
    .within(HANG, "the scope's return after 10,000 children")
    .await;
    assert_eq!(r, Ok((0..10_000).sum()));
}
