//! `cargo xtask run -- <procwatch args>`: build procwatch (release) as the calling user, then
//! run it as root.
use std::{ffi::OsString, io, path::PathBuf, process::Command};

use crate::{
    setup::Setup,
    sh::{self, Result},
};

/// Returns procwatch's exit code (128 + signal if it was killed).
pub fn command(args: &[OsString]) -> Result<u8> {
    let mut setup = Setup::new(false);
    setup.toolchain()?;
    setup.tracefs()?;
    setup.warn_root_only();
    // stdout belongs to procwatch (e.g. `cargo xtask run -- events | jq`).
    sh::run(
        sh::cargo()
            .args(["build", "--release", "--package", "procwatch"])
            .stdout(io::stderr()),
    )?;
    let binary = target_dir()?.join("release/procwatch");
    if !binary.is_file() {
        return Err(format!(
            "the build succeeded but {} is missing",
            binary.display()
        ));
    }
    let mut cmd = if sh::is_root() {
        Command::new(&binary)
    } else if sh::which("sudo").is_some() {
        let mut cmd = Command::new("sudo");
        cmd.arg("-E").arg(&binary);
        cmd
    } else {
        return Err(format!(
            "procwatch needs root (it loads BPF programs) and sudo is not installed: run \
             `{}` as root",
            binary.display()
        ));
    };
    cmd.args(args);
    // Ctrl-C reaches procwatch straight from the terminal; xtask only has to outlive it to
    // pass on its exit code.
    sigint::outlive_child();
    let status = sh::status(&mut cmd)?;
    Ok(sh::exit_code(status))
}

/// The workspace's target directory, as cargo resolves it (CARGO_TARGET_DIR, config, default).
pub(crate) fn target_dir() -> Result<PathBuf> {
    let json = sh::output(sh::cargo().args(["metadata", "--no-deps", "--format-version", "1"]))
        .ok_or("`cargo metadata` failed; run it to see why")?;
    json_string_field(&json, "target_directory")
        .map(PathBuf::from)
        .ok_or_else(|| "`cargo metadata` printed no target_directory".into())
}

/// The string value of the first `"key":"..."` in `json` (enough for cargo metadata, whose
/// output is compact; keeps xtask free of dependencies).
fn json_string_field(json: &str, key: &str) -> Option<String> {
    let start = json.find(&format!("\"{key}\":\""))? + key.len() + 4;
    let mut out = String::new();
    let mut chars = json[start..].chars();
    loop {
        match chars.next()? {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'u' => {
                    let hex: String = chars.by_ref().take(4).collect();
                    out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                }
                c => out.push(c),
            },
            c => out.push(c),
        }
    }
}

mod sigint {
    use std::os::raw::c_int;

    const SIGINT: c_int = 2;

    extern "C" fn nothing(_: c_int) {}

    unsafe extern "C" {
        fn signal(signum: c_int, handler: extern "C" fn(c_int)) -> usize;
    }

    /// Makes SIGINT harmless to xtask while it waits for its child. A handler (not SIG_IGN)
    /// because exec resets handlers to the default, so the child still gets Ctrl-C.
    pub fn outlive_child() {
        // SAFETY: `nothing` is async-signal-safe (it does nothing), and `signal` only swaps
        // the disposition of SIGINT for this process.
        unsafe {
            signal(SIGINT, nothing);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_target_directory() {
        let json = r#"{"packages":[],"target_directory":"/w/a \"b\"\\c","version":1}"#;
        assert_eq!(
            json_string_field(json, "target_directory").as_deref(),
            Some(r#"/w/a "b"\c"#)
        );
        assert_eq!(json_string_field(json, "workspace_root"), None);
        assert_eq!(
            json_string_field(r#"{"target_directory":"/w"#, "target_directory"),
            None
        );
    }
}
