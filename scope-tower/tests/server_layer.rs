//! `ServerLayer` in memory (`tower::ServiceExt::oneshot`), under paused time: the request
//! scope's deadline, answers without the handler, statuses, and the disconnect policies.

// The workspace's shared test helpers (drop-counting `Census`, `Slot`, `ms`, the
// three-runtime `rt_test!`).
#[path = "../../tests/common/mod.rs"]
mod common;

use common::{Census, HANG, PAUSED_HANG, Within, ms};
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use taskscope::{CancelReason, Cancelled, Scope, current_deadline};
use taskscope_tower::{DEADLINE_EXHAUSTED, OnDisconnect, ServerLayer, TIMEOUT_MS};
use tokio::time::Instant;
use tower::{Layer, ServiceExt, service_fn};

/// Bounds a wait: a regression fails in seconds instead of hanging (under paused time the
/// clock jumps to the bound once everything is idle), naming the line of the wait.
#[track_caller]
fn bounded<F: std::future::IntoFuture>(f: F) -> impl std::future::Future<Output = F::Output> {
    common::within(HANG, f, "the server scope's return")
}

fn request(headers: &[(&str, &str)]) -> Request<()> {
    let mut b = Request::builder().uri("/");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).unwrap()
}

fn grpc_request(timeout: &str) -> Request<()> {
    request(&[
        ("content-type", "application/grpc"),
        ("grpc-timeout", timeout),
    ])
}

/// A handler that reports the deadline it sees, relative to when it was called.
async fn deadline_seen(_req: Request<()>) -> Result<Response<String>, Infallible> {
    let left = current_deadline().map(|d| d - Instant::now());
    Ok(Response::new(format!("{left:?}")))
}

#[tokio::test(start_paused = true)]
async fn handler_sees_the_smallest_of_the_headers_and_the_maximum() {
    let r: Result<(), Cancelled> = Scope::builder()
        .run(async |server| {
            let layer = ServerLayer::new(server.handle()).max_timeout(Duration::from_secs(1));
            let svc = layer.layer(service_fn(deadline_seen));
            let body = |r: Response<String>| r.into_body();
            let cases: [(&[(&str, &str)], Duration); 5] = [
                (&[("grpc-timeout", "250m")], ms(250)),
                (&[("x-timeout-ms", "400")], ms(400)),
                (
                    &[("grpc-timeout", "300m"), ("x-timeout-ms", "200")],
                    ms(200),
                ),
                // The caller asks for a minute: the server's maximum caps it.
                (&[("grpc-timeout", "60S")], ms(1000)),
                // No header: the maximum.
                (&[], ms(1000)),
            ];
            for (headers, want) in cases {
                let res = svc.clone().oneshot(request(headers)).await.unwrap();
                assert_eq!(body(res), format!("{:?}", Some(want)), "{headers:?}");
            }
            Ok(())
        })
        .within(
            PAUSED_HANG,
            "the server scope's return after its requests saw their deadlines",
        )
        .await;
    assert_eq!(r, Ok(()));
}

#[tokio::test(start_paused = true)]
async fn no_header_and_no_maximum_means_no_deadline() {
    let r: Result<(), Cancelled> = Scope::builder()
        .run(async |server| {
            let svc = ServerLayer::new(server.handle()).layer(service_fn(deadline_seen));
            let res = svc.oneshot(request(&[])).await.unwrap();
            assert_eq!(res.into_body(), "None");
            Ok(())
        })
        .within(
            PAUSED_HANG,
            "the server scope's return after a request without a deadline",
        )
        .await;
    assert_eq!(r, Ok(()));
}

#[tokio::test(start_paused = true)]
async fn request_expired_on_arrival_is_answered_without_calling_the_handler() {
    let called = Arc::new(AtomicUsize::new(0));
    let c = called.clone();
    let r: Result<(), Cancelled> = Scope::builder()
        .run(async |server| {
            let layer = ServerLayer::new(server.handle()).min_budget(ms(5));
            let stats = layer.stats();
            let svc = layer.layer(service_fn(move |_req: Request<()>| {
                c.fetch_add(1, SeqCst);
                async { Ok::<_, Infallible>(Response::new(String::from("called"))) }
            }));
            let res = svc
                .clone()
                .oneshot(request(&[("grpc-timeout", "0n")]))
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::GATEWAY_TIMEOUT);
            assert_eq!(res.headers()[DEADLINE_EXHAUSTED], "1");
            // Under the minimum budget counts as spent.
            let res = svc.clone().oneshot(grpc_request("4m")).await.unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            assert_eq!(res.headers()["grpc-status"], "4");
            assert_eq!(res.headers()["content-type"], "application/grpc");
            assert_eq!(stats.expired_on_arrival(), 2);
            // Enough left: called.
            let res = svc
                .oneshot(request(&[("x-timeout-ms", "6")]))
                .await
                .unwrap();
            assert_eq!(res.into_body(), "called");
            Ok(())
        })
        .within(
            PAUSED_HANG,
            "the server scope's return after answering an expired request",
        )
        .await;
    assert_eq!(r, Ok(()));
    assert_eq!(called.load(SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn deadline_passing_in_the_handler_is_answered_504_and_its_work_is_gone() {
    let live = Census::new();
    let l = live.clone();
    let r: Result<(), Cancelled> = Scope::builder()
        .run(async |server| {
            let layer = ServerLayer::new(server.handle());
            let stats = layer.stats();
            let svc = layer.layer(service_fn(move |_req: Request<()>| {
                let l = l.clone();
                async move {
                    // The handler's own scope: its children are cancelled with the request.
                    taskscope::scope(async |s| {
                        for _ in 0..3 {
                            let g = l.guard();
                            s.spawn(async move {
                                let _g = g;
                                tokio::time::sleep(Duration::from_secs(10)).await;
                                Ok(())
                            });
                        }
                        Ok::<_, Cancelled>(())
                    })
                    .await
                    .ok();
                    Ok::<_, Infallible>(Response::new(String::from("too late")))
                }
            }));
            let start = Instant::now();
            let res = svc
                .clone()
                .oneshot(request(&[("x-timeout-ms", "100")]))
                .await
                .unwrap();
            assert_eq!(start.elapsed(), ms(100));
            assert_eq!(res.status(), StatusCode::GATEWAY_TIMEOUT);
            assert_eq!(res.headers()[DEADLINE_EXHAUSTED], "1");
            // The handler's children are gone before the response is written.
            assert_eq!(live.alive(), 0);
            let res = svc.oneshot(grpc_request("100m")).await.unwrap();
            assert_eq!(res.headers()["grpc-status"], "4");
            assert_eq!(stats.deadline_exceeded(), 2);
            Ok(())
        })
        .within(
            PAUSED_HANG,
            "the server scope's return after a request's deadline passed in its handler",
        )
        .await;
    assert_eq!(r, Ok(()));
    assert_eq!(live.alive(), 0);
}

#[tokio::test(start_paused = true)]
async fn server_maximum_alone_does_not_mark_the_callers_budget_exhausted() {
    let r: Result<(), Cancelled> = Scope::builder()
        .run(async |server| {
            let svc = ServerLayer::new(server.handle())
                .max_timeout(ms(50))
                .layer(service_fn(|_req: Request<()>| async {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    Ok::<_, Infallible>(Response::new(String::new()))
                }));
            let res = svc
                .oneshot(request(&[("x-timeout-ms", "5000")]))
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::GATEWAY_TIMEOUT);
            assert!(res.headers().get(DEADLINE_EXHAUSTED).is_none());
            Ok(())
        })
        .within(
            PAUSED_HANG,
            "the server scope's return after a request under its maximum",
        )
        .await;
    assert_eq!(r, Ok(()));
}

#[tokio::test(start_paused = true)]
async fn malformed_headers_are_treated_as_absent_and_counted() {
    let r: Result<(), Cancelled> = Scope::builder()
        .run(async |server| {
            let layer = ServerLayer::new(server.handle()).max_timeout(ms(700));
            let stats = layer.stats();
            let svc = layer.layer(service_fn(deadline_seen));
            for bad in [
                &[("grpc-timeout", "-1S")][..],
                &[("grpc-timeout", "999999999S")],
                &[("x-timeout-ms", "soon")],
                &[("x-timeout-ms", "99999999999999999999999")],
                &[("x-timeout-ms", "10"), ("x-timeout-ms", "20")],
            ] {
                let res = svc.clone().oneshot(request(bad)).await.unwrap();
                // Never a deadline larger than the maximum, never a panic.
                assert_eq!(res.into_body(), format!("{:?}", Some(ms(700))), "{bad:?}");
            }
            assert_eq!(stats.malformed_headers(), 5);
            assert_eq!(stats.requests(), 5);
            Ok(())
        })
        .within(
            PAUSED_HANG,
            "the server scope's return after its malformed-header requests",
        )
        .await;
    assert_eq!(r, Ok(()));
}

#[tokio::test(start_paused = true)]
async fn a_custom_millisecond_header_is_read_instead_of_the_default() {
    let r: Result<(), Cancelled> = Scope::builder()
        .run(async |server| {
            let svc = ServerLayer::new(server.handle())
                .timeout_header(http::HeaderName::from_static("x-budget"))
                .layer(service_fn(deadline_seen));
            let res = svc
                .clone()
                .oneshot(request(&[("x-budget", "42"), (TIMEOUT_MS.as_str(), "7")]))
                .await
                .unwrap();
            assert_eq!(res.into_body(), format!("{:?}", Some(ms(42))));
            Ok(())
        })
        .within(
            PAUSED_HANG,
            "the server scope's return after a custom-header request",
        )
        .await;
    assert_eq!(r, Ok(()));
}

#[tokio::test]
async fn a_finished_server_scope_answers_503() {
    let mut escaped = None;
    let r: Result<(), Cancelled> = taskscope::scope(async |server| {
        escaped = Some(ServerLayer::new(server.handle()));
        Ok(())
    })
    .within(HANG, "the server scope's return")
    .await;
    assert_eq!(r, Ok(()));
    let layer = escaped.unwrap();
    let stats = layer.stats();
    let svc = layer.layer(service_fn(deadline_seen));
    let res = svc
        .clone()
        .oneshot(request(&[]))
        .within(HANG, "a finished server scope's 503 answer")
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let res = svc
        .oneshot(grpc_request("1S"))
        .within(HANG, "a finished server scope's gRPC unavailable answer")
        .await
        .unwrap();
    assert_eq!(res.headers()["grpc-status"], "14");
    assert_eq!(stats.unavailable(), 2);
}

#[tokio::test(start_paused = true)]
async fn server_shutdown_ends_a_running_request_with_503_after_its_grace() {
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let (res_tx, res_rx) = tokio::sync::oneshot::channel();
    let seen = Arc::new(AtomicUsize::new(0));
    let s2 = seen.clone();
    let r: Result<(), Cancelled> = bounded(Scope::builder().grace(ms(200)).run(async |server| {
        let svc = ServerLayer::new(server.handle()).layer(service_fn(move |_req: Request<()>| {
            let s2 = s2.clone();
            async move {
                // Ignores the soft cancel (counts having seen it) and runs on.
                taskscope::cancelled().await;
                s2.fetch_add(1, SeqCst);
                std::future::pending::<()>().await;
                Ok::<_, Infallible>(Response::new(String::new()))
            }
        }));
        tokio::spawn(async move {
            let res = svc.oneshot(request(&[])).await.unwrap();
            res_tx.send(res.status()).ok();
        });
        tokio::task::yield_now().await;
        started_tx.send(()).ok();
        server.cancel();
        Ok(())
    }))
    .await;
    started_rx.await.unwrap();
    assert_eq!(r, Ok(()));
    assert_eq!(seen.load(SeqCst), 1, "the handler saw the shutdown first");
    assert_eq!(
        res_rx
            .within(
                PAUSED_HANG,
                "the running request's 503 answer after the shutdown grace"
            )
            .await
            .unwrap(),
        StatusCode::SERVICE_UNAVAILABLE
    );
}

/// Starts a request on `svc` and drops its response future after `after`: a client that
/// went away mid-flight.
async fn abandon<S>(svc: S, after: Duration)
where
    S: tower::Service<Request<()>, Response = Response<String>, Error = Infallible>,
{
    let r = tokio::time::timeout(after, svc.oneshot(request(&[]))).await;
    assert!(r.is_err(), "the handler finished before the client left");
}

// Real time: a running blocking child stops a paused clock from advancing.
#[tokio::test]
async fn drop_policy_hands_the_handlers_children_to_the_server_scope() {
    let live = Census::new();
    let cleaned = Arc::new(AtomicUsize::new(0));
    let (l, c) = (live.clone(), cleaned.clone());
    let r: Result<(), Cancelled> = bounded(Scope::builder().run(async |server| {
        let layer = ServerLayer::new(server.handle());
        let stats = layer.stats();
        let svc = layer.layer(service_fn(move |_req: Request<()>| {
            let (l, c) = (l.clone(), c.clone());
            async move {
                taskscope::scope(async |s| {
                    let g = l.guard();
                    s.spawn(async move {
                        let _g = g;
                        std::future::pending::<()>().await;
                        Ok(())
                    });
                    // A blocking child cannot be dropped: the server scope must wait.
                    s.spawn_blocking(move || {
                        while !taskscope::is_cancelled() {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                        std::thread::sleep(Duration::from_millis(20));
                        c.fetch_add(1, SeqCst);
                        Ok(())
                    });
                    std::future::pending::<()>().await;
                    Ok::<_, Cancelled>(())
                })
                .await
                .ok();
                Ok::<_, Infallible>(Response::new(String::new()))
            }
        }));
        abandon(svc, ms(10)).await;
        assert_eq!(stats.disconnected(), 1);
        Ok(())
    }))
    .await;
    assert_eq!(r, Ok(()));
    // Right after the server scope returned: nothing the handler started is running.
    assert_eq!(live.alive(), 0);
    assert_eq!(cleaned.load(SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn cancel_policy_runs_the_handlers_cleanup_and_cuts_it_at_the_grace() {
    let steps = Arc::new(std::sync::Mutex::new(Vec::new()));
    let st = steps.clone();
    let start = Instant::now();
    let r: Result<(), Cancelled> = bounded(Scope::builder().run(async |server| {
        let svc = ServerLayer::new(server.handle())
            .on_disconnect(OnDisconnect::Cancel { grace: ms(100) })
            .layer(service_fn(move |_req: Request<()>| {
                let st = st.clone();
                async move {
                    let why = taskscope::cancelled().await;
                    st.lock()
                        .unwrap()
                        .push(format!("{:?} at {:?}", why.reason(), start.elapsed()));
                    // Async cleanup: the first step fits in the grace, the second does not.
                    tokio::time::sleep(ms(60)).await;
                    st.lock()
                        .unwrap()
                        .push(format!("cleaned at {:?}", start.elapsed()));
                    tokio::time::sleep(ms(60)).await;
                    st.lock().unwrap().push("never".into());
                    Ok::<_, Infallible>(Response::new(String::new()))
                }
            }));
        abandon(svc, ms(10)).await;
        Ok(())
    }))
    .await;
    assert_eq!(r, Ok(()));
    assert_eq!(
        *steps.lock().unwrap(),
        [
            format!("{:?} at {:?}", CancelReason::Disconnected, ms(10)),
            format!("cleaned at {:?}", ms(70)),
        ]
    );
    // The server scope returned when the grace ended, not before.
    assert_eq!(start.elapsed(), ms(110));
}

#[tokio::test(start_paused = true)]
async fn detach_policy_lets_the_handler_finish_and_the_server_scope_awaits_it() {
    let finished = Arc::new(AtomicUsize::new(0));
    let f = finished.clone();
    let start = Instant::now();
    let r: Result<(), Cancelled> = bounded(Scope::builder().run(async |server| {
        let svc = ServerLayer::new(server.handle())
            .on_disconnect(OnDisconnect::Detach)
            .layer(service_fn(move |_req: Request<()>| {
                let f = f.clone();
                async move {
                    tokio::time::sleep(ms(500)).await;
                    assert!(!taskscope::is_cancelled());
                    f.fetch_add(1, SeqCst);
                    Ok::<_, Infallible>(Response::new(String::new()))
                }
            }));
        abandon(svc, ms(10)).await;
        Ok(())
    }))
    .await;
    assert_eq!(r, Ok(()));
    assert_eq!(finished.load(SeqCst), 1);
    assert_eq!(start.elapsed(), ms(500));
}

#[tokio::test(start_paused = true)]
async fn a_route_layer_overrides_the_servers_policy() {
    let finished = Arc::new(AtomicUsize::new(0));
    let f = finished.clone();
    let r: Result<(), Cancelled> = bounded(Scope::builder().run(async |server| {
        let route = OnDisconnect::Detach.layer(service_fn(move |_req: Request<()>| {
            let f = f.clone();
            async move {
                tokio::time::sleep(ms(100)).await;
                f.fetch_add(1, SeqCst);
                Ok::<_, Infallible>(Response::new(String::new()))
            }
        }));
        // The server says Drop; the route says Detach.
        let svc = ServerLayer::new(server.handle())
            .on_disconnect(OnDisconnect::Drop)
            .layer(route);
        abandon(svc, ms(10)).await;
        Ok(())
    }))
    .await;
    assert_eq!(r, Ok(()));
    assert_eq!(
        finished.load(SeqCst),
        1,
        "the route's Detach let the handler finish"
    );
}

#[tokio::test(start_paused = true)]
async fn failing_requests_never_reach_the_server_scope() {
    let r: Result<(), Cancelled> = Scope::builder()
        .run(async |server| {
            let svc =
                ServerLayer::new(server.handle()).layer(service_fn(|_req: Request<()>| async {
                    // A handler whose own scope fails: its error is its response.
                    let failed = taskscope::scope(async |s| {
                        s.spawn(async { Err::<(), _>(Cancelled::new(CancelReason::Explicit)) });
                        Ok::<_, Cancelled>(())
                    })
                    .await;
                    let mut res = Response::new(String::new());
                    if failed.is_err() {
                        *res.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                    }
                    Ok::<_, Infallible>(res)
                }));
            for _ in 0..10_000 {
                let res = svc.clone().oneshot(request(&[])).await.unwrap();
                assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
            }
            assert!(!server.is_cancelled());
            // Nothing accumulated: the server scope has no children left.
            let tree = server.snapshot();
            assert_eq!(tree.nodes().len(), 1, "{tree}");
            assert_eq!(tree.nodes()[0].live_children, 0);
            Ok(())
        })
        .within(
            PAUSED_HANG,
            "the server scope's return after its failing requests",
        )
        .await;
    assert_eq!(r, Ok(()));
}

/// A request awaited inside the server scope's own body (as in these tests): a server scope
/// that catches its own cancellation must drain it and return, instead of waiting for the
/// unit the request holds, which only dropping the body would release.
#[tokio::test(start_paused = true)]
async fn server_scope_catching_its_cancel_with_a_request_in_its_own_body_returns() {
    let r: Result<(), Cancelled> = bounded(Scope::builder().timeout(ms(10)).run(async |server| {
        let svc = ServerLayer::new(server.handle()).layer(service_fn(|_req: Request<()>| async {
            std::future::pending::<()>().await;
            Ok::<_, Infallible>(Response::new(String::new()))
        }));
        // The server's deadline fires while the body waits here: the server scope catches
        // it and stops polling its body, request included.
        let _ = svc.oneshot(request(&[])).await;
        Ok(())
    }))
    .await;
    assert_eq!(r.unwrap_err().reason(), CancelReason::DeadlineExceeded);
}

/// A detached handler whose client left while it ran a shield: the shield ends in the
/// handler's new task, and the server's hard cancel still reaches the handler afterwards.
#[tokio::test(start_paused = true)]
async fn detached_handler_that_left_inside_a_shield_is_still_cancelled_at_shutdown() {
    let live = Census::new();
    let l = live.clone();
    let r: Result<(), Cancelled> = bounded(Scope::builder().run(async |server| {
        let svc = ServerLayer::new(server.handle())
            .on_disconnect(OnDisconnect::Detach)
            .layer(service_fn(move |_req: Request<()>| {
                let g = l.guard();
                async move {
                    let _g = g;
                    taskscope::shield(tokio::time::sleep(ms(50))).await; // the client leaves here
                    std::future::pending::<()>().await; // only a cancel ends it now
                    Ok::<_, Infallible>(Response::new(String::new()))
                }
            }));
        abandon(svc, ms(10)).await;
        tokio::time::sleep(ms(100)).await; // the shield ended in the handler's own task
        server.cancel();
        Ok(())
    }))
    .await;
    assert_eq!(r, Ok(()));
    assert_eq!(live.alive(), 0);
}

/// A handler that panics is not a client that went away: its future is dropped with the
/// unwind, never counted as disconnected nor moved to a task of its own to be polled again.
#[tokio::test]
async fn a_panicking_handler_is_not_a_disconnect() {
    let r: Result<(), Cancelled> = bounded(Scope::builder().run(async |server| {
        let layer = ServerLayer::new(server.handle()).on_disconnect(OnDisconnect::Detach);
        let stats = layer.stats();
        let svc = layer.layer(service_fn(|_req: Request<()>| async {
            tokio::task::yield_now().await;
            panic!("handler bug");
            #[allow(unreachable_code)]
            Ok::<_, Infallible>(Response::new(String::new()))
        }));
        let joined = tokio::spawn(svc.oneshot(request(&[]))).await;
        assert!(joined.unwrap_err().is_panic());
        assert_eq!(stats.disconnected(), 0);
        Ok(())
    }))
    .await;
    assert_eq!(r, Ok(()));
}
