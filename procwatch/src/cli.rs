//! Command-line interface: parsing only, no logic.
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::sensor::{EventKind, SensorMode};

/// Linux runtime-security monitor.
#[derive(Debug, Parser)]
#[command(name = "procwatch", version, about)]
pub struct Cli {
    /// Log filter for procwatch's own diagnostics on stderr (e.g. info, debug, procwatch=trace).
    #[arg(long, global = true, default_value = "info", env = "PROCWATCH_LOG")]
    pub log: String,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the live raw event stream of the sensor as JSONL (one object per event).
    Events(EventsArgs),
    /// Show the effective configuration or check config files.
    Config(ConfigArgs),
}

/// Arguments of `procwatch events`.
#[derive(Debug, clap::Args)]
pub struct EventsArgs {
    /// Only these kinds (comma-separated): exec, fork, exit, ptrace, connect, wx_mem, memfd.
    #[arg(long, value_delimiter = ',')]
    pub kinds: Vec<EventKind>,
    /// Stop after this many seconds (default: until SIGINT/SIGTERM).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Ring buffer size in KiB (power of two, at least 4).
    #[arg(long, default_value_t = 8192)]
    pub ring_kib: u32,
    /// Write the events to this file instead of stdout.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Sensor: auto (eBPF, else the fallback), ebpf (fail without it), or fallback (netlink
    /// process connector + /proc sweeps; exec, fork and exit only).
    #[arg(long, default_value = "auto")]
    pub sensor: SensorMode,
    /// Seconds between /proc sweeps when the fallback sensor runs.
    #[arg(long, default_value_t = 5.0)]
    pub sweep_interval: f64,
}

/// Arguments of `procwatch config`.
#[derive(Debug, clap::Args)]
pub struct ConfigArgs {
    /// What to do with the configuration.
    #[command(subcommand)]
    pub action: ConfigAction,
}

/// Subcommands of `procwatch config`.
#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// Print the effective configuration (defaults, /etc/procwatch.yaml, ~/.procwatch.yaml, --config).
    Show {
        /// Config file layered last, over the system and user files.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Validate config files, each on its own over the defaults.
    Check {
        /// Files to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}
