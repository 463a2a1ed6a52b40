//! Turning kernel monotonic timestamps into wall-clock time.
use std::sync::OnceLock;

use chrono::{DateTime, SecondsFormat, Utc};

fn now(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer; the clocks used here always exist on Linux.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

/// Nanoseconds to add to CLOCK_MONOTONIC to get CLOCK_REALTIME, measured once.
fn offset() -> i128 {
    static OFFSET: OnceLock<i128> = OnceLock::new();
    *OFFSET.get_or_init(|| now(libc::CLOCK_REALTIME) - now(libc::CLOCK_MONOTONIC))
}

/// Current CLOCK_MONOTONIC in ns (the clock of `bpf_ktime_get_ns`).
pub fn monotonic_ns() -> u64 {
    u64::try_from(now(libc::CLOCK_MONOTONIC)).unwrap_or(0)
}

/// Wall-clock time of a kernel timestamp; `now` when the timestamp is 0 (unknown).
pub fn wall_from_ktime(ktime_ns: u64) -> DateTime<Utc> {
    if ktime_ns == 0 {
        return Utc::now();
    }
    let ns = i128::from(ktime_ns) + offset();
    DateTime::from_timestamp_nanos(i64::try_from(ns).unwrap_or(i64::MAX))
}

/// RFC 3339 with milliseconds and a `Z`.
pub fn rfc3339_ms(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ktime_maps_to_about_now() {
        let wall = wall_from_ktime(monotonic_ns());
        let drift = (Utc::now() - wall).num_milliseconds().abs();
        assert!(drift < 1000, "drift {drift} ms");
        let s = rfc3339_ms(wall);
        assert!(
            s.ends_with('Z') && s.len() == "2026-01-01T00:00:00.000Z".len(),
            "{s}"
        );
    }
}
