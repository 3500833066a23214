//! Shared test helpers: drop-counting guards, counters, a concurrency gauge and the
//! three-runtime test macro.
#![allow(dead_code, unused_macros, unused_imports)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Bounds a wait on the code under test: `fut` must finish within `limit`, or the test
/// fails with "`what` did not happen within `limit`" (and the caller's line) instead of
/// hanging until nextest kills it. A mutant that loses a wake-up (the busy count, the limiter,
/// `task_done`, `Node::cancel`, `is_closed`) then fails in seconds. Under paused time
/// (`start_paused = true`) the clock auto-advances to the bound as soon as everything is
/// idle, so a hang fails at once; there `limit` must exceed the test's own timers.
#[track_caller]
pub fn within<F: std::future::IntoFuture>(
    limit: Duration,
    fut: F,
    what: impl std::fmt::Display,
) -> impl std::future::Future<Output = F::Output> {
    let at = std::panic::Location::caller();
    let fut = fut.into_future();
    async move {
        match tokio::time::timeout(limit, fut).await {
            Ok(v) => v,
            Err(_) => panic!("{at}: hang: {what} did not happen within {limit:?}"),
        }
    }
}

/// `fut.within(limit, what)`: [`within`] as a method, for awaits at the end of a chain
/// (`Scope::builder()...run(..).within(HANG, "the scope's return").await`).
pub trait Within: std::future::IntoFuture + Sized {
    #[track_caller]
    fn within(
        self,
        limit: Duration,
        what: impl std::fmt::Display,
    ) -> impl std::future::Future<Output = Self::Output> {
        within(limit, self, what)
    }
}

impl<F: std::future::IntoFuture> Within for F {}

/// The default bound of a wait in a test on real time: far above what any of them takes
/// (milliseconds), and below the 30 s after which the `ci` profile of `.config/nextest.toml`
/// kills a test, so the test fails first, saying what it waited for.
pub const HANG: Duration = Duration::from_secs(10);

/// The bound of a wait in a test on paused time (`start_paused = true`): a day of the test's
/// clock, past every timer a test sets. It costs nothing: when the code under test hangs,
/// everything is idle and the clock auto-advances to it at once.
pub const PAUSED_HANG: Duration = Duration::from_secs(24 * 3600);

/// A slot a future under test writes into and the test reads after it returned.
#[derive(Clone)]
pub struct Slot<T>(Arc<Mutex<Vec<T>>>);

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Slot(Arc::new(Mutex::new(Vec::new())))
    }
}

impl<T: Clone> Slot<T> {
    pub fn push(&self, v: T) {
        self.0.lock().unwrap().push(v);
    }
    pub fn get(&self) -> Vec<T> {
        self.0.lock().unwrap().clone()
    }
}

/// Counts guards made and dropped; a leak is `alive() > 0` after the scope returned.
#[derive(Clone, Default)]
pub struct Census(Arc<Counts>);

#[derive(Default)]
pub struct Counts {
    made: AtomicUsize,
    dropped: AtomicUsize,
}

impl Census {
    pub fn new() -> Self {
        Self::default()
    }
    /// A guard to move into a child; its drop is counted.
    pub fn guard(&self) -> Guard {
        self.0.made.fetch_add(1, Ordering::SeqCst);
        Guard(self.clone())
    }
    pub fn made(&self) -> usize {
        self.0.made.load(Ordering::SeqCst)
    }
    pub fn dropped(&self) -> usize {
        self.0.dropped.load(Ordering::SeqCst)
    }
    pub fn alive(&self) -> usize {
        // `dropped` first: a guard made and dropped between the two loads then counts in
        // neither, never in `dropped` alone.
        let dropped = self.dropped();
        self.made() - dropped
    }
}

pub struct Guard(Census);

impl Drop for Guard {
    fn drop(&mut self) {
        (self.0).0.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

/// A test error type: a real failure, or a cancellation converted by `?`.
#[derive(Debug, PartialEq)]
pub enum Error {
    Boom(u32),
    Cancelled(taskscope::CancelReason),
}

impl From<taskscope::Cancelled> for Error {
    fn from(c: taskscope::Cancelled) -> Self {
        Error::Cancelled(c.reason())
    }
}

/// A counter shared between a test and its children.
#[derive(Clone, Default)]
pub struct Counter(Arc<AtomicUsize>);

impl Counter {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn inc(&self) -> usize {
        self.0.fetch_add(1, Ordering::SeqCst) + 1
    }
    pub fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// Counts children running now and the most seen at once.
#[derive(Clone, Default)]
pub struct Gauge {
    now: Arc<AtomicUsize>,
    max: Arc<AtomicUsize>,
}

impl Gauge {
    pub fn enter(&self) {
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(n, Ordering::SeqCst);
    }
    pub fn leave(&self) {
        self.now.fetch_sub(1, Ordering::SeqCst);
    }
    pub fn max(&self) -> usize {
        self.max.load(Ordering::SeqCst)
    }
}

/// Keeps a two-sided race balanced whatever the machine's speed and load, so that a test
/// asserting "both outcomes occurred" exercises the race instead of the scheduler.
///
/// Each iteration, side A spins `delay_a()` and side B `delay_b()` before their racing
/// step; `record(a_won)` then moves the delay towards the other outcome, by a step that
/// grows with the distance from zero. The delays settle around the point where either side
/// wins, on any machine (a fixed yield pattern can fall on one side only: under load, a
/// child that completes right after it started won every one of 1,000 rounds).
#[derive(Debug, Default)]
pub struct Balance {
    /// Positive: side A waits; negative: side B waits. In spin-loop hints.
    bias: i64,
}

impl Balance {
    const LIMIT: i64 = 1 << 20;

    pub fn delay_a(&self) -> u64 {
        self.bias.max(0) as u64
    }
    pub fn delay_b(&self) -> u64 {
        (-self.bias).max(0) as u64
    }
    /// Side A won this round: delay it more (or B less) next time; and the other way round.
    pub fn record(&mut self, a_won: bool) {
        let step = 1 + self.bias.abs() / 4;
        self.bias = if a_won {
            self.bias + step
        } else {
            self.bias - step
        }
        .clamp(-Self::LIMIT, Self::LIMIT);
    }
}

/// Busy-waits `n` spin-loop hints (a delay shorter than any timer, without yielding).
pub fn spin(n: u64) {
    for _ in 0..n {
        std::hint::spin_loop();
    }
}

/// Counts the polls of `inner`: how often the task awaiting it was woken (or polled it).
pub async fn counting_polls<F: std::future::Future + Unpin>(
    mut inner: F,
    polls: Counter,
) -> F::Output {
    std::future::poll_fn(|cx| {
        polls.inc();
        std::pin::Pin::new(&mut inner).poll(cx)
    })
    .await
}

/// Yields to the runtime `n` times.
pub async fn yields(n: usize) {
    for _ in 0..n {
        tokio::task::yield_now().await;
    }
}

/// The handle of a scope that already finished (successfully): spawning through it is
/// refused with `SpawnError::Closed`.
pub async fn finished_scope_handle() -> taskscope::ScopeHandle<taskscope::Cancelled> {
    let mut escaped = None;
    let r: Result<(), taskscope::Cancelled> = taskscope::scope(async |s| {
        escaped = Some(s.handle());
        Ok(())
    })
    .within(HANG, "the return of a scope without children")
    .await;
    assert_eq!(r, Ok(()));
    escaped.expect("the body ran")
}

/// A boxed error that is `Send + Sync`, for futures that must be `Send`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Compiles only if `T` is `Send`.
pub fn require_send<T: Send>(_: &T) {}

/// Defines a test that runs on `current_thread`, `multi_thread(1)` and `multi_thread(4)`:
/// `rt_test! { async fn l3_error_cancels_siblings() { .. } }` gives
/// `l3_error_cancels_siblings::{current_thread, multi_thread_1, multi_thread_4}`.
macro_rules! rt_test {
    ($(#[$meta:meta])* async fn $name:ident() $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            $(#[$meta])*
            #[tokio::test(flavor = "current_thread")]
            async fn current_thread() $body
            $(#[$meta])*
            #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
            async fn multi_thread_1() $body
            $(#[$meta])*
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn multi_thread_4() $body
        }
    };
}
pub(crate) use rt_test;

/// R7 / ST3 (`docs/scenarios.md`): another task spawns through a handle while the scope's
/// last child finishes. The spawn is either accepted (and its child awaited before the scope
/// returns) or refused with `Closed` (and the future dropped, never run); both outcomes must
/// occur over `iterations` rounds. Run it on a multi-thread runtime (4 workers) for a real race.
pub async fn spawn_vs_close_race(iterations: usize, label: &str) {
    use std::sync::atomic::AtomicBool;
    use taskscope::{Cancelled, ScopeHandle, SpawnError, scope};
    let (mut accepted, mut refused) = (0usize, 0usize);
    // Side A: the racer's spawn (accepted when it comes first).
    let mut balance = Balance::default();
    for i in 0..iterations {
        let (racer_spin, last_spin) = (balance.delay_a(), balance.delay_b());
        let census = Census::new();
        let completed = Arc::new(AtomicBool::new(false));
        let (tx, rx) = tokio::sync::oneshot::channel::<ScopeHandle<Cancelled>>();
        let (c, done) = (census.clone(), completed.clone());
        let racer_delay = i % 7;
        // Another task (outside the scope) holds a handle and spawns once.
        let racer = tokio::spawn(async move {
            let h = rx.await.unwrap();
            yields(racer_delay).await;
            spin(racer_spin);
            let g = c.guard();
            match h.spawn(async move {
                tokio::task::yield_now().await;
                done.store(true, Ordering::SeqCst);
                drop(g);
                Ok(())
            }) {
                Ok(_) => true,
                Err(SpawnError::Closed) => false,
                Err(e) => panic!("iteration {i}: unexpected spawn error {e:?}"),
            }
        });
        let last_delay = (i / 7) % 5;
        let r: Result<(), Cancelled> = scope(async |s| {
            tx.send(s.handle()).unwrap();
            s.spawn(async move {
                yields(last_delay).await;
                spin(last_spin);
                Ok(())
            });
            Ok(())
        })
        .within(
            HANG,
            format!("iteration {i}: the scope's return after its last child"),
        )
        .await;
        // Right after the scope returned.
        let completed_at_return = completed.load(Ordering::SeqCst);
        let alive_at_return = census.alive();
        assert_eq!(r, Ok(()));
        let was_accepted = racer
            .within(HANG, format!("iteration {i}: the racer's end"))
            .await
            .unwrap();
        balance.record(was_accepted);
        if was_accepted {
            accepted += 1;
            assert!(
                completed_at_return,
                "iteration {i}: a spawn was accepted but its child had not completed when the \
                 scope returned (accepted but never awaited)"
            );
            assert_eq!(alive_at_return, 0, "iteration {i}");
        } else {
            refused += 1;
            assert!(
                !completed.load(Ordering::SeqCst),
                "iteration {i}: a refused child ran"
            );
            assert_eq!(
                census.alive(),
                0,
                "iteration {i}: the refused future was dropped"
            );
        }
    }
    eprintln!("{label} spawn vs close: {accepted} accepted (all awaited), {refused} refused");
    assert_eq!(accepted + refused, iterations);
    assert!(
        accepted > 0 && refused > 0,
        "the race was exercised both ways: {accepted} accepted, {refused} refused"
    );
}

/// A collecting, supervised scope whose `n` children fail with `fail(0)`, ..,
/// `fail(n - 1)`, in that order (child `i` yields `i` times first): the `Errors` it returns.
pub async fn collected<E>(n: u32, fail: fn(u32) -> E) -> taskscope::Errors<E>
where
    E: From<taskscope::Cancelled> + std::fmt::Debug + Send + 'static,
{
    taskscope::Scope::builder()
        .supervise()
        .collect_errors()
        .run(async |s| {
            for i in 0..n {
                drop(s.spawn(async move {
                    for _ in 0..i {
                        tokio::task::yield_now().await;
                    }
                    Err::<(), _>(fail(i))
                }));
            }
            Ok::<_, E>(())
        })
        .within(HANG, "the collecting scope's return")
        .await
        .expect_err("every child failed")
}

/// What a body saw of its scope: the ambient answers, and the tree below the outer scope.
#[derive(Debug, PartialEq)]
pub struct Seen {
    pub cancelled: bool,
    pub deadline: Option<tokio::time::Instant>,
    pub tree: Vec<(usize, taskscope::snapshot::NodeKind, Option<String>)>,
}

/// The ambient answers here, and the tree (depth, kind, name) of the root above.
pub fn look() -> Seen {
    Seen {
        cancelled: taskscope::is_cancelled(),
        deadline: taskscope::current_deadline(),
        tree: taskscope::snapshot()
            .nodes()
            .iter()
            .map(|n| (n.depth, n.kind, n.name.as_deref().map(str::to_owned)))
            .collect(),
    }
}

/// The kinds of the nodes in a scope's tree while a child runs `inside(first, second)`,
/// which waits for `first`, then builds its node and waits for `second`: before `first`
/// and after it. Lazy building is visible from outside in this one way: a snapshot taken
/// elsewhere shows the node once something built it.
pub async fn tree_before_and_after_the_build<F, Fut>(
    inside: F,
) -> (
    Vec<taskscope::snapshot::NodeKind>,
    Vec<taskscope::snapshot::NodeKind>,
)
where
    F: FnOnce(tokio::sync::oneshot::Receiver<()>, tokio::sync::oneshot::Receiver<()>) -> Fut,
    Fut: Future<Output = Result<(), taskscope::Cancelled>> + Send + 'static,
{
    let r: Result<_, taskscope::Cancelled> = taskscope::scope(async |s| {
        let kinds = || {
            s.snapshot()
                .nodes()
                .iter()
                .map(|n| n.kind)
                .collect::<Vec<_>>()
        };
        let (tx1, rx1) = tokio::sync::oneshot::channel();
        let (tx2, rx2) = tokio::sync::oneshot::channel();
        let child = s.spawn(inside(rx1, rx2));
        tokio::time::sleep(Duration::from_millis(1)).await;
        let before = kinds();
        let _ = tx1.send(());
        tokio::time::sleep(Duration::from_millis(1)).await;
        let after = kinds();
        let _ = tx2.send(());
        child.await?;
        Ok((before, after))
    })
    .within(PAUSED_HANG, "the scope's return")
    .await;
    r.expect("the scope ends well")
}

/// A waker that counts its wakes. A test keeps one `Arc` of it and reads
/// [`Arc::strong_count`] to see whether the code under test still holds a clone of the
/// waker (`Waker::from(counting.clone())`).
#[derive(Default)]
pub struct CountingWaker(AtomicUsize);

impl CountingWaker {
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// How many times a clone of it was woken.
    pub fn wakes(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl std::task::Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Polls `fut` once with each of two counting wakers, as a future moved to another task (or
/// first polled by hand) is: pending both times. Returns the wakers, first and latest, for
/// [`woken_through_the_latest`].
#[allow(dead_code)]
pub fn poll_with_two_wakers<F: std::future::Future + ?Sized>(
    mut fut: std::pin::Pin<&mut F>,
) -> (Arc<CountingWaker>, Arc<CountingWaker>) {
    let (first, latest) = (CountingWaker::new(), CountingWaker::new());
    for counting in [&first, &latest] {
        let waker = std::task::Waker::from(counting.clone());
        assert!(
            fut.as_mut()
                .poll(&mut std::task::Context::from_waker(&waker))
                .is_pending(),
            "pending while its children run"
        );
    }
    (first, latest)
}

/// Waits (bounded) until `latest` is woken, then checks that it was woken once and
/// `first` never: the wake went to the waker of the latest poll.
#[allow(dead_code)]
pub async fn woken_through_the_latest(first: &CountingWaker, latest: &CountingWaker) {
    within(
        HANG,
        async {
            while latest.wakes() == 0 {
                tokio::task::yield_now().await;
            }
        },
        "the wake of the latest poll's waker once the child ended",
    )
    .await;
    assert_eq!(
        (first.wakes(), latest.wakes()),
        (0, 1),
        "only the latest poll's waker is woken"
    );
}
