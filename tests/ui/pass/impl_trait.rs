use std::fmt::Display;
use taskscope::{Cancelled, scoped};

#[scoped(timeout = "1s")]
async fn sum(items: impl IntoIterator<Item = u32>) -> Result<u32, Cancelled> {
    Ok(items.into_iter().sum())
}

#[scoped]
async fn show(value: u32) -> impl Display {
    value * 2
}

#[scoped]
async fn show_result(value: u32) -> Result<impl Display, Cancelled> {
    Ok(value + 1)
}

#[scoped]
async fn show_pair(value: u32) -> Option<(impl Display, u32)> {
    Some((value, value + 1))
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    assert_eq!(sum([1, 2, 3]).await, Ok(6));
    assert_eq!(show(21).await.to_string(), "42");
    assert_eq!(
        show_result(1).await.map(|v| v.to_string()),
        Ok("2".to_owned())
    );
    assert_eq!(
        show_pair(3).await.map(|(a, b)| (a.to_string(), b)),
        Some(("3".to_owned(), 4))
    );
}
