//! `wx_mem`: memory both writable and executable — injected or unpacked code. Seen as the
//! request (sensor event) or as a mapping in /proc/PID/maps (sweep).
use super::Finding;
use crate::{
    config::{Config, Rule},
    process::table::Process,
};

/// Process Injection.
pub const ATTACK: &str = "T1055";

/// Fires on a recorded W+X request or a W+X mapping.
pub fn check(p: &Process, _cfg: &Config) -> Option<Finding> {
    let reason = if let Some(w) = p.wx_events.first() {
        format!(
            "{} asked for writable+executable memory at {:#x} ({} bytes)",
            w.syscall, w.start, w.len
        )
    } else if let Some(m) = p.wx_maps.first() {
        format!("writable+executable mapping {m}")
    } else {
        return None;
    };
    Some(Finding {
        rule: Rule::WxMem,
        reason,
        attack: ATTACK,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{detect::testing::benign, process::table::WxFact};

    #[test]
    fn fires_on_event_or_mapping() {
        let mut p = benign();
        p.wx_events.push(WxFact {
            syscall: "mprotect",
            start: 0x1000,
            len: 4096,
        });
        assert!(
            check(&p, &Config::default())
                .expect("event")
                .reason
                .contains("mprotect")
        );
        let mut p = benign();
        p.wx_maps.push("7f00-7f01 rwxp [anon]".into());
        assert!(check(&p, &Config::default()).is_some());
    }

    #[test]
    fn near_miss_without_wx() {
        assert!(check(&benign(), &Config::default()).is_none());
    }
}
