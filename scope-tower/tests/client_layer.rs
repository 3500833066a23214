//! `ClientLayer` in memory, under paused time: what it writes on outgoing requests, and
//! the calls it refuses to send.

// The workspace's shared test helpers (drop-counting `Census`, `Slot`, `ms`, the
// three-runtime `rt_test!`).
#[path = "../../tests/common/mod.rs"]
mod common;

use common::{PAUSED_HANG, Within, ms};
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use http::{HeaderMap, Request, Response};
use taskscope::{CancelReason, CancelScope, Cancelled};
use taskscope_tower::{ClientLayer, TIMEOUT_MS, grpc_timeout};
use tower::{Layer, ServiceExt, service_fn};

/// An inner service that answers with the headers it was sent, and counts its calls.
fn echo(
    calls: Arc<AtomicUsize>,
) -> impl tower::Service<
    Request<()>,
    Response = Response<HeaderMap>,
    Error = Infallible,
    Future = impl Send,
> + Clone {
    service_fn(move |req: Request<()>| {
        calls.fetch_add(1, SeqCst);
        async move { Ok::<_, Infallible>(Response::new(req.headers().clone())) }
    })
}

/// The headers `ClientLayer::new().reserve(reserve)` writes for a call made with `req`.
async fn sent(layer: ClientLayer, req: Request<()>) -> HeaderMap {
    let svc = layer.layer(echo(Arc::default()));
    svc.oneshot(req).await.unwrap().into_body()
}

#[tokio::test(start_paused = true)]
async fn ambient_deadline_is_written_as_both_headers_less_the_reserve() {
    let cs = CancelScope::new().timeout(ms(300));
    let h = cs
        .run(async {
            tokio::time::sleep(ms(40)).await;
            sent(ClientLayer::new().reserve(ms(10)), Request::new(())).await
        })
        .within(PAUSED_HANG, "the cancel scope's return of the headers sent")
        .await
        .unwrap();
    // 300 - 40 - 10, exact under paused time.
    assert_eq!(h["grpc-timeout"], "250000u");
    assert_eq!(h[TIMEOUT_MS], "250");
    assert_eq!(grpc_timeout::decode(&h["grpc-timeout"]), Some(ms(250)));
}

#[tokio::test(start_paused = true)]
async fn nested_deadlines_send_the_smallest() {
    let h = CancelScope::new()
        .timeout(ms(500))
        .run(async {
            taskscope::fail_after(ms(80), sent(ClientLayer::new(), Request::new(()))).await
        })
        .within(
            PAUSED_HANG,
            "the cancel scope's return of the headers sent under nested deadlines",
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(h[TIMEOUT_MS], "80");
}

#[tokio::test(start_paused = true)]
async fn no_ambient_deadline_sends_no_header() {
    let h = sent(ClientLayer::new(), Request::new(()))
        .within(
            PAUSED_HANG,
            "the call's return of the headers sent without a deadline",
        )
        .await;
    assert!(h.get("grpc-timeout").is_none());
    assert!(h.get(TIMEOUT_MS).is_none());
    // Inside a scope without a deadline either.
    let h = CancelScope::new()
        .run(sent(ClientLayer::new(), Request::new(())))
        .within(
            PAUSED_HANG,
            "the cancel scope's return of the headers sent without a deadline",
        )
        .await
        .unwrap();
    assert!(h.is_empty(), "{h:?}");
}

#[tokio::test(start_paused = true)]
async fn a_call_inside_a_shield_carries_no_inherited_deadline() {
    let h = taskscope::fail_after(
        ms(200),
        taskscope::shield(sent(ClientLayer::new(), Request::new(()))),
    )
    .within(
        PAUSED_HANG,
        "fail_after's return of the headers sent inside a shield",
    )
    .await
    .unwrap();
    assert!(h.get("grpc-timeout").is_none(), "{h:?}");
    // A shield's own deadline is still sent.
    let h = taskscope::fail_after(
        ms(200),
        CancelScope::new()
            .shield(true)
            .timeout(ms(30))
            .run(sent(ClientLayer::new(), Request::new(()))),
    )
    .within(
        PAUSED_HANG,
        "fail_after's return of the headers sent inside a shield with a deadline",
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(h[TIMEOUT_MS], "30");
}

#[tokio::test(start_paused = true)]
async fn a_smaller_budget_already_on_the_request_is_kept() {
    let req = Request::builder()
        .header("grpc-timeout", "20m")
        .body(())
        .unwrap();
    let h = taskscope::fail_after(ms(300), sent(ClientLayer::new(), req))
        .within(
            PAUSED_HANG,
            "fail_after's return of the headers sent with a smaller budget",
        )
        .await
        .unwrap();
    assert_eq!(h["grpc-timeout"], "20000000n");
    assert_eq!(h[TIMEOUT_MS], "20");
    let req = Request::builder()
        .header("grpc-timeout", "20S")
        .body(())
        .unwrap();
    let h = taskscope::fail_after(ms(300), sent(ClientLayer::new(), req))
        .within(
            PAUSED_HANG,
            "fail_after's return of the headers sent with a larger budget",
        )
        .await
        .unwrap();
    assert_eq!(h[TIMEOUT_MS], "300");
    // The millisecond header counts too.
    let req = Request::builder()
        .header(TIMEOUT_MS, "45")
        .body(())
        .unwrap();
    let h = taskscope::fail_after(ms(300), sent(ClientLayer::new(), req))
        .within(
            PAUSED_HANG,
            "fail_after's return of the headers sent with a millisecond budget",
        )
        .await
        .unwrap();
    assert_eq!(h["grpc-timeout"], "45000000n");
    assert_eq!(h[TIMEOUT_MS], "45");
}

#[tokio::test(start_paused = true)]
async fn a_spent_budget_fails_the_call_without_sending_it() {
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = ClientLayer::new()
        .reserve(ms(50))
        .layer(echo(calls.clone()));
    let r = taskscope::move_on_after(ms(100), async {
        tokio::time::sleep(ms(60)).await; // 40 ms left, less than the reserve
        svc.oneshot(Request::new(())).await
    })
    .within(PAUSED_HANG, "move_on_after's return of the refused call")
    .await
    .expect("the caller's own deadline has not passed");
    let err = r.unwrap_err();
    let cancelled = err.downcast_ref::<Cancelled>().expect("a Cancelled");
    assert_eq!(cancelled.reason(), CancelReason::DeadlineExceeded);
    assert_eq!(calls.load(SeqCst), 0, "the call was sent");
}

#[tokio::test(start_paused = true)]
async fn a_custom_millisecond_header_is_written() {
    let h = taskscope::fail_after(
        ms(70),
        sent(
            ClientLayer::new().timeout_header(http::HeaderName::from_static("x-budget")),
            Request::new(()),
        ),
    )
    .within(
        PAUSED_HANG,
        "fail_after's return of the headers sent with a custom header",
    )
    .await
    .unwrap();
    assert_eq!(h["x-budget"], "70");
    assert!(h.get(TIMEOUT_MS).is_none());
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_caller_drops_its_call_in_flight() {
    let dropped = Arc::new(AtomicUsize::new(0));
    struct OnDrop(Arc<AtomicUsize>);
    impl Drop for OnDrop {
        fn drop(&mut self) {
            self.0.fetch_add(1, SeqCst);
        }
    }
    let d = dropped.clone();
    let svc = ClientLayer::new().layer(service_fn(move |_req: Request<()>| {
        let guard = OnDrop(d.clone());
        async move {
            let _guard = guard;
            std::future::pending::<()>().await;
            Ok::<_, Infallible>(Response::new(()))
        }
    }));
    let cs = CancelScope::new();
    let handle = cs.handle();
    let (r, ()) = async {
        tokio::join!(cs.run(svc.oneshot(Request::new(()))), async {
            tokio::time::sleep(ms(5)).await;
            handle.cancel();
        })
    }
    .within(
        PAUSED_HANG,
        "the cancelled caller's return with its call dropped",
    )
    .await;
    assert_eq!(r.unwrap_err().reason(), CancelReason::Explicit);
    assert_eq!(dropped.load(SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn less_than_a_millisecond_left_is_spent() {
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = ClientLayer::new().layer(echo(calls.clone()));
    let r = taskscope::move_on_after(Duration::from_micros(900), svc.oneshot(Request::new(())))
        .within(
            PAUSED_HANG,
            "move_on_after's return of the call with less than a millisecond left",
        )
        .await
        .expect("not timed out");
    let err = r.unwrap_err();
    assert_eq!(
        err.downcast_ref::<Cancelled>().map(Cancelled::reason),
        Some(CancelReason::DeadlineExceeded)
    );
    assert_eq!(
        calls.load(SeqCst),
        0,
        "a call the next hop would refuse was sent"
    );
}
