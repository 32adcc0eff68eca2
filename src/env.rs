//! Settings from environment variables: [`Builder::from_env`].
//!
//! | variable | setting | format |
//! |---|---|---|
//! | `DB_POOL_SIZE` | `pool_size` | whole number |
//! | `DB_MAX_OVERFLOW` | `max_overflow` | whole number |
//! | `DB_POOL_MIN_IDLE` | `min_idle` | whole number |
//! | `DB_POOL_TIMEOUT` | `checkout_timeout` | duration |
//! | `DB_POOL_RECYCLE` | `recycle_after` | duration, or `off`/`none` |
//! | `DB_POOL_IDLE_TIMEOUT` | `idle_timeout` | duration, or `off`/`none` |
//! | `DB_POOL_LEAK_THRESHOLD` | `leak_threshold` | duration, or `off`/`none` |
//! | `DB_POOL_PRE_PING` | `pre_ping` | `true`/`false`/`1`/`0`/`yes`/`no`/`on`/`off` |
//!
//! Durations are humantime strings (`30s`, `1h 30m`, `500ms`) or a bare
//! number of seconds (`30`, `0.5`). An empty variable counts as unset.

use std::time::Duration;

use crate::config::Builder;
use crate::error::Error;

/// The longest duration accepted from text (it must fit in a deadline).
const MAX_DURATION: Duration = crate::MAX_SETTING;

/// Parses a duration as the environment settings do: humantime text or bare
/// seconds; `off`/`none` give `None` when `optional`.
///
/// ```
/// use std::time::Duration;
/// use cistern::parse_duration;
/// assert_eq!(parse_duration("X", "1h 30m", false).unwrap(), Some(Duration::from_secs(5400)));
/// assert_eq!(parse_duration("X", "2.5", false).unwrap(), Some(Duration::from_millis(2500)));
/// assert_eq!(parse_duration("X", "off", true).unwrap(), None);
/// assert!(parse_duration("X", "soon", false).is_err());
/// ```
pub fn parse_duration(
    setting: &str,
    text: &str,
    optional: bool,
) -> Result<Option<Duration>, Error> {
    let t = text.trim();
    let expected = if optional {
        "a duration such as 30s, 1h 30m, 500ms or a number of seconds, or off/none to disable"
    } else {
        "a duration such as 30s, 1h 30m, 500ms or a number of seconds"
    };
    let bad = || Error::config(setting, text, expected);
    if t.eq_ignore_ascii_case("off") || t.eq_ignore_ascii_case("none") {
        return if optional { Ok(None) } else { Err(bad()) };
    }
    let d = if t.bytes().all(|b| b.is_ascii_digit() || b == b'.') && !t.is_empty() {
        let secs: f64 = t.parse().map_err(|_| bad())?;
        if !secs.is_finite() || secs < 0.0 || secs > MAX_DURATION.as_secs_f64() {
            return Err(Error::config(
                setting,
                text,
                "a number of seconds of at most 100 years",
            ));
        }
        Duration::from_secs_f64(secs)
    } else {
        // humantime panics ("overflow in Duration::new") on sums that reach
        // u64::MAX seconds, e.g. "18446744073709551615s 1000ms": texts that
        // could come near that never reach it.
        if humantime_upper_bound(t) >= u128::from(u64::MAX) * NANOS_PER_SEC {
            return Err(Error::config(
                setting,
                text,
                "a duration of at most 100 years (it must fit in a deadline)",
            ));
        }
        humantime::parse_duration(t).map_err(|_| bad())?
    };
    if d > MAX_DURATION {
        return Err(Error::config(
            setting,
            text,
            "a duration of at most 100 years (it must fit in a deadline)",
        ));
    }
    Ok(Some(d))
}

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// An upper bound, in nanoseconds, of what humantime can read from `t`: every
/// number's integer part plus one, in its unit (in years, the largest, when
/// the unit is not one humantime knows). Fractions are covered by the "plus
/// one".
fn humantime_upper_bound(t: &str) -> u128 {
    let mut total: u128 = 0;
    let mut rest = t;
    while let Some(start) = rest.find(|c: char| c.is_ascii_digit()) {
        rest = &rest[start..];
        let end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let n = rest[..end].parse::<u128>().unwrap_or(u128::MAX);
        rest = &rest[end..];
        if let Some(fraction) = rest.strip_prefix('.') {
            rest = fraction.trim_start_matches(|c: char| c.is_ascii_digit());
        }
        rest = rest.trim_start();
        let unit_end = rest
            .find(|c: char| c.is_whitespace() || c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit: u128 = match &rest[..unit_end] {
            "nanos" | "nsec" | "ns" => 1,
            "usec" | "us" | "µs" => 1_000,
            "millis" | "msec" | "ms" => 1_000_000,
            "seconds" | "second" | "secs" | "sec" | "s" => NANOS_PER_SEC,
            "minutes" | "minute" | "min" | "mins" | "m" => 60 * NANOS_PER_SEC,
            "hours" | "hour" | "hr" | "hrs" | "h" => 3_600 * NANOS_PER_SEC,
            "days" | "day" | "d" => 86_400 * NANOS_PER_SEC,
            "weeks" | "week" | "wk" | "wks" | "w" => 604_800 * NANOS_PER_SEC,
            "months" | "month" | "M" => 2_630_016 * NANOS_PER_SEC,
            _ => 31_557_600 * NANOS_PER_SEC,
        };
        total = total.saturating_add(n.saturating_add(1).saturating_mul(unit));
        rest = &rest[unit_end..];
    }
    total
}

fn parse_count(setting: &str, text: &str) -> Result<usize, Error> {
    text.trim()
        .parse::<usize>()
        .map_err(|_| Error::config(setting, text, "a whole number such as 10"))
}

fn parse_bool(setting: &str, text: &str) -> Result<bool, Error> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(Error::config(
            setting,
            text,
            "true or false (also 1/0, yes/no, on/off)",
        )),
    }
}

impl<M> Builder<M> {
    /// A builder whose settings come from the `DB_POOL_*` environment
    /// variables (see the table in the crate's README); methods called on it
    /// afterwards override them. A bad value is an [`Error::Config`] naming
    /// the variable and quoting its value.
    ///
    /// ```
    /// # struct M;
    /// let builder: cistern::Builder<M> = cistern::Builder::from_env()?;
    /// # Ok::<(), cistern::Error>(())
    /// ```
    pub fn from_env() -> Result<Builder<M>, Error> {
        Builder::from_env_prefixed("DB_")
    }

    /// Like [`Builder::from_env`] with another prefix, for several pools in
    /// one process: `from_env_prefixed("ORDERS_DB_")` reads
    /// `ORDERS_DB_POOL_SIZE`, `ORDERS_DB_MAX_OVERFLOW`, and so on.
    pub fn from_env_prefixed(prefix: &str) -> Result<Builder<M>, Error> {
        Builder::from_vars(prefix, |name| match std::env::var_os(name) {
            None => Ok(None),
            Some(v) => v
                .into_string()
                .map(Some)
                .map_err(|raw| Error::config(name, raw.to_string_lossy(), "valid UTF-8 text")),
        })
    }

    /// Like [`Builder::from_env_prefixed`], reading variables through
    /// `lookup` instead of the process environment (tests, config files).
    pub fn from_vars(
        prefix: &str,
        lookup: impl Fn(&str) -> Result<Option<String>, Error>,
    ) -> Result<Builder<M>, Error> {
        let mut b = Builder::new();
        // Every value read, as typed: errors quote these.
        let typed = std::cell::RefCell::new(Vec::<(String, String)>::new());
        let get = |suffix: &str| -> Result<Option<(String, String)>, Error> {
            let name = format!("{prefix}{suffix}");
            let found = lookup(&name)?
                .filter(|v| !v.trim().is_empty())
                .map(|v| (name, v));
            if let Some(pair) = &found {
                typed.borrow_mut().push(pair.clone());
            }
            Ok(found)
        };
        let c = b.config_mut();
        if let Some((n, v)) = get("POOL_SIZE")? {
            c.pool_size = parse_count(&n, &v)?;
        }
        if let Some((n, v)) = get("MAX_OVERFLOW")? {
            c.max_overflow = parse_count(&n, &v)?;
        }
        if let Some((n, v)) = get("POOL_MIN_IDLE")? {
            c.min_idle = parse_count(&n, &v)?;
        }
        if let Some((n, v)) = get("POOL_TIMEOUT")? {
            c.checkout_timeout = parse_duration(&n, &v, false)?.unwrap_or(c.checkout_timeout);
        }
        if let Some((n, v)) = get("POOL_RECYCLE")? {
            c.recycle_after = parse_duration(&n, &v, true)?;
        }
        if let Some((n, v)) = get("POOL_IDLE_TIMEOUT")? {
            c.idle_timeout = parse_duration(&n, &v, true)?;
        }
        if let Some((n, v)) = get("POOL_LEAK_THRESHOLD")? {
            c.leak_threshold = parse_duration(&n, &v, true)?;
        }
        if let Some((n, v)) = get("POOL_PRE_PING")? {
            c.pre_ping = parse_bool(&n, &v)?;
        }
        // Zero durations are rejected by validate() with the setting's name;
        // report them with the variable's name and the text as typed.
        b.validate().map_err(|e| match e {
            Error::Config {
                setting,
                value,
                expected,
            } => match env_name(prefix, &setting) {
                Some(var) => Error::Config {
                    value: as_typed(&var, &value, &typed.borrow()),
                    setting: format!("{var} ({setting})"),
                    expected: expected.replace("or None to disable", "or off/none to disable"),
                },
                None => Error::Config {
                    setting,
                    value,
                    expected,
                },
            },
            other => other,
        })?;
        Ok(b)
    }
}

/// The value of `var` (or of each of `A + B`) as the user typed it; the
/// parsed `value` for a variable that was not set.
fn as_typed(var: &str, value: &str, typed: &[(String, String)]) -> String {
    let vars: Vec<&str> = var.split(" + ").collect();
    let values: Vec<&str> = value.split(" + ").collect();
    if vars.len() != values.len() {
        return value.to_owned();
    }
    vars.iter()
        .zip(values)
        .map(|(var, parsed)| {
            typed
                .iter()
                .find(|(name, _)| name == var)
                .map_or(parsed, |(_, text)| text.as_str())
        })
        .collect::<Vec<_>>()
        .join(" + ")
}

fn env_name(prefix: &str, setting: &str) -> Option<String> {
    let suffix = match setting {
        "min_idle" => "POOL_MIN_IDLE",
        "checkout_timeout" => "POOL_TIMEOUT",
        "recycle_after" => "POOL_RECYCLE",
        "idle_timeout" => "POOL_IDLE_TIMEOUT",
        "leak_threshold" => "POOL_LEAK_THRESHOLD",
        "pool_size + max_overflow" => {
            return Some(format!("{prefix}POOL_SIZE + {prefix}MAX_OVERFLOW"));
        }
        _ => return None,
    };
    Some(format!("{prefix}{suffix}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Result<Option<String>, Error> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| Ok(map.get(name).cloned())
    }

    #[test]
    fn reads_every_variable() {
        let b = Builder::<()>::from_vars(
            "DB_",
            vars(&[
                ("DB_POOL_SIZE", "4"),
                ("DB_MAX_OVERFLOW", " 6 "),
                ("DB_POOL_MIN_IDLE", "2"),
                ("DB_POOL_TIMEOUT", "1500ms"),
                ("DB_POOL_RECYCLE", "off"),
                ("DB_POOL_IDLE_TIMEOUT", "1h 30m"),
                ("DB_POOL_LEAK_THRESHOLD", "12"),
                ("DB_POOL_PRE_PING", "no"),
            ]),
        )
        .unwrap();
        let c = b.validate().unwrap();
        assert_eq!((c.pool_size, c.max_overflow, c.min_idle), (4, 6, 2));
        assert_eq!(c.checkout_timeout, Duration::from_millis(1500));
        assert_eq!(c.recycle_after, None);
        assert_eq!(c.idle_timeout, Some(Duration::from_secs(5400)));
        assert_eq!(c.leak_threshold, Some(Duration::from_secs(12)));
        assert!(!c.pre_ping);
    }

    #[test]
    fn empty_is_unset_and_methods_override() {
        let b = Builder::<()>::from_vars(
            "APP_",
            vars(&[("APP_POOL_SIZE", ""), ("APP_MAX_OVERFLOW", "3")]),
        )
        .unwrap()
        .max_overflow(7);
        let c = b.validate().unwrap();
        assert_eq!((c.pool_size, c.max_overflow), (10, 7));
    }

    #[test]
    fn bad_values_quote_variable_and_value() {
        for (var, value, want) in [
            ("DB_POOL_SIZE", "ten", "whole number"),
            ("DB_POOL_SIZE", "-1", "whole number"),
            ("DB_POOL_TIMEOUT", "soon", "duration"),
            ("DB_POOL_TIMEOUT", "off", "duration"),
            ("DB_POOL_RECYCLE", "1e400", "duration"),
            ("DB_POOL_RECYCLE", "99999999999999999999", "100 years"),
            ("DB_POOL_IDLE_TIMEOUT", "0", "greater than zero"),
            ("DB_POOL_PRE_PING", "maybe", "true or false"),
            ("DB_POOL_MIN_IDLE", "11", "at most pool_size"),
        ] {
            let e = Builder::<()>::from_vars("DB_", vars(&[(var, value)])).unwrap_err();
            let msg = e.to_string();
            assert!(msg.contains(var), "{msg}");
            assert!(msg.contains(value), "{msg}");
            assert!(msg.contains(want), "{msg}");
        }
    }

    #[test]
    fn huge_humantime_values_are_rejected() {
        assert!(parse_duration("X", "1000000000y", false).is_err());
        assert!(parse_duration("X", "5000000000000000000000000s", false).is_err());
    }
}
