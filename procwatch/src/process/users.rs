//! uid → user name from `/etc/passwd`, parsed once and re-read (at most every
//! [`REFRESH`]) when a uid is not found, so users added later get their names.
//!
//! Public API: [`UserNames::new`], [`UserNames::with_path`], [`UserNames::name`].
//!
//! Only the passwd file is read (no NSS: LDAP/SSSD users show as numbers). An unknown uid is
//! `None`; callers print the number.
use std::{
    collections::HashMap,
    path::PathBuf,
    time::{Duration, Instant},
};

use tracing::debug;

use crate::procfs::parse::parse_u64;

/// The system's passwd file.
pub const DEFAULT_PATH: &str = "/etc/passwd";
/// Shortest time between two reads of the file on misses.
pub const REFRESH: Duration = Duration::from_secs(30);

/// uid → name, loaded on first use.
#[derive(Debug)]
pub struct UserNames {
    path: PathBuf,
    names: HashMap<u32, String>,
    loaded_at: Option<Instant>,
}

impl Default for UserNames {
    fn default() -> Self {
        Self::new()
    }
}

impl UserNames {
    /// Names from `/etc/passwd`.
    pub fn new() -> Self {
        Self::with_path(DEFAULT_PATH)
    }

    /// Names from another passwd-format file.
    pub fn with_path(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            names: HashMap::new(),
            loaded_at: None,
        }
    }

    /// The name of `uid`, or `None` when the passwd file does not know it.
    pub fn name(&mut self, uid: u32) -> Option<&str> {
        self.name_at(uid, Instant::now())
    }

    /// The uid of user `name` (for whitelisted users in the kernel's kill policy).
    pub fn uid_of(&mut self, name: &str) -> Option<u32> {
        if self.loaded_at.is_none() || !self.names.values().any(|n| n == name) {
            self.reload(Instant::now());
        }
        self.names
            .iter()
            .find(|(_, n)| n.as_str() == name)
            .map(|(uid, _)| *uid)
    }

    fn name_at(&mut self, uid: u32, now: Instant) -> Option<&str> {
        let stale = self
            .loaded_at
            .is_none_or(|at| now.saturating_duration_since(at) >= REFRESH);
        if stale && !self.names.contains_key(&uid) {
            self.reload(now);
        }
        self.names.get(&uid).map(String::as_str)
    }

    fn reload(&mut self, now: Instant) {
        self.loaded_at = Some(now);
        match std::fs::read(&self.path) {
            Ok(text) => self.names = parse_passwd(&text),
            // Keep what was known: a transient failure should not blank every name.
            Err(e) => debug!(path = %self.path.display(), error = %e, "cannot read passwd file"),
        }
    }
}

/// `name:password:uid:gid:...` lines; malformed ones are skipped and, as with getpwuid(3), the
/// first line for a uid wins.
fn parse_passwd(text: &[u8]) -> HashMap<u32, String> {
    let mut names = HashMap::new();
    for line in text.split(|&b| b == b'\n') {
        if let Some((uid, name)) = parse_passwd_line(line) {
            names.entry(uid).or_insert(name);
        }
    }
    names
}

fn parse_passwd_line(line: &[u8]) -> Option<(u32, String)> {
    if line.starts_with(b"#") {
        return None;
    }
    let mut fields = line.split(|&b| b == b':');
    let name = fields.next().filter(|n| !n.is_empty())?;
    let _password = fields.next()?;
    let uid = u32::try_from(parse_u64(fields.next()?)?).ok()?;
    Some((uid, String::from_utf8_lossy(name).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct TempPasswd(PathBuf);

    impl TempPasswd {
        fn new(name: &str, text: &str) -> Self {
            let p = std::env::temp_dir().join(format!("pw-passwd-{}-{name}", std::process::id()));
            std::fs::write(&p, text).expect("write passwd");
            Self(p)
        }
    }

    impl Drop for TempPasswd {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn uid_of_finds_names() {
        let f = TempPasswd::new(
            "uidof",
            "root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n",
        );
        let mut u = UserNames::with_path(&f.0);
        assert_eq!(u.uid_of("alice"), Some(1000));
        assert_eq!(u.uid_of("root"), Some(0));
        assert_eq!(u.uid_of("mallory"), None);
    }

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
                          # a comment\n\
                          \n\
                          daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
                          broken line\n\
                          nouid:x::5::/:/bin/sh\n\
                          :x:7:7::/:/bin/sh\n\
                          big:x:99999999999:1::/:/bin/sh\n\
                          +::::::\n\
                          alice:x:1000:1000:Alice,,,:/home/alice:/bin/bash\n\
                          alias:x:1000:1000::/home/alice:/bin/bash\n\
                          short:x:42";

    #[test]
    fn parses_and_skips_malformed_lines() {
        let f = TempPasswd::new("parse", PASSWD);
        let mut u = UserNames::with_path(&f.0);
        assert_eq!(u.name(0), Some("root"));
        assert_eq!(u.name(1), Some("daemon"));
        assert_eq!(u.name(1000), Some("alice"));
        assert_eq!(u.name(42), Some("short"));
        assert_eq!(u.name(7), None);
        assert_eq!(u.name(5), None);
        assert_eq!(u.names.len(), 4);
    }

    #[test]
    fn rereads_on_a_miss_at_most_every_refresh() {
        let f = TempPasswd::new("refresh", "root:x:0:0::/:/bin/sh\n");
        let mut u = UserNames::with_path(&f.0);
        let t0 = Instant::now();
        assert_eq!(u.name_at(0, t0), Some("root"));
        std::fs::write(&f.0, "root:x:0:0::/:/bin/sh\nbob:x:1001:1001::/:/bin/sh\n").expect("add");
        assert_eq!(u.name_at(1001, t0 + Duration::from_secs(5)), None);
        assert_eq!(u.name_at(1001, t0 + REFRESH), Some("bob"));
        // A hit never re-reads, however old the data.
        std::fs::write(&f.0, "admin:x:0:0::/:/bin/sh\n").expect("rename root");
        assert_eq!(u.name_at(0, t0 + REFRESH * 10), Some("root"));
    }

    #[test]
    fn missing_file_is_no_names_and_keeps_old_ones() {
        let mut u = UserNames::with_path("/nonexistent/passwd");
        assert_eq!(u.name(0), None);
        let f = TempPasswd::new("keep", "root:x:0:0::/:/bin/sh\n");
        let mut u = UserNames::with_path(&f.0);
        let t0 = Instant::now();
        assert_eq!(u.name_at(0, t0), Some("root"));
        std::fs::remove_file(&f.0).expect("remove");
        assert_eq!(u.name_at(5, t0 + REFRESH), None);
        assert_eq!(u.name_at(0, t0 + REFRESH), Some("root"));
    }

    #[test]
    fn system_passwd_knows_root() {
        assert_eq!(UserNames::new().name(0), Some("root"));
    }
}
