//! Per-rule exceptions (`exceptions:`), as Falco has them: a finding of a rule is dropped when
//! the process matches one of that rule's entries. An entry names what is normal (an
//! executable by canonical path pattern or sha256, its parent, its user, the ports it
//! connects to, a binary replaced by a root-owned file) and matches when all its conditions
//! hold. The built-in defaults cover software every server runs; each is listed with why in
//! docs/rules.md. `fileless_exe`, `ptrace` and `reverse_shell` have none: only an exception the
//! user writes can silence them.
use std::{fmt, path::Path};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{PerRule, PortSet, Rule, values::User};

/// A path pattern: `*` matches within one path component, `**` any number of whole
/// components, `?` one character; everything else matches itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob(String);

impl Glob {
    /// The pattern `text` (absolute; checked when read from a config file).
    pub fn new(text: &str) -> Self {
        Self(text.to_string())
    }

    /// Whether `path` matches the pattern as a whole.
    pub fn matches(&self, path: &Path) -> bool {
        use std::os::unix::ffi::OsStrExt;
        glob_match(self.0.as_bytes(), path.as_os_str().as_bytes())
    }
}

/// Matches `pat` against all of `text`.
fn glob_match(pat: &[u8], text: &[u8]) -> bool {
    match pat {
        [] => text.is_empty(),
        [b'*', b'*', rest @ ..] => {
            // `**/` may also match nothing at all ("/a/**/b" matches "/a/b").
            let rest_after_slash = rest.strip_prefix(b"/").unwrap_or(rest);
            (0..=text.len()).any(|i| {
                glob_match(rest, &text[i..])
                    || (i == 0 || text[i - 1] == b'/') && glob_match(rest_after_slash, &text[i..])
            })
        }
        [b'*', rest @ ..] => {
            let run = text.iter().position(|&c| c == b'/').unwrap_or(text.len());
            (0..=run).any(|i| glob_match(rest, &text[i..]))
        }
        [b'?', rest @ ..] => matches!(text, [c, t @ ..] if *c != b'/' && glob_match(rest, t)),
        [c, rest @ ..] => matches!(text, [t, tr @ ..] if t == c && glob_match(rest, tr)),
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Glob {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Glob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        super::values::parse_str_with(d, "an absolute path pattern", |s| {
            if s.starts_with('/') && !s.contains('\0') {
                Ok(Self(s.to_string()))
            } else if s.is_empty() {
                Err("path pattern must not be empty".into())
            } else {
                Err(format!(
                    "path pattern '{s}' must be absolute (start with /): executables are matched by canonical path"
                ))
            }
        })
    }
}

/// A sha256 digest in lowercase hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Sha256(String);

impl<'de> Deserialize<'de> for Sha256 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        super::values::parse_str_with(d, "a sha256 digest (64 hex digits)", |s| {
            if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
                Ok(Self(s.to_ascii_lowercase()))
            } else {
                Err(format!("'{s}' is not a sha256 digest (64 hex digits)"))
            }
        })
    }
}

fn users<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Vec::<User>::deserialize(d).map(|v| v.into_iter().map(|u| u.0).collect())
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// One exception entry: all the conditions it has must hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "an exception: name plus conditions (exe, parent_exe, sha256, users, ports, replaced_by_root)"
)]
pub struct Exception {
    /// Name reported when it silences a finding.
    pub name: String,
    /// The executable's canonical path matches one of these patterns.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exe: Vec<Glob>,
    /// The parent's executable matches one of these patterns.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parent_exe: Vec<Glob>,
    /// The executable's sha256 is one of these (matches once the file is hashed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sha256: Vec<Sha256>,
    /// The process's user, by name or uid.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "users"
    )]
    pub users: Vec<String>,
    /// Remote ports (for `suspicious_port`: the connections to these ports are normal).
    #[serde(default, skip_serializing_if = "PortSet::is_empty")]
    pub ports: PortSet,
    /// The executable was deleted or replaced, and its path now names a file owned by root
    /// that only root may write, in directories only root may write (a package upgrade).
    #[serde(default, skip_serializing_if = "is_false")]
    pub replaced_by_root: bool,
}

/// What an exception is matched against.
#[derive(Debug, Clone, Copy, Default)]
pub struct Subject<'a> {
    /// The executable's path, when known.
    pub exe: Option<&'a Path>,
    /// The executable is a file on disk (not a memfd, not gone).
    pub exe_on_disk: bool,
    /// Its sha256, once hashed.
    pub sha256: Option<&'a str>,
    /// User name, when known.
    pub user: Option<&'a str>,
    /// Real uid.
    pub uid: u32,
    /// The parent's executable, when known.
    pub parent_exe: Option<&'a Path>,
    /// See [`Exception::replaced_by_root`]; `None` while not yet read.
    pub replaced_by_root: Option<bool>,
}

impl Exception {
    /// Whether the entry has no condition at all (it would silence the whole rule).
    pub fn is_unconditional(&self) -> bool {
        self.exe.is_empty()
            && self.parent_exe.is_empty()
            && self.sha256.is_empty()
            && self.users.is_empty()
            && self.ports.is_empty()
            && !self.replaced_by_root
    }

    /// Whether every condition holds for `s`; `port` is the remote port being judged (an
    /// entry with `ports` matches only such a judgement).
    pub fn matches(&self, s: &Subject<'_>, port: Option<u16>) -> bool {
        if self.is_unconditional() {
            return false;
        }
        // A path pattern vouches for a file at that path: a memfd or an unlinked file is not
        // the one the pattern names, unless the entry is about exactly that (an upgrade).
        let exe_ok = self.exe.is_empty()
            || (s.exe_on_disk || self.replaced_by_root)
                && s.exe.is_some_and(|e| self.exe.iter().any(|g| g.matches(e)));
        let parent_ok = self.parent_exe.is_empty()
            || s.parent_exe
                .is_some_and(|e| self.parent_exe.iter().any(|g| g.matches(e)));
        let hash_ok = self.sha256.is_empty()
            || s.sha256
                .is_some_and(|h| self.sha256.iter().any(|x| x.0 == h));
        let uid = s.uid.to_string();
        let user_ok = self.users.is_empty()
            || self
                .users
                .iter()
                .any(|u| *u == uid || Some(u.as_str()) == s.user);
        let port_ok = self.ports.is_empty() || port.is_some_and(|p| self.ports.contains(p));
        let replaced_ok = !self.replaced_by_root || s.replaced_by_root == Some(true);
        exe_ok && parent_ok && hash_ok && user_ok && port_ok && replaced_ok
    }

    /// Whether the entry depends on the executable's hash.
    pub fn needs_hash(&self) -> bool {
        !self.sha256.is_empty()
    }
}

/// `exceptions:`, one list per rule. A layer that sets a rule's list replaces it (`[]` turns
/// the shipped defaults of that rule off).
pub type Exceptions = PerRule<Vec<Exception>>;

impl Exceptions {
    /// No exception at all.
    pub fn none() -> Self {
        PerRule::from_fn(|_| Vec::new())
    }

    /// The first entry of `rule` that matches `s` (for a remote `port` when given).
    pub fn find(&self, rule: Rule, s: &Subject<'_>, port: Option<u16>) -> Option<&Exception> {
        self.of(rule).iter().find(|e| e.matches(s, port))
    }
}

fn globs(patterns: &[&str]) -> Vec<Glob> {
    patterns.iter().map(|p| Glob::new(p)).collect()
}

fn entry(name: &str) -> Exception {
    Exception {
        name: name.into(),
        exe: Vec::new(),
        parent_exe: Vec::new(),
        sha256: Vec::new(),
        users: Vec::new(),
        ports: PortSet::default(),
        replaced_by_root: false,
    }
}

impl Default for Exceptions {
    /// The shipped defaults (docs/rules.md lists each with why it is safe).
    fn default() -> Self {
        let mut e = Self::none();
        e.wx_mem = vec![
            Exception {
                exe: globs(&[
                    "/usr/lib/jvm/*/bin/*",
                    "/usr/lib/jvm/*/jre/bin/*",
                    "/usr/bin/node",
                    "/usr/bin/nodejs",
                    "/usr/share/nodejs/**/node",
                    "/usr/lib/dotnet/dotnet",
                    "/usr/share/dotnet/dotnet",
                    "/usr/lib/dotnet/**/dotnet",
                    "/opt/microsoft/powershell/*/pwsh",
                ]),
                ..entry("jit-runtimes")
            },
            Exception {
                exe: globs(&[
                    "/usr/bin/grep",
                    "/usr/bin/pcre2grep",
                    "/usr/sbin/nginx",
                    "/usr/sbin/apache2",
                    "/usr/sbin/php-fpm*",
                    "/usr/bin/php*",
                    "/usr/sbin/haproxy",
                    "/usr/sbin/exim4",
                    "/usr/sbin/postfix",
                    "/usr/lib/postfix/sbin/*",
                ]),
                ..entry("pcre-jit-users")
            },
        ];
        e.suspicious_port = vec![
            Exception {
                exe: globs(&[
                    "/usr/bin/ssh",
                    "/usr/bin/scp",
                    "/usr/bin/sftp",
                    "/usr/bin/rsync",
                    "/usr/bin/git",
                    "/usr/lib/git-core/*",
                ]),
                ports: PortSet::from_ranges([(22, 22)]),
                ..entry("ssh-clients")
            },
            Exception {
                ports: PortSet::from_ranges([
                    (3306, 3306),
                    (5432, 5432),
                    (6379, 6379),
                    (9200, 9200),
                    (11211, 11211),
                    (27017, 27017),
                ]),
                ..entry("database-and-cache-clients")
            },
            Exception {
                ports: PortSet::from_ranges([
                    (25, 25),
                    (465, 465),
                    (587, 587),
                    (993, 993),
                    (995, 995),
                ]),
                ..entry("mail")
            },
            Exception {
                ports: PortSet::from_ranges([(123, 123)]),
                ..entry("ntp")
            },
        ];
        e.high_cpu = vec![Exception {
            exe: globs(&[
                "/usr/lib/gcc/*/*/cc1",
                "/usr/lib/gcc/*/*/cc1plus",
                "/usr/lib/gcc/*/*/lto1",
                "/usr/libexec/gcc/*/*/cc1",
                "/usr/libexec/gcc/*/*/cc1plus",
                "/usr/bin/*-linux-gnu-as",
                "/usr/bin/as",
                "/usr/bin/*-linux-gnu-ld*",
                "/usr/bin/ld*",
                "/usr/bin/rustc",
                "/usr/lib/rust-*/bin/rustc",
                "/usr/lib/go-*/bin/go",
                "/usr/lib/go-*/pkg/tool/*/compile",
                "/usr/lib/go-*/pkg/tool/*/link",
                "/usr/lib/llvm-*/bin/clang*",
                "/usr/bin/clang*",
            ]),
            ..entry("compilers")
        }];
        e.deleted_exe = vec![Exception {
            replaced_by_root: true,
            ..entry("package-upgrade")
        }];
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_components() {
        let g = Glob::new("/usr/lib/jvm/*/bin/java");
        assert!(g.matches(Path::new("/usr/lib/jvm/java-17-openjdk-amd64/bin/java")));
        assert!(
            !g.matches(Path::new("/usr/lib/jvm/a/b/bin/java")),
            "* stays in one component"
        );
        assert!(!g.matches(Path::new("/usr/lib/jvm/x/bin/javac")));
        assert!(
            !g.matches(Path::new("/tmp/usr/lib/jvm/x/bin/java")),
            "anchored"
        );
        let g = Glob::new("/usr/lib/dotnet/**/dotnet");
        assert!(g.matches(Path::new("/usr/lib/dotnet/dotnet")));
        assert!(g.matches(Path::new("/usr/lib/dotnet/a/b/dotnet")));
        assert!(!g.matches(Path::new("/usr/lib/dotnetx/dotnet")));
        assert!(Glob::new("/usr/bin/ld*").matches(Path::new("/usr/bin/ld.bfd")));
        assert!(Glob::new("/usr/bin/l?").matches(Path::new("/usr/bin/ld")));
    }

    fn subject(exe: &'static str) -> Subject<'static> {
        Subject {
            exe: Some(Path::new(exe)),
            exe_on_disk: true,
            uid: 1000,
            ..Subject::default()
        }
    }

    #[test]
    fn shipped_defaults_match_what_they_say_and_no_more() {
        let e = Exceptions::default();
        let java = subject("/usr/lib/jvm/java-17-openjdk-amd64/bin/java");
        assert_eq!(
            e.find(Rule::WxMem, &java, None).map(|x| x.name.as_str()),
            Some("jit-runtimes")
        );
        assert!(
            e.find(Rule::WxMem, &subject("/tmp/java"), None).is_none(),
            "a copy elsewhere"
        );
        let memfd = Subject {
            exe_on_disk: false,
            ..subject("/usr/bin/node")
        };
        assert!(
            e.find(Rule::WxMem, &memfd, None).is_none(),
            "not the file on disk"
        );
        let any = subject("/opt/app/bin/server");
        assert!(e.find(Rule::SuspiciousPort, &any, Some(5432)).is_some());
        assert!(e.find(Rule::SuspiciousPort, &any, Some(4444)).is_none());
        assert!(
            e.find(Rule::SuspiciousPort, &any, Some(22)).is_none(),
            "22 is ssh's only"
        );
        assert!(
            e.find(Rule::SuspiciousPort, &subject("/usr/bin/ssh"), Some(22))
                .is_some()
        );
        assert!(
            e.find(Rule::SuspiciousPort, &any, None).is_none(),
            "ports need a port"
        );
        for rule in [Rule::FilelessExe, Rule::Ptrace, Rule::ReverseShell] {
            assert!(e.of(rule).is_empty(), "{rule} is never silenced by default");
        }
        let upgraded = Subject {
            exe_on_disk: false,
            replaced_by_root: Some(true),
            ..subject("/usr/sbin/daemon")
        };
        assert!(e.find(Rule::DeletedExe, &upgraded, None).is_some());
        let gone = Subject {
            replaced_by_root: Some(false),
            ..upgraded
        };
        assert!(e.find(Rule::DeletedExe, &gone, None).is_none());
    }

    #[test]
    fn every_condition_must_hold() {
        let x = Exception {
            exe: globs(&["/usr/bin/psql"]),
            users: vec!["postgres".into()],
            ..entry("x")
        };
        let mut s = subject("/usr/bin/psql");
        assert!(!x.matches(&s, None));
        s.user = Some("postgres");
        assert!(x.matches(&s, None));
        s.exe = Some(Path::new("/usr/bin/psql2"));
        assert!(!x.matches(&s, None));
        assert!(
            !entry("empty").matches(&s, None),
            "no condition matches nothing"
        );
    }
}
