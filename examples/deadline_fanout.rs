//! A fan-out with a deadline, every child accounted for.
//!
//! Three backends are asked the same question; two answer in time, one is slow. With a
//! taskscope scope the slow backend is cancelled at the deadline and its cleanup has run
//! before the scope returns. The same code with a `JoinSet` that is dropped at the deadline
//! leaves the slow backend running after the function returned: a zombie task.
//!
//! Run with `cargo run --example deadline_fanout`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use taskscope::{Cancelled, move_on_after, scope};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep};

const DEADLINE: Duration = Duration::from_millis(300);
const BACKENDS: [(&str, u64, u32); 3] = [("eu", 50, 17), ("us", 120, 42), ("asia", 2_000, 7)];

/// Counts running backends; a backend's guard uncounts it when its future is dropped,
/// whether it finished or was cancelled.
#[derive(Clone, Default)]
struct Live(Arc<AtomicUsize>);

struct Running {
    live: Live,
    name: &'static str,
    start: Instant,
    answered: bool,
}

impl Live {
    fn start(&self, name: &'static str, start: Instant) -> Running {
        self.0.fetch_add(1, Ordering::SeqCst);
        Running {
            live: self.clone(),
            name,
            start,
            answered: false,
        }
    }
    fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.live.0.fetch_sub(1, Ordering::SeqCst);
        if !self.answered {
            println!(
                "  [{:>4} ms] backend {:<6} cancelled; its cleanup ran",
                self.start.elapsed().as_millis(),
                format!("{:?}", self.name)
            );
        }
    }
}

async fn backend(
    mut run: Running,
    delay_ms: u64,
    answer: u32,
    tx: mpsc::Sender<(&'static str, u32)>,
) {
    sleep(Duration::from_millis(delay_ms)).await;
    run.answered = true;
    println!(
        "  [{:>4} ms] backend {:<6} answered {answer}",
        run.start.elapsed().as_millis(),
        format!("{:?}", run.name)
    );
    let _ = tx.send((run.name, answer)).await;
}

async fn with_taskscope(live: &Live) -> Result<Vec<(&'static str, u32)>, Cancelled> {
    let start = Instant::now();
    scope(async |s| {
        let (tx, mut rx) = mpsc::channel(BACKENDS.len());
        for (name, delay, answer) in BACKENDS {
            let run = live.start(name, start);
            let tx = tx.clone();
            s.spawn(async move {
                backend(run, delay, answer, tx).await;
                Ok(())
            });
        }
        drop(tx);
        let mut answers = Vec::new();
        move_on_after(DEADLINE, async {
            while let Some(a) = rx.recv().await {
                answers.push(a);
            }
        })
        .await;
        println!(
            "  [{:>4} ms] deadline: cancel the rest",
            start.elapsed().as_millis()
        );
        s.cancel(); // the body's value is kept; the scope waits for the cancelled children
        Ok(answers)
    })
    .await
}

async fn with_joinset(live: &Live) -> Vec<(&'static str, u32)> {
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    let (tx, mut rx) = mpsc::channel(BACKENDS.len());
    for (name, delay, answer) in BACKENDS {
        let run = live.start(name, start);
        set.spawn(backend(run, delay, answer, tx.clone()));
    }
    drop(tx);
    let mut answers = Vec::new();
    let _ = tokio::time::timeout(DEADLINE, async {
        while let Some(a) = rx.recv().await {
            answers.push(a);
        }
    })
    .await;
    println!(
        "  [{:>4} ms] deadline: drop the JoinSet",
        start.elapsed().as_millis()
    );
    drop(set); // aborts, but does not wait
    answers
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Cancelled> {
    println!(
        "taskscope: fan-out to {} backends, {} ms deadline",
        BACKENDS.len(),
        DEADLINE.as_millis()
    );
    let live = Live::default();
    let answers = with_taskscope(&live).await?;
    println!(
        "  scope returned {} answers; backends still running: {}",
        answers.len(),
        live.count()
    );
    assert_eq!(live.count(), 0);

    println!("\nthe same fan-out with a JoinSet dropped at the deadline");
    let live = Live::default();
    let answers = with_joinset(&live).await;
    let zombies = live.count();
    println!(
        "  function returned {} answers; backends still running: {zombies}{}",
        answers.len(),
        if zombies > 0 { "  <- zombie task" } else { "" }
    );
    tokio::task::yield_now().await;
    println!(
        "  (after one more yield the runtime got to drop it: {} running)",
        live.count()
    );
    Ok(())
}
