//! Racing attempts with staggered starts (`Race`, `race`): Happy Eyeballs, RFC 8305.
//!
//! The schedule tests are time-based: they run under `start_paused = true` (current_thread)
//! and check exact instants relative to the test's start. The scheduler-sensitive ones run on
//! the three runtimes through `rt_test!`.

mod common;

use std::future::pending;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use common::{
    BoxError, Census, Error, HANG, PAUSED_HANG, Slot, Within, ms, require_send, rt_test, secs,
};
use futures_util::FutureExt;
use taskscope::combinators::race;
use taskscope::future::Race;
use taskscope::{CancelReason, Cancelled, move_on_after, scope};
use tokio::time::{Instant, sleep};

/// What an attempt does once started.
#[derive(Clone, Copy)]
enum Plan {
    /// Succeeds with its index after this long.
    Win(Duration),
    /// Fails with `Boom(index)` after this long.
    Fail(Duration),
    /// Never finishes.
    Hang,
}

/// Attempt `i`: records when it started (relative to `t0`) into `starts`, holds a census
/// guard from construction on (an attempt never started must be dropped too), then follows
/// its plan.
fn attempt(
    i: u32,
    plan: Plan,
    t0: Instant,
    starts: &Slot<(u32, Duration)>,
    census: &Census,
) -> impl Future<Output = Result<u32, Error>> + Send + 'static + use<> {
    let (starts, g) = (starts.clone(), census.guard());
    async move {
        let _g = g;
        starts.push((i, t0.elapsed()));
        match plan {
            Plan::Win(d) => {
                sleep(d).await;
                Ok(i)
            }
            Plan::Fail(d) => {
                sleep(d).await;
                Err(Error::Boom(i))
            }
            Plan::Hang => pending().await,
        }
    }
}

fn attempts(
    plans: &[Plan],
    t0: Instant,
    starts: &Slot<(u32, Duration)>,
    census: &Census,
) -> Vec<impl Future<Output = Result<u32, Error>> + Send + 'static + use<>> {
    (0u32..)
        .zip(plans)
        .map(|(i, &p)| attempt(i, p, t0, starts, census))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn stagger_starts_the_next_attempt_after_the_delay_or_when_the_previous_fails() {
    let (t0, starts, census) = (Instant::now(), Slot::default(), Census::new());
    let plans = [
        Plan::Hang,         // 0: starts at 0, never answers
        Plan::Fail(ms(50)), // 1: starts at 250 (the delay), fails at 300
        Plan::Win(ms(100)), // 2: starts at 300 (the failure, not 500), wins at 400
        Plan::Win(ms(0)),   // 3: would start at 550: never starts
    ];
    let r = Race::new()
        .stagger(ms(250))
        .run(attempts(&plans, t0, &starts, &census))
        .within(PAUSED_HANG, "the race's return of the winner")
        .await;
    assert_eq!(
        census.alive(),
        0,
        "the losers were dropped before run returned"
    );
    assert_eq!(r, Ok(2), "the winner's value");
    assert_eq!(t0.elapsed(), ms(400));
    assert_eq!(starts.get(), [(0, ms(0)), (1, ms(250)), (2, ms(300))]);
    assert_eq!(census.made(), 4);
}

#[tokio::test(start_paused = true)]
async fn the_delay_restarts_when_an_attempt_starts_early() {
    let (t0, starts, census) = (Instant::now(), Slot::default(), Census::new());
    let plans = [
        Plan::Fail(ms(100)), // 0: fails at 100
        Plan::Hang,          // 1: starts at 100
        Plan::Hang,          // 2: starts at 350 = 100 + 250, not at 500
        Plan::Win(ms(10)),   // 3: starts at 600, wins at 610
    ];
    let r = Race::new()
        .stagger(ms(250))
        .run(attempts(&plans, t0, &starts, &census))
        .within(
            PAUSED_HANG,
            "the race's return of the winner after a restarted delay",
        )
        .await;
    assert_eq!(census.alive(), 0);
    assert_eq!(r, Ok(3));
    assert_eq!(
        starts.get(),
        [(0, ms(0)), (1, ms(100)), (2, ms(350)), (3, ms(600))]
    );
    assert_eq!(t0.elapsed(), ms(610));
}

#[tokio::test(start_paused = true)]
async fn only_the_latest_attempt_failing_starts_the_next_early() {
    let (t0, starts, census) = (Instant::now(), Slot::default(), Census::new());
    let plans = [
        Plan::Fail(ms(300)), // 0: fails at 300, while 1 (started at 250) still runs
        Plan::Hang,          // 1
        Plan::Win(ms(0)),    // 2: starts at 500 (250 after 1), not at 300
    ];
    let r = Race::new()
        .stagger(ms(250))
        .run(attempts(&plans, t0, &starts, &census))
        .within(
            PAUSED_HANG,
            "the race's return after the latest attempt failed",
        )
        .await;
    assert_eq!(census.alive(), 0);
    assert_eq!(r, Ok(2));
    assert_eq!(starts.get(), [(0, ms(0)), (1, ms(250)), (2, ms(500))]);
}

#[tokio::test(start_paused = true)]
async fn all_failing_returns_every_error_in_attempt_order() {
    let (t0, starts, census) = (Instant::now(), Slot::default(), Census::new());
    // With a stagger: each failure starts the next at once.
    let plans = [Plan::Fail(ms(30)), Plan::Fail(ms(10)), Plan::Fail(ms(20))];
    let r = Race::new()
        .stagger(ms(250))
        .run(attempts(&plans, t0, &starts, &census))
        .within(PAUSED_HANG, "the race's return of every attempt's error")
        .await;
    let errors = r.unwrap_err();
    assert_eq!(errors.first(), &Error::Boom(0));
    assert_eq!(
        errors.into_vec(),
        [Error::Boom(0), Error::Boom(1), Error::Boom(2)]
    );
    assert_eq!(starts.get(), [(0, ms(0)), (1, ms(30)), (2, ms(40))]);
    assert_eq!(t0.elapsed(), ms(60));
    assert_eq!(census.alive(), 0);

    // Without: they fail in the order 1, 2, 0, and are reported in attempt order.
    let (t0, starts) = (Instant::now(), Slot::default());
    let r = race(attempts(&plans, t0, &starts, &census))
        .within(PAUSED_HANG, "the race's return of every attempt's error")
        .await;
    assert_eq!(
        r.unwrap_err().into_vec(),
        [Error::Boom(0), Error::Boom(1), Error::Boom(2)]
    );
    assert_eq!(t0.elapsed(), ms(30));
    assert_eq!(census.alive(), 0);
}

#[tokio::test(start_paused = true)]
async fn without_stagger_all_attempts_start_at_once() {
    let (t0, starts, census) = (Instant::now(), Slot::default(), Census::new());
    let plans = [
        Plan::Win(ms(30)),
        Plan::Fail(ms(5)),
        Plan::Win(ms(20)),
        Plan::Hang,
    ];
    let r = race(attempts(&plans, t0, &starts, &census))
        .within(
            PAUSED_HANG,
            "the race's return with all attempts started at once",
        )
        .await;
    assert_eq!(census.alive(), 0);
    assert_eq!(
        r,
        Ok(2),
        "the first success; a failure does not stop the race"
    );
    assert_eq!(t0.elapsed(), ms(20));
    let mut starts = starts.get();
    starts.sort();
    assert_eq!(starts, [(0, ms(0)), (1, ms(0)), (2, ms(0)), (3, ms(0))]);
}

#[tokio::test(start_paused = true)]
async fn cancelling_the_caller_cancels_and_awaits_every_attempt() {
    let (t0, starts, census) = (Instant::now(), Slot::default(), Census::new());
    let plans = [Plan::Hang; 6];
    let r = move_on_after(
        ms(100),
        Race::new()
            .stagger(ms(30))
            .run(attempts(&plans, t0, &starts, &census)),
    )
    .within(
        PAUSED_HANG,
        "the caller's cancel reaching and awaiting every attempt",
    )
    .await;
    assert_eq!(r, None, "the timeout around the race fired");
    assert_eq!(t0.elapsed(), ms(100));
    assert_eq!(census.made(), 6);
    assert_eq!(
        census.alive(),
        0,
        "started and unstarted attempts were dropped before move_on_after returned"
    );
    assert_eq!(
        starts.get(),
        [(0, ms(0)), (1, ms(30)), (2, ms(60)), (3, ms(90))]
    );
}

#[tokio::test(start_paused = true)]
async fn a_failing_sibling_of_the_race_cancels_it() {
    let (t0, starts, census) = (Instant::now(), Slot::default(), Census::new());
    let plans = [Plan::Hang; 3];
    let r: Result<(), Error> = scope(async |s| {
        s.spawn(async {
            sleep(ms(40)).await;
            Err::<(), _>(Error::Boom(99))
        });
        let won = Race::new()
            .stagger(ms(25))
            .run(attempts(&plans, t0, &starts, &census))
            .await;
        unreachable!("the race was cancelled, it never returns: {won:?}");
    })
    .within(
        PAUSED_HANG,
        "the scope's return after a sibling's failure cancelled the race",
    )
    .await;
    assert_eq!(r, Err(Error::Boom(99)));
    assert_eq!(census.alive(), 0);
    assert_eq!(starts.get(), [(0, ms(0)), (1, ms(25))]);
}

#[tokio::test(start_paused = true)]
async fn an_empty_race_is_an_error() {
    let r = race(Vec::<std::future::Ready<Result<u32, Error>>>::new())
        .within(PAUSED_HANG, "an empty race's return")
        .await;
    assert_eq!(
        r.unwrap_err().into_vec(),
        [Error::Cancelled(CancelReason::Explicit)]
    );
    let r = Race::new()
        .stagger(ms(250))
        .run(Vec::<std::future::Ready<Result<u32, Error>>>::new())
        .within(PAUSED_HANG, "an empty staggered race's return")
        .await;
    assert_eq!(r.unwrap_err().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn stagger_max_starts_the_next_only_on_failure() {
    let (t0, starts, census) = (Instant::now(), Slot::default(), Census::new());
    let plans = [Plan::Fail(secs(3600)), Plan::Win(ms(1))];
    let r = Race::new()
        .stagger(Duration::MAX)
        .run(attempts(&plans, t0, &starts, &census))
        .within(
            PAUSED_HANG,
            "the race's return with the next attempt started only on failure",
        )
        .await;
    assert_eq!(r, Ok(1));
    assert_eq!(starts.get(), [(0, ms(0)), (1, secs(3600))]);
    assert_eq!(census.alive(), 0);
}

type BoxAttempt = std::pin::Pin<Box<dyn Future<Output = Result<u32, Cancelled>> + Send>>;

#[tokio::test(start_paused = true)]
async fn a_panicking_attempt_cancels_the_others_and_is_resumed() {
    let census = Census::new();
    let g = census.guard();
    let hang = async move {
        let _g = g;
        pending::<()>().await;
        Ok::<u32, Cancelled>(1)
    };
    let boom = async {
        sleep(ms(10)).await;
        panic!("attempt panicked");
    };
    let attempts: Vec<BoxAttempt> = vec![Box::pin(hang), Box::pin(boom)];
    let payload = AssertUnwindSafe(race(attempts))
        .catch_unwind()
        .within(PAUSED_HANG, "the race's resume of its attempt's panic")
        .await
        .expect_err("the panic is resumed");
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"attempt panicked"));
    assert_eq!(census.alive(), 0);
}

#[tokio::test(start_paused = true)]
async fn an_enclosing_grace_period_lets_started_attempts_answer_but_starts_no_more() {
    let (t0, starts, census) = (Instant::now(), Slot::default(), Census::new());
    let plans = [Plan::Fail(ms(80)), Plan::Fail(ms(100)), Plan::Win(ms(0))];
    let r: Result<_, Cancelled> = taskscope::Scope::builder()
        .grace(secs(1))
        .run(async |s| {
            let h = s.handle();
            s.spawn(async move {
                sleep(ms(60)).await;
                h.cancel(); // soft: the race goes on for the grace period
                Ok(())
            });
            let r = Race::new()
                .stagger(ms(50))
                .run(attempts(&plans, t0, &starts, &census))
                .await;
            Ok(r)
        })
        .within(
            PAUSED_HANG,
            "the scope's return after the started attempts answered in the grace",
        )
        .await;
    let errors = r.expect("the body completed").unwrap_err().into_vec();
    // 0 and 1 ran to their failure; 2 was due after 1 failed, inside the cancelled scope.
    assert_eq!(
        errors,
        [
            Error::Boom(0),
            Error::Boom(1),
            Error::Cancelled(CancelReason::ParentCancelled)
        ]
    );
    assert_eq!(starts.get(), [(0, ms(0)), (1, ms(50))]);
    assert_eq!(census.alive(), 0);
}

rt_test! {
    async fn simultaneous_winners_one_value_returned_the_other_dropped() {
        let census = Census::new();
        let r = race((0..8u32).map(|i| {
            let g = census.guard();
            async move {
                tokio::task::yield_now().await;
                Ok::<_, Cancelled>((i, g))
            }
        }))
        .within(HANG, "the race's return with one of two simultaneous winners")
        .await;
        let (i, g) = r.expect("one attempt won");
        assert!(i < 8);
        assert_eq!(census.alive(), 1, "only the winner's value is alive");
        drop(g);
        assert_eq!(census.alive(), 0);
    }
}

rt_test! {
    async fn many_races_losers_always_gone_on_return() {
        let census = Census::new();
        for round in 0..200u32 {
            let r = race((0..4u32).map(|i| {
                let g = census.guard();
                async move {
                    let _g = g;
                    for _ in 0..(i + round) % 5 {
                        tokio::task::yield_now().await;
                    }
                    if (i + round) % 3 == 0 {
                        Err(Error::Boom(i))
                    } else {
                        Ok(i)
                    }
                }
            }))
            .within(HANG, "the race's return with its losers gone")
            .await;
            assert_eq!(census.alive(), 0, "round {round}: a loser outlived the race");
            match r {
                Ok(i) => assert!((i + round) % 3 != 0),
                Err(e) => panic!("round {round}: every attempt failed: {e:?}"),
            }
        }
    }
}

#[test]
fn race_futures_are_send() {
    let f = race((0..3).map(|i| async move { Ok::<_, BoxError>(i) }));
    require_send(&f);
    let f = Race::new()
        .stagger(ms(1))
        .run([async { Ok::<_, BoxError>(1) }]);
    require_send(&f);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_race_runs_inside_a_spawned_task() {
    let r = tokio::spawn(async {
        race((1..=3u64).map(|i| async move {
            match i {
                1 => Err::<u64, BoxError>("first fails".into()),
                2 => Ok(i),
                _ => pending().await,
            }
        }))
        .await
        .map_err(|e| e.to_string())
    })
    .within(HANG, "the task's end with the race's value")
    .await
    .unwrap();
    assert_eq!(r, Ok(2));
}

/// Two attempts succeed before the race looks: the first reported wins, and the second's
/// value is dropped as the race stops, not kept until every loser has ended (here the last
/// loser, shielded, ends only once that value is gone).
#[tokio::test(start_paused = true)]
async fn a_second_success_is_dropped_when_the_race_stops_not_when_the_losers_end() {
    type Attempt = std::pin::Pin<
        Box<
            dyn Future<Output = Result<Option<tokio::sync::oneshot::Sender<()>>, Cancelled>> + Send,
        >,
    >;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let attempts: Vec<Attempt> = vec![
        Box::pin(async { Ok(None) }),
        Box::pin(async move { Ok(Some(tx)) }),
        Box::pin(async move {
            taskscope::shield(async move {
                let _ = rx.await;
            })
            .await;
            Ok(None)
        }),
    ];
    let r = race(attempts)
        .within(
            PAUSED_HANG,
            "the race's return once the second success was dropped",
        )
        .await;
    assert!(matches!(r, Ok(None)), "the first attempt won");
}
