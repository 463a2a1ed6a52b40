//! Sensors: where events come from. The eBPF sensor is the main one; when it cannot load,
//! the netlink process connector plus /proc sweeps deliver the same event types, marked with
//! the sensor that produced them. Every sensor sends into one channel and counts what it lost.
pub mod decode;
pub mod ebpf;
pub mod event;
pub mod stats;
pub mod tracefs;

use std::sync::Arc;

use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
};
use tracing::warn;

pub use ebpf::{EbpfOptions, EbpfSensor};
pub use event::{Event, EventBody, EventKind, SensorKind};
pub use stats::SensorStats;

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

/// Starts the eBPF sensor, or explains why it could not.
pub fn start(
    opts: &EbpfOptions,
    tx: mpsc::Sender<Event>,
    stats: Arc<SensorStats>,
) -> anyhow::Result<RunningSensor> {
    let (stop_tx, stop_rx) = watch::channel(false);
    match EbpfSensor::load(opts) {
        Ok(mut sensor) => {
            let task = sensor.spawn_reader(tx, stats, stop_rx)?;
            Ok(RunningSensor {
                kind: SensorKind::Ebpf,
                ebpf: Some(sensor),
                ebpf_error: None,
                tasks: vec![task],
                stop: stop_tx,
            })
        }
        Err(e) => {
            warn!(error = %e, "eBPF sensor unavailable");
            Err(anyhow::anyhow!(e))
        }
    }
}
