//! The code's own layout rules, checked on the source tree: a file has one
//! job, so none holds more than 600 lines of non-test code (its tests go in
//! a `tests.rs` beside it, or below its `#[cfg(test)]`).

use std::path::{Path, PathBuf};

/// Lines of code a file may hold before its tests.
const MAX_LINES: usize = 600;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Lines before the file's first `#[cfg(test)]` (all of them when it has
/// none); a file named `tests.rs` is all tests.
fn code_lines(path: &Path) -> usize {
    if path.file_name().is_some_and(|n| n == "tests.rs") {
        return 0;
    }
    let text = std::fs::read_to_string(path).expect("read a source file");
    text.lines()
        .take_while(|line| !line.starts_with("#[cfg(test)]"))
        .count()
}

#[test]
fn no_source_file_holds_more_than_600_lines_of_code_before_its_tests() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = Vec::new();
    for dir in ["services", "shared"] {
        rust_files(&root.join(dir), &mut files);
    }
    assert!(files.len() > 100, "the source tree is where it should be");
    let mut over: Vec<String> = files
        .iter()
        .filter(|f| !f.components().any(|c| c.as_os_str() == "target"))
        .map(|f| (code_lines(f), f))
        .filter(|(n, _)| *n > MAX_LINES)
        .map(|(n, f)| format!("{} ({n} lines)", f.display()))
        .collect();
    over.sort();
    assert!(
        over.is_empty(),
        "files over {MAX_LINES} lines of code: {over:?}"
    );
}

/// `AppState` is what the HTTP side serves from: only the routes, the
/// caller extractor, the state itself and the assembly that builds it name
/// it; every other part of the control plane takes the handles it needs.
#[test]
fn only_the_http_side_and_the_assembly_name_the_app_state() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tokens/src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(
        files.len() > 30,
        "the control plane's sources are where they should be"
    );
    let allowed = |path: &Path| {
        let rel = path.strip_prefix(&src).expect("under src");
        let first = rel
            .components()
            .next()
            .map(|c| c.as_os_str().to_string_lossy().into_owned());
        matches!(
            first.as_deref(),
            Some("routes" | "control_plane" | "auth.rs" | "state.rs" | "lib.rs")
        )
    };
    let mut naming: Vec<String> = files
        .iter()
        .filter(|f| !allowed(f))
        .filter(|f| {
            std::fs::read_to_string(f)
                .expect("read a source file")
                .contains("AppState")
        })
        .map(|f| f.display().to_string())
        .collect();
    naming.sort();
    assert!(naming.is_empty(), "subsystems naming AppState: {naming:?}");
}

/// A route reads a token's request records through `state.usage`
/// (`enspace_usage::reads::UsageReads`), which asks the process serving
/// the token's partition when this one does not; the index itself
/// (`state.requests`) holds only what this process indexes.
#[test]
fn routes_read_request_records_only_through_usage_reads() {
    let routes = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tokens/src/routes");
    let mut files = Vec::new();
    rust_files(&routes, &mut files);
    assert!(files.len() > 10, "the routes are where they should be");
    let mut reading: Vec<String> = files
        .iter()
        .filter(|f| {
            std::fs::read_to_string(f)
                .expect("read a source file")
                .contains(".requests.")
        })
        .map(|f| f.display().to_string())
        .collect();
    reading.sort();
    assert!(
        reading.is_empty(),
        "routes reading the local request index: {reading:?}"
    );
}

/// Lines of Rust a crate of the service may hold: past that, it holds more
/// than one part of the architecture and should be split along its seams.
const MAX_CRATE_LINES: usize = 6_000;

/// Every crate under `services/` and `shared/` stays under
/// [`MAX_CRATE_LINES`], tests included, the benchmarks too.
#[test]
fn no_crate_holds_more_than_6000_lines() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut over = Vec::new();
    let mut crates = 0;
    for dir in ["services", "shared"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if !path.join("Cargo.toml").is_file() {
                continue;
            }
            crates += 1;
            let mut files = Vec::new();
            rust_files(&path.join("src"), &mut files);
            let lines: usize = files
                .iter()
                .map(|f| {
                    std::fs::read_to_string(f)
                        .expect("read a source file")
                        .lines()
                        .count()
                })
                .sum();
            if lines > MAX_CRATE_LINES {
                over.push(format!("{} ({lines} lines)", path.display()));
            }
        }
    }
    assert!(crates > 10, "the crates are where they should be");
    assert!(
        over.is_empty(),
        "crates over {MAX_CRATE_LINES} lines: {over:?}"
    );
}
