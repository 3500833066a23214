//! Macros: scenarios M2–M4 (`docs/scenarios.md`), the behaviour of `#[scoped]` and
//! `scope!`, plus nesting in an outer cancel tree, nested deadlines, timeouts by return
//! type, and the grace option.

mod common;

use std::cell::{Cell, RefCell};
use std::future::pending;
use std::marker::PhantomData;
use std::rc::Rc;
use std::time::Duration;

use common::{Census, Counter, HANG, PAUSED_HANG, Slot, Within, ms, rt_test, secs};
use taskscope::{CancelReason, Cancelled, checkpoint, current_deadline, scope, scoped, shield};
use tokio::time::{Instant, sleep};

use common::Error;

fn assert_send<T: Send>(_: &T) {}

/// `probe(&x).is_send()`: `true` iff `x`'s type is `Send` (inherent method first, the trait's
/// fallback when the bound does not hold).
struct Probe<T>(PhantomData<T>);

fn probe<T>(_: &T) -> Probe<T> {
    Probe(PhantomData)
}

trait NotSendFallback {
    fn is_send(&self) -> bool {
        false
    }
}

impl<T> NotSendFallback for Probe<T> {}

impl<T: Send> Probe<T> {
    fn is_send(&self) -> bool {
        true
    }
}

/// A child that holds a census guard and never finishes by itself.
fn parked<E: Send + 'static>(
    census: &Census,
) -> impl Future<Output = Result<(), E>> + Send + 'static {
    let g = census.guard();
    async move {
        let _g = g;
        pending::<()>().await;
        Ok(())
    }
}

/// A child that holds a census guard and finishes after `d`.
fn sleeper<E: Send + 'static>(
    census: &Census,
    d: Duration,
) -> impl Future<Output = Result<(), E>> + Send + 'static {
    let g = census.guard();
    async move {
        let _g = g;
        sleep(d).await;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// M2: methods, generics, lifetimes, `where`, `impl Trait`; `Send` futures.

struct Acc {
    base: u32,
}

impl Acc {
    #[scoped(s)]
    async fn by_value(self, add: u32) -> Result<u32, Error> {
        let h = s.spawn(async move { Ok(add * 2) });
        Ok(self.base + h.await?)
    }

    #[scoped(s)]
    async fn by_ref(&self, add: u32) -> Result<u32, Error> {
        let base = self.base;
        let h = s.spawn(async move { Ok(base + add) });
        Ok(h.await?)
    }

    #[scoped(s)]
    async fn by_mut(&mut self, add: u32) -> Result<u32, Error> {
        let h = s.spawn(async move { Ok(add) });
        self.base += h.await?;
        Ok(self.base)
    }

    #[scoped]
    async fn plain_by_ref(&self) -> u32 {
        self.base * 10
    }

    #[scoped]
    async fn option_by_mut(&mut self) -> Option<u32> {
        self.base += 1;
        Some(self.base)
    }
}

#[scoped(s)]
async fn sum_all<T, I>(items: I) -> Result<T, Error>
where
    T: Copy + Send + 'static + std::iter::Sum<T>,
    I: IntoIterator<Item = T>,
{
    let handles: Vec<_> = items
        .into_iter()
        .map(|x| s.spawn(async move { Ok(x) }))
        .collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await?);
    }
    Ok(out.into_iter().sum())
}

#[scoped(s)]
async fn first_word<'a>(text: &'a str) -> Result<&'a str, Error> {
    let n = text.len() as u32;
    let h = s.spawn(async move { Ok(n) });
    assert_eq!(h.await?, n);
    Ok(text.split(' ').next().unwrap_or(""))
}

#[scoped]
async fn longest<'a, 'b: 'a>(a: &'a str, b: &'b str) -> Option<&'a str> {
    Some(if a.len() >= b.len() { a } else { b })
}

#[scoped(s)]
async fn mapped(
    xs: impl IntoIterator<Item = u32>,
    f: impl Fn(u32) -> u32 + Send + Clone + 'static,
) -> Result<Vec<u32>, Error> {
    let handles: Vec<_> = xs
        .into_iter()
        .map(|x| {
            let f = f.clone();
            s.spawn(async move { Ok(f(x)) })
        })
        .collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await?);
    }
    Ok(out)
}

#[scoped]
async fn shown(x: impl std::fmt::Display) -> String {
    x.to_string()
}

#[scoped]
async fn opaque_option(x: u32) -> Option<impl std::fmt::Display> {
    Some(x + 1)
}

trait Service {
    fn id(&self) -> u32;

    #[scoped(s)]
    async fn call(&self) -> Result<u32, Error>
    where
        Self: Sync,
    {
        let id = self.id();
        Ok(s.spawn(async move { Ok(id + 1) }).await?)
    }
}

struct Svc;

impl Service for Svc {
    fn id(&self) -> u32 {
        41
    }
}

#[scoped]
async fn not_send_body() -> u32 {
    let rc = std::rc::Rc::new(5);
    tokio::task::yield_now().await;
    *rc
}

rt_test! {
    async fn m2_methods_generics_lifetimes_impl_trait_return_right_values() {
        assert_eq!(
            Acc { base: 1 }
                .by_value(3)
                .within(HANG, "`by_value`'s return")
                .await,
            Ok(7)
        );
        let acc = Acc { base: 10 };
        assert_eq!(
            acc.by_ref(5).within(HANG, "`by_ref`'s return").await,
            Ok(15)
        );
        assert_eq!(
            acc.plain_by_ref()
                .within(HANG, "`plain_by_ref`'s return")
                .await,
            100
        );
        let mut acc = Acc { base: 10 };
        assert_eq!(
            acc.by_mut(5).within(HANG, "`by_mut`'s return").await,
            Ok(15)
        );
        assert_eq!(acc.base, 15);
        assert_eq!(
            acc.option_by_mut()
                .within(HANG, "`option_by_mut`'s return")
                .await,
            Some(16)
        );
        assert_eq!(acc.base, 16);

        assert_eq!(
            sum_all(vec![1u64, 2, 3, 4])
                .within(HANG, "`sum_all`'s return")
                .await,
            Ok(10)
        );
        assert_eq!(
            sum_all(std::iter::empty::<i32>())
                .within(HANG, "`sum_all`'s return on no items")
                .await,
            Ok(0)
        );

        let text = String::from("hello structured world");
        assert_eq!(
            first_word(&text)
                .within(HANG, "`first_word`'s return")
                .await,
            Ok("hello")
        );
        let short = String::from("ab");
        assert_eq!(
            longest(&text, &short)
                .within(HANG, "`longest`'s return")
                .await,
            Some(text.as_str())
        );

        assert_eq!(
            mapped(1..=3, |x| x * x)
                .within(HANG, "`mapped`'s return")
                .await,
            Ok(vec![1, 4, 9])
        );
        assert_eq!(shown(42).within(HANG, "`shown`'s return").await, "42");
        assert_eq!(
            opaque_option(1)
                .within(HANG, "`opaque_option`'s return")
                .await
                .map(|d| d.to_string()),
            Some("2".to_owned())
        );
        assert_eq!(
            Svc.call()
                .within(HANG, "the trait method `call`'s return")
                .await,
            Ok(42)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn m2_future_is_send_when_the_body_is() {
    let acc = Acc { base: 1 };
    let f = acc.by_ref(1);
    assert_send(&f);
    assert_eq!(f.within(HANG, "`by_ref`'s return").await, Ok(2));
    let f = sum_all(vec![1u32, 2]);
    assert_send(&f);
    let f2 = mapped(vec![1, 2], |x| x + 1);
    assert_send(&f2);
    let f3 = first_word("a b");
    assert_send(&f3);
    let f4 = shown("x");
    assert_send(&f4);
    drop((f, f2, f3, f4));

    // Inside a spawned task (needs `Send` of everything held across `.await`).
    let r = tokio::spawn(async move {
        let mut acc = Acc { base: 1 };
        let f = acc.by_mut(2);
        assert_send(&f);
        let a = f.await?;
        let b = sum_all(vec![a, 10]).await?;
        let c = Acc { base: b }.by_value(1).await?;
        let d = mapped(vec![c], |x| x + 1).await?;
        Ok::<_, Error>(d)
    })
    .within(
        HANG,
        "the spawned task's end (it awaits four `#[scoped]` functions)",
    )
    .await
    .unwrap();
    assert_eq!(r, Ok(vec![16]));

    // ...and not `Send` when the body is not.
    assert!(probe(&acc_future()).is_send());
    let nf = not_send_body();
    assert!(!probe(&nf).is_send());
    drop(nf);
    let local = tokio::task::LocalSet::new();
    assert_eq!(
        local
            .run_until(not_send_body())
            .within(HANG, "`run_until` of the `!Send` function's return")
            .await,
        5
    );
}

fn acc_future() -> impl Future<Output = Result<u32, Error>> {
    Acc { base: 0 }.by_value(0)
}

// ---------------------------------------------------------------------------------------------
// M3: `?` and early `return` in a `#[scoped(s)]` body.

#[scoped(s)]
async fn fail_with_question_mark(census: Census) -> Result<u32, Error> {
    s.spawn(parked(&census));
    s.spawn(sleeper(&census, secs(3600)));
    tokio::task::yield_now().await;
    Err::<(), _>(Error::Boom(7))?;
    Ok(1)
}

#[scoped(s)]
async fn fail_with_return(census: Census) -> Result<u32, Error> {
    s.spawn(parked(&census));
    s.spawn(sleeper(&census, secs(3600)));
    if census.made() == 2 {
        return Err(Error::Boom(8));
    }
    Ok(1)
}

#[scoped(s)]
async fn fail_with_question_mark_conversion(census: Census) -> Result<u32, Error> {
    s.spawn(parked(&census));
    // `Cancelled` converts into `Error` with `?`, as in the undecorated function.
    Err(Cancelled::new(CancelReason::Shutdown))?;
    Ok(1)
}

rt_test! {
    async fn m3_question_mark_cancels_and_awaits_children_before_returning() {
        let census = Census::new();
        let r = fail_with_question_mark(census.clone())
            .within(
                HANG,
                "the return after `?` (its children cancelled and awaited)",
            )
            .await;
        assert_eq!(
            census.alive(),
            0,
            "every child dropped before the function returned"
        );
        assert_eq!(census.made(), 2);
        assert_eq!(r, Err(Error::Boom(7)));

        let census = Census::new();
        let r = fail_with_question_mark_conversion(census.clone())
            .within(HANG, "the return after `?` converting `Cancelled`")
            .await;
        assert_eq!(census.alive(), 0);
        assert_eq!(r, Err(Error::Cancelled(CancelReason::Shutdown)));
    }
}

rt_test! {
    async fn m3_early_return_err_cancels_and_awaits_children_before_returning() {
        let census = Census::new();
        let r = fail_with_return(census.clone())
            .within(
                HANG,
                "the return after an early `return Err` (its children cancelled and awaited)",
            )
            .await;
        assert_eq!(
            census.alive(),
            0,
            "every child dropped before the function returned"
        );
        assert_eq!(census.made(), 2);
        assert_eq!(r, Err(Error::Boom(8)));
    }
}

#[scoped(s)]
async fn early_ok(census: Census, early: bool) -> Result<u32, Error> {
    s.spawn(sleeper(&census, secs(2)));
    s.spawn(sleeper(&census, secs(3)));
    if early {
        return Ok(5);
    }
    sleep(secs(1)).await;
    Ok(6)
}

#[scoped(s)]
async fn early_none(census: Census, x: Option<u32>) -> Option<u32> {
    s.spawn(sleeper(&census, secs(2)));
    let v = x?;
    Some(v + 1)
}

#[scoped(s)]
async fn early_plain(census: Census, early: bool) -> u32 {
    s.spawn(sleeper(&census, secs(4)));
    if early {
        return 1;
    }
    2
}

#[tokio::test(start_paused = true)]
async fn m3_early_return_without_cancellation_waits_for_children() {
    let census = Census::new();
    let start = Instant::now();
    assert_eq!(
        early_ok(census.clone(), true)
            .within(PAUSED_HANG, "`early_ok`'s return after its children")
            .await,
        Ok(5)
    );
    assert_eq!(
        start.elapsed(),
        secs(3),
        "returned when the last child finished"
    );
    assert_eq!(census.alive(), 0);
    assert_eq!(census.made(), 2);

    let start = Instant::now();
    assert_eq!(
        early_ok(census.clone(), false)
            .within(
                PAUSED_HANG,
                "`early_ok`'s return after its body and children"
            )
            .await,
        Ok(6)
    );
    assert_eq!(start.elapsed(), secs(3));
    assert_eq!(census.alive(), 0);

    let start = Instant::now();
    assert_eq!(
        early_none(census.clone(), None)
            .within(
                PAUSED_HANG,
                "`early_none`'s return after `?` on `None` and its child"
            )
            .await,
        None
    );
    assert_eq!(
        start.elapsed(),
        secs(2),
        "`?` on `None` still waits for the child"
    );
    assert_eq!(census.alive(), 0);
    let start = Instant::now();
    assert_eq!(
        early_none(census.clone(), Some(1))
            .within(PAUSED_HANG, "`early_none`'s return after its child")
            .await,
        Some(2)
    );
    assert_eq!(start.elapsed(), secs(2));

    let start = Instant::now();
    assert_eq!(
        early_plain(census.clone(), true)
            .within(PAUSED_HANG, "`early_plain`'s early return after its child")
            .await,
        1
    );
    assert_eq!(start.elapsed(), secs(4));
    assert_eq!(
        early_plain(census.clone(), false)
            .within(PAUSED_HANG, "`early_plain`'s return after its child")
            .await,
        2
    );
    assert_eq!(start.elapsed(), secs(8));
    assert_eq!(census.alive(), 0);
}

// ---------------------------------------------------------------------------------------------
// M4: `return` and `?` inside `scope!`.

#[tokio::test(start_paused = true)]
async fn m4_return_in_scope_ends_the_body_and_the_scope_waits() {
    let census = Census::new();
    let after = Counter::new();
    let early = std::hint::black_box(true);
    let start = Instant::now();
    // Bounded in an `async` block that yields a 1-tuple: a `return` or `?` escaping the
    // scope's body would not compile there, as in the test function itself.
    let (r,) = async {
        let r: Result<u32, Cancelled> = scope!(|s| {
            s.spawn(async {
                sleep(secs(2)).await;
                Ok(())
            });
            let g = census.guard();
            s.spawn(async move {
                let _g = g;
                sleep(secs(3)).await;
                Ok(())
            });
            if early {
                return Ok(5);
            }
            after.inc();
            Ok(6)
        });
        (r,)
    }
    .within(PAUSED_HANG, "the scope's return after its children")
    .await;
    // The enclosing function goes on: `return` left only the scope's body.
    assert_eq!(r, Ok(5));
    assert_eq!(after.get(), 0, "the rest of the body did not run");
    assert_eq!(
        start.elapsed(),
        secs(3),
        "the scope waited for its children"
    );
    assert_eq!(census.alive(), 0);
}

#[tokio::test(start_paused = true)]
async fn m4_question_mark_in_scope_ends_the_body_and_the_scope_waits() {
    let census = Census::new();
    let after = Counter::new();
    let finished = Counter::new();
    let start = Instant::now();
    // A 1-tuple, as above: a `return` or `?` escaping the scope's body would not compile.
    let (r,) = async {
        let r: Result<u32, Error> = scope!(|s| {
            s.spawn(parked(&census));
            let done = finished.clone();
            // Shielded: the failure cancels the scope, but this child finishes its work.
            s.spawn(shield(async move {
                sleep(secs(2)).await;
                done.inc();
                Ok(())
            }));
            // Let the shielded child start its work, then fail.
            sleep(ms(10)).await;
            Err::<(), _>(Error::Boom(4))?;
            after.inc();
            Ok(1)
        });
        (r,)
    }
    .within(
        PAUSED_HANG,
        "the scope's return after `?` and its shielded child",
    )
    .await;
    assert_eq!(r, Err(Error::Boom(4)));
    assert_eq!(after.get(), 0, "`?` ended the body");
    assert_eq!(finished.get(), 1, "the scope waited for the shielded child");
    assert_eq!(start.elapsed(), secs(2));
    assert_eq!(
        census.alive(),
        0,
        "the parked child was cancelled and dropped"
    );

    // `?` with a successful value goes on; the scope waits for a child that finishes later.
    let start = Instant::now();
    // A 1-tuple, as above: a `return` or `?` escaping the scope's body would not compile.
    let (r,) = async {
        let r: Result<u32, Error> = scope!(move |s| {
            let h = s.spawn(async {
                sleep(secs(1)).await;
                Ok(20)
            });
            s.spawn(async {
                sleep(secs(5)).await;
                Ok(0)
            });
            let v = h.await?;
            Ok(v + 1)
        });
        (r,)
    }
    .within(PAUSED_HANG, "the scope's return after its later child")
    .await;
    assert_eq!(r, Ok(21));
    assert_eq!(start.elapsed(), secs(5));
}

#[tokio::test(start_paused = true)]
async fn m4_return_in_block_form_with_timeout() {
    for early in [true, false] {
        let start = Instant::now();
        // A 1-tuple, as above: a `return` or `?` escaping the scope's body would not compile.
        let (r,) = async {
            let r = scope!(timeout = "1s", {
                if early {
                    return Ok::<_, Cancelled>(1);
                }
                sleep(secs(5)).await;
                Ok(2)
            });
            (r,)
        }
        .within(PAUSED_HANG, "the block-form scope's return")
        .await;
        if early {
            assert_eq!(r, Ok(1));
            assert_eq!(start.elapsed(), Duration::ZERO);
        } else {
            assert_eq!(r.unwrap_err().reason(), CancelReason::DeadlineExceeded);
            assert_eq!(start.elapsed(), secs(1));
        }
    }
}

/// A block-form scope given both a `timeout` and a `deadline` ends at the earlier of the two,
/// whichever option names it.
#[tokio::test(start_paused = true)]
async fn block_form_with_timeout_and_deadline_ends_at_the_earlier() {
    for (deadline, ends) in [(secs(1), secs(1)), (secs(10), secs(3))] {
        let start = Instant::now();
        let r = async {
            scope!(timeout = "3s", deadline = start + deadline, {
                sleep(secs(5)).await;
                Ok::<_, Cancelled>(())
            })
        }
        .within(PAUSED_HANG, "the block-form scope's end at its deadline")
        .await;
        assert_eq!(r.unwrap_err().reason(), CancelReason::DeadlineExceeded);
        assert_eq!(start.elapsed(), ends, "deadline after {deadline:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// A `#[scoped]` library function nests in the caller's tree.

#[scoped(s)]
async fn library_worker(census: Census, seen: Slot<CancelReason>) -> Result<(), Error> {
    let g = census.guard();
    s.spawn(async move {
        let _g = g;
        let why = taskscope::cancelled().await;
        seen.push(why.reason());
        let e = checkpoint().await.unwrap_err();
        seen.push(e.reason());
        pending::<()>().await;
        Ok(())
    });
    s.spawn(parked(&census));
    pending::<()>().await;
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn library_fn_in_a_child_is_cancelled_with_the_outer_scope() {
    let census = Census::new();
    let seen = Slot::default();
    let mut outer = None;
    let start = Instant::now();
    let r: Result<(), Error> = taskscope::Scope::builder()
        .grace(ms(100))
        .run(async |s| {
            outer = Some(s.cancel_handle());
            s.spawn(library_worker(census.clone(), seen.clone()));
            let cancel = s.cancel_handle();
            s.spawn(async move {
                sleep(secs(1)).await;
                cancel.cancel();
                Ok(())
            });
            pending::<()>().await;
            Ok(())
        })
        .within(
            PAUSED_HANG,
            "the outer scope's return after its cancel and grace",
        )
        .await;
    assert_eq!(r, Err(Error::Cancelled(CancelReason::Explicit)));
    assert_eq!(census.made(), 2);
    assert_eq!(census.alive(), 0, "the library's children are gone");
    assert_eq!(outer.unwrap().reason(), Some(CancelReason::Explicit));
    assert_eq!(
        seen.get(),
        vec![CancelReason::ParentCancelled, CancelReason::ParentCancelled],
        "the library's child saw the cancellation from above"
    );
    assert_eq!(
        start.elapsed(),
        secs(1) + ms(100),
        "the outer grace, then the drop"
    );
}

rt_test! {
    async fn library_fn_in_a_child_is_cancelled_with_the_outer_scope_on_every_runtime() {
        let census = Census::new();
        let seen = Slot::default();
        let r: Result<(), Error> = scope(async |s| {
            let lib = s.spawn(library_worker(census.clone(), seen.clone()));
            let cancel = s.cancel_handle();
            s.spawn(async move {
                tokio::task::yield_now().await;
                cancel.cancel();
                Ok(())
            });
            lib.await?;
            Ok(())
        })
        .within(
            HANG,
            "the cancelled scope's return (the library function's children awaited)",
        )
        .await;
        assert_eq!(r, Err(Error::Cancelled(CancelReason::Explicit)));
        assert_eq!(census.alive(), 0);
    }
}

// ---------------------------------------------------------------------------------------------
// Nested `#[scoped(timeout = ..)]` functions: the earliest deadline wins.

#[scoped(timeout = "10s")]
async fn inner_10s(seen: Slot<Option<Instant>>) -> Result<u32, Error> {
    seen.push(current_deadline());
    sleep(secs(20)).await;
    Ok(1)
}

#[scoped(timeout = "1s")]
async fn outer_1s(seen: Slot<Option<Instant>>) -> Result<u32, Error> {
    seen.push(current_deadline());
    let v = inner_10s(seen).await?;
    Ok(v + 1)
}

#[scoped(timeout = "1s")]
async fn inner_1s(seen: Slot<Option<Instant>>) -> Result<u32, Error> {
    seen.push(current_deadline());
    sleep(secs(20)).await;
    Ok(1)
}

#[scoped(timeout = "10s")]
async fn outer_10s(seen: Slot<Option<Instant>>, log: Slot<CancelReason>) -> Result<u32, Error> {
    seen.push(current_deadline());
    let r = inner_1s(seen.clone()).await;
    if let Err(Error::Cancelled(reason)) = &r {
        log.push(*reason);
    }
    // The outer scope goes on after the inner one timed out: its own deadline is later.
    seen.push(current_deadline());
    Ok(r? + 1)
}

#[tokio::test(start_paused = true)]
async fn nested_scoped_timeouts_the_earliest_wins() {
    // The outer 1s fires first though the inner says 10s.
    let seen = Slot::default();
    let start = Instant::now();
    let r = outer_1s(seen.clone())
        .within(PAUSED_HANG, "`outer_1s`'s return at its deadline")
        .await;
    assert_eq!(r, Err(Error::Cancelled(CancelReason::DeadlineExceeded)));
    assert_eq!(start.elapsed(), secs(1));
    assert_eq!(
        seen.get(),
        vec![Some(start + secs(1)), Some(start + secs(1))],
        "inside the inner function the effective deadline is the outer's"
    );
    assert_eq!(current_deadline(), None);

    // The inner 1s inside an outer 10s: the inner fails, the outer sees the inner's error.
    let seen = Slot::default();
    let log = Slot::default();
    let start = Instant::now();
    let r = outer_10s(seen.clone(), log.clone())
        .within(PAUSED_HANG, "`outer_10s`'s return after the inner timeout")
        .await;
    assert_eq!(r, Err(Error::Cancelled(CancelReason::DeadlineExceeded)));
    assert_eq!(start.elapsed(), secs(1));
    assert_eq!(log.get(), vec![CancelReason::DeadlineExceeded]);
    assert_eq!(
        seen.get(),
        vec![
            Some(start + secs(10)),
            Some(start + secs(1)),
            Some(start + secs(10))
        ]
    );

    // Under an outer `CancelScope` deadline, too.
    let seen = Slot::default();
    let start = Instant::now();
    let r = taskscope::move_on_after(ms(300), outer_1s(seen.clone()))
        .within(
            PAUSED_HANG,
            "`move_on_after`'s `None` at the outer deadline",
        )
        .await;
    assert_eq!(r, None);
    assert_eq!(start.elapsed(), ms(300));
    assert_eq!(
        seen.get(),
        vec![Some(start + ms(300)), Some(start + ms(300))]
    );
}

// ---------------------------------------------------------------------------------------------
// Timeouts by return type.

#[scoped(s, timeout = "1s")]
async fn maybe_slow(census: Census, d: Duration) -> Option<u32> {
    s.spawn(sleeper(&census, d / 2));
    sleep(d).await;
    Some(7)
}

#[scoped(timeout = "1s")]
async fn slow_result(d: Duration) -> Result<u32, Error> {
    sleep(d).await;
    Ok(1)
}

#[scoped(timeout = Duration::from_millis(1500))]
async fn slow_io(d: Duration) -> Result<u32, std::io::Error> {
    sleep(d).await;
    Ok(1)
}

#[tokio::test(start_paused = true)]
async fn option_return_moves_on_with_none_at_the_deadline() {
    let census = Census::new();
    let start = Instant::now();
    assert_eq!(
        maybe_slow(census.clone(), ms(500))
            .within(PAUSED_HANG, "`maybe_slow`'s return before the deadline")
            .await,
        Some(7)
    );
    assert_eq!(start.elapsed(), ms(500));

    let start = Instant::now();
    assert_eq!(
        maybe_slow(census.clone(), secs(5))
            .within(PAUSED_HANG, "`maybe_slow`'s `None` at the deadline")
            .await,
        None
    );
    assert_eq!(start.elapsed(), secs(1), "moved on at the deadline");
    assert_eq!(census.made(), 2);
    assert_eq!(census.alive(), 0);
}

#[tokio::test(start_paused = true)]
async fn result_return_fails_with_deadline_exceeded_at_the_deadline() {
    let start = Instant::now();
    assert_eq!(
        slow_result(ms(999))
            .within(PAUSED_HANG, "`slow_result`'s return before the deadline")
            .await,
        Ok(1)
    );
    assert_eq!(start.elapsed(), ms(999));
    let start = Instant::now();
    assert_eq!(
        slow_result(secs(5))
            .within(PAUSED_HANG, "`slow_result`'s error at the deadline")
            .await,
        Err(Error::Cancelled(CancelReason::DeadlineExceeded))
    );
    assert_eq!(start.elapsed(), secs(1));

    let start = Instant::now();
    let e = slow_io(secs(5))
        .within(PAUSED_HANG, "`slow_io`'s error at the deadline")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
    assert_eq!(start.elapsed(), ms(1500));
}

// ---------------------------------------------------------------------------------------------
// The `grace` option.

#[scoped(s, timeout = "1s", grace = "100ms")]
async fn with_grace(log: Slot<(&'static str, Duration)>, start: Instant) -> Result<(), Error> {
    let l = log.clone();
    s.spawn(async move {
        let why = taskscope::cancelled().await;
        assert_eq!(why.reason(), CancelReason::DeadlineExceeded);
        l.push(("a-start", start.elapsed()));
        sleep(ms(50)).await;
        l.push(("a-done", start.elapsed()));
        Ok(())
    });
    let l = log.clone();
    s.spawn(async move {
        taskscope::cancelled().await;
        l.push(("b-start", start.elapsed()));
        sleep(ms(200)).await;
        l.push(("b-done", start.elapsed()));
        Ok(())
    });
    pending::<()>().await;
    Ok(())
}

#[scoped(s, timeout = "1s")]
async fn without_grace(log: Slot<(&'static str, Duration)>, start: Instant) -> Result<(), Error> {
    s.spawn(async move {
        taskscope::cancelled().await;
        log.push(("start", start.elapsed()));
        sleep(ms(50)).await;
        log.push(("done", start.elapsed()));
        Ok(())
    });
    pending::<()>().await;
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn grace_option_lets_children_clean_up() {
    let log = Slot::default();
    let start = Instant::now();
    let r = with_grace(log.clone(), start)
        .within(
            PAUSED_HANG,
            "`with_grace`'s return after the deadline and the grace",
        )
        .await;
    assert_eq!(r, Err(Error::Cancelled(CancelReason::DeadlineExceeded)));
    assert_eq!(
        log.get(),
        vec![
            ("a-start", secs(1)),
            ("b-start", secs(1)),
            ("a-done", secs(1) + ms(50)),
        ],
        "both saw the soft cancel; only the one within the grace finished its cleanup"
    );
    assert_eq!(start.elapsed(), secs(1) + ms(100));

    let log = Slot::default();
    let start = Instant::now();
    let r = without_grace(log.clone(), start)
        .within(PAUSED_HANG, "`without_grace`'s return at the deadline")
        .await;
    assert_eq!(r, Err(Error::Cancelled(CancelReason::DeadlineExceeded)));
    assert!(
        !log.get().contains(&("done", secs(1) + ms(50))),
        "without grace nothing gets time to clean up: {:?}",
        log.get()
    );
    assert_eq!(start.elapsed(), secs(1));
}

// ---------------------------------------------------------------------------------------------
// `local`: a `Local` scope, whose local children need not be `Send`.

/// `!Send` local children: each holds an `Rc` across an await. The function's future is
/// `!Send` (it holds them), so it runs on a current-thread runtime.
#[scoped(s, local)]
async fn local_rc_children(n: u32) -> Result<u32, Error> {
    let total = Rc::new(Cell::new(0));
    let handles: Vec<_> = (1..=n)
        .map(|i| {
            let total = total.clone();
            s.spawn_local(async move {
                tokio::task::yield_now().await; // `total` (an `Rc`) lives across this await
                total.set(total.get() + i);
                Ok(i)
            })
        })
        .collect();
    let mut sum = 0;
    for h in handles {
        sum += h.await?;
    }
    assert_eq!(sum, total.get());
    Ok(sum)
}

/// A failing `!Send` local child still fails the scope (a `local` scope fails fast).
#[scoped(s, local, name = "local_fails")]
async fn local_child_fails(census: Census) -> Result<u32, Error> {
    let rc = Rc::new(5);
    s.spawn(parked(&census));
    s.spawn_local(async move {
        tokio::task::yield_now().await;
        Err::<(), _>(Error::Boom(*rc))
    });
    pending::<()>().await;
    Ok(0)
}

/// `local` with `timeout` and `limit`: at most one local child runs at a time, and the
/// deadline ends the scope (`Option`: `None`).
#[scoped(s, local, timeout = "1s", limit = 1)]
async fn local_limited(running: Rc<Cell<(u32, u32)>>, d: Duration) -> Option<u32> {
    for _ in 0..3 {
        let running = running.clone();
        s.spawn_local(async move {
            let (now, max) = running.get();
            running.set((now + 1, max.max(now + 1)));
            sleep(d).await;
            let (now, max) = running.get();
            running.set((now - 1, max));
            Ok(())
        });
    }
    Some(3)
}

/// `local` with a plain return type: the children's error type is `Cancelled`.
#[scoped(local, s)]
async fn local_plain(cell: &RefCell<Vec<u32>>) -> usize {
    for i in 0..3 {
        s.spawn_local(async move {
            let mine = Rc::new(i);
            tokio::task::yield_now().await;
            cell.borrow_mut().push(*mine);
            Ok(())
        });
    }
    cell.borrow().len() // the children have not run yet
}

#[tokio::test(flavor = "current_thread")]
async fn local_option_runs_rc_children_across_awaits() {
    let f = local_rc_children(4);
    assert!(!probe(&f).is_send(), "a `local` scope's future is `!Send`");
    assert_eq!(
        f.within(HANG, "`local_rc_children(4)`'s return").await,
        Ok(10)
    );
    assert_eq!(
        local_rc_children(0)
            .within(HANG, "`local_rc_children(0)`'s return")
            .await,
        Ok(0)
    );

    let census = Census::new();
    assert_eq!(
        local_child_fails(census.clone())
            .within(
                HANG,
                "`local_child_fails`'s return of its local child's error"
            )
            .await,
        Err(Error::Boom(5))
    );
    assert_eq!(census.made(), 1);
    assert_eq!(
        census.alive(),
        0,
        "the spawned sibling was cancelled and awaited"
    );

    let cell = RefCell::new(Vec::new());
    assert_eq!(
        local_plain(&cell)
            .within(HANG, "`local_plain`'s return after its local children")
            .await,
        0
    );
    let mut seen = cell.into_inner();
    seen.sort_unstable();
    assert_eq!(seen, [0, 1, 2], "the scope waited for its local children");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn local_option_combines_with_timeout_and_limit() {
    let running = Rc::new(Cell::new((0, 0)));
    let start = Instant::now();
    assert_eq!(
        local_limited(running.clone(), ms(100))
            .within(
                PAUSED_HANG,
                "`local_limited`'s return after its three children"
            )
            .await,
        Some(3)
    );
    assert_eq!(start.elapsed(), ms(300), "one local child at a time");
    assert_eq!(running.get(), (0, 1));

    let running = Rc::new(Cell::new((0, 0)));
    let start = Instant::now();
    assert_eq!(
        local_limited(running.clone(), secs(5))
            .within(PAUSED_HANG, "`local_limited`'s `None` at the deadline")
            .await,
        None
    );
    assert_eq!(start.elapsed(), secs(1), "moved on at the deadline");
    assert_eq!(
        running.get(),
        (1, 1),
        "the one running child was dropped mid-sleep"
    );
}

/// In a `LocalSet` on a multi-thread runtime, as `ScopeBuilder::local`'s docs say.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_option_in_a_local_set() {
    let set = tokio::task::LocalSet::new();
    let r = set
        .run_until(async {
            let a = tokio::task::spawn_local(local_rc_children(3))
                .await
                .unwrap();
            let b = local_rc_children(2).await;
            (a, b)
        })
        .within(HANG, "`run_until` of two `local` scopes' returns")
        .await;
    assert_eq!(r, (Ok(6), Ok(3)));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn scope_macro_local_option() {
    // Borrowed state and `Rc`s across awaits, in the closure form: the children borrow what
    // outlives the `scope!`, and the scope waits for them.
    let log = RefCell::new(Vec::new());
    let shared = Rc::new(String::from("rc"));
    // A 1-tuple, as above: a `return` or `?` escaping the scope's body would not compile.
    let (r,) = async {
        let r = scope!(local, name = "ui", |s| {
            let a = s.spawn_local({
                let shared = shared.clone();
                let log = &log;
                async move {
                    sleep(ms(10)).await;
                    log.borrow_mut().push(format!("{shared}-a"));
                    Ok(1)
                }
            });
            let b = s.spawn_local(async {
                let mine = Rc::new(2);
                tokio::task::yield_now().await;
                log.borrow_mut().push(format!("{shared}-b"));
                Ok(*mine)
            });
            Ok::<_, Cancelled>(a.await? + b.await?)
        });
        (r,)
    }
    .within(
        PAUSED_HANG,
        "the `local` scope's return after its local children",
    )
    .await;
    assert_eq!(r, Ok(3));
    assert_eq!(log.into_inner(), ["rc-b", "rc-a"]);

    // With a timeout: the deadline drops the `!Send` child that would never end.
    let start = Instant::now();
    let (r,) = async {
        let r = scope!(local, timeout = "1s", move |s| -> Result<(), Cancelled> {
            let rc = Rc::new(());
            s.spawn_local(async move {
                let _rc = rc;
                pending::<()>().await;
                Ok(())
            });
            Ok(())
        });
        (r,)
    }
    .within(PAUSED_HANG, "the `local` scope's error at its deadline")
    .await;
    assert_eq!(r.unwrap_err().reason(), CancelReason::DeadlineExceeded);
    assert_eq!(start.elapsed(), secs(1));
}
