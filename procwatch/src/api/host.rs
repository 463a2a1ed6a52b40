//! DNS rebinding defence: a page on evil.example whose name an attacker re-points at
//! 127.0.0.1 talks to the API from the victim's browser with `Host: evil.example`. Only
//! names that mean this server are served: localhost, the loopback addresses, the address
//! listened on (any IP literal when listening on the unspecified address: rebinding needs a
//! name), and the names in `api.allowed_hosts`. Anything else is a 421.
use std::net::{IpAddr, SocketAddr};

use axum::{
    extract::{Request, State},
    http::{StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};

use super::{error::ApiError, server::AppState};

/// The Host names this server answers to.
#[derive(Debug, Clone)]
pub struct AllowedHosts {
    listen: IpAddr,
    names: Vec<String>,
}

impl AllowedHosts {
    /// Hosts for a server listening on `listen`, plus `names` (`api.allowed_hosts`).
    pub fn new(listen: SocketAddr, names: &[String]) -> Self {
        Self {
            listen: listen.ip(),
            names: names.iter().map(|n| n.to_ascii_lowercase()).collect(),
        }
    }

    /// Whether `host` (a Host header's value, with or without a port) names this server.
    pub fn allows(&self, host: &str) -> bool {
        let name = strip_port(host.trim()).to_ascii_lowercase();
        let name = name.trim_end_matches('.');
        if name == "localhost" || self.names.iter().any(|n| n == name) {
            return true;
        }
        let literal = name.trim_start_matches('[').trim_end_matches(']');
        match literal.parse::<IpAddr>() {
            Ok(ip) => ip.is_loopback() || ip == self.listen || self.listen.is_unspecified(),
            Err(_) => false,
        }
    }
}

/// `host:port` → `host`; `[v6]:port` → `[v6]`; a bare IPv6 literal stays whole.
fn strip_port(host: &str) -> &str {
    if let Some(end) = host.find(']') {
        return &host[..=end];
    }
    match host.rsplit_once(':') {
        Some((h, port)) if !h.contains(':') && port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => host,
    }
}

/// The check, as middleware.
pub async fn check(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let host = req
        .uri()
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| {
            req.headers()
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        });
    match host {
        Some(h) if state.hosts.allows(&h) => next.run(req).await,
        _ => ApiError::new(
            StatusCode::MISDIRECTED_REQUEST,
            "this server does not answer to that Host name (list it in api.allowed_hosts)",
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_names_of_this_server_pass() {
        let h = AllowedHosts::new(
            "127.0.0.1:8080".parse().expect("addr"),
            &["Mon.Example".into()],
        );
        for ok in [
            "localhost",
            "localhost:8080",
            "LOCALHOST.",
            "127.0.0.1",
            "127.0.0.1:8080",
            "[::1]",
            "[::1]:8080",
            "mon.example:80",
        ] {
            assert!(h.allows(ok), "{ok}");
        }
        for bad in ["evil.example", "evil.example:8080", "10.0.0.1", "x", ""] {
            assert!(!h.allows(bad), "{bad}");
        }
        let any = AllowedHosts::new("0.0.0.0:8080".parse().expect("addr"), &[]);
        assert!(any.allows("192.0.2.7:8080"));
        assert!(!any.allows("evil.example"));
    }
}
