use std::fmt::Debug;
use taskscope::{Cancelled, scoped};

#[scoped(s, timeout = "1s")]
async fn spawn_each<T, E>(items: Vec<T>) -> Result<Vec<T>, E>
where
    T: Send + 'static,
    E: From<Cancelled> + Send + 'static,
{
    let handles: Vec<_> = items
        .into_iter()
        .map(|item| s.spawn(async move { Ok(item) }))
        .collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await?);
    }
    Ok(out)
}

#[scoped]
async fn describe<T: Debug>(value: T) -> String
where
    T: Clone,
{
    format!("{:?}", value.clone())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let r: Result<Vec<u32>, Cancelled> = spawn_each(vec![1, 2]).await;
    assert_eq!(r, Ok(vec![1, 2]));
    assert_eq!(describe(3).await, "3");
}
