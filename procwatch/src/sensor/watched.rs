//! The watched prefixes (`baseline.watched_prefixes`) in the form the kernel's file-open
//! probe matches: a head that must start the path, and for a `*` component a tail the path
//! must end with, packed into words with masks so the kernel only compares words. What the
//! kernel cannot hold exactly (a head over its size, a tail over its size, several `*`) is
//! made broader, never narrower: user space applies the exact rule.
use std::{os::unix::ffi::OsStrExt, path::Path};

use procwatch_common::{WATCH_HEAD_LEN, WATCH_MAX, WATCH_TAIL_LEN, WatchPrefix};

/// `bytes` packed little-endian into words from `at` bytes in, with the matching mask.
fn pack<const N: usize>(bytes: &[u8], at: usize) -> ([u64; N], [u64; N]) {
    let mut words = [0u64; N];
    let mut mask = [0u64; N];
    for (i, &b) in bytes.iter().enumerate() {
        let pos = at + i;
        let (w, shift) = (pos / 8, (pos % 8) * 8);
        if let (Some(word), Some(m)) = (words.get_mut(w), mask.get_mut(w)) {
            *word |= u64::from(b) << shift;
            *m |= 0xff << shift;
        }
    }
    (words, mask)
}

/// The kernel form of `prefix` (`None` for a relative or empty one).
pub fn kernel_prefix(prefix: &Path) -> Option<WatchPrefix> {
    let bytes = prefix.as_os_str().as_bytes();
    if bytes.first() != Some(&b'/') {
        return None;
    }
    // The head ends before the first `*` component (keeping its `/`); the tail is what
    // follows the last one.
    let first_star = bytes.windows(3).position(|w| w == b"/*/").map(|i| i + 1);
    let ends_star = bytes.ends_with(b"/*").then(|| bytes.len() - 1);
    let (star, head, tail): (bool, &[u8], &[u8]) = match first_star.or(ends_star) {
        Some(at) => {
            let last = bytes.iter().rposition(|&b| b == b'*').unwrap_or(at);
            (true, &bytes[..at], &bytes[last + 1..])
        }
        None => {
            let head = bytes
                .strip_suffix(b"/")
                .filter(|h| !h.is_empty())
                .unwrap_or(bytes);
            (false, head, &[])
        }
    };
    let cut = head.len() > WATCH_HEAD_LEN;
    let head = &head[..head.len().min(WATCH_HEAD_LEN)];
    let tail = &tail[tail.len().saturating_sub(WATCH_TAIL_LEN)..];
    let (head_words, head_mask) = pack::<{ WATCH_HEAD_LEN / 8 }>(head, 0);
    let (tail_words, tail_mask) = pack::<{ WATCH_TAIL_LEN / 8 }>(tail, WATCH_TAIL_LEN - tail.len());
    Some(WatchPrefix {
        head_len: u32::try_from(head.len()).ok()?,
        tail_len: u32::try_from(tail.len()).ok()?,
        star: u32::from(star),
        // A cut head may end mid-component: no boundary check then (broader).
        open_end: u32::from(cut || head.ends_with(b"/")),
        head: head_words,
        head_mask,
        tail: tail_words,
        tail_mask,
    })
}

/// The kernel forms of `prefixes`, at most [`WATCH_MAX`]; beyond that, `/` stands for the
/// rest (every absolute path reaches user space, which applies the exact rule).
pub fn kernel_prefixes<'a>(prefixes: impl IntoIterator<Item = &'a Path>) -> Vec<WatchPrefix> {
    let mut out: Vec<WatchPrefix> = prefixes.into_iter().filter_map(kernel_prefix).collect();
    if out.len() > WATCH_MAX as usize {
        out.truncate(WATCH_MAX as usize - 1);
        out.extend(kernel_prefix(Path::new("/")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel's match, word for word, for checking the packing.
    fn kernel_match(p: &WatchPrefix, path: &str) -> bool {
        let mut buf = [0u8; 256 + 16];
        let b = path.as_bytes();
        buf[16..16 + b.len()].copy_from_slice(b);
        let word = |i: usize| {
            u64::from_le_bytes(buf[16 + i * 8..16 + i * 8 + 8].try_into().expect("8 bytes"))
        };
        let mut diff = 0;
        for i in 0..WATCH_HEAD_LEN / 8 {
            diff |= (word(i) ^ p.head[i]) & p.head_mask[i];
        }
        let n = b.len();
        let head = p.head_len as usize;
        if diff != 0 || n < head {
            return false;
        }
        if p.star == 0 {
            return p.open_end != 0 || n == head || buf[16 + head] == b'/';
        }
        if n < head + 1 + p.tail_len as usize {
            return false;
        }
        let end = 16 + n - WATCH_TAIL_LEN;
        (0..2).all(|i| {
            let w = u64::from_le_bytes(buf[end + i * 8..end + i * 8 + 8].try_into().expect("8"));
            (w ^ p.tail[i]) & p.tail_mask[i] == 0
        })
    }

    #[test]
    fn plain_and_star_prefixes_match_as_documented() {
        let etc = kernel_prefix(Path::new("/etc")).expect("prefix");
        assert!(kernel_match(&etc, "/etc"));
        assert!(kernel_match(&etc, "/etc/shadow"));
        assert!(!kernel_match(&etc, "/etcetera/x"));
        assert!(!kernel_match(&etc, "/usr/etc/x"));
        let www = kernel_prefix(Path::new("/var/www/")).expect("prefix");
        assert!(kernel_match(&www, "/var/www/html/index.html"));
        assert!(!kernel_match(&www, "/var/wwwx"));
        let mem = kernel_prefix(Path::new("/proc/*/mem")).expect("prefix");
        assert!(kernel_match(&mem, "/proc/1/mem"));
        assert!(kernel_match(&mem, "/proc/12345/mem"));
        assert!(!kernel_match(&mem, "/proc/1/maps"));
        assert!(!kernel_match(&mem, "/proc/mem"));
        let home = kernel_prefix(Path::new("/home/*")).expect("prefix");
        assert!(kernel_match(&home, "/home/alice/.ssh/id_rsa"));
        let root = kernel_prefix(Path::new("/")).expect("prefix");
        assert!(kernel_match(&root, "/anything"));
        assert!(kernel_prefix(Path::new("etc")).is_none());
    }

    #[test]
    fn what_does_not_fit_is_made_broader() {
        let long = format!("/{}", "a".repeat(300));
        let p = kernel_prefix(Path::new(&long)).expect("prefix");
        assert_eq!(p.head_len as usize, WATCH_HEAD_LEN);
        assert!(kernel_match(&p, &format!("/{}", "a".repeat(200))));
        let many: Vec<std::path::PathBuf> = (0..40).map(|i| format!("/d{i}").into()).collect();
        let out = kernel_prefixes(many.iter().map(|p| p.as_path()));
        assert_eq!(out.len(), WATCH_MAX as usize);
        assert!(kernel_match(&out[out.len() - 1], "/d39/x"));
    }
}
