//! Property tests of everything that parses or formats input a monitored process, the kernel
//! or a config file controls: the ring-buffer record decoder, config loading, the alert's
//! JSON, the syslog messages and the log-file entries. Whatever the input: no panic, and every
//! output line valid.
//!
//! Deterministic by default (a fixed seed, a bounded number of cases, a few seconds in all).
//! For a long run: `PROPTEST_CASES=1000000 cargo test -p procwatch-tests --test hostile_input
//! --release -- --nocapture` (and `PROPTEST_RNG_SEED=N` for other inputs); each property
//! prints how many inputs it tried and how long it took.
#![allow(clippy::unwrap_used)]

use std::{ffi::OsString, os::unix::ffi::OsStringExt, time::Instant};

use proptest::{
    collection::vec,
    prelude::*,
    test_runner::{Config, RngSeed, TestCaseError, TestRunner},
};

use procwatch::{
    alert::{Action, ActionBy, Alert, Reason, SCHEMA, SensorInfo, SilenceHint},
    config::{self, Rule},
    output::{
        logfile,
        syslog::{self, Format, MAX_MESSAGE_BYTES},
    },
    sensor::{SensorKind, decode::decode},
};
use procwatch_common as wire;
use procwatch_tests::alert_schema;

/// Runs `test` on inputs from `strategy`: `default_cases` of them unless PROPTEST_CASES says
/// otherwise, from a fixed seed unless PROPTEST_RNG_SEED does. Prints the count and the time.
fn check<S: Strategy>(
    name: &str,
    default_cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let mut config = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = default_cases;
    }
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        config.rng_seed = RngSeed::Fixed(0x5eed_0009);
    }
    config.failure_persistence = None;
    let cases = config.cases;
    let mut runner = TestRunner::new(config);
    let started = Instant::now();
    let result = runner.run(&strategy, test);
    let took = started.elapsed();
    eprintln!(
        "{name}: {cases} inputs in {:.1} s ({:.0} per second)",
        took.as_secs_f64(),
        f64::from(cases) / took.as_secs_f64().max(1e-9)
    );
    if let Err(e) = result {
        panic!("{name}: {e}");
    }
}

// ---- hostile text ----

/// Pieces that break naive formats: line and field separators, quotes, escapes, terminal
/// control, syslog and log-file look-alikes, invalid UTF-8, NULs, bidi and Unicode newlines.
const NASTY: &[&[u8]] = &[
    b"\n",
    b"\r\n",
    b"\r",
    b"\"",
    b"'",
    b"\\",
    b"\\u0000",
    b"\0",
    b"\t",
    b"\x1b[2J",
    b"\x1b]0;title\x07",
    b"\x7f",
    b"\xc2\x9b31m",
    b"\xff",
    b"\xfe\xff",
    b"\xe2\x80\xa8",
    b"\xe2\x80\xae",
    b"\xe2\x81\xa6",
    b"\xe2\x80\x8f",
    b"\xf0\x9f\x92\xa3",
    b"\xed\xa0\x80",
    b"<13>1 - forged - - - ",
    b"[2020-01-01 00:00:00 UTC] ANOMALY DETECTED",
    b"  PID: 1",
    b"{\"schema\":",
    b"]}",
    b"%s%n",
    b" ",
    b"-",
    b"...[+9 more]",
    b"x",
    b"\xc3\xa9",
];

/// Bytes made of random bytes and [`NASTY`] pieces.
fn small_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        2 => vec(any::<u8>(), 0..48),
        3 => vec(
            prop_oneof![
                proptest::sample::select(NASTY).prop_map(<[u8]>::to_vec),
                vec(any::<u8>(), 0..6),
                "[a-zA-Z0-9/._-]{0,12}".prop_map(String::into_bytes),
            ],
            0..12
        )
        .prop_map(|v| v.concat()),
    ]
}

/// One [`NASTY`] piece repeated to 1 KB to 60 KB.
fn huge_bytes() -> impl Strategy<Value = Vec<u8>> {
    (proptest::sample::select(NASTY), 1_000..60_000usize)
        .prop_map(|(piece, n)| piece.repeat(n / piece.len().max(1)))
}

/// [`small_bytes`], now and then [`huge_bytes`].
fn hostile_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![20 => small_bytes(), 1 => huge_bytes()]
}

/// A hostile string as procwatch holds it after lossy conversion.
fn hostile_string() -> impl Strategy<Value = String> {
    hostile_bytes().prop_map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// [`small_bytes`] as a string.
fn small_string() -> impl Strategy<Value = String> {
    small_bytes().prop_map(|b| String::from_utf8_lossy(&b).into_owned())
}

// ---- alerts ----

/// Unicode line separators and bidi overrides: not control characters, but they break or
/// reorder a line as a reader sees it.
fn layout_char(c: char) -> bool {
    matches!(c, '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// A `procwatch.alert/v1` record with hostile text in every field a process or the system
/// controls (name, exe, argv, user, host, reasons, trigger strings, dump path); the fields
/// procwatch makes itself (timestamp, sha256, scores) stay in their documented ranges.
fn hostile_alert() -> impl Strategy<Value = Alert> {
    let text = (
        small_bytes(),
        proptest::option::of(small_string()),
        proptest::option::of(small_string()),
        vec(small_string(), 0..40),
        small_string(),
        vec(small_string(), 1..9),
        small_string(),
        proptest::option::of(small_string()),
    );
    // One field in ten alerts gets a huge value (a 60 KB argv, a page of escapes, ...).
    let huge = proptest::option::weighted(
        0.1,
        (
            0..8u8,
            huge_bytes().prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        ),
    );
    let numbers = (
        1..=4_194_304u32,
        any::<u32>(),
        any::<u32>(),
        0.0..10_000_000.0f64,
        0.0..=1.0f64,
        0.0..100_000.0f64,
        any::<u64>(),
        vec(1..=65535u16, 0..3000),
        0..4u8,
        any::<bool>(),
        0i64..4_000_000_000_000,
    );
    (text, numbers, huge).prop_map(
        |(
            (
                mut name,
                mut user,
                mut exe,
                mut cmdline,
                mut host,
                mut reasons,
                mut trigger_text,
                mut dump,
            ),
            (pid, ppid, uid, heuristic, ml, cpu, lost, ports, action, sha, millis),
            huge,
        )| {
            if let Some((field, big)) = huge {
                match field {
                    0 => name = big.into_bytes(),
                    1 => user = Some(big),
                    2 => exe = Some(big),
                    3 => cmdline.push(big),
                    4 => host = big,
                    5 => reasons[0] = big,
                    6 => trigger_text = big,
                    _ => dump = Some(big),
                }
            }
            let rules = Rule::ALL;
            let reasons: Vec<Reason> = reasons
                .into_iter()
                .enumerate()
                .map(|(i, reason)| Reason {
                    rule: procwatch::alert::RuleId::Heuristic(rules[i % rules.len()]),
                    score: heuristic / 9.0,
                    reason,
                    attack: "T1055",
                    known: None,
                    anomaly: None,
                })
                .collect();
            let (action, action_by) = match action {
                0 => (Action::Alert, None),
                1 => (Action::Killed, Some(ActionBy::Kernel)),
                2 => (Action::Killed, Some(ActionBy::Userspace)),
                _ => (Action::KillFailed, Some(ActionBy::Userspace)),
            };
            let when = chrono::DateTime::from_timestamp_millis(millis).unwrap_or_default();
            Alert {
                schema: SCHEMA,
                id: u64::from(pid) + 1,
                timestamp: when.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
                host,
                pid,
                exec_id: String::new(),
                start_boottime_ns: None,
                ppid,
                ancestors: Vec::new(),
                exec_chain: Vec::new(),
                program: None,
                cgroup_id: None,
                cgroup: None,
                container_id: None,
                uid,
                user,
                name: OsString::from_vec(name),
                exe,
                cmdline,
                sha256: sha.then(|| "0f".repeat(32)),
                trigger: serde_json::json!({
                    "kind": "exec",
                    "filename": trigger_text,
                    "argv": [trigger_text],
                    "comm": trigger_text,
                }),
                total_score: heuristic + 2.0 * ml,
                heuristic_score: heuristic,
                ml_score: ml,
                reasons,
                cpu_pct: cpu,
                conns_outbound: ports.len(),
                remote_ports: ports,
                action,
                action_by,
                sensor: SensorInfo {
                    name: SensorKind::Ebpf,
                    events_lost: lost,
                    probes_missing: vec![trigger_text.clone()],
                },
                action_reason: (action_by.is_some()).then(|| trigger_text.clone()),
                dump_error: dump.is_none().then(|| trigger_text.clone()),
                dump,
                silence_with: vec![SilenceHint {
                    rule: "tmp_exe",
                    exception: serde_json::json!({
                        "name": trigger_text,
                        "exe": [trigger_text],
                    }),
                }],
            }
        },
    )
}

/// Fails unless `json` is one line of valid JSON that matches the alert schema.
fn valid_alert_json(json: &str, what: &str) -> Result<serde_json::Value, TestCaseError> {
    // JSON escapes every C0 control (newlines included); DEL and C1 controls are valid raw
    // JSON and stay as they are (the terminal and log-file outputs escape them).
    prop_assert!(
        !json.bytes().any(|b| b < 0x20),
        "{what}: raw control byte in the JSON"
    );
    let v: serde_json::Value = serde_json::from_str(json)
        .map_err(|e| TestCaseError::fail(format!("{what}: not JSON: {e}")))?;
    let errors: Vec<String> = alert_schema()
        .iter_errors(&v)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .take(3)
        .collect();
    prop_assert!(errors.is_empty(), "{what}: violates the schema: {errors:?}");
    Ok(v)
}

#[test]
fn alert_json_is_one_valid_line_matching_the_schema() {
    check("alert JSON", 300, hostile_alert(), |a| {
        // As the output thread serialises it for every sink.
        let json = serde_json::to_string(&a).unwrap();
        let v = valid_alert_json(&json, "alert")?;
        // Nothing lost or altered on the way: the text fields read back as they were.
        prop_assert_eq!(v["cmdline"].as_array().map(Vec::len), Some(a.cmdline.len()));
        prop_assert_eq!(v["host"].as_str(), Some(a.host.as_str()));
        prop_assert_eq!(v["exe"].as_str(), a.exe.as_deref());
        prop_assert_eq!(
            v["name"].as_str().map(str::to_string),
            Some(String::from_utf8_lossy(a.name.as_encoded_bytes()).into_owned())
        );
        // The terminal line is one line without control characters.
        let line = procwatch::alert::terminal_line(&a);
        prop_assert!(
            !line.chars().any(|c| c.is_control() || layout_char(c)),
            "terminal line: {line:?}"
        );
        Ok(())
    });
}

/// An RFC 3339 timestamp with milliseconds in UTC, or the NILVALUE.
fn rfc5424_timestamp(t: &str) -> bool {
    t == "-" || chrono::DateTime::parse_from_rfc3339(t).is_ok()
}

#[test]
fn syslog_messages_are_valid_and_within_the_size_cap() {
    let strategy = (hostile_alert(), 0.0..10.0f64, 1..=4_194_304u32);
    check("syslog", 300, strategy, |(a, min_score, pid)| {
        let json = serde_json::to_string(&a).unwrap();
        for format in [Format::Rfc5424, Format::Local] {
            // `None` is a message too big even when shrunk: dropped and counted. The
            // generated alerts are all shrinkable, so it must not happen here.
            let Some(msg) = syslog::format_message(&a, &json, min_score, pid, format) else {
                return Err(TestCaseError::fail(format!("{format:?}: no message")));
            };
            prop_assert!(
                msg.len() <= MAX_MESSAGE_BYTES,
                "{format:?}: {} bytes",
                msg.len()
            );
            prop_assert!(
                !msg.bytes().any(|b| b < 0x20),
                "{format:?}: raw control byte"
            );
            let body = match format {
                Format::Rfc5424 => {
                    let mut parts = msg.splitn(8, ' ');
                    let f: Vec<&str> = parts.by_ref().take(7).collect();
                    prop_assert_eq!(f.len(), 7);
                    prop_assert!(
                        ["<82>1", "<83>1", "<84>1"].contains(&f[0]),
                        "PRI/VERSION {}",
                        f[0]
                    );
                    prop_assert!(rfc5424_timestamp(f[1]), "TIMESTAMP {}", f[1]);
                    prop_assert!(
                        (1..=255).contains(&f[2].len())
                            && f[2].bytes().all(|b| b.is_ascii_graphic()),
                        "HOSTNAME {:?}",
                        f[2]
                    );
                    prop_assert_eq!(f[3], "procwatch");
                    prop_assert_eq!(f[4], pid.to_string());
                    prop_assert_eq!(f[5], "alert");
                    prop_assert_eq!(f[6], "-");
                    parts.next().unwrap_or("")
                }
                Format::Local => {
                    let (pri, rest) = msg.split_at(4);
                    prop_assert!(["<82>", "<83>", "<84>"].contains(&pri), "PRI {pri}");
                    // "Mmm dd hh:mm:ss " (16 bytes), then the tag.
                    prop_assert!(rest.is_char_boundary(16) && rest.len() > 16);
                    let (stamp, rest) = rest.split_at(16);
                    prop_assert!(
                        chrono::NaiveTime::parse_from_str(&stamp[7..15], "%H:%M:%S").is_ok(),
                        "timestamp {stamp:?}"
                    );
                    let tag = format!("procwatch[{pid}]: ");
                    prop_assert!(rest.starts_with(&tag), "tag in {rest:?}");
                    &rest[tag.len()..]
                }
            };
            let v = valid_alert_json(body, "syslog MSG")?;
            prop_assert_eq!(v["pid"].as_u64(), Some(u64::from(a.pid)));
            // TCP framing: the length prefix counts exactly the message's bytes.
            let frame = syslog::octet_counted(msg.as_bytes());
            let prefix = format!("{} ", msg.len());
            prop_assert!(frame.starts_with(prefix.as_bytes()));
            prop_assert_eq!(frame.len(), prefix.len() + msg.len());
        }
        Ok(())
    });
}

#[test]
fn log_file_entries_stay_one_entry_without_control_bytes() {
    check(
        "log file",
        300,
        (hostile_alert(), 0.0..10.0f64),
        |(a, min_score)| {
            let text = logfile::entry(&a, min_score);
            prop_assert!(text.ends_with("\n\n"), "an entry ends with an empty line");
            let lines: Vec<&str> = text.lines().collect();
            // Fixed fields: 15 lines (the last the alert id), one more with a SHA256, and the
            // empty line.
            let want = 16 + usize::from(a.sha256.is_some());
            prop_assert_eq!(lines.len(), want, "{:?}", text);
            prop_assert!(lines[0].starts_with('[') && lines[0].ends_with("] ANOMALY DETECTED"));
            for l in &lines[1..want - 1] {
                prop_assert!(l.starts_with("  ") && !l.starts_with("  ["), "{l:?}");
            }
            prop_assert_eq!(lines[want - 1], "");
            prop_assert!(
                !text
                    .chars()
                    .any(|c| (c.is_control() && c != '\n') || layout_char(c)),
                "raw control or layout character in {text:?}"
            );
            Ok(())
        },
    );
}

// ---- ring-buffer records ----

/// `len` pseudo-random bytes from `seed` (xorshift): cheaper to generate than a proptest
/// vector of that many elements, which keeps a shrinkable tree per byte.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect()
}

/// Writes `v` at `offset` in `bytes` (native endian, as the kernel writes it).
fn put_u32(bytes: &mut [u8], offset: usize, v: u32) {
    bytes[offset..offset + 4].copy_from_slice(&v.to_ne_bytes());
}

/// A record of a known kind with random content and its length fields mostly in range (so
/// the decoder gets past its checks), then now and then cut, extended or bit-flipped.
fn mutated_record() -> impl Strategy<Value = Vec<u8>> {
    let kinds = 1..wire::kind::COUNT;
    (
        kinds,
        any::<u64>(),
        any::<u32>(),
        (0..=wire::PATH_LEN as u32 + 1, 0..=wire::ARGS_LEN as u32 + 1),
        (
            0..=wire::MAX_ARGS as u32 + 1,
            0..=wire::MEMFD_NAME_LEN as u32 + 1,
        ),
        prop_oneof![Just(wire::AF_INET), Just(wire::AF_INET6), any::<u16>()],
        prop_oneof![1..=3u32, any::<u32>()],
        vec((any::<usize>(), any::<u8>()), 0..4),
        prop_oneof![8 => Just(0i32), 1 => -64..64i32],
    )
        .prop_map(
            |(kind, noise_seed, flags, (fname, args), (argc, name), family, wx, flips, resize)| {
                use std::mem::offset_of;
                let mut b = noise(noise_seed, wire::record_size(kind));
                put_u32(&mut b, offset_of!(wire::EventHeader, kind), kind);
                put_u32(&mut b, offset_of!(wire::EventHeader, flags), flags);
                match kind {
                    wire::kind::EXEC => {
                        put_u32(&mut b, offset_of!(wire::ExecEvent, filename_len), fname);
                        put_u32(&mut b, offset_of!(wire::ExecEvent, args_len), args);
                        put_u32(&mut b, offset_of!(wire::ExecEvent, argc), argc);
                    }
                    wire::kind::MEMFD => {
                        put_u32(&mut b, offset_of!(wire::MemfdEvent, name_len), name);
                    }
                    wire::kind::CONNECT => {
                        let at = offset_of!(wire::ConnectEvent, family);
                        b[at..at + 2].copy_from_slice(&family.to_ne_bytes());
                    }
                    wire::kind::WX_MEM => {
                        put_u32(&mut b, offset_of!(wire::WxMemEvent, syscall), wx);
                    }
                    _ => {}
                }
                for (at, v) in flips {
                    let i = at % b.len();
                    b[i] ^= v;
                }
                let new_len = (b.len() as i64 + i64::from(resize)).max(0) as usize;
                b.resize(new_len, 0xa5);
                b
            },
        )
}

/// Decodes `bytes`; a decoded event must serialise to one line of JSON naming its kind.
fn decode_is_total(bytes: &[u8]) -> Result<bool, TestCaseError> {
    let Ok(event) = decode(bytes) else {
        return Ok(false);
    };
    let line = serde_json::to_string(&event).unwrap();
    prop_assert!(!line.bytes().any(|b| b < 0x20), "raw control byte: {line}");
    let v: serde_json::Value =
        serde_json::from_str(&line).map_err(|e| TestCaseError::fail(format!("not JSON: {e}")))?;
    prop_assert_eq!(v["kind"].as_str(), Some(event.kind().as_str()));
    prop_assert!(v["pid"].is_u64() && v["comm"].is_string(), "{line}");
    Ok(true)
}

#[test]
fn decoder_takes_arbitrary_bytes() {
    let strategy = prop_oneof![
        vec(any::<u8>(), 0..64),
        (any::<u64>(), 0..2000usize).prop_map(|(seed, len)| noise(seed, len)),
        // A known tag (or the first unknown one) in front of random bytes of the right size.
        (1..wire::kind::COUNT + 1, any::<u64>()).prop_map(|(kind, seed)| {
            let mut b = noise(seed, wire::record_size(kind).max(48));
            put_u32(&mut b, 0, kind);
            b
        }),
    ];
    check("decoder, arbitrary bytes", 3000, strategy, |b| {
        decode_is_total(&b).map(|_| ())
    });
}

#[test]
fn decoder_takes_mutated_records() {
    let decoded = std::sync::atomic::AtomicU64::new(0);
    check("decoder, mutated records", 3000, mutated_record(), |b| {
        if decode_is_total(&b)? {
            decoded.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(())
    });
    let decoded = decoded.into_inner();
    eprintln!("decoder, mutated records: {decoded} decoded to events");
    // The generator is meant to reach the decoder's inner paths, not only its first check.
    assert!(decoded > 100, "only {decoded} records decoded");
}

// ---- config ----

/// Fails unless loading `text` either succeeded with every value in range or failed with a
/// one-line error naming the file and a line.
fn config_loads_or_is_located(text: &str) -> Result<(), TestCaseError> {
    match config::Config::from_yaml("fuzz.yaml", text) {
        Ok(c) => {
            let b = procwatch::bounds::MAX_NUMBER;
            for x in [c.cpu_high, c.min_score, c.ml_weight] {
                prop_assert!(x.is_finite() && (0.0..=b).contains(&x), "{x}");
            }
            for rule in Rule::ALL {
                let w = c.weight(rule);
                prop_assert!(w.is_finite() && (0.0..=b).contains(&w), "{rule:?} {w}");
            }
            prop_assert!(c.sweep_interval >= procwatch::bounds::MIN_PERIOD);
            prop_assert!(c.cpu_window >= procwatch::bounds::MIN_PERIOD);
            for d in [
                c.sweep_interval,
                c.cpu_window,
                c.exited_grace,
                c.baseline.learning_period,
            ] {
                prop_assert!(d <= procwatch::bounds::MAX_DURATION, "{d:?}");
            }
            prop_assert!((1..=procwatch::bounds::MAX_PROCESSES).contains(&c.max_processes));
            // What `config show` prints loads again.
            let yaml = c.to_yaml().unwrap();
            let again = config::Config::from_yaml("shown.yaml", &yaml);
            prop_assert!(
                again.is_ok(),
                "shown config does not load: {again:?}\n{yaml}"
            );
        }
        Err(e) => {
            let Some(d) = e.diagnostic() else {
                return Err(TestCaseError::fail(format!("not a located error: {e}")));
            };
            let shown = e.to_string();
            prop_assert!(d.line.is_some_and(|l| l >= 1), "no line: {shown}");
            prop_assert!(shown.starts_with("fuzz.yaml:"), "{shown}");
            prop_assert!(
                !shown.chars().any(char::is_control),
                "control character in the message: {shown:?}"
            );
        }
    }
    Ok(())
}

/// A YAML scalar that a hostile or careless config might hold.
fn yaml_scalar() -> impl Strategy<Value = String> {
    const SPECIAL: &[&str] = &[
        ".inf",
        "-.inf",
        ".nan",
        ".NaN",
        "inf",
        "nan",
        "-0",
        "0",
        "0.0",
        "1e30",
        "-1e30",
        "1e-30",
        "1e308",
        "1e309",
        "99999999999999999999999999",
        "-9223372036854775809",
        "18446744073709551615",
        "18446744073709551616",
        "4294967296",
        "0x10",
        "0o7",
        "\"1e30s\"",
        "\"1h1h1h1h\"",
        "\"3650d\"",
        "\"3651d\"",
        "\"100ms\"",
        "\"99ms\"",
        "\"0s\"",
        "\"-5s\"",
        "\".5s\"",
        "\"1.5GiB\"",
        "\"1TiB\"",
        "\"99999999999TiB\"",
        "\"80,443\"",
        "\"0-70000\"",
        "\"65535-1\"",
        "null",
        "~",
        "true",
        "[]",
        "{}",
        "[1, \"2-3\"]",
        "\"\"",
        "\"/tmp\"",
        "tmp",
        "\"unix:///dev/log\"",
        "\"udp://[::1]\"",
        "\"tcp://h:0\"",
        "\"127.0.0.1:99999\"",
        "&a 1",
        "*a",
        "!!str 5",
        "!!binary AAAA",
        "|\n  x",
        ">-\n  y",
        "'quoted''s'",
        "\"\\u0000\\x1b[2J\\n\"",
    ];
    prop_oneof![
        proptest::sample::select(SPECIAL).prop_map(str::to_string),
        any::<f64>().prop_map(|x| format!("{x}")),
        any::<f64>().prop_map(|x| format!("{x:e}")),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        hostile_string().prop_map(|s| serde_json::to_string(&s).unwrap()),
        (
            0.0..1e6f64,
            proptest::sample::select(&["ms", "s", "m", "h", "d", "x", ""][..])
        )
            .prop_map(|(n, u)| format!("\"{n}{u}\"")),
    ]
}

/// A config file of known (and some unknown) keys with hostile values, in block style.
fn hostile_config() -> impl Strategy<Value = String> {
    let mut keys = config::schema_keys();
    keys.extend(
        [
            "min_scor",
            "weights.bogus",
            "a.b.c",
            "\"quoted\"",
            "weights.ptrace.x",
        ]
        .map(String::from),
    );
    vec((proptest::sample::select(keys), yaml_scalar()), 0..8).prop_map(|pairs| {
        let mut text = String::new();
        for (key, value) in pairs {
            let parts: Vec<&str> = key.split('.').collect();
            for (depth, part) in parts.iter().enumerate() {
                text.push_str(&"  ".repeat(depth));
                text.push_str(part);
                text.push(':');
                if depth + 1 == parts.len() {
                    text.push(' ');
                    text.push_str(&value.replace('\n', &format!("\n{}", "  ".repeat(depth + 1))));
                }
                text.push('\n');
            }
        }
        text
    })
}

#[test]
fn config_with_hostile_values_loads_or_is_located() {
    check("config, hostile values", 2000, hostile_config(), |text| {
        config_loads_or_is_located(&text)
    });
}

#[test]
fn config_from_arbitrary_or_mutated_text_loads_or_is_located() {
    let default = include_str!("../procwatch/config/default.yaml");
    let mutated = vec((any::<usize>(), 0..3u8, hostile_bytes()), 1..6).prop_map(move |edits| {
        let mut b = default.as_bytes().to_vec();
        for (at, op, piece) in edits {
            let i = at % (b.len() + 1);
            match op {
                0 => {
                    b.splice(i..i, piece);
                }
                1 => {
                    let end = (i + piece.len().max(1)).min(b.len());
                    b.drain(i..end);
                }
                _ => {
                    let end = (i + piece.len()).min(b.len());
                    b.splice(i..end, piece);
                }
            }
        }
        String::from_utf8_lossy(&b).into_owned()
    });
    let strategy = prop_oneof![
        3 => mutated,
        1 => hostile_string(),
    ];
    check(
        "config, arbitrary and mutated text",
        2000,
        strategy,
        |text| config_loads_or_is_located(&text),
    );
}
