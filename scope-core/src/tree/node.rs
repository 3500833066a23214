//! A node of the cancel tree: its state word, its lock-protected inner state, attach and
//! detach, cancellation and its propagation. The invariants cited here are listed in the
//! module doc of [`crate::tree`].

use std::borrow::Cow;
use std::task::Waker;
use std::time::Duration;

use tokio::time::Instant;

use super::list::List;
use super::slab::WakerSlab;
use crate::child::registry::Registry;
use crate::error::CancelReason;
use crate::outcome::Outcome;
use crate::sync::{
    Arc, AtomicBool, AtomicU32, AtomicUsize, Mutex, MutexGuard, OnceLock, Ordering, lock,
};

/// The node itself was cancelled (it has a reason).
pub(crate) const OWN_SOFT: u32 = 0b0001;
/// The node's own cancellation reached its hard phase (grace over).
pub(crate) const OWN_HARD: u32 = 0b0010;
/// An unshielded ancestor is cancelled.
pub(crate) const INH_SOFT: u32 = 0b0100;
/// An unshielded ancestor's cancellation reached its hard phase.
pub(crate) const INH_HARD: u32 = 0b1000;

const SOFT: u32 = OWN_SOFT | INH_SOFT;
const HARD: u32 = OWN_HARD | INH_HARD;

/// A snapshot of a node's state word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct State(pub(crate) u32);

impl State {
    /// Effectively cancelled: `cancelled()` resolves, `checkpoint()` fails.
    pub(crate) fn is_soft(self) -> bool {
        self.0 & SOFT != 0
    }
    /// Effectively hard-cancelled: futures under the node are dropped at their next poll.
    pub(crate) fn is_hard(self) -> bool {
        self.0 & HARD != 0
    }
    pub(crate) fn own_soft(self) -> bool {
        self.0 & OWN_SOFT != 0
    }
    pub(crate) fn own_hard(self) -> bool {
        self.0 & OWN_HARD != 0
    }
    pub(crate) fn inherited_hard(self) -> bool {
        self.0 & INH_HARD != 0
    }
    /// The inherited bits a child of a node in this state starts with.
    fn for_child(self) -> u32 {
        (if self.is_soft() { INH_SOFT } else { 0 }) | (if self.is_hard() { INH_HARD } else { 0 })
    }
}

/// Where a node is in its life: one state, changed only under the node's lock and only by
/// the named transitions of [`Inner`]:
///
/// ```text
/// Fresh --enter--> Running --complete--> Finishing --leave--> Done { caught: false }
///                  Running --catch-->    Catching  --leave--> Done { caught: true }
/// ```
///
/// plus, when the node's future is dropped unfinished, `abandon` (to `Abandoned`, from any
/// state but `Done`) and then `leave`. Cancellation is not part
/// of it: it is the state word's (`OWN_*`/`INH_*`), which any state but `Done` can take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Life {
    /// Built (a `CancelScope` not yet run, a scope future not yet polled): not in the tree.
    Fresh,
    /// Its future runs: attached to its parent.
    Running,
    /// The inner future completed; the node waits for what runs below it.
    Finishing,
    /// The node caught its own cancellation: the inner future is no longer polled, and is
    /// dropped once the subtree drained (invariant #8).
    Catching,
    /// Its future is being dropped unfinished: still in the tree, but nothing will read
    /// its outcome (an error or a panic recorded now is reported and dropped).
    Abandoned {
        /// It had caught its own cancellation.
        caught: bool,
    },
    /// Its future finished or was dropped: detached, cancels do nothing (invariant #6).
    Done {
        /// It had caught its own cancellation.
        caught: bool,
    },
}

/// What [`Inner::leave`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub(crate) enum Left {
    /// The node is now `Done`: take it out of its parent.
    Now,
    /// It was `Done` already.
    Before,
}

/// A node as [`Node::attach`] entered it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Attached {
    /// The node is a shield.
    pub(crate) shield: bool,
    /// The node has no deadline, so its timer has nothing to wait for: the timer generation
    /// read with that (a later change bumps it).
    pub(crate) quiet_timer: Option<u32>,
}

/// The configuration a node is built with.
#[derive(Clone, Debug, Default)]
pub(crate) struct Config {
    pub(crate) name: Option<Cow<'static, str>>,
    pub(crate) deadline: Option<Instant>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) grace: Duration,
    pub(crate) shield: bool,
    pub(crate) collect: bool,
    pub(crate) limit: Option<usize>,
    /// A scope's background node: errors and panics of its children are the scope's.
    pub(crate) forward: bool,
    pub(crate) kind: crate::tree::NodeKind,
}

pub(crate) struct Inner {
    pub(crate) name: Option<Cow<'static, str>>,
    /// The first reason this node was cancelled with (it sticks).
    pub(crate) reason: Option<CancelReason>,
    pub(crate) deadline: Option<Instant>,
    /// A relative timeout, turned into `deadline` at entry.
    timeout: Option<Duration>,
    pub(crate) grace: Duration,
    /// When the own cancellation's grace period ends (set by a soft cancel).
    pub(crate) hard_at: Option<Instant>,
    pub(crate) shield: bool,
    life: Life,
    /// The nodes attached below this one; each knows its index here (`parent_idx`).
    pub(crate) children: List<Arc<Node>>,
    /// The waker of the future that drives this node.
    owner: Option<Waker>,
    /// `cancelled()` futures waiting for this node (drained when it becomes soft, #4).
    pub(crate) waiters: WakerSlab,
    pub(crate) outcome: Outcome,
    pub(crate) kind: crate::tree::NodeKind,
    /// The task the node's future was first polled in.
    pub(crate) task: Option<tokio::task::Id>,
    /// The node's span (disabled until entry, or if nobody wants it).
    #[cfg(feature = "tracing")]
    pub(crate) span: tracing::Span,
    /// Tokens cancelled when this node becomes soft (`tokio-util` interop).
    #[cfg(feature = "tokio-util")]
    pub(crate) tokens: Vec<tokio_util::sync::CancellationToken>,
    /// A scope's background node, once a background child was spawned. Taken (to break the
    /// reference cycle through `parent`) when the scope finishes or is dropped.
    pub(crate) background: Option<Arc<Node>>,
    /// `wait_children()` futures waiting for the node's busy count to reach zero, once one
    /// waited (see `busy.rs`).
    pub(crate) idle_waiters: Option<Box<super::busy::IdleWaiters>>,
}

/// A node of the cancel tree. See the module doc of [`crate::tree`].
///
/// `state` (read on every poll of every child) and `busy` (written by every spawn and every
/// finishing child) are kept at least two cache lines apart by the field order (`repr(C)`,
/// the large `inner` between them, checked at compile time below) rather than by aligning
/// the node: an over-aligned allocation costs `posix_memalign`, about ten times a plain
/// `malloc`, for every scope and cancel scope.
#[repr(C)]
pub(crate) struct Node {
    /// `OWN_*` and `INH_*` bits. Written only under `inner`'s lock (#1); read anywhere.
    state: AtomicU32,
    /// How many child tasks of this scope run a shield right now (see `child/registry.rs`).
    pub(crate) shielded: AtomicU32,
    /// Bumped (under `inner`'s lock) whenever `deadline` or `hard_at` changes, so the
    /// node's future re-reads them only when they changed.
    timer_gen: AtomicU32,
    /// This node is a scope's background node: outcomes are recorded with the parent.
    pub(crate) forward: bool,
    /// Set once `inner.background` was set: the scope then watches for its foreground
    /// work to finish (see `busy.rs`).
    pub(crate) has_background: AtomicBool,
    /// Set (under `tasks`' lock) by the first child task registered: a scope that never
    /// had one has no task to wait for at its end (`tasks_settled`).
    pub(crate) has_tasks: AtomicBool,
    /// Set (under the lock) once an error or a panic was written into `inner.outcome`: a
    /// scope whose body returned a value, with this unset and no cancel of its own, returns
    /// that value without reading the outcome.
    pub(crate) recorded: AtomicBool,
    pub(crate) inner: Mutex<Inner>,
    /// Set once, at entry; kept until the node is freed.
    pub(super) parent: OnceLock<Arc<Node>>,
    /// Index of this node in `parent.children`; written only under the parent's lock.
    parent_idx: AtomicUsize,
    /// The runtime a scope spawns its children on (scopes only).
    pub(crate) runtime: OnceLock<tokio::runtime::Handle>,
    /// The spawned children, for aborting them (see `child/registry.rs`). Never held with `inner`.
    pub(crate) tasks: Mutex<Registry>,
    /// The concurrency limit of a scope built with one (see `child/limit.rs`).
    pub(crate) limiter: Option<crate::child::limit::Limiter>,
    /// Serialises this node's transitions of `busy` through zero (#5).
    pub(super) busy_lock: Mutex<()>,
    /// Live spawned children plus busy child nodes, and the `CLOSED` bit (see `busy.rs`).
    pub(super) busy: AtomicUsize,
    /// How many of the units in `busy` are holds of scopes opened under this node as an
    /// explicit parent (`crate::parent::Hold`). A catcher drops its body once nothing but
    /// holds keeps it busy, since a hold may be owned by the body itself.
    pub(crate) holds: AtomicUsize,
}

// `state` and `busy` never share a cache line, nor an adjacent-line prefetch pair.
const _: () = assert!(
    std::mem::offset_of!(Node, busy) >= std::mem::offset_of!(Node, state) + 192,
    "Node: keep the hot read word and the hot counter apart"
);

/// Work collected under a lock and done once every lock is released: wakers to wake and
/// nodes whose children must be aborted (they became hard).
#[derive(Default)]
pub(crate) struct Wakes {
    wakers: Vec<Waker>,
    aborts: Vec<Arc<Node>>,
    #[cfg(feature = "tokio-util")]
    tokens: Vec<tokio_util::sync::CancellationToken>,
}

impl Wakes {
    pub(crate) fn push(&mut self, w: Waker) {
        self.wakers.push(w);
    }
    #[cfg(feature = "tokio-util")]
    fn has_tokens(&self) -> bool {
        !self.tokens.is_empty()
    }
    #[cfg(not(feature = "tokio-util"))]
    fn has_tokens(&self) -> bool {
        false
    }
    pub(crate) fn list(&mut self) -> &mut Vec<Waker> {
        &mut self.wakers
    }
    fn is_empty(&self) -> bool {
        self.wakers.is_empty() && self.aborts.is_empty() && !self.has_tokens()
    }
    pub(crate) fn wake_all(self) {
        if self.is_empty() {
            return; // the common case (an attach, a detach): nothing to do
        }
        #[cfg(feature = "tokio-util")]
        for t in self.tokens {
            t.cancel();
        }
        for node in self.aborts {
            node.abort_tasks();
        }
        for w in self.wakers {
            w.wake();
        }
    }
}

/// Whether a cancel waits for the node's grace period before it becomes hard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Grace {
    /// Soft first; hard when the grace period ends (at once if it is zero).
    Apply,
    /// Hard at once (a dropped scope future, a deadline already past at entry).
    Skip,
}

/// A change of state decided under a node's lock and not complete yet: the inherited bits
/// that must still reach the subtree (#3), and the wakers and aborts it released, which run
/// only once every lock is released (#2).
///
/// Every "lock, cancel, unlock, propagate, wake" goes through this type: the locked part
/// returns it, and [`finish`](Spread::finish), called after the lock is dropped, is the only
/// way to complete it.
#[must_use = "a cancel is complete only once `Spread::finish` ran, after the lock is released"]
#[derive(Default)]
pub(crate) struct Spread {
    /// Inherited bits for the children below (0: nothing to spread).
    bits: u32,
    children: Vec<Arc<Node>>,
    wakes: Wakes,
}

impl Spread {
    /// Wakes `w` too when finished.
    pub(crate) fn wake(&mut self, w: Waker) {
        self.wakes.push(w);
    }

    /// Spreads the bits over the subtree, then wakes and aborts what the change released.
    /// Call with no lock held.
    #[inline]
    pub(crate) fn finish(self) {
        if self.bits == 0 && self.wakes.is_empty() {
            return; // the common case (an attach with no deadline): nothing changed
        }
        self.finish_slow();
    }

    #[inline(never)]
    fn finish_slow(self) {
        let Spread {
            bits,
            children,
            mut wakes,
        } = self;
        if bits != 0 {
            propagate(bits, children, &mut wakes);
        }
        wakes.wake_all();
    }
}

impl Config {
    /// A cancel scope with a relative timeout and nothing else (`move_on_after`,
    /// `fail_after`).
    pub(crate) fn timeout_only(d: Duration) -> Config {
        Config {
            timeout: Some(d),
            ..Config::default()
        }
    }
}

/// What a node future entered without its node builds the node from, once something asks
/// for it (`context::enter_lazy`). Small and `Copy`: it sits in the ambient frame while
/// the node is not built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lazy {
    /// A cancel scope with nothing set but its time limit (`CancelScope::new().run(..)`,
    /// `move_on_after`, `fail_at`, ...).
    CancelScope(Limit),
    /// A scope whose body holds no handle to it (the macros without a handle): only code
    /// that reads the ambient context can reach it. (Its name by reference to a `&'static
    /// str`: one word.)
    Scope {
        name: Option<&'static &'static str>,
        limit: Limit,
    },
}

/// The time limit of a node not built yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Limit {
    None,
    /// A timeout from entry, in nanoseconds. (Not a `Duration`: so that this and `Deadline`
    /// fit in two words. A longer timeout, over 584 years, is built at creation.)
    Timeout(u64),
    /// A deadline: given (`move_on_at`), or a timeout's once its future waited.
    Deadline(Instant),
}

impl Limit {
    fn config(self) -> Config {
        match self {
            Limit::None => Config::default(),
            Limit::Timeout(nanos) => Config::timeout_only(Duration::from_nanos(nanos)),
            Limit::Deadline(at) => Config {
                deadline: Some(at),
                ..Config::default()
            },
        }
    }
}

impl Lazy {
    /// The node, not attached yet. A scope's spawns its children on the runtime it is built
    /// in (inside the scope future's poll: the runtime it was entered in).
    pub(crate) fn node(self) -> Arc<Node> {
        match self {
            Lazy::CancelScope(limit) => Node::new(limit.config()),
            Lazy::Scope { name, limit } => {
                let node = Node::new(Config {
                    name: name.map(|n| Cow::Borrowed(*n)),
                    kind: crate::tree::NodeKind::Scope,
                    ..limit.config()
                });
                if let Ok(rt) = tokio::runtime::Handle::try_current() {
                    let _ = node.runtime.set(rt);
                }
                node
            }
        }
    }
}

impl Inner {
    /// Where the node is in its life.
    pub(crate) fn life(&self) -> Life {
        self.life
    }

    /// Its future finished or was dropped (invariant #6).
    pub(crate) fn is_done(&self) -> bool {
        matches!(self.life, Life::Done { .. })
    }

    /// Its future will read what is recorded now (errors, panics): it has neither been
    /// dropped nor finished.
    pub(crate) fn has_reader(&self) -> bool {
        !matches!(self.life, Life::Abandoned { .. } | Life::Done { .. })
    }

    /// The node caught its own cancellation (its inner future was, or is about to be,
    /// dropped).
    pub(crate) fn has_caught(&self) -> bool {
        matches!(
            self.life,
            Life::Catching | Life::Abandoned { caught: true } | Life::Done { caught: true }
        )
    }

    /// `Fresh -> Running`: the node's future was first polled (see [`Node::attach`]).
    fn enter(&mut self) {
        debug_assert_eq!(self.life, Life::Fresh, "a node is entered once");
        self.life = Life::Running;
    }

    /// `Running -> Finishing`: the inner future completed.
    pub(crate) fn complete(&mut self) {
        if self.life == Life::Running {
            self.life = Life::Finishing;
        }
    }

    /// `Running -> Catching`: the node caught its own cancellation. Returns the reason: its
    /// own, or `ParentCancelled` for an inherited hard cancel caught under an explicit
    /// parent.
    pub(crate) fn catch(&mut self) -> CancelReason {
        self.life = Life::Catching;
        self.reason.unwrap_or(CancelReason::ParentCancelled)
    }

    /// `* -> Abandoned`: the node's future is being dropped unfinished.
    pub(crate) fn abandon(&mut self) {
        if !self.is_done() {
            self.life = Life::Abandoned {
                caught: self.has_caught(),
            };
        }
    }

    /// `* -> Done`: the node's future finished or was dropped.
    fn leave(&mut self) -> Left {
        if self.is_done() {
            return Left::Before;
        }
        self.life = Life::Done {
            caught: self.has_caught(),
        };
        Left::Now
    }

    /// Sets a relative timeout (resolved at entry); the shorter of two wins.
    pub(crate) fn set_timeout(&mut self, d: Duration) {
        self.timeout = Some(self.timeout.map_or(d, |t| t.min(d)));
    }
}

/// Nodes alive in this process: unit tests check that a race leaves none behind.
#[cfg(test)]
pub(crate) static LIVE_NODES: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(0);

/// Held by the unit tests that make nodes while the one above counts them: under `cargo
/// test` (the tests as threads of one process) the count then sees only its own nodes.
#[cfg(all(test, not(taskscope_loom)))]
static NODE_TESTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Takes [`NODE_TESTS`] for a unit test that makes nodes (a test that failed while holding
/// it does not fail the next one).
#[cfg(all(test, not(taskscope_loom)))]
pub(crate) fn node_tests_alone() -> std::sync::MutexGuard<'static, ()> {
    NODE_TESTS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Node {
    pub(crate) fn new(config: Config) -> Arc<Node> {
        #[cfg(test)]
        LIVE_NODES.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Arc::new(Node {
            state: AtomicU32::new(0),
            shielded: AtomicU32::new(0),
            timer_gen: AtomicU32::new(0),
            busy: AtomicUsize::new(0),
            holds: AtomicUsize::new(0),
            busy_lock: Mutex::new(()),
            parent: OnceLock::new(),
            parent_idx: AtomicUsize::new(usize::MAX),
            runtime: OnceLock::new(),
            inner: Mutex::new(Inner {
                name: config.name,
                reason: None,
                deadline: config.deadline,
                timeout: config.timeout,
                grace: config.grace,
                hard_at: None,
                shield: config.shield,
                life: Life::Fresh,
                children: List::default(),
                owner: None,
                waiters: WakerSlab::default(),
                outcome: Outcome::new(config.collect),
                background: None,
                idle_waiters: None,
                #[cfg(feature = "tokio-util")]
                tokens: Vec::new(),
                #[cfg(feature = "tracing")]
                span: tracing::Span::none(),
                kind: config.kind,
                task: None,
            }),
            tasks: Mutex::new(Registry::default()),
            limiter: config.limit.map(crate::child::limit::Limiter::new),
            has_background: AtomicBool::new(false),
            has_tasks: AtomicBool::new(false),
            recorded: AtomicBool::new(false),
            forward: config.forward,
        })
    }

    pub(crate) fn state(&self) -> State {
        State(self.state.load(Ordering::Acquire))
    }

    /// The generation of the node's timer settings (deadline, end of grace).
    pub(crate) fn timer_gen(&self) -> u32 {
        self.timer_gen.load(Ordering::Acquire)
    }

    fn bump_timer(&self) {
        self.timer_gen.fetch_add(1, Ordering::Release);
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        lock(&self.inner)
    }

    /// Sets bits in the state word and collects the wakers that the change releases.
    ///
    /// Must be called with `inner` locked (#1). Waiters are drained when the node becomes
    /// soft (#4), its spawned children are aborted (after the lock is released) when it
    /// becomes hard, and the owner is woken on any change.
    fn set_bits(self: &Arc<Self>, inner: &mut Inner, bits: u32, wakes: &mut Wakes) -> bool {
        let old = State(self.state.load(Ordering::Relaxed));
        if old.0 & bits == bits {
            return false;
        }
        let new = State(self.state.fetch_or(bits, Ordering::AcqRel) | bits);
        // Every change sets a soft bit (a hard cancel is a soft one too), so the node is
        // soft now: it became soft if it was not.
        debug_assert!(
            new.is_soft(),
            "a cancel bit without its soft bit: {bits:#06b}"
        );
        if !old.is_soft() {
            inner.waiters.drain_into(wakes.list());
            #[cfg(feature = "tokio-util")]
            wakes.tokens.append(&mut inner.tokens);
        }
        if new.is_hard() && !old.is_hard() {
            wakes.aborts.push(self.clone());
        }
        if let Some(w) = &inner.owner {
            wakes.push(w.clone());
        }
        true
    }

    /// Adds the owner's waker to `out` (the node may have become idle, or only its
    /// background node or holds are left). Busy lock -> inner lock (#2).
    pub(super) fn owner_into(&self, out: &mut List<Waker>) {
        if let Some(w) = &self.lock().owner {
            out.push(w.clone());
        }
    }

    /// Adds the owner's waker and those of the `wait_children()` futures to `out`: the
    /// node's busy count just reached zero. Busy lock -> inner lock (#2).
    pub(super) fn idle_into(&self, out: &mut List<Waker>) {
        let mut inner = self.lock();
        if let Some(w) = &inner.owner {
            out.push(w.clone());
        }
        if let Some(waiters) = &mut inner.idle_waiters {
            waiters.drain_into(out);
        }
    }

    /// The node this one is attached below (kept after detach).
    pub(crate) fn parent(&self) -> Option<&Arc<Node>> {
        self.parent.get()
    }

    /// Wakes the future that drives this node.
    pub(crate) fn wake_owner(&self) {
        let w = self.lock().owner.clone();
        if let Some(w) = w {
            w.wake();
        }
    }

    /// Registers (or refreshes) the waker of the future that drives this node.
    pub(crate) fn set_owner(&self, waker: &Waker) {
        let mut inner = self.lock();
        match &inner.owner {
            Some(w) if w.will_wake(waker) => {}
            _ => {
                let old = inner.owner.replace(waker.clone());
                drop(inner);
                drop(old);
            }
        }
    }

    /// Puts the node into the tree below `parent` (the ambient node at entry).
    ///
    /// Resolves a relative timeout into a deadline. The child inherits the parent's
    /// cancellation under the parent's lock, so a cancel that runs concurrently either sees
    /// the child in `children` or the child sees the cancel (#3). Returns what the driver
    /// needs to know of the node as entered, read under the same lock (so entry takes no
    /// other): whether it is a shield, and whether its timer has nothing to wait for.
    pub(crate) fn attach(self: &Arc<Self>, parent: Option<&Arc<Node>>) -> Attached {
        // Children spawned before entry (by the body closure's synchronous part) already
        // count here: the parent must count this node as busy from now on (#5). The busy
        // lock is held across setting `parent`, so no transition of this node slips between.
        let busy_guard = crate::sync::lock(&self.busy_lock);
        let (shield, spread) = match parent {
            Some(p) => {
                // Lock order: parent before child (#2).
                let mut pi = p.lock();
                let mut ci = self.lock();
                let mut spread = self.enter_locked(&mut ci);
                if !ci.shield {
                    let bits = p.state().for_child();
                    if bits != 0 {
                        let spread = spread.get_or_insert_with(Spread::default);
                        self.set_bits(&mut ci, bits, &mut spread.wakes);
                    }
                }
                self.parent_idx.store(pi.children.len(), Ordering::Relaxed);
                pi.children.push(self.clone());
                let _ = self.parent.set(p.clone());
                (self.entered(&ci), spread)
            }
            None => {
                let mut ci = self.lock();
                let spread = self.enter_locked(&mut ci);
                (self.entered(&ci), spread)
            }
        };
        if parent.is_some() && !self.is_idle() {
            let mut idle = List::default();
            self.carry_up(busy_guard, super::busy::Unit::Add, &mut idle);
        } else {
            drop(busy_guard);
        }
        if let Some(spread) = spread {
            spread.finish();
        }
        shield
    }

    /// What [`attach`](Self::attach) tells the driver, read under the node's lock.
    fn entered(&self, ci: &Inner) -> Attached {
        // The timer generation is bumped under this lock by every change of the deadline
        // and the grace end, so it is read consistently with them. A cancel of its own (a
        // deadline already past) needs no check here: the driver compares the own cancel
        // bits with what it saw on every poll.
        Attached {
            shield: ci.shield,
            quiet_timer: ci.deadline.is_none().then(|| self.timer_gen()),
        }
    }

    /// The locked part of entry: `Fresh` to `Running`, the timeout resolved. `Some` if a
    /// deadline already past cancelled the node (a node entered has no child nodes yet, so
    /// that has nothing to spread, only to wake).
    fn enter_locked(self: &Arc<Self>, ci: &mut Inner) -> Option<Spread> {
        ci.enter();
        ci.task = tokio::task::try_id();
        self.bump_timer();
        if ci.timeout.is_none() && ci.deadline.is_none() {
            return None; // no clock reading needed
        }
        let now = Instant::now();
        if let Some(t) = ci.timeout.take() {
            // `None` on overflow: a timeout too long to represent never fires (D10).
            let d = now.checked_add(t);
            ci.deadline = match (ci.deadline, d) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        // A deadline already past at entry cancels before the first poll.
        ci.deadline
            .is_some_and(|d| d <= now)
            .then(|| self.cancel_locked(ci, CancelReason::DeadlineExceeded, Grace::Skip))
    }

    /// Takes the node out of the tree for good: cancels and spawns are ignored from now on.
    pub(crate) fn detach(&self) {
        let old_owner;
        {
            let mut ci = self.lock();
            if ci.leave() == Left::Before {
                return;
            }
            old_owner = ci.owner.take();
        }
        drop(old_owner);
        if let Some(p) = self.parent.get() {
            let mut pi = p.lock();
            let idx = self.parent_idx.load(Ordering::Relaxed);
            if pi
                .children
                .get(idx)
                .is_some_and(|c| std::ptr::eq(Arc::as_ptr(c), self))
            {
                let me = pi.children.swap_remove(idx);
                if let Some(moved) = pi.children.get(idx) {
                    moved.parent_idx.store(idx, Ordering::Relaxed);
                }
                drop(pi);
                drop(me);
            }
        }
    }

    /// Cancels this node with `reason`: soft, then hard once its grace period ended (at
    /// once without one).
    ///
    /// The first reason sticks. Cancelling a node that finished does nothing (#6).
    pub(crate) fn cancel(self: &Arc<Self>, reason: CancelReason) {
        self.cancel_with(reason, Grace::Apply);
    }

    /// Cancels this node with `reason`, hard at once (its grace period skipped).
    pub(crate) fn cancel_now(self: &Arc<Self>, reason: CancelReason) {
        self.cancel_with(reason, Grace::Skip);
    }

    fn cancel_with(self: &Arc<Self>, reason: CancelReason, grace: Grace) {
        let spread = self.cancel_locked(&mut self.lock(), reason, grace);
        spread.finish();
    }

    /// The locked part of a cancel: records the reason, sets the bits, and returns what
    /// must still reach the subtree and be woken.
    pub(crate) fn cancel_locked(
        self: &Arc<Self>,
        inner: &mut Inner,
        reason: CancelReason,
        grace: Grace,
    ) -> Spread {
        let mut spread = Spread::default();
        if inner.is_done() {
            return spread;
        }
        if inner.reason.is_none() {
            inner.reason = Some(reason);
            #[cfg(feature = "tracing")]
            tracing::debug!(
                parent: &inner.span,
                scope = inner.name.as_deref().unwrap_or(""),
                %reason,
                "cancelled"
            );
        }
        let hard = grace == Grace::Skip || inner.grace.is_zero();
        if !hard && inner.hard_at.is_none() {
            inner.hard_at = Instant::now().checked_add(inner.grace);
            self.bump_timer();
        }
        let bits = OWN_SOFT | if hard { OWN_HARD } else { 0 };
        if self.set_bits(inner, bits, &mut spread.wakes) {
            spread.bits = INH_SOFT | if hard { INH_HARD } else { 0 };
            spread.children = inner.children.to_vec();
        }
        spread
    }

    /// Ends the grace period of this node's own cancellation: it becomes hard.
    pub(crate) fn escalate(self: &Arc<Self>) {
        let spread = {
            let mut inner = self.lock();
            let mut spread = Spread::default();
            if !inner.is_done()
                && self.state().own_soft()
                && self.set_bits(&mut inner, OWN_SOFT | OWN_HARD, &mut spread.wakes)
            {
                spread.bits = INH_SOFT | INH_HARD;
                spread.children = inner.children.to_vec();
            }
            spread
        };
        spread.finish();
    }

    /// Moves the deadline; one that is already past cancels at once, also before entry.
    pub(crate) fn set_deadline(self: &Arc<Self>, deadline: Option<Instant>) {
        let spread = {
            let mut inner = self.lock();
            inner.deadline = deadline;
            inner.timeout = None;
            self.bump_timer();
            // Past already, before entry too: that is the cancel it will be, so it is made
            // now (level-triggered: a later deadline does not revive the node).
            let past = !inner.is_done() && deadline.is_some_and(|d| d <= Instant::now());
            let mut spread = if past {
                self.cancel_locked(&mut inner, CancelReason::DeadlineExceeded, Grace::Apply)
            } else {
                Spread::default()
            };
            if let Some(w) = &inner.owner {
                spread.wake(w.clone());
            }
            spread
        };
        spread.finish();
    }

    /// The reason a future under this node sees: its own, or `ParentCancelled`.
    pub(crate) fn effective_reason(&self) -> CancelReason {
        self.lock().reason.unwrap_or(CancelReason::ParentCancelled)
    }

    /// The effective deadline: the minimum over this node and its unshielded ancestors.
    pub(crate) fn effective_deadline(&self) -> Option<Instant> {
        let mut best: Option<Instant> = None;
        let mut node = self;
        loop {
            let (deadline, shield) = {
                let inner = node.lock();
                (inner.deadline, inner.shield)
            };
            if let Some(d) = deadline {
                best = Some(best.map_or(d, |b| b.min(d)));
            }
            match node.parent.get() {
                Some(p) if !shield => node = p,
                _ => return best,
            }
        }
    }
}

/// Spreads inherited `bits` over the subtrees of `children`, iteratively (no recursion, so
/// a chain of any depth is fine), stopping at shields and at nodes that already have them.
///
/// A node that already carries `bits` is skipped with its subtree: whoever set them there
/// spreads them below it (#3).
pub(super) fn propagate(bits: u32, children: Vec<Arc<Node>>, wakes: &mut Wakes) {
    let mut stack = children;
    while let Some(node) = stack.pop() {
        let mut inner = node.lock();
        if inner.shield || inner.is_done() {
            continue;
        }
        if node.set_bits(&mut inner, bits, wakes) {
            stack.extend(inner.children.iter().cloned());
        }
    }
}

impl Drop for Node {
    /// Frees a chain of parents iteratively: a 10,000-deep chain of nodes whose last
    /// references are their children's `parent` pointers must not recurse.
    fn drop(&mut self) {
        #[cfg(test)]
        LIVE_NODES.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        let mut next = self.parent.take();
        while let Some(p) = next {
            match Arc::into_inner(p) {
                Some(mut node) => next = node.parent.take(),
                None => break,
            }
        }
    }
}
