//! The one way procwatch opens a process's files: through a handle of its `/proc/<pid>`
//! directory ([`PidDir`]), so every file read through it belongs to the same process even if the
//! pid is reused meanwhile; plus the raw open/readlink calls and a chunked line reader.
use std::{
    ffi::CStr,
    fs::File,
    io::{self, Read, Write},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

use super::ReadError;

/// Longest link target read (PATH_MAX).
pub(crate) const LINK_MAX: usize = 4096;
/// Chunk size for streamed files (maps, net/tcp): large enough for few read syscalls.
const CHUNK: usize = 64 * 1024;
/// No line of a /proc file comes near this (a maps line is at most ~4 KiB of escaped path).
const LINE_MAX: usize = 1024 * 1024;

/// Calls `f` with each line of `r` (without its '\n'), reading in chunks into `buf` so a large
/// file is never held whole.
pub(crate) fn for_each_line(
    mut r: impl Read,
    buf: &mut Vec<u8>,
    mut f: impl FnMut(&[u8]),
) -> io::Result<()> {
    buf.clear();
    buf.resize(CHUNK, 0);
    let mut filled = 0;
    loop {
        if filled == buf.len() {
            // One line fills the whole buffer: grow, within reason.
            if buf.len() >= LINE_MAX {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "line too long"));
            }
            buf.resize(buf.len() * 2, 0);
        }
        let n = match r.read(&mut buf[filled..]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            if filled > 0 {
                f(&buf[..filled]);
            }
            return Ok(());
        }
        let mut start = filled;
        filled += n;
        // Only the new bytes can hold a newline: everything before was an unfinished line.
        let mut line_start = 0;
        while let Some(pos) = buf[start..filled].iter().position(|&b| b == b'\n') {
            f(&buf[line_start..start + pos]);
            line_start = start + pos + 1;
            start = line_start;
        }
        buf.copy_within(line_start..filled, 0);
        filled -= line_start;
    }
}

/// An open `/proc/<pid>` directory: every file read through it belongs to the same process.
#[derive(Debug)]
pub(crate) struct PidDir {
    fd: OwnedFd,
    pid: u32,
}

/// ENOENT/ESRCH on a file of a process means the process is gone.
pub(crate) fn classify(pid: u32, file: &'static str, e: io::Error) -> ReadError {
    match e.raw_os_error() {
        Some(libc::ENOENT | libc::ESRCH) => ReadError::Vanished { pid },
        _ => ReadError::Io {
            pid,
            file,
            source: e,
        },
    }
}

/// `/proc/<pid>/<suffix>` as a C string in a stack buffer.
pub(crate) fn proc_path<'a>(pid: u32, suffix: &str, out: &'a mut [u8; 64]) -> Option<&'a CStr> {
    out.fill(0);
    // The last byte stays NUL: a path that does not fit fails to write.
    let len = out.len() - 1;
    write!(&mut out[..len], "/proc/{pid}{suffix}").ok()?;
    CStr::from_bytes_until_nul(out).ok()
}

/// open(2) with O_CLOEXEC; the result owns the descriptor.
pub(crate) fn open_raw(dirfd: Option<&OwnedFd>, path: &CStr, flags: i32) -> io::Result<OwnedFd> {
    let flags = flags | libc::O_CLOEXEC;
    // SAFETY: NUL-terminated path, a valid directory fd when given; the result is checked.
    let raw = unsafe {
        match dirfd {
            Some(d) => libc::openat(d.as_raw_fd(), path.as_ptr(), flags),
            None => libc::open(path.as_ptr(), flags),
        }
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// readlinkat(2) into `buf`; the target's length. A result equal to `buf.len()` may be cut.
pub(crate) fn read_link_at(
    dirfd: Option<&OwnedFd>,
    name: &CStr,
    buf: &mut [u8],
) -> io::Result<usize> {
    let dirfd = dirfd.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
    // SAFETY: NUL-terminated name, a valid directory fd (or AT_FDCWD), a buffer of `buf.len()`.
    let n = unsafe { libc::readlinkat(dirfd, name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

impl PidDir {
    /// Opens `/proc/<pid>`; [`ReadError::Vanished`] when there is no such process.
    pub(crate) fn open(pid: u32) -> Result<Self, ReadError> {
        let mut path = [0u8; 64];
        let path = proc_path(pid, "", &mut path).ok_or(ReadError::Vanished { pid })?;
        let fd = open_raw(None, path, libc::O_RDONLY | libc::O_DIRECTORY)
            .map_err(|e| classify(pid, "", e))?;
        Ok(Self { fd, pid })
    }

    /// The directory descriptor, for `*at` calls relative to it.
    pub(crate) fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.fd.as_fd()
    }

    /// The pid this handle was opened for.
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// A [`ReadError::Malformed`] for `file` of this process.
    pub(crate) fn malformed(&self, file: &'static str) -> ReadError {
        ReadError::Malformed {
            pid: self.pid,
            file,
        }
    }

    /// Classifies an error reading `file` of this process.
    pub(crate) fn classify(&self, file: &'static str, e: io::Error) -> ReadError {
        classify(self.pid, file, e)
    }

    /// Opens `name` (relative; magic links such as `exe` are followed) for reading.
    pub(crate) fn open_file(&self, name: &CStr, file: &'static str) -> Result<File, ReadError> {
        open_raw(Some(&self.fd), name, libc::O_RDONLY)
            .map(File::from)
            .map_err(|e| self.classify(file, e))
    }

    /// Reads `name` into `buf` (cleared first), at most `limit` bytes; true when cut.
    pub(crate) fn read(
        &self,
        name: &CStr,
        file: &'static str,
        buf: &mut Vec<u8>,
        limit: usize,
    ) -> Result<bool, ReadError> {
        buf.clear();
        let f = self.open_file(name, file)?;
        f.take(limit as u64 + 1)
            .read_to_end(buf)
            .map_err(|e| self.classify(file, e))?;
        let truncated = buf.len() > limit;
        buf.truncate(limit);
        Ok(truncated)
    }

    /// The target of a link in the directory (`exe`, `cwd`); `None` when it cannot be read.
    pub(crate) fn read_link(&self, name: &CStr, buf: &mut Vec<u8>) -> Option<std::path::PathBuf> {
        buf.resize(LINK_MAX, 0);
        let n = read_link_at(Some(&self.fd), name, buf).ok()?;
        buf.get(..n).map(crate::text::path_from_bytes)
    }

    /// True while the process still exists (a zombie counts), checked through this handle.
    pub(crate) fn alive(&self) -> bool {
        open_raw(Some(&self.fd), c"stat", libc::O_RDONLY).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    #[test]
    fn lines_across_chunks_and_without_final_newline() {
        let mut text = Vec::new();
        for i in 0..20_000 {
            writeln!(text, "line {i}").expect("vec");
        }
        text.extend_from_slice(&vec![b'x'; 3 * CHUNK]);
        let mut buf = Vec::new();
        let mut lines = Vec::new();
        for_each_line(Cursor::new(&text), &mut buf, |l| lines.push(l.to_vec())).expect("read");
        assert_eq!(lines.len(), 20_001);
        assert_eq!(lines[12_345], b"line 12345");
        assert_eq!(lines[20_000].len(), 3 * CHUNK);
        let huge = vec![b'y'; LINE_MAX + 1];
        let err = for_each_line(Cursor::new(huge), &mut buf, |_| {}).expect_err("too long");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
