//! What the tests that run the procwatch binary share: a scratch directory that also serves as
//! HOME (so the invoking user's ~/.procwatch.yaml and model are never read), and the run.
#![allow(dead_code, clippy::unwrap_used)]

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Command, Output},
};

/// A scratch directory for one test of this test process, removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    /// A fresh, empty directory (mode 0755) named after the test file's `tag` and `name`.
    pub fn new(tag: &str, name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("procwatch-{tag}-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        Self(dir)
    }

    /// The path of `rel` inside the directory (nothing is created).
    pub fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }

    /// Writes `text` to `rel` (parents created) and returns its path.
    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.0.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs procwatch with `args`, HOME set to `home`, no model path from the environment, and
/// an alert history of its own in `home` (as root the default one is shared).
pub fn procwatch(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_procwatch"))
        .args(args)
        .env("HOME", home)
        .env_remove("PROCWATCH_MODEL")
        .env("PROCWATCH_HISTORY", home.join("alerts.db"))
        .env("PROCWATCH_LOG", "warn")
        .output()
        .unwrap()
}

/// Output bytes as text (lossy: the tests look for words in it).
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
