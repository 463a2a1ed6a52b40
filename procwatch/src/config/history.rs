//! The `history:` section: the alert history database `monitor` keeps (docs/history.md).
use std::{fmt, path::PathBuf, time::Duration};

use serde::{
    Deserialize, Deserializer, Serialize,
    de::{self, Visitor},
};

use super::values::{self, AbsPath, Interval, nullable, required};

/// Most rows `history.max_rows` may ask for. Far beyond a useful history (at a few KiB an
/// alert that is tens of GiB), and small enough that a count of rows never overflows.
pub const MAX_ROWS: u64 = 100_000_000;

/// The alert history (`history:`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct History {
    /// Record alerts in the database (`monitor`; when false, the API still has the live
    /// stream and the most recent alerts, from memory).
    pub enabled: bool,
    /// The database file; `None` means `/var/lib/procwatch/alerts.db` as root, else
    /// `~/.local/share/procwatch/alerts.db`.
    pub path: Option<PathBuf>,
    /// Alerts older than this are deleted.
    #[serde(serialize_with = "values::ser_duration")]
    pub max_age: Duration,
    /// At most this many alerts are kept; past it the oldest are deleted.
    pub max_rows: u64,
}

impl Default for History {
    fn default() -> Self {
        Self {
            enabled: true,
            path: None,
            max_age: Duration::from_secs(30 * 86_400),
            max_rows: 100_000,
        }
    }
}

/// A row count: 1 to [`MAX_ROWS`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rows(pub u64);

impl<'de> Deserialize<'de> for Rows {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Rows;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a whole number from 1 to {MAX_ROWS}")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Rows, E> {
                if (1..=MAX_ROWS).contains(&n) {
                    Ok(Rows(n))
                } else {
                    Err(E::custom(format!(
                        "must be from 1 to {MAX_ROWS}, found {n}"
                    )))
                }
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Rows, E> {
                Err(E::custom(format!(
                    "must be from 1 to {MAX_ROWS}, found {n}"
                )))
            }
        }
        d.deserialize_any(V)
    }
}

/// `history:` as one file sets it.
#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with enabled, path, max_age and max_rows"
)]
pub(crate) struct PartialHistory {
    #[serde(default, deserialize_with = "required")]
    enabled: Option<bool>,
    #[serde(default, deserialize_with = "nullable")]
    path: Option<Option<AbsPath>>,
    #[serde(default, deserialize_with = "required")]
    max_age: Option<Interval>,
    #[serde(default, deserialize_with = "required")]
    max_rows: Option<Rows>,
}

impl PartialHistory {
    /// Writes the keys this layer sets into `c` and records their dotted paths.
    pub(crate) fn apply(&self, c: &mut History, keys: &mut Vec<&'static str>) {
        if let Some(v) = self.enabled {
            c.enabled = v;
            keys.push("history.enabled");
        }
        if let Some(v) = &self.path {
            c.path = v.as_ref().map(|p| p.0.clone());
            keys.push("history.path");
        }
        if let Some(v) = self.max_age {
            c.max_age = v.0;
            keys.push("history.max_age");
        }
        if let Some(v) = self.max_rows {
            c.max_rows = v.0;
            keys.push("history.max_rows");
        }
    }
}
