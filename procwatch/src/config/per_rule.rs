//! One value per heuristic rule, keyed by rule id: the shape of `weights:`, `actions:`,
//! `exceptions:` and `baseline.suppress:`, both resolved and as one config layer sets it.
use serde::{Deserialize, Deserializer, Serialize};

use super::Rule;

/// A value for each [`Rule`], serialised as a mapping of rule ids (the config file's keys).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping of rule ids (deleted_exe, tmp_exe, wx_mem, ptrace, high_cpu, empty_cmdline, suspicious_port, fileless_exe, reverse_shell)"
)]
pub struct PerRule<T> {
    /// [`Rule::DeletedExe`].
    #[serde(default)]
    pub deleted_exe: T,
    /// [`Rule::TmpExe`].
    #[serde(default)]
    pub tmp_exe: T,
    /// [`Rule::WxMem`].
    #[serde(default)]
    pub wx_mem: T,
    /// [`Rule::Ptrace`].
    #[serde(default)]
    pub ptrace: T,
    /// [`Rule::HighCpu`].
    #[serde(default)]
    pub high_cpu: T,
    /// [`Rule::EmptyCmdline`].
    #[serde(default)]
    pub empty_cmdline: T,
    /// [`Rule::SuspiciousPort`].
    #[serde(default)]
    pub suspicious_port: T,
    /// [`Rule::FilelessExe`].
    #[serde(default)]
    pub fileless_exe: T,
    /// [`Rule::ReverseShell`].
    #[serde(default)]
    pub reverse_shell: T,
}

impl<T> PerRule<T> {
    /// Each rule's value computed from the rule.
    pub fn from_fn(mut f: impl FnMut(Rule) -> T) -> Self {
        Self {
            deleted_exe: f(Rule::DeletedExe),
            tmp_exe: f(Rule::TmpExe),
            wx_mem: f(Rule::WxMem),
            ptrace: f(Rule::Ptrace),
            high_cpu: f(Rule::HighCpu),
            empty_cmdline: f(Rule::EmptyCmdline),
            suspicious_port: f(Rule::SuspiciousPort),
            fileless_exe: f(Rule::FilelessExe),
            reverse_shell: f(Rule::ReverseShell),
        }
    }

    /// The value of `rule`.
    pub fn of(&self, rule: Rule) -> &T {
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

    /// The value of `rule`, to change it.
    pub fn of_mut(&mut self, rule: Rule) -> &mut T {
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
}

/// A key as one config layer sets it: absent (`None`, the layer below's value stays) or given.
/// Unlike `Option<T>`, a YAML null is handed to `T` (an error unless `T` gives null a meaning,
/// as `Option<RuleAction>` does: back to the command line's choice).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Set<T>(pub Option<T>);

impl<T> Default for Set<T> {
    fn default() -> Self {
        Self(None)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Set<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        T::deserialize(d).map(|v| Self(Some(v)))
    }
}

impl<T> PerRule<Set<T>> {
    /// Writes each rule this layer sets into `into` (converted by `conv`) and records its
    /// dotted key (`{section}.{rule}`) in `keys`.
    pub(crate) fn apply<U>(
        &self,
        section: &'static str,
        into: &mut PerRule<U>,
        keys: &mut Vec<&'static str>,
        conv: impl Fn(&T) -> U,
    ) {
        for rule in Rule::ALL {
            if let Set(Some(v)) = self.of(rule) {
                *into.of_mut(rule) = conv(v);
                keys.push(dotted_key(section, rule));
            }
        }
    }
}

/// `{section}.{rule}` as a `'static` string, for the list of keys a layer set.
fn dotted_key(section: &'static str, rule: Rule) -> &'static str {
    // Every (section, rule) pair is a fixed, small set; a table avoids leaking strings.
    macro_rules! table {
        ($($section:literal),*) => {
            match section {
                $($section => match rule {
                    Rule::DeletedExe => concat!($section, ".deleted_exe"),
                    Rule::TmpExe => concat!($section, ".tmp_exe"),
                    Rule::WxMem => concat!($section, ".wx_mem"),
                    Rule::Ptrace => concat!($section, ".ptrace"),
                    Rule::HighCpu => concat!($section, ".high_cpu"),
                    Rule::EmptyCmdline => concat!($section, ".empty_cmdline"),
                    Rule::SuspiciousPort => concat!($section, ".suspicious_port"),
                    Rule::FilelessExe => concat!($section, ".fileless_exe"),
                    Rule::ReverseShell => concat!($section, ".reverse_shell"),
                },)*
                _ => section,
            }
        };
    }
    table!("weights", "actions", "exceptions", "baseline.suppress")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_section_and_rule() {
        for rule in Rule::ALL {
            for section in ["weights", "actions", "exceptions", "baseline.suppress"] {
                assert_eq!(
                    dotted_key(section, rule),
                    format!("{section}.{}", rule.as_str())
                );
            }
        }
    }

    #[test]
    fn of_and_from_fn_agree_on_every_rule() {
        let p = PerRule::from_fn(Rule::as_str);
        for rule in Rule::ALL {
            assert_eq!(*p.of(rule), rule.as_str());
        }
        let yaml = serde_yaml::to_string(&p).unwrap_or_default();
        for rule in Rule::ALL {
            assert!(yaml.contains(&format!("{0}: {0}", rule.as_str())), "{yaml}");
        }
    }

    #[test]
    fn layer_null_is_handed_to_the_value() {
        let l: PerRule<Set<Option<u8>>> =
            serde_yaml::from_str("tmp_exe: null\nwx_mem: 3").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(l.tmp_exe, Set(Some(None)));
        assert_eq!(l.wx_mem, Set(Some(Some(3))));
        assert_eq!(l.ptrace, Set(None));
        assert!(serde_yaml::from_str::<PerRule<Set<u8>>>("tmp_exe: null").is_err());
        assert!(serde_yaml::from_str::<PerRule<Set<u8>>>("nope: 1").is_err());
    }
}
