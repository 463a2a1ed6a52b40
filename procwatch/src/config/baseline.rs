//! The `baseline:` section: learning, stability, poisoning, file prefixes, caps, severity of
//! unknown executables and which heuristic findings known behaviour may silence.
use std::{path::PathBuf, time::Duration};

use serde::{Deserialize, Deserializer, Serialize};

use super::{
    Rule,
    values::{self, AbsPath, Bytes, Count, Fraction, Interval, Positive, Span},
};

/// Baseline learning (`baseline:`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Baseline {
    /// How long `monitor` learns, from the model's creation, before it reports anomalies.
    #[serde(serialize_with = "values::ser_duration")]
    pub learning_period: Duration,
    /// A dimension is stable once nothing new was learned in it for this long.
    #[serde(serialize_with = "values::ser_duration")]
    pub stable_after: Duration,
    /// Learning window of an executable first seen after learning ended.
    #[serde(serialize_with = "values::ser_duration")]
    pub new_executable_learning: Duration,
    /// Behaviour becomes normal once seen in at least this many processes of the executable.
    pub min_processes: usize,
    /// Files opened under these prefixes are learned (`*` matches one path component).
    pub watched_prefixes: Vec<PathBuf>,
    /// Distinct normal files of one directory after which they become the pattern `DIR/*`.
    pub generalize_after: usize,
    /// The model file; `None` means `~/.local/share/procwatch/model.json`.
    pub model_path: Option<PathBuf>,
    /// How often `monitor` saves the model while it runs (it also saves on exit).
    #[serde(serialize_with = "values::ser_duration")]
    pub save_interval: Duration,
    /// Severity (0 to 1) of `unknown_executable`.
    pub unknown_executable: f64,
    /// CPU and RSS samples needed before `resource_spike` can fire.
    pub resource_min_samples: usize,
    /// Standard deviations above the mean that make a resource spike.
    pub spike_sigma: f64,
    /// Least standard deviation assumed for CPU, in percent of one core.
    pub cpu_std_floor: f64,
    /// Least standard deviation assumed for RSS, in bytes.
    pub rss_std_floor: u64,
    /// Size caps of the model.
    pub caps: Caps,
    /// Heuristic rules whose finding known behaviour may silence.
    pub suppress: Suppress,
}

impl Default for Baseline {
    fn default() -> Self {
        Self {
            learning_period: Duration::from_secs(24 * 3600),
            stable_after: Duration::from_secs(3600),
            new_executable_learning: Duration::from_secs(3600),
            min_processes: 2,
            watched_prefixes: [
                "/etc",
                "/root",
                "/home",
                "/var/www",
                "/boot",
                "/usr/local/etc",
                "/proc/*/mem",
            ]
            .into_iter()
            .map(PathBuf::from)
            .collect(),
            generalize_after: 8,
            model_path: None,
            save_interval: Duration::from_secs(300),
            unknown_executable: 0.3,
            resource_min_samples: 30,
            spike_sigma: 4.0,
            cpu_std_floor: 5.0,
            rss_std_floor: 32 << 20,
            caps: Caps::default(),
            suppress: Suppress::default(),
        }
    }
}

/// Most entries the model keeps (`baseline.caps`); beyond them the least used are evicted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Caps {
    /// Executables.
    pub executables: usize,
    /// Network destinations per executable.
    pub network: usize,
    /// Children per executable.
    pub children: usize,
    /// Parents per executable.
    pub parents: usize,
    /// Files and patterns per executable.
    pub files: usize,
    /// Users per executable.
    pub users: usize,
}

impl Default for Caps {
    fn default() -> Self {
        Self {
            executables: 2048,
            network: 128,
            children: 64,
            parents: 16,
            files: 256,
            users: 16,
        }
    }
}

/// Per heuristic rule: may the baseline mark its finding as known (`baseline.suppress`)?
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Suppress {
    /// [`Rule::DeletedExe`].
    pub deleted_exe: bool,
    /// [`Rule::TmpExe`].
    pub tmp_exe: bool,
    /// [`Rule::WxMem`]: a JIT's W+X memory.
    pub wx_mem: bool,
    /// [`Rule::Ptrace`] (injection).
    pub ptrace: bool,
    /// [`Rule::HighCpu`]: a compiler's CPU.
    pub high_cpu: bool,
    /// [`Rule::EmptyCmdline`].
    pub empty_cmdline: bool,
    /// [`Rule::SuspiciousPort`]: a database client's port.
    pub suspicious_port: bool,
    /// [`Rule::FilelessExe`].
    pub fileless_exe: bool,
    /// [`Rule::ReverseShell`].
    pub reverse_shell: bool,
}

impl Default for Suppress {
    fn default() -> Self {
        Self {
            deleted_exe: false,
            tmp_exe: false,
            wx_mem: true,
            ptrace: false,
            high_cpu: true,
            empty_cmdline: false,
            suspicious_port: true,
            fileless_exe: false,
            reverse_shell: false,
        }
    }
}

impl Suppress {
    /// Whether known behaviour may silence `rule`.
    pub fn get(&self, rule: Rule) -> bool {
        match rule {
            Rule::DeletedExe => self.deleted_exe,
            Rule::TmpExe => self.tmp_exe,
            Rule::WxMem => self.wx_mem,
            Rule::Ptrace => self.ptrace,
            Rule::HighCpu => self.high_cpu,
            Rule::EmptyCmdline => self.empty_cmdline,
            Rule::SuspiciousPort => self.suspicious_port,
            Rule::FilelessExe => self.fileless_exe,
            Rule::ReverseShell => self.reverse_shell,
        }
    }
}

/// Deserializes a key that may not be null: present means `Some(value)`.
fn required<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// Deserializes a key whose null is meaningful: present means `Some(Option<value>)`.
fn nullable<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// A watched prefix: absolute, and `*` only as a whole component.
#[derive(Debug, Clone)]
pub(crate) struct Prefix(pub PathBuf);

impl<'de> Deserialize<'de> for Prefix {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        values::parse_str_with(d, "an absolute path (`*` for one whole component)", |s| {
            if !s.starts_with('/') {
                return Err(format!("prefix '{s}' must be absolute (start with /)"));
            }
            if let Some(bad) = s.split('/').find(|c| c.contains('*') && *c != "*") {
                return Err(format!(
                    "'{bad}' in '{s}': `*` may only stand for a whole path component (/proc/*/mem)"
                ));
            }
            Ok(Self(PathBuf::from(s)))
        })
    }
}

/// `baseline:`.
#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping of baseline settings (learning_period, stable_after, min_processes, ...)"
)]
pub(crate) struct PartialBaseline {
    #[serde(default, deserialize_with = "required")]
    learning_period: Option<Span>,
    #[serde(default, deserialize_with = "required")]
    stable_after: Option<Span>,
    #[serde(default, deserialize_with = "required")]
    new_executable_learning: Option<Span>,
    #[serde(default, deserialize_with = "required")]
    min_processes: Option<Count>,
    #[serde(default, deserialize_with = "required")]
    watched_prefixes: Option<Vec<Prefix>>,
    #[serde(default, deserialize_with = "required")]
    generalize_after: Option<Count>,
    #[serde(default, deserialize_with = "nullable")]
    model_path: Option<Option<AbsPath>>,
    #[serde(default, deserialize_with = "required")]
    save_interval: Option<Interval>,
    #[serde(default, deserialize_with = "required")]
    unknown_executable: Option<Fraction>,
    #[serde(default, deserialize_with = "required")]
    resource_min_samples: Option<Count>,
    #[serde(default, deserialize_with = "required")]
    spike_sigma: Option<Positive>,
    #[serde(default, deserialize_with = "required")]
    cpu_std_floor: Option<Positive>,
    #[serde(default, deserialize_with = "required")]
    rss_std_floor: Option<Bytes>,
    #[serde(default)]
    caps: Option<PartialCaps>,
    #[serde(default)]
    suppress: Option<PartialSuppress>,
}

/// `baseline.caps:`.
#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with executables, network, children, parents, files and users"
)]
struct PartialCaps {
    #[serde(default, deserialize_with = "required")]
    executables: Option<Count>,
    #[serde(default, deserialize_with = "required")]
    network: Option<Count>,
    #[serde(default, deserialize_with = "required")]
    children: Option<Count>,
    #[serde(default, deserialize_with = "required")]
    parents: Option<Count>,
    #[serde(default, deserialize_with = "required")]
    files: Option<Count>,
    #[serde(default, deserialize_with = "required")]
    users: Option<Count>,
}

/// `baseline.suppress:`, one key per rule id.
#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping of rule ids to true or false"
)]
struct PartialSuppress {
    #[serde(default, deserialize_with = "required")]
    deleted_exe: Option<bool>,
    #[serde(default, deserialize_with = "required")]
    tmp_exe: Option<bool>,
    #[serde(default, deserialize_with = "required")]
    wx_mem: Option<bool>,
    #[serde(default, deserialize_with = "required")]
    ptrace: Option<bool>,
    #[serde(default, deserialize_with = "required")]
    high_cpu: Option<bool>,
    #[serde(default, deserialize_with = "required")]
    empty_cmdline: Option<bool>,
    #[serde(default, deserialize_with = "required")]
    suspicious_port: Option<bool>,
    #[serde(default, deserialize_with = "required")]
    fileless_exe: Option<bool>,
    #[serde(default, deserialize_with = "required")]
    reverse_shell: Option<bool>,
}

impl PartialBaseline {
    /// Writes every key this layer sets into `c` and records its dotted path in `keys`.
    pub(crate) fn apply(&self, c: &mut Baseline, keys: &mut Vec<&'static str>) {
        // Assigns the converted value when the layer has the key, and records that it did.
        macro_rules! take {
            ($key:literal, $slot:expr, $value:expr, $conv:expr) => {
                if let Some(v) = &$value {
                    $slot = ($conv)(v);
                    keys.push($key);
                }
            };
        }
        let span = |v: &Span| v.0;
        let count = |v: &Count| v.0;
        let positive = |v: &Positive| v.0;
        take!(
            "baseline.learning_period",
            c.learning_period,
            self.learning_period,
            span
        );
        take!(
            "baseline.stable_after",
            c.stable_after,
            self.stable_after,
            span
        );
        take!(
            "baseline.new_executable_learning",
            c.new_executable_learning,
            self.new_executable_learning,
            span
        );
        take!(
            "baseline.min_processes",
            c.min_processes,
            self.min_processes,
            count
        );
        take!(
            "baseline.watched_prefixes",
            c.watched_prefixes,
            self.watched_prefixes,
            |v: &Vec<Prefix>| v.iter().map(|p| p.0.clone()).collect()
        );
        take!(
            "baseline.generalize_after",
            c.generalize_after,
            self.generalize_after,
            count
        );
        take!(
            "baseline.model_path",
            c.model_path,
            self.model_path,
            |v: &Option<AbsPath>| v.as_ref().map(|p| p.0.clone())
        );
        take!(
            "baseline.save_interval",
            c.save_interval,
            self.save_interval,
            |v: &Interval| v.0
        );
        take!(
            "baseline.unknown_executable",
            c.unknown_executable,
            self.unknown_executable,
            |v: &Fraction| v.0
        );
        take!(
            "baseline.resource_min_samples",
            c.resource_min_samples,
            self.resource_min_samples,
            count
        );
        take!(
            "baseline.spike_sigma",
            c.spike_sigma,
            self.spike_sigma,
            positive
        );
        take!(
            "baseline.cpu_std_floor",
            c.cpu_std_floor,
            self.cpu_std_floor,
            positive
        );
        take!(
            "baseline.rss_std_floor",
            c.rss_std_floor,
            self.rss_std_floor,
            |v: &Bytes| v.0
        );
        if let Some(p) = &self.caps {
            let k = &mut c.caps;
            take!(
                "baseline.caps.executables",
                k.executables,
                p.executables,
                count
            );
            take!("baseline.caps.network", k.network, p.network, count);
            take!("baseline.caps.children", k.children, p.children, count);
            take!("baseline.caps.parents", k.parents, p.parents, count);
            take!("baseline.caps.files", k.files, p.files, count);
            take!("baseline.caps.users", k.users, p.users, count);
        }
        if let Some(p) = &self.suppress {
            let s = &mut c.suppress;
            let b = |v: &bool| *v;
            take!(
                "baseline.suppress.deleted_exe",
                s.deleted_exe,
                p.deleted_exe,
                b
            );
            take!("baseline.suppress.tmp_exe", s.tmp_exe, p.tmp_exe, b);
            take!("baseline.suppress.wx_mem", s.wx_mem, p.wx_mem, b);
            take!("baseline.suppress.ptrace", s.ptrace, p.ptrace, b);
            take!("baseline.suppress.high_cpu", s.high_cpu, p.high_cpu, b);
            take!(
                "baseline.suppress.empty_cmdline",
                s.empty_cmdline,
                p.empty_cmdline,
                b
            );
            take!(
                "baseline.suppress.suspicious_port",
                s.suspicious_port,
                p.suspicious_port,
                b
            );
            take!(
                "baseline.suppress.fileless_exe",
                s.fileless_exe,
                p.fileless_exe,
                b
            );
            take!(
                "baseline.suppress.reverse_shell",
                s.reverse_shell,
                p.reverse_shell,
                b
            );
        }
    }
}
