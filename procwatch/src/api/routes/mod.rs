//! One module per group of endpoints; handlers read the published copies only.
pub mod alerts;
pub mod baselines;
pub mod kill;
pub mod meta;
pub mod processes;
pub mod stats;

use std::collections::HashMap;

use super::error::{ApiError, ApiResult};

/// Query parameters, checked against the names an endpoint takes (an unknown one is a 400:
/// a misspelt filter must not silently return everything).
pub struct Params(HashMap<String, String>);

impl Params {
    /// `q`, which may only hold `allowed` names.
    pub fn new(q: HashMap<String, String>, allowed: &[&str]) -> ApiResult<Self> {
        if let Some(bad) = q.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(ApiError::bad_request(format!(
                "unknown query parameter '{bad}' (this endpoint takes: {})",
                allowed.join(", ")
            )));
        }
        Ok(Self(q))
    }

    /// The text of `name`.
    pub fn str(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// `name` as a finite number of 0 or more.
    pub fn score(&self, name: &str) -> ApiResult<Option<f64>> {
        let Some(v) = self.str(name) else {
            return Ok(None);
        };
        match v.trim().parse::<f64>() {
            Ok(x) if x.is_finite() && x >= 0.0 => Ok(Some(x)),
            _ => Err(ApiError::bad_request(format!(
                "{name}={v:?} is not a number of 0 or more"
            ))),
        }
    }

    /// `name` as a whole number from `min` to `max`.
    pub fn whole(&self, name: &str, min: u64, max: u64) -> ApiResult<Option<u64>> {
        let Some(v) = self.str(name) else {
            return Ok(None);
        };
        match v.trim().parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
            _ => Err(ApiError::bad_request(format!(
                "{name}={v:?} is not a whole number from {min} to {max}"
            ))),
        }
    }
}

/// A pid from a path segment: 1 to Linux's 4194304, else 400.
pub fn pid(text: &str) -> ApiResult<u32> {
    text.parse::<u64>()
        .ok()
        .and_then(|n| crate::bounds::pid(n).ok())
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "'{}' is not a process id (a whole number from 1 to 4194304)",
                crate::text::terminal_safe(text.as_bytes())
            ))
        })
}
