use taskscope::{Cancelled, scoped};

#[scoped]
async fn first_word<'a>(text: &'a str) -> &'a str {
    text.split(' ').next().unwrap_or("")
}

#[scoped(timeout = "1s")]
async fn longest<'a, 'b: 'a>(a: &'a str, b: &'b str) -> Result<&'a str, Cancelled> {
    Ok(if a.len() >= b.len() { a } else { b })
}

#[scoped]
async fn elided(text: &str) -> Option<&str> {
    text.get(..1)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let owned = String::from("hello world");
    assert_eq!(first_word(&owned).await, "hello");
    assert_eq!(longest("ab", "c").await, Ok("ab"));
    assert_eq!(elided("xy").await, Some("x"));
}
