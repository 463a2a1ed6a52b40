//! Per-rule actions (`actions:`) and the kill threshold (`kill_min_score`): what procwatch
//! does about an alert, rule by rule, so a user can alert on everything and kill only on what
//! is certain.
use serde::{Deserialize, Serialize};

use super::{PerRule, Rule};

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
pub type Actions = PerRule<Option<RuleAction>>;

impl Default for Actions {
    fn default() -> Self {
        PerRule::from_fn(|_| None)
    }
}

impl Actions {
    /// The action set for `rule`, if the config sets one.
    pub fn get(&self, rule: Rule) -> Option<RuleAction> {
        *self.of(rule)
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
