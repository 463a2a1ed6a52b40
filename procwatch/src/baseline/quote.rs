//! The baseline quoted in anomaly details and "known" answers: short, specific sentences built
//! from the normal entries only ("nginx connects to ports 80, 443, 8080").
use super::{
    anomaly::{bytes, list, pct},
    model::{Entry, ExeBaseline},
    net::{Direction, NetKey},
    stats::Welford,
};

/// Most items named in one quote.
const MAX_ITEMS: usize = 8;

/// What the executable does on the network in the direction and protocol of `seen`.
pub fn network(b: &ExeBaseline, seen: &NetKey, min_processes: usize) -> String {
    let proto = seen.proto.as_str().to_ascii_uppercase();
    let same: Vec<&Entry<NetKey>> = b
        .network
        .normal(min_processes)
        .into_iter()
        .filter(|e| e.key.proto == seen.proto && e.key.direction == seen.direction)
        .collect();
    let name = &b.name;
    if same.is_empty() {
        return match seen.direction {
            Direction::Outbound => format!("{name} makes no outbound {proto} connections"),
            Direction::Inbound => format!("{name} accepts no {proto} connections"),
            Direction::Listen => format!("{name} does not listen on {proto}"),
        };
    }
    let mut ports: Vec<u16> = same.iter().map(|e| e.key.port).collect();
    ports.sort_unstable();
    ports.dedup();
    let verb = match seen.direction {
        Direction::Outbound => "connects to",
        Direction::Inbound => "accepts connections on",
        Direction::Listen => "listens on",
    };
    let noun = if ports.len() == 1 { "port" } else { "ports" };
    let shown: Vec<String> = ports.iter().map(u16::to_string).collect();
    let mut s = format!("{name} {verb} {noun} {}", list(&shown, MAX_ITEMS));
    let mut classes: Vec<&str> = same
        .iter()
        .filter(|e| e.key.port == seen.port)
        .map(|e| e.key.class.as_str())
        .collect();
    classes.sort_unstable();
    classes.dedup();
    if !classes.is_empty() {
        s.push_str(&format!(
            "; port {} only with {} addresses",
            seen.port,
            classes.join(", ")
        ));
    }
    s
}

/// The executables it normally spawns: "children: /usr/bin/a, /usr/bin/b" or "children: none".
pub fn children(b: &ExeBaseline, min_processes: usize) -> String {
    let items: Vec<String> = b
        .children
        .normal(min_processes)
        .iter()
        .map(|e| e.key.exe.clone())
        .collect();
    format!("children: {}", list(&items, MAX_ITEMS))
}

/// The files and patterns it normally opens.
pub fn files(b: &ExeBaseline, min_processes: usize) -> String {
    let items: Vec<String> = b
        .files
        .normal(min_processes)
        .iter()
        .map(|e| e.key.path.clone())
        .collect();
    if items.is_empty() {
        return "no files under the watched prefixes".into();
    }
    list(&items, MAX_ITEMS)
}

/// "12.5% ± 3.2%".
pub fn cpu(w: &Welford) -> String {
    format!("{} ± {}", pct(w.mean), pct(w.std_dev()))
}

/// "1.8 GiB ± 200.0 MiB".
pub fn rss(w: &Welford) -> String {
    format!("{} ± {}", bytes(w.mean), bytes(w.std_dev()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::baseline::net::{AddrClass, Proto};

    fn net(b: &mut ExeBaseline, class: AddrClass, port: u16) {
        let key = NetKey {
            proto: Proto::Tcp,
            direction: Direction::Outbound,
            class,
            port,
        };
        b.network.entries.push(Entry {
            processes: 5,
            ..Entry::first(key, 0)
        });
    }

    #[test]
    fn network_quote_names_ports_and_classes() {
        let mut b = ExeBaseline::new("/usr/sbin/nginx", 0);
        let seen = NetKey {
            proto: Proto::Tcp,
            direction: Direction::Outbound,
            class: AddrClass::Private,
            port: 4444,
        };
        assert_eq!(
            network(&b, &seen, 2),
            "nginx makes no outbound TCP connections"
        );
        for p in [8080, 80, 443] {
            net(&mut b, AddrClass::Private, p);
        }
        net(&mut b, AddrClass::Loopback, 8080);
        assert_eq!(
            network(&b, &seen, 2),
            "nginx connects to ports 80, 443, 8080"
        );
        let public_443 = NetKey {
            class: AddrClass::Public,
            port: 443,
            ..seen
        };
        assert_eq!(
            network(&b, &public_443, 2),
            "nginx connects to ports 80, 443, 8080; port 443 only with private addresses"
        );
        // Pending entries (one process) are not quoted as the baseline.
        b.network.entries[0].processes = 1;
        assert_eq!(
            network(&b, &seen, 2),
            "nginx connects to ports 80, 443, 8080"
        );
        assert_eq!(
            network(&b, &seen, 6),
            "nginx makes no outbound TCP connections"
        );
    }

    #[test]
    fn children_files_and_resources() {
        let b = ExeBaseline::new("/usr/sbin/nginx", 0);
        assert_eq!(children(&b, 2), "children: none");
        assert_eq!(files(&b, 2), "no files under the watched prefixes");
        let mut w = Welford::default();
        for x in [10.0, 12.0, 14.0] {
            w.push(x);
        }
        assert_eq!(cpu(&w), "12.0% ± 2.0%");
        let mut r = Welford::default();
        r.push(1024.0 * 1024.0);
        assert_eq!(rss(&r), "1.0 MiB ± 0 B");
    }
}
