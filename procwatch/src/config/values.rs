//! Leaf value types of the config file, each validated while it is deserialized.
//!
//! Validation happens inside `Deserialize` on purpose: serde_yaml attaches the line and column of the
//! offending scalar to any error raised there, so "port 70000" is reported at its own position without
//! a second pass over the file.
use std::{
    fmt::{self, Display},
    net::SocketAddr,
    path::PathBuf,
    str::FromStr,
    time::Duration,
};

use serde::{
    Deserialize, Deserializer, Serialize, Serializer,
    de::{self, SeqAccess, Visitor},
};

use crate::bounds::{self, Floor};

/// A set of ports, kept as sorted, merged, inclusive ranges.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PortSet {
    ranges: Vec<(u16, u16)>,
}

impl PortSet {
    /// The set holding exactly these inclusive ranges (merged and sorted).
    pub fn from_ranges(ranges: impl IntoIterator<Item = (u16, u16)>) -> Self {
        let mut ranges: Vec<(u16, u16)> = ranges
            .into_iter()
            .map(|(a, b)| (a.min(b), a.max(b)))
            .collect();
        ranges.sort_unstable();
        let mut merged: Vec<(u16, u16)> = Vec::with_capacity(ranges.len());
        for (lo, hi) in ranges {
            match merged.last_mut() {
                // Adjacent ranges merge too, so "80-89,90" prints back as "80-90".
                Some(last) if u32::from(lo) <= u32::from(last.1) + 1 => last.1 = last.1.max(hi),
                _ => merged.push((lo, hi)),
            }
        }
        Self { ranges: merged }
    }

    /// Whether `port` is in the set.
    pub fn contains(&self, port: u16) -> bool {
        self.ranges
            .binary_search_by(|&(lo, hi)| {
                if hi < port {
                    std::cmp::Ordering::Less
                } else if lo > port {
                    std::cmp::Ordering::Greater
                } else {
                    std::cmp::Ordering::Equal
                }
            })
            .is_ok()
    }

    /// The inclusive ranges, sorted and non-overlapping.
    pub fn ranges(&self) -> &[(u16, u16)] {
        &self.ranges
    }

    /// Whether the set holds no port at all.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
}

/// Parses one entry: "443" or "8000-8100".
fn parse_port_entry(entry: &str) -> Result<(u16, u16), String> {
    let entry = entry.trim();
    if entry.is_empty() {
        return Err("empty entry in the port list".into());
    }
    match entry.split_once('-') {
        Some((lo, hi)) => {
            let (lo, hi) = (parse_port(lo)?, parse_port(hi)?);
            if lo > hi {
                return Err(format!(
                    "port range {lo}-{hi} is reversed (write {hi}-{lo})"
                ));
            }
            Ok((lo, hi))
        }
        None => parse_port(entry).map(|p| (p, p)),
    }
}

/// Parses one port number in 1..=65535.
fn parse_port(text: &str) -> Result<u16, String> {
    let text = text.trim();
    let n: u64 = text
        .parse()
        .map_err(|_| format!("'{text}' is not a port number or range (like 443 or 8000-8100)"))?;
    port_in_range(n)
}

/// Checks that `n` is a usable port number.
fn port_in_range(n: u64) -> Result<u16, String> {
    match u16::try_from(n) {
        Ok(p) if p != 0 => Ok(p),
        _ => Err(format!("port {n} is out of range 1-65535")),
    }
}

impl FromStr for PortSet {
    type Err = String;

    /// Parses "80,443,8000-8100"; the empty string is the empty set.
    fn from_str(s: &str) -> Result<Self, String> {
        if s.trim().is_empty() {
            return Ok(Self::default());
        }
        let ranges = s
            .split(',')
            .map(parse_port_entry)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::from_ranges(ranges))
    }
}

impl Display for PortSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, &(lo, hi)) in self.ranges.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if lo == hi {
                write!(f, "{lo}")?;
            } else {
                write!(f, "{lo}-{hi}")?;
            }
        }
        Ok(())
    }
}

impl Serialize for PortSet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One element of a list-form `ports:` entry: an integer or a "lo-hi" string.
struct PortEntry((u16, u16));

impl<'de> Deserialize<'de> for PortEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = PortEntry;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port number or a range like \"8000-8100\"")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<PortEntry, E> {
                port_in_range(n)
                    .map(|p| PortEntry((p, p)))
                    .map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<PortEntry, E> {
                Err(E::custom(format!("port {n} is out of range 1-65535")))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<PortEntry, E> {
                parse_port_entry(s).map(PortEntry).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for PortSet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = PortSet;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("ports as \"80,443,8000-8100\" or a list")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<PortSet, E> {
                let p = port_in_range(n).map_err(E::custom)?;
                Ok(PortSet::from_ranges([(p, p)]))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<PortSet, E> {
                Err(E::custom(format!("port {n} is out of range 1-65535")))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<PortSet, E> {
                s.parse().map_err(E::custom)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<PortSet, A::Error> {
                let mut ranges = Vec::new();
                while let Some(PortEntry(r)) = seq.next_element()? {
                    ranges.push(r);
                }
                Ok(PortSet::from_ranges(ranges))
            }
        }
        d.deserialize_any(V)
    }
}

/// Where syslog messages go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyslogTarget {
    /// A local datagram socket, e.g. `unix:///dev/log`.
    Unix(PathBuf),
    /// RFC 5424 over UDP to `host:port`.
    Udp {
        /// Host name or IP address (IPv6 without brackets).
        host: String,
        /// Port, 514 when the URL omits it.
        port: u16,
    },
    /// RFC 5424 over TCP (octet-counted framing) to `host:port`.
    Tcp {
        /// Host name or IP address (IPv6 without brackets).
        host: String,
        /// Port, 514 when the URL omits it.
        port: u16,
    },
}

/// The standard syslog port, used when a udp:// or tcp:// URL has none.
const SYSLOG_PORT: u16 = 514;

impl FromStr for SyslogTarget {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad_scheme = || {
            format!(
                "'{s}' is not a syslog URL: use unix:///dev/log, udp://HOST:PORT or tcp://HOST:PORT"
            )
        };
        let (scheme, rest) = s.split_once("://").ok_or_else(bad_scheme)?;
        match scheme {
            "unix" => {
                if !rest.starts_with('/') {
                    return Err(format!(
                        "syslog socket path in '{s}' must be absolute (unix:///dev/log)"
                    ));
                }
                Ok(Self::Unix(PathBuf::from(rest)))
            }
            "udp" | "tcp" => {
                let (host, port) = split_host_port(rest).map_err(|e| format!("'{s}': {e}"))?;
                Ok(if scheme == "udp" {
                    Self::Udp { host, port }
                } else {
                    Self::Tcp { host, port }
                })
            }
            _ => Err(bad_scheme()),
        }
    }
}

/// Splits "host:port", "[v6]:port", "host" or "[v6]" into host and port.
fn split_host_port(rest: &str) -> Result<(String, u16), String> {
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or("unclosed '[' in the host".to_string())?;
        match after {
            "" => (host, None),
            _ => (
                host,
                Some(
                    after
                        .strip_prefix(':')
                        .ok_or(format!("unexpected '{after}' after the host"))?,
                ),
            ),
        }
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h, Some(p)),
            Some(_) => return Err("IPv6 addresses need brackets, like [::1]:514".into()),
            None => (rest, None),
        }
    };
    if host.is_empty() || host.contains('/') {
        return Err("missing or invalid host".into());
    }
    let port = match port {
        None => SYSLOG_PORT,
        Some(p) => parse_port(p)?,
    };
    Ok((host.to_string(), port))
}

impl Display for SyslogTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host_port = |f: &mut fmt::Formatter<'_>, scheme: &str, host: &str, port: u16| {
            if host.contains(':') {
                write!(f, "{scheme}://[{host}]:{port}")
            } else {
                write!(f, "{scheme}://{host}:{port}")
            }
        };
        match self {
            Self::Unix(path) => write!(f, "unix://{}", path.display()),
            Self::Udp { host, port } => host_port(f, "udp", host, *port),
            Self::Tcp { host, port } => host_port(f, "tcp", host, *port),
        }
    }
}

impl Serialize for SyslogTarget {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SyslogTarget {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse_str_with(
            d,
            "a syslog URL (unix:///dev/log, udp://HOST:PORT, tcp://HOST:PORT)",
            |s| s.parse(),
        )
    }
}

/// Deserializes a string and converts it with `parse`, reporting `expecting` on a type mismatch.
pub(crate) fn parse_str_with<'de, D, T>(
    d: D,
    expecting: &'static str,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    struct V<F>(&'static str, F);
    impl<T, F: FnOnce(&str) -> Result<T, String>> Visitor<'_> for V<F> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<T, E> {
            (self.1)(s).map_err(E::custom)
        }
    }
    d.deserialize_str(V(expecting, parse))
}

/// Parses "90s", "15m", "24h", "1h30m", "500ms", "2d", or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    let bad = || {
        format!(
            "'{text}' is not a duration (use seconds, or a number with ms, s, m, h or d: \"90s\", \"15m\", \"24h\")"
        )
    };
    if s.is_empty() {
        return Err(bad());
    }
    if let Ok(secs) = s.parse::<f64>() {
        return seconds(secs);
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let (num, tail) = rest.split_at(digits);
        let unit_len = tail
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let n: f64 = num.parse().map_err(|_| bad())?;
        let scale = match unit {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            _ => return Err(bad()),
        };
        total = total.checked_add(seconds(n * scale)?).ok_or_else(bad)?;
        rest = tail.trim_start();
    }
    if total > bounds::MAX_DURATION {
        return Err(bounds::too_long(&format!("'{text}'")));
    }
    Ok(total)
}

/// A finite number of seconds from 0 to [`bounds::MAX_DURATION`] as a `Duration`.
fn seconds(secs: f64) -> Result<Duration, String> {
    bounds::seconds(secs)
}

/// Formats a duration the way the config file writes it: "24h", "15m", "90s", "500ms".
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    if !d.subsec_nanos().is_multiple_of(1_000_000) {
        return format!("{}s", d.as_secs_f64());
    }
    for (unit, per) in [("h", 3_600_000), ("m", 60_000), ("s", 1_000)] {
        if ms.is_multiple_of(per) {
            return format!("{}{unit}", ms / per);
        }
    }
    format!("{ms}ms")
}

/// Serializes a `Duration` as in the config file ("24h").
pub(crate) fn ser_duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_duration(*d))
}

/// Parses "1048576", "100MiB", "1GiB", "512KiB", "10MB" into bytes.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let s = text.trim();
    let bad = || {
        format!("'{text}' is not a size (use bytes, or a number with KiB, MiB, GiB, KB, MB or GB)")
    };
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| bad())?;
    let scale: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        _ => return Err(bad()),
    };
    n.checked_mul(scale)
        .ok_or_else(|| format!("'{text}' is too large"))
}

/// Deserializes a finite number (integer or float) within `floor` and [`bounds::MAX_NUMBER`].
fn number<'de, D: Deserializer<'de>>(d: D, floor: Floor) -> Result<f64, D::Error> {
    struct V(Floor);
    impl Visitor<'_> for V {
        type Value = f64;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(match self.0 {
                Floor::AboveZero => "a number greater than 0",
                Floor::Zero => "a number (0 or more)",
            })
        }
        fn visit_f64<E: de::Error>(self, x: f64) -> Result<f64, E> {
            bounds::number(x, self.0).map_err(E::custom)
        }
        // Integers are converted rather than rejected: `min_score: 3` means 3.0.
        #[allow(clippy::cast_precision_loss)]
        fn visit_u64<E: de::Error>(self, n: u64) -> Result<f64, E> {
            self.visit_f64(n as f64)
        }
        #[allow(clippy::cast_precision_loss)]
        fn visit_i64<E: de::Error>(self, n: i64) -> Result<f64, E> {
            self.visit_f64(n as f64)
        }
    }
    d.deserialize_any(V(floor))
}

/// A number greater than zero.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Positive(pub f64);

impl<'de> Deserialize<'de> for Positive {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        number(d, Floor::AboveZero).map(Self)
    }
}

/// A number of zero or more.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NonNegative(pub f64);

impl<'de> Deserialize<'de> for NonNegative {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        number(d, Floor::Zero).map(Self)
    }
}

/// A number from 0 to 1 (a severity).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fraction(pub f64);

impl<'de> Deserialize<'de> for Fraction {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let x = number(d, Floor::Zero)?;
        if x > 1.0 {
            return Err(de::Error::custom(format!(
                "must be between 0 and 1, found {x}"
            )));
        }
        Ok(Self(x))
    }
}

/// Deserializes a duration given as seconds (integer or float) or a string like "15m", within
/// `floor` and [`bounds::MAX_DURATION`]; a `period` (how often something runs) is at least
/// [`bounds::MIN_PERIOD`].
fn duration<'de, D: Deserializer<'de>>(
    d: D,
    floor: Floor,
    period: bool,
) -> Result<Duration, D::Error> {
    struct V(Floor, bool);
    impl V {
        fn check<E: de::Error>(&self, d: Duration) -> Result<Duration, E> {
            bounds::duration(d, self.0, self.1).map_err(E::custom)
        }
    }
    impl Visitor<'_> for V {
        type Value = Duration;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a duration (seconds, or a string like \"90s\", \"15m\", \"24h\")")
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<Duration, E> {
            self.check(parse_duration(s).map_err(E::custom)?)
        }
        fn visit_f64<E: de::Error>(self, x: f64) -> Result<Duration, E> {
            self.check(seconds(x).map_err(E::custom)?)
        }
        fn visit_u64<E: de::Error>(self, n: u64) -> Result<Duration, E> {
            self.check(Duration::from_secs(n))
        }
        fn visit_i64<E: de::Error>(self, n: i64) -> Result<Duration, E> {
            Err(E::custom(format!("must not be negative, found {n}")))
        }
    }
    d.deserialize_any(V(floor, period))
}

/// How often something runs: at least [`bounds::MIN_PERIOD`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Interval(pub Duration);

impl<'de> Deserialize<'de> for Interval {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        duration(d, Floor::AboveZero, true).map(Self)
    }
}

/// A duration of zero or more.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Span(pub Duration);

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        duration(d, Floor::Zero, false).map(Self)
    }
}

/// A size in bytes: an integer or a string like "100MiB".
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bytes(pub u64);

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        bytes(d, 0).map(Self)
    }
}

/// Deserializes a size of at least `min` bytes. The check runs inside the visitor, where
/// serde_yaml still knows the position of the scalar.
fn bytes<'de, D: Deserializer<'de>>(d: D, min: u64) -> Result<u64, D::Error> {
    struct V(u64);
    impl V {
        fn check<E: de::Error>(&self, n: u64) -> Result<u64, E> {
            if n < self.0 {
                return Err(E::custom(format!(
                    "must be at least {} bytes, found {n}",
                    self.0
                )));
            }
            Ok(n)
        }
    }
    impl Visitor<'_> for V {
        type Value = u64;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a size in bytes (an integer, or a string like \"100MiB\")")
        }
        fn visit_u64<E: de::Error>(self, n: u64) -> Result<u64, E> {
            self.check(n)
        }
        fn visit_i64<E: de::Error>(self, n: i64) -> Result<u64, E> {
            Err(E::custom(format!("must not be negative, found {n}")))
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<u64, E> {
            self.check(parse_bytes(s).map_err(E::custom)?)
        }
    }
    d.deserialize_any(V(min))
}

/// The size cap of the dump directory: at least [`bounds::MIN_DUMP_TOTAL_BYTES`] (1 MiB),
/// below which no dump fits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TotalBytes(pub u64);

impl<'de> Deserialize<'de> for TotalBytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        bytes(d, bounds::MIN_DUMP_TOTAL_BYTES).map(Self)
    }
}

/// A count of processes: 1 to [`bounds::MAX_PROCESSES`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Count(pub usize);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Count;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a whole number of 1 or more")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Count, E> {
                bounds::max_processes(n).map(Count).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Count, E> {
                Err(E::custom(format!("must be 1 or more, found {n}")))
            }
        }
        d.deserialize_any(V)
    }
}

/// A ring buffer size in KiB: a power of two of at least 4 (one page), at most 1 GiB.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RingKib(pub u32);

impl<'de> Deserialize<'de> for RingKib {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RingKib;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size in KiB that is a power of two from 4 to 1048576")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<RingKib, E> {
                bounds::ring_kib(n).map(RingKib).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<RingKib, E> {
                Err(E::custom(format!(
                    "must be a power of two from 4 to 1048576 (KiB), found {n}"
                )))
            }
        }
        d.deserialize_any(V)
    }
}

/// An absolute filesystem path.
#[derive(Debug, Clone)]
pub(crate) struct AbsPath(pub PathBuf);

impl<'de> Deserialize<'de> for AbsPath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Relative paths are refused: a daemon's working directory is not the one the file was
        // written from, so "tmp/x" would silently mean something else.
        parse_str_with(d, "an absolute path", |s| {
            if s.starts_with('/') {
                Ok(Self(PathBuf::from(s)))
            } else if s.is_empty() {
                Err("path must not be empty".into())
            } else {
                Err(format!("path '{s}' must be absolute (start with /)"))
            }
        })
    }
}

/// A user: a name, or a numeric uid written as an integer.
#[derive(Debug, Clone)]
pub(crate) struct User(pub String);

impl<'de> Deserialize<'de> for User {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = User;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a user name or numeric uid")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<User, E> {
                u32::try_from(n)
                    .map(|uid| User(uid.to_string()))
                    .map_err(|_| E::custom(format!("uid {n} is out of range")))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<User, E> {
                if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c == ':') {
                    return Err(E::custom(format!("'{s}' is not a valid user name")));
                }
                Ok(User(s.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// A non-empty secret string.
#[derive(Debug, Clone)]
pub(crate) struct Token(pub String);

impl<'de> Deserialize<'de> for Token {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse_str_with(d, "a token string or null", |s| {
            if s.trim().is_empty() {
                Err("token must not be empty (use null to disable authentication)".into())
            } else {
                Ok(Self(s.to_string()))
            }
        })
    }
}

/// An IP address and port to listen on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Listen(pub SocketAddr);

impl<'de> Deserialize<'de> for Listen {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse_str_with(d, "an address like \"127.0.0.1:8080\"", |s| {
            let addr: SocketAddr = s.parse().map_err(|_| {
                format!("'{s}' is not an IP address and port (like 127.0.0.1:8080 or [::1]:8080)")
            })?;
            // Port 0 would listen on a port the kernel picks, which no client could know.
            if addr.port() == 0 {
                return Err(format!("port 0 in '{s}': give the port to listen on"));
            }
            Ok(Self(addr))
        })
    }
}

/// Deserializes a key that may not be null: present means `Some(value)`.
pub(crate) fn required<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// Deserializes a key whose null is meaningful ("off"): present means `Some(Option<value>)`.
pub(crate) fn nullable<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// The request body cap of the API: 1 KiB to 64 MiB.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyBytes(pub u64);

impl<'de> Deserialize<'de> for BodyBytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = bytes(d, 1024)?;
        if n > 64 << 20 {
            return Err(de::Error::custom(format!(
                "must be at most 64MiB (67108864 bytes), found {n}"
            )));
        }
        Ok(Self(n))
    }
}

/// A browser origin allowed to call the API: `http(s)://host[:port]`, nothing after.
#[derive(Debug, Clone)]
pub(crate) struct Origin(pub String);

impl<'de> Deserialize<'de> for Origin {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse_str_with(d, "an origin like \"https://ops.example.com\"", |s| {
            let rest = s
                .strip_prefix("https://")
                .or_else(|| s.strip_prefix("http://"))
                .ok_or_else(|| format!("origin '{s}' must start with http:// or https://"))?;
            // A wildcard would re-open what `cors_origins` exists to close.
            let ok = !rest.is_empty()
                && rest
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
            if ok {
                Ok(Self(s.to_string()))
            } else {
                Err(format!(
                    "origin '{s}' must be scheme://host[:port] with no path, wildcard or trailing slash"
                ))
            }
        })
    }
}
