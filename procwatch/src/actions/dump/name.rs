//! Names of dump directories: derived from a process name the process chose itself, so they
//! are reduced to a small safe alphabet before they touch the file system.
use chrono::{DateTime, Utc};

/// Longest sanitised name kept.
pub const SAFE_NAME_MAX: usize = 64;
/// What an empty (or entirely stripped) name becomes.
const EMPTY_NAME: &str = "noname";

/// `raw` reduced to `[A-Za-z0-9._-]`: every other byte (`/`, control characters, quotes,
/// bytes of multi-byte or invalid UTF-8) becomes `_`, leading dots become `_` (no hidden
/// names, never `.` or `..`), at most [`SAFE_NAME_MAX`] bytes, never empty.
pub fn safe_name(raw: &[u8]) -> String {
    let mut out: String = raw
        .iter()
        .take(SAFE_NAME_MAX)
        .map(|&b| if is_safe_byte(b) { char::from(b) } else { '_' })
        .collect();
    // No hidden names, never `.` or `..`: every leading dot goes, not just the first.
    let dots = out.bytes().take_while(|&b| b == b'.').count();
    out.replace_range(..dots, &"_".repeat(dots));
    if out.is_empty() {
        out.push_str(EMPTY_NAME);
    }
    out
}

fn is_safe_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')
}

/// `<utc-time>-<pid>-<safe-name>`, e.g. `20261121T233012.345Z-4242-bash`.
pub fn subdir_name(when: DateTime<Utc>, pid: u32, raw_name: &[u8]) -> String {
    format!(
        "{}-{pid}-{}",
        when.format("%Y%m%dT%H%M%S%.3fZ"),
        safe_name(raw_name)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_safe(name: &str) -> bool {
        !name.is_empty()
            && name.len() <= SAFE_NAME_MAX
            && !name.starts_with('.')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    }

    #[test]
    fn hostile_names_are_sanitised() {
        let long = [b'x'; 200];
        let cases: [(&[u8], &str); 14] = [
            (b"bash", "bash"),
            (b"kworker/0:1-events", "kworker_0_1-events"),
            (b"../../etc", "___.._etc"),
            (b"a/b", "a_b"),
            (b"evil\nname", "evil_name"),
            (b"\x1b[31mred", "__31mred"),
            (b"\xff\xfe", "__"),
            (b"caf\xc3\xa9", "caf__"),
            (b"", "noname"),
            (b".", "_"),
            (b"..", "__"),
            (b"...x", "___x"),
            (b".hidden", "_hidden"),
            (b"quote\"'sp ace", "quote__sp_ace"),
        ];
        for (raw, want) in cases {
            let got = safe_name(raw);
            assert_eq!(got, want, "{raw:?}");
            assert!(is_safe(&got), "{got:?}");
        }
        let got = safe_name(&long);
        assert_eq!(got.len(), SAFE_NAME_MAX);
        assert!(is_safe(&got));
        assert!(is_safe(&safe_name(b"\0\0\0")));
    }

    #[test]
    fn subdir_names_are_utc_pid_name() {
        let when = DateTime::parse_from_rfc3339("2026-11-21T23:30:12.345+02:00")
            .expect("valid time")
            .with_timezone(&Utc);
        assert_eq!(
            subdir_name(when, 4242, b"../x\n"),
            "20261121T213012.345Z-4242-___x_"
        );
        assert_eq!(subdir_name(when, 1, b""), "20261121T213012.345Z-1-noname");
        let name = subdir_name(Utc::now(), u32::MAX, &[0xff; 300]);
        assert!(!name.contains('/') && name.len() <= 20 + 1 + 10 + 1 + SAFE_NAME_MAX);
    }
}
