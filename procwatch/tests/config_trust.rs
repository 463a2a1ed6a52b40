//! As root, config layers another user could have written are refused, through the real
//! binary: a file owned by `nobody`, one with mode 0666 or 0664, and symlinks to them, given
//! as `~/.procwatch.yaml` (HOME, as `sudo -E` keeps it) and as `--config`. Root-owned files
//! that only root can write are read, wherever they sit.
#![allow(clippy::unwrap_used)]

mod common;

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Output,
};

use common::{Scratch, procwatch, text};

/// The uid of `nobody` on Debian.
const NOBODY: u32 = 65534;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// First line of every test here (each `#[ignore]`d for unprivileged runs, which list it as
/// skipped): only root can hand a file to another user, so without root it fails, never passes.
macro_rules! require_root {
    () => {
        assert!(is_root(), "needs root to chown files to another user");
    };
}

/// Config files owned by someone and symlinks, in a [`Scratch`] directory.
impl Scratch {
    /// A config file at `rel` with `mode`, owned by `uid`.
    fn owned_file(&self, rel: &str, mode: u32, uid: u32) -> PathBuf {
        let path = self.0.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "min_score: 4\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        std::os::unix::fs::chown(&path, Some(uid), Some(uid)).unwrap();
        path
    }

    fn symlink(&self, rel: &str, to: &Path) -> PathBuf {
        let path = self.0.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(to, &path).unwrap();
        path
    }
}

/// Asserts the run exited 1 refusing `file` with every word of `needles`.
#[track_caller]
fn assert_refused(out: &Output, file: &Path, needles: &[&str]) {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(
        stderr.contains(&format!("{}: refused: ", file.display())),
        "the message must name {}: {stderr}",
        file.display()
    );
    for n in needles {
        assert!(stderr.contains(n), "missing {n:?}: {stderr}");
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// `~/.procwatch.yaml` of another user, as `sudo -E` would find it: refused by every command
/// that layers it, never loaded silently.
#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn home_layer_owned_by_another_user_is_refused() {
    require_root!();
    let dir = Scratch::new("config-trust", "home-owner");
    let home = dir.0.join("home");
    let file = dir.owned_file("home/.procwatch.yaml", 0o644, NOBODY);
    for args in [
        &["config", "show"][..],
        &["scan", "--quiet"],
        &["monitor", "--quiet", "--duration", "1"],
    ] {
        let out = procwatch(&home, args);
        assert_refused(
            &out,
            &file,
            &["uid 65534", "mode 0644", "owned by another user"],
        );
    }
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn home_layer_writable_by_everyone_or_group_is_refused() {
    require_root!();
    for (mode, words) in [
        (0o666, "by its group and by everyone"),
        (0o646, "by everyone"),
        (0o664, "by its group"),
    ] {
        let dir = Scratch::new("config-trust", &format!("home-mode-{mode:o}"));
        let home = dir.0.join("home");
        let file = dir.owned_file("home/.procwatch.yaml", mode, 0);
        let out = procwatch(&home, &["config", "show"]);
        assert_refused(&out, &file, &["uid 0", &format!("mode 0{mode:o}"), words]);
    }
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn cli_config_owned_by_another_user_or_world_writable_is_refused() {
    require_root!();
    let dir = Scratch::new("config-trust", "cli");
    let nobodys = dir.owned_file("nobodys.yaml", 0o600, NOBODY);
    let open = dir.owned_file("open.yaml", 0o666, 0);
    for (file, word) in [(&nobodys, "uid 65534"), (&open, "mode 0666")] {
        let f = file.to_str().unwrap();
        for args in [
            &["config", "check", f][..],
            &["config", "show", "--config", f],
            &["scan", "--quiet", "--config", f],
            &["monitor", "--quiet", "--config", f, "--duration", "1"],
        ] {
            let out = procwatch(&dir.0, args);
            assert_refused(&out, file, &[word]);
        }
    }
}

/// The opened file is judged, not the link: a root-owned link to another user's file is
/// refused, and a link to a root-only file is read.
#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn symlinks_are_judged_by_the_file_they_lead_to() {
    require_root!();
    let dir = Scratch::new("config-trust", "links");
    let nobodys = dir.owned_file("elsewhere/nobodys.yaml", 0o644, NOBODY);
    let home = dir.0.join("home");
    let link = dir.symlink("home/.procwatch.yaml", &nobodys);
    let out = procwatch(&home, &["config", "show"]);
    assert_refused(&out, &link, &["uid 65534"]);
    let cli_link = dir.symlink("cli-link.yaml", &nobodys);
    let out = procwatch(&dir.0, &["config", "check", cli_link.to_str().unwrap()]);
    assert_refused(&out, &cli_link, &["uid 65534"]);

    let roots = dir.owned_file("elsewhere/roots.yaml", 0o644, 0);
    let good_link = dir.symlink("good-link.yaml", &roots);
    let out = procwatch(&dir.0, &["config", "check", good_link.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// The directory is not judged (docs/config.md says why): a root-only file in a directory
/// everyone can write, or in one another user owns, is read.
#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn root_only_file_in_an_open_directory_is_read() {
    require_root!();
    let dir = Scratch::new("config-trust", "dirs");
    let open_dir = dir.0.join("open");
    std::fs::create_dir_all(&open_dir).unwrap();
    std::fs::set_permissions(&open_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let in_open = dir.owned_file("open/roots.yaml", 0o644, 0);
    let users_dir = dir.0.join("users");
    std::fs::create_dir_all(&users_dir).unwrap();
    std::os::unix::fs::chown(&users_dir, Some(NOBODY), Some(NOBODY)).unwrap();
    let in_users = dir.owned_file("users/roots.yaml", 0o600, 0);
    for file in [in_open, in_users] {
        let out = procwatch(&dir.0, &["config", "check", file.to_str().unwrap()]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(text(&out.stdout), format!("{}: ok\n", file.display()));
    }
}

/// A FIFO as ~/.procwatch.yaml must not stall procwatch waiting for a writer.
#[test]
fn fifo_layer_is_refused_at_once() {
    let dir = Scratch::new("config-trust", "fifo");
    let fifo = dir.0.join(".procwatch.yaml");
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let out = procwatch(&dir.0, &["config", "show"]);
    assert_refused(&out, &fifo, &["not a regular file but a FIFO"]);
}
