//! Instructions per operation (callgrind) of taskscope's basic operations next to their tokio
//! peers, the ratio of each pair, and a check of those ratios against a committed baseline.
//!
//! ```text
//! cargo bench --bench instructions                                   # the table (valgrind)
//! cargo bench --bench instructions -- --check benches/instructions.baseline
//! cargo bench --bench instructions -- --write-baseline benches/instructions.baseline
//! cargo test --benches                                               # each case natively, a few times
//! ```
//!
//! `--check <file>` fails (exit code 1) when a row's ratio is more than 10% above the larger
//! of its goal and its ratio in the baseline file; `--write-baseline <file>` writes the file
//! from the run (one line per row: `row ours peer ratio goal`, `-` for no goal). Without
//! valgrind on `PATH` every mode that measures prints a message, checks nothing and exits 0.
//! Run without `--bench` (`cargo test --benches`), the binary runs every case [`SMOKE`] times
//! natively and checks its results, so the test and clippy builds of all targets cover it
//! and it stays fast.
//!
//! # Cases
//!
//! Every case runs on a current-thread runtime (`enable_all`), in `block_on` (no driver
//! task), one operation after the other, each awaited before the next; inputs and outputs go
//! through `std::hint::black_box`. Pairs (ours vs peer; the ratio is ours / peer):
//!
//! - `scoped`: `scoped_fn(x)`, an `async fn` under `#[taskscope::scoped]` (no handle, no
//!   options) returning `Result<u64, Cancelled>` whose body is
//!   `tokio::task::yield_now().await; Ok(x)`, vs `plain_fn(x)`, the same fn without the
//!   attribute. It runs at the top of `block_on`: no enclosing node, so each call's scope is
//!   a root of the cancel tree.
//! - `scoped_timeout`: the same body under `#[scoped(timeout = "10s")]` vs
//!   `tokio::time::timeout(10s, plain_fn(x))`.
//! - `scoped_nested`: `scoped_calls_scoped(x)`, a `#[scoped]` fn whose body is
//!   `Ok(scoped_fn(x).await? + 1)` (two scopes without a handle, one inside the other, as
//!   in a library whose every async fn has the attribute), vs `plain_calls_plain(x)`, the
//!   same two fns without the attribute.
//! - `scope_spawn`: `taskscope::scope(async |s| s.spawn(async { Ok(1) }).await)`, a
//!   scope with one child, spawned and awaited, vs `tokio::spawn(async { 1 }).await`;
//!   `scope_spawn_joinset`: the same scope vs a `JoinSet` created per operation,
//!   `spawn(async { 1 })` then `join_next().await` (no goal; a second peer).
//! - `scope_fan`: per child of a scope with [`FAN`] children, spawned, then awaited in
//!   order (`scope_fan`), vs [`FAN`] `tokio::spawn`s whose handles are awaited in order
//!   (`tokio_fan`); one operation is one child, the scope's own cost spread over its
//!   children. No goal: the goal of many children is on the wall clock
//!   (`benches/spawn_cancel.rs`, `spawn_join`); this row says what the instructions do there.
//! - `cancel_scope`: `CancelScope::new().run(yield_once(x))` (`yield_once`: `yield_now`, then
//!   `x`) vs `tokio::select!` (unbiased, as written by default) on `token.cancelled()` and
//!   `yield_once(x)`, where `token` is a fresh `child_token()` of a parent
//!   `CancellationToken` per operation. To match that parent, taskscope's loop runs in the
//!   body of one `taskscope::scope` (the cancel scopes nest below it); the parent token and
//!   the enclosing scope are built once per `block_on`, outside the measured operations.
//! - `nested`: per level of a chain of depth [`DEPTH`], built and torn down (as
//!   `build_teardown` in `benches/nested.rs`): level `k` of `scope_chain` is a
//!   `taskscope::scope` whose body does `s.spawn(level(k - 1)).await? + 1`, level `k` of
//!   `raw_chain` does `tokio::spawn(level(k - 1)).await + 1`; level 0 returns at once. Each
//!   level's future is boxed in both. One operation is one chain; the count is divided by
//!   [`DEPTH`].
//! - `move_on_after_yield`: `taskscope::move_on_after(10s, yield_once(x))` vs
//!   `tokio::time::timeout(10s, yield_once(x))`, at the top of `block_on` (no enclosing
//!   node); `move_on_after_ready`: the same with `std::future::ready(x)` (done at the first
//!   poll).
//!
//! # Method
//!
//! The driver (`cargo bench --bench instructions`) runs this binary again under
//! `valgrind --tool=callgrind` once per case and per count, with the arguments
//! `--count <case> <n>`: build the runtime, run [`WARMUP`] operations (one `block_on`), then
//! `n` more (a second `block_on`), for n = 0 and n = [`N`]. The total instruction count of a
//! run is the `summary:` (or `totals:`) line of its output file; (total(N) - total(0)) / N is
//! the cost of one operation (the process start, the runtime, the warm-up and the exit
//! cancel out), divided by the levels for `nested`. Callgrind counts user-space
//! instructions only (not the kernel's share of a timer's eventfd wake-up, for example). The
//! output files stay in `target/release/instructions-callgrind/<case>.<n>.out`.
//!
//! Every `yield_now` in `block_on` costs a turn of the runtime: the time and I/O drivers are
//! polled with a zero timeout (about 700 instructions, most of `plain_fn`'s 1,290), in both
//! cases of a row that yields; the difference ours - peer is what taskscope adds.
//!
//! One case by hand, and its profile (inclusive costs per function):
//!
//! ```text
//! cargo bench --bench instructions --no-run   # prints the binary's path
//! valgrind --tool=callgrind --callgrind-out-file=cg.0 target/release/deps/instructions-<hash> --count scope_one_child 0
//! valgrind --tool=callgrind --callgrind-out-file=cg.n target/release/deps/instructions-<hash> --count scope_one_child 20000
//! callgrind_annotate --inclusive=yes cg.n | head -60
//! callgrind_annotate --inclusive=yes cg.0 | head -60
//! ```
//!
//! A function's cost per operation is its inclusive cost in `cg.n` less that in `cg.0`,
//! divided by n (and by 10 for `scope_chain` and `raw_chain`). The case names are those of
//! the first table the driver prints.

use std::fmt::Write as _;
use std::future::{Future, ready};
use std::hint::black_box;
use std::pin::Pin;
use std::process::ExitCode;
use std::time::Duration;

use taskscope::{CancelScope, Cancelled, scoped};
use tokio::runtime::Runtime;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

#[path = "common/callgrind.rs"]
mod callgrind;

/// Operations of the larger callgrind run.
const N: usize = 20_000;
/// Operations run before the counted ones.
const WARMUP: usize = 1_000;
/// Operations per case without `--bench` (`cargo test --benches`).
const SMOKE: usize = 10;
/// Levels of one chain of the `nested` row.
const DEPTH: usize = 10;
/// Children of one scope (and spawns of one round) of the `scope_fan` row.
const FAN: usize = 100;
/// Every timeout of the bench: never reached.
const BUDGET: Duration = Duration::from_secs(10);
/// `--check` fails a row whose ratio is above `SLACK` times the larger of its goal and its
/// baseline ratio.
const SLACK: f64 = 1.10;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value_of = |flag: &str| {
        let i = args.iter().position(|a| a == flag)?;
        Some(
            args.get(i + 1)
                .filter(|v| !v.starts_with("--"))
                .unwrap_or_else(|| panic!("{flag} needs a value"))
                .as_str(),
        )
    };
    if let Some(i) = args.iter().position(|a| a == "--count") {
        let case = args.get(i + 1).expect("--count <case> <n>");
        let case = Case::named(case).unwrap_or_else(|| panic!("no case {case:?}"));
        let n = args
            .get(i + 2)
            .and_then(|n| n.parse().ok())
            .expect("--count <case> <n>");
        count(case, n);
        return ExitCode::SUCCESS;
    }
    let check = value_of("--check");
    let write = value_of("--write-baseline");
    // `cargo bench` appends `--bench`; `cargo test --benches` passes nothing.
    if check.is_some() || write.is_some() || args.iter().any(|a| a == "--bench") {
        driver(check, write)
    } else {
        smoke();
        ExitCode::SUCCESS
    }
}

// ---------------------------------------------------------------------------------------
// The cases.

/// One side of a row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Case {
    ScopedFn,
    PlainFn,
    ScopedTimeoutFn,
    TokioTimeoutFn,
    ScopedCallsScoped,
    PlainCallsPlain,
    ScopeOneChild,
    TokioSpawn,
    JoinSetSpawn,
    ScopeFan,
    TokioFan,
    CancelScopeRun,
    TokenSelect,
    ScopeChain,
    RawChain,
    MoveOnAfterYield,
    TimeoutYield,
    MoveOnAfterReady,
    TimeoutReady,
}

impl Case {
    const ALL: [Case; 19] = [
        Case::ScopedFn,
        Case::PlainFn,
        Case::ScopedTimeoutFn,
        Case::TokioTimeoutFn,
        Case::ScopedCallsScoped,
        Case::PlainCallsPlain,
        Case::ScopeOneChild,
        Case::TokioSpawn,
        Case::JoinSetSpawn,
        Case::ScopeFan,
        Case::TokioFan,
        Case::CancelScopeRun,
        Case::TokenSelect,
        Case::ScopeChain,
        Case::RawChain,
        Case::MoveOnAfterYield,
        Case::TimeoutYield,
        Case::MoveOnAfterReady,
        Case::TimeoutReady,
    ];

    fn name(self) -> &'static str {
        match self {
            Case::ScopedFn => "scoped_fn",
            Case::PlainFn => "plain_fn",
            Case::ScopedTimeoutFn => "scoped_timeout_fn",
            Case::TokioTimeoutFn => "tokio_timeout_fn",
            Case::ScopedCallsScoped => "scoped_calls_scoped",
            Case::PlainCallsPlain => "plain_calls_plain",
            Case::ScopeOneChild => "scope_one_child",
            Case::TokioSpawn => "tokio_spawn",
            Case::JoinSetSpawn => "joinset_spawn",
            Case::ScopeFan => "scope_fan",
            Case::TokioFan => "tokio_fan",
            Case::CancelScopeRun => "cancel_scope_run",
            Case::TokenSelect => "token_select",
            Case::ScopeChain => "scope_chain",
            Case::RawChain => "raw_chain",
            Case::MoveOnAfterYield => "move_on_after_yield",
            Case::TimeoutYield => "timeout_yield",
            Case::MoveOnAfterReady => "move_on_after_ready",
            Case::TimeoutReady => "timeout_ready",
        }
    }

    fn named(name: &str) -> Option<Case> {
        Case::ALL.into_iter().find(|c| c.name() == name)
    }

    /// Operations one iteration makes: the levels of a chain, else one.
    fn ops(self) -> usize {
        match self {
            Case::ScopeChain | Case::RawChain => DEPTH,
            _ => 1,
        }
    }
}

/// One line of the table: taskscope's case, its peer, the goal for their ratio.
struct Row {
    name: &'static str,
    ours: Case,
    peer: Case,
    goal: Option<f64>,
}

const ROWS: [Row; 10] = [
    Row {
        name: "scoped",
        ours: Case::ScopedFn,
        peer: Case::PlainFn,
        goal: Some(1.2),
    },
    Row {
        name: "scoped_timeout",
        ours: Case::ScopedTimeoutFn,
        peer: Case::TokioTimeoutFn,
        goal: Some(1.2),
    },
    Row {
        name: "scoped_nested",
        ours: Case::ScopedCallsScoped,
        peer: Case::PlainCallsPlain,
        goal: Some(1.2),
    },
    Row {
        name: "scope_spawn",
        ours: Case::ScopeOneChild,
        peer: Case::TokioSpawn,
        goal: Some(1.15),
    },
    Row {
        name: "scope_spawn_joinset",
        ours: Case::ScopeOneChild,
        peer: Case::JoinSetSpawn,
        goal: None,
    },
    Row {
        name: "scope_fan",
        ours: Case::ScopeFan,
        peer: Case::TokioFan,
        goal: None,
    },
    Row {
        name: "cancel_scope",
        ours: Case::CancelScopeRun,
        peer: Case::TokenSelect,
        goal: Some(1.0),
    },
    Row {
        name: "nested",
        ours: Case::ScopeChain,
        peer: Case::RawChain,
        goal: Some(1.5),
    },
    Row {
        name: "move_on_after_yield",
        ours: Case::MoveOnAfterYield,
        peer: Case::TimeoutYield,
        goal: Some(1.2),
    },
    Row {
        name: "move_on_after_ready",
        ours: Case::MoveOnAfterReady,
        peer: Case::TimeoutReady,
        goal: Some(1.2),
    },
];

fn current_thread() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("build the runtime")
}

#[scoped]
async fn scoped_fn(x: u64) -> Result<u64, Cancelled> {
    tokio::task::yield_now().await;
    Ok(x)
}

#[scoped(timeout = "10s")]
async fn scoped_timeout_fn(x: u64) -> Result<u64, Cancelled> {
    tokio::task::yield_now().await;
    Ok(x)
}

async fn plain_fn(x: u64) -> Result<u64, Cancelled> {
    tokio::task::yield_now().await;
    Ok(x)
}

/// `#[scoped]` on a function that calls another (`scoped_fn`): the call chain of a library
/// whose every async fn has the attribute.
#[scoped]
async fn scoped_calls_scoped(x: u64) -> Result<u64, Cancelled> {
    Ok(scoped_fn(x).await? + 1)
}

async fn plain_calls_plain(x: u64) -> Result<u64, Cancelled> {
    Ok(plain_fn(x).await? + 1)
}

/// The future of `cancel_scope` and `move_on_after_yield`: polled twice.
async fn yield_once(x: u64) -> u64 {
    tokio::task::yield_now().await;
    x
}

/// One boxed level of a chain.
type Level<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Each level spawns the next with `tokio::spawn` and awaits it.
fn raw_chain(depth: usize) -> Level<usize> {
    Box::pin(async move {
        if depth == 0 {
            return black_box(0);
        }
        tokio::spawn(raw_chain(depth - 1)).await.expect("level") + 1
    })
}

/// Each level is a scope that spawns the next as its child and awaits it.
fn scope_chain(depth: usize) -> Level<Result<usize, Cancelled>> {
    Box::pin(async move {
        if depth == 0 {
            return Ok(black_box(0));
        }
        taskscope::scope(async move |s| Ok(s.spawn(scope_chain(depth - 1)).await? + 1)).await
    })
}

/// Runs `n` iterations of `case` in one `block_on` of `rt`.
fn run_case(rt: &Runtime, case: Case, n: usize) {
    rt.block_on(async move {
        let input = |i: usize| black_box(i as u64);
        match case {
            Case::ScopedFn => {
                for i in 0..n {
                    black_box(scoped_fn(input(i)).await.expect("no timeout"));
                }
            }
            Case::PlainFn => {
                for i in 0..n {
                    black_box(plain_fn(input(i)).await.expect("no timeout"));
                }
            }
            Case::ScopedTimeoutFn => {
                for i in 0..n {
                    black_box(scoped_timeout_fn(input(i)).await.expect("no timeout"));
                }
            }
            Case::TokioTimeoutFn => {
                for i in 0..n {
                    let r = tokio::time::timeout(BUDGET, plain_fn(input(i))).await;
                    black_box(r.expect("no timeout").expect("no error"));
                }
            }
            Case::ScopedCallsScoped => {
                for i in 0..n {
                    black_box(scoped_calls_scoped(input(i)).await.expect("no timeout"));
                }
            }
            Case::PlainCallsPlain => {
                for i in 0..n {
                    black_box(plain_calls_plain(input(i)).await.expect("no timeout"));
                }
            }
            Case::ScopeOneChild => {
                for _ in 0..n {
                    let r = taskscope::scope(async |s| {
                        s.spawn(async { Ok::<_, Cancelled>(black_box(1u64)) }).await
                    })
                    .await;
                    black_box(r.expect("the scope ends well"));
                }
            }
            Case::TokioSpawn => {
                for _ in 0..n {
                    let r = tokio::spawn(async { black_box(1u64) }).await;
                    black_box(r.expect("the task ends well"));
                }
            }
            Case::JoinSetSpawn => {
                for _ in 0..n {
                    let mut set = JoinSet::new();
                    set.spawn(async { black_box(1u64) });
                    let r = set.join_next().await.expect("one task");
                    black_box(r.expect("the task ends well"));
                }
            }
            Case::ScopeFan => {
                for round in rounds(n) {
                    let r = taskscope::scope(async |s| {
                        let handles: Vec<_> = (0..round)
                            .map(|_| s.spawn(async { Ok::<_, Cancelled>(black_box(1u64)) }))
                            .collect();
                        let mut sum = 0;
                        for h in handles {
                            sum += h.await?;
                        }
                        Ok::<_, Cancelled>(sum)
                    })
                    .await;
                    black_box(r.expect("the scope ends well"));
                }
            }
            Case::TokioFan => {
                for round in rounds(n) {
                    let handles: Vec<_> = (0..round)
                        .map(|_| tokio::spawn(async { black_box(1u64) }))
                        .collect();
                    let mut sum = 0;
                    for h in handles {
                        sum += h.await.expect("the task ends well");
                    }
                    black_box(sum);
                }
            }
            Case::CancelScopeRun => {
                taskscope::scope(async |_s| {
                    for i in 0..n {
                        black_box(CancelScope::new().run(yield_once(input(i))).await?);
                    }
                    Ok::<(), Cancelled>(())
                })
                .await
                .expect("the enclosing scope ends well");
            }
            Case::TokenSelect => {
                let parent = CancellationToken::new();
                for i in 0..n {
                    let token = parent.child_token();
                    let r = tokio::select! {
                        () = token.cancelled() => None,
                        v = yield_once(input(i)) => Some(v),
                    };
                    black_box(r.expect("not cancelled"));
                }
            }
            Case::ScopeChain => {
                for _ in 0..n {
                    assert_eq!(scope_chain(DEPTH).await.expect("chain ok"), DEPTH);
                }
            }
            Case::RawChain => {
                for _ in 0..n {
                    assert_eq!(raw_chain(DEPTH).await, DEPTH);
                }
            }
            Case::MoveOnAfterYield => {
                for i in 0..n {
                    let r = taskscope::move_on_after(BUDGET, yield_once(input(i))).await;
                    black_box(r.expect("no timeout"));
                }
            }
            Case::TimeoutYield => {
                for i in 0..n {
                    let r = tokio::time::timeout(BUDGET, yield_once(input(i))).await;
                    black_box(r.expect("no timeout"));
                }
            }
            Case::MoveOnAfterReady => {
                for i in 0..n {
                    let r = taskscope::move_on_after(BUDGET, ready(input(i))).await;
                    black_box(r.expect("no timeout"));
                }
            }
            Case::TimeoutReady => {
                for i in 0..n {
                    let r = tokio::time::timeout(BUDGET, ready(input(i))).await;
                    black_box(r.expect("no timeout"));
                }
            }
        }
    });
}

/// The sizes of the rounds that spawn `n` children [`FAN`] at a time.
fn rounds(n: usize) -> impl Iterator<Item = usize> {
    (0..n).step_by(FAN).map(move |done| FAN.min(n - done))
}

/// `--count <case> <n>`: the work one callgrind run measures.
fn count(case: Case, n: usize) {
    let rt = current_thread();
    run_case(&rt, case, WARMUP);
    run_case(&rt, case, n);
}

/// Without `--bench`: every case a few times, natively.
fn smoke() {
    let rt = current_thread();
    for case in Case::ALL {
        run_case(&rt, case, SMOKE);
    }
    println!(
        "instructions: {} cases ran {SMOKE} times each (smoke test; \
         `cargo bench --bench instructions` counts instructions)",
        Case::ALL.len()
    );
}

// ---------------------------------------------------------------------------------------
// The driver.

/// Every case under callgrind at 0 and [`N`] iterations; prints the table, then checks it
/// against the baseline file `check` and writes it to `write` if given.
fn driver(check: Option<&str>, write: Option<&str>) -> ExitCode {
    if !callgrind::available() {
        println!(
            "instructions: valgrind is not on PATH, nothing measured (install valgrind, \
             e.g. `apt-get install valgrind`, to count instructions)"
        );
        return ExitCode::SUCCESS;
    }
    // Read the baseline first: a bad file fails before the long part.
    let baseline = check.map(|path| {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("read the baseline {path}: {e}"));
        parse_baseline(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
    });
    let (exe, dir) = callgrind::setup("instructions");
    println!(
        "instructions per operation: (Ir at n = {N} - Ir at n = 0) / n, after {WARMUP} \
         warm-up operations; current-thread runtime; nested: per level (depth {DEPTH})"
    );
    println!("callgrind output: {}\n", dir.display());

    let mut per_op = Vec::new();
    for case in Case::ALL {
        let ir = |n: usize| callgrind::instructions(&exe, &dir, case.name(), n);
        let (zero, many) = (ir(0), ir(N));
        let per = (many as f64 - zero as f64) / (N * case.ops()) as f64;
        println!(
            "{:<20} n = 0: {zero:>12}  n = {N}: {many:>13}  per {}: {per:>8.1}",
            case.name(),
            if case.ops() == 1 { "op   " } else { "level" },
        );
        per_op.push((case, per));
    }
    let of = |c: Case| per_op.iter().find(|(d, _)| *d == c).map(|&(_, p)| p);

    println!("\nrows (ours / peer):");
    for row in &ROWS {
        println!(
            "  {:<20} {} / {}",
            row.name,
            row.ours.name(),
            row.peer.name()
        );
    }
    println!(
        "\n{:<20} {:>9} {:>9} {:>7} {:>5} {:>7}  status",
        "row", "ours", "peer", "ratio", "goal", "base"
    );
    let mut failed = false;
    let mut measured = Vec::new();
    for row in &ROWS {
        let (Some(ours), Some(peer)) = (of(row.ours), of(row.peer)) else {
            continue;
        };
        let ratio = ours / peer;
        let goal_text = row.goal.map_or(String::from("-"), |g| format!("{g:.2}"));
        let base = baseline
            .as_ref()
            .and_then(|b| b.iter().find(|b| b.name == row.name));
        let base_text = base.map_or(String::from("-"), |b| format!("{:.3}", b.ratio));
        let status = match (
            &baseline,
            row.goal
                .into_iter()
                .chain(base.map(|b| b.ratio))
                .reduce(f64::max),
        ) {
            (None, _) => match row.goal {
                Some(goal) if ratio > goal => String::from("above goal"),
                Some(_) => String::from("meets goal"),
                None => String::from("-"),
            },
            (Some(_), None) => String::from("- (no goal, not in the baseline)"),
            (Some(_), Some(r)) if ratio > r * SLACK => {
                failed = true;
                format!("FAIL: above {:.3} = 1.1 x max(goal, base)", r * SLACK)
            }
            (Some(_), Some(r)) => format!("ok (limit {:.3})", r * SLACK),
        };
        let was = base.map_or(String::new(), |b| {
            format!("; base {:.1} / {:.1}", b.ours, b.peer)
        });
        println!(
            "{:<20} {ours:>9.1} {peer:>9.1} {ratio:>7.3} {goal_text:>5} {base_text:>7}  {status}{was}",
            row.name
        );
        measured.push(Baseline {
            name: row.name.to_string(),
            ours,
            peer,
            ratio,
            goal: row.goal,
        });
    }

    if let Some(path) = write {
        std::fs::write(path, format_baseline(&measured))
            .unwrap_or_else(|e| panic!("write {path}: {e}"));
        println!("\nwrote {path}");
    }
    if failed {
        println!("\ncheck failed: a ratio is more than 10% above max(goal, baseline ratio)");
        ExitCode::FAILURE
    } else {
        if check.is_some() {
            println!("\ncheck passed");
        }
        ExitCode::SUCCESS
    }
}

/// One line of the baseline file.
struct Baseline {
    name: String,
    ours: f64,
    peer: f64,
    ratio: f64,
    goal: Option<f64>,
}

/// `row ours peer ratio goal` per line; `#` starts a comment line; `-` is no goal.
fn parse_baseline(text: &str) -> Result<Vec<Baseline>, String> {
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = || {
            format!(
                "line {}: expected `row ours peer ratio goal`: {line:?}",
                i + 1
            )
        };
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [name, ours, peer, ratio, goal] = fields[..] else {
            return Err(bad());
        };
        let num = |s: &str| s.parse::<f64>().map_err(|_| bad());
        rows.push(Baseline {
            name: name.to_string(),
            ours: num(ours)?,
            peer: num(peer)?,
            ratio: num(ratio)?,
            goal: if goal == "-" { None } else { Some(num(goal)?) },
        });
    }
    Ok(rows)
}

fn format_baseline(rows: &[Baseline]) -> String {
    let mut text = String::from(
        "# cargo bench --bench instructions -- --check benches/instructions.baseline\n\
         # row ours peer ratio goal: instructions per operation (callgrind), ratio = ours / peer;\n\
         # --check fails a row whose ratio is above 1.1 x max(goal, ratio here).\n",
    );
    for r in rows {
        let goal = r.goal.map_or(String::from("-"), |g| format!("{g:?}"));
        let _ = writeln!(
            text,
            "{} {:.1} {:.1} {:.3} {goal}",
            r.name, r.ours, r.peer, r.ratio
        );
    }
    text
}
