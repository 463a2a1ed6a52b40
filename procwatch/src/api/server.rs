//! Serving: the router, its middleware, and the thread it runs on.
//!
//! The server runs on a thread of its own with its own single-threaded tokio runtime, not on
//! the engine's: the engine's runtime is one thread (see main.rs), and a burst of requests
//! or a hundred stream clients must not take turns with event handling there. The two sides
//! meet only in `watch` channels (snapshots out of the engine) and the bounded control
//! channel (kill, accept into the engine), both of which work across runtimes.
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Instant,
};

use anyhow::{Context, bail};
use axum::{
    Router,
    extract::DefaultBodyLimit,
    http::{HeaderValue, Method, header},
    middleware::from_fn_with_state,
    routing::{get, post},
};
use tokio::sync::oneshot;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tracing::{info, warn};

use super::{
    auth, control,
    error::ApiError,
    limits::{self, CappedListener, ClientAddr, RateLimiter},
    metrics::{self, Counters},
    routes,
    snapshot::Views,
    token,
};
use crate::{config, output::LiveSinkStats, process::users::UserNames, sensor::SensorStats};

/// The limits in force.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body.
    pub max_body_bytes: u64,
    /// Most open connections.
    pub max_connections: usize,
    /// Requests per second per client.
    pub rate_limit: f64,
    /// Burst per client.
    pub rate_burst: usize,
}

/// How to serve: resolved from the config and the command line.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The token: configured, or generated (then `token_path` says where it is); `None` only
    /// with `api.open_reads`.
    pub token: Option<String>,
    /// Where the generated token was written, when procwatch made it.
    pub token_path: Option<PathBuf>,
    /// CORS origins (empty: off).
    pub cors_origins: Vec<String>,
    /// Limits.
    pub limits: Limits,
    /// Kills through the API stay inside this process tree (`--enforce-scope-pid`).
    pub scope: Option<u32>,
}

impl Settings {
    /// The settings for `listen` under `cfg`: reads `api.token_file` (refused when its group
    /// or others may read or write it), and refuses a non-loopback address without a token.
    pub fn resolve(
        cfg: &config::Api,
        listen: SocketAddr,
        scope: Option<u32>,
    ) -> anyhow::Result<Self> {
        let mut token_path = None;
        let token = match (&cfg.token, &cfg.token_file) {
            (Some(_), Some(_)) => bail!("set api.token or api.token_file, not both"),
            (Some(t), None) => Some(t.clone()),
            (None, Some(path)) => Some(read_token_file(path)?),
            (None, None) if cfg.open_reads => None,
            (None, None) if !listen.ip().is_loopback() => None,
            (None, None) => {
                // No token configured: make one rather than serve every user's /proc data
                // to every local user.
                let path = token::default_path(nix_euid())?;
                let t = token::load_or_create(&path, read_token_file)?;
                token::check_generated(&t, &path)?;
                token_path = Some(path);
                Some(t)
            }
        };
        if token.is_none() && !listen.ip().is_loopback() {
            bail!(
                "refusing to serve the API on {listen} without a token: anyone who can reach \
                 that address could read every process and alert. Set api.token or \
                 api.token_file, or listen on loopback (127.0.0.1 or [::1])"
            );
        }
        Ok(Self {
            listen,
            token,
            token_path,
            cors_origins: cfg.cors_origins.clone(),
            limits: Limits {
                max_body_bytes: cfg.max_body_bytes,
                max_connections: cfg.max_connections,
                rate_limit: cfg.rate_limit,
                rate_burst: cfg.rate_burst,
            },
            scope,
        })
    }
}

/// The token in `path` (its first line), from a file only its owner may read.
fn read_token_file(path: &Path) -> anyhow::Result<String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path)
        .with_context(|| format!("api.token_file {}: cannot read it", path.display()))?;
    if meta.mode() & 0o077 != 0 {
        bail!(
            "api.token_file {}: mode {:o} lets its group or others read or write it; \
             chmod 600 it",
            path.display(),
            meta.mode() & 0o777
        );
    }
    let euid = nix_euid();
    if meta.uid() != euid && meta.uid() != 0 {
        bail!(
            "api.token_file {}: owned by uid {}, not by procwatch's user ({euid}) or root",
            path.display(),
            meta.uid()
        );
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("api.token_file {}: cannot read it", path.display()))?;
    let token = text.lines().next().unwrap_or("").trim().to_string();
    if token.is_empty() {
        bail!("api.token_file {}: the file is empty", path.display());
    }
    Ok(token)
}

fn nix_euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// What every handler reads.
pub struct Shared {
    /// The engine's published copies.
    pub views: Views,
    /// The sensor's counters (atomics the sensor writes; reading them costs it nothing).
    pub sensor: Arc<SensorStats>,
    /// The sinks' counters.
    pub sinks: Option<LiveSinkStats>,
    /// Requests to the engine.
    pub control: control::Sender,
    /// The alert history and live alert bus.
    pub history: crate::history::HistoryReader,
    /// The token, when configured.
    pub token: Option<String>,
    /// The API's counters.
    pub counters: Arc<Counters>,
    /// Per-client rate limit.
    pub rate: RateLimiter,
    /// Limits in force.
    pub limits: Limits,
    /// Events per second, sampled.
    pub rates: Mutex<routes::stats::RateSampler>,
    /// User names by uid (read from /etc/passwd on this thread, never the engine's).
    pub users: Mutex<UserNames>,
    /// When the API started.
    pub started: Instant,
    /// `monitor` or `api`.
    pub command: &'static str,
    /// Kill scope.
    pub scope: Option<u32>,
}

/// The state handlers get.
pub type AppState = Arc<Shared>;

/// What the engine's side hands the server.
pub struct Wiring {
    /// Published copies.
    pub views: Views,
    /// Sensor counters.
    pub sensor: Arc<SensorStats>,
    /// Sink counters.
    pub sinks: Option<LiveSinkStats>,
    /// Requests to the engine.
    pub control: control::Sender,
    /// The alert history.
    pub history: crate::history::HistoryReader,
    /// `monitor` or `api`.
    pub command: &'static str,
}

/// Every route the router serves, as (method, OpenAPI path). A unit test checks that the
/// OpenAPI document lists exactly these; the HTTP tests ask each one.
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/"),
    ("get", "/assets/{path}"),
    ("get", "/api"),
    ("get", "/api/openapi.json"),
    ("get", "/api/health"),
    ("get", "/api/processes"),
    ("get", "/api/suspicious"),
    ("get", "/api/process/{pid}"),
    ("post", "/api/process/{pid}/kill"),
    ("get", "/api/stats"),
    ("get", "/api/baselines"),
    ("get", "/api/baselines/{exe}"),
    ("get", "/metrics"),
    ("get", "/api/alerts"),
    ("get", "/api/alerts/stream"),
    ("get", "/api/alerts/{id}"),
    ("post", "/api/alerts/{id}/accept"),
];

/// The router with every route and middleware.
pub fn router(state: AppState, cors: &[String]) -> Router {
    let api = Router::new()
        .route("/", get(routes::meta::page))
        .route("/assets/{*path}", get(routes::meta::asset))
        .route("/api", get(routes::meta::index))
        .route("/api/openapi.json", get(routes::meta::openapi))
        .route("/api/health", get(routes::meta::health))
        .route("/api/processes", get(routes::processes::list))
        .route("/api/suspicious", get(routes::processes::suspicious))
        .route("/api/process/{pid}", get(routes::processes::detail))
        .route("/api/process/{pid}/kill", post(routes::kill::kill))
        .route("/api/stats", get(routes::stats::stats))
        .route("/api/baselines", get(routes::baselines::list))
        .route("/api/baselines/{*exe}", get(routes::baselines::show))
        .route("/metrics", get(metrics::metrics));
    let api = routes::alerts::routes(api);
    let mut app = api
        .fallback(|| async { ApiError::not_found("no such endpoint (GET /api lists them)") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed on this endpoint (GET /api lists them)",
            )
        })
        .layer(DefaultBodyLimit::max(
            usize::try_from(state.limits.max_body_bytes).unwrap_or(usize::MAX),
        ))
        .layer(from_fn_with_state(state.clone(), limits::body_size))
        .layer(from_fn_with_state(state.clone(), auth::check));
    if !cors.is_empty() {
        let origins: Vec<HeaderValue> = cors
            .iter()
            .filter_map(|o| HeaderValue::from_str(o).ok())
            .collect();
        app = app.layer(
            CorsLayer::new()
                .allow_origin(AllowOrigin::list(origins))
                .allow_methods([Method::GET, Method::POST])
                .allow_headers([
                    header::AUTHORIZATION,
                    header::CONTENT_TYPE,
                    header::HeaderName::from_static("last-event-id"),
                ]),
        );
    }
    app.layer(from_fn_with_state(state.clone(), limits::rate))
        .layer(axum::middleware::from_fn(limits::json_errors))
        .layer(from_fn_with_state(state.clone(), metrics::count))
        .with_state(state)
}

/// The running server; dropping it (or [`Server::stop`]) stops it.
pub struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Binds `settings.listen` now (an address in use is an error at start, not later) and
    /// serves on a thread of its own.
    pub fn start(settings: Settings, wiring: Wiring) -> anyhow::Result<Self> {
        let std_listener = std::net::TcpListener::bind(settings.listen)
            .with_context(|| format!("api: cannot listen on {}", settings.listen))?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let counters = Arc::new(Counters::default());
        let state = Arc::new(Shared {
            views: wiring.views,
            sensor: wiring.sensor,
            sinks: wiring.sinks,
            control: wiring.control,
            history: wiring.history,
            token: settings.token.clone(),
            counters: counters.clone(),
            rate: RateLimiter::new(settings.limits.rate_limit, settings.limits.rate_burst),
            limits: settings.limits.clone(),
            rates: Mutex::new(routes::stats::RateSampler::default()),
            users: Mutex::new(UserNames::new()),
            started: Instant::now(),
            command: wiring.command,
            scope: settings.scope,
        });
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let max_conns = settings.limits.max_connections;
        let cors = settings.cors_origins.clone();
        let thread = std::thread::Builder::new()
            .name("procwatch-api".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    // Its blocking threads (history queries, fd reads) carry the name too.
                    .thread_name("procwatch-api")
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        warn!(error = %e, "api: cannot start its runtime; no API");
                        return;
                    }
                };
                rt.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(std_listener) {
                        Ok(l) => l,
                        Err(e) => {
                            warn!(error = %e, "api: cannot use its socket; no API");
                            return;
                        }
                    };
                    tokio::spawn(routes::stats::sample_rates(state.clone()));
                    let app = router(state, &cors);
                    let listener = CappedListener::new(listener, max_conns, counters);
                    let serve = axum::serve(
                        listener,
                        app.into_make_service_with_connect_info::<ClientAddr>(),
                    );
                    // Stopping does not wait for stream clients (they never end by
                    // themselves): the runtime goes, and their connections with it.
                    tokio::select! {
                        r = serve => if let Err(e) = r { warn!(error = %e, "api: server failed"); },
                        _ = stop_rx => {}
                    }
                });
            })
            .context("api: cannot start its thread")?;
        if let Some(path) = &settings.token_path {
            info!(
                token_file = %path.display(),
                "api: no token configured; requests need the generated one in {}",
                path.display()
            );
        }
        info!(
            addr = %addr,
            auth = settings.token.is_some(),
            cors = !settings.cors_origins.is_empty(),
            "api listening on http://{addr}"
        );
        Ok(Self {
            addr,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// The address it listens on (the real port when 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving and waits for the thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}
