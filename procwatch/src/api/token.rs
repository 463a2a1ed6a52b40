//! The token procwatch makes for itself when none is configured, so that the API never
//! serves /proc data of every user (fds, maps, cwd, alerts, baselines) to every local user by
//! default. It is kept in a file only its owner may read, reused across restarts, and its
//! path is logged so the operator can hand it to the dashboard or to curl.
use std::{
    io::{ErrorKind, Read, Write},
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

use anyhow::{Context, bail};

/// Bytes of randomness in a generated token (hex-encoded: twice as many characters).
const RANDOM_BYTES: usize = 32;

/// Where the generated token lives: `/var/lib/procwatch/api.token` as root, else
/// `$HOME/.local/share/procwatch/api.token`.
pub fn default_path(euid: u32) -> anyhow::Result<PathBuf> {
    if euid == 0 {
        return Ok(PathBuf::from("/var/lib/procwatch/api.token"));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".local/share/procwatch/api.token"))
        .context(
            "api: no token is configured and HOME is not set to keep a generated one; \
             set api.token or api.token_file",
        )
}

/// The token at `path`: the one already there (checked by `read_existing`), or a new random
/// one written there with mode 0600. Two procwatch starting at once agree on one token: the
/// file appears whole and only once (written aside, then hard-linked into place).
pub fn load_or_create(
    path: &Path,
    read_existing: impl Fn(&Path) -> anyhow::Result<String>,
) -> anyhow::Result<String> {
    if path.exists() {
        return read_existing(path);
    }
    let dir = path
        .parent()
        .context("api: the generated token's path has no directory")?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("api: cannot create {} for the API token", dir.display()))?;
    let token = random_token()?;
    let aside = dir.join(format!(".api.token.{}", std::process::id()));
    let written = (|| -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&aside)?;
        f.write_all(format!("{token}\n").as_bytes())?;
        f.sync_all()
    })();
    let linked = written.and_then(|()| std::fs::hard_link(&aside, path));
    let _ = std::fs::remove_file(&aside);
    match linked {
        Ok(()) => Ok(token),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => read_existing(path),
        Err(e) => Err(e).with_context(|| format!("api: cannot write the token {}", path.display())),
    }
}

/// A fresh token: 32 bytes of the kernel's randomness, hex-encoded (64 characters).
fn random_token() -> anyhow::Result<String> {
    let mut bytes = [0u8; RANDOM_BYTES];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("api: cannot read /dev/urandom for a token")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Refuses a token too short to resist guessing.
pub fn check_generated(token: &str, path: &Path) -> anyhow::Result<()> {
    if token.len() < 32 {
        bail!(
            "api: the token in {} has {} characters, fewer than 32; remove the file to have \
             procwatch make a new one",
            path.display(),
            token.len()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn a_made_token_is_long_private_and_reused() {
        let dir = std::env::temp_dir().join(format!("pw-token-{}", std::process::id()));
        let path = dir.join("sub/api.token");
        let read = |p: &Path| Ok(std::fs::read_to_string(p)?.trim().to_string());
        let first = load_or_create(&path, read).expect("made");
        assert_eq!(first.len(), 64, "{first}");
        assert!(first.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(
            std::fs::metadata(&path).expect("meta").mode() & 0o777,
            0o600
        );
        let again = load_or_create(&path, read).expect("reused");
        assert_eq!(first, again);
        let other = dir.join("other/api.token");
        assert_ne!(load_or_create(&other, read).expect("made"), first);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
