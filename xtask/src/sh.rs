//! Running other programs: printing what runs, cleaning the environment an enclosing cargo
//! leaves behind, and facts about the machine (root, programs on `PATH`).
use std::{
    env,
    ffi::OsStr,
    fs,
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Stdio},
};

/// Errors carry a message that says what failed and what to do about it.
pub type Result<T = ()> = std::result::Result<T, String>;

/// The workspace root (this crate lives in `<root>/xtask`).
pub fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| manifest_dir.to_path_buf())
}

/// `cargo` for the workspace itself: the cargo that runs xtask (`$CARGO`), so a toolchain
/// chosen with `cargo +toolchain xtask ...` applies to the nested commands too.
pub fn cargo() -> Command {
    let program = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(program);
    cmd.current_dir(workspace_root());
    cmd
}

/// `rustup run nightly cargo`, with nothing from an enclosing cargo or toolchain override
/// leaking in (same rule as `xtask::build_ebpf`).
pub fn nightly_cargo() -> Command {
    let mut cmd = xtask::rustup();
    cmd.args(["run", xtask::NIGHTLY, "cargo"]);
    clean_cargo_env(&mut cmd);
    cmd
}

/// Removes the variables an enclosing cargo/rustup exports for itself.
pub fn clean_cargo_env(cmd: &mut Command) {
    for (key, _) in env::vars_os() {
        let k = key.to_string_lossy();
        let drop = (k.starts_with("CARGO") && k != "CARGO_HOME")
            || k.starts_with("RUSTUP_TOOLCHAIN")
            || matches!(
                &*k,
                "RUSTC" | "RUSTC_WRAPPER" | "RUSTC_WORKSPACE_WRAPPER" | "RUSTFLAGS" | "OUT_DIR"
            );
        if drop {
            cmd.env_remove(&key);
        }
    }
}

/// How a command reads when printed: program and arguments, plus the variables it sets.
pub fn display(cmd: &Command) -> String {
    let mut parts: Vec<String> = cmd
        .get_envs()
        .filter_map(|(k, v)| Some(format!("{}={}", k.to_string_lossy(), quote(v?))))
        .collect();
    parts.push(quote(cmd.get_program()));
    parts.extend(cmd.get_args().map(quote));
    parts.join(" ")
}

fn quote(s: &OsStr) -> String {
    let s = s.to_string_lossy();
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:+,@%^~".contains(c));
    if plain {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Runs `cmd` with inherited stdio, echoing it first as `+ <command>`.
pub fn status(cmd: &mut Command) -> Result<ExitStatus> {
    eprintln!("+ {}", display(cmd));
    cmd.status()
        .map_err(|e| format!("cannot start `{}`: {e}", display(cmd)))
}

/// Runs `cmd` (echoed) and fails unless it exits with 0.
pub fn run(cmd: &mut Command) -> Result {
    let st = status(cmd)?;
    if st.success() {
        Ok(())
    } else {
        Err(format!("`{}` failed ({st})", display(cmd)))
    }
}

/// Copies the executable `src` to `dst` (mode kept) through a `cp` child, never through a
/// descriptor of this process, which a thread forking meanwhile would inherit and make the
/// exec of `dst` fail with ETXTBSY.
pub fn install_exe(src: &Path, dst: &Path) -> Result {
    let st = Command::new("cp")
        .arg("--preserve=mode")
        .arg("--")
        .arg(src)
        .arg(dst)
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run cp: {e}"))?;
    if st.success() {
        Ok(())
    } else {
        Err(format!(
            "cannot copy {} to {} ({st})",
            src.display(),
            dst.display()
        ))
    }
}

/// Runs `cmd` quietly; its stdout if it exited with 0.
pub fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether the program exits with 0 (quietly).
pub fn succeeds(cmd: &mut Command) -> bool {
    output(cmd).is_some()
}

/// Exit code to pass on for a finished child: its code, or 128 + signal like a shell.
pub fn exit_code(st: ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (st.code(), st.signal()) {
        (Some(code), _) => u8::try_from(code).unwrap_or(1),
        (None, Some(sig)) => u8::try_from(128 + sig).unwrap_or(1),
        (None, None) => 1,
    }
}

/// Whether this process runs with effective uid 0 (from `/proc/self/status`; std has no
/// `geteuid`).
pub fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| effective_uid(&s))
        == Some(0)
}

/// The effective uid: second field of the `Uid:` line of `/proc/<pid>/status`.
fn effective_uid(status: &str) -> Option<u32> {
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// Full path of `program` if it is on `PATH`.
pub fn which(program: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effective_uid_is_the_second_field() {
        let status = "Name:\tx\nUid:\t1000\t0\t1000\t1000\nGid:\t0\t0\t0\t0\n";
        assert_eq!(effective_uid(status), Some(0));
        assert_eq!(effective_uid("Name:\tx\n"), None);
    }

    #[test]
    fn display_quotes_only_what_needs_it() {
        let mut cmd = Command::new("apt-get");
        cmd.env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "a b", "it's"]);
        assert_eq!(
            display(&cmd),
            r"DEBIAN_FRONTEND=noninteractive apt-get install -y 'a b' 'it'\''s'"
        );
    }

    #[test]
    fn exit_codes_pass_through() {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(exit_code(ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(exit_code(ExitStatus::from_raw(2)), 130); // killed by SIGINT
    }
}
