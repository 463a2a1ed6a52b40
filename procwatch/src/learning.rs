//! The engine's side of the learned baselines: turns what the table knows about a process into
//! [`Observation`]s for the [`Learner`], and a process's heuristic findings and anomalies into
//! what the scorer needs (which findings are known-normal, which anomalies are news). Owned by
//! the engine; nothing here does I/O (saving the model is the caller's, off the engine).
use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
};

use crate::{
    baseline::{
        Anomaly, Behaviour, Fact, Known, Learner, Observation, ProcessId,
        anomaly::known_json,
        model::Secs,
        net::{Destination, Direction, Proto},
    },
    config::{Config, Rule},
    detect::Finding,
    process::table::{ConnectFact, Process},
    procfs::{sample::ServerFact, sockets},
    sensor::{Event, EventBody},
};

/// Now, in Unix seconds (the learner's clock).
pub fn now_secs() -> Secs {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The baseline state the engine owns.
#[derive(Debug)]
pub struct Learning {
    learner: Learner,
    /// How many of each live process's anomalies an alert already carried.
    reported: HashMap<ProcessId, usize>,
    /// Observations fed so far (for `train`'s progress).
    events: u64,
}

/// What the baseline says about one process being judged.
#[derive(Debug, Default)]
pub struct Judgement {
    /// Findings known as normal, with the `known` object for the alert.
    pub known: BTreeMap<Rule, serde_json::Value>,
    /// The process's anomalies so far.
    pub anomalies: Vec<Anomaly>,
    /// Some anomalies were in no alert yet.
    pub new_anomalies: bool,
}

/// The baseline's name for a socket's protocol.
pub fn proto_of(p: sockets::Proto) -> Proto {
    match p {
        sockets::Proto::Tcp => Proto::Tcp,
        sockets::Proto::Udp => Proto::Udp,
    }
}

/// A connection this process opened (a connect or a send naming its destination, or an
/// outbound socket /proc shows), with its real protocol.
pub fn outbound(c: &ConnectFact) -> Destination {
    Destination {
        addr: c.addr,
        port: c.port,
        proto: proto_of(c.proto),
        direction: Direction::Outbound,
    }
}

/// A socket the process serves on (a sweep found it): a listening one keyed by the address it
/// is bound to and its own port, an accepted connection by the peer's address and its own
/// port (the peer's is ephemeral).
pub fn served(f: &ServerFact) -> Destination {
    Destination {
        addr: f.addr,
        port: f.port,
        proto: proto_of(f.proto),
        direction: if f.accepted {
            Direction::Inbound
        } else {
            Direction::Listen
        },
    }
}

/// What a sensor event (other than an exec, which the engine completes with the parent and
/// user) tells the baseline the process did.
pub fn event_behaviour(ev: &Event) -> Option<Behaviour<'_>> {
    match &ev.body {
        EventBody::Connect(c) => Some(Behaviour::Connect(outbound(&ConnectFact {
            addr: c.addr,
            port: c.port,
            proto: c.proto(),
        }))),
        EventBody::WxMem(_) => Some(Behaviour::WxMem),
        // TRACEME asks to be traced: the caller traces nobody.
        EventBody::Ptrace(t) if t.request_name != "PTRACE_TRACEME" => Some(Behaviour::Ptrace),
        _ => None,
    }
}

/// The learner's name for a process: pid and start time (none while the start is unknown:
/// a pid alone could be a recycled one, and must not teach the model).
pub fn id_of(p: &Process) -> Option<ProcessId> {
    (p.start_ticks != 0).then_some(ProcessId {
        pid: p.pid,
        start: p.start_ticks,
    })
}

impl Learning {
    /// Engine-side state over `learner`.
    pub fn new(learner: Learner) -> Self {
        Self {
            learner,
            reported: HashMap::new(),
            events: 0,
        }
    }

    /// The learner.
    pub fn learner(&self) -> &Learner {
        &self.learner
    }

    /// The learner, to save or replace its model.
    pub fn learner_mut(&mut self) -> &mut Learner {
        &mut self.learner
    }

    /// Observations fed so far.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Feeds one thing `p` did (nothing when its start time or executable is unknown); true
    /// when it raised an anomaly (kept with the process's session for [`Learning::judge`]).
    pub fn observe(&mut self, p: &Process, behaviour: Behaviour<'_>) -> bool {
        let (Some(process), Some(exe)) = (id_of(p), p.exe.as_deref()) else {
            return false;
        };
        self.observe_as(process, exe, behaviour)
    }

    /// Feeds one thing the process `process` running `exe` did; true when it raised an anomaly.
    pub fn observe_as(&mut self, process: ProcessId, exe: &Path, behaviour: Behaviour<'_>) -> bool {
        self.events += 1;
        let obs = Observation {
            process,
            exe,
            behaviour,
        };
        !self.learner.observe(&obs, now_secs()).is_empty()
    }

    /// The process exited: its session closes.
    pub fn exited(&mut self, p: &Process) {
        if let Some(id) = id_of(p) {
            self.learner.process_exited(id);
            self.reported.remove(&id);
        }
    }

    /// Tells the learner which heuristics hold for `p` (a never-silenced one stops it
    /// teaching), then says which of them are known-normal and what anomalies it has.
    pub fn judge(&mut self, p: &Process, findings: &[Finding], cfg: &Config) -> Judgement {
        let Some(id) = id_of(p) else {
            return Judgement::default();
        };
        if !findings.is_empty() {
            let rules: Vec<Rule> = findings.iter().map(|f| f.rule).collect();
            self.learner.note_findings(id, &rules);
        }
        let now = now_secs();
        let mut known = BTreeMap::new();
        if let Some(exe) = p.exe.as_deref() {
            for f in findings {
                if let Some(k) = self.known(exe, f.rule, p, cfg, now) {
                    known.insert(f.rule, k);
                }
            }
        }
        let anomalies = self.learner.anomalies(id).to_vec();
        let seen = self.reported.get(&id).copied().unwrap_or(0);
        Judgement {
            known,
            new_anomalies: anomalies.len() > seen,
            anomalies,
        }
    }

    /// Records that an alert carried every anomaly `p` has now.
    pub fn reported(&mut self, p: &Process) {
        if let Some(id) = id_of(p) {
            let n = self.learner.anomalies(id).len();
            self.reported.insert(id, n);
        }
    }

    /// The `known` object when the baseline knows `rule`'s finding about `p` as normal.
    fn known(
        &self,
        exe: &Path,
        rule: Rule,
        p: &Process,
        cfg: &Config,
        now: Secs,
    ) -> Option<serde_json::Value> {
        let ask = |fact: Fact<'_>| match self.learner.known(exe, rule, fact, now) {
            Known::Known {
                baseline,
                confidence,
            } => Some((baseline, confidence)),
            _ => None,
        };
        let (baseline, confidence) = match rule {
            Rule::WxMem => ask(Fact::WxMem)?,
            Rule::Ptrace => ask(Fact::Ptrace)?,
            Rule::HighCpu => ask(Fact::Cpu(p.cpu_pct))?,
            Rule::TmpExe | Rule::DeletedExe | Rule::FilelessExe | Rule::EmptyCmdline => {
                ask(Fact::Executable)?
            }
            // Known only when every connection the rule objects to is.
            Rule::SuspiciousPort => {
                let mut first = None;
                for c in p.connects.iter().chain(&p.conns) {
                    if c.port == 0 || cfg.port_allowed(c.port) {
                        continue;
                    }
                    let k = ask(Fact::Connect(&outbound(c)))?;
                    first.get_or_insert(k);
                }
                first?
            }
            Rule::ReverseShell => return None,
        };
        Some(known_json(&baseline, &confidence))
    }
}
