//! Network destinations as a baseline keeps them: the address reduced to its class, with port,
//! protocol and direction. Classes keep a model small and true across DHCP leases and DNS
//! rotation ("nginx talks to private addresses on 5432"), and still tell a public address apart
//! from the LAN.
use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    str::FromStr,
};

use serde::{Deserialize, Serialize};

/// What kind of address a peer has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AddrClass {
    /// 127.0.0.0/8, ::1.
    Loopback,
    /// RFC 1918, 100.64.0.0/10 (carrier-grade NAT), fc00::/7.
    Private,
    /// 169.254.0.0/16, fe80::/10.
    LinkLocal,
    /// 224.0.0.0/4, 255.255.255.255, ff00::/8.
    Multicast,
    /// 0.0.0.0 and :: (a socket bound to every address).
    Unspecified,
    /// Everything else.
    Public,
    /// Any class: only in entries added by `baseline allow`, never learned.
    Any,
}

impl AddrClass {
    /// Every learnable class, for messages and the CLI.
    pub const ALL: [AddrClass; 7] = [
        AddrClass::Loopback,
        AddrClass::Private,
        AddrClass::LinkLocal,
        AddrClass::Multicast,
        AddrClass::Unspecified,
        AddrClass::Public,
        AddrClass::Any,
    ];

    /// The id used in the model file and on the command line.
    pub const fn as_str(self) -> &'static str {
        match self {
            AddrClass::Loopback => "loopback",
            AddrClass::Private => "private",
            AddrClass::LinkLocal => "link_local",
            AddrClass::Multicast => "multicast",
            AddrClass::Unspecified => "unspecified",
            AddrClass::Public => "public",
            AddrClass::Any => "any",
        }
    }

    /// Whether an entry of this class covers an address of class `other`.
    pub fn covers(self, other: AddrClass) -> bool {
        self == AddrClass::Any || self == other
    }
}

/// The class of `ip`; an IPv4-mapped IPv6 address is judged as the IPv4 address it carries.
pub fn classify(ip: IpAddr) -> AddrClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => classify_v4(v4),
            None => classify_v6(v6),
        },
    }
}

fn classify_v4(ip: Ipv4Addr) -> AddrClass {
    let [a, b, ..] = ip.octets();
    if ip.is_unspecified() {
        AddrClass::Unspecified
    } else if ip.is_loopback() {
        AddrClass::Loopback
    } else if ip.is_private() || (a == 100 && (64..128).contains(&b)) {
        AddrClass::Private
    } else if ip.is_link_local() {
        AddrClass::LinkLocal
    } else if ip.is_multicast() || ip.is_broadcast() {
        AddrClass::Multicast
    } else {
        AddrClass::Public
    }
}

fn classify_v6(ip: Ipv6Addr) -> AddrClass {
    let first = ip.segments()[0];
    if ip.is_unspecified() {
        AddrClass::Unspecified
    } else if ip.is_loopback() {
        AddrClass::Loopback
    } else if first & 0xfe00 == 0xfc00 {
        AddrClass::Private
    } else if first & 0xffc0 == 0xfe80 {
        AddrClass::LinkLocal
    } else if ip.is_multicast() {
        AddrClass::Multicast
    } else {
        AddrClass::Public
    }
}

/// Transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Proto {
    /// TCP (stream sockets).
    Tcp,
    /// UDP (datagram sockets).
    Udp,
}

impl Proto {
    /// Lowercase id.
    pub const fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// Which way a connection goes, from the process's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// The process connected out; the port is the peer's.
    Outbound,
    /// The process accepted a connection; the port is its own (the peer's is ephemeral).
    Inbound,
    /// The process listens; the address is the one it bound, the port its own.
    Listen,
}

impl Direction {
    /// Lowercase id.
    pub const fn as_str(self) -> &'static str {
        match self {
            Direction::Outbound => "outbound",
            Direction::Inbound => "inbound",
            Direction::Listen => "listen",
        }
    }
}

macro_rules! from_str_by_id {
    ($ty:ty, $all:expr, $what:literal) => {
        impl FromStr for $ty {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                $all.into_iter().find(|v| v.as_str() == s).ok_or_else(|| {
                    let ids: Vec<&str> = $all.iter().map(|v| v.as_str()).collect();
                    format!("'{s}' is not {} (use {})", $what, ids.join(", "))
                })
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

from_str_by_id!(AddrClass, AddrClass::ALL, "an address class");
from_str_by_id!(Proto, [Proto::Tcp, Proto::Udp], "a protocol");
from_str_by_id!(
    Direction,
    [Direction::Outbound, Direction::Inbound, Direction::Listen],
    "a direction"
);

/// One observed connection, as the engine reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Destination {
    /// The peer's address (outbound, inbound) or the bound address (listen).
    pub addr: IpAddr,
    /// The peer's port (outbound) or the process's own port (inbound, listen).
    pub port: u16,
    /// Protocol.
    pub proto: Proto,
    /// Direction.
    pub direction: Direction,
}

impl Destination {
    /// `192.168.1.100:4444` or `[2001:db8::1]:4444`.
    pub fn addr_port(&self) -> String {
        match self.addr {
            IpAddr::V6(a) => format!("[{a}]:{}", self.port),
            v4 => format!("{v4}:{}", self.port),
        }
    }
}

/// What a baseline remembers of a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NetKey {
    /// Protocol.
    pub proto: Proto,
    /// Direction.
    pub direction: Direction,
    /// Address class.
    pub class: AddrClass,
    /// Port (see [`Destination::port`]).
    pub port: u16,
}

impl NetKey {
    /// The key of an observed destination.
    pub fn of(d: &Destination) -> Self {
        Self {
            proto: d.proto,
            direction: d.direction,
            class: classify(d.addr),
            port: d.port,
        }
    }

    /// Whether this (possibly `any`-class) entry covers the observed key `seen`.
    pub fn covers(&self, seen: &NetKey) -> bool {
        self.proto == seen.proto
            && self.direction == seen.direction
            && self.port == seen.port
            && self.class.covers(seen.class)
    }

    /// A stable text id: `tcp/outbound/private/5432`.
    pub fn id(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.proto.as_str(),
            self.direction.as_str(),
            self.class.as_str(),
            self.port
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(s: &str) -> AddrClass {
        classify(s.parse().expect("address"))
    }

    #[test]
    fn classes_of_addresses() {
        for (addr, want) in [
            ("127.0.0.1", AddrClass::Loopback),
            ("127.8.9.10", AddrClass::Loopback),
            ("::1", AddrClass::Loopback),
            ("10.1.2.3", AddrClass::Private),
            ("172.16.0.1", AddrClass::Private),
            ("172.31.255.255", AddrClass::Private),
            ("172.32.0.1", AddrClass::Public),
            ("192.168.1.100", AddrClass::Private),
            ("100.64.0.1", AddrClass::Private),
            ("100.128.0.1", AddrClass::Public),
            ("fd00::5", AddrClass::Private),
            ("169.254.169.254", AddrClass::LinkLocal),
            ("fe80::1", AddrClass::LinkLocal),
            ("224.0.0.251", AddrClass::Multicast),
            ("255.255.255.255", AddrClass::Multicast),
            ("ff02::fb", AddrClass::Multicast),
            ("0.0.0.0", AddrClass::Unspecified),
            ("::", AddrClass::Unspecified),
            ("8.8.8.8", AddrClass::Public),
            ("2001:4860:4860::8888", AddrClass::Public),
            ("::ffff:192.168.0.1", AddrClass::Private),
            ("::ffff:127.0.0.1", AddrClass::Loopback),
        ] {
            assert_eq!(class(addr), want, "{addr}");
        }
    }

    #[test]
    fn keys_and_coverage() {
        let d = Destination {
            addr: "192.168.1.100".parse().expect("addr"),
            port: 4444,
            proto: Proto::Tcp,
            direction: Direction::Outbound,
        };
        let k = NetKey::of(&d);
        assert_eq!(k.id(), "tcp/outbound/private/4444");
        assert_eq!(d.addr_port(), "192.168.1.100:4444");
        let any = NetKey {
            class: AddrClass::Any,
            ..k
        };
        assert!(any.covers(&k) && k.covers(&k));
        assert!(!k.covers(&any));
        let udp = NetKey {
            proto: Proto::Udp,
            ..k
        };
        assert!(!any.covers(&udp));
        let v6 = Destination {
            addr: "2001:db8::1".parse().expect("addr"),
            ..d
        };
        assert_eq!(v6.addr_port(), "[2001:db8::1]:4444");
        assert_eq!("link_local".parse::<AddrClass>(), Ok(AddrClass::LinkLocal));
        assert!(
            "lan"
                .parse::<AddrClass>()
                .expect_err("must fail")
                .contains("loopback")
        );
        assert_eq!("listen".parse::<Direction>(), Ok(Direction::Listen));
    }
}
