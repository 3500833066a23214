use taskscope::{Cancelled, scoped};

trait Fetch {
    fn id(&self) -> u32;

    #[scoped(s, timeout = "1s")]
    async fn fetch(&self) -> Result<u32, Cancelled> {
        let id = self.id();
        s.spawn(async move { Ok(id * 10) }).await
    }

    async fn describe(&self) -> String;
}

struct A;

impl Fetch for A {
    fn id(&self) -> u32 {
        1
    }

    #[scoped]
    async fn describe(&self) -> String {
        format!("A{}", self.id())
    }
}

struct B;

impl Fetch for B {
    fn id(&self) -> u32 {
        2
    }

    #[scoped(name = "b_fetch")]
    async fn fetch(&self) -> Result<u32, Cancelled> {
        Ok(self.id())
    }

    #[scoped]
    async fn describe(&self) -> String {
        "B".to_owned()
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    assert_eq!(A.fetch().await, Ok(10));
    assert_eq!(B.fetch().await, Ok(2));
    assert_eq!(A.describe().await, "A1");
    assert_eq!(B.describe().await, "B");
}
