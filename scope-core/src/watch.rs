//! What a scope future watches besides its body and children: futures that cancel the scope
//! when they complete ([`ScopeBuilder::cancel_when`](crate::ScopeBuilder::cancel_when): an
//! external `CancellationToken`, a shutdown signal), and the report of a scope that is stuck
//! after it was cancelled ([`ScopeBuilder::on_stuck`](crate::ScopeBuilder::on_stuck)).
//!
//! Kept behind one `Option<Box<..>>` in the scope future, so that scopes that use none of
//! it pay one pointer.

use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::Context;
use std::time::Duration;

use crate::error::CancelReason;
use crate::snapshot::TreeSnapshot;
use crate::sync::{Arc, Mutex, get_mut};
use crate::tree::Node;

/// A future that cancels the scope with `reason` when it completes.
pub(crate) struct Trigger {
    fut: Pin<Box<dyn Future<Output = ()> + Send>>,
    reason: CancelReason,
}

/// What [`ScopeBuilder::on_stuck`](crate::ScopeBuilder::on_stuck) configured.
#[derive(Clone)]
pub(crate) struct StuckReport {
    pub(crate) after: Duration,
    pub(crate) report: Arc<dyn Fn(&TreeSnapshot) + Send + Sync>,
}

/// The builder's side: what the scope future will watch.
#[derive(Default)]
pub(crate) struct Watches {
    pub(crate) stuck: Option<StuckReport>,
    /// In a `Mutex` only so that the builder stays `Sync`; reached through `get_mut`.
    triggers: Mutex<Vec<Trigger>>,
}

impl fmt::Debug for Watches {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watches")
            .field("on_stuck", &self.stuck.as_ref().map(|s| s.after))
            .finish_non_exhaustive()
    }
}

impl Watches {
    pub(crate) fn add_trigger(
        &mut self,
        fut: impl Future<Output = ()> + Send + 'static,
        reason: CancelReason,
    ) {
        get_mut(&mut self.triggers).push(Trigger {
            fut: Box::pin(fut),
            reason,
        });
    }

    /// The scope future's side, if there is anything to watch.
    pub(crate) fn into_watch(mut self) -> Option<Box<Watch>> {
        if self.stuck.is_none() && get_mut(&mut self.triggers).is_empty() {
            return None;
        }
        let triggers = std::mem::take(get_mut(&mut self.triggers));
        Some(Box::new(Watch {
            stuck: self.stuck.map(|report| Stuck {
                report,
                timer: None,
                fired: false,
            }),
            triggers: Mutex::new(triggers),
        }))
    }
}

/// The scope future's side.
pub(crate) struct Watch {
    stuck: Option<Stuck>,
    triggers: Mutex<Vec<Trigger>>,
}

struct Stuck {
    report: StuckReport,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    fired: bool,
}

impl Watch {
    /// Polls the triggers (until the scope is cancelled) and the stuck timer (once it is).
    pub(crate) fn poll(&mut self, node: &Arc<Node>, cx: &mut Context<'_>) {
        let triggers = get_mut(&mut self.triggers);
        if !triggers.is_empty() {
            if node.state().is_soft() {
                triggers.clear(); // cancelled anyway: nothing left to watch for
            } else {
                let mut fired = None;
                triggers.retain_mut(|t| {
                    if fired.is_none() && t.fut.as_mut().poll(cx).is_ready() {
                        fired = Some(t.reason);
                        return false;
                    }
                    true
                });
                if let Some(reason) = fired {
                    node.cancel(reason);
                }
            }
        }
        if let Some(stuck) = &mut self.stuck {
            stuck.poll(node, cx);
        }
    }
}

impl Stuck {
    /// Arms the timer when the scope is first seen cancelled; reports once when it fires.
    fn poll(&mut self, node: &Arc<Node>, cx: &mut Context<'_>) {
        if self.fired || !node.state().is_soft() {
            return;
        }
        let after = self.report.after;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(after)));
        if timer.as_mut().poll(cx).is_ready() {
            self.fired = true;
            self.timer = None;
            let report = &self.report.report;
            if let Err(p) = catch_unwind(AssertUnwindSafe(|| report(&TreeSnapshot::of(node)))) {
                node.record_panic(p);
            }
        }
    }
}
