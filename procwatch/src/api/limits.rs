//! Limits that keep a client from taking the API (or the machine) over: most connections open
//! at once (beyond: 429 and the connection closed at once), requests per second per client
//! address (a token bucket; 429 with `Retry-After`), and the request body size (413).
use std::{
    collections::HashMap,
    io,
    net::{IpAddr, SocketAddr},
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering::Relaxed},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use axum::{
    extract::{ConnectInfo, Request, State},
    http::{HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
    serve::{IncomingStream, Listener},
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
};

use super::{error::ApiError, server::AppState};

/// Most client addresses the rate limiter remembers; beyond, idle ones are forgotten.
const MAX_CLIENTS: usize = 4096;

/// Per-client token buckets.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl RateLimiter {
    /// `rate` requests per second sustained, `burst` at once.
    pub fn new(rate: f64, burst: usize) -> Self {
        Self {
            rate,
            burst: burst.max(1) as f64,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from `ip`'s bucket; `Err(wait)` when it is empty.
    pub fn take(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let Ok(mut buckets) = self.buckets.lock() else {
            return Ok(());
        };
        if buckets.len() >= MAX_CLIENTS && !buckets.contains_key(&ip) {
            // Forget the clients whose buckets have refilled: they lose nothing by it.
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * rate < burst
            });
            if buckets.len() >= MAX_CLIENTS {
                return Err(Duration::from_secs(1));
            }
        }
        let (tokens, at) = buckets.entry(ip).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) / self.rate))
        }
    }
}

/// The rate limit, as middleware (`/api/health` is exempt: probes must not be refused).
pub async fn rate(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<ClientAddr>,
    req: Request,
    next: Next,
) -> Response {
    if req.uri().path() != "/api/health"
        && let Err(wait) = state.rate.take(client.0.ip(), Instant::now())
    {
        state.counters.rate_limited();
        let mut r = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "too many requests from {}: at most {} per second (api.rate_limit), bursts of {}",
                client.0.ip(),
                state.limits.rate_limit,
                state.limits.rate_burst
            ),
        )
        .into_response();
        let secs = wait.as_secs().max(1).to_string();
        if let Ok(v) = HeaderValue::from_str(&secs) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return r;
    }
    next.run(req).await
}

/// The body size limit, as middleware: a declared length over the cap is refused before the
/// body is read; bodies without a length are cut at the cap by `DefaultBodyLimit`.
pub async fn body_size(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = declared.filter(|&n| n > state.limits.max_body_bytes) {
        state.counters.body_too_large();
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "request body of {n} bytes is over the limit of {} (api.max_body_bytes)",
                state.limits.max_body_bytes
            ),
        )
        .into_response();
    }
    next.run(req).await
}

/// Makes every error answer JSON, also those axum and tower produce themselves (405, 413, a
/// rejected extractor), keeping their status.
pub async fn json_errors(req: Request, next: Next) -> Response {
    let r = next.run(req).await;
    let status = r.status();
    let is_json = r
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if status.is_client_error() || status.is_server_error() {
        if is_json {
            return r;
        }
        let (parts, body) = r.into_parts();
        let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
        let text = String::from_utf8_lossy(&text);
        let msg = if text.trim().is_empty() {
            status.canonical_reason().unwrap_or("error").to_string()
        } else {
            text.trim().to_string()
        };
        let mut out = ApiError::new(status, msg).into_response();
        for (k, v) in &parts.headers {
            if k != header::CONTENT_TYPE && k != header::CONTENT_LENGTH {
                out.headers_mut().insert(k.clone(), v.clone());
            }
        }
        return out;
    }
    r
}

/// The client's address, as the capped listener accepted it.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

impl axum::extract::connect_info::Connected<IncomingStream<'_, CappedListener>> for ClientAddr {
    fn connect_info(stream: IncomingStream<'_, CappedListener>) -> Self {
        Self(*stream.remote_addr())
    }
}

/// A TCP listener that keeps at most `max` connections open: one more is answered 429 and
/// closed at once (never queued), and counted.
pub struct CappedListener {
    inner: TcpListener,
    open: Arc<AtomicUsize>,
    max: usize,
    counters: Arc<super::metrics::Counters>,
}

impl CappedListener {
    /// Caps `inner` at `max` open connections.
    pub fn new(inner: TcpListener, max: usize, counters: Arc<super::metrics::Counters>) -> Self {
        Self {
            inner,
            open: Arc::new(AtomicUsize::new(0)),
            max,
            counters,
        }
    }
}

/// The answer to a connection over the cap, written without waiting (a client that does not
/// read it loses it).
const OVER_CAP: &[u8] = b"HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\n\
connection: close\r\nretry-after: 1\r\ncontent-length: 83\r\n\r\n\
{\"error\":\"too many connections open (api.max_connections); try later\",\"status\":429}";

impl Listener for CappedListener {
    type Io = Counted;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (stream, addr) = match self.inner.accept().await {
                Ok(x) => x,
                Err(e) => {
                    // Out of fds and the like: wait a little rather than spin.
                    tracing::warn!(error = %e, "api: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            if self.open.fetch_add(1, Relaxed) >= self.max {
                self.open.fetch_sub(1, Relaxed);
                self.counters.connection_refused();
                let _ = stream.try_write(OVER_CAP);
                continue;
            }
            let _ = stream.set_nodelay(true);
            return (
                Counted {
                    stream,
                    open: self.open.clone(),
                },
                addr,
            );
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A connection that counts itself out when it closes.
pub struct Counted {
    stream: TcpStream,
    open: Arc<AtomicUsize>,
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Relaxed);
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_the_burst_then_the_rate() {
        let r = RateLimiter::new(10.0, 5);
        let ip: IpAddr = "127.0.0.1".parse().expect("ip");
        let t0 = Instant::now();
        for _ in 0..5 {
            assert!(r.take(ip, t0).is_ok());
        }
        let wait = r.take(ip, t0).expect_err("empty bucket");
        assert!(wait <= Duration::from_millis(100), "{wait:?}");
        // 0.1 s later one more token is there.
        assert!(r.take(ip, t0 + Duration::from_millis(101)).is_ok());
        // Another client has its own bucket.
        let other: IpAddr = "127.0.0.2".parse().expect("ip");
        assert!(r.take(other, t0).is_ok());
    }
}
