//! Headers every data answer carries: `Cache-Control: no-store` so that no browser or proxy
//! cache keeps process lists, alerts or metrics (they hold other users' command lines), and
//! `X-Content-Type-Options: nosniff` so a browser never runs a JSON or text answer as a
//! script or page.
use axum::{
    extract::Request,
    http::{HeaderValue, header},
    middleware::Next,
    response::Response,
};

/// Whether `path` serves data (the API and the metrics), as opposed to the page's assets.
fn data(path: &str) -> bool {
    path == "/api" || path.starts_with("/api/") || path == "/metrics"
}

/// The middleware; it wraps everything, errors included.
pub async fn add(req: Request, next: Next) -> Response {
    let is_data = data(req.uri().path());
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if is_data {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_paths_are_the_api_and_metrics() {
        for p in ["/api", "/api/stats", "/api/alerts/stream", "/metrics"] {
            assert!(data(p), "{p}");
        }
        for p in ["/", "/assets/app.js", "/apix", "/metricsx"] {
            assert!(!data(p), "{p}");
        }
    }
}
