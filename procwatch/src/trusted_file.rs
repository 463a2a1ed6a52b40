//! Reading a file whose content steers procwatch (config layers; any settings or secret file
//! read as root) without letting another user steer it.
//!
//! procwatch runs as root, so a file it takes settings from must be one only root can change.
//! When the effective uid is 0, a file not owned by root, or writable by its group or by
//! everyone, is refused with a message naming the file, its owner and its mode. A `sudo -E`
//! run keeps the invoking user's HOME: without this, root would silently load that user's
//! `~/.procwatch.yaml`, and the user could whitelist anything.
//!
//! The checks are made on the opened file (`fstat` of the descriptor), not on the path: the
//! path could be swapped between a check and the open. A symlink is followed and the file it
//! leads to is judged, so a link to a file another user owns is refused like the file itself.
//! The directory the file is in is not judged: whoever can write there can only replace the
//! file by one they own (refused), or by a link to a file root already owns and protects
//! (root's own settings), or remove it.
//!
//! For everyone, root or not: only regular files (a FIFO or a device could block the read
//! forever, or never end) of at most [`MAX_BYTES`].
use std::{
    fs::{File, Metadata},
    io::{self, Read},
    os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

/// Largest file read (1 MiB): a complete config is about 2 KiB.
pub const MAX_BYTES: u64 = 1 << 20;

/// Why a file was not read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Opening or reading failed (missing, permission denied, not UTF-8, ...).
    // Not `source`: the message already includes the I/O error, and anyhow would print it twice.
    #[error("{}: cannot read: {error}", crate::text::path_safe(path))]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        error: io::Error,
    },
    /// The file was opened but is not one procwatch may trust.
    #[error("{}: refused: {why}", crate::text::path_safe(path))]
    Refused {
        /// The file, as named by the caller.
        path: PathBuf,
        /// What is wrong with it.
        why: Refusal,
    },
}

impl ReadError {
    /// Whether the file does not exist (an optional file may be absent).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Io { error, .. } if error.kind() == io::ErrorKind::NotFound)
    }
}

/// What makes a file untrustworthy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A directory, FIFO, socket or device.
    #[error("not a regular file but a {0}")]
    NotRegular(&'static str),
    /// Larger than [`MAX_BYTES`].
    #[error("{size} bytes, more than the {max} bytes procwatch reads from a settings file")]
    TooLarge {
        /// Its size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// Owned by someone other than root (or the effective user), or writable by others.
    #[error(
        "owner {} and mode {mode:04o}: procwatch runs as root and reads settings only from \
         files owned by root and not writable by group or others, and this one {problem} \
         (chown root, chmod go-w)",
        owner_text(*uid, owner.as_deref())
    )]
    Untrusted {
        /// Owner uid.
        uid: u32,
        /// Owner name, when it has one.
        owner: Option<String>,
        /// Permission bits.
        mode: u32,
        /// What is wrong, in words ("is owned by another user", ...).
        problem: &'static str,
    },
}

/// "uid 1000 (alice)" or "uid 1000".
fn owner_text(uid: u32, name: Option<&str>) -> String {
    match name {
        Some(n) => format!("uid {uid} ({})", crate::text::terminal_safe(n.as_bytes())),
        None => format!("uid {uid}"),
    }
}

/// The effective uid of this process.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Whether a file with this metadata may be read by a process with effective uid `euid`.
/// Owner and mode matter only to root; type and size to everyone.
pub fn check(meta: &Metadata, euid: u32) -> Result<(), Refusal> {
    let ft = meta.file_type();
    if !ft.is_file() {
        let kind = if ft.is_dir() {
            "directory"
        } else if ft.is_fifo() {
            "FIFO"
        } else if ft.is_socket() {
            "socket"
        } else if ft.is_char_device() {
            "character device"
        } else if ft.is_block_device() {
            "block device"
        } else {
            "special file"
        };
        return Err(Refusal::NotRegular(kind));
    }
    if meta.len() > MAX_BYTES {
        return Err(Refusal::TooLarge {
            size: meta.len(),
            max: MAX_BYTES,
        });
    }
    if euid != 0 {
        return Ok(());
    }
    let uid = meta.uid();
    let mode = meta.mode() & 0o7777;
    let problem = if uid != 0 && uid != euid {
        "is owned by another user"
    } else if mode & 0o022 == 0o022 {
        "can be changed by its group and by everyone"
    } else if mode & 0o002 != 0 {
        "can be changed by everyone"
    } else if mode & 0o020 != 0 {
        "can be changed by its group"
    } else {
        return Ok(());
    };
    Err(Refusal::Untrusted {
        uid,
        owner: crate::process::users::UserNames::new()
            .name(uid)
            .map(str::to_string),
        mode,
        problem,
    })
}

/// Opens `path` and checks the opened file with [`check`] for this process's effective uid.
pub fn open(path: &Path) -> Result<File, ReadError> {
    let io_err = |error| ReadError::Io {
        path: path.to_path_buf(),
        error,
    };
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer; a FIFO is
    // refused below anyway. O_NOCTTY: a terminal device never becomes ours.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(io_err)?;
    let meta = file.metadata().map_err(io_err)?;
    check(&meta, euid()).map_err(|why| ReadError::Refused {
        path: path.to_path_buf(),
        why,
    })?;
    Ok(file)
}

/// Reads `path` as UTF-8 text after [`open`] accepted it.
pub fn read_to_string(path: &Path) -> Result<String, ReadError> {
    let file = open(path)?;
    let mut text = String::new();
    // A file that grows after the check is still read only up to the limit.
    let n = file
        .take(MAX_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|error| ReadError::Io {
            path: path.to_path_buf(),
            error,
        })?;
    if n as u64 > MAX_BYTES {
        return Err(ReadError::Refused {
            path: path.to_path_buf(),
            why: Refusal::TooLarge {
                size: n as u64,
                max: MAX_BYTES,
            },
        });
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A scratch directory, removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(tag: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("pw-trusted-{tag}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }

        fn file(&self, name: &str, mode: u32) -> PathBuf {
            let path = self.0.join(name);
            std::fs::write(&path, "min_score: 1\n").unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            path
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// The mode and owner rules, judged as root would judge them (any caller can run this:
    /// the metadata is the caller's own file, and the euid is passed in).
    #[test]
    fn root_refuses_writable_by_others() {
        let dir = Scratch::new("mode");
        let me = euid();
        for (mode, ok) in [
            (0o600, true),
            (0o644, true),
            (0o640, true),
            (0o664, false),
            (0o666, false),
            (0o646, false),
            (0o4644, true),
        ] {
            let path = dir.file(&format!("m{mode:o}"), mode);
            let meta = std::fs::metadata(&path).unwrap();
            // As root (when the file's owner is root or us, the effective user).
            let as_root = check(&meta, 0);
            if me == 0 {
                assert_eq!(as_root.is_ok(), ok, "{mode:o}: {as_root:?}");
            } else {
                // Owned by an ordinary user: root refuses it whatever the mode.
                assert!(
                    matches!(&as_root, Err(Refusal::Untrusted { problem, .. }) if problem.contains("another user")),
                    "{mode:o}: {as_root:?}"
                );
            }
            // Not root: owner and mode are not judged.
            assert!(check(&meta, 12345).is_ok(), "{mode:o}");
        }
    }

    #[test]
    fn message_names_owner_and_mode() {
        let why = Refusal::Untrusted {
            uid: 65534,
            owner: Some("nobody".into()),
            mode: 0o666,
            problem: "is owned by another user",
        };
        let text = why.to_string();
        assert!(text.contains("uid 65534 (nobody)"), "{text}");
        assert!(text.contains("mode 0666"), "{text}");
        assert!(text.contains("is owned by another user"), "{text}");
    }

    #[test]
    fn fifo_directory_and_device_are_refused_without_blocking() {
        let dir = Scratch::new("types");
        let fifo = dir.0.join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // No writer: a blocking open would hang here forever.
        let err = read_to_string(&fifo).unwrap_err();
        assert!(
            err.to_string().contains("not a regular file but a FIFO"),
            "{err}"
        );
        let err = read_to_string(&dir.0).unwrap_err();
        assert!(err.to_string().contains("directory"), "{err}");
        let err = read_to_string(Path::new("/dev/zero")).unwrap_err();
        assert!(err.to_string().contains("character device"), "{err}");
    }

    #[test]
    fn large_files_are_refused() {
        let dir = Scratch::new("size");
        let path = dir.0.join("big.yaml");
        std::fs::write(&path, vec![b'#'; (MAX_BYTES + 1) as usize]).unwrap();
        let err = read_to_string(&path).unwrap_err();
        assert!(
            matches!(
                &err,
                ReadError::Refused {
                    why: Refusal::TooLarge { .. },
                    ..
                }
            ),
            "{err}"
        );
        let ok = dir.file("ok.yaml", 0o600);
        assert_eq!(read_to_string(&ok).unwrap(), "min_score: 1\n");
        assert!(
            read_to_string(&dir.0.join("missing"))
                .unwrap_err()
                .is_not_found()
        );
    }
}
