use taskscope::{Cancelled, scoped};

struct Counter {
    n: u32,
}

impl Counter {
    #[scoped]
    async fn by_value(self) -> u32 {
        self.n
    }

    #[scoped(s)]
    async fn by_ref(&self) -> Result<u32, Cancelled> {
        let n = self.n;
        let h = s.spawn(async move { Ok(n + 1) });
        h.await
    }

    #[scoped(timeout = "1s")]
    async fn by_mut(&mut self) -> Option<u32> {
        self.n += 1;
        Some(self.n)
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut c = Counter { n: 1 };
    assert_eq!(c.by_mut().await, Some(2));
    assert_eq!(c.by_ref().await, Ok(3));
    assert_eq!(c.by_value().await, 2);
}
