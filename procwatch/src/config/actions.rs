//! Per-rule actions (`actions:`) and the kill threshold (`kill_min_score`): what procwatch
//! does about an alert, rule by rule, so a user can alert on everything and kill only on what
//! is certain.
use serde::{Deserialize, Serialize};

use super::Rule;

/// What an alert caused by one rule calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleAction {
    /// Report only: never dump or kill because of this rule.
    Alert,
    /// Report and write a forensic dump (needs `--dump DIR`).
    Dump,
    /// Report, dump when `--dump DIR` is given, and kill (when the score reaches
    /// `kill_min_score`).
    Kill,
}

/// `actions:`, one optional entry per rule; an unset rule follows the command line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Actions {
    /// Action of [`Rule::DeletedExe`].
    pub deleted_exe: Option<RuleAction>,
    /// Action of [`Rule::TmpExe`].
    pub tmp_exe: Option<RuleAction>,
    /// Action of [`Rule::WxMem`].
    pub wx_mem: Option<RuleAction>,
    /// Action of [`Rule::Ptrace`].
    pub ptrace: Option<RuleAction>,
    /// Action of [`Rule::HighCpu`].
    pub high_cpu: Option<RuleAction>,
    /// Action of [`Rule::EmptyCmdline`].
    pub empty_cmdline: Option<RuleAction>,
    /// Action of [`Rule::SuspiciousPort`].
    pub suspicious_port: Option<RuleAction>,
    /// Action of [`Rule::FilelessExe`].
    pub fileless_exe: Option<RuleAction>,
    /// Action of [`Rule::ReverseShell`].
    pub reverse_shell: Option<RuleAction>,
}

impl Actions {
    /// The action set for `rule`, if the config sets one.
    pub fn get(&self, rule: Rule) -> Option<RuleAction> {
        *self.slot(rule)
    }

    /// The entry of `rule`, for layering.
    pub(crate) fn slot_mut(&mut self, rule: Rule) -> &mut Option<RuleAction> {
        match rule {
            Rule::DeletedExe => &mut self.deleted_exe,
            Rule::TmpExe => &mut self.tmp_exe,
            Rule::WxMem => &mut self.wx_mem,
            Rule::Ptrace => &mut self.ptrace,
            Rule::HighCpu => &mut self.high_cpu,
            Rule::EmptyCmdline => &mut self.empty_cmdline,
            Rule::SuspiciousPort => &mut self.suspicious_port,
            Rule::FilelessExe => &mut self.fileless_exe,
            Rule::ReverseShell => &mut self.reverse_shell,
        }
    }

    fn slot(&self, rule: Rule) -> &Option<RuleAction> {
        match rule {
            Rule::DeletedExe => &self.deleted_exe,
            Rule::TmpExe => &self.tmp_exe,
            Rule::WxMem => &self.wx_mem,
            Rule::Ptrace => &self.ptrace,
            Rule::HighCpu => &self.high_cpu,
            Rule::EmptyCmdline => &self.empty_cmdline,
            Rule::SuspiciousPort => &self.suspicious_port,
            Rule::FilelessExe => &self.fileless_exe,
            Rule::ReverseShell => &self.reverse_shell,
        }
    }

    /// What an alert with these rules calls for: the strongest action among them, each rule's
    /// own or, when the config leaves it unset, `default` (what the command line asks for).
    pub fn strongest(
        &self,
        rules: impl IntoIterator<Item = Rule>,
        default: RuleAction,
    ) -> RuleAction {
        rules
            .into_iter()
            .map(|r| self.get(r).unwrap_or(default))
            .max()
            .unwrap_or(RuleAction::Alert)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strongest_of_set_and_default() {
        let a = Actions {
            tmp_exe: Some(RuleAction::Alert),
            fileless_exe: Some(RuleAction::Kill),
            ..Actions::default()
        };
        let def = RuleAction::Kill;
        assert_eq!(
            a.strongest([Rule::TmpExe], def),
            RuleAction::Alert,
            "set wins over default"
        );
        assert_eq!(
            a.strongest([Rule::HighCpu], def),
            RuleAction::Kill,
            "unset follows default"
        );
        assert_eq!(
            a.strongest([Rule::TmpExe, Rule::FilelessExe], RuleAction::Alert),
            RuleAction::Kill
        );
        assert_eq!(a.strongest([], def), RuleAction::Alert);
    }
}
