//! `suspicious_port`: an outbound connection to a remote port not in `ports` — C2 channels and
//! reverse shells rarely use the ports a host normally talks to.
use super::Finding;
use crate::{
    config::{Config, Rule},
    process::table::{ConnectFact, Process},
};

/// Non-Standard Port.
pub const ATTACK: &str = "T1571";

/// Fires for the first recorded connect (sensor) or /proc/net connection to a port not allowed.
pub fn check(p: &Process, cfg: &Config) -> Option<Finding> {
    check_unless(p, cfg, |_| false)
}

/// Like [`check`], also taking connections to a port `excepted` accepts as expected.
pub fn check_unless(
    p: &Process,
    cfg: &Config,
    mut excepted: impl FnMut(u16) -> bool,
) -> Option<Finding> {
    let bad: Vec<&ConnectFact> = p
        .connects
        .iter()
        .chain(&p.conns)
        // A connect to the unspecified address (0.0.0.0, ::) leaves no host: on a datagram
        // socket it is how getaddrinfo picks a source address (RFC 6724 sorting; sshd's
        // session process does it for [::]:22) and sends nothing, on a stream socket it
        // reaches this host's own listeners only.
        .filter(|c| !c.addr.is_unspecified())
        .filter(|c| c.port != 0 && !cfg.port_allowed(c.port) && !excepted(c.port))
        .collect();
    let first = bad.first()?;
    let addr = match first.addr {
        std::net::IpAddr::V6(a) => format!("[{a}]"),
        v4 => v4.to_string(),
    };
    Some(Finding {
        rule: Rule::SuspiciousPort,
        reason: format!(
            "outbound connection to {addr}:{} (port not in `ports`)",
            first.port
        ),
        attack: ATTACK,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testing::benign;
    use std::net::IpAddr;

    #[test]
    fn a_connect_to_the_unspecified_address_goes_nowhere() {
        let mut p = benign();
        for addr in ["::", "0.0.0.0"] {
            p.connects = vec![fact(22)];
            p.connects[0].addr = addr.parse().expect("addr");
            assert!(check(&p, &Config::default()).is_none(), "{addr}");
        }
        p.connects[0].addr = "10.0.0.1".parse().expect("addr");
        assert!(check(&p, &Config::default()).is_some());
    }

    fn fact(port: u16) -> ConnectFact {
        ConnectFact {
            addr: IpAddr::from([10, 0, 0, 1]),
            port,
            proto: crate::procfs::sockets::Proto::Tcp,
        }
    }

    #[test]
    fn fires_on_unlisted_port() {
        let mut p = benign();
        p.connects.push(fact(4444));
        let f = check(&p, &Config::default()).expect("fires");
        assert!(f.reason.contains("10.0.0.1:4444"), "{}", f.reason);
        let mut p = benign();
        p.conns.push(fact(6667));
        assert!(check(&p, &Config::default()).is_some());
    }

    #[test]
    fn near_miss_listed_ports() {
        let mut p = benign();
        p.connects.extend([fact(80), fact(443), fact(53)]);
        assert!(check(&p, &Config::default()).is_none());
    }
}
