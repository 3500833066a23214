//! Tracing: a span per scope and per child, parented like the cancel tree, and
//! events for cancellation (with its reason), deadline expiry, child failure and panic in
//! the span of the node they concern. Checked with a capturing subscriber.
#![cfg(feature = "tracing")]

mod common;

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use common::{Error, HANG, PAUSED_HANG, Within, secs, within};
use taskscope::{CancelScope, Cancelled, Scope, scope};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

#[derive(Debug, Clone)]
struct SpanInfo {
    meta: &'static Metadata<'static>,
    kind: &'static str,
    name: String,
    parent: Option<u64>,
}

#[derive(Debug, Clone)]
struct EventInfo {
    message: String,
    reason: Option<String>,
    panic: Option<String>,
    span: Option<u64>,
}

#[derive(Default)]
struct State {
    spans: HashMap<u64, SpanInfo>,
    events: Vec<EventInfo>,
}

#[derive(Clone, Default)]
struct Capture {
    state: Arc<Mutex<State>>,
    next: Arc<AtomicU64>,
}

thread_local! {
    static STACK: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

fn current() -> Option<u64> {
    STACK.with(|s| s.borrow().last().copied())
}

#[derive(Default)]
struct Fields {
    name: String,
    message: String,
    reason: Option<String>,
    panic: Option<String>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "name" => self.name = value.to_owned(),
            "panic" => self.panic = Some(value.to_owned()),
            _ => {}
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => self.message = format!("{value:?}"),
            "reason" => self.reason = Some(format!("{value:?}")),
            "name" => self.name = format!("{value:?}"),
            _ => {}
        }
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, attrs: &Attributes<'_>) -> Id {
        let id = self.next.fetch_add(1, Ordering::SeqCst) + 1;
        let mut f = Fields::default();
        attrs.record(&mut f);
        let parent = if let Some(p) = attrs.parent() {
            Some(p.into_u64())
        } else if attrs.is_contextual() {
            current()
        } else {
            None
        };
        self.state.lock().unwrap().spans.insert(
            id,
            SpanInfo {
                meta: attrs.metadata(),
                kind: attrs.metadata().name(),
                name: f.name,
                parent,
            },
        );
        Id::from_u64(id)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut f = Fields::default();
        event.record(&mut f);
        let span = if let Some(p) = event.parent() {
            Some(p.into_u64())
        } else if event.is_contextual() {
            current()
        } else {
            None
        };
        self.state.lock().unwrap().events.push(EventInfo {
            message: f.message,
            reason: f.reason,
            panic: f.panic,
            span,
        });
    }
    fn enter(&self, id: &Id) {
        STACK.with(|s| s.borrow_mut().push(id.into_u64()));
    }
    fn exit(&self, id: &Id) {
        STACK.with(|s| {
            let mut s = s.borrow_mut();
            if let Some(i) = s.iter().rposition(|x| *x == id.into_u64()) {
                s.remove(i);
            }
        });
    }
    fn clone_span(&self, id: &Id) -> Id {
        id.clone()
    }
    fn current_span(&self) -> tracing_core::span::Current {
        let st = self.state.lock().unwrap();
        match current().and_then(|id| st.spans.get(&id).map(|s| (id, s.meta))) {
            Some((id, meta)) => tracing_core::span::Current::new(Id::from_u64(id), meta),
            None => tracing_core::span::Current::none(),
        }
    }
}

impl Capture {
    fn span_named(&self, kind: &str, name: &str) -> (u64, SpanInfo) {
        let st = self.state.lock().unwrap();
        let found: Vec<_> = st
            .spans
            .iter()
            .filter(|(_, s)| s.kind == kind && s.name == name)
            .map(|(id, s)| (*id, s.clone()))
            .collect();
        assert_eq!(
            found.len(),
            1,
            "one {kind} span named {name:?}: {:?}",
            st.spans
        );
        found[0].clone()
    }
    fn children_of(&self, parent: u64, kind: &str) -> Vec<u64> {
        let st = self.state.lock().unwrap();
        let mut v: Vec<u64> = st
            .spans
            .iter()
            .filter(|(_, s)| s.kind == kind && s.parent == Some(parent))
            .map(|(id, _)| *id)
            .collect();
        v.sort();
        v
    }
    fn events_in(&self, span: u64) -> Vec<EventInfo> {
        let st = self.state.lock().unwrap();
        st.events
            .iter()
            .filter(|e| e.span == Some(span))
            .cloned()
            .collect()
    }
}

fn run_on_current_thread<F: std::future::Future>(
    capture: &Capture,
    f: impl FnOnce() -> F,
) -> F::Output {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    tracing::subscriber::with_default(capture.clone(), || {
        rt.block_on(within(
            PAUSED_HANG,
            f(),
            "the end of the traced test's future",
        ))
    })
}

#[test]
fn spans_are_parented_like_the_tree_and_events_land_in_their_node() {
    let capture = Capture::default();
    let r: Result<(), Error> = run_on_current_thread(&capture, || async {
        Scope::builder()
            .name("outer")
            .run(async |s| {
                let h = s.spawn(async {
                    // A scope inside a spawned child: its span is below the child's.
                    let r = Scope::builder()
                        .name("inner")
                        .run(async |i| {
                            i.spawn(async {
                                tokio::time::sleep(secs(1)).await;
                                Err::<(), _>(Error::Boom(1))
                            });
                            i.spawn(std::future::pending::<Result<(), Error>>());
                            Ok(())
                        })
                        .await;
                    Ok::<_, Error>(r)
                });
                let inner = h.await?;
                assert_eq!(inner, Err(Error::Boom(1)));
                // A cancel scope whose deadline passes.
                let late = CancelScope::new()
                    .name("late")
                    .timeout(secs(2))
                    .run(std::future::pending::<()>())
                    .await;
                assert!(late.is_err());
                Ok(())
            })
            .await
    });
    assert_eq!(r, Ok(()));

    let (outer, o) = capture.span_named("scope", "outer");
    assert_eq!(o.parent, None, "the root scope's span is a root");
    let outer_children = capture.children_of(outer, "child");
    assert_eq!(outer_children.len(), 1, "one child span below outer");
    let (inner, i) = capture.span_named("scope", "inner");
    assert_eq!(
        i.parent,
        Some(outer_children[0]),
        "inner is below the child that runs it"
    );
    assert_eq!(capture.children_of(inner, "child").len(), 2);
    let (late, l) = capture.span_named("cancel_scope", "late");
    assert_eq!(
        l.parent,
        Some(outer),
        "the cancel scope is below the body's scope"
    );

    let inner_events = capture.events_in(inner);
    let msgs: Vec<&str> = inner_events.iter().map(|e| e.message.as_str()).collect();
    assert!(msgs.contains(&"a child failed"), "{inner_events:?}");
    let cancel = inner_events
        .iter()
        .find(|e| e.message == "cancelled")
        .expect("a cancel event in inner's span");
    assert_eq!(cancel.reason.as_deref(), Some("a child failed"));

    let late_events = capture.events_in(late);
    let msgs: Vec<&str> = late_events.iter().map(|e| e.message.as_str()).collect();
    assert!(msgs.contains(&"deadline exceeded"), "{late_events:?}");
    let cancel = late_events
        .iter()
        .find(|e| e.message == "cancelled")
        .unwrap();
    assert_eq!(cancel.reason.as_deref(), Some("deadline exceeded"));
}

#[test]
fn a_child_panic_is_an_event_with_its_message_in_the_scopes_span() {
    let capture = Capture::default();
    let r = run_on_current_thread(&capture, || async {
        tokio::spawn(scope(async |s| {
            s.spawn(async {
                panic!("kaboom");
                #[allow(unreachable_code)]
                Ok::<(), Cancelled>(())
            });
            Ok::<_, Cancelled>(())
        }))
        .await
    });
    assert!(r.unwrap_err().is_panic());
    let (sc, _) = capture.span_named("scope", "");
    let ev = capture.events_in(sc);
    let panic = ev
        .iter()
        .find(|e| e.message == "a child panicked")
        .expect("a panic event");
    assert_eq!(panic.panic.as_deref(), Some("kaboom"));
    let cancel = ev.iter().find(|e| e.message == "cancelled").unwrap();
    assert_eq!(cancel.reason.as_deref(), Some("a child panicked"));
}

#[test]
fn without_a_subscriber_children_run_without_spans() {
    // No subscriber: nothing is created (and the plain task wrapper is used).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let r: Result<u32, Cancelled> = rt.block_on(
        scope(async |s| s.spawn(async { Ok(7) }).await)
            .within(HANG, "the scope's return of its child's value"),
    );
    assert_eq!(r, Ok(7));
}

/// `#[tracing::instrument]` above `#[scoped]`: attributes expand from the top and keep the
/// ones below, so `#[scoped]` then wraps what `instrument` made: the scope encloses the
/// function's span.
#[tracing::instrument(name = "fetch_fn", skip_all)]
#[taskscope::scoped(s, name = "fetch")]
async fn instrumented_outside() -> Result<u8, Cancelled> {
    s.spawn(async { Ok(1) }).await
}

/// `#[scoped]` above: `instrument` wraps the scoped body, so the function's span encloses
/// the scope's (the usual wish: the call's span is the parent of everything it does).
#[taskscope::scoped(s, name = "fetch2")]
#[tracing::instrument(name = "fetch2_fn", skip_all)]
async fn instrumented_inside() -> Result<u8, Cancelled> {
    s.spawn(async { Ok(2) }).await
}

#[test]
fn scoped_composes_with_instrument_in_both_orders() {
    let capture = Capture::default();
    let r = run_on_current_thread(&capture, || async {
        (instrumented_outside().await, instrumented_inside().await)
    });
    assert_eq!(r, (Ok(1), Ok(2)));
    let st = capture.state.lock().unwrap();
    let find = |kind: &str, name: &str| {
        st.spans
            .iter()
            .find(|(_, s)| s.kind == kind && (name.is_empty() || s.name == name))
            .map(|(id, s)| (*id, s.clone()))
            .unwrap_or_else(|| panic!("no {kind} {name}: {:?}", st.spans))
    };
    let (sc1, _) = find("scope", "fetch");
    let (_, fn1) = find("fetch_fn", "");
    assert_eq!(
        fn1.parent,
        Some(sc1),
        "instrument above scoped: the fn span is inside the scope"
    );
    let (fn2, _) = find("fetch2_fn", "");
    let (_, scope2) = find("scope", "fetch2");
    assert_eq!(
        scope2.parent,
        Some(fn2),
        "scoped above instrument: the scope is inside the fn span"
    );
}

/// A `#[scoped]` function without a handle builds its scope's node only when something
/// needs it; a subscriber that wants the scope's span is such a need: the span is there and
/// parents what the body opens, as for a scope with a handle.
#[taskscope::scoped(name = "quiet")]
async fn without_a_handle() -> Result<u8, Cancelled> {
    tracing::debug_span!("inside").in_scope(|| ());
    tokio::task::yield_now().await;
    Ok(3)
}

#[test]
fn a_scope_without_a_handle_has_its_span_when_a_subscriber_wants_it() {
    let capture = Capture::default();
    let r = run_on_current_thread(&capture, without_a_handle);
    assert_eq!(r, Ok(3));
    let st = capture.state.lock().unwrap();
    let (scope_id, _) = st
        .spans
        .iter()
        .find(|(_, s)| s.kind == "scope" && s.name == "quiet")
        .unwrap_or_else(|| panic!("no scope span named quiet: {:?}", st.spans));
    let inside = st
        .spans
        .values()
        .find(|s| s.kind == "inside")
        .unwrap_or_else(|| panic!("no span inside: {:?}", st.spans));
    assert_eq!(
        inside.parent,
        Some(*scope_id),
        "the body runs in the scope's span"
    );
}

/// `move_on_after` waits on a timer of its own, without a node, while nothing inside asks
/// for its scope; a subscriber that wants the cancel scope's span is such a need: the span
/// is there, and the expiry's events land in it.
#[test]
fn an_expiring_move_on_after_has_its_span_and_the_expiry_in_it() {
    let capture = Capture::default();
    let r = run_on_current_thread(&capture, || {
        taskscope::move_on_after(secs(2), std::future::pending::<()>())
    });
    assert_eq!(r, None);
    let (span, s) = capture.span_named("cancel_scope", "");
    assert_eq!(s.parent, None, "nothing encloses it");
    let events = capture.events_in(span);
    let msgs: Vec<&str> = events.iter().map(|e| e.message.as_str()).collect();
    assert!(msgs.contains(&"deadline exceeded"), "{events:?}");
}
