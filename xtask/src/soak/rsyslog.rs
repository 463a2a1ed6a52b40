//! A private rsyslogd for the soak: one TCP input on a free loopback port, every message
//! written to one file as `app-name|msgid|msg`, so procwatch's alerts can be counted and
//! parsed as rsyslogd received them. Killed when dropped.
use std::{
    io::Write,
    net::{Ipv4Addr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use super::sample::Tail;
use crate::{bench::monitors, sh::Result};

const RSYSLOGD: &str = "/usr/sbin/rsyslogd";

/// A running private rsyslogd.
pub struct Rsyslog {
    child: Child,
    /// Its TCP port on 127.0.0.1.
    pub port: u16,
    /// Where it writes what it received.
    pub out: PathBuf,
}

impl Rsyslog {
    /// Starts rsyslogd with its config, state and output in `dir`, and waits until a probe
    /// message has gone through.
    pub fn start(dir: &Path) -> Result<Rsyslog> {
        if !Path::new(RSYSLOGD).is_file() {
            return Err(format!(
                "{RSYSLOGD} is missing: install the Debian package rsyslog (cargo xtask setup \
                 does)"
            ));
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        // Free when this returns; rsyslogd binds it right after (a clash fails the probe).
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free loopback port for rsyslogd: {e}"))?
            .port();
        let out = dir.join("received.log");
        // The default message size (8 KiB): procwatch's messages must fit it.
        let conf = format!(
            r#"global(workDirectory="{dir}")
module(load="imtcp")
input(type="imtcp" address="127.0.0.1" port="{port}")
template(name="Fields" type="string" string="%app-name%|%msgid%|%msg%\n")
*.* action(type="omfile" file="{out}" template="Fields")
"#,
            dir = dir.display(),
            out = out.display(),
        );
        let conf_path = dir.join("rsyslog.conf");
        std::fs::write(&conf_path, conf)
            .map_err(|e| format!("cannot write {}: {e}", conf_path.display()))?;
        let log = std::fs::File::create(dir.join("rsyslogd.stderr"))
            .map_err(|e| format!("cannot create rsyslogd's log: {e}"))?;
        let mut cmd = Command::new(RSYSLOGD);
        cmd.arg("-n")
            .arg("-f")
            .arg(&conf_path)
            .arg("-i")
            .arg(dir.join("rsyslogd.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        monitors::own_group(&mut cmd, libc::SIGKILL);
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {RSYSLOGD}: {e}"))?;
        let mut rs = Rsyslog { child, port, out };
        rs.wait_ready(dir)?;
        Ok(rs)
    }

    /// Sends a probe over TCP until rsyslogd has written it out.
    fn wait_ready(&mut self, dir: &Path) -> Result {
        let probe = b"<13>1 - - probe - ready - ready";
        let mut tail = Tail::new(&self.out);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            self.check_alive()?;
            if let Ok(mut s) = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)) {
                let mut frame = format!("{} ", probe.len()).into_bytes();
                frame.extend_from_slice(probe);
                let _ = s.write_all(&frame);
            }
            thread::sleep(Duration::from_millis(200));
            if tail.lines().iter().any(|l| l.starts_with("probe|ready|")) {
                return Ok(());
            }
        }
        Err(format!(
            "rsyslogd passed no probe within 30 s (its config and log are in {})",
            dir.display()
        ))
    }

    /// Fails once rsyslogd has exited.
    pub fn check_alive(&mut self) -> Result {
        match self.child.try_wait() {
            Ok(Some(st)) => Err(format!("rsyslogd exited ({st})")),
            _ => Ok(()),
        }
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
