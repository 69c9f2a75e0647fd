//! Replays every committed input through the same functions the libFuzzer
//! targets run, on stable and without libFuzzer:
//! `cargo test --manifest-path fuzz/Cargo.toml --no-default-features`.
//!
//! - `corpus/<target>/*` must pass (known findings tolerated: the corpora
//!   were grown that way);
//! - `regressions/<target>/*`, the inputs of the known findings, must pass
//!   tolerated and still fail in strict mode. When one stops failing, its
//!   finding is fixed: move the input to the corpus and drop the tolerance.

use ringcast_fuzz::TARGETS;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.file_name().is_some_and(|n| n != ".gitkeep"))
        .collect();
    files.sort();
    files
}

/// Runs `f`, returning its panic message if it panicked.
fn outcome(last_panic: &Mutex<String>, f: impl FnOnce()) -> Result<(), String> {
    panic::catch_unwind(AssertUnwindSafe(f))
        .map_err(|_| std::mem::take(&mut *last_panic.lock().expect("panic message")))
}

#[test]
fn every_committed_input() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // Keep expected panics quiet; their messages go in the failure report.
    let last_panic = Arc::new(Mutex::new(String::new()));
    let sink = last_panic.clone();
    panic::set_hook(Box::new(move |info| {
        *sink.lock().expect("panic message") = info.to_string();
    }));

    let mut failures = Vec::new();
    let mut counts = Vec::new();
    for &(target, run) in TARGETS {
        let corpus = files(&root.join("corpus").join(target));
        if corpus.is_empty() {
            failures.push(format!("corpus/{target}/ is empty"));
        }
        for file in &corpus {
            let data = match std::fs::read(file) {
                Ok(data) => data,
                Err(e) => {
                    failures.push(format!("{}: {e}", file.display()));
                    continue;
                }
            };
            if let Err(msg) = outcome(&last_panic, || run(&data, false)) {
                failures.push(format!("{}: {msg}", file.display()));
            }
        }
        let regressions = files(&root.join("regressions").join(target));
        for file in &regressions {
            let data = match std::fs::read(file) {
                Ok(data) => data,
                Err(e) => {
                    failures.push(format!("{}: {e}", file.display()));
                    continue;
                }
            };
            if let Err(msg) = outcome(&last_panic, || run(&data, false)) {
                failures.push(format!(
                    "{} (known findings tolerated): {msg}",
                    file.display()
                ));
            }
            if outcome(&last_panic, || run(&data, true)).is_ok() {
                failures.push(format!(
                    "{} passes in strict mode: its finding looks fixed; move it to corpus/{target}/ \
                     and drop its tolerance",
                    file.display()
                ));
            }
        }
        counts.push(format!(
            "{target}: {} + {}",
            corpus.len(),
            regressions.len()
        ));
    }
    let _ = panic::take_hook();
    println!("corpus + regression inputs replayed: {}", counts.join(", "));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
