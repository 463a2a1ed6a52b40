//! Command-line interface: parsing only, no logic.
use std::{path::PathBuf, time::Duration};

use clap::{Parser, Subcommand};

use crate::{
    bounds::{self, Floor},
    sensor::{EventKind, SensorMode},
};

/// Linux runtime-security monitor.
#[derive(Debug, Parser)]
#[command(name = "procwatch", version, about)]
pub struct Cli {
    /// Log filter for procwatch's own diagnostics on stderr (e.g. info, debug, procwatch=trace).
    #[arg(long, global = true, default_value = "info", env = "PROCWATCH_LOG",
          value_parser = log_filter)]
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
    /// Learn per-executable baselines for `--duration`, then write the model: everything seen
    /// counts as learned and stable, so `monitor --model FILE` monitors at once.
    Train(TrainArgs),
    /// Serve the REST API and dashboard over periodic /proc sweeps (no eBPF needed);
    /// `monitor --api ADDR` serves the same API from the real-time monitor.
    Api(ApiArgs),
}

/// Arguments of `procwatch api`.
#[derive(Debug, clap::Args)]
pub struct ApiArgs {
    /// Shared detection options (alerts still go to the sinks and the alert history).
    #[command(flatten)]
    pub detect: DetectArgs,
    /// Address to listen on (default: api.listen's, else 127.0.0.1).
    #[arg(long)]
    pub host: Option<std::net::IpAddr>,
    /// Port to listen on (default: api.listen's, else 8080; 0 lets the kernel pick one, which
    /// the log line "api listening on" names).
    #[arg(long)]
    pub port: Option<u16>,
    /// The baseline model file judged against (read only: `api` never writes it).
    #[arg(long, env = "PROCWATCH_MODEL", value_name = "FILE")]
    pub model: Option<PathBuf>,
    /// Time between /proc sweeps (seconds, or with a unit; at least 100ms; default:
    /// sweep_interval).
    #[arg(long, value_parser = period, allow_negative_numbers = true)]
    pub interval: Option<Duration>,
}

/// Arguments of `procwatch train`.
#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// Shared detection options (heuristic alerts still go out while training).
    #[command(flatten)]
    pub detect: DetectArgs,
    /// Which sensor: auto (eBPF, else the netlink fallback), ebpf, or fallback.
    #[arg(long, default_value = "auto")]
    pub sensor: SensorMode,
    /// How long to learn: seconds, or a number with ms, s, m, h or d.
    #[arg(long, value_parser = run_time, allow_negative_numbers = true)]
    pub duration: Duration,
    /// The model file written (default: baseline.model_path, else
    /// ~/.local/share/procwatch/model.json); a valid model there is replaced, anything else
    /// is refused.
    #[arg(long, env = "PROCWATCH_MODEL", value_name = "FILE")]
    pub model: Option<PathBuf>,
}

impl TrainArgs {
    /// `train` is `monitor` for a set time, learning into a new model.
    pub fn into_monitor(self) -> MonitorArgs {
        MonitorArgs {
            detect: self.detect,
            sensor: self.sensor,
            duration: Some(self.duration),
            daemon: false,
            pid_file: PathBuf::from("/run/procwatch.pid"),
            daemon_log: PathBuf::from("/var/log/procwatch.log"),
            model: self.model,
            model_readonly: false,
            history: None,
            no_history: true,
            train: true,
            api: None,
        }
    }
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
    /// Only these kinds (comma-separated): exec, fork, exit, ptrace, connect, wx_mem, memfd, inject, io_uring.
    #[arg(long, value_delimiter = ',')]
    pub kinds: Vec<EventKind>,
    /// Stop after this long: seconds, or a number with ms, s, m, h or d (default: until
    /// SIGINT/SIGTERM).
    #[arg(long, value_parser = run_time, allow_negative_numbers = true)]
    pub duration: Option<Duration>,
    /// Ring buffer size in KiB (a power of two from 4 to 1048576).
    #[arg(long, default_value = "4096", value_parser = ring_kib, allow_negative_numbers = true)]
    pub ring_kib: u32,
    /// Write the events to this file instead of stdout.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Sensor: auto (eBPF, else the fallback), ebpf (fail without it), or fallback (netlink
    /// process connector + /proc sweeps; exec, fork and exit only).
    #[arg(long, default_value = "auto")]
    pub sensor: SensorMode,
    /// Time between /proc sweeps when the fallback sensor runs (seconds, or with a unit; at
    /// least 100ms).
    #[arg(long, default_value = "5", value_parser = period, allow_negative_numbers = true)]
    pub sweep_interval: Duration,
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
    /// Alert threshold, overriding `min_score` from the config (0 to 1000000).
    #[arg(long, value_parser = score, allow_negative_numbers = true)]
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
    #[arg(long, value_parser = pid, allow_negative_numbers = true)]
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
    /// Stop after this long: seconds, or a number with ms, s, m, h or d (default: until
    /// SIGINT/SIGTERM).
    #[arg(long, value_parser = run_time, allow_negative_numbers = true)]
    pub duration: Option<Duration>,
    /// Run in the background (for systems without systemd): detach, write --pid-file.
    #[arg(short = 'd', long)]
    pub daemon: bool,
    /// Pid file written in daemon mode (removed on exit).
    #[arg(long, default_value = "/run/procwatch.pid")]
    pub pid_file: PathBuf,
    /// Where diagnostics go in daemon mode (stderr is detached).
    #[arg(long, default_value = "/var/log/procwatch.log")]
    pub daemon_log: PathBuf,
    /// The baseline model file (default: baseline.model_path, else
    /// ~/.local/share/procwatch/model.json); created when absent, saved periodically and on exit.
    #[arg(long, env = "PROCWATCH_MODEL", value_name = "FILE")]
    pub model: Option<PathBuf>,
    /// Use the model without ever writing the file (a reviewed model shared by a fleet).
    #[arg(long)]
    pub model_readonly: bool,
    /// The alert history database (default: history.path, else /var/lib/procwatch/alerts.db
    /// as root, ~/.local/share/procwatch/alerts.db otherwise); turns the history on.
    #[arg(long, env = "PROCWATCH_HISTORY", value_name = "FILE")]
    pub history: Option<PathBuf>,
    /// Keep no alert history database (ids start at 1; the API still has recent alerts).
    #[arg(long)]
    pub no_history: bool,
    /// Set by `train`: learn into a new model and write it, learned and stable, at the end.
    #[arg(skip)]
    pub train: bool,
    /// Serve the REST API and dashboard on this address (overrides api.listen; port 0 lets
    /// the kernel pick one, which the log line "api listening on" names).
    #[arg(long, value_name = "ADDR")]
    pub api: Option<std::net::SocketAddr>,
}

/// Arguments of `procwatch scan`.
#[derive(Debug, clap::Args)]
pub struct ScanArgs {
    /// Shared detection options.
    #[command(flatten)]
    pub detect: DetectArgs,
    /// Repeat the sweep every N seconds (or a number with a unit; at least 100ms) until
    /// SIGINT/SIGTERM.
    #[arg(long, value_parser = period, allow_negative_numbers = true)]
    pub interval: Option<Duration>,
    /// Stop after this many sweeps (1 or more; needs --interval).
    #[arg(long, requires = "interval", value_parser = count, allow_negative_numbers = true)]
    pub count: Option<u64>,
}

// Value parsers: each refuses what its kind cannot mean, and clap names the flag in the error
// ("invalid value 'inf' for '--duration <DURATION>': ...") and exits with status 2.

/// A duration (seconds or "90s", "15m", ...) from the text of a flag.
fn duration_text(s: &str) -> Result<Duration, String> {
    crate::config::parse_duration(s)
}

/// How long to run: more than 0, at most 10 years.
fn run_time(s: &str) -> Result<Duration, String> {
    bounds::duration(duration_text(s)?, Floor::AboveZero, false)
}

/// How often to repeat something: at least 100ms, at most 10 years.
fn period(s: &str) -> Result<Duration, String> {
    bounds::duration(duration_text(s)?, Floor::AboveZero, true)
}

/// A score threshold: a finite number from 0 to 1000000.
fn score(s: &str) -> Result<f64, String> {
    let x: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a number"))?;
    bounds::number(x, Floor::Zero)
}

/// An unsigned integer, with a message that says so.
fn whole(s: &str) -> Result<u64, String> {
    if s.trim().starts_with('-') {
        return Err(format!("must not be negative, found {s}"));
    }
    s.trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a whole number of 0 or more"))
}

/// A process id: 1 to 4194304 (Linux's limit).
fn pid(s: &str) -> Result<u32, String> {
    bounds::pid(whole(s)?)
}

/// A count of 1 or more.
fn count(s: &str) -> Result<u64, String> {
    bounds::count(whole(s)?)
}

/// A ring buffer size in KiB: a power of two from 4 to 1048576.
fn ring_kib(s: &str) -> Result<u32, String> {
    bounds::ring_kib(whole(s)?)
}

/// A log filter `tracing` understands (a bad one would otherwise be replaced by "info" unseen).
fn log_filter(s: &str) -> Result<String, String> {
    tracing_subscriber::EnvFilter::try_new(s)
        .map(|_| s.to_string())
        .map_err(|e| format!("not a log filter (like info, debug or procwatch=trace): {e}"))
}
