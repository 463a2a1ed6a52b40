//! sha256 of executables, cached by file identity and capped in size. Hashing reads whole
//! files: call it off the event path (a blocking task), never per event inline.
//!
//! Public API:
//! - [`FileKey`] ([`FileKey::of_path`], [`FileKey::from_metadata`]): which file, which version.
//! - [`sha256_file`] → [`HashOutcome`] (`Digest` or `TooLarge`).
//! - [`hash_exe_of_pid`]: the key and digest of a process's executable, from one open.
//! - [`HashCache`]: bounded key → outcome map, oldest evicted; owned by one task, no locks.
use std::{
    collections::{HashMap, VecDeque, hash_map::Entry},
    fs::{File, Metadata, OpenOptions},
    io::{self, Read, Seek},
    os::unix::fs::{MetadataExt, OpenOptionsExt},
    path::Path,
};

use sha2::{Digest as _, Sha256};

use crate::procfs::{PidDir, ReadError};

/// Entries a [`HashCache::default`] keeps.
pub const DEFAULT_CACHE_ENTRIES: usize = 4096;
/// Bytes read per read(2) while hashing.
const READ_CHUNK: usize = 64 * 1024;
/// Attempts when the file changes while it is hashed (the digest would match neither version).
const ATTEMPTS: usize = 3;

/// Identifies one version of one file: a changed key means "hash again".
///
/// ctime is part of it because the owner of a file can set its mtime back (`touch -d`) after
/// rewriting it, but not its ctime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileKey {
    /// Device.
    pub dev: u64,
    /// Inode.
    pub ino: u64,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, ns since the epoch.
    pub mtime_ns: i64,
    /// Status change time, ns since the epoch.
    pub ctime_ns: i64,
}

impl FileKey {
    /// The key of the file `path` leads to (links followed, so `/proc/<pid>/exe` and
    /// `/proc/<pid>/fd/N` work for deleted files and memfds).
    pub fn of_path(path: &Path) -> io::Result<Self> {
        Ok(Self::from_metadata(&std::fs::metadata(path)?))
    }

    /// The key of already-fetched metadata.
    pub fn from_metadata(m: &Metadata) -> Self {
        let ns = |s: i64, n: i64| s.saturating_mul(1_000_000_000).saturating_add(n);
        Self {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime_ns: ns(m.mtime(), m.mtime_nsec()),
            ctime_ns: ns(m.ctime(), m.ctime_nsec()),
        }
    }
}

/// The result of hashing a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashOutcome {
    /// sha256 as 64 lowercase hex digits.
    Digest(String),
    /// The file is larger than the cap and was not hashed.
    TooLarge {
        /// Its size in bytes (at least what was read, for a file that grew while read).
        size: u64,
    },
}

impl HashOutcome {
    /// The digest, when the file was hashed.
    pub fn digest(&self) -> Option<&str> {
        match self {
            HashOutcome::Digest(d) => Some(d),
            HashOutcome::TooLarge { .. } => None,
        }
    }
}

/// sha256 of the regular file at `path` (links followed), or `TooLarge` past `max_bytes`.
pub fn sha256_file(path: &Path, max_bytes: u64) -> io::Result<HashOutcome> {
    // O_NONBLOCK: opening a FIFO must not wait for a writer (regular files ignore it).
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    hash_open(&mut file, max_bytes).map(|(_, outcome)| outcome)
}

/// The key and sha256 of the executable of `pid`. `/proc/<pid>/exe` is opened once and both
/// come from that descriptor, so they describe the same file even if the path is replaced.
/// No executable (kernel thread, zombie) is [`ReadError::Io`] with `NotFound`; a process that
/// is gone is [`ReadError::Vanished`].
pub fn hash_exe_of_pid(pid: u32, max_bytes: u64) -> Result<(FileKey, HashOutcome), ReadError> {
    let dir = PidDir::open(pid)?;
    let mut file = open_exe(&dir)?;
    // Errors past the open are about the file, which the descriptor keeps alive.
    hash_open(&mut file, max_bytes).map_err(|e| exe_error(pid, e))
}

/// Opens the executable of the process behind `dir` (the file itself, even deleted or a
/// memfd). No executable (kernel thread, zombie) is [`ReadError::Io`] with `NotFound`.
pub(crate) fn open_exe(dir: &PidDir) -> Result<File, ReadError> {
    match dir.open_file(c"exe", "exe") {
        // The exe link of a live process without an mm is ENOENT too.
        Err(e) if e.is_vanished() && dir.alive() => {
            Err(exe_error(dir.pid(), io::ErrorKind::NotFound.into()))
        }
        other => other,
    }
}

/// The key and sha256 of an open file; retried when it changes while it is hashed.
pub fn hash_file(file: &mut File, max_bytes: u64) -> io::Result<(FileKey, HashOutcome)> {
    hash_open(file, max_bytes)
}

fn exe_error(pid: u32, source: io::Error) -> ReadError {
    ReadError::Io {
        pid,
        file: "exe",
        source,
    }
}

/// Hashes an open file; retried when its key changes meanwhile.
fn hash_open(file: &mut File, max_bytes: u64) -> io::Result<(FileKey, HashOutcome)> {
    let mut buf = vec![0u8; READ_CHUNK];
    for _ in 0..ATTEMPTS {
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        let key = FileKey::from_metadata(&meta);
        if key.size > max_bytes {
            return Ok((key, HashOutcome::TooLarge { size: key.size }));
        }
        file.rewind()?;
        let outcome = hash_stream(file, max_bytes, &mut buf)?;
        if FileKey::from_metadata(&file.metadata()?) == key {
            return Ok((key, outcome));
        }
    }
    Err(io::Error::other("file kept changing while it was hashed"))
}

/// sha256 of what `r` yields, stopping at `max_bytes` + 1 (a file that grew past the cap).
fn hash_stream(r: &mut impl Read, max_bytes: u64, buf: &mut [u8]) -> io::Result<HashOutcome> {
    let mut hasher = Sha256::new();
    let mut total: u64 = 0;
    loop {
        let n = match r.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        total = total.saturating_add(n as u64);
        if total > max_bytes {
            return Ok(HashOutcome::TooLarge { size: total });
        }
        hasher.update(&buf[..n]);
    }
    Ok(HashOutcome::Digest(hex(&hasher.finalize())))
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

/// A bounded map from file version to hash outcome; the oldest insertion is evicted first.
#[derive(Debug)]
pub struct HashCache {
    map: HashMap<FileKey, HashOutcome>,
    order: VecDeque<FileKey>,
    cap: usize,
}

impl Default for HashCache {
    fn default() -> Self {
        Self::new(DEFAULT_CACHE_ENTRIES)
    }
}

impl HashCache {
    /// A cache of at most `cap` entries (at least 1).
    pub fn new(cap: usize) -> Self {
        let cap = cap.max(1);
        Self {
            map: HashMap::with_capacity(cap.min(DEFAULT_CACHE_ENTRIES)),
            order: VecDeque::with_capacity(cap.min(DEFAULT_CACHE_ENTRIES)),
            cap,
        }
    }

    /// The cached outcome for this file version.
    pub fn get(&self, key: &FileKey) -> Option<&HashOutcome> {
        self.map.get(key)
    }

    /// Caches an outcome, evicting the oldest entry when full.
    pub fn insert(&mut self, key: FileKey, outcome: HashOutcome) {
        match self.map.entry(key) {
            Entry::Occupied(mut e) => {
                e.insert(outcome);
                return;
            }
            Entry::Vacant(e) => {
                e.insert(outcome);
            }
        }
        self.order.push_back(key);
        while self.order.len() > self.cap {
            if let Some(old) = self.order.pop_front() {
                self.map.remove(&old);
            }
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io::Write,
        os::fd::{AsRawFd, FromRawFd},
        path::PathBuf,
        time::{Duration, SystemTime},
    };

    use super::*;

    const ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    /// A path in the temp dir unique to this test and process, removed on drop.
    struct TempPath(PathBuf);

    impl TempPath {
        fn new(name: &str, content: &[u8]) -> Self {
            let p = std::env::temp_dir().join(format!("pw-hash-{}-{name}", std::process::id()));
            std::fs::write(&p, content).expect("write temp file");
            Self(p)
        }
    }

    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn digest(d: &str) -> HashOutcome {
        HashOutcome::Digest(d.to_string())
    }

    #[test]
    fn known_digests() {
        let abc = TempPath::new("abc", b"abc");
        assert_eq!(sha256_file(&abc.0, 1024).expect("hash"), digest(ABC));
        assert_eq!(sha256_file(&abc.0, 3).expect("hash"), digest(ABC));
        let empty = TempPath::new("empty", b"");
        assert_eq!(sha256_file(&empty.0, 0).expect("hash"), digest(EMPTY));
        // Larger than one read chunk: 1,000,000 × 'a' is a published test vector.
        let big = TempPath::new("million", &vec![b'a'; 1_000_000]);
        let want = "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0";
        assert_eq!(sha256_file(&big.0, u64::MAX).expect("hash"), digest(want));
    }

    #[test]
    fn too_large_is_not_read() {
        let f = TempPath::new("large", &[7u8; 10]);
        assert_eq!(
            sha256_file(&f.0, 9).expect("stat"),
            HashOutcome::TooLarge { size: 10 }
        );
        assert_eq!(HashOutcome::TooLarge { size: 1 }.digest(), None);
        assert_eq!(digest(ABC).digest(), Some(ABC));
    }

    #[test]
    fn stream_cap_catches_growth() {
        let mut buf = [0u8; 4];
        let mut r: &[u8] = b"0123456789";
        assert_eq!(
            hash_stream(&mut r, 5, &mut buf).expect("hash"),
            HashOutcome::TooLarge { size: 8 }
        );
    }

    #[test]
    fn not_a_regular_file() {
        let err = sha256_file(Path::new("/tmp"), 1024).expect_err("a directory");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let fifo =
            TempPath(std::env::temp_dir().join(format!("pw-hash-{}-fifo", std::process::id())));
        let c_path = std::ffi::CString::new(fifo.0.as_os_str().as_encoded_bytes()).expect("path");
        // SAFETY: NUL-terminated path; the result is checked.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0, "mkfifo");
        let err = sha256_file(&fifo.0, 1024).expect_err("a FIFO, without blocking");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(sha256_file(Path::new("/nonexistent/x"), 1).is_err());
    }

    #[test]
    fn key_follows_the_file_version() {
        let f = TempPath::new("versions", b"one");
        let k1 = FileKey::of_path(&f.0).expect("key");
        assert_eq!(k1, FileKey::of_path(&f.0).expect("key"));
        std::fs::write(&f.0, b"three").expect("rewrite");
        let k2 = FileKey::of_path(&f.0).expect("key");
        assert_ne!(k1, k2);
        // Same size, the mtime put back: the ctime still moves.
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&f.0)
            .expect("open");
        let when = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        file.set_modified(when).expect("set mtime");
        let k3 = FileKey::of_path(&f.0).expect("key");
        std::thread::sleep(Duration::from_millis(20));
        (&file).write_all(b"THREE").expect("same-size rewrite");
        file.set_modified(when).expect("set mtime back");
        let k4 = FileKey::of_path(&f.0).expect("key");
        assert_eq!((k3.size, k3.mtime_ns), (k4.size, k4.mtime_ns));
        assert_ne!(k3, k4);
        // Replaced by rename: another inode.
        let other = TempPath::new("versions-new", b"three");
        std::fs::rename(&other.0, &f.0).expect("rename");
        assert_ne!(k4.ino, FileKey::of_path(&f.0).expect("key").ino);
    }

    #[test]
    fn cache_evicts_oldest() {
        let key = |ino| FileKey {
            dev: 1,
            ino,
            size: 3,
            mtime_ns: 0,
            ctime_ns: 0,
        };
        let mut c = HashCache::new(2);
        c.insert(key(1), digest("a"));
        c.insert(key(2), digest("b"));
        c.insert(key(1), digest("a2")); // an update, not a new entry
        assert_eq!((c.len(), c.get(&key(1))), (2, Some(&digest("a2"))));
        c.insert(key(3), HashOutcome::TooLarge { size: 9 });
        assert_eq!(c.get(&key(1)), None);
        assert_eq!(c.get(&key(2)), Some(&digest("b")));
        assert_eq!(c.get(&key(3)), Some(&HashOutcome::TooLarge { size: 9 }));
        assert_eq!(HashCache::new(0).cap, 1);
        assert!(HashCache::default().is_empty());
    }

    #[test]
    fn deleted_but_open_file_via_proc_fd() {
        let f = TempPath::new("deleted", b"abc");
        let open = File::open(&f.0).expect("open");
        std::fs::remove_file(&f.0).expect("unlink");
        let fd_path = PathBuf::from(format!("/proc/self/fd/{}", open.as_raw_fd()));
        assert_eq!(sha256_file(&fd_path, 100).expect("hash"), digest(ABC));
        let key = FileKey::of_path(&fd_path).expect("key");
        assert_eq!(
            key,
            FileKey::from_metadata(&open.metadata().expect("fstat"))
        );
    }

    #[test]
    fn memfd_via_proc_fd() {
        // SAFETY: NUL-terminated name; the result is checked before use.
        let raw = unsafe { libc::memfd_create(c"pw-test".as_ptr(), libc::MFD_CLOEXEC) };
        assert!(raw >= 0, "memfd_create: {}", io::Error::last_os_error());
        // SAFETY: a fresh descriptor owned by nobody else.
        let mut memfd = unsafe { File::from_raw_fd(raw) };
        memfd.write_all(b"abc").expect("write memfd");
        let path = PathBuf::from(format!("/proc/self/fd/{raw}"));
        assert_eq!(sha256_file(&path, 100).expect("hash"), digest(ABC));
    }

    #[test]
    fn own_executable() {
        let exe = std::env::current_exe().expect("exe");
        let (key, outcome) = hash_exe_of_pid(std::process::id(), u64::MAX).expect("own exe");
        assert_eq!(key, FileKey::of_path(&exe).expect("key"));
        assert_eq!(outcome, sha256_file(&exe, u64::MAX).expect("hash"));
        assert_eq!(outcome.digest().map(str::len), Some(64));
        let (_, capped) = hash_exe_of_pid(std::process::id(), 1).expect("own exe");
        assert_eq!(capped, HashOutcome::TooLarge { size: key.size });
    }

    #[test]
    fn vanished_and_kernel_threads() {
        assert!(
            hash_exe_of_pid(u32::MAX, 1)
                .expect_err("no pid")
                .is_vanished()
        );
        // kthreadd when this pid namespace shows it.
        let Ok(stat) = std::fs::read_to_string("/proc/2/stat") else {
            eprintln!("skipped kernel-thread case: no pid 2 here");
            return;
        };
        if !stat.starts_with("2 (kthreadd)") {
            eprintln!("skipped kernel-thread case: pid 2 is not kthreadd");
            return;
        }
        let err = hash_exe_of_pid(2, 1).expect_err("no exe");
        assert!(!err.is_vanished(), "{err}");
        assert!(
            matches!(&err, ReadError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound),
            "{err}"
        );
    }
}
