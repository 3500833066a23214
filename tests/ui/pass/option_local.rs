// `local`: the scope's local children need not be `Send`; it combines with every option but
// `supervise`, in both macros, and in any position among the options.
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;
use taskscope::{Cancelled, scope, scoped};

#[scoped(s, local)]
async fn plain_rc() -> Result<u32, Cancelled> {
    let rc = Rc::new(1);
    let h = s.spawn_local(async move {
        tokio::task::yield_now().await;
        Ok(*rc)
    });
    h.await
}

#[scoped(local)]
async fn no_handle() -> u32 {
    let rc = Rc::new(2);
    tokio::task::yield_now().await;
    *rc
}

#[scoped(local, s, timeout = "1s", name = "all", grace = "5ms", limit = 2)]
async fn all_options(cell: &RefCell<Vec<u32>>) -> Option<usize> {
    for i in 0..3 {
        s.spawn_local(async move {
            let mine = Rc::new(i);
            tokio::task::yield_now().await;
            cell.borrow_mut().push(*mine);
            Ok(())
        });
    }
    Some(3)
}

#[scoped(s, deadline = tokio::time::Instant::now() + Duration::from_secs(1), local)]
async fn with_deadline() -> Option<Rc<u32>> {
    let h = s.spawn_local(async { Ok(Rc::new(4)) }); // a `!Send` output
    h.await.ok()
}

struct Widget {
    label: Rc<str>,
}

impl Widget {
    #[scoped(s, local)]
    async fn render(&self) -> Result<usize, Cancelled> {
        let label = self.label.clone();
        s.spawn_local(async move {
            tokio::task::yield_now().await;
            Ok(label.len())
        })
        .await
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    assert_eq!(plain_rc().await, Ok(1));
    assert_eq!(no_handle().await, 2);
    let cell = RefCell::new(Vec::new());
    assert_eq!(all_options(&cell).await, Some(3));
    assert_eq!(cell.borrow().len(), 3);
    assert_eq!(with_deadline().await.as_deref(), Some(&4));
    let w = Widget {
        label: Rc::from("abc"),
    };
    assert_eq!(w.render().await, Ok(3));

    let shared = Rc::new(5);
    let r = scope!(local, |s| {
        let h = s.spawn_local(async {
            tokio::task::yield_now().await;
            Ok(*shared)
        });
        Ok::<_, Cancelled>(h.await? + 1)
    });
    assert_eq!(r, Ok(6));
    let r = scope!(timeout = "1s", local, name = "block", {
        let rc = Rc::new(7);
        tokio::task::yield_now().await;
        Ok::<_, Cancelled>(*rc)
    });
    assert_eq!(r, Ok(7));
}
