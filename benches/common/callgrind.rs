//! Running a bench binary again under `valgrind --tool=callgrind`, once per case and count,
//! and reading its instruction total: the runner of `benches/instructions.rs` and of
//! taskscope-tower's `benches/layers.rs` (included there with `#[path]`).
//!
//! The binary must understand `--count <case> <n>`: run `<case>` `n` times after its warm-up.
//! The difference of the totals at two counts, divided by the difference of the counts, is
//! the cost of one operation (the process start, the runtime and the warm-up cancel out).

use std::path::{Path, PathBuf};
use std::process::Command;

/// `true` if `valgrind` can be run.
pub fn available() -> bool {
    Command::new("valgrind").arg("--version").output().is_ok()
}

/// This binary and the folder for its output files:
/// `target/<profile>/deps/<bench>-<hash>` -> `target/<profile>/<bench>-callgrind`.
pub fn setup(bench: &str) -> (PathBuf, PathBuf) {
    let exe = std::env::current_exe().expect("the bench binary's path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the target directory")
        .join(format!("{bench}-callgrind"));
    std::fs::create_dir_all(&dir).expect("create the output directory");
    (exe, dir)
}

/// The instructions `exe --count <case> <n>` executes, whole process; its callgrind output
/// stays in `dir/<case>.<n>.out`, ready for `callgrind_annotate`.
pub fn instructions(exe: &Path, dir: &Path, case: &str, n: usize) -> u64 {
    let out = dir.join(format!("{case}.{n}.out"));
    let run = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(exe)
        .args(["--count", case, &n.to_string()])
        .output()
        .expect("run valgrind");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "valgrind failed:\n{stderr}");
    let text =
        std::fs::read_to_string(&out).unwrap_or_else(|e| panic!("read {}: {e}", out.display()));
    total(&text).unwrap_or_else(|| panic!("no summary line in {}", out.display()))
}

/// The instruction total of a callgrind output file: its `summary:` or `totals:` line
/// (the first event, `Ir`).
fn total(text: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let rest = l
            .strip_prefix("summary:")
            .or_else(|| l.strip_prefix("totals:"))?;
        rest.split_whitespace().next()?.parse().ok()
    })
}
