//! A chain of services A -> B -> C in memory, under paused time (exact): each hop runs in a
//! request scope of its own server scope (`ServerLayer`) and calls the next through
//! `ClientLayer`, so the root's deadline travels as headers, shrinking at every hop.

// The workspace's shared test helpers (drop-counting `Census`, `Slot`, `ms`, the
// three-runtime `rt_test!`).
#[path = "../../tests/common/mod.rs"]
mod common;

use common::{Census, ms};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use taskscope::{Cancelled, Scope, ScopeHandle};
use taskscope_tower::{ClientLayer, DEADLINE_EXHAUSTED, ServerLayer, Stats, TIMEOUT_MS};
use tokio::time::Instant;
use tower::util::BoxCloneService;
use tower::{Layer, ServiceExt, service_fn};

/// A hop as its caller sees it. Its error type is concrete: `ClientLayer` over a service
/// whose error is already a boxed error, inside a future that must be `Send`, trips rustc's
/// higher-ranked inference (as tower's own `TimeoutLayer` does).
type Hop = BoxCloneService<Request<()>, Response<String>, Infallible>;

/// What each hop saw: (hop, time since the start, budget left, the header it received).
type Log = Arc<Mutex<Vec<(&'static str, Duration, Option<Duration>, Option<String>)>>>;

/// A hop: its handler logs what it sees, does 50 ms of work in a child of its own scope,
/// then calls `next` (through `ClientLayer` with `reserve`) and passes on its status.
fn hop(
    name: &'static str,
    server: ScopeHandle<Cancelled>,
    next: Option<Hop>,
    reserve: Duration,
    start: Instant,
    log: Log,
    live: Census,
) -> (Hop, Stats) {
    let layer = ServerLayer::new(server);
    let stats = layer.stats();
    let next = next.map(|n| ClientLayer::new().reserve(reserve).layer(n));
    let handler = service_fn(move |req: Request<()>| {
        let (next, log, live) = (next.clone(), log.clone(), live.clone());
        async move {
            let left = taskscope::current_deadline().map(|d| d - Instant::now());
            let header = req
                .headers()
                .get(TIMEOUT_MS)
                .map(|v| v.to_str().unwrap().to_owned());
            log.lock()
                .unwrap()
                .push((name, start.elapsed(), left, header));
            let worked = taskscope::scope(async |s| {
                let g = live.guard();
                s.spawn(async move {
                    let _g = g;
                    tokio::time::sleep(ms(50)).await;
                    Ok(())
                })
                .await
            })
            .await;
            if worked.is_err() {
                return Ok(Response::new(format!("{name}: cancelled")));
            }
            let Some(next) = next else {
                return Ok(Response::new(format!("{name}: done")));
            };
            let mut res = match next.oneshot(Request::new(())).await {
                Ok(res) => res,
                Err(e) => {
                    // Not sent: the budget was spent.
                    let c = e.downcast_ref::<Cancelled>().expect("a Cancelled");
                    let mut res = Response::new(format!("{name}: {}", c.reason()));
                    *res.status_mut() = StatusCode::GATEWAY_TIMEOUT;
                    return Ok(res);
                }
            };
            let body = format!("{name} > {}", res.body());
            *res.body_mut() = body;
            Ok::<_, Infallible>(res)
        }
    });
    (BoxCloneService::new(layer.layer(handler)), stats)
}

struct Chain {
    root: Hop,
    stats: [Stats; 3],
}

/// Runs `f` with the chain A -> B -> C, each hop in a server scope of its own; returns once
/// the three server scopes returned (with everything their handlers started).
async fn with_chain<F, Fut, T>(reserve: Duration, log: Log, live: Census, f: F) -> T
where
    F: FnOnce(Chain) -> Fut,
    Fut: Future<Output = T>,
{
    let start = Instant::now();
    let out = Arc::new(Mutex::new(None));
    let o = out.clone();
    // Bounded: a regression fails in seconds (the paused clock jumps to the bound).
    let servers: Result<(), Cancelled> = tokio::time::timeout(
        Duration::from_secs(10),
        Scope::builder().run(async |a| {
            Scope::builder()
                .run(async |b| {
                    Scope::builder()
                        .run(async |c| {
                            let (c, sc) = hop(
                                "C",
                                c.handle(),
                                None,
                                reserve,
                                start,
                                log.clone(),
                                live.clone(),
                            );
                            let (b, sb) = hop(
                                "B",
                                b.handle(),
                                Some(c),
                                reserve,
                                start,
                                log.clone(),
                                live.clone(),
                            );
                            let (a, sa) = hop(
                                "A",
                                a.handle(),
                                Some(b),
                                reserve,
                                start,
                                log.clone(),
                                live.clone(),
                            );
                            *o.lock().unwrap() = Some(
                                f(Chain {
                                    root: a,
                                    stats: [sa, sb, sc],
                                })
                                .await,
                            );
                            Ok(())
                        })
                        .await
                })
                .await
        }),
    )
    .await
    .expect("hang: the chain did not run within its bound");
    assert_eq!(servers, Ok(()));
    out.lock().unwrap().take().expect("the chain ran")
}

#[tokio::test(start_paused = true)]
async fn the_roots_budget_shrinks_hop_by_hop() {
    let log = Log::default();
    let live = Census::new();
    let res = with_chain(ms(0), log.clone(), live.clone(), async |chain| {
        let root = ClientLayer::new().layer(chain.root);
        taskscope::fail_after(ms(300), root.oneshot(Request::new(())))
            .await
            .unwrap()
            .unwrap()
    })
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.body(), "A > B > C: done");
    let log = log.lock().unwrap().clone();
    let seen: Vec<_> = log
        .iter()
        .map(|(n, at, left, h)| (*n, *at, *left, h.clone()))
        .collect();
    assert_eq!(
        seen,
        [
            ("A", ms(0), Some(ms(300)), Some("300".to_owned())),
            ("B", ms(50), Some(ms(250)), Some("250".to_owned())),
            ("C", ms(100), Some(ms(200)), Some("200".to_owned())),
        ]
    );
    assert_eq!(live.alive(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_root_deadline_that_runs_out_mid_chain_unwinds_every_hop() {
    let log = Log::default();
    let live = Census::new();
    let start = Instant::now();
    // 120 ms for three hops of 50 ms: C's deadline passes during its work. With a 5 ms
    // reserve per call, every callee's deadline is before its caller's, so each hop
    // answers before its caller gives up.
    let (res, stats) = with_chain(ms(5), log.clone(), live.clone(), async |chain| {
        let root = ClientLayer::new().reserve(ms(5)).layer(chain.root);
        let res = taskscope::fail_after(ms(120), root.oneshot(Request::new(())))
            .await
            .expect("answered before the root's own deadline")
            .unwrap();
        (res, chain.stats)
    })
    .await;
    // A: 115 at 0; B: 115 - 50 - 5 = 60 at 50; C: 60 - 50 - 5 = 5 at 100, ends at 105.
    assert_eq!(start.elapsed(), ms(105));
    assert_eq!(res.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(res.headers()[DEADLINE_EXHAUSTED], "1");
    let budgets: Vec<_> = log
        .lock()
        .unwrap()
        .iter()
        .map(|(n, _, left, _)| (*n, *left))
        .collect();
    assert_eq!(
        budgets,
        [
            ("A", Some(ms(115))),
            ("B", Some(ms(60))),
            ("C", Some(ms(5)))
        ]
    );
    // C's request scope ended by its deadline; B and A passed C's answer on.
    let [a, b, c] = stats;
    assert_eq!(
        (
            c.deadline_exceeded(),
            b.deadline_exceeded(),
            a.deadline_exceeded()
        ),
        (1, 0, 0)
    );
    assert_eq!(a.disconnected() + b.disconnected() + c.disconnected(), 0);
    assert_eq!(live.alive(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_hop_whose_deadline_passes_in_its_work_answers_and_never_calls_the_next() {
    let log = Log::default();
    let live = Census::new();
    // 100 ms: B gets 100 - 50 - 5 = 45 and needs 50 for its work: its deadline ends the
    // work at 95 and answers 504; C is never called.
    let (res, stats) = with_chain(ms(5), log.clone(), live.clone(), async |chain| {
        let root = ClientLayer::new().layer(chain.root);
        let res = taskscope::fail_after(ms(100), root.oneshot(Request::new(())))
            .await
            .unwrap()
            .unwrap();
        (res, chain.stats)
    })
    .await;
    assert_eq!(res.status(), StatusCode::GATEWAY_TIMEOUT);
    let hops: Vec<_> = log.lock().unwrap().iter().map(|(n, ..)| *n).collect();
    assert_eq!(hops, ["A", "B"], "C was called");
    assert_eq!(stats[2].requests(), 0);
    assert_eq!(stats[1].deadline_exceeded(), 1);
    assert_eq!(live.alive(), 0);
}
