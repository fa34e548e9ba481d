//! The fuzz inputs on stable: every seed (`fuzz/corpus/<target>/`) and every
//! fixed crash (`fuzz/regressions/<target>/`) goes through the same entry
//! point its libFuzzer target calls (`swarmbridge::fuzzing`), so CI runs
//! them without nightly or cargo-fuzz. A panic names the target and file.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// The files of `fuzz/<dir>/<target>/`, sorted; none when it does not exist.
fn inputs(dir: &str, target: &str) -> Vec<PathBuf> {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(dir)
        .join(target);
    let Ok(entries) = std::fs::read_dir(&folder) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Runs `target` on each file; the files it panicked on, with the message.
fn failures(target: fn(&[u8]), files: &[PathBuf]) -> Vec<String> {
    let mut failed = Vec::new();
    for file in files {
        let data = std::fs::read(file).expect("readable fuzz input");
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| target(&data))) {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failed.push(format!("{}: {why}", file.display()));
        }
    }
    failed
}

#[test]
fn every_fuzz_target_has_seeds_and_replays_them_without_a_panic() {
    let mut failed = Vec::new();
    for (name, target) in swarmbridge::fuzzing::TARGETS {
        let seeds = inputs("corpus", name);
        assert!(
            seeds.len() >= 10,
            "fuzz/corpus/{name}/ holds {} seeds",
            seeds.len()
        );
        failed.extend(failures(*target, &seeds));
    }
    assert!(failed.is_empty(), "panicked on:\n{}", failed.join("\n"));
}

#[test]
fn every_crash_the_fuzzers_found_replays_without_a_panic() {
    let mut failed = Vec::new();
    for (name, target) in swarmbridge::fuzzing::TARGETS {
        failed.extend(failures(*target, &inputs("regressions", name)));
    }
    assert!(failed.is_empty(), "panicked on:\n{}", failed.join("\n"));
}

#[test]
fn every_target_has_a_libfuzzer_binary_of_its_name() {
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/Cargo.toml"))
            .expect("fuzz/Cargo.toml");
    for (name, _) in swarmbridge::fuzzing::TARGETS {
        assert!(
            manifest.contains(&format!("name = \"{name}\"")),
            "fuzz/Cargo.toml has no [[bin]] {name}"
        );
    }
}
