//! systemd's notify protocol (`Type=notify`): a datagram to `$NOTIFY_SOCKET`; and its
//! watchdog (`WatchdogSec=`), which the engine's loop pings.
use std::{os::unix::net::UnixDatagram, time::Duration};

use tracing::debug;

/// Sends `state` (e.g. `READY=1`) when running under systemd; a no-op otherwise.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = UnixDatagram::unbound() else {
        return;
    };
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str());
    let result = if let Some(name) = bytes.strip_prefix(b"@") {
        // An abstract socket: '@' stands for the leading NUL.
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name)
            .and_then(|addr| sock.send_to_addr(state.as_bytes(), &addr))
    } else {
        sock.send_to(state.as_bytes(), std::path::Path::new(&path))
    };
    if let Err(e) = result {
        debug!(error = %e, "sd_notify failed");
    }
}

/// The watchdog systemd asked for, if any: `WATCHDOG=1` is due every `every`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watchdog {
    /// Time between pings: half of `$WATCHDOG_USEC`, as sd_watchdog_enabled(3) advises.
    pub every: Duration,
}

impl Watchdog {
    /// From the environment systemd sets: `$WATCHDOG_USEC`, and `$WATCHDOG_PID` when set must
    /// be this process (a child that inherited the variables does not ping for its parent).
    pub fn from_env() -> Option<Self> {
        let usec = std::env::var("WATCHDOG_USEC").ok();
        let pid = std::env::var("WATCHDOG_PID").ok();
        Self::parse(usec.as_deref(), pid.as_deref(), std::process::id())
    }

    fn parse(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<Self> {
        let usec: u64 = usec?.trim().parse().ok().filter(|&u| u > 0)?;
        if let Some(pid) = pid
            && pid.trim().parse::<u32>().ok() != Some(me)
        {
            return None;
        }
        Some(Self {
            every: Duration::from_micros(usec / 2).max(Duration::from_millis(1)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_follows_sd_watchdog_enabled() {
        let w = |u, p| Watchdog::parse(u, p, 42).map(|w| w.every);
        assert_eq!(w(Some("30000000"), None), Some(Duration::from_secs(15)));
        assert_eq!(
            w(Some("30000000"), Some("42")),
            Some(Duration::from_secs(15))
        );
        assert_eq!(
            w(Some("30000000"), Some("43")),
            None,
            "another process's watchdog"
        );
        assert_eq!(w(Some("30000000"), Some("x")), None);
        assert_eq!(w(None, Some("42")), None);
        assert_eq!(w(Some("0"), None), None);
        assert_eq!(w(Some("-5"), None), None);
        assert_eq!(w(Some("soon"), None), None);
        assert_eq!(
            w(Some("1"), None),
            Some(Duration::from_millis(1)),
            "never a zero period"
        );
    }
}
