//! The examples run over real loopback sockets, so real time: the assertions are about
//! order, outcomes and counts, with timing bounds that follow from the schedule (a timer
//! never fires early) or have wide margins.

mod common;

use std::io;
use std::time::Duration;

use common::{HANG, Within};
use taskscope::CancelReason;

#[allow(dead_code)] // the example's `main`
#[path = "../examples/happy_eyeballs.rs"]
mod happy_eyeballs;

#[allow(dead_code)] // the example's `main`
#[path = "../examples/fetch_profile.rs"]
mod fetch_profile;

async fn happy_eyeballs_report() {
    use happy_eyeballs::{Outcome, STAGGER};

    let r = happy_eyeballs::run()
        .within(HANG, "the happy_eyeballs example's end")
        .await
        .expect("the race has a winner");
    r.print();
    let a = &r.attempts;
    let started = |i: usize| {
        a[i].started
            .unwrap_or_else(|| panic!("attempt {i} started"))
    };

    // Attempt 2 won with its server's greeting.
    assert_eq!(r.winner, 2);
    assert_eq!(r.greeting, "hello from server 2");
    let Outcome::Succeeded { at: won_at } = a[2].outcome else {
        panic!("attempt 2 succeeded: {:?}", a[2].outcome)
    };

    // Attempt 1 waited for the stagger (attempt 0 was still connecting), then was refused.
    assert!(started(1) >= STAGGER, "{a:?}");
    let Outcome::Failed {
        at: refused_at,
        kind,
        ..
    } = a[1].outcome
    else {
        panic!("attempt 1 failed: {:?}", a[1].outcome)
    };
    assert_eq!(kind, io::ErrorKind::ConnectionRefused);

    // Attempt 2 started as soon as attempt 1 failed, well before its stagger was up.
    assert!(refused_at <= started(2), "{a:?}");
    assert!(started(2) < started(1) + STAGGER / 2, "{a:?}");

    // Attempt 3 started on the stagger after attempt 2, before attempt 2 won.
    assert!(started(3) >= 2 * STAGGER, "{a:?}");
    assert!(started(3) < won_at, "{a:?}");

    // The losers were cancelled once attempt 2 won, with their sockets open; the race
    // returned only after they were gone, and their servers read EOF.
    for i in [0, 3] {
        match a[i].outcome {
            Outcome::Cancelled { at, connected } => {
                assert!(connected, "attempt {i} had connected");
                assert!(at >= won_at, "attempt {i} cancelled after the win");
                assert!(
                    at <= r.returned_at,
                    "attempt {i} gone before the race returned"
                );
            }
            ref o => panic!("attempt {i} was cancelled: {o:?}"),
        }
    }
    assert_eq!(r.still_open, 0, "losing attempts still open");
    assert_eq!(r.closed_seen_by_server, [0, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn happy_eyeballs_refused_attempt_starts_next_early_and_losers_are_closed() {
    happy_eyeballs_report().await;
}

#[tokio::test(flavor = "current_thread")]
async fn happy_eyeballs_current_thread() {
    happy_eyeballs_report().await;
}

async fn fetch_profile_report() {
    use fetch_profile::{Error, PartOutcome, TIMEOUT};

    let r = fetch_profile::run()
        .within(HANG, "the fetch_profile example's end")
        .await
        .expect("the service runs");
    r.print();
    let [ok, fail, slow] = &r.runs[..] else {
        panic!("three runs")
    };
    let outcome = |run: &fetch_profile::RunReport, part: &str| {
        run.parts
            .iter()
            .find(|p| p.name == part)
            .unwrap_or_else(|| panic!("{part} started"))
            .outcome
            .clone()
    };
    for run in [ok, fail, slow] {
        let names: Vec<_> = run.parts.iter().map(|p| p.name).collect();
        assert_eq!(names, fetch_profile::PARTS, "user {}", run.user_id);
        assert_eq!(run.live_after, 0, "user {}: part tasks left", run.user_id);
        // The service saw exactly the cancelled parts that had sent their request hang up.
        let mut hung_up: Vec<_> = run
            .parts
            .iter()
            .filter(|p| {
                matches!(
                    p.outcome,
                    PartOutcome::Cancelled {
                        request_sent: true,
                        ..
                    }
                )
            })
            .map(|p| p.name.to_owned())
            .collect();
        hung_up.sort();
        assert_eq!(run.hangups_seen_by_service, hung_up, "user {}", run.user_id);
    }

    // 1: everything in time.
    let profile = ok.result.as_ref().expect("user 1's profile");
    assert_eq!(profile.name, "Ada Lovelace");
    assert_eq!(profile.posts.len(), 2);
    assert_eq!(profile.friends, ["Babbage", "Somerville"]);
    assert!(ok.elapsed < TIMEOUT, "{:?}", ok.elapsed);
    for part in fetch_profile::PARTS {
        assert!(matches!(outcome(ok, part), PartOutcome::Answered { .. }));
    }

    // 2: posts fails, the others are cancelled and the error is returned.
    match &fail.result {
        Err(Error::Service { part, message }) => {
            assert_eq!(*part, "posts");
            assert_eq!(message, "posts database unavailable");
        }
        other => panic!("user 2 failed on posts: {other:?}"),
    }
    assert!(matches!(outcome(fail, "posts"), PartOutcome::Failed { .. }));
    for part in ["user", "friends"] {
        assert!(
            matches!(outcome(fail, part), PartOutcome::Cancelled { .. }),
            "{part} was cancelled"
        );
    }
    assert!(fail.elapsed < TIMEOUT, "{:?}", fail.elapsed);

    // 3: friends is too slow: DeadlineExceeded at the timeout, friends cancelled.
    assert!(
        matches!(
            slow.result,
            Err(Error::Cancelled(CancelReason::DeadlineExceeded))
        ),
        "{:?}",
        slow.result
    );
    assert!(slow.elapsed >= TIMEOUT, "{:?}", slow.elapsed);
    assert!(
        slow.elapsed < TIMEOUT + Duration::from_secs(1),
        "{:?}",
        slow.elapsed
    );
    for part in ["user", "posts"] {
        assert!(matches!(outcome(slow, part), PartOutcome::Answered { .. }));
    }
    assert!(matches!(
        outcome(slow, "friends"),
        PartOutcome::Cancelled {
            request_sent: true,
            ..
        }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_profile_ok_fail_fast_and_deadline_leave_no_tasks() {
    fetch_profile_report().await;
}

#[tokio::test(flavor = "current_thread")]
async fn fetch_profile_current_thread() {
    fetch_profile_report().await;
}

#[allow(dead_code)] // the example's `main`
#[path = "../examples/search_api.rs"]
mod search_api;

async fn search_api_report() {
    let r = search_api::run()
        .within(HANG, "the search_api example's end")
        .await
        .expect("the demo runs");
    r.print();

    // While both requests ran, the tree had both request scopes, under their connections.
    for q in ["rust", "python"] {
        assert!(
            r.tree_both_running
                .contains(&format!("scope \"request q={q}\"")),
            "request q={q} in:\n{}",
            r.tree_both_running
        );
    }
    assert!(r.tree_both_running.contains("scope \"server\""));

    // The client abandoned "rust": its fetch was cancelled, hyper saw the connection close
    // mid-request, and once that connection's scope returned no backend of "rust" ran.
    assert_eq!(r.rust_fetch, Err(CancelReason::Explicit));
    assert_eq!(r.rust_conn.queries, ["rust"]);
    assert!(
        r.rust_conn.how.starts_with("the client went away"),
        "{}",
        r.rust_conn.how
    );
    assert_eq!(r.rust_backends_live_after_abandon, 0);
    let rust = &r.rust_conn.stats[0];
    assert_eq!(rust.started, search_api::BACKENDS.len(), "{rust:?}");
    assert_eq!(rust.live, 0, "{rust:?}");
    assert_eq!(rust.finished + rust.cancelled, rust.started, "{rust:?}");
    assert!(
        rust.cancelled >= 1,
        "the slowest rust backend was cancelled: {rust:?}"
    );
    assert!(
        !r.tree_after_disconnect.contains("request q=rust"),
        "{}",
        r.tree_after_disconnect
    );

    // Only the python results were shown: all three backends answered.
    let shown: Vec<_> = r.shown.iter().map(|s| s.q.as_str()).collect();
    assert_eq!(shown, ["python"], "no stale result");
    assert_eq!(r.shown[0].status, 200);
    assert_eq!(r.shown[0].hits.len(), search_api::BACKENDS.len());
    assert!(r.shown[0].hits.iter().all(|h| h.contains("\"python\"")));
    let python = &r.python_conn.stats[0];
    assert_eq!((python.started, python.finished, python.live), (3, 3, 0));
    assert_eq!(r.python_conn.how, "closed after the response");

    // Shut down by cancelling its scope: it returned with nothing left.
    assert_eq!(r.server.reason, Some(CancelReason::Explicit));
    assert_eq!(r.server.tasks_left, 0);
    assert_eq!(r.server.connections_live, 0);
    assert_eq!(r.server.backends_live, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_api_abandoned_request_leaves_no_zombie_backends() {
    search_api_report().await;
}

#[tokio::test(flavor = "current_thread")]
async fn search_api_current_thread() {
    search_api_report().await;
}

#[allow(dead_code)] // the example's `main`
#[path = "../examples/crawl.rs"]
mod crawl;

async fn crawl_report() {
    use crawl::{HANGS, LIMIT, Outcome, PAGES};

    let r = crawl::run()
        .within(HANG, "the crawl example's end")
        .await
        .expect("the crawl runs");
    r.print();
    assert_eq!(r.crawl_result, Ok(()));

    // Every page reachable from the root was fetched, except the hanging one: it timed out
    // (and the server saw its client give up). The rest were never reached.
    let reachable = crawl::reachable(&r.site);
    let expected: Vec<_> = reachable.iter().copied().filter(|&p| p != HANGS).collect();
    assert_eq!(r.fetched, expected);
    assert_eq!(r.timed_out, [HANGS]);
    assert!(r.failed.is_empty(), "{:?}", r.outcomes);
    let unreachable: Vec<_> = (0..PAGES).filter(|p| !reachable.contains(p)).collect();
    assert_eq!(r.never_reached, unreachable);
    assert!(
        r.never_reached.contains(&36),
        "36 is behind the hanging page"
    );
    assert!(r.fetched.len() >= 30, "{:?}", r.fetched);
    assert_eq!(r.server_saw_give_up, [HANGS]);
    // The links recorded are the site's.
    for (&p, o) in &r.outcomes {
        if let Outcome::Fetched { links, .. } = o {
            assert_eq!(links, &r.site[p].links);
        }
    }

    // The limit held: never more than four page tasks ran at once, and it was reached.
    assert!(r.max_running <= LIMIT, "{}", r.max_running);
    assert!(r.max_running >= 2, "{}", r.max_running);

    // Mid-crawl the tree showed the crawl scope with at most four fetches running.
    assert!(
        r.tree_mid.contains("scope \"crawl\" [running]"),
        "{}",
        r.tree_mid
    );
    let fetching = r.tree_mid.matches("cancel scope \"fetch /p/").count();
    assert_eq!(fetching, r.mid_fetching, "{}", r.tree_mid);
    assert!((1..=LIMIT).contains(&r.mid_fetching), "{}", r.tree_mid);
    assert!(r.mid_tasks >= r.mid_fetching, "{}", r.tree_mid);

    // Nothing left once the crawl scope returned.
    assert_eq!(r.running_after, 0);
    assert_eq!(r.tasks_left, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crawl_limit_timeout_and_no_task_left() {
    crawl_report().await;
}

#[tokio::test(flavor = "current_thread")]
async fn crawl_current_thread() {
    crawl_report().await;
}

#[allow(dead_code)] // the example's `main`
#[path = "../examples/axum_search.rs"]
mod axum_search;

async fn axum_search_report() {
    let r = axum_search::run()
        .within(HANG, "the axum_search example's end")
        .await
        .expect("the demo runs");
    r.print();
    r.check();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_search_abandoned_search_backends_are_cancelled_and_awaited() {
    axum_search_report().await;
}

#[tokio::test(flavor = "current_thread")]
async fn axum_search_current_thread() {
    axum_search_report().await;
}

#[allow(dead_code)] // the example's `main`
#[path = "../examples/deadline_chain.rs"]
mod deadline_chain;

async fn deadline_chain_report() {
    let r = deadline_chain::run()
        .within(HANG, "the deadline_chain example's end")
        .await
        .expect("the chain runs");
    r.print();
    r.check();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadline_chain_budget_shrinks_per_hop_and_runs_out_where_it_is_spent() {
    deadline_chain_report().await;
}

#[tokio::test(flavor = "current_thread")]
async fn deadline_chain_current_thread() {
    deadline_chain_report().await;
}
