//! One config file as parsed on its own: every key optional, unknown keys refused.
//!
//! Each file is deserialized alone into these all-`Option` structs, so serde_yaml's errors carry the
//! file's own line and column and serde_path_to_error the key path; the layers are then applied in
//! order onto the built-in defaults, each setting only the keys it has.
use serde::Deserialize;

use super::{
    Config, Exception, PerRule, Rule, RuleAction,
    baseline::PartialBaseline,
    error::{self, ConfigError},
    history::PartialHistory,
    per_rule::Set,
    values::{
        AbsPath, BodyBytes, Bytes, Count, Interval, Listen, NonNegative, Origin, PortSet, Positive,
        RingKib, Span, SyslogTarget, Token, TotalBytes, User, nullable, required,
    },
};

/// The whole file. Sections may be empty or null (all their keys commented out).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping of procwatch settings")]
pub(crate) struct PartialConfig {
    #[serde(default, deserialize_with = "required")]
    cpu_high: Option<Positive>,
    #[serde(default, deserialize_with = "required")]
    min_score: Option<NonNegative>,
    #[serde(default, deserialize_with = "nullable")]
    kill_min_score: Option<Option<NonNegative>>,
    #[serde(default)]
    actions: Option<PerRule<Set<Option<RuleAction>>>>,
    #[serde(default, deserialize_with = "required")]
    ml_weight: Option<NonNegative>,
    #[serde(default, deserialize_with = "required")]
    ports: Option<PortSet>,
    #[serde(default)]
    weights: Option<PerRule<Set<NonNegative>>>,
    #[serde(default)]
    whitelist: Option<PartialWhitelist>,
    #[serde(default)]
    exceptions: Option<PerRule<Set<Vec<Exception>>>>,
    #[serde(default, deserialize_with = "required")]
    temp_dirs: Option<Vec<AbsPath>>,
    #[serde(default, deserialize_with = "required")]
    sweep_interval: Option<Interval>,
    #[serde(default, deserialize_with = "required")]
    cpu_window: Option<Interval>,
    #[serde(default, deserialize_with = "required")]
    exited_grace: Option<Span>,
    #[serde(default, deserialize_with = "required")]
    max_processes: Option<Count>,
    #[serde(default, deserialize_with = "required")]
    ring_buffer_kib: Option<RingKib>,
    #[serde(default)]
    sensor: Option<PartialSensor>,
    #[serde(default)]
    enforce: Option<PartialEnforce>,
    #[serde(default)]
    dump: Option<PartialDump>,
    #[serde(default)]
    outputs: Option<PartialOutputs>,
    #[serde(default)]
    baseline: Option<PartialBaseline>,
    #[serde(default)]
    api: Option<PartialApi>,
    #[serde(default)]
    history: Option<PartialHistory>,
}

/// `whitelist:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with exe_paths and users")]
struct PartialWhitelist {
    #[serde(default, deserialize_with = "required")]
    exe_paths: Option<Vec<AbsPath>>,
    #[serde(default, deserialize_with = "required")]
    users: Option<Vec<User>>,
}

/// `sensor:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with ia32")]
struct PartialSensor {
    #[serde(default, deserialize_with = "required")]
    ia32: Option<super::Ia32Mode>,
}

/// `enforce:`.
#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with ptrace, wx_mem and allow_exe_paths"
)]
struct PartialEnforce {
    #[serde(default, deserialize_with = "required")]
    ptrace: Option<bool>,
    #[serde(default, deserialize_with = "required")]
    wx_mem: Option<bool>,
    #[serde(default, deserialize_with = "required")]
    allow_exe_paths: Option<Vec<AbsPath>>,
}

/// `dump:`.
#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with max_exe_bytes and max_total_bytes"
)]
struct PartialDump {
    #[serde(default, deserialize_with = "required")]
    max_exe_bytes: Option<Bytes>,
    #[serde(default, deserialize_with = "required")]
    max_total_bytes: Option<TotalBytes>,
}

/// `outputs:`; null turns a sink off.
#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with jsonl, log_file, syslog and stdout"
)]
struct PartialOutputs {
    #[serde(default, deserialize_with = "nullable")]
    jsonl: Option<Option<AbsPath>>,
    #[serde(default, deserialize_with = "nullable")]
    log_file: Option<Option<AbsPath>>,
    #[serde(default, deserialize_with = "nullable")]
    syslog: Option<Option<SyslogTarget>>,
    #[serde(default, deserialize_with = "required")]
    stdout: Option<bool>,
}

/// `api:`; a null token turns authentication off.
#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with listen, token, token_file, open_reads, cors_origins and limits"
)]
struct PartialApi {
    #[serde(default, deserialize_with = "nullable")]
    listen: Option<Option<Listen>>,
    #[serde(default, deserialize_with = "nullable")]
    token: Option<Option<Token>>,
    #[serde(default, deserialize_with = "nullable")]
    token_file: Option<Option<AbsPath>>,
    #[serde(default, deserialize_with = "required")]
    open_reads: Option<bool>,
    #[serde(default, deserialize_with = "required")]
    cors_origins: Option<Vec<Origin>>,
    #[serde(default, deserialize_with = "required")]
    max_body_bytes: Option<BodyBytes>,
    #[serde(default, deserialize_with = "required")]
    max_connections: Option<Count>,
    #[serde(default, deserialize_with = "required")]
    rate_limit: Option<Positive>,
    #[serde(default, deserialize_with = "required")]
    rate_burst: Option<Count>,
}

/// One parsed config file (or in-memory text), ready to be applied over the layers below it.
#[derive(Debug)]
pub struct Layer {
    origin: String,
    text: String,
    partial: PartialConfig,
}

impl Layer {
    /// Parses and validates `text` on its own; `origin` names it in errors (usually its path).
    pub fn parse(origin: impl Into<String>, text: impl Into<String>) -> Result<Self, ConfigError> {
        let origin = origin.into();
        let text = text.into();
        // Syntax first, against a schema-free target, so malformed YAML is reported as such and
        // not as whatever schema error the parser happened to reach before the bad line.
        if let Err(e) = serde_yaml::from_str::<serde::de::IgnoredAny>(&text) {
            return Err(error::syntax(&origin, &text, &e).into());
        }
        let de = serde_yaml::Deserializer::from_str(&text);
        let partial: PartialConfig = serde_path_to_error::deserialize(de)
            .map_err(|e| ConfigError::from(error::from_serde(&origin, &text, &e)))?;
        if let Some(x) = &partial.exceptions {
            for rule in Rule::ALL {
                let Set(Some(list)) = x.of(rule) else {
                    continue;
                };
                if let Some(e) = list.iter().find(|e| e.is_unconditional()) {
                    let key = format!("exceptions.{rule}");
                    let path: Vec<&str> = key.split('.').collect();
                    let pos = super::locate::locate(&text, &path);
                    return Err(super::Diagnostic {
                        origin,
                        line: pos.map(|p| p.0),
                        column: pos.map(|p| p.1),
                        key: Some(key.clone()),
                        kind: super::DiagnosticKind::BadValue,
                        message: format!(
                            "exception '{}' has no condition (exe, parent_exe, sha256, users, ports, replaced_by_root): it would silence the whole rule; set the rule's weight to 0 for that",
                            e.name
                        ),
                    }
                    .into());
                }
            }
        }
        Ok(Self {
            origin,
            text,
            partial,
        })
    }

    /// The name this layer is reported under.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The source text, for locating keys in cross-key checks.
    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    /// Writes every key this layer sets into `cfg`, and returns their dotted paths.
    pub(crate) fn apply(&self, cfg: &mut Config) -> Vec<&'static str> {
        let mut keys = Vec::new();
        // Assigns the converted value when the layer has the key, and records that it did.
        macro_rules! take {
            ($key:literal, $slot:expr, $value:expr, $conv:expr) => {
                if let Some(v) = &$value {
                    $slot = ($conv)(v);
                    keys.push($key);
                }
            };
        }
        let p = &self.partial;
        take!("cpu_high", cfg.cpu_high, p.cpu_high, |v: &Positive| v.0);
        take!(
            "min_score",
            cfg.min_score,
            p.min_score,
            |v: &NonNegative| v.0
        );
        take!(
            "kill_min_score",
            cfg.kill_min_score,
            p.kill_min_score,
            |v: &Option<NonNegative>| v.map(|n| n.0)
        );
        if let Some(a) = &p.actions {
            a.apply("actions", &mut cfg.actions, &mut keys, |v| *v);
        }
        take!(
            "ml_weight",
            cfg.ml_weight,
            p.ml_weight,
            |v: &NonNegative| v.0
        );
        take!("ports", cfg.ports, p.ports, PortSet::clone);
        if let Some(w) = &p.weights {
            w.apply("weights", &mut cfg.weights, &mut keys, |v| v.0);
        }
        if let Some(w) = &p.whitelist {
            let c = &mut cfg.whitelist;
            take!("whitelist.exe_paths", c.exe_paths, w.exe_paths, paths);
            take!("whitelist.users", c.users, w.users, |v: &Vec<User>| v
                .iter()
                .map(|u| u.0.clone())
                .collect());
        }
        if let Some(x) = &p.exceptions {
            x.apply("exceptions", &mut cfg.exceptions, &mut keys, Vec::clone);
        }
        take!("temp_dirs", cfg.temp_dirs, p.temp_dirs, paths);
        take!(
            "sweep_interval",
            cfg.sweep_interval,
            p.sweep_interval,
            |v: &Interval| v.0
        );
        take!(
            "cpu_window",
            cfg.cpu_window,
            p.cpu_window,
            |v: &Interval| v.0
        );
        take!(
            "exited_grace",
            cfg.exited_grace,
            p.exited_grace,
            |v: &Span| v.0
        );
        take!(
            "max_processes",
            cfg.max_processes,
            p.max_processes,
            |v: &Count| v.0
        );
        take!(
            "ring_buffer_kib",
            cfg.ring_buffer_kib,
            p.ring_buffer_kib,
            |v: &RingKib| v.0
        );
        if let Some(x) = &p.sensor {
            take!(
                "sensor.ia32",
                cfg.sensor.ia32,
                x.ia32,
                |v: &super::Ia32Mode| *v
            );
        }
        if let Some(e) = &p.enforce {
            let c = &mut cfg.enforce;
            take!("enforce.ptrace", c.ptrace, e.ptrace, |v: &bool| *v);
            take!("enforce.wx_mem", c.wx_mem, e.wx_mem, |v: &bool| *v);
            take!(
                "enforce.allow_exe_paths",
                c.allow_exe_paths,
                e.allow_exe_paths,
                paths
            );
        }
        if let Some(d) = &p.dump {
            let c = &mut cfg.dump;
            take!(
                "dump.max_exe_bytes",
                c.max_exe_bytes,
                d.max_exe_bytes,
                |v: &Bytes| v.0
            );
            take!(
                "dump.max_total_bytes",
                c.max_total_bytes,
                d.max_total_bytes,
                |v: &TotalBytes| v.0
            );
        }
        if let Some(o) = &p.outputs {
            let c = &mut cfg.outputs;
            let path = |v: &Option<AbsPath>| v.as_ref().map(|p| p.0.clone());
            take!("outputs.jsonl", c.jsonl, o.jsonl, path);
            take!("outputs.log_file", c.log_file, o.log_file, path);
            take!(
                "outputs.syslog",
                c.syslog,
                o.syslog,
                Option::<SyslogTarget>::clone
            );
            take!("outputs.stdout", c.stdout, o.stdout, |v: &bool| *v);
        }
        if let Some(b) = &p.baseline {
            b.apply(&mut cfg.baseline, &mut keys);
        }
        if let Some(a) = &p.api {
            let c = &mut cfg.api;
            take!("api.listen", c.listen, a.listen, |v: &Option<Listen>| v
                .as_ref()
                .map(|l| l.0));
            take!("api.token", c.token, a.token, |v: &Option<Token>| v
                .as_ref()
                .map(|t| t.0.clone()));
            take!(
                "api.token_file",
                c.token_file,
                a.token_file,
                |v: &Option<AbsPath>| v.as_ref().map(|p| p.0.clone())
            );
            take!("api.open_reads", c.open_reads, a.open_reads, |v: &bool| *v);
            take!(
                "api.cors_origins",
                c.cors_origins,
                a.cors_origins,
                |v: &Vec<Origin>| v.iter().map(|o| o.0.clone()).collect()
            );
            take!(
                "api.max_body_bytes",
                c.max_body_bytes,
                a.max_body_bytes,
                |v: &BodyBytes| v.0
            );
            take!(
                "api.max_connections",
                c.max_connections,
                a.max_connections,
                |v: &Count| v.0
            );
            take!(
                "api.rate_limit",
                c.rate_limit,
                a.rate_limit,
                |v: &Positive| v.0
            );
            take!("api.rate_burst", c.rate_burst, a.rate_burst, |v: &Count| v
                .0);
        }
        if let Some(h) = &p.history {
            h.apply(&mut cfg.history, &mut keys);
        }
        keys
    }
}

/// Unwraps a list of validated absolute paths.
fn paths(v: &[AbsPath]) -> Vec<std::path::PathBuf> {
    v.iter().map(|p| p.0.clone()).collect()
}
