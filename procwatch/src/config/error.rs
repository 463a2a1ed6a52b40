//! Config errors that name the file, line, column and key path.
use std::{fmt, path::PathBuf};

use super::locate;

/// Why loading the configuration failed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A config file exists (or was named with `--config`) but cannot be read.
    // Not `source`: the message already includes the I/O error, and anyhow would print it twice.
    #[error("{}: cannot read: {error}", crate::text::path_safe(path))]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying I/O error.
        error: std::io::Error,
    },
    /// A config file procwatch must not trust (as root: another user could have written it),
    /// or that is not a regular file.
    #[error("{}: refused: {why}", crate::text::path_safe(path))]
    Refused {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: crate::trusted_file::Refusal,
    },
    /// A config file was read but is not a valid configuration.
    #[error("{0}")]
    Invalid(Box<Diagnostic>),
}

impl ConfigError {
    /// The located diagnostic, if this is a content error rather than an I/O error.
    pub fn diagnostic(&self) -> Option<&Diagnostic> {
        match self {
            Self::Invalid(d) => Some(d),
            Self::Read { .. } | Self::Refused { .. } => None,
        }
    }
}

/// What kind of mistake a diagnostic reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiagnosticKind {
    /// The text is not well-formed YAML (bad indentation, unclosed bracket, ...).
    Syntax,
    /// A key the schema does not have.
    UnknownKey,
    /// The same key twice in one mapping.
    DuplicateKey,
    /// A value of the wrong type (a string where a number belongs, ...).
    WrongType,
    /// A value of the right type that is impossible (negative score, port 70000, ...).
    BadValue,
}

/// One located problem in one config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file (or the name given to an in-memory layer).
    pub origin: String,
    /// One-based line, when known.
    pub line: Option<usize>,
    /// One-based column, when known.
    pub column: Option<usize>,
    /// Dotted key path such as `weights.tmp_exe` or `ports[2]`; `None` for the document itself.
    pub key: Option<String>,
    /// The kind of problem.
    pub kind: DiagnosticKind,
    /// Human-readable explanation, without the location or key prefix.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    /// One line without control characters, whatever the file held: messages quote values and
    /// keys from it, and they end up on terminals and in the journal.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::text::terminal_safe(self.raw().as_bytes()))
    }
}

impl Diagnostic {
    /// The text of [`Display`](fmt::Display) before control characters are escaped.
    fn raw(&self) -> String {
        let mut f = String::new();
        // Writing to a String cannot fail.
        let _ = self.write_raw(&mut f);
        f
    }

    fn write_raw(&self, f: &mut String) -> fmt::Result {
        use fmt::Write as _;
        f.write_str(&self.origin)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        f.write_str(": ")?;
        // Unknown and duplicate keys already quote the key inside the message.
        match (&self.key, self.kind) {
            (Some(key), DiagnosticKind::WrongType | DiagnosticKind::BadValue) => {
                write!(f, "{key}: {}", self.message)
            }
            _ => f.write_str(&self.message),
        }
    }
}

impl From<Diagnostic> for ConfigError {
    fn from(d: Diagnostic) -> Self {
        Self::Invalid(Box::new(d))
    }
}

/// Formats a serde_path_to_error path the way serde_yaml does (`weights.tmp_exe`, `ports[1]`).
fn format_path(segments: &[&serde_path_to_error::Segment]) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for seg in segments {
        match seg {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Unknown => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push('?');
            }
        }
    }
    out
}

/// Turns a serde_yaml error (with the key path tracked around it) into a located diagnostic.
pub(crate) fn from_serde(
    origin: &str,
    text: &str,
    err: &serde_path_to_error::Error<serde_yaml::Error>,
) -> Diagnostic {
    let inner = err.inner();
    let segments: Vec<_> = err.path().iter().collect();
    let path = format_path(&segments);
    let parent = format_path(&segments[..segments.len().saturating_sub(1)]);
    let mut loc = inner.location().map(|l| (l.line(), l.column()));

    // serde_yaml's Display is "<path>: <message> at line L column C"; keep only the message,
    // since the diagnostic prints the location and key itself.
    let mut message = inner.to_string();
    if let Some((line, col)) = loc {
        message = message.replacen(&format!(" at line {line} column {col}"), "", 1);
    }
    for prefix in [&path, &parent] {
        if !prefix.is_empty()
            && let Some(rest) = message.strip_prefix(&format!("{prefix}: "))
        {
            message = rest.to_string();
            break;
        }
    }

    let key = (!path.is_empty() && !path.ends_with('?')).then(|| path.clone());
    let (kind, message) = if let Some(rest) = message.strip_prefix("unknown field `") {
        (
            DiagnosticKind::UnknownKey,
            unknown_key_message(&path, &parent, rest),
        )
    } else if let Some(rest) = message.strip_prefix("duplicate field `") {
        let name = rest.split('`').next().unwrap_or(rest);
        let full: Vec<&str> = path
            .split('.')
            .filter(|s| !s.is_empty())
            .chain([name])
            .collect();
        // serde reports duplicates at the start of the enclosing mapping; point at the repeat.
        if let Some(&second) = locate::locate_all(text, &full).get(1) {
            loc = Some(second);
        }
        let full = full.join(".");
        return Diagnostic {
            origin: origin.to_string(),
            line: loc.map(|l| l.0),
            column: loc.map(|l| l.1),
            key: Some(full.clone()),
            kind: DiagnosticKind::DuplicateKey,
            message: format!("duplicate key '{full}'"),
        };
    } else if let Some(rest) = message.strip_prefix("invalid type: ") {
        (DiagnosticKind::WrongType, invalid_message(rest))
    } else if let Some(rest) = message.strip_prefix("invalid value: ") {
        (DiagnosticKind::BadValue, invalid_message(rest))
    } else if inner.location().is_none() && segments.is_empty() {
        (DiagnosticKind::Syntax, message)
    } else {
        (DiagnosticKind::BadValue, message)
    };
    Diagnostic {
        origin: origin.to_string(),
        line: loc.map(|l| l.0),
        column: loc.map(|l| l.1),
        key: if kind == DiagnosticKind::Syntax {
            None
        } else {
            key
        },
        kind,
        message,
    }
}

/// A located diagnostic for YAML that is not well-formed, found before any schema check.
pub(crate) fn syntax(origin: &str, text: &str, err: &serde_yaml::Error) -> Diagnostic {
    let loc = err.location().map(|l| (l.line(), l.column()));
    let mut message = err.to_string();
    if let Some((line, col)) = loc {
        message = message.replacen(&format!(" at line {line} column {col}"), "", 1);
    }
    let (loc, message) = match loc {
        Some(loc) => (Some(loc), format!("invalid YAML: {message}")),
        // The one location-less syntax error is "more than one document": an explicit `---`,
        // or a top-level line that is not `key: value`, after which the parser starts a new
        // document (`cpu_high 75  # comment`, then more keys).
        None => match second_document(text) {
            Some(at) => (
                Some(at),
                "only one YAML document is allowed per file (remove the extra '---')".to_string(),
            ),
            None => (
                Some(locate::stray_top_level_line(text).unwrap_or((1, 1))),
                "this line is not a 'key: value' pair (a missing ':'?), so the lines after it \
                 cannot belong to the same settings"
                    .to_string(),
            ),
        },
    };
    Diagnostic {
        origin: origin.to_string(),
        line: loc.map(|l| l.0),
        column: loc.map(|l| l.1),
        key: None,
        kind: DiagnosticKind::Syntax,
        message,
    }
}

/// Position of the `---` that starts the second document, if any.
fn second_document(text: &str) -> Option<(usize, usize)> {
    let mut seen_content = false;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim_end();
        if t == "---" || t.starts_with("--- ") {
            if seen_content {
                return Some((i + 1, 1));
            }
            seen_content = true;
        } else if !(t.is_empty() || t.starts_with('#') || t.starts_with('%')) {
            seen_content = true;
        }
    }
    None
}

/// "unknown key 'weights.tmp_ex' (did you mean 'weights.tmp_exe'?)" from serde's
/// "unknown field `tmp_ex`, expected one of `a`, `b`".
fn unknown_key_message(path: &str, parent: &str, rest: &str) -> String {
    let (name, expected) = rest.split_once('`').unwrap_or((rest, ""));
    // The expected keys are the backtick-quoted words after the unknown one.
    let candidates: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    let full = if path.is_empty() { name } else { path };
    let qualify = |c: &str| {
        if parent.is_empty() {
            c.to_string()
        } else {
            format!("{parent}.{c}")
        }
    };
    let best = candidates
        .iter()
        .map(|c| (edit_distance(name, c), *c))
        .filter(|&(d, _)| d <= 2)
        .min_by_key(|&(d, _)| d);
    // A key at the wrong depth (bad indentation) is a common slip: look at every level too.
    let elsewhere = || {
        let all = super::schema_keys();
        all.into_iter()
            .filter(|k| *k != full)
            .map(|k| (edit_distance(name, k.rsplit('.').next().unwrap_or(&k)), k))
            .filter(|&(d, _)| d <= 1)
            .min_by_key(|&(d, _)| d)
            .map(|(_, k)| k)
    };
    match best {
        Some((_, c)) => format!("unknown key '{full}' (did you mean '{}'?)", qualify(c)),
        None if let Some(k) = elsewhere() => {
            format!("unknown key '{full}' (did you mean '{k}'? check the indentation)")
        }
        None if candidates.is_empty() => format!("unknown key '{full}'"),
        None => format!(
            "unknown key '{full}' (expected one of: {})",
            candidates.join(", ")
        ),
    }
}

/// Rewrites serde's "string \"high\", expected a number" as "expected a number, found \"high\"".
fn invalid_message(rest: &str) -> String {
    let Some((found, expected)) = rest.rsplit_once(", expected ") else {
        return rest.to_string();
    };
    let found = if found == "unit value" {
        "null".to_string()
    } else if let Some(s) = found.strip_prefix("string ") {
        s.to_string()
    } else if found == "sequence" {
        "a list".to_string()
    } else if found == "map" {
        "a mapping".to_string()
    } else {
        // "integer `3`", "floating point `1.5`", "boolean `true`" → "3", "1.5", "true".
        match found.split_once(" `") {
            Some((_, v)) => v.trim_end_matches('`').to_string(),
            None => found.to_string(),
        }
    };
    let expected = if expected == "a sequence" {
        "a list"
    } else {
        expected
    };
    format!("expected {expected}, found {found}")
}

/// Levenshtein distance, for "did you mean" suggestions.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = Vec::with_capacity(b.len() + 1);
        cur.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let subst = prev[j] + usize::from(ca != *cb);
            cur.push(subst.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}
