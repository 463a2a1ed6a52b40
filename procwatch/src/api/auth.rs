//! Who may do what. With a token (configured, or generated when none is: see `token`), reads
//! need it (401 without it or with a wrong one); writes always need it: with no token at all
//! (`api.open_reads`) they are refused (403), as they are when a request carries none (403) — a wrong one is 401.
//! The page, its assets and `/api/health` are open, so a browser can ask for the token and a
//! probe can check liveness. Tokens are compared in constant time.
use axum::{
    extract::{Request, State},
    http::{Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};

use super::{error::ApiError, server::AppState};

/// What the request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Presented {
    None,
    Wrong,
    Right,
}

/// Equal bytes, in time that depends only on the lengths.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn presented(req: &Request, token: Option<&str>) -> Presented {
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return Presented::None;
    };
    let given = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match (given, token) {
        (Some(g), Some(t)) if same(g.as_bytes(), t.as_bytes()) => Presented::Right,
        _ => Presented::Wrong,
    }
}

/// Paths anyone may read.
fn open(path: &str) -> bool {
    path == "/" || path == "/index.html" || path.starts_with("/assets/") || path == "/api/health"
}

/// The check, as middleware.
pub async fn check(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let write = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let token = state.token.as_deref();
    let who = presented(&req, token);
    let deny = |status: StatusCode, msg: &str| {
        let mut r = ApiError::new(status, msg).into_response();
        if status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"procwatch\""),
            );
        }
        state.counters.auth_denied();
        r
    };
    if write {
        match (token, who) {
            (None, _) => {
                return deny(
                    StatusCode::FORBIDDEN,
                    "this request changes something and needs the API token, but none is \
                     configured (set api.token or api.token_file)",
                );
            }
            (Some(_), Presented::None) => {
                return deny(
                    StatusCode::FORBIDDEN,
                    "this request changes something: send the API token (Authorization: Bearer ...)",
                );
            }
            (Some(_), Presented::Wrong) => {
                return deny(StatusCode::UNAUTHORIZED, "wrong API token");
            }
            (Some(_), Presented::Right) => {}
        }
    } else if token.is_some()
        && who != Presented::Right
        && *req.method() != Method::OPTIONS
        && !open(req.uri().path())
    {
        let msg = if who == Presented::None {
            "the API needs a token (Authorization: Bearer ...)"
        } else {
            "wrong API token"
        };
        return deny(StatusCode::UNAUTHORIZED, msg);
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(same(b"secret", b"secret"));
        assert!(!same(b"secret", b"secreT"));
        assert!(!same(b"secret", b"secret2"));
        assert!(!same(b"", b"x"));
    }
}
