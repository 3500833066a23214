//! Where the public names live: the crate root holds what a new user needs, and the named
//! futures, flavors, modes, combinators and snapshot types sit in modules. The flat paths of
//! the first release (every name at the root) still resolve, to the same items, so code
//! written against them keeps compiling.

mod common;

use std::any::TypeId;
use std::time::Duration;

use common::Within;
use taskscope::{Cancelled, scope};

fn same<A: 'static, B: 'static>() -> bool {
    TypeId::of::<A>() == TypeId::of::<B>()
}

#[test]
fn first_release_paths_name_the_same_types_as_the_modules() {
    type F = std::future::Ready<Result<(), Cancelled>>;
    type T = Result<(), Cancelled>;
    assert!(same::<taskscope::Run<F, T>, taskscope::future::Run<F, T>>());
    assert!(same::<
        taskscope::FailAfter<F, T>,
        taskscope::future::FailAfter<F, T>,
    >());
    assert!(same::<
        taskscope::MoveOnAfter<F, T>,
        taskscope::future::MoveOnAfter<F, T>,
    >());
    assert!(same::<
        taskscope::Shield<F, T>,
        taskscope::future::Shield<F, T>,
    >());
    assert!(same::<
        taskscope::WaitForCancel,
        taskscope::future::WaitForCancel,
    >());
    assert!(same::<
        taskscope::WaitChildren,
        taskscope::future::WaitChildren,
    >());
    assert!(same::<taskscope::Race, taskscope::future::Race>());
    assert!(same::<taskscope::Sendable, taskscope::flavor::Sendable>());
    assert!(same::<taskscope::Local, taskscope::flavor::Local>());
    assert!(same::<taskscope::Supervisor, taskscope::flavor::Supervisor>());
    assert!(same::<taskscope::FailFast, taskscope::mode::FailFast>());
    assert!(same::<
        taskscope::CollectErrors,
        taskscope::mode::CollectErrors,
    >());
    assert!(same::<
        taskscope::TreeSnapshot,
        taskscope::snapshot::TreeSnapshot,
    >());
    assert!(same::<
        taskscope::NodeSnapshot,
        taskscope::snapshot::NodeSnapshot,
    >());
    assert!(same::<taskscope::NodeState, taskscope::snapshot::NodeState>());
    assert!(same::<taskscope::NodeKind, taskscope::snapshot::NodeKind>());
    assert!(same::<
        taskscope::Completions<u8, Cancelled>,
        taskscope::combinators::Completions<u8, Cancelled>,
    >());
}

#[tokio::test(start_paused = true)]
async fn combinators_answer_under_both_paths() {
    let first = taskscope::combinators::race([1u64, 2].map(|ms| async move {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok::<_, Cancelled>(ms)
    }))
    .within(common::PAUSED_HANG, "the race under `combinators`")
    .await;
    assert_eq!(first, Ok(1));

    let old = taskscope::race([2u64, 1].map(|ms| async move {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok::<_, Cancelled>(ms)
    }))
    .within(common::PAUSED_HANG, "the race at the root")
    .await;
    assert_eq!(old, Ok(1));

    let all: Result<Vec<u8>, Cancelled> = scope(async |s| {
        taskscope::combinators::join_all_in(&s.handle(), (1..=2u8).map(|i| async move { Ok(i) }))
            .await
    })
    .within(common::PAUSED_HANG, "join_all_in under `combinators`")
    .await;
    assert_eq!(all, Ok(vec![1, 2]));
}

#[tokio::test]
async fn the_snapshot_function_and_its_module_share_one_name() {
    use taskscope::snapshot;
    let tree: snapshot::TreeSnapshot = snapshot();
    assert!(tree.is_empty(), "no scope is running: {tree}");
}
