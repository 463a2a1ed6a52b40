//! Sensors: where events come from. The eBPF sensor is the main one; when it cannot load,
//! the netlink process connector plus /proc sweeps deliver the same event types, marked with
//! the sensor that produced them. Every sensor sends into one channel and counts what it lost.
pub mod btf;
pub mod decode;
pub mod ebpf;
pub mod event;
pub mod ia32;
pub mod proc_connector;
pub mod stats;
pub mod sweep;
pub mod tracefs;
pub mod watched;

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use anyhow::Context;
use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
};
use tracing::{info, warn};

pub use ebpf::{EbpfOptions, EbpfSensor};
pub use event::{Event, EventBody, EventKind, SensorKind};
pub use stats::SensorStats;

use proc_connector::{ConnectorContext, ProcConnector};
use sweep::SweeperContext;

/// Default time between two /proc sweeps in fallback mode.
pub const DEFAULT_SWEEP_INTERVAL: Duration = Duration::from_secs(5);
/// The kinds the fallback sensor can produce.
pub const FALLBACK_KINDS: [EventKind; 3] = [EventKind::Exec, EventKind::Fork, EventKind::Exit];
/// Connector-to-sweeper notes in flight; a full queue costs at most a duplicate sweep event.
const SEEN_QUEUE: usize = 16 * 1024;

/// Which sensor to run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SensorMode {
    /// eBPF, or the fallback when eBPF cannot load.
    #[default]
    Auto,
    /// eBPF only: fail when it cannot load.
    Ebpf,
    /// The fallback (netlink process connector + /proc sweeps) even when eBPF would work.
    Fallback,
}

impl SensorMode {
    /// Stable name used on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            SensorMode::Auto => "auto",
            SensorMode::Ebpf => "ebpf",
            SensorMode::Fallback => "fallback",
        }
    }
}

/// The error for an unknown sensor mode name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown sensor '{0}' (known: auto, ebpf, fallback)")]
pub struct UnknownSensorMode(pub String);

impl std::str::FromStr for SensorMode {
    type Err = UnknownSensorMode;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [SensorMode::Auto, SensorMode::Ebpf, SensorMode::Fallback]
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| UnknownSensorMode(s.to_string()))
    }
}

/// Options for starting a sensor.
#[derive(Debug, Clone)]
pub struct SensorOptions {
    /// Which sensor to run.
    pub mode: SensorMode,
    /// eBPF options; `ebpf.kinds` are the kinds wanted from either sensor.
    pub ebpf: EbpfOptions,
    /// Time between /proc sweeps in fallback mode.
    pub sweep_interval: Duration,
}

impl Default for SensorOptions {
    fn default() -> Self {
        Self {
            mode: SensorMode::Auto,
            ebpf: EbpfOptions::default(),
            sweep_interval: DEFAULT_SWEEP_INTERVAL,
        }
    }
}

impl SensorOptions {
    /// The kinds wanted.
    pub fn kinds(&self) -> &BTreeSet<EventKind> {
        &self.ebpf.kinds
    }
}

/// A running sensor: keep it alive to keep the probes attached.
pub struct RunningSensor {
    /// Which sensor is delivering events.
    pub kind: SensorKind,
    /// The eBPF sensor, when that is the one running (kill policy updates go through it).
    pub ebpf: Option<EbpfSensor>,
    /// Why eBPF is not running, when it is not.
    pub ebpf_error: Option<String>,
    /// Tasks feeding the channel; they end after `stop` fires and they drained.
    pub tasks: Vec<JoinHandle<()>>,
    stop: watch::Sender<bool>,
}

impl RunningSensor {
    /// Asks the sensor tasks to finish: they deliver what the kernel already produced, then end.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
    }
}

/// Starts the sensor `opts.mode` asks for: eBPF, falling back to the netlink process connector
/// and /proc sweeps when eBPF cannot load (unless the mode is `Ebpf`, or the kill policy asks
/// for in-kernel kills: only an explicit `--sensor fallback` runs without them).
pub fn start(
    opts: &SensorOptions,
    tx: mpsc::Sender<Event>,
    stats: Arc<SensorStats>,
) -> anyhow::Result<RunningSensor> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let kills = opts.ebpf.kill.kills();
    let reason = match opts.mode {
        SensorMode::Fallback => {
            info!("fallback sensor forced; eBPF not tried");
            if kills {
                warn!(
                    "in-kernel kills are OFF (--sensor fallback): ptrace and W+X are seen only \
                     by /proc sweeps, and killed, if at all, from user space after the fact"
                );
            }
            "fallback forced (--sensor fallback)".to_string()
        }
        SensorMode::Auto | SensorMode::Ebpf => match EbpfSensor::load(&opts.ebpf) {
            Ok(mut sensor) => {
                stats.set_probes_missing(sensor.probes_missing());
                let task = sensor.spawn_reader(tx, stats, stop_rx)?;
                return Ok(RunningSensor {
                    kind: SensorKind::Ebpf,
                    ebpf: Some(sensor),
                    ebpf_error: None,
                    tasks: vec![task],
                    stop: stop_tx,
                });
            }
            Err(e) if opts.mode == SensorMode::Ebpf => {
                return Err(anyhow::anyhow!(e).context("eBPF sensor unavailable (--sensor ebpf)"));
            }
            Err(e) if kills => {
                return Err(anyhow::anyhow!(e).context(
                    "the kill policy (--kill-on-alert or enforce: ptrace/wx_mem) needs the eBPF \
                     sensor, which is unavailable; refusing to run without in-kernel kills. \
                     Pass --sensor fallback to run anyway (in-kernel kills off)",
                ));
            }
            Err(e) => {
                warn!(
                    error = %e,
                    "eBPF sensor unavailable; falling back to the netlink process connector \
                     and /proc sweeps (exec, fork, exit only)"
                );
                e.to_string()
            }
        },
    };
    let tasks = start_fallback(opts, tx, stats, &stop_rx)
        .with_context(|| format!("no sensor could start; eBPF: {reason}"))?;
    Ok(RunningSensor {
        kind: SensorKind::ProcConnector,
        ebpf: None,
        ebpf_error: Some(reason),
        tasks,
        stop: stop_tx,
    })
}

/// Subscribes to the process connector and starts its reader and the sweeper.
fn start_fallback(
    opts: &SensorOptions,
    tx: mpsc::Sender<Event>,
    stats: Arc<SensorStats>,
    stop: &watch::Receiver<bool>,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let kinds = opts.kinds();
    let unavailable: Vec<&str> = kinds
        .iter()
        .filter(|k| !FALLBACK_KINDS.contains(k))
        .map(|k| k.as_str())
        .collect();
    if !unavailable.is_empty() {
        warn!(
            kinds = %unavailable.join(","),
            "the fallback sensor cannot produce these kinds; they will not appear"
        );
    }
    if !FALLBACK_KINDS.iter().any(|k| kinds.contains(k)) {
        warn!("none of the requested kinds is available from the fallback sensor");
        return Ok(Vec::new());
    }
    let connector = ProcConnector::subscribe()?;
    let sweeps = kinds.contains(&EventKind::Exec) || kinds.contains(&EventKind::Exit);
    let (seen_tx, seen_rx) = mpsc::channel(SEEN_QUEUE);
    let mut tasks = Vec::with_capacity(2);
    let ctx = ConnectorContext {
        tx: tx.clone(),
        stats: stats.clone(),
        kinds: kinds.clone(),
        seen: sweeps.then_some(seen_tx),
    };
    tasks.push(connector.spawn(ctx, stop.clone())?);
    if sweeps {
        let ctx = SweeperContext {
            tx,
            stats,
            kinds: kinds.clone(),
            interval: opts.sweep_interval,
            seen: seen_rx,
        };
        tasks.push(sweep::spawn_sweeper(ctx, stop.clone()));
    }
    info!(sweeps, "fallback sensor running: netlink process connector");
    Ok(tasks)
}
