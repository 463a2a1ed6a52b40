//! Turning untrusted bytes (process names, paths, argv) into text, in one place.
//!
//! JSON: invalid UTF-8 becomes U+FFFD and serde_json escapes quotes, newlines and control
//! characters, so whatever a process calls itself, a record stays one valid JSON line.
//! Terminal: control characters (ESC, newlines, ...) are shown as `\xNN` so a process name
//! cannot move the cursor or forge a second line.
use std::{
    borrow::Cow,
    ffi::{OsStr, OsString},
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
};

use serde::{Serializer, ser::SerializeSeq};

/// Bytes as a string, replacing invalid UTF-8 with U+FFFD.
pub fn lossy(bytes: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

/// An `OsStr` as a string, replacing invalid UTF-8 with U+FFFD.
pub fn os_lossy(s: &OsStr) -> Cow<'_, str> {
    lossy(s.as_bytes())
}

/// Characters that are not control characters yet still move or reorder text: the Unicode
/// line and paragraph separators (a new line in many viewers) and the bidirectional marks and
/// overrides (which make `exe=/tmp/evil` read as something else).
fn is_layout_char(c: char) -> bool {
    matches!(
        c,
        '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
    )
}

/// Bytes safe to print on a terminal: printable UTF-8 kept, everything else (controls,
/// invalid UTF-8, line separators and bidi overrides) as `\xNN`.
pub fn terminal_safe(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_control() || is_layout_char(c) {
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
    out
}

/// A path safe to print in a message: [`terminal_safe`], so a file name holding a newline
/// (a user's HOME under `sudo -E`) cannot forge a second line in root's logs.
pub fn path_safe(path: &Path) -> String {
    terminal_safe(path.as_os_str().as_bytes())
}

/// Bytes up to the first NUL (the whole slice when there is none).
pub fn until_nul(bytes: &[u8]) -> &[u8] {
    match bytes.iter().position(|&b| b == 0) {
        Some(end) => &bytes[..end],
        None => bytes,
    }
}

/// An owned `OsString` from raw bytes (lossless on Linux).
pub fn os_from_bytes(bytes: &[u8]) -> OsString {
    OsStr::from_bytes(bytes).to_os_string()
}

/// A `PathBuf` from raw bytes (lossless on Linux).
pub fn path_from_bytes(bytes: &[u8]) -> PathBuf {
    PathBuf::from(os_from_bytes(bytes))
}

/// serde helper: an `OsString` as a lossy string.
pub fn serialize_os<S: Serializer>(s: &OsString, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(&os_lossy(s))
}

/// serde helper: a path as a lossy string.
pub fn serialize_path<S: Serializer>(p: &Path, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(&os_lossy(p.as_os_str()))
}

/// serde helper: an optional path as a lossy string (or null).
pub fn serialize_opt_path<S: Serializer>(p: &Option<PathBuf>, ser: S) -> Result<S::Ok, S::Error> {
    match p {
        Some(p) => serialize_path(p, ser),
        None => ser.serialize_none(),
    }
}

/// serde helper: a list of `OsString`s as lossy strings.
pub fn serialize_os_list<S: Serializer>(list: &[OsString], ser: S) -> Result<S::Ok, S::Error> {
    let mut seq = ser.serialize_seq(Some(list.len()))?;
    for item in list {
        seq.serialize_element(&os_lossy(item))?;
    }
    seq.end()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_safe_escapes_controls_and_invalid_utf8() {
        let hostile = b"evil\nname\"\x1b[31m\xff\xfe";
        let shown = terminal_safe(hostile);
        assert_eq!(shown, "evil\\x0aname\"\\x1b[31m\\xff\\xfe");
        assert!(!shown.contains('\n') && !shown.contains('\x1b'));
    }

    #[test]
    fn json_of_hostile_bytes_is_one_valid_line() {
        #[derive(serde::Serialize)]
        struct T {
            #[serde(serialize_with = "serialize_os")]
            name: OsString,
        }
        let t = T {
            name: os_from_bytes(b"a\nb\"c\x1b\xff"),
        };
        let line = serde_json::to_string(&t).expect("serialises");
        assert!(!line.contains('\n'));
        let back: serde_json::Value = serde_json::from_str(&line).expect("valid JSON");
        assert_eq!(back["name"], "a\nb\"c\u{1b}\u{fffd}");
    }

    #[test]
    fn terminal_safe_escapes_line_separators_and_bidi_overrides() {
        let shown = terminal_safe("a\u{2028}b\u{202e}fdp.exe\u{2066}".as_bytes());
        assert_eq!(
            shown,
            "a\\xe2\\x80\\xa8b\\xe2\\x80\\xaefdp.exe\\xe2\\x81\\xa6"
        );
        assert_eq!(terminal_safe("é日本".as_bytes()), "é日本");
    }

    #[test]
    fn until_nul_stops_at_first_nul() {
        assert_eq!(until_nul(b"abc\0def"), b"abc");
        assert_eq!(until_nul(b"abc"), b"abc");
    }
}
