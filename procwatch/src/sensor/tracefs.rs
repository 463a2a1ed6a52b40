//! Finding (or mounting) tracefs, and reading tracepoint format files.
use std::path::{Path, PathBuf};

use tracing::info;

/// Where tracefs is normally mounted.
pub const TRACEFS: &str = "/sys/kernel/tracing";
/// The older location under debugfs.
pub const DEBUGFS_TRACING: &str = "/sys/kernel/debug/tracing";

/// tracefs is missing and could not be mounted.
#[derive(Debug, thiserror::Error)]
#[error(
    "tracefs is not mounted at {TRACEFS} and mounting it failed ({reason}); \
     tracepoints cannot be attached. As root: mount -t tracefs tracefs {TRACEFS}"
)]
pub struct TracefsError {
    /// Why mounting failed.
    pub reason: String,
}

fn has_events(root: &Path) -> bool {
    root.join("events").is_dir()
}

/// Returns the tracefs root, mounting it at [`TRACEFS`] when neither location has it.
pub fn ensure_mounted() -> Result<PathBuf, TracefsError> {
    for root in [TRACEFS, DEBUGFS_TRACING] {
        if has_events(Path::new(root)) {
            return Ok(PathBuf::from(root));
        }
    }
    mount_tracefs().map_err(|reason| TracefsError { reason })?;
    if has_events(Path::new(TRACEFS)) {
        info!("mounted tracefs at {TRACEFS}");
        Ok(PathBuf::from(TRACEFS))
    } else {
        Err(TracefsError {
            reason: "mounted, but it has no events directory".into(),
        })
    }
}

fn mount_tracefs() -> Result<(), String> {
    let target = std::ffi::CString::new(TRACEFS).map_err(|e| e.to_string())?;
    let fstype = c"tracefs";
    // SAFETY: NUL-terminated strings that outlive the call; null data is allowed.
    let rc = unsafe {
        libc::mount(
            fstype.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        let err = std::io::Error::last_os_error();
        Err(match err.raw_os_error() {
            Some(libc::EPERM) => format!("{err}: procwatch needs to run as root"),
            _ => err.to_string(),
        })
    }
}

/// Offset of `field` in a tracepoint's record, from its format file.
pub fn field_offset(root: &Path, category: &str, name: &str, field: &str) -> Option<u64> {
    let text =
        std::fs::read_to_string(root.join("events").join(category).join(name).join("format"))
            .ok()?;
    parse_field_offset(&text, field)
}

/// Finds `field:<type> <field>;\toffset:N;` in format text.
pub fn parse_field_offset(format: &str, field: &str) -> Option<u64> {
    format.lines().find_map(|line| {
        let decl = line.trim().strip_prefix("field:")?;
        let (decl, rest) = decl.split_once(';')?;
        let name = decl.split_whitespace().last()?;
        let name = name.split('[').next()?;
        if name != field {
            return None;
        }
        rest.trim()
            .strip_prefix("offset:")?
            .split(';')
            .next()?
            .parse()
            .ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXIT_FORMAT: &str = "name: sched_process_exit\nID: 321\nformat:\n\
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
\tfield:char comm[16];\toffset:8;\tsize:16;\tsigned:0;\n\
\tfield:pid_t pid;\toffset:24;\tsize:4;\tsigned:1;\n\
\tfield:bool group_dead;\toffset:32;\tsize:1;\tsigned:0;\n";

    #[test]
    fn finds_field_offsets() {
        assert_eq!(parse_field_offset(EXIT_FORMAT, "group_dead"), Some(32));
        assert_eq!(parse_field_offset(EXIT_FORMAT, "comm"), Some(8));
        assert_eq!(parse_field_offset(EXIT_FORMAT, "pid"), Some(24));
        assert_eq!(parse_field_offset(EXIT_FORMAT, "missing"), None);
    }
}
