//! `cargo xtask test`: everything the tests need, then every test of the workspace, root-only
//! ones included, with an honest count of what ran, what was skipped and why.
use std::{
    io::{BufRead, BufReader},
    process::Stdio,
};

use crate::{
    setup::Setup,
    sh::{self, Result},
};

/// Needs root: the eBPF and end-to-end tests load and attach BPF programs.
pub fn command() -> Result<u8> {
    if !sh::is_root() {
        return Err(
            "cargo xtask test must run as root: the eBPF and end-to-end tests load \
                    and attach BPF programs (CAP_BPF, CAP_PERFMON), read tracefs and install \
                    Debian packages. Run it as root, e.g. `sudo -E env \"PATH=$PATH\" cargo \
                    xtask test`."
                .into(),
        );
    }
    let mut setup = Setup::new(false);
    setup.toolchain()?;
    setup.tracefs()?;
    setup.packages()?;
    setup.finish()?;
    // The eBPF crate only builds for its own target (build.rs builds it, `cargo xtask lint`
    // lints it). Built for the host it is a stub whose bin is also called `procwatch`, and it
    // would overwrite target/debug/procwatch, the binary the end-to-end tests run.
    let exclude = ["--exclude", xtask::EBPF_PACKAGE];
    sh::run(
        sh::cargo()
            .args(["build", "--workspace", "--all-targets"])
            .args(exclude),
    )?;
    // Runtime skips (a feature this machine lacks) are recorded here by the tests.
    let skips_file = sh::workspace_root().join("target/test-skips.tsv");
    let _ = std::fs::remove_file(&skips_file);
    // Root-only tests are `#[ignore]`d for unprivileged runs; as root every one of them runs.
    let mut cmd = sh::cargo();
    cmd.args(["test", "--workspace", "--no-fail-fast"])
        .args(exclude)
        .args(["--", "--include-ignored"])
        .env("PROCWATCH_TEST_SKIPS", &skips_file)
        .stdout(Stdio::piped());
    eprintln!("+ {}", sh::display(&cmd));
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start cargo test: {e}"))?;
    let mut totals = Totals::default();
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            println!("{line}");
            totals.add_line(&line);
        }
    }
    let status = child
        .wait()
        .map_err(|e| format!("cargo test did not finish: {e}"))?;
    let skipped: Vec<String> = std::fs::read_to_string(&skips_file)
        .unwrap_or_default()
        .lines()
        .map(|l| l.replace('\t', ": "))
        .collect();
    let passed = totals.passed.saturating_sub(skipped.len() as u64);
    eprintln!(
        "\nxtask test: {passed} passed, {} failed, {} skipped at run time (this machine lacks \
         what they need), {} ignored, {} test binaries",
        totals.failed,
        skipped.len(),
        totals.ignored,
        totals.binaries
    );
    for s in &skipped {
        eprintln!("  skipped: {s}");
    }
    if !status.success() {
        return Err(format!("cargo test failed ({status})"));
    }
    if totals.ignored > 0 {
        return Err(format!(
            "{} tests were ignored although this run is root: every root-only test must run here",
            totals.ignored
        ));
    }
    if let Some(root_skip) = skipped.iter().find(|s| s.contains("root")) {
        return Err(format!(
            "a root-only test skipped while running as root: {root_skip}"
        ));
    }
    if totals.binaries == 0 {
        return Err("cargo test printed no test results".into());
    }
    eprintln!(
        "xtask test: PASSED (cargo build and cargo test --workspace --exclude {} -- \
         --include-ignored)",
        xtask::EBPF_PACKAGE
    );
    Ok(0)
}

/// Sums of libtest's `test result:` lines.
#[derive(Default, Debug, PartialEq)]
struct Totals {
    passed: u64,
    failed: u64,
    ignored: u64,
    binaries: u64,
}

impl Totals {
    /// Adds `test result: ok. 3 passed; 0 failed; 1 ignored; 0 measured; ...` to the sums.
    fn add_line(&mut self, line: &str) {
        let Some(rest) = line.strip_prefix("test result: ") else {
            return;
        };
        self.binaries += 1;
        for part in rest.split(['.', ';']) {
            let mut words = part.split_whitespace();
            let (Some(n), Some(what)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(n) = n.parse::<u64>() else { continue };
            match what {
                "passed" => self.passed += n,
                "failed" => self.failed += n,
                "ignored" => self.ignored += n,
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Totals;

    #[test]
    fn result_lines_are_summed() {
        let mut t = Totals::default();
        t.add_line("test result: ok. 3 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s");
        t.add_line("test result: FAILED. 2 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.00s");
        t.add_line("running 3 tests");
        assert_eq!(
            t,
            Totals {
                passed: 5,
                failed: 1,
                ignored: 1,
                binaries: 2
            }
        );
    }
}
