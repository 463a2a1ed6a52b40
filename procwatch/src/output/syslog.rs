//! Syslog (`outputs.syslog`): messages whose MSG is the alert JSON, over UDP (RFC 5424, one
//! datagram each, RFC 5426), over TCP (RFC 5424 with octet-counting framing `LEN SP MSG`,
//! RFC 6587), or to a local socket (`unix:///dev/log`).
//!
//! ```text
//! udp, tcp: <84>1 2026-01-15T14:32:18.123Z web-1 procwatch 4242 alert - {"schema":"procwatch.alert/v1",...}
//! unix:     <84>Jan 15 14:32:18 procwatch[4242]: {"schema":"procwatch.alert/v1",...}
//! ```
//!
//! The local socket gets the format `syslog(3)` writes there rather than RFC 5424, because
//! that is what listens on it: journald does not parse RFC 5424 on `/dev/log` (systemd issue
//! 19251), and rsyslog's imuxsock, with its default parser for that socket, takes the `1`
//! for the program name and keeps the rest of the header in the message. In the local
//! format both get program `procwatch`, the pid, the same PRI and the bare JSON message.
//!
//! * PRI: facility `authpriv` (10): alerts are security events, and their command lines can
//!   hold secrets, which is what authpriv is for: stock rsyslog sends it only to the
//!   restricted `/var/log/auth.log`, not to `/var/log/syslog`.
//! * Severity from the score relative to `min_score` ([`Severity`]): `crit` (2) at 3× and
//!   above, `err` (3) at 2×, `warning` (4) otherwise, so PRI is 82, 83 or 84.
//! * RFC 5424: TIMESTAMP is the alert's (RFC 3339, ms, UTC); HOSTNAME the alert's host;
//!   APP-NAME `procwatch`; PROCID procwatch's pid; MSGID `alert`; no structured data; MSG
//!   the same JSON line the JSONL file gets, without a BOM.
//! * Local: the alert's time in local time (`%b %e %H:%M:%S`, which local daemons replace
//!   by the time of receipt anyway), `procwatch[PID]: `, then the JSON. No host name: the
//!   daemon adds its own.
//! * A message is at most [`MAX_MESSAGE_BYTES`], which passes intact through receivers with
//!   the common 8 KiB limit (rsyslog's default). A bigger alert (a huge command line) is
//!   shrunk, not cut: long strings and lists are shortened with a `...[+N ...]` marker, so
//!   the MSG stays valid JSON of the same schema; the JSONL file keeps the full alert.
//!
//! A slow or dead server must never hold up detection or the other sinks, so `write` only
//! formats the message and pushes it into a bounded queue; a thread of its own owns the
//! socket, connects lazily and reconnects with exponential backoff (100 ms doubling to 30 s).
//! When the queue is full the alert is dropped and counted (with a rate-limited warning);
//! when procwatch stops, the queue gets a bounded time to drain and the rest is counted as
//! dropped. Delivery is at least once over TCP (a message whose write failed is sent again
//! on the next connection) and best effort over UDP, where a lost datagram goes unnoticed.
use std::{
    borrow::Cow,
    io::{self, Write},
    net::{TcpStream, ToSocketAddrs, UdpSocket},
    os::unix::net::UnixDatagram,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel},
    },
    time::{Duration, Instant},
};

use tracing::{info, warn};

use super::{Severity, Sink, SinkStats};
use crate::{alert::Alert, config::SyslogTarget};

/// Facility `authpriv` (security messages that may hold private data).
pub const FACILITY: u8 = 10;
/// Largest message sent, header included (TCP framing excluded).
pub const MAX_MESSAGE_BYTES: usize = 8000;
/// Default number of messages waiting for the server before new ones are dropped.
pub const QUEUE_CAPACITY: usize = 10_000;

/// First reconnection delay.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest reconnection delay.
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A connect or write that takes longer fails (and is retried): the thread must stay able to
/// notice shutdown.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the thread looks at the stop flag while idle or waiting to reconnect.
const POLL: Duration = Duration::from_millis(50);
/// A message whose send fails this many times in a row is dropped, so one message the server
/// always rejects cannot stall the rest.
const MAX_ATTEMPTS: u32 = 5;
/// At most one warning about drops per this interval.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Tunables; the defaults are what procwatch runs with.
#[derive(Debug, Clone)]
pub struct SyslogOptions {
    /// Queue length (messages).
    pub capacity: usize,
    /// How long the final flush waits for the queue to drain.
    pub flush_timeout: Duration,
}

impl Default for SyslogOptions {
    fn default() -> Self {
        Self {
            capacity: QUEUE_CAPACITY,
            flush_timeout: Duration::from_secs(2),
        }
    }
}

/// Counters shared between the sink and its sender thread.
#[derive(Default)]
struct Shared {
    /// Messages queued.
    accepted: AtomicU64,
    /// Messages the socket took.
    sent: AtomicU64,
    /// Messages the thread gave up on (rejected [`MAX_ATTEMPTS`] times).
    discarded: AtomicU64,
    /// Set when the sink goes away: the thread exits at once.
    stop: AtomicBool,
    /// Set by `flush`: try to connect now rather than at the end of the backoff.
    hurry: AtomicBool,
    /// Set by the thread as it exits.
    exited: AtomicBool,
}

impl Shared {
    fn outstanding(&self) -> u64 {
        let done = self.sent.load(Ordering::Acquire) + self.discarded.load(Ordering::Acquire);
        self.accepted.load(Ordering::Acquire).saturating_sub(done)
    }
}

/// A warning that is logged at most once per [`WARN_EVERY`].
struct RateLimit {
    last: Option<Instant>,
}

impl RateLimit {
    fn new() -> Self {
        Self { last: None }
    }

    fn ready(&mut self) -> bool {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < WARN_EVERY)
        {
            return false;
        }
        self.last = Some(now);
        true
    }
}

/// How the header is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// RFC 5424, for servers (UDP, TCP).
    Rfc5424,
    /// What `syslog(3)` writes to `/dev/log`, for local daemons (unix sockets).
    Local,
}

impl Format {
    /// The format `target` gets.
    pub fn for_target(target: &SyslogTarget) -> Self {
        match target {
            SyslogTarget::Unix(_) => Self::Local,
            SyslogTarget::Udp { .. } | SyslogTarget::Tcp { .. } => Self::Rfc5424,
        }
    }
}

/// Alerts to a syslog server, queued and sent by a thread of their own.
pub struct SyslogSink {
    target: SyslogTarget,
    format: Format,
    min_score: f64,
    pid: u32,
    opts: SyslogOptions,
    tx: Option<SyncSender<Vec<u8>>>,
    shared: Arc<Shared>,
    /// Dropped before queueing: queue full, or too big even when shrunk.
    dropped: u64,
    drop_warning: RateLimit,
}

impl SyslogSink {
    /// Starts the sender thread for `target`; nothing is connected until the first alert.
    /// `min_score` sets the severity scale.
    pub fn start(target: SyslogTarget, min_score: f64) -> io::Result<Self> {
        Self::with_options(target, min_score, SyslogOptions::default())
    }

    /// Like `start`, with other tunables.
    pub fn with_options(
        target: SyslogTarget,
        min_score: f64,
        opts: SyslogOptions,
    ) -> io::Result<Self> {
        let (tx, rx) = sync_channel(opts.capacity.max(1));
        let shared = Arc::new(Shared::default());
        let worker = Worker {
            target: target.clone(),
            rx,
            shared: shared.clone(),
            conn: None,
            backoff: Backoff::new(),
            down: false,
            send_warning: RateLimit::new(),
        };
        std::thread::Builder::new()
            .name("procwatch-syslog".into())
            .spawn(move || worker.run())?;
        Ok(Self {
            format: Format::for_target(&target),
            target,
            min_score,
            pid: std::process::id(),
            opts,
            tx: Some(tx),
            shared,
            dropped: 0,
            drop_warning: RateLimit::new(),
        })
    }

    fn drop_one(&mut self, why: &str) {
        self.dropped += 1;
        if self.drop_warning.ready() {
            warn!(
                sink = %self.name(),
                dropped = self.dropped,
                "syslog: alert dropped ({why}); the other sinks still get every alert"
            );
        }
    }
}

impl Drop for SyslogSink {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        // Closing the queue wakes the thread if it waits for a message.
        self.tx = None;
    }
}

impl Sink for SyslogSink {
    fn name(&self) -> String {
        format!("syslog:{}", self.target)
    }

    /// Never blocks: formats, queues, and counts a drop when the queue is full.
    fn write(&mut self, alert: &Alert, json: &str) -> io::Result<()> {
        let severity = Severity::from_score(alert.total_score, self.min_score);
        let header = header(alert, severity, self.pid, self.format);
        let Some(body) = fit(alert, json, header.len()) else {
            self.drop_one("too big even when shrunk");
            return Ok(());
        };
        let mut msg = Vec::with_capacity(header.len() + body.len());
        msg.extend_from_slice(header.as_bytes());
        msg.extend_from_slice(body.as_bytes());
        let Some(tx) = &self.tx else {
            self.drop_one("sink closed");
            return Ok(());
        };
        match tx.try_send(msg) {
            Ok(()) => {
                self.shared.accepted.fetch_add(1, Ordering::AcqRel);
            }
            Err(TrySendError::Full(_)) => self.drop_one("queue full: server slow or unreachable"),
            Err(TrySendError::Disconnected(_)) => self.drop_one("sender thread gone"),
        }
        Ok(())
    }

    /// On SIGHUP: no file to reopen, but try the server at once rather than at the end of
    /// the backoff (the operator may just have fixed it).
    fn reopen(&mut self) -> io::Result<()> {
        self.shared.hurry.store(true, Ordering::Release);
        Ok(())
    }

    /// Gives the queue up to `flush_timeout` to drain (reconnecting at once if disconnected).
    fn flush(&mut self) -> io::Result<()> {
        self.shared.hurry.store(true, Ordering::Release);
        let end = Instant::now() + self.opts.flush_timeout;
        while self.shared.outstanding() > 0 && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    /// Stops the thread; whatever it has not sent by now counts as dropped.
    fn final_stats(&mut self) -> Option<SinkStats> {
        self.shared.stop.store(true, Ordering::Release);
        self.tx = None;
        // A send in progress may still complete; wait briefly so it is counted as written.
        let end = Instant::now() + Duration::from_millis(200);
        while !self.shared.exited.load(Ordering::Acquire) && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(5));
        }
        // Sent first: what is accepted later can only be more, so the counts add up.
        let sent = self.shared.sent.load(Ordering::Acquire);
        let accepted = self.shared.accepted.load(Ordering::Acquire);
        let stats = SinkStats {
            written: sent,
            failed: 0,
            dropped: self.dropped + accepted.saturating_sub(sent),
        };
        if stats.dropped > 0 {
            warn!(
                sink = %self.name(),
                sent = stats.written,
                dropped = stats.dropped,
                "syslog: not every alert reached the server"
            );
        }
        Some(stats)
    }
}

/// The header up to and including the space before MSG.
pub fn header(alert: &Alert, severity: Severity, pid: u32, format: Format) -> String {
    let pri = u16::from(FACILITY) * 8 + u16::from(severity.syslog_code());
    match format {
        Format::Rfc5424 => format!(
            "<{pri}>1 {} {} procwatch {pid} alert - ",
            timestamp_field(&alert.timestamp),
            hostname_field(&alert.host)
        ),
        Format::Local => format!(
            "<{pri}>{} procwatch[{pid}]: ",
            local_timestamp(&alert.timestamp)
        ),
    }
}

/// The whole message for `alert` (its JSON serialisation is `json`); `None` when it cannot
/// be made to fit [`MAX_MESSAGE_BYTES`].
pub fn format_message(
    alert: &Alert,
    json: &str,
    min_score: f64,
    pid: u32,
    format: Format,
) -> Option<String> {
    let header = header(
        alert,
        Severity::from_score(alert.total_score, min_score),
        pid,
        format,
    );
    let body = fit(alert, json, header.len())?;
    Some(header + &body)
}

/// RFC 6587 octet-counting frame: the length in bytes, a space, the message.
pub fn octet_counted(msg: &[u8]) -> Vec<u8> {
    let mut frame = format!("{} ", msg.len()).into_bytes();
    frame.extend_from_slice(msg);
    frame
}

/// The alert's timestamp if it is a plausible RFC 3339 one (it is ours, but a malformed
/// header would make the receiver misparse the whole message), else the NILVALUE.
fn timestamp_field(ts: &str) -> &str {
    let plausible = (20..=35).contains(&ts.len())
        && ts
            .bytes()
            .all(|b| b.is_ascii_digit() || b"-:.TZ+".contains(&b));
    if plausible { ts } else { "-" }
}

/// The RFC 3164 timestamp (`Jan  5 14:32:18`, local time) of the alert, or of now.
fn local_timestamp(ts: &str) -> String {
    let when = chrono::DateTime::parse_from_rfc3339(ts)
        .map(|t| t.with_timezone(&chrono::Local))
        .unwrap_or_else(|_| chrono::Local::now());
    when.format("%b %e %H:%M:%S").to_string()
}

/// HOSTNAME may only hold printable ASCII without spaces, at most 255 characters.
fn hostname_field(host: &str) -> Cow<'_, str> {
    if host.is_empty() {
        return Cow::Borrowed("-");
    }
    if host.len() <= 255 && host.bytes().all(|b| b.is_ascii_graphic()) {
        return Cow::Borrowed(host);
    }
    Cow::Owned(
        host.chars()
            .map(|c| if c.is_ascii_graphic() { c } else { '_' })
            .take(255)
            .collect(),
    )
}

/// The JSON to send: `json` when the message fits, else the alert with long strings and
/// lists shortened, more and more, until it does. `None` if even that is too big.
fn fit<'a>(alert: &Alert, json: &'a str, header_len: usize) -> Option<Cow<'a, str>> {
    if header_len + json.len() <= MAX_MESSAGE_BYTES {
        return Some(Cow::Borrowed(json));
    }
    let full = serde_json::to_value(alert).ok()?;
    for (max_str, max_list) in [(1024, 64), (256, 16), (64, 4)] {
        let mut v = full.clone();
        shorten(&mut v, max_str, max_list);
        let text = serde_json::to_string(&v).ok()?;
        if header_len + text.len() <= MAX_MESSAGE_BYTES {
            return Some(Cow::Owned(text));
        }
    }
    None
}

/// Shortens every string longer than `max_str` bytes and every list longer than `max_list`
/// items, in place. Strings get a `...[+N bytes]` suffix and lists of strings (argv) a last
/// `...[+N more]` item; lists of numbers (ports) are just cut, and lists of objects (the
/// reasons, at most one per rule) are kept whole. Fixed-format fields (timestamp, sha256,
/// enums) are shorter than the smallest `max_str`, so the result still matches the schema.
fn shorten(v: &mut serde_json::Value, max_str: usize, max_list: usize) {
    use serde_json::Value;
    match v {
        Value::String(s) if s.len() > max_str => {
            let mut cut = max_str;
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            let removed = s.len() - cut;
            s.truncate(cut);
            s.push_str(&format!("...[+{removed} bytes]"));
        }
        Value::Array(items) => {
            if items.len() > max_list {
                let more = items.len() - max_list;
                match items.first() {
                    Some(Value::String(_)) => {
                        items.truncate(max_list);
                        items.push(Value::String(format!("...[+{more} more]")));
                    }
                    Some(Value::Number(_)) => items.truncate(max_list),
                    _ => {}
                }
            }
            for item in items {
                shorten(item, max_str, max_list);
            }
        }
        Value::Object(map) => {
            for item in map.values_mut() {
                shorten(item, max_str, max_list);
            }
        }
        _ => {}
    }
}

/// When to try connecting again.
struct Backoff {
    delay: Duration,
    next: Instant,
}

impl Backoff {
    fn new() -> Self {
        Self {
            delay: BACKOFF_MIN,
            next: Instant::now(),
        }
    }

    fn failed(&mut self) {
        self.next = Instant::now() + self.delay;
        self.delay = (self.delay * 2).min(BACKOFF_MAX);
    }

    fn succeeded(&mut self) {
        self.delay = BACKOFF_MIN;
    }

    fn wait(&self) -> Duration {
        self.next.saturating_duration_since(Instant::now())
    }
}

/// A connected socket.
enum Conn {
    Unix(UnixDatagram),
    Udp(UdpSocket),
    Tcp(TcpStream),
}

fn connect(target: &SyslogTarget) -> io::Result<Conn> {
    match target {
        SyslogTarget::Unix(path) => {
            let sock = UnixDatagram::unbound()?;
            sock.connect(path)?;
            // A full receive queue blocks a datagram send; time out instead, and retry.
            sock.set_write_timeout(Some(IO_TIMEOUT))?;
            Ok(Conn::Unix(sock))
        }
        SyslogTarget::Udp { host, port } => {
            let addr = (host.as_str(), *port)
                .to_socket_addrs()?
                .next()
                .ok_or_else(|| io::Error::other(format!("{host} has no address")))?;
            let local: std::net::SocketAddr = if addr.is_ipv4() {
                (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
            } else {
                (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
            };
            let sock = UdpSocket::bind(local)?;
            sock.connect(addr)?;
            Ok(Conn::Udp(sock))
        }
        SyslogTarget::Tcp { host, port } => {
            let mut last = io::Error::other(format!("{host} has no address"));
            for addr in (host.as_str(), *port).to_socket_addrs()? {
                match TcpStream::connect_timeout(&addr, IO_TIMEOUT) {
                    Ok(stream) => {
                        stream.set_write_timeout(Some(IO_TIMEOUT))?;
                        let _ = stream.set_nodelay(true);
                        return Ok(Conn::Tcp(stream));
                    }
                    Err(e) => last = e,
                }
            }
            Err(last)
        }
    }
}

impl Conn {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        match self {
            Conn::Unix(sock) => sock.send(msg).map(drop),
            Conn::Udp(sock) => sock.send(msg).map(drop),
            Conn::Tcp(stream) => {
                // A server that closed the connection still lets the next write succeed (the
                // data is lost); look for its end of stream first.
                if peer_closed(stream) {
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionReset,
                        "server closed the connection",
                    ));
                }
                // One write per frame so a message is never split across two connections.
                stream.write_all(&octet_counted(msg))
            }
        }
    }
}

fn peer_closed(stream: &TcpStream) -> bool {
    if stream.set_nonblocking(true).is_err() {
        return true;
    }
    let mut byte = [0u8; 1];
    let closed = match stream.peek(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != io::ErrorKind::WouldBlock,
    };
    stream.set_nonblocking(false).is_err() || closed
}

/// The sender thread: owns the socket and the receiving end of the queue.
struct Worker {
    target: SyslogTarget,
    rx: Receiver<Vec<u8>>,
    shared: Arc<Shared>,
    conn: Option<Conn>,
    backoff: Backoff,
    /// In an outage (warned once; an info line when it ends).
    down: bool,
    send_warning: RateLimit,
}

impl Worker {
    fn run(mut self) {
        let mut pending: Option<(Vec<u8>, u32)> = None;
        while !self.shared.stop.load(Ordering::Acquire) {
            let (msg, attempts) = match pending.take() {
                Some(p) => p,
                None => match self.rx.recv_timeout(POLL) {
                    Ok(msg) => (msg, 0),
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => break,
                },
            };
            if self.conn.is_none() && !self.reconnect() {
                pending = Some((msg, attempts));
                continue;
            }
            let Some(conn) = self.conn.as_mut() else {
                pending = Some((msg, attempts));
                continue;
            };
            match conn.send(&msg) {
                Ok(()) => {
                    self.shared.sent.fetch_add(1, Ordering::AcqRel);
                    self.backoff.succeeded();
                }
                Err(e) => {
                    self.conn = None;
                    self.backoff.failed();
                    if attempts + 1 >= MAX_ATTEMPTS {
                        self.shared.discarded.fetch_add(1, Ordering::AcqRel);
                        warn!(target_url = %self.target, error = %e,
                            "syslog: message dropped after {MAX_ATTEMPTS} failed sends");
                    } else {
                        if self.send_warning.ready() {
                            warn!(target_url = %self.target, error = %e,
                                "syslog: send failed; reconnecting");
                        }
                        pending = Some((msg, attempts + 1));
                    }
                }
            }
        }
        self.shared.exited.store(true, Ordering::Release);
    }

    /// Connects if the backoff allows (or a flush hurries it); false when still disconnected.
    fn reconnect(&mut self) -> bool {
        let wait = self.backoff.wait();
        if !wait.is_zero() && !self.shared.hurry.swap(false, Ordering::AcqRel) {
            std::thread::sleep(wait.min(POLL));
            return false;
        }
        match connect(&self.target) {
            Ok(conn) => {
                self.conn = Some(conn);
                if self.down {
                    info!(target_url = %self.target, "syslog: connected again");
                    self.down = false;
                }
                true
            }
            Err(e) => {
                self.backoff.failed();
                if !self.down {
                    warn!(target_url = %self.target, error = %e,
                        "syslog: cannot connect; alerts are queued and it is retried with backoff");
                    self.down = true;
                }
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::{
        io::Read,
        net::{TcpListener, UdpSocket},
        sync::mpsc,
    };

    use super::*;
    use crate::output::logfile::tests::sample_alert;

    fn json(a: &Alert) -> String {
        serde_json::to_string(a).unwrap()
    }

    /// Runs `f` on a thread and fails (instead of hanging) if it takes longer than `limit`.
    fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(limit)
            .unwrap_or_else(|_| panic!("did not finish within {limit:?}: it blocks"))
    }

    /// Splits an RFC 5424 message into its seven header fields (PRI+VERSION, TIMESTAMP,
    /// HOSTNAME, APP-NAME, PROCID, MSGID, SD) and MSG.
    fn parse(msg: &str) -> (Vec<&str>, serde_json::Value) {
        let mut parts = msg.splitn(8, ' ');
        let fields: Vec<&str> = parts.by_ref().take(7).collect();
        let body = parts.next().unwrap();
        (fields, serde_json::from_str(body).unwrap())
    }

    #[test]
    fn rfc5424_fields_and_pri() {
        let mut a = sample_alert();
        a.total_score = 4.0;
        let j = json(&a);
        let msg = format_message(&a, &j, 3.0, 4242, Format::Rfc5424).unwrap();
        assert_eq!(
            msg,
            format!("<84>1 2026-01-15T14:32:18.123Z web-1 procwatch 4242 alert - {j}")
        );
        let (fields, body) = parse(&msg);
        assert_eq!(fields[0], "<84>1", "authpriv.warning");
        assert_eq!(body["pid"], 2847);
        a.total_score = 6.0;
        assert!(
            format_message(&a, &j, 3.0, 1, Format::Rfc5424)
                .unwrap()
                .starts_with("<83>1 ")
        );
        a.total_score = 9.5;
        assert!(
            format_message(&a, &j, 3.0, 1, Format::Rfc5424)
                .unwrap()
                .starts_with("<82>1 ")
        );
    }

    #[test]
    fn header_fields_stay_well_formed() {
        let mut a = sample_alert();
        a.host = "bad host\nname\u{e9}".into();
        a.timestamp = "not a time".into();
        let h = header(&a, Severity::Warning, 7, Format::Rfc5424);
        assert_eq!(h, "<84>1 - bad_host_name_ procwatch 7 alert - ");
        a.host = String::new();
        assert_eq!(
            header(&a, Severity::Critical, 7, Format::Rfc5424),
            "<82>1 - - procwatch 7 alert - "
        );
    }

    #[test]
    fn local_format_is_what_syslog3_writes() {
        let a = sample_alert();
        let j = json(&a);
        let msg = format_message(&a, &j, 3.0, 4242, Format::Local).unwrap();
        let rest = msg.strip_prefix("<83>").unwrap();
        // "Jan 15 14:32:18 " in local time, whatever the zone: 16 characters.
        let (stamp, rest) = rest.split_at(16);
        assert!(
            stamp.starts_with("Jan ") && stamp.ends_with(' '),
            "{stamp:?}"
        );
        assert_eq!(stamp.matches(':').count(), 2, "{stamp:?}");
        assert_eq!(rest, format!("procwatch[4242]: {j}"));
        assert_eq!(
            Format::for_target(&SyslogTarget::Unix("/dev/log".into())),
            Format::Local
        );
        assert_eq!(
            Format::for_target(&SyslogTarget::Tcp {
                host: "h".into(),
                port: 1
            }),
            Format::Rfc5424
        );
    }

    #[test]
    fn octet_counting_frames() {
        assert_eq!(octet_counted(b"abc"), b"3 abc");
        assert_eq!(octet_counted("é".as_bytes()), "2 é".as_bytes());
        assert_eq!(octet_counted(b""), b"0 ");
    }

    #[test]
    fn hostile_bytes_stay_in_one_valid_json_msg() {
        let mut a = sample_alert();
        a.name = crate::text::os_from_bytes(b"x\n<13>1 - forged\x1b[2J\xff");
        a.cmdline = vec!["a\nb\r\0c".into()];
        let j = json(&a);
        let msg = format_message(&a, &j, 3.0, 1, Format::Rfc5424).unwrap();
        assert!(
            !msg.bytes().any(|b| b < 0x20),
            "no raw control bytes: {msg:?}"
        );
        let (_, body) = parse(&msg);
        assert_eq!(body["name"], "x\n<13>1 - forged\u{1b}[2J\u{fffd}");
    }

    #[test]
    fn oversized_alerts_are_shrunk_to_valid_json() {
        let mut a = sample_alert();
        a.cmdline = (0..5000).map(|i| format!("arg{i}")).collect();
        a.cmdline.push("y".repeat(100_000));
        a.exe = Some(format!("/tmp/{}", "d/".repeat(20_000)));
        a.remote_ports = (1..=3000).collect();
        let j = json(&a);
        assert!(j.len() > 100_000);
        let msg = format_message(&a, &j, 3.0, 1, Format::Rfc5424).unwrap();
        assert!(msg.len() <= MAX_MESSAGE_BYTES, "{}", msg.len());
        let (_, body) = parse(&msg);
        assert_eq!(body["pid"], 2847);
        assert_eq!(body["sha256"], "ab".repeat(32), "short fields untouched");
        assert_eq!(body["timestamp"], "2026-01-15T14:32:18.123Z");
        let argv = body["cmdline"].as_array().unwrap();
        assert!(argv.last().unwrap().as_str().unwrap().starts_with("...[+"));
        assert!(body["exe"].as_str().unwrap().contains("...[+"));
        assert_eq!(body["reasons"].as_array().unwrap().len(), 2);
        // Small alerts go out byte for byte.
        let small = sample_alert();
        let sj = json(&small);
        assert!(
            format_message(&small, &sj, 3.0, 1, Format::Rfc5424)
                .unwrap()
                .ends_with(&sj)
        );
    }

    #[test]
    fn shorten_cuts_at_char_boundaries() {
        let mut v = serde_json::json!({"s": "é".repeat(10)});
        shorten(&mut v, 5, 4);
        assert_eq!(v["s"], "éé...[+16 bytes]");
    }

    #[test]
    fn tcp_frames_arrive_octet_counted() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let target = SyslogTarget::Tcp {
            host: "127.0.0.1".into(),
            port,
        };
        let mut sink = SyslogSink::start(target, 3.0).unwrap();
        assert_eq!(sink.name(), format!("syslog:tcp://127.0.0.1:{port}"));
        let a = sample_alert();
        let j = json(&a);
        sink.write(&a, &j).unwrap();
        sink.write(&a, &j).unwrap();
        let (mut conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let want = format_message(&a, &j, 3.0, std::process::id(), Format::Rfc5424).unwrap();
        let frame = octet_counted(want.as_bytes());
        let mut got = vec![0u8; frame.len() * 2];
        conn.read_exact(&mut got).unwrap();
        assert_eq!(&got[..frame.len()], &frame[..]);
        assert_eq!(&got[frame.len()..], &frame[..]);
        sink.flush().unwrap();
        let stats = sink.final_stats().unwrap();
        assert_eq!(
            stats,
            SinkStats {
                written: 2,
                failed: 0,
                dropped: 0
            }
        );
    }

    #[test]
    fn tcp_reconnects_after_the_server_closes() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let target = SyslogTarget::Tcp {
            host: "127.0.0.1".into(),
            port,
        };
        let mut sink = SyslogSink::start(target, 3.0).unwrap();
        let a = sample_alert();
        let j = json(&a);
        let want = format_message(&a, &j, 3.0, std::process::id(), Format::Rfc5424).unwrap();
        let frame_len = octet_counted(want.as_bytes()).len();
        sink.write(&a, &j).unwrap();
        let (mut first, _) = listener.accept().unwrap();
        first
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut buf = vec![0u8; frame_len];
        first.read_exact(&mut buf).unwrap();
        drop(first);
        // Let the close reach the sink's socket before the next alert.
        std::thread::sleep(Duration::from_millis(100));
        sink.write(&a, &j).unwrap();
        let (mut second, _) = listener.accept().unwrap();
        second
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut buf2 = vec![0u8; frame_len];
        second.read_exact(&mut buf2).unwrap();
        assert_eq!(buf, buf2, "the same frame again, on the new connection");
        sink.flush().unwrap();
        assert_eq!(sink.final_stats().unwrap().written, 2);
    }

    #[test]
    fn udp_sends_one_datagram_per_alert() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        server
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let port = server.local_addr().unwrap().port();
        let mut sink = SyslogSink::start(
            SyslogTarget::Udp {
                host: "127.0.0.1".into(),
                port,
            },
            3.0,
        )
        .unwrap();
        let a = sample_alert();
        let j = json(&a);
        sink.write(&a, &j).unwrap();
        let mut buf = vec![0u8; 65536];
        let n = server.recv(&mut buf).unwrap();
        let msg = std::str::from_utf8(&buf[..n]).unwrap();
        assert_eq!(
            msg,
            format_message(&a, &j, 3.0, std::process::id(), Format::Rfc5424).unwrap()
        );
        let (fields, body) = parse(msg);
        assert_eq!(fields[3], "procwatch");
        assert_eq!(body, serde_json::from_str::<serde_json::Value>(&j).unwrap());
    }

    #[test]
    fn unix_datagram_socket_like_dev_log() {
        let dir = std::env::temp_dir().join(format!("pw-syslog-unix-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log");
        let _ = std::fs::remove_file(&path);
        let mut sink = SyslogSink::start(SyslogTarget::Unix(path.clone()), 3.0).unwrap();
        let a = sample_alert();
        let j = json(&a);
        // The socket does not exist yet: the alert waits in the queue, and is sent once the
        // server appears (within the backoff).
        sink.write(&a, &j).unwrap();
        std::thread::sleep(Duration::from_millis(150));
        let server = UnixDatagram::bind(&path).unwrap();
        server
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut buf = vec![0u8; 65536];
        let n = server.recv(&mut buf).unwrap();
        let msg = std::str::from_utf8(&buf[..n]).unwrap();
        assert_eq!(
            msg,
            format_message(&a, &j, 3.0, std::process::id(), Format::Local).unwrap()
        );
        let (_, body) = msg.split_once("]: ").unwrap();
        assert_eq!(body, j);
        sink.flush().unwrap();
        assert_eq!(sink.final_stats().unwrap().dropped, 0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Writes 100,000 copies of `a` to a TCP syslog sink on `port` with a queue of `capacity`
    /// and returns its final counts; fails if that takes a minute (a write blocked).
    fn flood_tcp(port: u16, capacity: usize, a: Alert) -> SinkStats {
        within(Duration::from_secs(60), move || {
            let opts = SyslogOptions {
                capacity,
                flush_timeout: Duration::from_millis(100),
            };
            let target = SyslogTarget::Tcp {
                host: "127.0.0.1".into(),
                port,
            };
            let mut sink = SyslogSink::with_options(target, 3.0, opts).unwrap();
            let j = json(&a);
            for _ in 0..100_000 {
                sink.write(&a, &j).unwrap();
            }
            sink.flush().unwrap();
            sink.final_stats().unwrap()
        })
    }

    #[test]
    fn dead_server_never_blocks_and_drops_are_counted() {
        // A port where nothing listens: bind one, note it, close it.
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let stats = flood_tcp(port, 100, sample_alert());
        assert_eq!(stats.written, 0);
        assert_eq!(stats.dropped, 100_000, "every alert counted: {stats:?}");
    }

    #[test]
    fn server_that_never_reads_never_blocks() {
        // Accepts (via the backlog) but never reads: the kernel buffers fill, then writes stall.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut a = sample_alert();
        // Big messages fill the socket buffers sooner.
        a.cmdline = vec!["z".repeat(6000)];
        let stats = flood_tcp(port, 1000, a);
        drop(listener);
        assert!(stats.dropped > 0, "{stats:?}");
        assert_eq!(stats.written + stats.dropped, 100_000, "{stats:?}");
    }
}
