//! The accepted range of every numeric setting, in one place, so the command line (`cli`) and
//! the config file (`config`) refuse the same values in the same words.
//!
//! Out-of-range values are refused, never clamped: `1e30` seconds or a weight of `1e300` is a
//! slip of the keyboard, and taken as given it would end in a panic (`Duration` arithmetic),
//! an infinite score (which JSON cannot carry) or a sweep loop that takes a whole CPU.
use std::time::Duration;

/// Longest duration anywhere (interval, window, grace, learning period, `--duration`): 10
/// years. Far beyond any sensible setting, and small enough that adding it to any clock
/// reading cannot overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(10 * 365 * 86_400);
/// [`MAX_DURATION`] as written in messages and docs.
pub const MAX_DURATION_TEXT: &str = "3650d (10 years)";
/// Shortest period between two /proc sweeps or CPU samples: a sweep reads every process, and
/// more often than this it would take a whole CPU.
pub const MIN_PERIOD: Duration = Duration::from_millis(100);
/// [`MIN_PERIOD`] as written in messages and docs.
pub const MIN_PERIOD_TEXT: &str = "100ms";
/// Largest score, weight, threshold or CPU percentage. Nine weights and `ml_weight` at this
/// value still add up to a finite score.
pub const MAX_NUMBER: f64 = 1_000_000.0;
/// Linux's `PID_MAX_LIMIT`: no pid is larger, whatever `kernel.pid_max` says. A larger
/// number would also turn negative as a `pid_t`, where kill(2) means a process group.
pub const PID_MAX: u32 = 4_194_304;
/// Most processes the table may be told to track (4 × [`PID_MAX`]: exited entries linger).
pub const MAX_PROCESSES: usize = 1 << 24;
/// Smallest ring buffer, in KiB: one page.
pub const RING_KIB_MIN: u32 = 4;
/// Largest ring buffer, in KiB: 1 GiB.
pub const RING_KIB_MAX: u32 = 1 << 20;
/// Smallest `dump.max_total_bytes`: a dump directory smaller than 1 MiB cannot hold even the
/// dump of a process without its executable (maps, environ, fds, status).
pub const MIN_DUMP_TOTAL_BYTES: u64 = 1 << 20;

/// Whether zero is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Floor {
    /// Zero or more.
    Zero,
    /// Strictly more than zero.
    AboveZero,
}

/// A finite number of seconds from 0 to [`MAX_DURATION`] as a `Duration`.
pub fn seconds(secs: f64) -> Result<Duration, String> {
    if !secs.is_finite() {
        return Err(format!("{secs} is not a finite number of seconds"));
    }
    if secs < 0.0 {
        return Err(format!("must not be negative, found {secs}"));
    }
    if secs > MAX_DURATION.as_secs_f64() {
        return Err(too_long(&format!("{} seconds", show(secs))));
    }
    // In range, so this cannot fail; the error arm only avoids a panic path.
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{secs} seconds: {e}"))
}

/// The message for a duration over [`MAX_DURATION`]; `found` is how it was written.
pub fn too_long(found: &str) -> String {
    format!("must be at most {MAX_DURATION_TEXT}, found {found}")
}

/// Checks a duration against `floor` (and [`MIN_PERIOD`] when `period`) and [`MAX_DURATION`].
pub fn duration(d: Duration, floor: Floor, period: bool) -> Result<Duration, String> {
    if d > MAX_DURATION {
        return Err(too_long(&format!("{} seconds", d.as_secs_f64())));
    }
    if floor == Floor::AboveZero && d.is_zero() {
        return Err("must be greater than 0".into());
    }
    if period && d < MIN_PERIOD {
        return Err(format!(
            "must be at least {MIN_PERIOD_TEXT}, found {} seconds",
            d.as_secs_f64()
        ));
    }
    Ok(d)
}

/// `x` as a person wrote it: `1e30` rather than thirty-one digits.
fn show(x: f64) -> String {
    if x.abs() >= 1e15 {
        format!("{x:e}")
    } else {
        format!("{x}")
    }
}

/// A finite number from 0 (or above 0) to [`MAX_NUMBER`].
pub fn number(x: f64, floor: Floor) -> Result<f64, String> {
    if !x.is_finite() {
        return Err(format!("{x} is not a finite number"));
    }
    match floor {
        Floor::AboveZero if x <= 0.0 => Err(format!("must be greater than 0, found {x}")),
        Floor::Zero if x < 0.0 => Err(format!("must not be negative, found {x}")),
        _ if x > MAX_NUMBER => Err(format!("must be at most 1000000, found {}", show(x))),
        _ => Ok(x),
    }
}

/// A ring buffer size in KiB: a power of two from [`RING_KIB_MIN`] to [`RING_KIB_MAX`].
pub fn ring_kib(n: u64) -> Result<u32, String> {
    match u32::try_from(n) {
        Ok(k) if k.is_power_of_two() && (RING_KIB_MIN..=RING_KIB_MAX).contains(&k) => Ok(k),
        _ => Err(format!(
            "must be a power of two from {RING_KIB_MIN} to {RING_KIB_MAX} (KiB), found {n}"
        )),
    }
}

/// A process id: 1 to [`PID_MAX`].
pub fn pid(n: u64) -> Result<u32, String> {
    match u32::try_from(n) {
        Ok(p) if (1..=PID_MAX).contains(&p) => Ok(p),
        _ => Err(format!("pid must be from 1 to {PID_MAX}, found {n}")),
    }
}

/// A count of 1 or more.
pub fn count(n: u64) -> Result<u64, String> {
    if n == 0 {
        return Err("must be 1 or more, found 0".into());
    }
    Ok(n)
}

/// A `max_processes` value: 1 to [`MAX_PROCESSES`].
pub fn max_processes(n: u64) -> Result<usize, String> {
    match usize::try_from(n) {
        Ok(0) => Err("must be 1 or more, found 0".into()),
        Ok(m) if m <= MAX_PROCESSES => Ok(m),
        _ => Err(format!("must be at most {MAX_PROCESSES}, found {n}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_refuses_non_finite_negative_and_huge() {
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -1.0, 1e30, 1e10] {
            assert!(seconds(bad).is_err(), "{bad} accepted");
        }
        assert_eq!(seconds(0.5), Ok(Duration::from_millis(500)));
        assert_eq!(seconds(MAX_DURATION.as_secs_f64()), Ok(MAX_DURATION));
        assert_eq!(seconds(-0.0), Ok(Duration::ZERO));
    }

    #[test]
    fn durations_respect_floor_period_and_cap() {
        assert!(duration(Duration::ZERO, Floor::AboveZero, false).is_err());
        assert!(duration(Duration::ZERO, Floor::Zero, false).is_ok());
        let short = duration(Duration::from_millis(99), Floor::AboveZero, true);
        assert!(short.is_err_and(|e| e.contains("at least 100ms")));
        assert!(duration(MIN_PERIOD, Floor::AboveZero, true).is_ok());
        let long = duration(MAX_DURATION + Duration::from_secs(1), Floor::Zero, false);
        assert!(long.is_err_and(|e| e.contains("at most 3650d")));
    }

    #[test]
    fn numbers_refuse_non_finite_negative_zero_and_huge() {
        assert!(number(f64::NAN, Floor::Zero).is_err());
        assert!(number(f64::INFINITY, Floor::Zero).is_err());
        assert!(number(-0.5, Floor::Zero).is_err());
        assert!(number(0.0, Floor::AboveZero).is_err());
        assert!(number(1e7, Floor::Zero).is_err());
        assert_eq!(number(0.0, Floor::Zero), Ok(0.0));
        assert_eq!(number(MAX_NUMBER, Floor::AboveZero), Ok(MAX_NUMBER));
    }

    #[test]
    fn integer_kinds() {
        assert!(ring_kib(3).is_err() && ring_kib(2).is_err() && ring_kib(1 << 21).is_err());
        assert!(ring_kib(u64::MAX).is_err());
        assert_eq!(ring_kib(4096), Ok(4096));
        assert!(pid(0).is_err() && pid(u64::from(PID_MAX) + 1).is_err());
        assert!(pid(u64::from(u32::MAX)).is_err(), "would be -1 as a pid_t");
        assert_eq!(pid(1), Ok(1));
        assert!(count(0).is_err());
        assert_eq!(count(u64::MAX), Ok(u64::MAX));
        assert!(max_processes(0).is_err() && max_processes(u64::MAX).is_err());
        assert_eq!(max_processes(65536), Ok(65536));
    }
}
