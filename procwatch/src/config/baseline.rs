//! The `baseline:` section: learning, stability, poisoning, file prefixes, caps, severity of
//! unknown executables and which heuristic findings known behaviour may silence.
use std::{path::PathBuf, time::Duration};

use serde::{Deserialize, Deserializer, Serialize};

use super::{
    PerRule, Rule,
    per_rule::Set,
    values::{self, AbsPath, Bytes, Count, Fraction, Interval, Positive, Span, nullable, required},
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
/// By default only for a JIT's W+X memory, a client's port and a compiler's CPU.
pub type Suppress = PerRule<bool>;

impl Default for Suppress {
    fn default() -> Self {
        PerRule::from_fn(|rule| matches!(rule, Rule::WxMem | Rule::HighCpu | Rule::SuspiciousPort))
    }
}

impl Suppress {
    /// Whether known behaviour may silence `rule`.
    pub fn get(&self, rule: Rule) -> bool {
        *self.of(rule)
    }
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
    suppress: Option<PerRule<Set<bool>>>,
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
            p.apply("baseline.suppress", &mut c.suppress, keys, |v: &bool| *v);
        }
    }
}
