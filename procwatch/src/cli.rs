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
    /// The main job: watch every process in real time (eBPF events) and alert on suspicious ones.
    Monitor(MonitorArgs),
    /// Sweep /proc once (or every `--interval` seconds) and alert on suspicious processes; no eBPF needed.
    Scan(ScanArgs),
    /// Print the live raw event stream of the sensor as JSONL (one object per event).
    Events(EventsArgs),
    /// Show the effective configuration or check config files.
    Config(ConfigArgs),
    /// Inspect and edit learned per-executable baselines (the model file).
    Baseline(BaselineArgs),
}

/// Arguments of `procwatch baseline`.
#[derive(Debug, clap::Args)]
pub struct BaselineArgs {
    /// The model file (default: baseline.model_path, else ~/.local/share/procwatch/model.json).
    #[arg(long, global = true, env = "PROCWATCH_MODEL", value_name = "FILE")]
    pub model: Option<PathBuf>,
    /// Config file layered over /etc/procwatch.yaml and ~/.procwatch.yaml.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub action: BaselineAction,
}

/// Subcommands of `procwatch baseline`.
#[derive(Debug, Subcommand)]
pub enum BaselineAction {
    /// One line per executable in the model.
    List {
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Everything the baseline of one executable holds.
    Show {
        /// The executable: its path, or its name when only one has it.
        exe: PathBuf,
        /// JSON (the pWarden example baseline's shape).
        #[arg(long)]
        json: bool,
    },
    /// Remove an executable's baseline (it is learned afresh when seen again).
    Forget {
        /// The executable.
        exe: PathBuf,
    },
    /// Make a port, child or file normal for an executable.
    Allow(AllowArgs),
    /// Add exactly what an alert reported (one alert JSON object, or JSONL).
    Accept {
        /// The alert file.
        alert: PathBuf,
    },
    /// Combine models learned on several hosts into one.
    Merge {
        /// Model files to combine.
        #[arg(required = true, num_args = 1..)]
        inputs: Vec<PathBuf>,
        /// Where to write the result.
        #[arg(short = 'o', long = "output", value_name = "OUT")]
        output: PathBuf,
    },
}

/// Arguments of `procwatch baseline allow`.
#[derive(Debug, clap::Args)]
pub struct AllowArgs {
    /// The executable.
    pub exe: PathBuf,
    /// What to allow.
    #[command(flatten)]
    pub what: AllowWhat,
    /// Protocol of --port [default: tcp].
    #[arg(long)]
    pub proto: Option<crate::baseline::net::Proto>,
    /// Direction of --port: outbound (its peer's port), inbound or listen (its own port)
    /// [default: outbound].
    #[arg(long)]
    pub direction: Option<crate::baseline::net::Direction>,
    /// Address class of --port: any, loopback, private, link_local, multicast, unspecified,
    /// public [default: any].
    #[arg(long)]
    pub class: Option<crate::baseline::net::AddrClass>,
}

/// Exactly one thing to allow.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
pub struct AllowWhat {
    /// A port.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,
    /// A child executable (absolute path).
    #[arg(long, value_name = "PATH")]
    pub child: Option<PathBuf>,
    /// A file, or a pattern with `*` for one whole path component (/var/www/*).
    #[arg(long, value_name = "PATTERN")]
    pub file: Option<PathBuf>,
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
    #[arg(long, default_value_t = 4096)]
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

/// Options shared by `monitor` and `scan`.
#[derive(Debug, Clone, clap::Args)]
pub struct DetectArgs {
    /// Config file layered over /etc/procwatch.yaml and ~/.procwatch.yaml.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Append alerts as JSONL to this file (`-` for stdout).
    #[arg(long)]
    pub jsonl: Option<PathBuf>,
    /// Alert threshold, overriding `min_score` from the config.
    #[arg(long)]
    pub min_score: Option<f64>,
    /// No alert output on stdout (other sinks still get every alert).
    #[arg(long)]
    pub quiet: bool,
    /// Kill flagged processes: ptrace and W+X in the kernel before the syscall returns, others
    /// from user space through a pidfd of the exact process scored.
    #[arg(long)]
    pub kill_on_alert: bool,
    /// Stop after the first alert (written completely, with its dump); exit status 3.
    #[arg(long)]
    pub stop_on_alert: bool,
    /// Restrict every kill (kernel and user space) to this process and its descendants.
    #[arg(long)]
    pub enforce_scope_pid: Option<u32>,
    /// Write a forensic dump of each flagged process under DIR (created 0700; see docs).
    #[arg(long, value_name = "DIR")]
    pub dump: Option<PathBuf>,
    /// Append readable multi-line alerts to this file, overriding `outputs.log_file`.
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
    /// Send alerts to syslog, overriding `outputs.syslog`: unix:///dev/log, udp://HOST:PORT
    /// or tcp://HOST:PORT.
    #[arg(long, value_name = "URL")]
    pub syslog: Option<crate::config::SyslogTarget>,
}

/// Arguments of `procwatch monitor`.
#[derive(Debug, clap::Args)]
pub struct MonitorArgs {
    /// Shared detection options.
    #[command(flatten)]
    pub detect: DetectArgs,
    /// Which sensor: auto (eBPF, else the netlink fallback), ebpf, or fallback.
    #[arg(long, default_value = "auto")]
    pub sensor: SensorMode,
    /// Stop after this many seconds (default: until SIGINT/SIGTERM).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Run in the background (for systems without systemd): detach, write --pid-file.
    #[arg(short = 'd', long)]
    pub daemon: bool,
    /// Pid file written in daemon mode (removed on exit).
    #[arg(long, default_value = "/run/procwatch.pid")]
    pub pid_file: PathBuf,
    /// Where diagnostics go in daemon mode (stderr is detached).
    #[arg(long, default_value = "/var/log/procwatch.log")]
    pub daemon_log: PathBuf,
}

/// Arguments of `procwatch scan`.
#[derive(Debug, clap::Args)]
pub struct ScanArgs {
    /// Shared detection options.
    #[command(flatten)]
    pub detect: DetectArgs,
    /// Repeat the sweep every N seconds until SIGINT/SIGTERM.
    #[arg(long)]
    pub interval: Option<f64>,
    /// Stop after this many sweeps (with --interval).
    #[arg(long)]
    pub count: Option<u64>,
}
