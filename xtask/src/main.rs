//! `cargo xtask <command>`: developer tasks for procwatch. std only; each command is a module
//! with a `command(...) -> Result<exit code>` entry point.
mod bench;
mod build_ebpf;
mod lint;
mod run;
mod setup;
mod sh;
mod soak;
mod test;

use std::{env, ffi::OsString, process::ExitCode};

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  setup [--dry-run]    check prerequisites, install only what is missing (nightly, rust-src,
                       bpf-linker for LLVM 22, clippy/rustfmt, tracefs, Debian packages);
                       --dry-run prints what it would do
  build-ebpf           build the eBPF object into target/ebpf and print its path and size
  run -- <args>        build procwatch (release) and run it as root with <args>,
                       e.g. `cargo xtask run -- monitor`
  test                 (root) setup, then build and test the whole workspace
  lint                 rustfmt, clippy -D warnings on the host crates and on the eBPF crate
  bench [--quick] [--only N,M] [--runs K]
                       (root) procwatch vs no monitor, auditd and bpftrace on six workloads
                       (1 exec storm, 2 connect storm, 3 syscall overhead, 4 alert latency,
                       5 short-lived recall, 6 scan); tables on stdout and in
                       docs/BENCHMARKS.md. --quick: short runs for development
  soak [--minutes N]   (root) procwatch monitor under N minutes (default 30) of mixed load
                       (exec storm, alerts to JSONL and a private rsyslogd, connects, W+X);
                       RSS, fds and CPU per exec sampled every 10 s; docs/SOAK.md; fails
                       unless flat after the warm-up
";

/// A parsed command line.
#[derive(Debug, PartialEq)]
enum Task {
    Setup {
        dry_run: bool,
    },
    BuildEbpf,
    Run(Vec<OsString>),
    Test,
    Lint,
    Bench(bench::Options),
    Soak(soak::Options),
    /// Hidden: a load generator started by `bench`.
    BenchWorker(Vec<OsString>),
    Help,
}

fn parse(args: Vec<OsString>) -> Result<Task, String> {
    let mut args = args.into_iter();
    let Some(name) = args.next() else {
        return Ok(Task::Help);
    };
    let name = name.to_string_lossy().into_owned();
    if name == "run" {
        let mut rest: Vec<OsString> = args.collect();
        if rest.first().is_some_and(|a| a == "--") {
            rest.remove(0);
        }
        return Ok(Task::Run(rest));
    }
    if name == "bench-worker" {
        return Ok(Task::BenchWorker(args.collect()));
    }
    let flags: Vec<String> = args.map(|a| a.to_string_lossy().into_owned()).collect();
    let task = match name.as_str() {
        "setup" => {
            let dry_run = flags.iter().any(|f| f == "--dry-run");
            if let Some(other) = flags.iter().find(|f| *f != "--dry-run") {
                return Err(format!("unknown option for setup: {other}\n\n{USAGE}"));
            }
            return Ok(Task::Setup { dry_run });
        }
        "bench" => {
            return bench::Options::parse(&flags)
                .map(Task::Bench)
                .map_err(|e| format!("{e}\n\n{USAGE}"));
        }
        "soak" => {
            return soak::Options::parse(&flags)
                .map(Task::Soak)
                .map_err(|e| format!("{e}\n\n{USAGE}"));
        }
        "build-ebpf" => Task::BuildEbpf,
        "test" => Task::Test,
        "lint" => Task::Lint,
        "help" | "-h" | "--help" => Task::Help,
        other => return Err(format!("unknown command: {other}\n\n{USAGE}")),
    };
    match flags.first() {
        Some(flag) => Err(format!("unknown option for {name}: {flag}\n\n{USAGE}")),
        None => Ok(task),
    }
}

fn main() -> ExitCode {
    let args: Vec<OsString> = env::args_os().skip(1).collect();
    let task = match parse(args) {
        Ok(task) => task,
        Err(message) => {
            eprintln!("xtask: {message}");
            return ExitCode::from(2);
        }
    };
    let (name, result) = match task {
        Task::Setup { dry_run } => ("setup", setup::command(dry_run)),
        Task::BuildEbpf => ("build-ebpf", build_ebpf::command()),
        Task::Run(args) => ("run", run::command(&args)),
        Task::Test => ("test", test::command()),
        Task::Lint => ("lint", lint::command()),
        Task::Bench(options) => ("bench", bench::command(&options)),
        Task::Soak(options) => ("soak", soak::command(&options)),
        Task::BenchWorker(args) => ("bench-worker", bench::worker::command(&args)),
        Task::Help => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(message) => {
            eprintln!("\nxtask {name}: FAILED: {message}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn run_forwards_everything_after_the_separator() {
        assert_eq!(
            parse(args(&["run", "--", "events", "--duration", "2"])),
            Ok(Task::Run(args(&["events", "--duration", "2"])))
        );
        assert_eq!(
            parse(args(&["run", "monitor", "--", "x"])),
            Ok(Task::Run(args(&["monitor", "--", "x"])))
        );
    }

    #[test]
    fn commands_and_options() {
        assert_eq!(parse(args(&[])), Ok(Task::Help));
        assert_eq!(
            parse(args(&["setup", "--dry-run"])),
            Ok(Task::Setup { dry_run: true })
        );
        assert_eq!(parse(args(&["test"])), Ok(Task::Test));
        assert!(parse(args(&["test", "--dry-run"])).is_err());
        assert_eq!(
            parse(args(&["bench"])),
            Ok(Task::Bench(bench::Options::default()))
        );
        assert!(matches!(
            parse(args(&["bench", "--quick", "--only", "1,4"])),
            Ok(Task::Bench(bench::Options { quick: true, .. }))
        ));
        assert!(parse(args(&["bench", "--only", "9"])).is_err());
        assert_eq!(
            parse(args(&["bench-worker", "exec", "--rate", "400"])),
            Ok(Task::BenchWorker(args(&["exec", "--rate", "400"])))
        );
        assert_eq!(
            parse(args(&["soak", "--minutes", "5"])),
            Ok(Task::Soak(soak::Options { minutes: 5 }))
        );
        assert!(parse(args(&["soak", "--minutes", "0"])).is_err());
        assert!(parse(args(&["nonsense"])).is_err());
    }
}
