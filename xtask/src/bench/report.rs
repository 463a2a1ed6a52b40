//! Markdown tables, the targets of issue 5 evaluated from the numbers, and docs/BENCHMARKS.md.
use std::fmt::Write as _;

/// A Markdown table.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Table {
        Table {
            headers: headers.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// GitHub-flavoured Markdown with padded columns (readable as plain text too); `|` in a
    /// cell is escaped, missing cells are empty.
    pub fn render(&self) -> String {
        let cols = self.headers.len();
        let clean = |s: &str| s.replace('|', "\\|").replace('\n', " ");
        let cell = |row: &[String], i: usize| row.get(i).map(|s| clean(s)).unwrap_or_default();
        let mut widths: Vec<usize> = self
            .headers
            .iter()
            .map(|h| clean(h).chars().count())
            .collect();
        for row in &self.rows {
            for (i, w) in widths.iter_mut().enumerate() {
                *w = (*w).max(cell(row, i).chars().count()).max(3);
            }
        }
        let line = |cells: Vec<String>| {
            let padded: Vec<String> = cells
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c}{}", " ".repeat(w.saturating_sub(c.chars().count()))))
                .collect();
            format!("| {} |\n", padded.join(" | "))
        };
        let mut out = line(self.headers.iter().map(|h| clean(h)).collect());
        out += &line(widths.iter().map(|w| "-".repeat(*w)).collect());
        for row in &self.rows {
            out += &line((0..cols).map(|i| cell(row, i)).collect());
        }
        out
    }
}

/// One workload's part of the report.
#[derive(Debug, Clone)]
pub struct Section {
    pub number: u8,
    pub title: String,
    pub how: String,
    pub tables: Vec<(String, Table)>,
    pub notes: Vec<String>,
}

impl Section {
    pub fn new(number: u8, title: &str, how: &str) -> Section {
        Section {
            number,
            title: title.to_owned(),
            how: how.to_owned(),
            tables: Vec::new(),
            notes: Vec::new(),
        }
    }

    pub fn render(&self) -> String {
        let mut out = format!("## {}. {}\n\n{}\n\n", self.number, self.title, self.how);
        for (caption, table) in &self.tables {
            if !caption.is_empty() {
                let _ = writeln!(out, "{caption}\n");
            }
            out += &table.render();
            out.push('\n');
        }
        for note in &self.notes {
            let _ = writeln!(out, "- {note}");
        }
        if !self.notes.is_empty() {
            out.push('\n');
        }
        out
    }
}

/// `v` with `decimals` digits, or an em dash.
pub fn num(v: Option<f64>, decimals: usize) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v:.decimals$}"),
        _ => "—".into(),
    }
}

/// A ratio as `0.97×`.
pub fn ratio(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v:.3}×"),
        _ => "—".into(),
    }
}

/// A relative change as `+3.2 %`.
pub fn change(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{:+.1} %", v * 100.0),
        _ => "—".into(),
    }
}

/// Whether this run met a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Miss,
    /// Missed, but a bare tracepoint program misses it too: the kernel sets the floor.
    Floor,
    /// Not measured in this run (workload not selected, or the measurement failed).
    NotMeasured,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Miss => "MISS",
            Verdict::Floor => "MISS (kernel floor)",
            Verdict::NotMeasured => "not measured",
        }
    }
}

/// Loss of the storm's events, worst run: the monitor's machine-wide accounting and the exact
/// per-generator count of `procwatch events`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Loss {
    pub monitor: Option<f64>,
    pub exact: Option<f64>,
}

/// The numbers the targets are read from; each workload fills in its part.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Findings {
    pub exec_loss_1600: Option<Loss>,
    pub exec_loss_fastest: Option<Loss>,
    /// Fastest exec storm: exec/s with the monitor ÷ without (procwatch, bpftrace).
    pub fastest_ratio: Option<(Option<f64>, Option<f64>)>,
    /// procwatch CPU µs per exec at 1,600/s and fastest.
    pub cpu_us_per_exec: Vec<Labelled>,
    /// Relative slowdown per call (0.10 = +10 %): procwatch, bare tracepoint.
    pub mprotect: Option<(Option<f64>, Option<f64>)>,
    pub getppid: Option<(Option<f64>, Option<f64>)>,
    /// Relative slowdown per connect: procwatch, bare tracepoint.
    pub connect: Option<(Option<f64>, Option<f64>)>,
    pub latency_p99_ms: Option<f64>,
    /// Worst run: pids alerted, execs made.
    pub recall: Option<(f64, f64)>,
    /// Largest procwatch RSS seen after a storm, MiB.
    pub rss_max_mib: Option<f64>,
    /// RSS after the last repeated storm minus after the first, MiB.
    pub rss_growth_mib: Option<f64>,
    /// ms per 1,000 processes: procwatch scan, then each ps variant.
    pub scan: Option<(Option<f64>, Vec<Labelled>)>,
}

/// A value with what it is, e.g. `("1,600/s", Some(12.0))`.
pub type Labelled = (String, Option<f64>);

/// RSS may move this much over the repeated storms and still count as "no growth".
pub const RSS_GROWTH_TOLERANCE_MIB: f64 = 1.0;

/// One line of the targets table.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetRow {
    pub target: String,
    pub measured: String,
    pub verdict: Verdict,
}

fn row(target: &str, measured: String, verdict: Verdict) -> TargetRow {
    TargetRow {
        target: target.to_owned(),
        measured,
        verdict,
    }
}

/// A target read off one measurement: `found` is what the run shows and whether it meets the
/// target; `None` when the run did not measure it.
fn judged(target: &str, found: Option<(String, bool)>) -> TargetRow {
    match found {
        Some((measured, true)) => row(target, measured, Verdict::Pass),
        Some((measured, false)) => row(target, measured, Verdict::Miss),
        None => row(target, "—".into(), Verdict::NotMeasured),
    }
}

fn loss_target(name: &str, loss: Option<Loss>) -> TargetRow {
    let Some(l) = loss else {
        return row(name, "—".into(), Verdict::NotMeasured);
    };
    let measured = format!(
        "monitor: {} lost; exact count (procwatch events): {} lost",
        num(l.monitor, 0),
        num(l.exact, 0)
    );
    let verdict = match (l.monitor, l.exact) {
        (Some(m), Some(e)) if m == 0.0 && e == 0.0 => Verdict::Pass,
        (Some(m), _) | (_, Some(m)) if m > 0.0 => Verdict::Miss,
        _ => Verdict::NotMeasured,
    };
    row(name, measured, verdict)
}

fn overhead_target(name: &str, limit: f64, v: Option<(Option<f64>, Option<f64>)>) -> TargetRow {
    let Some((Some(pw), bare)) = v else {
        return row(name, "—".into(), Verdict::NotMeasured);
    };
    let mut measured = format!("procwatch {}", change(Some(pw)));
    if let Some(b) = bare {
        let _ = write!(
            measured,
            "; bare tracepoint {}; procwatch − bare: {:+.1} points",
            change(Some(b)),
            (pw - b) * 100.0
        );
    }
    let verdict = if pw <= limit {
        Verdict::Pass
    } else if bare.is_some_and(|b| b > limit) {
        Verdict::Floor
    } else {
        Verdict::Miss
    };
    row(name, measured, verdict)
}

/// Every target of issue 5, evaluated from `f`.
pub fn targets(f: &Findings) -> Vec<TargetRow> {
    let mut rows = vec![
        loss_target("exec storm 1,600/s: zero loss", f.exec_loss_1600),
        loss_target("exec storm fastest: zero loss", f.exec_loss_fastest),
    ];
    rows.push(judged(
        "exec storm fastest: wall-time overhead no worse than bpftrace's",
        match f.fastest_ratio {
            Some((Some(pw), Some(bt))) => Some((
                format!(
                    "exec/s vs no monitor: procwatch {}, bpftrace {}",
                    ratio(Some(pw)),
                    ratio(Some(bt))
                ),
                pw >= bt,
            )),
            _ => None,
        },
    ));
    let cpu: Vec<&(String, Option<f64>)> = f.cpu_us_per_exec.iter().collect();
    rows.push(if cpu.is_empty() || cpu.iter().any(|(_, v)| v.is_none()) {
        row(
            "procwatch CPU ≤ 30 µs per exec",
            cpu.iter()
                .map(|(k, v)| format!("{k}: {} µs", num(*v, 1)))
                .collect::<Vec<_>>()
                .join(", "),
            Verdict::NotMeasured,
        )
    } else {
        let worst = cpu.iter().filter_map(|(_, v)| *v).fold(0.0, f64::max);
        row(
            "procwatch CPU ≤ 30 µs per exec",
            cpu.iter()
                .map(|(k, v)| format!("{k}: {} µs", num(*v, 1)))
                .collect::<Vec<_>>()
                .join(", "),
            if worst <= 30.0 {
                Verdict::Pass
            } else {
                Verdict::Miss
            },
        )
    });
    rows.push(overhead_target(
        "mprotect (not W+X) ≤ +15 %",
        0.15,
        f.mprotect,
    ));
    rows.push(overhead_target("getppid ≤ +5 %", 0.05, f.getppid));
    rows.push(overhead_target("connect storm ≤ +5 %", 0.05, f.connect));
    rows.push(judged(
        "alert latency p99 < 5 ms",
        f.latency_p99_ms
            .map(|p| (format!("p99 {} ms", num(Some(p), 2)), p < 5.0)),
    ));
    rows.push(judged(
        "short-lived recall 1000/1000",
        f.recall.map(|(seen, made)| {
            (
                format!("{seen:.0}/{made:.0} (worst run)"),
                seen >= 1000.0 && seen >= made,
            )
        }),
    ));
    rows.push(judged(
        "RSS < 40 MB after the storms",
        f.rss_max_mib.map(|r| {
            (
                format!("largest, peaks included: {} MiB", num(Some(r), 1)),
                r * 1.048_576 < 40.0,
            )
        }),
    ));
    rows.push(judged(
        "no RSS growth over 10 repeated storms",
        f.rss_growth_mib.map(|g| {
            (
                format!(
                    "at rest, last − first: {g:+.2} MiB (tolerance {RSS_GROWTH_TOLERANCE_MIB} MiB)"
                ),
                g <= RSS_GROWTH_TOLERANCE_MIB,
            )
        }),
    ));
    rows.push(match &f.scan {
        Some((Some(scan), ps)) if !ps.is_empty() && ps.iter().all(|(_, v)| v.is_some()) => {
            let faster = ps.iter().all(|(_, v)| v.is_some_and(|p| *scan < p));
            row(
                "scan faster than ps",
                format!(
                    "ms per 1,000 processes: scan {}, {}",
                    num(Some(*scan), 2),
                    ps.iter()
                        .map(|(k, v)| format!("{k} {}", num(*v, 2)))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                if faster { Verdict::Pass } else { Verdict::Miss },
            )
        }
        _ => row("scan faster than ps", "—".into(), Verdict::NotMeasured),
    });
    rows
}

pub fn targets_table(rows: &[TargetRow]) -> Table {
    let mut t = Table::new(&["target", "this run", "result"]);
    for r in rows {
        t.row(vec![
            r.target.clone(),
            r.measured.clone(),
            r.verdict.as_str().into(),
        ]);
    }
    t
}

/// Facts about the run for the document header.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    pub date: String,
    pub kernel: String,
    pub cpus: usize,
    pub cpu_model: String,
    pub commit: String,
    pub mode: String,
}

/// The whole of docs/BENCHMARKS.md.
pub fn document(
    h: &Header,
    sections: &[Section],
    targets: &[TargetRow],
    notes: &[String],
) -> String {
    let mut out = String::from(
        "# Benchmarks\n\nWritten by `cargo xtask bench` (issue 5); re-run it rather than editing this \
         file. Every number below comes from the run described here.\n\n",
    );
    let mut facts = Table::new(&["", ""]);
    for (k, v) in [
        ("date (UTC)", h.date.clone()),
        ("kernel (`uname -r`)", h.kernel.clone()),
        ("CPUs (nproc)", h.cpus.to_string()),
        ("CPU model", h.cpu_model.clone()),
        ("procwatch commit", h.commit.clone()),
        ("run", h.mode.clone()),
    ] {
        facts.row(vec![k.into(), v]);
    }
    out += &facts.render();
    out.push('\n');
    out += "## Targets\n\nEach verdict is computed from this run's numbers.\n\n";
    out += &targets_table(targets).render();
    out.push('\n');
    if !notes.is_empty() {
        for n in notes {
            let _ = writeln!(out, "- {n}");
        }
        out.push('\n');
    }
    for s in sections {
        out += &s.render();
    }
    out
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) for seconds since the Unix epoch.
pub fn utc_date(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_render_as_aligned_markdown() {
        let mut t = Table::new(&["monitor", "exec/s"]);
        t.row(vec!["no monitor".into(), "1600".into()]);
        t.row(vec!["a|b".into()]);
        assert_eq!(
            t.render(),
            "| monitor    | exec/s |\n\
             | ---------- | ------ |\n\
             | no monitor | 1600   |\n\
             | a\\|b       |        |\n"
        );
    }

    #[test]
    fn number_formats() {
        assert_eq!(num(Some(1.23456), 2), "1.23");
        assert_eq!(num(None, 2), "—");
        assert_eq!(num(Some(f64::NAN), 2), "—");
        assert_eq!(ratio(Some(0.9512)), "0.951×");
        assert_eq!(change(Some(0.123)), "+12.3 %");
        assert_eq!(change(Some(-0.01)), "-1.0 %");
    }

    #[test]
    fn dates() {
        assert_eq!(utc_date(0), "1970-01-01 00:00:00");
        assert_eq!(utc_date(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(utc_date(1_795_306_789), "2026-11-22 00:19:49");
    }

    fn verdict_of(rows: &[TargetRow], prefix: &str) -> Verdict {
        rows.iter()
            .find(|r| r.target.starts_with(prefix))
            .map(|r| r.verdict)
            .expect("row exists")
    }

    #[test]
    fn targets_are_computed_from_the_numbers() {
        let empty = targets(&Findings::default());
        assert!(empty.iter().all(|r| r.verdict == Verdict::NotMeasured));

        let f = Findings {
            exec_loss_1600: Some(Loss {
                monitor: Some(0.0),
                exact: Some(0.0),
            }),
            exec_loss_fastest: Some(Loss {
                monitor: Some(0.0),
                exact: Some(12.0),
            }),
            fastest_ratio: Some((Some(0.90), Some(0.80))),
            cpu_us_per_exec: vec![
                ("1,600/s".into(), Some(12.0)),
                ("fastest".into(), Some(31.0)),
            ],
            mprotect: Some((Some(0.10), Some(0.08))),
            getppid: Some((Some(0.20), Some(0.18))),
            connect: Some((Some(0.07), Some(0.01))),
            latency_p99_ms: Some(4.99),
            recall: Some((999.0, 1000.0)),
            rss_max_mib: Some(38.0),
            rss_growth_mib: Some(1.5),
            scan: Some((
                Some(10.0),
                vec![("ps a".into(), Some(20.0)), ("ps b".into(), Some(9.0))],
            )),
        };
        let rows = targets(&f);
        assert_eq!(verdict_of(&rows, "exec storm 1,600/s"), Verdict::Pass);
        assert_eq!(verdict_of(&rows, "exec storm fastest: zero"), Verdict::Miss);
        assert_eq!(verdict_of(&rows, "exec storm fastest: wall"), Verdict::Pass);
        assert_eq!(verdict_of(&rows, "procwatch CPU"), Verdict::Miss);
        assert_eq!(verdict_of(&rows, "mprotect"), Verdict::Pass);
        assert_eq!(verdict_of(&rows, "getppid"), Verdict::Floor);
        assert_eq!(verdict_of(&rows, "connect"), Verdict::Miss);
        assert_eq!(verdict_of(&rows, "alert latency"), Verdict::Pass);
        assert_eq!(verdict_of(&rows, "short-lived"), Verdict::Miss);
        // 38 MiB is 39.8 MB.
        assert_eq!(verdict_of(&rows, "RSS < 40"), Verdict::Pass);
        assert_eq!(verdict_of(&rows, "no RSS growth"), Verdict::Miss);
        assert_eq!(verdict_of(&rows, "scan"), Verdict::Miss);

        let f = Findings {
            fastest_ratio: Some((Some(0.79), Some(0.80))),
            rss_max_mib: Some(38.5),
            recall: Some((1000.0, 1000.0)),
            scan: Some((Some(5.0), vec![("ps".into(), Some(9.0))])),
            ..Findings::default()
        };
        let rows = targets(&f);
        assert_eq!(verdict_of(&rows, "exec storm fastest: wall"), Verdict::Miss);
        assert_eq!(verdict_of(&rows, "RSS < 40"), Verdict::Miss);
        assert_eq!(verdict_of(&rows, "short-lived"), Verdict::Pass);
        assert_eq!(verdict_of(&rows, "scan"), Verdict::Pass);
    }

    #[test]
    fn the_document_has_header_targets_and_sections() {
        let h = Header {
            date: "2026-01-01 00:00:00".into(),
            kernel: "6.18.0".into(),
            cpus: 2,
            cpu_model: "Some CPU".into(),
            commit: "abc1234".into(),
            mode: "quick, 1 run".into(),
        };
        let mut s = Section::new(3, "Syscall overhead", "How it was measured.");
        s.tables.push((String::new(), Table::new(&["monitor"])));
        s.notes.push("a note".into());
        let doc = document(&h, &[s], &targets(&Findings::default()), &["n".into()]);
        assert!(doc.starts_with("# Benchmarks\n"));
        assert!(doc.contains("| kernel (`uname -r`) | 6.18.0"));
        assert!(doc.contains("## Targets"));
        assert!(doc.contains("## 3. Syscall overhead\n\nHow it was measured.\n\n| monitor |"));
        assert!(doc.contains("- a note\n"));
    }
}
