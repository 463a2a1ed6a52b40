//! Finding the line of a key path in block-style YAML text.
//!
//! serde_yaml's value tree carries no positions, yet checks that span several keys or files (and
//! serde's duplicate-key error, which points at the enclosing mapping) need a line to report. This is
//! a small line scanner, not a YAML parser: it follows indentation of `key:` lines and skips
//! comments, list items and block scalars. Keys inside flow collections (`{a: 1}`) are not seen;
//! callers fall back to the deepest ancestor that is.

/// A key found in the text: its path from the root, one-based line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
struct KeyLine {
    path: Vec<String>,
    line: usize,
    column: usize,
}

/// Every block-style `key:` line of the text with its full key path.
fn scan(text: &str) -> Vec<KeyLine> {
    let mut out = Vec::new();
    let mut stack: Vec<(usize, String)> = Vec::new();
    // Indentation of the key that opened a block scalar (`key: |`); deeper lines are its text.
    let mut block_scalar: Option<usize> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_end_matches('\r');
        let trimmed = line.trim_start_matches(' ');
        let indent = line.len() - trimmed.len();
        if let Some(owner) = block_scalar {
            if trimmed.is_empty() || indent > owner {
                continue;
            }
            block_scalar = None;
        }
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if indent == 0 && (trimmed.starts_with("---") || trimmed.starts_with("...")) {
            stack.clear();
            continue;
        }
        if trimmed.starts_with("- ") || trimmed == "-" {
            continue;
        }
        let Some((key, value)) = split_key(trimmed) else {
            continue;
        };
        while stack.last().is_some_and(|(ind, _)| *ind >= indent) {
            stack.pop();
        }
        stack.push((indent, key));
        out.push(KeyLine {
            path: stack.iter().map(|(_, k)| k.clone()).collect(),
            line: i + 1,
            column: indent + 1,
        });
        let value = value.trim_start();
        if value.starts_with('|') || value.starts_with('>') {
            block_scalar = Some(indent);
        }
    }
    out
}

/// Splits `key: value` (plain, single- or double-quoted key) into the key and the rest.
fn split_key(line: &str) -> Option<(String, &str)> {
    let (key, after) = match line.chars().next()? {
        q @ ('"' | '\'') => {
            let body = &line[1..];
            let end = body.find(q)?;
            (body[..end].to_string(), &body[end + 1..])
        }
        '{' | '[' | '#' | '&' | '*' | '!' | '|' | '>' => return None,
        _ => {
            // A plain key ends at the first ':' followed by a space or the end of the line.
            let bytes = line.as_bytes();
            let end = (0..bytes.len()).find(|&j| {
                bytes[j] == b':' && bytes.get(j + 1).is_none_or(|&c| c == b' ' || c == b'\t')
            })?;
            (line[..end].trim_end().to_string(), &line[end..])
        }
    };
    let after = after.trim_start();
    let rest = after.strip_prefix(':')?;
    if !(rest.is_empty() || rest.starts_with(' ') || rest.starts_with('\t')) {
        return None;
    }
    Some((key, rest))
}

/// Position of the first top-level line that holds content but is not a `key: value` pair,
/// a list item, a flow collection or a document marker: a scalar where a mapping belongs.
pub(crate) fn stray_top_level_line(text: &str) -> Option<(usize, usize)> {
    text.lines().enumerate().find_map(|(i, raw)| {
        let line = raw.trim_end_matches('\r');
        let starts_with_any = |ps: &[&str]| ps.iter().any(|p| line.starts_with(p));
        let skip = line.trim().is_empty()
            || line.starts_with([' ', '\t'])
            || starts_with_any(&["#", "- ", "---", "...", "%", "[", "{"])
            || line == "-"
            || split_key(line).is_some();
        (!skip).then_some((i + 1, 1))
    })
}

/// Positions (line, column) of every block-style occurrence of exactly `path`.
pub(crate) fn locate_all(text: &str, path: &[&str]) -> Vec<(usize, usize)> {
    scan(text)
        .into_iter()
        .filter(|k| k.path.iter().map(String::as_str).eq(path.iter().copied()))
        .map(|k| (k.line, k.column))
        .collect()
}

/// Position of the last occurrence of `path`, or of its deepest ancestor found in block style.
pub(crate) fn locate(text: &str, path: &[&str]) -> Option<(usize, usize)> {
    let keys = scan(text);
    (1..=path.len()).rev().find_map(|n| {
        keys.iter()
            .rev()
            .find(|k| {
                k.path
                    .iter()
                    .map(String::as_str)
                    .eq(path[..n].iter().copied())
            })
            .map(|k| (k.line, k.column))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# comment
min_score: 3
weights:
  tmp_exe: 4   # trailing
  \"ptrace\": 5
outputs:
  log_file: |
    weights:
      tmp_exe: not a key
  stdout: true
ports: [80, 443]
dump: {max_exe_bytes: 10}
";

    #[test]
    fn finds_nested_keys() {
        assert_eq!(locate(TEXT, &["min_score"]), Some((2, 1)));
        assert_eq!(locate(TEXT, &["weights", "tmp_exe"]), Some((4, 3)));
        assert_eq!(locate(TEXT, &["weights", "ptrace"]), Some((5, 3)));
        assert_eq!(locate(TEXT, &["outputs", "stdout"]), Some((10, 3)));
    }

    #[test]
    fn skips_block_scalars() {
        assert_eq!(locate_all(TEXT, &["outputs", "log_file"]), vec![(7, 3)]);
        assert_eq!(locate_all(TEXT, &["weights", "tmp_exe"]), vec![(4, 3)]);
    }

    #[test]
    fn flow_style_falls_back_to_ancestor() {
        assert_eq!(locate(TEXT, &["dump", "max_exe_bytes"]), Some((12, 1)));
        assert_eq!(locate(TEXT, &["nothing"]), None);
    }

    #[test]
    fn stray_scalar_line_is_found() {
        let t = "# c\n\ncpu_high 75   # typo\nmin_score: 3\n";
        assert_eq!(stray_top_level_line(t), Some((3, 1)));
        assert_eq!(stray_top_level_line(TEXT), None);
    }

    #[test]
    fn finds_repeats() {
        let t = "a:\n  b: 1\n  b: 2\nc: 1\n";
        assert_eq!(locate_all(t, &["a", "b"]), vec![(2, 3), (3, 3)]);
    }
}
