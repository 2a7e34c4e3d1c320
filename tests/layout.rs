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
