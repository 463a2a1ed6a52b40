//! Detection rule ids: the `weights:` keys, and the ids detectors and alerts use.
use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

/// A heuristic detection rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// The process runs an executable that was deleted from disk.
    DeletedExe,
    /// The executable lives in a temp directory (`temp_dirs`).
    TmpExe,
    /// Writable and executable memory was requested.
    WxMem,
    /// The process ptrace-attached to another one.
    Ptrace,
    /// CPU use above `cpu_high` over `cpu_window`.
    HighCpu,
    /// The process has an empty command line.
    EmptyCmdline,
    /// A connection to a port outside `ports`.
    SuspiciousPort,
    /// Execution from a memfd or other file with no path on disk.
    FilelessExe,
    /// A shell whose standard streams are a network socket.
    ReverseShell,
}

impl Rule {
    /// Every rule, in the order the config file lists them.
    pub const ALL: [Rule; 9] = [
        Rule::DeletedExe,
        Rule::TmpExe,
        Rule::WxMem,
        Rule::Ptrace,
        Rule::HighCpu,
        Rule::EmptyCmdline,
        Rule::SuspiciousPort,
        Rule::FilelessExe,
        Rule::ReverseShell,
    ];

    /// Stable id used in the config file, on the command line and in JSON.
    pub const fn as_str(self) -> &'static str {
        match self {
            Rule::DeletedExe => "deleted_exe",
            Rule::TmpExe => "tmp_exe",
            Rule::WxMem => "wx_mem",
            Rule::Ptrace => "ptrace",
            Rule::HighCpu => "high_cpu",
            Rule::EmptyCmdline => "empty_cmdline",
            Rule::SuspiciousPort => "suspicious_port",
            Rule::FilelessExe => "fileless_exe",
            Rule::ReverseShell => "reverse_shell",
        }
    }

    /// Built-in weight: the Procwatch README's values, and 5 for the two rules it lacks.
    pub const fn default_weight(self) -> f64 {
        match self {
            Rule::DeletedExe | Rule::Ptrace | Rule::FilelessExe | Rule::ReverseShell => 5.0,
            Rule::TmpExe | Rule::WxMem | Rule::SuspiciousPort => 4.0,
            Rule::HighCpu => 3.0,
            Rule::EmptyCmdline => 2.0,
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text named no rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown rule '{0}' (known: deleted_exe, tmp_exe, wx_mem, ptrace, high_cpu, empty_cmdline, suspicious_port, fileless_exe, reverse_shell)"
)]
pub struct UnknownRule(pub String);

impl FromStr for Rule {
    type Err = UnknownRule;

    fn from_str(s: &str) -> Result<Self, UnknownRule> {
        Rule::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownRule(s.to_string()))
    }
}
