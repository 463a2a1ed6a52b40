//! The rules every test of the workspace follows, checked on the test sources themselves, so a
//! new test cannot quietly reintroduce a flake or a test that passes without testing:
//! - executables are written only through `install_exe` (a `cp` child), never by a descriptor
//!   of the multi-threaded test process (ETXTBSY when another thread forks meanwhile);
//! - a root-only test is `#[ignore]`d with the one "needs root" reason (an unprivileged run
//!   lists it as skipped; `cargo xtask test` runs it as root with `--include-ignored`);
//! - no wait that cannot fail (`eventually(.., || true)`).
use std::path::{Path, PathBuf};

/// The reason string every root-only test carries.
const IGNORE: &str =
    "#[ignore = \"needs root (eBPF, real processes): cargo xtask test runs it as root\"]";

fn test_sources() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for dir in ["tests", "tests/src", "tests/src/bin", "procwatch/tests"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "rs") && !p.ends_with("suite_rules.rs") {
                files.push(p);
            }
        }
    }
    assert!(files.len() > 10, "test sources not found: {files:?}");
    files
}

/// Marks that a function needs root (it is then run only as root).
fn is_root_marker(line: &str) -> bool {
    let l = line.trim();
    l.ends_with("require_root!();")
        || l.starts_with("assert!(is_root()")
        || l == "is_root(),"
        || l == "unsafe { libc::geteuid() } == 0,"
}

#[test]
fn executables_are_written_by_a_child_process_only() {
    let mut bad = Vec::new();
    for f in test_sources() {
        let text = std::fs::read_to_string(&f).expect("read a test source");
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if code.contains("fs::copy(") || code.contains("spawn_retrying") {
                bad.push(format!("{}:{}: {}", f.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "write executables with procwatch_tests::install_exe (or a cp child), never \
         std::fs::copy, and never retry ETXTBSY:\n{}",
        bad.join("\n")
    );
}

#[test]
fn every_root_only_test_is_ignored_for_unprivileged_runs() {
    let mut bad = Vec::new();
    let mut checked = 0;
    for f in test_sources() {
        let text = std::fs::read_to_string(&f).expect("read a test source");
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if !is_root_marker(line) {
                continue;
            }
            // The enclosing fn, then the attributes above it.
            let Some(fn_line) = (0..=i).rev().find(|&j| {
                let t = lines[j].trim_start();
                t.starts_with("fn ") || t.starts_with("async fn ") || t.starts_with("pub fn ")
            }) else {
                continue;
            };
            let attrs: Vec<&str> = lines[..fn_line]
                .iter()
                .rev()
                .take_while(|l| {
                    l.trim_start().starts_with("#[") || l.trim_start().starts_with("///")
                })
                .map(|l| l.trim())
                .collect();
            let is_test = attrs
                .iter()
                .any(|a| a.starts_with("#[test]") || a.starts_with("#[tokio::test"));
            if !is_test {
                continue;
            }
            checked += 1;
            if !attrs.contains(&IGNORE) {
                bad.push(format!(
                    "{}:{}: {}",
                    f.display(),
                    fn_line + 1,
                    lines[fn_line].trim()
                ));
            }
        }
    }
    assert!(checked > 50, "root-only tests not found (only {checked})");
    assert!(
        bad.is_empty(),
        "root-only tests without `{IGNORE}`:\n{}",
        bad.join("\n")
    );
}

#[test]
fn no_wait_that_cannot_fail() {
    let mut bad = Vec::new();
    for f in test_sources() {
        let text = std::fs::read_to_string(&f).expect("read a test source");
        for (n, line) in text.lines().enumerate() {
            if line.contains("|| true)") && line.contains("eventually(") {
                bad.push(format!("{}:{}: {}", f.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "waits that cannot fail:\n{}",
        bad.join("\n")
    );
}
