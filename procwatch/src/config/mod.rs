//! Configuration: YAML files layered over built-in defaults, validated with file:line errors.
//!
//! Order, later overriding earlier key by key: built-in defaults, `/etc/procwatch.yaml`,
//! `~/.procwatch.yaml`, then `--config FILE`. Mappings merge; lists and scalars replace. See
//! `docs/config.md` for every key.
mod actions;
mod baseline;
mod error;
mod exceptions;
mod history;
mod layer;
mod locate;
mod per_rule;
mod rule;
mod values;

#[cfg(test)]
mod tests;

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Serialize;

pub use actions::{Actions, RuleAction};
pub use baseline::{Baseline, Caps, Suppress};
pub use error::{ConfigError, Diagnostic, DiagnosticKind};
pub use exceptions::{Exception, Exceptions, Glob, Subject};
pub use history::History;
pub use layer::Layer;
pub use per_rule::PerRule;
pub use rule::{Rule, UnknownRule};
pub use values::{PortSet, SyslogTarget, format_duration, parse_bytes, parse_duration};

/// The fully resolved configuration the rest of procwatch runs with.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    /// CPU percent (of one core) above which `high_cpu` fires.
    pub cpu_high: f64,
    /// Score at or above which a process is flagged.
    pub min_score: f64,
    /// Weight of the baseline-anomaly score added to the heuristic score.
    pub ml_weight: f64,
    /// Remote ports that are expected; connections elsewhere trigger `suspicious_port`.
    pub ports: PortSet,
    /// Score contribution of each rule.
    pub weights: Weights,
    /// Processes never flagged.
    pub whitelist: Whitelist,
    /// Per-rule exceptions: what is normal for a rule (shipped defaults for everyday software).
    pub exceptions: Exceptions,
    /// Score at or above which a kill is carried out (`None`: `min_score`).
    pub kill_min_score: Option<f64>,
    /// What an alert of each rule calls for (unset: what the command line asks for).
    pub actions: Actions,
    /// Directories whose executables trigger `tmp_exe`.
    pub temp_dirs: Vec<PathBuf>,
    /// How often state-based rules are rechecked by the monitor.
    #[serde(serialize_with = "values::ser_duration")]
    pub sweep_interval: Duration,
    /// Window over which CPU use is averaged.
    #[serde(serialize_with = "values::ser_duration")]
    pub cpu_window: Duration,
    /// How long an exited process stays in the table (for late events and the API).
    #[serde(serialize_with = "values::ser_duration")]
    pub exited_grace: Duration,
    /// Cap on tracked processes; beyond it the oldest exited ones are dropped first.
    pub max_processes: usize,
    /// Size of the kernel-to-user ring buffer in KiB (a power of two, at least 4).
    pub ring_buffer_kib: u32,
    /// Which optional probes run.
    pub sensor: Sensor,
    /// In-kernel kill policy.
    pub enforce: Enforce,
    /// Size limits of forensic dumps.
    pub dump: Dump,
    /// Alert sinks.
    pub outputs: Outputs,
    /// Baseline learning.
    pub baseline: Baseline,
    /// HTTP API and web UI.
    pub api: Api,
    /// The alert history database.
    pub history: History,
}

/// Per-rule weights (`weights:`).
pub type Weights = PerRule<f64>;

impl Weights {
    /// The weight of `rule`.
    pub fn get(&self, rule: Rule) -> f64 {
        *self.of(rule)
    }
}

impl Default for Weights {
    fn default() -> Self {
        PerRule::from_fn(Rule::default_weight)
    }
}

/// Processes that are never flagged (`whitelist:`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Whitelist {
    /// Executables, by absolute path.
    pub exe_paths: Vec<PathBuf>,
    /// Users, by name or numeric uid (as a string).
    pub users: Vec<String>,
}

/// Which optional probes run (`sensor:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Sensor {
    /// The probes of 32-bit (`int 0x80`) syscalls.
    pub ia32: Ia32Mode,
}

/// Whether the raw `sys_enter`/`sys_exit` probes that see 32-bit syscalls run (`sensor.ia32`).
/// They run for every syscall on the machine, so they cost where nothing else does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ia32Mode {
    /// On when this kernel runs 32-bit syscalls (ia32 emulation), off when it refuses them.
    #[default]
    Auto,
    /// Always on.
    On,
    /// Off: 32-bit syscalls are not seen (startup says so).
    Off,
}

/// In-kernel kill policy (`enforce:`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Enforce {
    /// Kill a process in the kernel when it calls ptrace.
    pub ptrace: bool,
    /// Kill a process in the kernel when it requests W+X memory.
    pub wx_mem: bool,
    /// Executables exempt from the kill policy (JITs, debuggers).
    pub allow_exe_paths: Vec<PathBuf>,
}

/// Size limits of forensic dumps (`dump:`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dump {
    /// Largest executable copied into a dump; larger ones are recorded by hash only.
    pub max_exe_bytes: u64,
    /// Total size of the dump directory beyond which new dumps are skipped.
    pub max_total_bytes: u64,
}

impl Default for Dump {
    fn default() -> Self {
        Self {
            max_exe_bytes: 100 << 20,
            max_total_bytes: 1 << 30,
        }
    }
}

/// Alert sinks (`outputs:`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outputs {
    /// Append alerts as JSON lines to this file.
    pub jsonl: Option<PathBuf>,
    /// Append human-readable alerts to this file.
    pub log_file: Option<PathBuf>,
    /// Send alerts to syslog.
    pub syslog: Option<SyslogTarget>,
    /// Print alerts on standard output.
    pub stdout: bool,
}

impl Default for Outputs {
    fn default() -> Self {
        Self {
            jsonl: None,
            log_file: None,
            syslog: None,
            stdout: true,
        }
    }
}

/// HTTP API and web UI (`api:`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Api {
    /// Address `monitor` serves the API on; `None`: `monitor` serves no API unless `--api`
    /// asks (`procwatch api` then listens on 127.0.0.1:8080).
    pub listen: Option<SocketAddr>,
    /// Bearer token required by the API; `None`: procwatch makes one (see `open_reads`).
    pub token: Option<String>,
    /// A file holding the token (first line), readable by its owner only; used when `token`
    /// is not set.
    pub token_file: Option<PathBuf>,
    /// With no token configured, serve reads without one (loopback only). This exposes the
    /// /proc data of every user (fds, maps, cwd, alerts) to every local user; off by default,
    /// when procwatch generates a token instead.
    pub open_reads: bool,
    /// Origins (`https://host[:port]`) a browser may call the API from; empty: CORS off.
    pub cors_origins: Vec<String>,
    /// Largest request body accepted (413 beyond).
    pub max_body_bytes: u64,
    /// Most connections open at once (429 beyond).
    pub max_connections: usize,
    /// Requests per second allowed per client address, sustained (429 beyond).
    pub rate_limit: f64,
    /// Requests a client may make in a burst above `rate_limit`.
    pub rate_burst: usize,
}

impl Api {
    /// Where `procwatch api` listens when neither the command line nor `api.listen` says.
    pub const DEFAULT_LISTEN: SocketAddr =
        SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 8080);
}

impl Default for Api {
    fn default() -> Self {
        Self {
            listen: None,
            token: None,
            token_file: None,
            open_reads: false,
            cors_origins: Vec::new(),
            max_body_bytes: 64 * 1024,
            max_connections: 256,
            rate_limit: 50.0,
            rate_burst: 200,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            cpu_high: 75.0,
            min_score: 3.0,
            ml_weight: 2.0,
            ports: PortSet::from_ranges([(53, 53), (80, 80), (443, 443)]),
            weights: Weights::default(),
            whitelist: Whitelist::default(),
            exceptions: Exceptions::default(),
            kill_min_score: None,
            actions: Actions::default(),
            temp_dirs: ["/tmp", "/var/tmp", "/dev/shm"]
                .into_iter()
                .map(PathBuf::from)
                .collect(),
            sweep_interval: Duration::from_secs(5),
            cpu_window: Duration::from_secs(5),
            exited_grace: Duration::from_secs(5),
            max_processes: 65536,
            ring_buffer_kib: 4096,
            sensor: Sensor::default(),
            enforce: Enforce::default(),
            dump: Dump::default(),
            outputs: Outputs::default(),
            baseline: Baseline::default(),
            api: Api::default(),
            history: History::default(),
        }
    }
}

impl Config {
    /// The weight of `rule`.
    pub fn weight(&self, rule: Rule) -> f64 {
        self.weights.get(rule)
    }

    /// Score at or above which a kill is carried out: `kill_min_score`, never below `min_score`.
    pub fn kill_threshold(&self) -> f64 {
        self.kill_min_score
            .unwrap_or(self.min_score)
            .max(self.min_score)
    }

    /// Whether a connection to remote `port` is expected (not `suspicious_port`).
    pub fn port_allowed(&self, port: u16) -> bool {
        self.ports.contains(port)
    }

    /// Whether `path` is inside one of the `temp_dirs` (by path components, not string prefix).
    pub fn in_temp_dir(&self, path: &Path) -> bool {
        self.temp_dirs.iter().any(|d| path.starts_with(d))
    }

    /// Whether a process of this user (name if known, and uid) is whitelisted.
    pub fn user_whitelisted(&self, name: Option<&str>, uid: u32) -> bool {
        let uid = uid.to_string();
        self.whitelist
            .users
            .iter()
            .any(|u| *u == uid || Some(u.as_str()) == name)
    }

    /// Parses `text` as one config file over the defaults (`origin` names it in errors).
    pub fn from_yaml(origin: &str, text: &str) -> Result<Self, ConfigError> {
        resolve(&[Layer::parse(origin, text)?])
    }

    /// The configuration as YAML, in the same shape the config file takes.
    pub fn to_yaml(&self) -> Result<String, serde_yaml::Error> {
        serde_yaml::to_string(self)
    }
}

/// Dotted paths of every key of the schema (`cpu_high`, `weights`, `weights.tmp_exe`, ...).
pub fn schema_keys() -> Vec<String> {
    /// Appends the keys of `map` under `prefix`, recursing into sections.
    fn walk(prefix: &str, map: &serde_yaml::Mapping, out: &mut Vec<String>) {
        for (k, v) in map {
            let Some(k) = k.as_str() else { continue };
            let path = if prefix.is_empty() {
                k.to_string()
            } else {
                format!("{prefix}.{k}")
            };
            if let serde_yaml::Value::Mapping(m) = v {
                walk(&path, m, out);
            }
            out.push(path);
        }
    }
    let mut out = Vec::new();
    // The defaults serialize every key, so the schema is read off them rather than listed twice.
    if let Ok(serde_yaml::Value::Mapping(m)) = serde_yaml::to_value(Config::default()) {
        walk("", &m, &mut out);
    }
    out
}

/// Name of the bottom layer in reports and errors.
pub const DEFAULTS_ORIGIN: &str = "built-in defaults";

/// Where the system-wide and per-user config files are; injectable so tests avoid /etc and $HOME.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigSources {
    /// System-wide file, normally `/etc/procwatch.yaml`; absent is fine.
    pub system: Option<PathBuf>,
    /// Per-user file, normally `~/.procwatch.yaml`; absent is fine.
    pub user: Option<PathBuf>,
}

impl ConfigSources {
    /// Path of the system-wide file.
    pub const SYSTEM_PATH: &str = "/etc/procwatch.yaml";
    /// Name of the per-user file in the home directory.
    pub const USER_FILE: &str = ".procwatch.yaml";

    /// `/etc/procwatch.yaml` and `$HOME/.procwatch.yaml` (no user file when HOME is unset).
    pub fn standard() -> Self {
        Self {
            system: Some(PathBuf::from(Self::SYSTEM_PATH)),
            user: std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(|h| PathBuf::from(h).join(Self::USER_FILE)),
        }
    }

    /// No system or user file: defaults and `--config` only.
    pub fn none() -> Self {
        Self::default()
    }
}

/// What one layer contributed, for `config show`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerReport {
    /// The file's path, or "built-in defaults".
    pub origin: String,
    /// False for an optional file that does not exist.
    pub present: bool,
    /// Dotted paths of the keys this layer set.
    pub keys: Vec<&'static str>,
}

/// A resolved configuration and how it was assembled.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The effective configuration.
    pub config: Config,
    /// Defaults first, then each file in layering order.
    pub layers: Vec<LayerReport>,
}

/// Loads the effective configuration: defaults, then the `sources` files, then `cli_config`.
pub fn load(sources: &ConfigSources, cli_config: Option<&Path>) -> Result<Config, ConfigError> {
    load_report(sources, cli_config).map(|l| l.config)
}

/// Like [`load`], also reporting which files were layered and which keys each set.
pub fn load_report(
    sources: &ConfigSources,
    cli_config: Option<&Path>,
) -> Result<Loaded, ConfigError> {
    let mut reports = vec![LayerReport {
        origin: DEFAULTS_ORIGIN.into(),
        present: true,
        keys: Vec::new(),
    }];
    let mut layers = Vec::new();
    // Index in `reports` of each present layer, to fill in its keys once resolved.
    let mut slots = Vec::new();
    let files = [
        (sources.system.as_deref(), false),
        (sources.user.as_deref(), false),
        (cli_config, true),
    ];
    for (path, required) in files {
        let Some(path) = path else { continue };
        let origin = path.display().to_string();
        let text = read(path, required)?;
        if let Some(text) = &text {
            layers.push(Layer::parse(origin.clone(), text.as_str())?);
            slots.push(reports.len());
        }
        reports.push(LayerReport {
            origin,
            present: text.is_some(),
            keys: Vec::new(),
        });
    }
    let (config, keys) = resolve_with_keys(&layers)?;
    for (slot, keys) in slots.into_iter().zip(keys) {
        reports[slot].keys = keys;
    }
    Ok(Loaded {
        config,
        layers: reports,
    })
}

/// Validates one file alone over the defaults, as `procwatch config check` does.
pub fn check_file(path: &Path) -> Result<Config, ConfigError> {
    load(&ConfigSources::none(), Some(path))
}

/// Reads a config file; a missing optional file is `None`, a missing required one an error.
/// As root, a file another user could have written is refused (see [`crate::trusted_file`]).
fn read(path: &Path, required: bool) -> Result<Option<String>, ConfigError> {
    use crate::trusted_file::{self, ReadError};
    match trusted_file::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if !required && e.is_not_found() => Ok(None),
        Err(ReadError::Io { path, error }) => Err(ConfigError::Read { path, error }),
        Err(ReadError::Refused { path, why }) => Err(ConfigError::Refused { path, why }),
    }
}

/// Applies `layers` in order over the defaults and runs the checks that span keys.
pub fn resolve(layers: &[Layer]) -> Result<Config, ConfigError> {
    resolve_with_keys(layers).map(|(c, _)| c)
}

/// [`resolve`], also returning the keys each layer set.
fn resolve_with_keys(layers: &[Layer]) -> Result<(Config, Vec<Vec<&'static str>>), ConfigError> {
    let mut config = Config::default();
    let keys: Vec<Vec<&'static str>> = layers.iter().map(|l| l.apply(&mut config)).collect();
    cross_check(&config, layers, &keys)?;
    Ok((config, keys))
}

/// Checks between keys, which may come from different files; blames the last layer that set one.
fn cross_check(
    config: &Config,
    layers: &[Layer],
    keys: &[Vec<&'static str>],
) -> Result<(), ConfigError> {
    if let Some(kill) = config.kill_min_score
        && kill < config.min_score
    {
        let min = config.min_score;
        return Err(blame(
            layers,
            keys,
            &["min_score", "kill_min_score"],
            |key| match key {
                "kill_min_score" => format!(
                    "{kill} is below min_score ({min}): only alerts are killed, so it could never apply"
                ),
                _ => format!("{min} is above kill_min_score ({kill})"),
            },
        ));
    }
    if config.dump.max_exe_bytes > config.dump.max_total_bytes {
        let (exe, total) = (config.dump.max_exe_bytes, config.dump.max_total_bytes);
        return Err(blame(
            layers,
            keys,
            &["dump.max_exe_bytes", "dump.max_total_bytes"],
            |key| match key {
                "dump.max_exe_bytes" => {
                    format!("{exe} must not exceed dump.max_total_bytes ({total})")
                }
                _ => format!("{total} must be at least dump.max_exe_bytes ({exe})"),
            },
        ));
    }
    Ok(())
}

/// A diagnostic at the last layer that set any of `involved`, positioned on that key.
fn blame(
    layers: &[Layer],
    keys: &[Vec<&'static str>],
    involved: &[&'static str],
    message: impl FnOnce(&str) -> String,
) -> ConfigError {
    let found = layers.iter().zip(keys).rev().find_map(|(layer, set)| {
        involved
            .iter()
            .rev()
            .find(|k| set.contains(k))
            .map(|k| (layer, *k))
    });
    let (origin, key, pos) = match found {
        Some((layer, key)) => {
            let path: Vec<&str> = key.split('.').collect();
            (
                layer.origin().to_string(),
                key,
                locate::locate(layer.text(), &path),
            )
        }
        // Only reachable if the built-in defaults themselves were inconsistent.
        None => (DEFAULTS_ORIGIN.to_string(), involved[0], None),
    };
    Diagnostic {
        origin,
        line: pos.map(|p| p.0),
        column: pos.map(|p| p.1),
        key: Some(key.to_string()),
        kind: DiagnosticKind::BadValue,
        message: message(key),
    }
    .into()
}
