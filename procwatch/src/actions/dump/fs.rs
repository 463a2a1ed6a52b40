//! File-system operations of a dump. Every one works relative to an opened directory
//! descriptor and never follows a symbolic link in the last component, so a path swapped for
//! a link after it was checked cannot redirect a write; files are created with `O_EXCL`, so
//! nothing that already exists is ever overwritten or appended to.
use std::{
    ffi::{CStr, CString},
    fs::File,
    io::{self, Read, Write},
    mem::MaybeUninit,
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd},
        unix::ffi::OsStrExt,
    },
    path::{Path, PathBuf},
};

use sha2::{Digest as _, Sha256};

use super::DumpError;

/// Mode of every directory a dump creates (the dump root and each per-alert directory).
pub const DIR_MODE: libc::mode_t = 0o700;
/// Mode of every file a dump writes.
pub const FILE_MODE: libc::mode_t = 0o600;
/// Flags of every directory opened: a link in the last component is an error, not followed.
const DIR_FLAGS: i32 = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
/// Flags of every file written: a new file only, never through a link.
const FILE_FLAGS: i32 =
    libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
/// Bytes copied per read(2).
const CHUNK: usize = 64 * 1024;
/// Suffixes `-1` .. `-99` tried when a per-alert directory name is taken.
const NAME_ATTEMPTS: u32 = 100;

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn owned(raw: libc::c_int) -> io::Result<OwnedFd> {
    let raw = check(raw)?;
    // SAFETY: a fresh descriptor returned by the kernel, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

fn raw_dir(dir: Option<&OwnedFd>) -> libc::c_int {
    dir.map_or(libc::AT_FDCWD, AsRawFd::as_raw_fd)
}

/// `name` as a C string (a NUL inside is `InvalidInput`).
pub fn c_name(name: &[u8]) -> io::Result<CString> {
    CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in name"))
}

/// Opens the directory `name` (relative to `dir`, or the working directory) without
/// following a link at `name`.
pub fn open_dir_at(dir: Option<&OwnedFd>, name: &CStr) -> io::Result<OwnedFd> {
    // SAFETY: NUL-terminated name, a valid directory fd or AT_FDCWD; the result is checked.
    owned(unsafe { libc::openat(raw_dir(dir), name.as_ptr(), DIR_FLAGS) })
}

/// mkdirat(2) with [`DIR_MODE`].
pub fn mkdir_at(dir: Option<&OwnedFd>, name: &CStr) -> io::Result<()> {
    // SAFETY: NUL-terminated name, a valid directory fd or AT_FDCWD.
    check(unsafe { libc::mkdirat(raw_dir(dir), name.as_ptr(), DIR_MODE) }).map(drop)
}

/// fstat(2).
pub fn stat_fd(fd: &impl AsRawFd) -> io::Result<libc::stat> {
    let mut st = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: a valid fd and a buffer the size of `struct stat`; read only on success.
    check(unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) })?;
    // SAFETY: fstat succeeded, so it filled the buffer.
    Ok(unsafe { st.assume_init() })
}

/// fstatat(2) without following a link at `name`.
pub fn lstat_at(dir: Option<&OwnedFd>, name: &CStr) -> io::Result<libc::stat> {
    let mut st = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: NUL-terminated name, a valid directory fd, a buffer the size of `struct stat`.
    check(unsafe {
        libc::fstatat(
            raw_dir(dir),
            name.as_ptr(),
            st.as_mut_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    // SAFETY: fstatat succeeded, so it filled the buffer.
    Ok(unsafe { st.assume_init() })
}

/// fchmod(2): the exact mode, whatever the umask took away at creation.
fn chmod_fd(fd: &impl AsRawFd, mode: libc::mode_t) -> io::Result<()> {
    // SAFETY: a valid fd.
    check(unsafe { libc::fchmod(fd.as_raw_fd(), mode) }).map(drop)
}

fn is_dir(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

fn is_symlink(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFLNK
}

fn is_regular(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFREG
}

/// Creates `name` in `dir` as a new file of mode [`FILE_MODE`]: `EEXIST` when anything
/// (a file, a link, a FIFO) is already there.
pub fn create_file(dir: &OwnedFd, name: &CStr) -> io::Result<File> {
    // SAFETY: NUL-terminated name, a valid directory fd; the mode is passed as varargs int.
    let fd = owned(unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            FILE_FLAGS,
            libc::c_uint::from(FILE_MODE),
        )
    })?;
    chmod_fd(&fd, FILE_MODE)?;
    Ok(File::from(fd))
}

/// unlinkat(2) of a file.
fn unlink_at(dir: &OwnedFd, name: &CStr) -> io::Result<()> {
    // SAFETY: NUL-terminated name, a valid directory fd.
    check(unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) }).map(drop)
}

/// The names in an open directory (without `.` and `..`). Read through
/// `/proc/self/fd/N`, a link to exactly the directory already open, so no path is resolved
/// again.
pub fn list_dir(dir: &impl AsRawFd) -> io::Result<Vec<CString>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/self/fd/{}", dir.as_raw_fd()))? {
        let Ok(entry) = entry else { continue };
        // read_dir never yields a name with a NUL byte; skipping one is still no panic.
        if let Ok(name) = c_name(entry.file_name().as_bytes()) {
            names.push(name);
        }
    }
    Ok(names)
}

/// Bytes held by regular files in `root` and in its subdirectories (one level: the dumps).
/// Links are not followed; entries that vanish while counted are skipped.
pub fn dir_usage(root: &OwnedFd) -> io::Result<u64> {
    let mut total = 0u64;
    for name in list_dir(root)? {
        let Ok(st) = lstat_at(Some(root), &name) else {
            continue;
        };
        if is_regular(&st) {
            total = total.saturating_add(size_of(&st));
        } else if is_dir(&st) {
            let Ok(sub) = open_dir_at(Some(root), &name) else {
                continue;
            };
            for file in list_dir(&sub).unwrap_or_default() {
                match lstat_at(Some(&sub), &file) {
                    Ok(st) if is_regular(&st) => total = total.saturating_add(size_of(&st)),
                    _ => {}
                }
            }
        }
    }
    Ok(total)
}

fn size_of(st: &libc::stat) -> u64 {
    u64::try_from(st.st_size).unwrap_or(0)
}

/// `path` without trailing slashes: with one, open(2) resolves a link in the last component
/// even under `O_NOFOLLOW`.
fn without_trailing_slashes(path: &Path) -> &[u8] {
    let mut bytes = path.as_os_str().as_bytes();
    while bytes.len() > 1 && bytes.ends_with(b"/") {
        bytes = &bytes[..bytes.len() - 1];
    }
    bytes
}

/// Opens the dump root `path`, creating it (mode 0700) when missing. See the module docs of
/// [`super`] for the policy: refused when it is a link, not a directory, owned by another
/// user, or group- or world-writable.
pub fn open_root(path: &Path) -> Result<OwnedFd, DumpError> {
    let io_err = |what: &'static str| {
        move |source: io::Error| DumpError::Io {
            path: path.to_path_buf(),
            what,
            source,
        }
    };
    let c_path = c_name(without_trailing_slashes(path)).map_err(io_err("path"))?;
    let (fd, created) = match open_dir_at(None, &c_path) {
        Ok(fd) => (fd, false),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => create_root(path, &c_path)?,
        Err(e) => return Err(classify_open(path, &c_path, e)),
    };
    if created {
        chmod_fd(&fd, DIR_MODE).map_err(io_err("chmod"))?;
    }
    let st = stat_fd(&fd).map_err(io_err("fstat"))?;
    check_owner_and_mode(path, &st)?;
    Ok(fd)
}

/// mkdir, then open what is there now (a link raced in is refused by the open).
fn create_root(path: &Path, c_path: &CStr) -> Result<(OwnedFd, bool), DumpError> {
    let created = match mkdir_at(None, c_path) {
        Ok(()) => true,
        // Someone created it meanwhile: it gets the same checks as a pre-existing one.
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => false,
        Err(source) => {
            return Err(DumpError::Io {
                path: path.to_path_buf(),
                what: "mkdir",
                source,
            });
        }
    };
    let fd = open_dir_at(None, c_path).map_err(|e| classify_open(path, c_path, e))?;
    Ok((fd, created))
}

/// Names the reason an existing root could not be opened as a directory.
fn classify_open(path: &Path, c_path: &CStr, e: io::Error) -> DumpError {
    let path_buf = || PathBuf::from(path);
    match e.raw_os_error() {
        Some(libc::ELOOP | libc::ENOTDIR) => match lstat_at(None, c_path) {
            Ok(st) if is_symlink(&st) => DumpError::Symlink { path: path_buf() },
            Ok(st) if !is_dir(&st) => DumpError::NotDirectory { path: path_buf() },
            _ => DumpError::Io {
                path: path_buf(),
                what: "open",
                source: e,
            },
        },
        _ => DumpError::Io {
            path: path_buf(),
            what: "open",
            source: e,
        },
    }
}

fn check_owner_and_mode(path: &Path, st: &libc::stat) -> Result<(), DumpError> {
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if !is_dir(st) {
        return Err(DumpError::NotDirectory {
            path: path.to_path_buf(),
        });
    }
    if st.st_uid != me {
        return Err(DumpError::WrongOwner {
            path: path.to_path_buf(),
            uid: st.st_uid,
            expected: me,
        });
    }
    let mode = st.st_mode & 0o7777;
    if mode & 0o022 != 0 {
        return Err(DumpError::Writable {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

/// Creates the per-alert directory `base` (or `base-N` when taken) in `root`, mode 0700;
/// never reuses an existing one. Returns its name and an open handle.
pub fn make_subdir(
    root: &OwnedFd,
    root_path: &Path,
    base: &str,
) -> Result<(String, OwnedFd), DumpError> {
    let io_err = |what: &'static str, source: io::Error| DumpError::Io {
        path: root_path.to_path_buf(),
        what,
        source,
    };
    for attempt in 0..NAME_ATTEMPTS {
        let name = if attempt == 0 {
            base.to_string()
        } else {
            format!("{base}-{attempt}")
        };
        let c = c_name(name.as_bytes()).map_err(|e| io_err("name", e))?;
        match mkdir_at(Some(root), &c) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => continue,
            Err(e) => return Err(io_err("mkdir", e)),
        }
        let fd = open_dir_at(Some(root), &c).map_err(|e| io_err("open", e))?;
        chmod_fd(&fd, DIR_MODE).map_err(|e| io_err("chmod", e))?;
        return Ok((name, fd));
    }
    Err(DumpError::NoFreeName {
        path: root_path.to_path_buf(),
        base: base.to_string(),
    })
}

/// A file as written: its size and sha256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// Bytes written.
    pub bytes: u64,
    /// sha256 of those bytes, lowercase hex.
    pub sha256: String,
}

/// Why a copy did not produce a file.
#[derive(Debug)]
pub enum CopyError {
    /// The source had more than the cap; nothing was kept.
    TooLarge,
    /// Reading the source failed; nothing was kept.
    Read(io::Error),
    /// Creating or writing the file failed.
    Write(io::Error),
}

/// Copies `src` into the new file `name` in `dir`, hashing what is written, at most `cap`
/// bytes. A source longer than `cap`, or one whose read fails, leaves no file behind:
/// every file of a dump is whole.
pub fn write_capped(
    dir: &OwnedFd,
    name: &CStr,
    src: &mut dyn Read,
    cap: u64,
) -> Result<Written, CopyError> {
    let mut file = create_file(dir, name).map_err(CopyError::Write)?;
    let result = copy_hashing(src, &mut file, cap);
    if result.is_err() {
        // Only a file this call created is removed; an existing one made create_file fail.
        let _ = unlink_at(dir, name);
    }
    result
}

/// sha256 of what `src` yields, or `None` past `cap` bytes.
pub fn hash_capped(src: &mut dyn Read, cap: u64) -> io::Result<Option<String>> {
    match copy_hashing(src, &mut io::sink(), cap) {
        Ok(w) => Ok(Some(w.sha256)),
        Err(CopyError::TooLarge) => Ok(None),
        Err(CopyError::Read(e) | CopyError::Write(e)) => Err(e),
    }
}

fn copy_hashing(src: &mut dyn Read, dst: &mut dyn Write, cap: u64) -> Result<Written, CopyError> {
    let mut buf = vec![0u8; CHUNK];
    let mut hasher = Sha256::new();
    let mut total = 0u64;
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        total = total.saturating_add(n as u64);
        if total > cap {
            return Err(CopyError::TooLarge);
        }
        let chunk = &buf[..n];
        hasher.update(chunk);
        dst.write_all(chunk).map_err(CopyError::Write)?;
    }
    Ok(Written {
        bytes: total,
        sha256: format!("{:x}", hasher.finalize()),
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{PermissionsExt, symlink};

    use super::*;

    use crate::actions::dump::test_support::Scratch;

    use crate::actions::dump::test_support::mode_of;

    #[test]
    fn root_is_created_0700_and_reused() {
        let s = Scratch::new("create");
        let root = s.0.join("dumps");
        open_root(&root).expect("created");
        assert_eq!(mode_of(&root), 0o700);
        open_root(&root).expect("an existing private directory is fine");
        let slashed = PathBuf::from(format!("{}//", root.display()));
        open_root(&slashed).expect("trailing slashes");
    }

    #[test]
    fn root_refuses_links_files_and_shared_dirs() {
        let s = Scratch::new("refuse");
        let target = s.0.join("target");
        std::fs::create_dir(&target).expect("mkdir");
        let link = s.0.join("link");
        symlink(&target, &link).expect("symlink");
        assert!(matches!(open_root(&link), Err(DumpError::Symlink { .. })));
        // A trailing slash would make open(2) follow the link: still refused.
        let slashed = PathBuf::from(format!("{}/", link.display()));
        assert!(matches!(
            open_root(&slashed),
            Err(DumpError::Symlink { .. })
        ));
        let dangling = s.0.join("dangling");
        symlink(s.0.join("nowhere"), &dangling).expect("symlink");
        assert!(matches!(
            open_root(&dangling),
            Err(DumpError::Symlink { .. })
        ));
        assert!(
            !s.0.join("nowhere").exists(),
            "nothing created at the link target"
        );
        assert_eq!(std::fs::read_dir(&target).expect("ls").count(), 0);

        let file = s.0.join("file");
        std::fs::write(&file, b"x").expect("write");
        assert!(matches!(
            open_root(&file),
            Err(DumpError::NotDirectory { .. })
        ));

        let shared = s.0.join("shared");
        std::fs::create_dir(&shared).expect("mkdir");
        for mode in [0o770, 0o703, 0o1777] {
            std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(mode))
                .expect("chmod");
            assert!(
                matches!(open_root(&shared), Err(DumpError::Writable { .. })),
                "{mode:o}"
            );
        }
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        open_root(&shared).expect("readable by others, writable by none: fine");

        let missing_parent = s.0.join("no/such/dir");
        assert!(matches!(
            open_root(&missing_parent),
            Err(DumpError::Io { .. })
        ));
    }

    #[test]
    fn root_owned_by_someone_else_is_refused() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return; // only root can give a directory away
        }
        let s = Scratch::new("owner");
        let other = s.0.join("other");
        std::fs::create_dir(&other).expect("mkdir");
        std::os::unix::fs::chown(&other, Some(65534), None).expect("chown");
        assert!(matches!(
            open_root(&other),
            Err(DumpError::WrongOwner { uid: 65534, .. })
        ));
    }

    #[test]
    fn subdirs_are_new_and_private() {
        let s = Scratch::new("subdir");
        let root_path = s.0.join("dumps");
        let root = open_root(&root_path).expect("root");
        let (a, _) = make_subdir(&root, &root_path, "x").expect("first");
        let (b, _) = make_subdir(&root, &root_path, "x").expect("second");
        let (c, _) = make_subdir(&root, &root_path, "x").expect("third");
        assert_eq!((a.as_str(), b.as_str(), c.as_str()), ("x", "x-1", "x-2"));
        assert_eq!(mode_of(&root_path.join("x-1")), 0o700);
        // A link planted under the next name is skipped, never followed.
        symlink(&s.0, root_path.join("y")).expect("symlink");
        let (d, _) = make_subdir(&root, &root_path, "y").expect("past the link");
        assert_eq!(d, "y-1");
    }

    #[test]
    fn create_file_is_exclusive_and_never_follows_links() {
        let s = Scratch::new("excl");
        let dir = open_dir_at(None, &c_name(s.0.as_os_str().as_bytes()).expect("c")).expect("dir");
        let mut f = create_file(&dir, c"a").expect("new");
        f.write_all(b"first").expect("write");
        assert_eq!(mode_of(&s.0.join("a")), 0o600);
        let err = create_file(&dir, c"a").expect_err("exists");
        assert_eq!(err.raw_os_error(), Some(libc::EEXIST));
        assert_eq!(std::fs::read(s.0.join("a")).expect("read"), b"first");
        // A link, even a dangling one, is "exists": its target is never created.
        symlink(s.0.join("target"), s.0.join("l")).expect("symlink");
        let err = create_file(&dir, c"l").expect_err("link");
        assert_eq!(err.raw_os_error(), Some(libc::EEXIST));
        assert!(!s.0.join("target").exists());
    }

    #[test]
    fn capped_copy_hashes_or_leaves_nothing() {
        let s = Scratch::new("fs-cap");
        let dir = open_dir_at(None, &c_name(s.0.as_os_str().as_bytes()).expect("c")).expect("dir");
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let w = write_capped(&dir, c"ok", &mut &b"abc"[..], 3).expect("fits exactly");
        assert_eq!((w.bytes, w.sha256.as_str()), (3, abc));
        assert!(matches!(
            write_capped(&dir, c"big", &mut &b"abcd"[..], 3),
            Err(CopyError::TooLarge)
        ));
        assert!(!s.0.join("big").exists(), "a partial file is removed");
        // A failed create removes nothing: the existing file stays.
        assert!(matches!(
            write_capped(&dir, c"ok", &mut &b"x"[..], 3),
            Err(CopyError::Write(_))
        ));
        assert_eq!(std::fs::read(s.0.join("ok")).expect("read"), b"abc");
        assert_eq!(
            hash_capped(&mut &b"abc"[..], 3).expect("hash"),
            Some(abc.into())
        );
        assert_eq!(hash_capped(&mut &b"abc"[..], 2).expect("hash"), None);
    }

    #[test]
    fn usage_counts_files_one_level_down_without_following_links() {
        let s = Scratch::new("usage");
        std::fs::write(s.0.join("top"), [0u8; 10]).expect("write");
        std::fs::create_dir(s.0.join("d")).expect("mkdir");
        std::fs::write(s.0.join("d/f"), [0u8; 100]).expect("write");
        std::fs::create_dir(s.0.join("d/deeper")).expect("mkdir");
        std::fs::write(s.0.join("d/deeper/g"), [0u8; 1000]).expect("write");
        let big = Scratch::new("usage-elsewhere");
        std::fs::write(big.0.join("huge"), [0u8; 5000]).expect("write");
        symlink(&big.0, s.0.join("link")).expect("symlink");
        symlink(big.0.join("huge"), s.0.join("d/flink")).expect("symlink");
        let dir = open_dir_at(None, &c_name(s.0.as_os_str().as_bytes()).expect("c")).expect("dir");
        assert_eq!(dir_usage(&dir).expect("usage"), 110);
    }
}
