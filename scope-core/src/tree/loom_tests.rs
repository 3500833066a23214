//! Loom models of the cancel tree, the busy count (the child registry's count/close
//! protocol) and the `cancelled()` future.
//!
//! Built only with `--cfg taskscope_loom` (see `crate::sync` for which types are modelled):
//!
//! ```text
//! RUSTFLAGS="--cfg taskscope_loom" cargo test -p taskscope-core --release --lib loom_tests
//! ```
//!
//! Every model drives the real code (`Node::attach`, `cancel`, `escalate`, `detach`,
//! `try_add_task`, `task_done`, `try_close`, `WaitForCancel`, `Driver::poll` through a
//! cancel scope's future, a lazily built scope's future and a scope's future taking its
//! local children, and `local::spawn` against the local queue's close), never a copy of
//! it. The
//! invariants cited (#1-#8) are those of the module doc of [`crate::tree`]. The models use the
//! ambient frame of `crate::context` on one loom thread only (loom threads share one OS
//! thread, so a thread-local would be shared between them) nor tokio's runtime: a spawned child is its
//! unit in `busy` (counted by `try_add_task`, uncounted by `task_done` as the child's
//! `TaskGuard` does); the abort registry (`child/registry.rs`) needs tokio `AbortHandle`s and is only
//! exercised empty (a hard cancel still takes its lock in `abort_tasks`).
//!
//! A model that must see two outcomes records them in std atomics, outside loom, across all
//! the executions loom explores, and asserts after `loom::model` returned that both occurred:
//! so the race is really explored, not just passed.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicBool as Seen;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use loom::thread;

use super::node::{INH_HARD, INH_SOFT, Life};
use super::{Config, Node};
use crate::context::WaitForCancel;
use crate::error::CancelReason;
use crate::sync::{Arc, AtomicUsize, Ordering};

/// Runs `f` under loom and prints how many executions it explored.
///
/// `preemptions` bounds how many times an execution may switch away from a thread that could
/// go on (`None`: every interleaving). The small models are explored exhaustively; the two
/// with a `block_on` loop against two other threads are bounded (exhaustively they take
/// 130,000 and 2.4 million executions, minutes in release). `LOOM_MAX_PREEMPTIONS` overrides
/// the bound of every model. With `LOOM_LOG` set this is `loom::model`, which installs the
/// subscriber that prints the interleaving (`LOOM_LOG=trace`, an env-filter; set
/// `LOOM_MAX_PREEMPTIONS` too then, or the bounded models explore unbounded).
fn model(preemptions: Option<usize>, f: impl Fn() + Sync + Send + 'static) {
    let runs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let r = runs.clone();
    let f = move || {
        r.fetch_add(1, Relaxed);
        f();
    };
    if std::env::var_os("LOOM_LOG").is_some() {
        loom::model(f);
    } else {
        let mut b = loom::model::Builder::new();
        b.preemption_bound = b.preemption_bound.or(preemptions);
        b.check(f);
    }
    println!("loom: {} executions", runs.load(Relaxed));
}

/// The bound of the two largest models (see [`model`]).
const BOUNDED: Option<usize> = Some(4);

/// Two outcomes of a race, each recorded once it happened in some execution.
struct Outcomes {
    a: Seen,
    b: Seen,
}

impl Outcomes {
    const fn new() -> Self {
        Outcomes {
            a: Seen::new(false),
            b: Seen::new(false),
        }
    }
    fn record(&self, a: bool) {
        if a { &self.a } else { &self.b }.store(true, Relaxed);
    }
    fn assert_both(&self, a: &str, b: &str) {
        assert!(self.a.load(Relaxed), "no execution had the outcome: {a}");
        assert!(self.b.load(Relaxed), "no execution had the outcome: {b}");
    }
}

/// A waker that counts its wakes (a loom atomic: the count is part of the model).
struct Count(AtomicUsize);

impl Wake for Count {
    fn wake(self: std::sync::Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn counter() -> (Arc<Count>, Waker) {
    let c = Arc::new(Count(AtomicUsize::new(0)));
    (c.clone(), Waker::from(c))
}

impl Count {
    fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

struct Noop;

impl Wake for Noop {
    fn wake(self: std::sync::Arc<Self>) {}
}

/// A node entered at the root of the tree.
fn root(config: Config) -> Arc<Node> {
    let n = Node::new(config);
    n.attach(None);
    n
}

/// A node entered below `parent`.
fn child_of(parent: &Arc<Node>) -> Arc<Node> {
    let n = Node::new(Config::default());
    n.attach(Some(parent));
    n
}

/// A node whose own cancel is soft first (a grace period), so soft and hard are apart.
fn with_grace() -> Config {
    Config {
        grace: Duration::from_secs(60),
        ..Config::default()
    }
}

/// Detaches `nodes` (children first), breaking the parent/children reference cycles.
fn detach_all(nodes: &[&Arc<Node>]) {
    for n in nodes {
        n.detach();
    }
}

// ---------------------------------------------------------------------------------------
// 1. The cancel tree: cancel vs attach, detach, and a grandchild's attach.
// ---------------------------------------------------------------------------------------

/// A soft cancel of the parent, then the end of its grace (`escalate`), race the `attach` of
/// a child below it. Whenever the child attached, it ends up with both inherited bits (#3:
/// `attach` copies the parent's bits under the parent's lock, `cancel`/`escalate` clone the
/// child list in the critical section that set them), and its own bits stay clear.
#[test]
fn loom_cancel_and_escalate_vs_attach() {
    static SEEN: Outcomes = Outcomes::new();
    model(None, || {
        let parent = root(with_grace());
        let child = Node::new(Config::default());
        let p = parent.clone();
        let canceller = thread::spawn(move || {
            p.cancel(CancelReason::Explicit);
            p.escalate();
        });
        child.attach(Some(&parent));
        // Did the attach see the parent's cancel (copied the bits) or was the child reached
        // by propagation? Read just after attach: soft already means one of them happened.
        SEEN.record(child.state().is_soft());
        canceller.join().unwrap();

        assert!(parent.state().own_soft() && parent.state().own_hard());
        assert_eq!(
            child.state().0,
            INH_SOFT | INH_HARD,
            "#3: the child is reached"
        );
        assert_eq!(
            child.lock().reason,
            None,
            "an inherited cancel has no own reason"
        );
        detach_all(&[&child, &parent]);
        assert!(parent.lock().children.is_empty());
    });
    SEEN.assert_both(
        "child soft right after attach",
        "child not yet soft after attach",
    );
}

/// A (hard) cancel of the parent races the `detach` of one of its two children. No panic;
/// the detached child is out of the parent's list, is ignored by the cancel if it was
/// detached first (#6), and the other child is reached (#3). The swap-remove in `detach`
/// moved the other child's index: detaching it afterwards must find it (`parent_idx`).
#[test]
fn loom_cancel_vs_detach() {
    static SEEN: Outcomes = Outcomes::new();
    model(None, || {
        let parent = root(Config::default());
        let gone = child_of(&parent);
        let stays = child_of(&parent);
        let p = parent.clone();
        let canceller = thread::spawn(move || p.cancel_now(CancelReason::Explicit));
        gone.detach();
        canceller.join().unwrap();

        assert!(parent.state().own_hard());
        assert!(stays.state().is_hard(), "#3: the live child is reached");
        {
            let pi = parent.lock();
            assert_eq!(pi.children.len(), 1);
            assert!(pi.children.get(0).is_some_and(|c| Arc::ptr_eq(c, &stays)));
        }
        assert_eq!(gone.lock().life(), Life::Done { caught: false });
        // Either the cancel reached it before it left, or it was ignored (#6).
        let st = gone.state();
        assert!(
            st.0 == 0 || st.0 == INH_SOFT | INH_HARD,
            "state {:#b}",
            st.0
        );
        SEEN.record(st.is_soft());

        stays.detach();
        assert!(parent.lock().children.is_empty(), "parent_idx kept right");
        parent.detach();
    });
    SEEN.assert_both(
        "cancel reached the child before its detach",
        "detached child ignored by the cancel",
    );
}

/// A cancel of the root and a cancel of the middle node race the attach of a grandchild
/// below the middle node. Whatever the order, the grandchild is reached (#3 through two
/// levels: it is either in the middle node's cloned list when the root's propagation or the
/// middle node's own cancel gets there, or sees the middle node's bits at attach).
#[test]
fn loom_cancel_vs_attach_grandchild() {
    model(None, || {
        let top = root(Config::default());
        let mid = child_of(&top);
        let (t, m) = (top.clone(), mid.clone());
        let cancel_top = thread::spawn(move || t.cancel_now(CancelReason::Explicit));
        let cancel_mid = thread::spawn(move || m.cancel_now(CancelReason::DeadlineExceeded));
        let grandchild = child_of(&mid);
        cancel_top.join().unwrap();
        cancel_mid.join().unwrap();

        assert!(mid.state().own_hard() && mid.state().inherited_hard());
        assert_eq!(
            grandchild.state().0,
            INH_SOFT | INH_HARD,
            "#3 through two levels"
        );
        assert_eq!(mid.lock().reason, Some(CancelReason::DeadlineExceeded));
        detach_all(&[&grandchild, &mid, &top]);
    });
}

// ---------------------------------------------------------------------------------------
// 2. The child registry's count: spawn vs close, last child vs spawn, cancel vs completion.
// ---------------------------------------------------------------------------------------

/// A spawn (`try_add_task`, the count `admit` takes) races the close of the idle scope
/// (`try_close`, what the scope future does once its work is done). Exactly one wins (#7):
/// the spawn is counted and the scope stays open (it must wait for the child), or the spawn
/// is refused and the scope is closed. Never both, never a child counted in a closed-idle
/// scope. The scope is a child node, so its first child carries a unit up to the parent
/// (`carry_up`), and the parent's count matches exactly (#5, read with both busy locks).
#[test]
fn loom_spawn_vs_close() {
    static SEEN: Outcomes = Outcomes::new();
    model(None, || {
        let parent = root(Config::default());
        let scope = child_of(&parent);
        let s = scope.clone();
        let spawner = thread::spawn(move || s.try_add_task());
        let closed = scope.try_close();
        let spawned = spawner.join().unwrap();

        assert!(spawned != closed, "#7: exactly one of spawn and close wins");
        assert_eq!(scope.is_closed(), closed);
        assert_eq!(scope.busy_count(), usize::from(spawned));
        assert_eq!(
            parent.busy_count(),
            usize::from(spawned),
            "#5: one unit carried up"
        );
        assert!(
            parent.foreground_idle(&scope),
            "#5: exact under both busy locks"
        );
        SEEN.record(spawned);

        if spawned {
            scope.task_done();
            assert!(parent.is_idle() && scope.is_idle());
            assert!(scope.try_close(), "closes once the child is gone");
        }
        detach_all(&[&scope, &parent]);
    });
    SEEN.assert_both(
        "spawn counted, close refused",
        "spawn refused, scope closed",
    );
}

/// The last child of a nested scope finishes (`task_done` to zero, carried up to the parent
/// through `carry_up`) while a new child is spawned into it. A third thread checks, under
/// both busy locks (child first, #2), that the parent counts the scope exactly while it is
/// busy (#5: a parent never sees a false zero). Afterwards both counts are one, and the
/// owners were woken exactly when the counts went through zero, the scope's and the
/// parent's alike.
#[test]
fn loom_last_child_done_vs_spawn() {
    static SEEN: Outcomes = Outcomes::new();
    model(None, || {
        let parent = root(Config::default());
        let scope = child_of(&parent);
        let (p_count, p_waker) = counter();
        let (s_count, s_waker) = counter();
        parent.set_owner(&p_waker);
        scope.set_owner(&s_waker);
        assert!(scope.try_add_task());
        assert_eq!(parent.busy_count(), 1);

        let s = scope.clone();
        let last = thread::spawn(move || s.task_done());
        let (p, s) = (parent.clone(), scope.clone());
        let observer = thread::spawn(move || assert!(p.foreground_idle(&s), "#5"));
        assert!(scope.try_add_task(), "the scope is not closed");
        last.join().unwrap();
        observer.join().unwrap();

        assert_eq!(scope.busy_count(), 1);
        assert_eq!(
            parent.busy_count(),
            1,
            "#5: exactly one unit for the busy scope"
        );
        let through_zero = s_count.get();
        assert!(through_zero <= 1);
        assert_eq!(
            p_count.get(),
            through_zero,
            "the parent went idle with the scope"
        );
        SEEN.record(through_zero == 1);

        scope.task_done();
        assert!(scope.is_idle() && parent.is_idle());
        assert_eq!(
            p_count.get(),
            through_zero + 1,
            "the parent's owner is woken at zero"
        );
        assert_eq!(
            s_count.get(),
            through_zero + 1,
            "the scope's owner is woken at zero"
        );
        detach_all(&[&scope, &parent]);
    });
    SEEN.assert_both(
        "the last child finished first (through zero and back)",
        "the spawn came first (the count never reached zero)",
    );
}

/// A scope whose body spawned a child before the scope's future was first polled (the
/// child counts in the fresh node, which has no parent yet) enters the tree (`attach`)
/// while that child finishes. `attach` holds the node's busy lock across setting `parent`
/// and carrying the node's unit up, so the child's `task_done` either ran before (nothing
/// to carry, nothing carried down) or after (the unit it carries down is the one `attach`
/// carried up): the parent ends idle either way, and exact meanwhile (#5).
#[test]
fn loom_attach_busy_node_vs_last_child() {
    static SEEN: Outcomes = Outcomes::new();
    model(None, || {
        let parent = root(Config::default());
        let scope = Node::new(Config::default());
        assert!(scope.try_add_task(), "spawned before entry");
        let s = scope.clone();
        let child = thread::spawn(move || s.task_done());
        scope.attach(Some(&parent));
        SEEN.record(parent.busy_count() == 1);
        assert!(parent.foreground_idle(&scope), "#5");
        child.join().unwrap();

        assert!(scope.is_idle());
        assert!(parent.is_idle(), "#5: no unit left behind in the parent");
        detach_all(&[&scope, &parent]);
    });
    SEEN.assert_both(
        "the parent counted the busy scope just after attach",
        "the parent was idle just after attach (the child had finished)",
    );
}

/// A hard cancel of a scope races the completion of its one child, while the scope's
/// future waits as a catcher does (#8: its node is hard on its own account, it waits for
/// `busy == 0`, with its owner waker registered first). The catcher always finishes: the
/// cancel or the child's `task_done` wakes it (no lost wakeup; loom reports a deadlock
/// otherwise). Both orders happen: the child sees the hard bit while it is live (the real
/// child is aborted, #4) or completes before the cancel reaches it.
#[test]
fn loom_cancel_vs_child_completion() {
    static CHILD_SAW: Outcomes = Outcomes::new();
    static CANCEL_SAW: Outcomes = Outcomes::new();
    model(BOUNDED, || {
        let scope = root(Config::default());
        assert!(scope.try_add_task());

        let s = scope.clone();
        let child = thread::spawn(move || {
            // A running child checks the bit after its poll (#4), then its guard uncounts it.
            CHILD_SAW.record(s.state().is_hard());
            s.task_done();
        });
        let s = scope.clone();
        let canceller = thread::spawn(move || {
            s.cancel_now(CancelReason::Explicit);
            CANCEL_SAW.record(!s.is_idle());
        });

        let catcher = std::future::poll_fn(|cx: &mut Context<'_>| {
            scope.set_owner(cx.waker());
            if scope.state().own_hard() && scope.is_idle() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        });
        loom::future::block_on(catcher);
        child.join().unwrap();
        canceller.join().unwrap();
        assert!(scope.is_idle() && scope.try_close());
        scope.detach();
    });
    CHILD_SAW.assert_both(
        "the child saw the cancel while live",
        "the child completed before the cancel",
    );
    CANCEL_SAW.assert_both(
        "the cancel returned with the child live",
        "the child was gone when the cancel returned",
    );
}

// ---------------------------------------------------------------------------------------
// 3. The `cancelled()` future: no lost wakeup, and drop racing cancel.
// ---------------------------------------------------------------------------------------

/// Two `WaitForCancel` futures (one per thread) wait while a third thread soft-cancels the
/// node. Both always complete with the node's reason (#4: a waiter checks the bit under the
/// lock that drains `waiters` with it; a lost wakeup would deadlock `block_on`, which loom
/// reports), and the slab is empty afterwards.
#[test]
fn loom_wait_for_cancel_vs_cancel() {
    model(BOUNDED, || {
        let node = root(with_grace());
        let n = node.clone();
        let canceller = thread::spawn(move || n.cancel(CancelReason::Explicit));
        let n = node.clone();
        let other = thread::spawn(move || loom::future::block_on(WaitForCancel::on(n)).reason());
        let c = loom::future::block_on(WaitForCancel::on(node.clone()));
        assert_eq!(c.reason(), CancelReason::Explicit);
        assert_eq!(other.join().unwrap(), CancelReason::Explicit);
        canceller.join().unwrap();
        assert!(node.state().is_soft() && !node.state().is_hard());
        assert_eq!(node.lock().waiters.len(), 0);
        node.detach();
    });
}

/// A registered waiter is dropped while the node is cancelled, and a second registered
/// waiter is awaited. No panic; the dropped waiter's key is removed if the drop came first
/// and left alone if the drain did (#4: "knows its key was drained exactly when the bit is
/// set"), so the slab ends empty and the other waiter is woken.
#[test]
fn loom_drop_waiter_vs_cancel() {
    model(None, || {
        let node = root(with_grace());
        let noop = Waker::from(std::sync::Arc::new(Noop));
        let mut cx = Context::from_waker(&noop);
        let mut dropped = WaitForCancel::on(node.clone());
        assert!(Pin::new(&mut dropped).poll(&mut cx).is_pending());
        let mut kept = WaitForCancel::on(node.clone());
        assert!(Pin::new(&mut kept).poll(&mut cx).is_pending());
        assert_eq!(node.lock().waiters.len(), 2);

        let dropper = thread::spawn(move || drop(dropped));
        let n = node.clone();
        let canceller = thread::spawn(move || n.cancel(CancelReason::Explicit));
        let c = loom::future::block_on(kept);
        assert_eq!(c.reason(), CancelReason::Explicit);
        dropper.join().unwrap();
        canceller.join().unwrap();
        assert_eq!(node.lock().waiters.len(), 0);
        node.detach();
    });
}

// ---------------------------------------------------------------------------------------
// 4. The driver: a node future that registers its owner late (`driver.rs`).
// ---------------------------------------------------------------------------------------

/// A cancel scope's future whose inner future completes on its first poll while a child
/// below it is still counted: the driver reads the count, registers its waker only then
/// (registering late), and reads it again. The last child finishing on another thread
/// either is seen by one of the reads (the first poll is ready) or wakes the registered
/// waker (the second poll is ready): never a future parked with nothing left to wake it.
#[test]
fn loom_driver_registers_late_vs_last_child() {
    static FIRST_POLL: Outcomes = Outcomes::new();
    model(None, || {
        let node = Node::new(Config::default());
        assert!(node.try_add_task());
        let n = node.clone();
        let child = thread::spawn(move || n.task_done());

        let (count, waker) = counter();
        let mut cx = Context::from_waker(&waker);
        let mut run = Box::pin(crate::cancel_scope::Run::new(
            crate::driver::Driver::new(node.clone()),
            std::future::ready(7),
        ));
        let first = run.as_mut().poll(&mut cx);
        FIRST_POLL.record(first.is_ready());
        child.join().unwrap();
        let out = match first {
            Poll::Ready(out) => out,
            Poll::Pending => {
                assert_eq!(count.get(), 1, "the last child woke the waiting future");
                match run.as_mut().poll(&mut cx) {
                    Poll::Ready(out) => out,
                    Poll::Pending => panic!("woken with nothing below, yet still pending"),
                }
            }
        };
        assert_eq!(out, Ok(7));
        assert_eq!(node.lock().life(), Life::Done { caught: false });
    });
    FIRST_POLL.assert_both(
        "the child was gone by the first poll's reads",
        "the first poll parked and the child woke it",
    );
}

/// A cancel scope's future waits on its inner future (pending) while another thread
/// hard-cancels the scope: the cancel either lands before the driver's decision (the
/// first poll catches it) or after its waker was registered (it wakes it and the second
/// poll catches it). Either way the future ends with the scope's reason and leaves the
/// tree.
#[test]
fn loom_driver_waits_vs_cancel() {
    static FIRST_POLL: Outcomes = Outcomes::new();
    model(None, || {
        let node = Node::new(Config::default());
        let n = node.clone();
        let canceller = thread::spawn(move || n.cancel_now(CancelReason::Explicit));

        let (count, waker) = counter();
        let mut cx = Context::from_waker(&waker);
        let mut run = Box::pin(crate::cancel_scope::Run::new(
            crate::driver::Driver::new(node.clone()),
            std::future::pending::<()>(),
        ));
        let first = run.as_mut().poll(&mut cx);
        FIRST_POLL.record(first.is_ready());
        canceller.join().unwrap();
        let out = match first {
            Poll::Ready(out) => out,
            Poll::Pending => {
                assert!(count.get() >= 1, "the cancel woke the waiting future");
                match run.as_mut().poll(&mut cx) {
                    Poll::Ready(out) => out,
                    Poll::Pending => panic!("woken by its own hard cancel, yet still pending"),
                }
            }
        };
        assert_eq!(out.unwrap_err().reason(), CancelReason::Explicit);
        assert_eq!(node.lock().life(), Life::Done { caught: true });
    });
    FIRST_POLL.assert_both(
        "the cancel came before the first poll decided",
        "the first poll parked and the cancel woke it",
    );
}

/// A `wait_children()` future polls while the node's last child ends on another thread: it
/// either sees the count at zero or is registered before the transition drains the idle
/// waiters (both under the node's lock), so it is woken; never parked with nothing to wake
/// it.
#[test]
fn loom_wait_children_vs_last_child() {
    static FIRST_POLL: Outcomes = Outcomes::new();
    model(None, || {
        let node = root(Config::default());
        assert!(node.try_add_task());
        let n = node.clone();
        let child = thread::spawn(move || n.task_done());

        let (count, waker) = counter();
        let mut cx = Context::from_waker(&waker);
        let mut wait = Box::pin(crate::child::WaitChildren::new(node.clone()));
        let first = wait.as_mut().poll(&mut cx);
        FIRST_POLL.record(first.is_ready());
        child.join().unwrap();
        if first.is_pending() {
            assert_eq!(count.get(), 1, "the last child woke the waiter");
            assert!(wait.as_mut().poll(&mut cx).is_ready());
        }
        drop(wait);
        node.detach();
    });
    FIRST_POLL.assert_both(
        "the child was gone by the first poll",
        "the waiter registered and the child woke it",
    );
}

/// A local child spawned through a `'static` scope on another thread while the scope's
/// future is dropped (`ScopeWork::abandon`: cancel, close the node, close the local queue;
/// then `drop_inner`: drop what is queued). The child is refused, or dropped with the scope
/// (its handle resolved): never left in the queue with nobody to run it, where its handle
/// would wait until the last clone of the `Scope` goes. Without `Locals::close`, a spawn
/// that passed the node's closed check before the drop pushes after `drop_all` took the
/// queue, and this model fails.
#[test]
fn loom_spawn_local_vs_scope_drop() {
    static REFUSED: Outcomes = Outcomes::new();
    model(None, || {
        let node = root(Config::default());
        let queue = Arc::new(crate::local::Queue::<crate::local::Sendable>::new());
        let mut locals = crate::local::Locals::new(queue.clone());
        let n = node.clone();
        let spawner = thread::spawn(move || {
            crate::local::spawn::<_, _, _, crate::Cancelled>(&queue, &n, async { Ok(1u32) })
        });

        node.cancel_now(CancelReason::ScopeDropped);
        node.close();
        locals.close();
        let _ = locals.drop_all();

        match spawner.join().unwrap() {
            Err(crate::SpawnError::Closed) => REFUSED.record(true),
            Err(e) => panic!("unexpected spawn error: {e:?}"),
            Ok(handle) => {
                assert!(
                    handle.is_finished(),
                    "a local child was left queued after its scope's future was dropped"
                );
                REFUSED.record(false);
            }
        }
        drop(locals);
        node.detach();
    });
    REFUSED.assert_both(
        "the spawn was refused",
        "the child was spawned, then dropped with the scope",
    );
}

/// A scope whose body ends while a scope opened under it as an explicit parent keeps it
/// busy (a hold), and two local children spawned meanwhile through a `'static` scope on
/// another thread. Once its body ended, the scope's poll decides whether stopped inner
/// work must be dropped to release holds (`ScopeWork::has_stopped_inner`): nothing is
/// stopped (the body ended on its own, no cancel), so a local child queued at any point of
/// the poll is run to its value, never dropped unrun. The body yields once, so that a poll
/// can go round its loop after finding a child queued when it registered, and then see
/// the other one queued after its last look at the queue. (With `has_stopped_inner`
/// answering `true`, or `step == Catch || local children busy`, that child is dropped as
/// "stopped" work, and this model fails.)
#[test]
fn loom_spawn_local_vs_scope_waiting_on_holds() {
    static FIRST_POLL: Outcomes = Outcomes::new();
    model(None, || {
        let stash = Arc::new(crate::sync::Mutex::new(None));
        let put = stash.clone();
        let mut fut = Box::pin(crate::ScopeBuilder::new().run(move |s| {
            *crate::sync::lock(&put) = Some(s.clone());
            async {
                YieldOnce(false).await;
                Ok::<(), crate::Cancelled>(())
            }
        }));
        let scope: crate::Scope<'static, crate::Cancelled> = crate::sync::lock(&stash)
            .take()
            .expect("the body's closure ran");
        let hold = crate::Parent::from(scope.handle())
            .hold()
            .expect("the scope is open");
        let spawner = thread::spawn(move || {
            let a = scope.spawn_local(async { Ok(1u32) });
            let b = scope.spawn_local(async { Ok(2u32) });
            (a, b)
        });

        let (_count, waker) = counter();
        let mut cx = Context::from_waker(&waker);
        assert!(
            fut.as_mut().poll(&mut cx).is_pending(),
            "the hold keeps the scope busy"
        );
        let (mut a, mut b) = spawner.join().unwrap();
        FIRST_POLL.record(a.is_finished());
        // What the polls so far did not take was queued after their last look at the
        // queue (which woke the owner) or was the body's yield: a poll or two more.
        for _ in 0..2 {
            assert!(
                fut.as_mut().poll(&mut cx).is_pending(),
                "the hold is still there"
            );
        }
        for (child, value) in [(&mut a, 1), (&mut b, 2)] {
            match Pin::new(child).poll(&mut cx) {
                Poll::Ready(out) => assert_eq!(out, Ok(value), "the local child ran to its value"),
                Poll::Pending => panic!("the local child was left queued"),
            }
        }
        drop(hold);
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(out) => assert_eq!(out, Ok(())),
            Poll::Pending => panic!("the hold is gone, yet the scope waits"),
        }
    });
    FIRST_POLL.assert_both(
        "the first child ran in the first poll",
        "the first child was queued after the first poll's last look at the queue",
    );
}

/// Pending once (waking its task at once), then ready.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// A node future entered without its node (a scope whose body holds no handle, a cancel
/// scope with nothing set) builds it in the middle of its poll (the code inside reads the
/// ambient context), below the ambient node, while another thread hard-cancels that
/// parent. The new node is attached either before the cancel (which then reaches it) or
/// after (it is born cancelled): never a node below a cancelled parent that does not know.
/// The future, whose inner code then waits, registers as the node's owner before it
/// decides: a cancel it did not see yet wakes it.
fn lazy_node_vs_parent_cancel<F: Future>(
    seen_at_decision: &'static Outcomes,
    make: impl Fn() -> F + Sync + Send + 'static,
) {
    model(None, move || {
        let parent = root(Config::default());
        let p = parent.clone();
        let canceller = thread::spawn(move || p.cancel_now(CancelReason::Explicit));

        let (count, waker) = counter();
        let mut cx = Context::from_waker(&waker);
        let mut fut = Box::pin(make());
        let mut lent = Some(parent.clone());
        let mut shields = 0;
        let first =
            crate::context::enter_node(&mut lent, &mut shields, || fut.as_mut().poll(&mut cx));
        assert!(first.is_pending(), "the code inside waits");
        let node = parent
            .lock()
            .children
            .get(0)
            .cloned()
            .expect("the node was built and attached below the ambient node");
        let seen = node.state().is_hard();
        seen_at_decision.record(seen);
        canceller.join().unwrap();
        // The new node, and every node built below it in the same poll (nested node futures
        // without a node: the read in the innermost built them all, outermost first).
        let mut at = Some(node);
        while let Some(n) = at {
            assert!(
                n.state().is_hard(),
                "the parent's cancel reached every new node"
            );
            at = n.lock().children.get(0).cloned();
        }
        if !seen {
            assert!(count.get() >= 1, "the cancel woke the future");
        }
        drop(fut);
        parent.detach();
    });
    seen_at_decision.assert_both(
        "the cancel came before the node was built or before the poll ended",
        "the cancel came after the poll and woke the registered owner",
    );
}

/// [`lazy_node_vs_parent_cancel`] for a scope whose body holds no handle.
#[test]
fn loom_lazy_scope_builds_its_node_vs_parent_cancel() {
    static SEEN_AT_DECISION: Outcomes = Outcomes::new();
    lazy_node_vs_parent_cancel(&SEEN_AT_DECISION, || {
        crate::ScopeBuilder::ambient(None, async || {
            let _ = crate::is_cancelled(); // builds the scope's node
            std::future::pending::<()>().await;
            Ok::<(), crate::Cancelled>(())
        })
    });
}

/// [`lazy_node_vs_parent_cancel`] for a scope whose body holds no handle, inside another:
/// the read in the inner one builds both nodes, the outer one below the ambient node first.
#[test]
fn loom_nested_lazy_scopes_build_their_nodes_vs_parent_cancel() {
    static SEEN_AT_DECISION: Outcomes = Outcomes::new();
    lazy_node_vs_parent_cancel(&SEEN_AT_DECISION, || {
        crate::ScopeBuilder::ambient(None, async || {
            crate::ScopeBuilder::ambient(None, async || {
                let _ = crate::is_cancelled(); // builds both nodes
                std::future::pending::<()>().await;
                Ok::<(), crate::Cancelled>(())
            })
            .await
        })
    });
}

/// [`lazy_node_vs_parent_cancel`] for a cancel scope with nothing set.
#[test]
fn loom_lazy_cancel_scope_builds_its_node_vs_parent_cancel() {
    static SEEN_AT_DECISION: Outcomes = Outcomes::new();
    lazy_node_vs_parent_cancel(&SEEN_AT_DECISION, || {
        crate::CancelScope::new().run(async {
            let _ = crate::is_cancelled(); // builds the cancel scope's node
            std::future::pending::<()>().await;
        })
    });
}
