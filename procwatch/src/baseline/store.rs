//! The model file: JSON with a format and a version, written atomically (temporary file in the
//! same directory, fsync, rename, fsync of the directory), never overwritten when it is
//! corrupt, from a newer procwatch, or changed by someone else since it was read.
use std::{
    fs::{self, File, OpenOptions},
    io::{self, Read, Write},
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use serde::Deserialize;

use super::model::{FORMAT, Model, Secs, VERSION};

/// Largest model file read: a model filled to the default caps with the longest paths fits
/// (a test checks it); anything larger is not one of ours.
pub const MAX_FILE_BYTES: u64 = 1 << 30;

/// Why a model could not be loaded or saved.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No file at the path.
    #[error("{}: no model file there", path.display())]
    NotFound {
        /// The file.
        path: PathBuf,
    },
    /// The file exists but cannot be read.
    #[error("{}: cannot read the model: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: io::Error,
    },
    /// The file is not valid model JSON.
    #[error(
        "{}: the model file is corrupt: {detail}; it is left as it is (restore a backup, or move it away to start a new model)",
        path.display()
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong, with line and column when known.
        detail: String,
    },
    /// The file was written by a newer procwatch.
    #[error(
        "{}: the model has format version {found}, newer than the version {supported} this procwatch reads; upgrade procwatch (the file is left as it is)",
        path.display()
    )]
    NewerVersion {
        /// The file.
        path: PathBuf,
        /// Its version.
        found: u64,
        /// The version this build reads.
        supported: u32,
    },
    /// Valid JSON, but not a procwatch model.
    #[error("{}: not a procwatch model (format is {found}, expected \"{FORMAT}\"); it is left as it is", path.display())]
    NotAModel {
        /// The file.
        path: PathBuf,
        /// What its `format` says.
        found: String,
    },
    /// Too large to be one of ours.
    #[error("{}: the model file is {size} bytes, over the limit of {max}", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// Writing failed; the previous file, if any, is untouched.
    #[error("{}: cannot write the model: {error}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: io::Error,
    },
    /// The file changed on disk since it was read.
    #[error(
        "{}: the model changed on disk since it was read (revision {found}, expected {expected}); not overwritten",
        path.display()
    )]
    Conflict {
        /// The file.
        path: PathBuf,
        /// The revision the writer read.
        expected: u64,
        /// The revision on disk.
        found: u64,
    },
    /// Another writer holds the lock.
    #[error("{}: cannot lock the model: {error}", path.display())]
    Lock {
        /// The file.
        path: PathBuf,
        /// Why.
        error: io::Error,
    },
}

/// What a save expects to find on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Whatever valid model (or none) is there may be replaced.
    Any,
    /// Only the revision this writer read (or last wrote); absent is fine too.
    Revision(u64),
}

/// The part of a model file read before trusting the rest.
#[derive(Debug, Deserialize)]
struct Header {
    format: Option<serde_json::Value>,
    version: Option<serde_json::Value>,
    revision: Option<u64>,
}

/// Reads the file, at most [`MAX_FILE_BYTES`].
fn read_bytes(path: &Path) -> Result<Vec<u8>, StoreError> {
    let file = File::open(path).map_err(|error| match error.kind() {
        io::ErrorKind::NotFound => StoreError::NotFound {
            path: path.to_path_buf(),
        },
        _ => StoreError::Read {
            path: path.to_path_buf(),
            error,
        },
    })?;
    let read_err = |error| StoreError::Read {
        path: path.to_path_buf(),
        error,
    };
    let size = file.metadata().map_err(read_err)?.len();
    if size > MAX_FILE_BYTES {
        return Err(StoreError::TooLarge {
            path: path.to_path_buf(),
            size,
            max: MAX_FILE_BYTES,
        });
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    Ok(bytes)
}

/// Checks format and version; returns the revision.
fn check_header(path: &Path, bytes: &[u8]) -> Result<u64, StoreError> {
    let corrupt = |detail: String| StoreError::Corrupt {
        path: path.to_path_buf(),
        detail,
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(corrupt("the file is empty".into()));
    }
    let h: Header = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
    match &h.format {
        Some(serde_json::Value::String(f)) if f == FORMAT => {}
        Some(other) => {
            return Err(StoreError::NotAModel {
                path: path.to_path_buf(),
                found: other.to_string(),
            });
        }
        None => {
            return Err(StoreError::NotAModel {
                path: path.to_path_buf(),
                found: "missing".into(),
            });
        }
    }
    let version = match &h.version {
        Some(v) => v
            .as_u64()
            .ok_or_else(|| corrupt(format!("version {v} is not a whole number")))?,
        None => return Err(corrupt("no version".into())),
    };
    if version > u64::from(VERSION) {
        return Err(StoreError::NewerVersion {
            path: path.to_path_buf(),
            found: version,
            supported: VERSION,
        });
    }
    if version < 1 {
        return Err(corrupt(format!("version {version} does not exist")));
    }
    Ok(h.revision.unwrap_or(0))
}

/// Loads and vets the model at `path`.
pub fn load(path: &Path) -> Result<Model, StoreError> {
    let bytes = read_bytes(path)?;
    check_header(path, &bytes)?;
    let corrupt = |detail: String| StoreError::Corrupt {
        path: path.to_path_buf(),
        detail,
    };
    let model: Model = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
    model.validate().map_err(corrupt)?;
    Ok(model)
}

/// Loads the model at `path`, or `None` when there is no file.
pub fn load_optional(path: &Path) -> Result<Option<Model>, StoreError> {
    match load(path) {
        Ok(m) => Ok(Some(m)),
        Err(StoreError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The revision of the model now at `path` (`None` when absent); errors for anything that is
/// not a model this build may replace.
pub fn inspect(path: &Path) -> Result<Option<u64>, StoreError> {
    match read_bytes(path) {
        Ok(bytes) => check_header(path, &bytes).map(Some),
        Err(StoreError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Saves `model` to `path` atomically and returns its new revision (also set in `model`).
///
/// Refuses, leaving the file as it is, when what is there is corrupt, from a newer version,
/// not a model, or (with [`Expect::Revision`]) a revision other than the one expected.
pub fn save(path: &Path, model: &mut Model, expect: Expect, now: Secs) -> Result<u64, StoreError> {
    let on_disk = inspect(path)?;
    if let (Expect::Revision(expected), Some(found)) = (expect, on_disk)
        && found != expected
    {
        return Err(StoreError::Conflict {
            path: path.to_path_buf(),
            expected,
            found,
        });
    }
    let revision = model.revision.max(on_disk.unwrap_or(0)) + 1;
    let mut out = model.clone();
    out.revision = revision;
    out.saved = Some(now);
    let write_err = |error| StoreError::Write {
        path: path.to_path_buf(),
        error,
    };
    let mut bytes = serde_json::to_vec_pretty(&out).map_err(|e| write_err(io::Error::other(e)))?;
    bytes.push(b'\n');
    write_atomically(path, &bytes).map_err(write_err)?;
    model.revision = revision;
    model.saved = Some(now);
    Ok(revision)
}

/// The directory a file is in (`.` for a bare name).
fn dir_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Temporary file beside the target, fsync, rename over it, fsync the directory.
fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = dir_of(path);
    if !dir.exists() {
        // The model can hold paths and user names: private by default.
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path names no file"))?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{nanos}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// An exclusive lock on a model file (a `.NAME.lock` file beside it), held until dropped, so
/// `baseline` commands and a running monitor do not write over each other.
#[derive(Debug)]
pub struct ModelLock {
    _file: File,
}

impl ModelLock {
    /// Takes the lock, waiting at most `timeout` for another holder.
    pub fn acquire(path: &Path, timeout: Duration) -> Result<Self, StoreError> {
        let lock_err = |error| StoreError::Lock {
            path: path.to_path_buf(),
            error,
        };
        let dir = dir_of(path);
        if !dir.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(lock_err)?;
        }
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        let lock_path = dir.join(format!(".{}.lock", name.unwrap_or_default()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&lock_path)
            .map_err(lock_err)?;
        let start = Instant::now();
        loop {
            use std::os::fd::AsRawFd;
            // SAFETY: flock on a descriptor this function owns.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc == 0 {
                return Ok(Self { _file: file });
            }
            let err = io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(lock_err(err));
            }
            if start.elapsed() >= timeout {
                return Err(lock_err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    format!(
                        "another procwatch held {} for {:.1}s",
                        lock_path.display(),
                        timeout.as_secs_f64()
                    ),
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// `$HOME/.local/share/procwatch/model.json`, the default model path.
pub fn default_path() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".local/share/procwatch/model.json"))
}

/// The model path: the command line's, else the config's `baseline.model_path`, else
/// [`default_path`].
pub fn resolve_path(cli: Option<&Path>, cfg: &crate::config::Baseline) -> Result<PathBuf, String> {
    if let Some(p) = cli {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = &cfg.model_path {
        return Ok(p.clone());
    }
    default_path().ok_or_else(|| {
        "no model path: HOME is not set; give --model FILE or set baseline.model_path".into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::baseline::model::ExeBaseline;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("procwatch-store-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).expect("scratch");
            Self(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn model() -> Model {
        let mut m = Model::new(100, "host-a");
        let mut b = ExeBaseline::new("/usr/sbin/nginx", 100);
        b.processes = 3;
        b.resources.cpu.push(12.5);
        m.executables.insert("/usr/sbin/nginx".into(), b);
        m
    }

    fn err_text(e: StoreError) -> String {
        e.to_string()
    }

    #[test]
    fn save_then_load_round_trips_privately_and_leaves_no_temp_file() {
        let s = Scratch::new("roundtrip");
        let path = s.0.join("sub/dir/model.json");
        let mut m = model();
        assert_eq!(save(&path, &mut m, Expect::Any, 200).expect("save"), 1);
        let back = load(&path).expect("load");
        assert_eq!(back, m);
        assert_eq!(back.revision, 1);
        assert_eq!(back.saved, Some(200));
        let mode = fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = fs::metadata(s.0.join("sub"))
            .expect("meta")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dir_mode, 0o700);
        let names: Vec<String> = fs::read_dir(path.parent().expect("dir"))
            .expect("ls")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["model.json"]);
        assert_eq!(
            save(&path, &mut m, Expect::Revision(1), 300).expect("save"),
            2
        );
        assert!(matches!(load_optional(&s.0.join("none.json")), Ok(None)));
    }

    #[test]
    fn replace_is_atomic_a_reader_keeps_the_whole_old_file() {
        let s = Scratch::new("atomic");
        let path = s.0.join("model.json");
        let mut m = model();
        save(&path, &mut m, Expect::Any, 1).expect("save");
        let old_text = fs::read_to_string(&path).expect("read");
        let old_ino = fs::metadata(&path).expect("meta").ino();
        // A reader that opened the file before the save.
        let mut reader = File::open(&path).expect("open");
        m.executables
            .insert("/bin/other".into(), ExeBaseline::new("/bin/other", 2));
        save(&path, &mut m, Expect::Any, 2).expect("save");
        let mut seen = String::new();
        reader.read_to_string(&mut seen).expect("read");
        assert_eq!(
            seen, old_text,
            "the old file was replaced, not rewritten in place"
        );
        assert_ne!(fs::metadata(&path).expect("meta").ino(), old_ino);
        assert!(
            load(&path)
                .expect("load")
                .executables
                .contains_key("/bin/other")
        );
    }

    #[test]
    fn a_corrupt_file_is_named_and_never_overwritten() {
        let s = Scratch::new("corrupt");
        let path = s.0.join("model.json");
        let mut good = model();
        save(&path, &mut good, Expect::Any, 1).expect("save");
        let text = fs::read_to_string(&path).expect("read");
        let cut = &text[..text.len() / 2];
        fs::write(&path, cut).expect("write");
        let e = err_text(load(&path).expect_err("must fail"));
        assert!(
            e.contains("model.json: the model file is corrupt") && e.contains("line"),
            "{e}"
        );
        let e = err_text(save(&path, &mut good, Expect::Any, 2).expect_err("must fail"));
        assert!(e.contains("corrupt"), "{e}");
        assert_eq!(
            fs::read_to_string(&path).expect("read"),
            cut,
            "left as it was"
        );

        for (bad, needle) in [
            ("", "empty"),
            ("[1,2]", "corrupt"),
            (
                "{\"format\":\"other\",\"version\":1}",
                "not a procwatch model",
            ),
            ("{\"version\":1}", "not a procwatch model"),
            ("{\"format\":\"procwatch.baseline\"}", "no version"),
            (
                "{\"format\":\"procwatch.baseline\",\"version\":\"1\"}",
                "not a whole number",
            ),
            (
                "{\"format\":\"procwatch.baseline\",\"version\":0}",
                "does not exist",
            ),
        ] {
            fs::write(&path, bad).expect("write");
            let e = err_text(load(&path).expect_err("must fail"));
            assert!(e.contains(needle), "{bad:?}: {e}");
            assert!(
                save(&path, &mut good, Expect::Any, 3).is_err(),
                "{bad:?} kept"
            );
            assert_eq!(fs::read_to_string(&path).expect("read"), bad);
        }
        // Valid JSON with a field this version does not know, or an impossible value.
        let mut v: serde_json::Value = serde_json::from_str(&text).expect("json");
        v["surprise"] = serde_json::json!(1);
        fs::write(&path, v.to_string()).expect("write");
        assert!(err_text(load(&path).expect_err("must fail")).contains("unknown field `surprise`"));
        let mut v: serde_json::Value = serde_json::from_str(&text).expect("json");
        v["executables"]["/usr/sbin/nginx"]["resources"]["cpu"]["m2"] = serde_json::json!(-5.0);
        fs::write(&path, v.to_string()).expect("write");
        let e = err_text(load(&path).expect_err("must fail"));
        assert!(e.contains("executables./usr/sbin/nginx: resources"), "{e}");
    }

    #[test]
    fn a_newer_version_is_refused_and_kept() {
        let s = Scratch::new("newer");
        let path = s.0.join("model.json");
        let newer = format!(
            "{{\"format\":\"{FORMAT}\",\"version\":{},\"future\":true}}",
            VERSION + 1
        );
        fs::write(&path, &newer).expect("write");
        let e = err_text(load(&path).expect_err("must fail"));
        assert!(
            e.contains(&format!("format version {}", VERSION + 1)),
            "{e}"
        );
        assert!(e.contains("upgrade procwatch"), "{e}");
        assert!(matches!(
            save(&path, &mut model(), Expect::Any, 1),
            Err(StoreError::NewerVersion { .. })
        ));
        assert_eq!(fs::read_to_string(&path).expect("read"), newer);
    }

    #[test]
    fn a_changed_file_is_a_conflict() {
        let s = Scratch::new("conflict");
        let path = s.0.join("model.json");
        let mut mine = model();
        save(&path, &mut mine, Expect::Any, 1).expect("save");
        let mut theirs = load(&path).expect("load");
        save(&path, &mut theirs, Expect::Revision(1), 2).expect("they save");
        let e = save(&path, &mut mine, Expect::Revision(1), 3).expect_err("must fail");
        assert!(
            matches!(
                e,
                StoreError::Conflict {
                    expected: 1,
                    found: 2,
                    ..
                }
            ),
            "{e}"
        );
        assert_eq!(load(&path).expect("load").revision, 2);
    }

    #[test]
    fn a_model_full_to_the_default_caps_can_be_loaded_back() {
        use crate::baseline::{
            model::{Entry, ExeKey, FileKey, UserKey},
            net::{AddrClass, Direction, NetKey, Proto},
            paths::MAX_TEXT,
        };
        let caps = crate::config::Caps::default();
        let long = |i: usize| {
            let mut s = format!("/{i:08}/");
            s.push_str(&"x".repeat(MAX_TEXT - s.len()));
            s
        };
        let big = u64::MAX / 2;
        let mut b = ExeBaseline::new(&long(0), big);
        b.processes = big;
        fn fill<K>(e: &mut Entry<K>) {
            let big = u64::MAX / 2;
            e.count = big;
            e.processes = big;
            e.last_seen = big;
        }
        for i in 0..caps.network {
            let key = NetKey {
                proto: Proto::Udp,
                direction: Direction::Outbound,
                class: AddrClass::LinkLocal,
                port: 65535 - i as u16,
            };
            let mut e = Entry::first(key, big);
            fill(&mut e);
            for a in 0..4 {
                e.add_example(format!("fe80::ffff:ffff:ffff:{a:04x}"));
            }
            b.network.entries.push(e);
        }
        for i in 0..caps.children {
            let mut e = Entry::first(ExeKey { exe: long(i) }, big);
            fill(&mut e);
            b.children.entries.push(e);
        }
        for i in 0..caps.parents {
            let mut e = Entry::first(ExeKey { exe: long(i) }, big);
            fill(&mut e);
            b.parents.entries.push(e);
        }
        for i in 0..caps.users {
            let mut e = Entry::first(
                UserKey {
                    user: "u".repeat(60) + &i.to_string(),
                },
                big,
            );
            fill(&mut e);
            b.users.entries.push(e);
        }
        for i in 0..caps.files {
            let mut e = Entry::first(FileKey { path: long(i) }, big);
            fill(&mut e);
            b.files.entries.push(e);
        }
        let one = serde_json::to_vec_pretty(&b).expect("json").len() as u64;
        let whole = one * caps.executables as u64;
        assert!(
            whole < MAX_FILE_BYTES,
            "{} executables of {one} bytes = {whole} bytes > {MAX_FILE_BYTES}",
            caps.executables
        );
    }

    #[test]
    fn an_oversized_file_is_refused_before_reading() {
        let s = Scratch::new("large");
        let path = s.0.join("model.json");
        let f = File::create(&path).expect("create");
        // Sparse: no disk space is used.
        f.set_len(MAX_FILE_BYTES + 1).expect("size");
        let e = err_text(load(&path).expect_err("must fail"));
        assert!(e.contains("over the limit"), "{e}");
    }

    #[test]
    fn a_failed_write_leaves_the_old_file() {
        let s = Scratch::new("failwrite");
        let path = s.0.join("model.json");
        let mut m = model();
        save(&path, &mut m, Expect::Any, 1).expect("save");
        let before = fs::read(&path).expect("read");
        // The target's directory is a file: nothing can be written there.
        let blocked = s.0.join("model.json/inner.json");
        assert!(matches!(
            save(&blocked, &mut m, Expect::Any, 2),
            Err(StoreError::Read { .. } | StoreError::Write { .. })
        ));
        assert_eq!(fs::read(&path).expect("read"), before);
        assert_eq!(m.revision, 1, "the revision only moves on success");
    }

    #[test]
    fn the_lock_is_exclusive() {
        let s = Scratch::new("lock");
        let path = s.0.join("model.json");
        let held = ModelLock::acquire(&path, Duration::from_millis(10)).expect("lock");
        let e = ModelLock::acquire(&path, Duration::from_millis(60)).expect_err("must fail");
        assert!(e.to_string().contains("another procwatch held"), "{e}");
        drop(held);
        ModelLock::acquire(&path, Duration::from_millis(10)).expect("free again");
    }

    #[test]
    fn the_path_comes_from_cli_config_or_home() {
        let mut cfg = crate::config::Baseline::default();
        assert_eq!(
            resolve_path(Some(Path::new("/x/m.json")), &cfg),
            Ok(PathBuf::from("/x/m.json"))
        );
        cfg.model_path = Some("/var/lib/procwatch/model.json".into());
        assert_eq!(
            resolve_path(None, &cfg),
            Ok(PathBuf::from("/var/lib/procwatch/model.json"))
        );
        cfg.model_path = None;
        if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
            assert_eq!(
                resolve_path(None, &cfg),
                Ok(PathBuf::from(home).join(".local/share/procwatch/model.json"))
            );
        }
    }
}
