//! The engine's side of the API, shared by `monitor` and `api`: starts the server, publishes
//! the engine's copies on each pass of the loop (at most every 250 ms), and carries out the
//! requests that change something, on the engine's task, in turn with events.
use std::{net::SocketAddr, sync::Arc};

use serde_json::json;
use tracing::info;

use super::pipeline::{self, ActionStage};
use crate::{
    api::{Publisher, Server, Settings, Wiring, control},
    config::Config,
    engine::{ApiRefusal, Engine},
    output::LiveSinkStats,
    sensor::SensorStats,
};

/// What the API reads besides the engine's copies.
pub struct Feeds {
    /// The sensor's counters.
    pub sensor: Arc<SensorStats>,
    /// The sinks' counters.
    pub sinks: Option<LiveSinkStats>,
    /// The alert history.
    pub history: crate::history::HistoryReader,
    /// `monitor` or `api`.
    pub command: &'static str,
}

/// The running API and the engine's ends of its channels.
pub struct ApiSide {
    server: Server,
    publisher: Publisher,
    control: control::Receiver,
}

impl ApiSide {
    /// Starts the API on `listen` (refused without a token off loopback, see
    /// [`Settings::resolve`]).
    pub fn start(
        cfg: &Config,
        listen: SocketAddr,
        scope: Option<u32>,
        engine: &Engine,
        feeds: Feeds,
    ) -> anyhow::Result<Self> {
        let settings = Settings::resolve(&cfg.api, listen, scope)?;
        let (publisher, views) = Publisher::new(engine);
        let (tx, control) = control::channel();
        let server = Server::start(
            settings,
            Wiring {
                views,
                sensor: feeds.sensor,
                sinks: feeds.sinks,
                control: tx,
                history: feeds.history,
                command: feeds.command,
            },
        )?;
        Ok(Self {
            server,
            publisher,
            control,
        })
    }

    /// The address served.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// Publishes fresh copies when due.
    pub fn publish(&mut self, engine: &Engine) {
        self.publisher.tick(engine);
    }

    /// The next request, for the engine's `select!`.
    pub async fn next(&mut self) -> Option<control::Request> {
        self.control.recv().await
    }

    /// Carries out `req`: a kill goes to the action stage (which answers the request when it
    /// has acted), an accept changes the engine's model.
    pub async fn handle(
        &mut self,
        req: control::Request,
        engine: &mut Engine,
        stage: &ActionStage,
        scope: Option<u32>,
    ) {
        match req {
            control::Request::Kill { pid, reply } => match engine.api_kill(pid, scope) {
                Ok(mut flagged) => {
                    flagged.alert.action_reason = Some(format!(
                        "kill requested through the API (POST /api/process/{pid}/kill)"
                    ));
                    info!(pid, "api: kill requested");
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    stage.send(vec![pipeline::api_kill(flagged, tx)]).await;
                    // The answer comes once the stage has acted; the engine does not wait.
                    tokio::spawn(async move {
                        let answer = match rx.await {
                            Ok(alert) => Ok(serde_json::to_value(&alert).unwrap_or_default()),
                            Err(_) => Err(ApiRefusal {
                                status: 503,
                                message: "the action stage stopped before acting".into(),
                            }),
                        };
                        let _ = reply.send(answer);
                    });
                }
                Err(refusal) => {
                    info!(pid, why = %refusal.message, "api: kill refused");
                    let _ = reply.send(Err(refusal));
                }
            },
            control::Request::Accept { alert, reply } => {
                let answer = engine
                    .api_accept(&alert)
                    .map(|done| json!({ "added": done.added, "skipped": done.skipped }));
                if answer.is_ok() {
                    self.publisher.publish_baselines(engine);
                }
                let _ = reply.send(answer);
            }
        }
    }

    /// Stops the server.
    pub fn stop(self) {
        self.server.stop();
    }
}

/// Where the API of `monitor` listens: `--api`, else `api.listen`, else nowhere.
pub fn monitor_listen(cfg: &Config, flag: Option<SocketAddr>) -> Option<SocketAddr> {
    flag.or(cfg.api.listen)
}

/// Where `procwatch api` listens: `--host`/`--port` over `api.listen`, over 127.0.0.1:8080.
pub fn api_listen(cfg: &Config, host: Option<std::net::IpAddr>, port: Option<u16>) -> SocketAddr {
    let base = cfg.api.listen.unwrap_or(crate::config::Api::DEFAULT_LISTEN);
    SocketAddr::new(host.unwrap_or(base.ip()), port.unwrap_or(base.port()))
}

/// For `api::control` users that want no API: nothing.
pub async fn pending_request(side: Option<&mut ApiSide>) -> Option<control::Request> {
    match side {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}
