//! File paths as a baseline keeps them: one text form for exact paths and patterns, the
//! watched-prefix filter, and the generalisation rule.
//!
//! Text form: an absolute path, lexically normalised (`.`, `..` and repeated `/` resolved), each
//! component written with `\` as `\\`, control characters and invalid UTF-8 as `\xNN`, and a
//! component that is literally `*` as `\*`. A bare `*` component is a wildcard matching exactly
//! one component. So every real path has one text, no path can pass for a pattern, and a
//! hostile name cannot forge a line in a terminal.
//!
//! Generalisation (shown by `baseline show` and explained in docs/baselines.md):
//! 1. a component made only of digits (a pid, a session number) is recorded as `*`, so
//!    `/proc/1234/mem` is kept once, as `/proc/*/mem`;
//! 2. when `generalize_after` distinct files of one directory `D` are normal (seen in enough
//!    processes), their entries are replaced by one pattern `D/*`, which then covers every
//!    file directly in `D` (not in its subdirectories);
//! 3. a learned pattern never covers a sensitive file (shadow and sudoers files, SSH keys,
//!    `/proc/*/mem`): those are known only when that very path was learned, or allowed by hand.
use std::{os::unix::ffi::OsStrExt, path::Path};

/// The wildcard component.
pub const WILDCARD: &str = "*";

/// Longest text form kept; longer paths are not learned (counted as ignored), which keeps a
/// model at its caps loadable (see `store::MAX_FILE_BYTES`).
pub const MAX_TEXT: usize = 512;

/// Sensitive files: never covered by a learned pattern (rule 3).
const SENSITIVE: &[&str] = &[
    "/etc/shadow",
    "/etc/shadow-",
    "/etc/gshadow",
    "/etc/gshadow-",
    "/etc/sudoers",
    "/etc/sudoers.d/*",
    "/etc/ssh/*",
    "/root/.ssh/*",
    "/home/*/.ssh/*",
    "/proc/*/mem",
    "/etc/security/opasswd",
];

/// One path component in text form.
fn encode_component(bytes: &[u8], out: &mut String) {
    if bytes == b"*" {
        out.push_str("\\*");
        return;
    }
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\\' {
                out.push_str("\\\\");
            } else if c.is_control() {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("\\x{b:02x}"));
                }
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
}

/// Normalised components of an absolute path; `None` for a relative one.
fn components(path: &Path, keep_wildcards: bool) -> Option<Vec<String>> {
    let bytes = path.as_os_str().as_bytes();
    if bytes.first() != Some(&b'/') {
        return None;
    }
    let mut parts: Vec<String> = Vec::new();
    for comp in bytes.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => {
                parts.pop();
            }
            b"*" if keep_wildcards => parts.push(WILDCARD.to_string()),
            _ => {
                let mut s = String::with_capacity(comp.len());
                encode_component(comp, &mut s);
                parts.push(s);
            }
        }
    }
    Some(parts)
}

/// `text` if it is within [`MAX_TEXT`].
fn bounded(text: String) -> Option<String> {
    (text.len() <= MAX_TEXT).then_some(text)
}

fn join(parts: &[String]) -> String {
    if parts.is_empty() {
        return "/".into();
    }
    let mut s = String::new();
    for p in parts {
        s.push('/');
        s.push_str(p);
    }
    s
}

/// The text form of an absolute path (an executable, a child); `None` when relative.
pub fn encode(path: &Path) -> Option<String> {
    components(path, false).and_then(|p| bounded(join(&p)))
}

/// The text form of a pattern written by a person (config, `baseline allow --file`): like
/// [`encode`], but a `*` component is the wildcard.
pub fn encode_pattern(path: &Path) -> Option<String> {
    components(path, true).and_then(|p| bounded(join(&p)))
}

/// The text form of an opened file: [`encode`] with all-digit components made wildcards (rule 1).
pub fn encode_file(path: &Path) -> Option<String> {
    let mut parts = components(path, false)?;
    for p in &mut parts {
        if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) {
            *p = WILDCARD.to_string();
        }
    }
    bounded(join(&parts))
}

/// Splits a text-form path into its components (the root has none).
pub fn split(text: &str) -> impl Iterator<Item = &str> {
    text.split('/').filter(|c| !c.is_empty())
}

/// Whether `pattern` matches `path` component by component (`*` matches any one component,
/// including a `*` recorded by rule 1).
pub fn matches(pattern: &str, path: &str) -> bool {
    let mut p = split(pattern);
    let mut q = split(path);
    loop {
        match (p.next(), q.next()) {
            (None, None) => return true,
            (Some(a), Some(b)) if a == WILDCARD || a == b => {}
            _ => return false,
        }
    }
}

/// Whether `path` is under `prefix` (a pattern): the prefix matches its first components.
pub fn under(prefix: &str, path: &str) -> bool {
    let mut q = split(path);
    for a in split(prefix) {
        match q.next() {
            Some(b) if a == WILDCARD || a == b => {}
            _ => return false,
        }
    }
    true
}

/// Whether `path` is a sensitive file (rule 3).
pub fn is_sensitive(path: &str) -> bool {
    SENSITIVE.iter().any(|s| matches(s, path))
}

/// The directory part and the last component of a text-form path.
pub fn parent_and_name(path: &str) -> (&str, &str) {
    match path.rfind('/') {
        Some(0) => ("/", &path[1..]),
        Some(i) => (&path[..i], &path[i + 1..]),
        None => ("/", path),
    }
}

/// `D/*` for a directory `D`.
pub fn dir_pattern(dir: &str) -> String {
    if dir == "/" {
        "/*".into()
    } else {
        format!("{dir}/*")
    }
}

/// Whether the last component of a pattern is the wildcard (a `D/*` pattern).
pub fn is_dir_pattern(path: &str) -> bool {
    parent_and_name(path).1 == WILDCARD
}

/// The watched prefixes, in text form; only files under one of them are learned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Watched(Vec<String>);

impl Watched {
    /// From the configured prefixes (absolute; `*` components are wildcards).
    pub fn new<'a>(prefixes: impl IntoIterator<Item = &'a Path>) -> Self {
        Self(prefixes.into_iter().filter_map(encode_pattern).collect())
    }

    /// Whether `path` (text form) is under a watched prefix.
    pub fn watches(&self, path: &str) -> bool {
        self.0.iter().any(|p| under(p, path))
    }
}

/// The generalisation rule in one sentence, for `baseline show` and the docs.
pub fn rule_text(generalize_after: usize) -> String {
    format!(
        "numbers in paths are recorded as *; once {generalize_after} files of one directory D are \
         normal they become the pattern D/*, which covers every file directly in D; a learned \
         pattern never covers a sensitive file (shadow, sudoers, SSH keys, /proc/*/mem)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{ffi::OsStr, path::PathBuf};

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    #[test]
    fn encoding_normalises_and_escapes() {
        assert_eq!(
            encode(&p("/usr//sbin/./nginx")).as_deref(),
            Some("/usr/sbin/nginx")
        );
        assert_eq!(
            encode(&p("/var/www/../../etc/shadow")).as_deref(),
            Some("/etc/shadow")
        );
        assert_eq!(encode(&p("/../..")).as_deref(), Some("/"));
        assert_eq!(encode(&p("relative/x")), None);
        let long = format!("/{}x", "d/".repeat(MAX_TEXT / 2));
        assert_eq!(encode(&p(&long)), None, "over MAX_TEXT");
        assert!(encode(&p(&long[..MAX_TEXT])).is_some());
        assert_eq!(encode(&p("")), None);
        let hostile = PathBuf::from(OsStr::from_bytes(b"/tmp/a\nb\x1b[31m\xff\\c"));
        assert_eq!(
            encode(&hostile).as_deref(),
            Some("/tmp/a\\x0ab\\x1b[31m\\xff\\\\c")
        );
        // A file literally named `*` is not a wildcard.
        assert_eq!(encode(&p("/etc/*")).as_deref(), Some("/etc/\\*"));
        assert_eq!(encode_pattern(&p("/etc/*")).as_deref(), Some("/etc/*"));
        assert!(!matches("/etc/\\*", "/etc/passwd"));
        assert!(matches("/etc/*", "/etc/\\*"));
    }

    #[test]
    fn numbers_become_wildcards_in_files() {
        assert_eq!(
            encode_file(&p("/proc/1234/mem")).as_deref(),
            Some("/proc/*/mem")
        );
        assert_eq!(
            encode_file(&p("/home/u/2024/x1")).as_deref(),
            Some("/home/u/*/x1")
        );
        assert_eq!(
            encode(&p("/proc/1234/mem")).as_deref(),
            Some("/proc/1234/mem")
        );
    }

    #[test]
    fn matching_and_prefixes() {
        assert!(matches("/var/www/*", "/var/www/index.html"));
        assert!(
            !matches("/var/www/*", "/var/www/a/b.html"),
            "one component only"
        );
        assert!(!matches("/var/www/*", "/var/www"));
        assert!(matches("/proc/*/mem", "/proc/*/mem"));
        assert!(matches("/proc/*/mem", "/proc/self/mem"));
        assert!(under("/etc", "/etc/nginx/nginx.conf"));
        assert!(under("/etc", "/etc"));
        assert!(!under("/etc", "/etcetera/x"), "whole components");
        assert!(under("/proc/*/mem", "/proc/*/mem"));
        assert!(!under("/proc/*/mem", "/proc/*/status"));
        let w = Watched::new([Path::new("/etc"), Path::new("/proc/*/mem")]);
        assert!(w.watches("/etc/passwd") && w.watches("/proc/*/mem"));
        assert!(!w.watches("/usr/lib/x.so") && !w.watches("/proc/*/maps"));
    }

    #[test]
    fn sensitive_files_and_dirs() {
        for s in [
            "/etc/shadow",
            "/etc/sudoers",
            "/etc/sudoers.d/admins",
            "/etc/ssh/ssh_host_ed25519_key",
            "/root/.ssh/authorized_keys",
            "/home/alice/.ssh/id_ed25519",
            "/proc/*/mem",
            "/proc/self/mem",
        ] {
            assert!(is_sensitive(s), "{s}");
        }
        for s in [
            "/etc/passwd",
            "/etc/nginx/nginx.conf",
            "/home/alice/.bashrc",
        ] {
            assert!(!is_sensitive(s), "{s}");
        }
        assert_eq!(parent_and_name("/etc/passwd"), ("/etc", "passwd"));
        assert_eq!(parent_and_name("/x"), ("/", "x"));
        assert_eq!(dir_pattern("/etc"), "/etc/*");
        assert_eq!(dir_pattern("/"), "/*");
        assert!(is_dir_pattern("/etc/*") && !is_dir_pattern("/proc/*/mem"));
        assert!(rule_text(8).contains("once 8 files"));
    }
}
