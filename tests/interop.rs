//! Fitting the ecosystem: tokio-util `CancellationToken` both ways, `cancel_when`, and
//! `shutdown_on_signal` (a real SIGTERM, in a child process).

mod common;

use std::future::pending;

use common::{Census, Error, HANG, PAUSED_HANG, Within, ms, secs};
use taskscope::{CancelReason, CancelScope, Cancelled, Scope, cancelled, scope};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

#[tokio::test(start_paused = true)]
async fn a_scopes_token_is_cancelled_with_the_scope_at_the_soft_signal() {
    let t0 = Instant::now();
    let r: Result<Option<std::time::Duration>, Error> = Scope::builder()
        .grace(secs(5))
        .run(async |s| {
            let token = s.cancellation_token();
            let seen = s.spawn(async move {
                token.cancelled().await; // a tokio-util worker
                Ok(t0.elapsed())
            });
            tokio::time::sleep(secs(1)).await;
            s.cancel();
            Ok(Some(seen.await?))
        })
        .within(
            PAUSED_HANG,
            "the scope's return after its token's worker saw the soft signal",
        )
        .await;
    assert_eq!(
        r,
        Ok(Some(secs(1))),
        "seen at the soft signal, not after the grace"
    );
}

#[tokio::test(start_paused = true)]
async fn an_ancestors_deadline_reaches_the_token_of_a_nested_scope() {
    let token = std::sync::Arc::new(std::sync::Mutex::new(None));
    let slot = token.clone();
    let r = CancelScope::new()
        .timeout(secs(2))
        .run(scope(async move |s| {
            *slot.lock().unwrap() = Some(s.cancellation_token());
            pending::<()>().await;
            Ok::<(), Cancelled>(())
        }))
        .within(
            PAUSED_HANG,
            "the cancel scope's return at its deadline with the nested scope's token cancelled",
        )
        .await;
    assert_eq!(r.unwrap_err().reason(), CancelReason::DeadlineExceeded);
    let token = token.lock().unwrap().take().unwrap();
    assert!(token.is_cancelled());
}

#[tokio::test]
async fn a_token_is_not_cancelled_when_the_scope_just_finishes() {
    let mut kept = None;
    let r: Result<(), Cancelled> = scope(async |s| {
        kept = Some(s.cancellation_token());
        Ok(())
    })
    .within(HANG, "the scope's return")
    .await;
    assert_eq!(r, Ok(()));
    assert!(!kept.unwrap().is_cancelled());
}

#[tokio::test]
async fn a_token_taken_after_the_cancel_is_cancelled_at_once() {
    let r: Result<bool, Cancelled> = Scope::builder()
        .grace(secs(1))
        .run(async |s| {
            s.cancel();
            let a = s.cancellation_token().is_cancelled();
            let b = s.handle().cancellation_token().is_cancelled();
            let c = s.cancel_handle().cancellation_token().is_cancelled();
            Ok(a && b && c)
        })
        .within(HANG, "the cancelled scope's return")
        .await;
    assert_eq!(r, Ok(true));
}

/// A token is cancelled even when it is the only thing a cancel has to wake: a cancel scope
/// not entered yet (no future to wake) and cancelled softly (a grace period: no task to
/// abort). Found by cargo-mutants: no other test had a cancel whose only observer was a
/// token, so skipping the tokens in that case went unnoticed.
#[tokio::test]
async fn a_token_is_cancelled_by_a_soft_cancel_that_wakes_nothing_else() {
    let cs = CancelScope::new().grace(secs(1));
    let h = cs.handle();
    let token = h.cancellation_token();
    assert!(!token.is_cancelled());
    h.cancel();
    assert!(token.is_cancelled(), "the token of the soft-cancelled node");
    drop(cs);
}

#[tokio::test(start_paused = true)]
async fn cancel_on_an_external_token_cancels_the_scope_and_its_children() {
    let census = Census::new();
    let token = CancellationToken::new();
    let external = token.clone();
    tokio::spawn(async move {
        tokio::time::sleep(ms(300)).await;
        external.cancel();
    });
    let t0 = Instant::now();
    let r: Result<(), Error> = Scope::builder()
        .cancel_on(token)
        .run(async |s| {
            for _ in 0..3 {
                let g = census.guard();
                s.spawn(async move {
                    let _g = g;
                    pending::<Result<(), Error>>().await
                });
            }
            cancelled().await;
            Ok(())
        })
        .within(
            PAUSED_HANG,
            "the scope's return after the external token cancelled it",
        )
        .await;
    assert_eq!(r, Err(Error::Cancelled(CancelReason::Explicit)));
    assert_eq!(t0.elapsed(), ms(300));
    assert_eq!(census.alive(), 0);
}

#[tokio::test]
async fn cancel_on_an_already_cancelled_token_cancels_before_the_body_runs_far() {
    let token = CancellationToken::new();
    token.cancel();
    let r: Result<(), Cancelled> = Scope::builder()
        .cancel_on(token)
        .run(async |_s| pending::<Result<(), Cancelled>>().await)
        .within(HANG, "the scope's return under an already cancelled token")
        .await;
    assert_eq!(r.unwrap_err().reason(), CancelReason::Explicit);
}

#[tokio::test(start_paused = true)]
async fn cancel_when_uses_the_given_reason_and_is_dropped_once_done() {
    struct Dropped(std::sync::Arc<std::sync::atomic::AtomicBool>);
    impl Drop for Dropped {
        fn drop(&mut self) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
    let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let guard = Dropped(flag.clone());
    let r: Result<u8, Cancelled> = Scope::builder()
        .cancel_when(
            async move {
                let _g = guard;
                tokio::time::sleep(secs(60)).await;
            },
            CancelReason::Shutdown,
        )
        .run(async |_s| Ok(1))
        .within(PAUSED_HANG, "the scope's return with its unfired trigger")
        .await;
    assert_eq!(r, Ok(1), "the trigger never fired");
    assert!(
        flag.load(std::sync::atomic::Ordering::SeqCst),
        "the trigger went with the scope"
    );
}

// --- shutdown on SIGTERM, in a child process (a signal handler is process-wide) ---

const CHILD_ENV: &str = "TASKSCOPE_INTEROP_CHILD";

/// The child process: a root scope with `shutdown_on_signal` and a grace period; a worker
/// that cleans up on the soft signal, and one that ignores it (dropped after the grace).
#[test]
fn signal_child_entry() {
    if std::env::var(CHILD_ENV).is_err() {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let t0 = std::time::Instant::now();
        let r: Result<(), Cancelled> = Scope::builder()
            .name("main")
            .grace(ms(300))
            .shutdown_on_signal()
            .run(async |s| {
                s.spawn(async {
                    let why = cancelled().await;
                    println!("worker: cancelled with {:?}, cleaning up", why.reason());
                    tokio::time::sleep(ms(50)).await;
                    println!("worker: clean");
                    Ok(())
                });
                s.spawn(async {
                    struct Bye;
                    impl Drop for Bye {
                        fn drop(&mut self) {
                            println!("stubborn: dropped");
                        }
                    }
                    let _b = Bye;
                    pending::<Result<(), Cancelled>>().await
                });
                // Send ourselves SIGTERM once the handler is surely installed.
                tokio::time::sleep(ms(200)).await;
                let pid = std::process::id().to_string();
                std::process::Command::new("kill")
                    .args(["-TERM", &pid])
                    .status()
                    .expect("run kill");
                pending::<()>().await;
                Ok(())
            })
            .within(
                HANG,
                "the child process's scope's return after SIGTERM and the grace",
            )
            .await;
        let waited = t0.elapsed();
        println!(
            "main: {:?} after the grace: {}",
            r.map_err(|c| c.reason()),
            waited >= std::time::Duration::from_millis(480)
        );
    });
}

#[cfg(unix)]
#[test]
fn sigterm_cancels_the_tree_with_shutdown_and_exits_after_the_grace() {
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .env(CHILD_ENV, "1")
        .args([
            "--exact",
            "signal_child_entry",
            "--nocapture",
            "--test-threads=1",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout
        .lines()
        .map(|l| l.trim_start_matches("test signal_child_entry ... "))
        .filter(|l| l.starts_with("worker") || l.starts_with("stubborn") || l.starts_with("main"))
        .collect();
    assert_eq!(
        lines,
        [
            "worker: cancelled with Shutdown, cleaning up",
            "worker: clean",
            "stubborn: dropped",
            "main: Err(Shutdown) after the grace: true",
        ],
        "{stdout}"
    );
}
