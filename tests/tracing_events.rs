//! Secondary errors are never lost silently: with the `tracing` feature (on by default)
//! each is reported as an event naming its scope, and so is an error that arrives after its
//! scope ended (`docs/design.md`, 4.2 Fail fast; the first outcome wins).
#![cfg(feature = "tracing")]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use taskscope::{Scope, cancelled};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

#[derive(Debug, Clone, PartialEq)]
struct Captured {
    level: Level,
    message: String,
    scope: Option<String>,
    further_panics: Option<u64>,
}

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Captured>>>);

struct Fields {
    message: String,
    scope: Option<String>,
    further_panics: Option<u64>,
}

impl Visit for Fields {
    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "further_panics" {
            self.further_panics = Some(value);
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "scope" {
            self.scope = Some(value.to_owned());
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => self.message = format!("{value:?}"),
            "scope" => self.scope = Some(format!("{value:?}")),
            _ => {}
        }
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut f = Fields {
            message: String::new(),
            scope: None,
            further_panics: None,
        };
        event.record(&mut f);
        self.0.lock().unwrap().push(Captured {
            level: *event.metadata().level(),
            message: f.message,
            scope: f.scope,
            further_panics: f.further_panics,
        });
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

use common::{Error, HANG, PAUSED_HANG, Within};

/// A current-thread runtime with time, paused: what the tests below run their scope on,
/// under a capturing subscriber.
fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
}

#[test]
fn secondary_error_is_reported_as_an_event_naming_the_scope() {
    let capture = Capture::default();
    let rt = paused_runtime();
    let r: Result<(), Error> = tracing::subscriber::with_default(capture.clone(), || {
        rt.block_on(
            Scope::builder()
                .name("fetch")
                .grace(Duration::from_secs(1))
                .run(async |s| {
                    s.spawn(async { Err::<(), _>(Error::Boom(1)) });
                    s.spawn(async {
                        cancelled().await;
                        Err::<(), _>(Error::Boom(2))
                    });
                    Ok(())
                })
                .within(PAUSED_HANG, "the scope's return of its first error"),
        )
    });
    assert_eq!(r, Err(Error::Boom(1)));
    let events = capture.0.lock().unwrap().clone();
    let secondary: Vec<_> = events
        .iter()
        .filter(|e| e.level == Level::WARN && e.message.contains("secondary error"))
        .collect();
    assert_eq!(
        secondary.len(),
        1,
        "one event per secondary error: {events:?}"
    );
    assert_eq!(secondary[0].scope.as_deref(), Some("fetch"));
    let cancels: Vec<_> = events.iter().filter(|e| e.message == "cancelled").collect();
    assert_eq!(cancels.len(), 1, "the scope was cancelled once: {events:?}");
    assert_eq!(cancels[0].scope.as_deref(), Some("fetch"));
}

/// Counts `tracing` events at WARN or above.
#[derive(Clone, Default)]
struct WarnCount(Arc<AtomicUsize>);

impl tracing::Subscriber for WarnCount {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        if *event.metadata().level() <= tracing::Level::WARN {
            self.0.fetch_add(1, SeqCst);
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// A `Supervised` handle that leaves its scope (returned by the body) holding its child's
/// error, and is dropped unawaited after the scope returned `Ok`. A regression test: `Drop`
/// recorded the error with the finished scope's node (`record_unobserved` did not look at
/// `Life::Done`), where nobody reads it; no error, no event, it was lost silently
/// (`docs/design.md`, 4.2).
#[test]
fn supervised_error_dropped_after_the_scope_ended_is_not_lost_silently() {
    let warns = WarnCount::default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    tracing::subscriber::with_default(warns.clone(), || {
        rt.block_on(async {
            let r: Result<taskscope::Supervised<(), Error>, Error> = Scope::builder()
                .name("svc")
                .supervise()
                .run(async |s| {
                    let h = s.spawn(async { Err::<(), _>(Error::Boom(7)) });
                    Ok(h) // the handle outlives the scope
                })
                .within(HANG, "the supervised scope's return of its child's handle")
                .await;
            let h = r.expect("nothing failed that the scope saw");
            assert!(h.is_finished());
            drop(h); // the child's error, never observed, goes... nowhere
        })
    });
    assert!(
        warns.0.load(SeqCst) > 0,
        "the unobserved error Boom(7) vanished: not returned, not reported"
    );
}

/// Runs a scope named `name` whose first child panics with "first" and whose `further`
/// other children panic once the first panic cancelled them; returns the re-raised
/// payload's message and the events.
fn run_panicking_scope(name: &'static str, further: usize) -> (Option<String>, Vec<Captured>) {
    let capture = Capture::default();
    let rt = paused_runtime();
    let r = tracing::subscriber::with_default(capture.clone(), || {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            rt.block_on(
                Scope::builder()
                    .name(name)
                    .grace(Duration::from_secs(1))
                    .run(async |s| {
                        s.spawn(async {
                            if true {
                                panic!("first");
                            }
                            Ok(())
                        });
                        for _ in 0..further {
                            // They panic only once the first panic cancelled the scope, so
                            // the first is "first" on every runtime.
                            s.spawn(async {
                                cancelled().await;
                                if true {
                                    panic!("further");
                                }
                                Ok(())
                            });
                        }
                        Ok::<(), taskscope::Cancelled>(())
                    })
                    .within(PAUSED_HANG, "the scope's re-raise of its children's panic"),
            )
        }))
    });
    let payload = r.expect_err("the scope re-raised its first child's panic");
    let message = payload.downcast_ref::<&str>().map(|m| m.to_string());
    let events = capture.0.lock().unwrap().clone();
    (message, events)
}

/// `extra_panics` is read: a scope that re-raises its first panic reports, in one event,
/// how many further panics it swallowed (their payloads are dropped), naming the scope.
#[test]
fn further_panics_swallowed_by_the_re_raise_are_reported_with_their_count() {
    let (message, events) = run_panicking_scope("panicky", 2);
    assert_eq!(
        message.as_deref(),
        Some("first"),
        "the first payload is re-raised"
    );
    let reports: Vec<_> = events
        .iter()
        .filter(|e| e.further_panics.is_some())
        .collect();
    assert_eq!(reports.len(), 1, "one report at the re-raise: {events:?}");
    assert_eq!(reports[0].further_panics, Some(2), "{events:?}");
    assert_eq!(reports[0].level, Level::ERROR);
    assert_eq!(reports[0].scope.as_deref(), Some("panicky"));
    assert!(
        reports[0].message.contains("2 further panic"),
        "the message says how many: {:?}",
        reports[0].message
    );

    // A single panic: re-raised, nothing swallowed, nothing to report.
    let (message, events) = run_panicking_scope("one_panic", 0);
    assert_eq!(message.as_deref(), Some("first"));
    assert!(
        events.iter().all(|e| e.further_panics.is_none()),
        "no swallowed panics, no report: {events:?}"
    );
}

/// Drops the future of a scope named "dropper" after its first poll, in which the body
/// spawned `children` children that wait forever and then waited itself; returns the
/// events.
fn drop_scope_future_with_children(children: usize) -> Vec<Captured> {
    let capture = Capture::default();
    let rt = paused_runtime();
    tracing::subscriber::with_default(capture.clone(), || {
        rt.block_on(async {
            let scope = Scope::builder().name("dropper").run(async move |s| {
                for _ in 0..children {
                    s.spawn(std::future::pending::<Result<(), taskscope::Cancelled>>());
                }
                std::future::pending::<()>().await;
                Ok::<(), taskscope::Cancelled>(())
            });
            // The timeout drops the scope future at its first expiry.
            let r = tokio::time::timeout(Duration::from_millis(1), scope).await;
            assert!(r.is_err(), "the body never returns");
        })
    });
    capture.0.lock().unwrap().clone()
}

/// A scope future dropped while its children run (they are cancelled and left to the
/// nearest live ancestor scope) says so in a debug event naming the scope; dropped with no
/// child running, it says nothing of children.
#[test]
fn a_scope_future_dropped_while_children_run_says_so_in_an_event() {
    let handed_over = |events: &[Captured]| -> Vec<Captured> {
        events
            .iter()
            .filter(|e| e.message.contains("dropped while children run"))
            .cloned()
            .collect()
    };
    let events = drop_scope_future_with_children(2);
    let said = handed_over(&events);
    assert_eq!(said.len(), 1, "one event for the dropped scope: {events:?}");
    assert_eq!(said[0].level, Level::DEBUG);
    assert_eq!(said[0].scope.as_deref(), Some("dropper"));

    let events = drop_scope_future_with_children(0);
    assert!(
        handed_over(&events).is_empty(),
        "no child ran when the scope future was dropped: {events:?}"
    );
}
