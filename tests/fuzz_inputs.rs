//! Fuzzing of what users type: duration strings (`parse_duration`), the
//! `DB_POOL_*` environment settings (`Builder::from_vars`) and the database
//! URLs handed to the PostgreSQL and MySQL adapters.
//!
//! Properties: nothing panics; every rejection is an `Error::Config` that
//! names the setting or variable, quotes the value (a URL with its password
//! masked) and says what was expected; no password ever appears in an error
//! or a `Debug` output; accepted values mean what they say (they round-trip).
//! Random inputs come from proptest (arbitrary Unicode, numbers of every
//! size and sign, unit soup, URLs with garbage in every part); a fixed list of
//! nasty cases runs too.
//!
//! Cases: 512 per property by default, `CISTERN_FUZZ_CASES` for more.

mod common;

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use cistern::{Builder, Error, parse_duration};
use common::panic_text;
use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;

/// The longest duration the settings accept (100 years of 365.25 days, as humantime counts `100y`).
const MAX_DURATION: Duration = Duration::from_secs(3_155_760_000);

fn cases() -> u32 {
    std::env::var("CISTERN_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512)
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Runs `f`, turning a panic into an error that quotes the input.
fn no_panic<T>(input: &str, f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f))
        .map_err(|p| format!("panicked on input {input:?}: {}", panic_text(&*p)))
}

// ---------------------------------------------------------------- durations

const UNITS: &[(&str, u64)] = &[
    ("ns", 1),
    ("nsec", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("ms", 1_000_000),
    ("msec", 1_000_000),
    ("s", 1_000_000_000),
    ("sec", 1_000_000_000),
    ("seconds", 1_000_000_000),
    ("m", 60_000_000_000),
    ("min", 60_000_000_000),
    ("h", 3_600_000_000_000),
    ("hours", 3_600_000_000_000),
    ("d", 86_400_000_000_000),
    ("w", 604_800_000_000_000),
];

/// Numbers as people (and scripts) write them: plain, huge, signed,
/// decimal, exponent, hex, with stray characters.
fn number_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<u64>().prop_map(|n| n.to_string()),
        any::<u128>().prop_map(|n| n.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| f.to_string()),
        (0u32..100_000, 0u32..1_000_000).prop_map(|(a, b)| format!("{a}.{b}")),
        "[-+]?[0-9]{0,30}(\\.[0-9]{0,12})?([eE][-+]?[0-9]{1,4})?",
        "0x[0-9a-fA-F]{1,8}",
        "[0-9.]{1,12}",
    ]
}

fn unit_text() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(UNITS.iter().map(|u| u.0.to_owned()).collect::<Vec<_>>()),
        prop::sample::select(
            [
                "M", "y", "years", "months", "hr", "wk", "S", "MS", "Sec", "µ", "", "secs "
            ]
            .map(str::to_owned)
            .to_vec()
        ),
        "[a-zA-Zµ]{1,8}",
    ]
}

/// Anything a duration variable might hold.
fn duration_text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => any::<String>(),
        2 => number_text(),
        3 => (number_text(), " {0,2}", unit_text()).prop_map(|(n, sp, u)| format!("{n}{sp}{u}")),
        2 => prop::collection::vec((number_text(), unit_text()), 1..5)
            .prop_map(|parts| parts
                .into_iter()
                .map(|(n, u)| format!("{n}{u}"))
                .collect::<Vec<_>>()
                .join(" ")),
        1 => prop::sample::select(
            ["off", "OFF", " none ", "None", "nOnE", "of", "nil", "null", "disabled", "0", ""]
                .map(str::to_owned)
                .to_vec()
        ),
        1 => "[ \t\n\u{a0}\u{200b}\u{3000}]{0,3}[0-9]{1,3}[ \t\n\u{a0}\u{200b}]{0,3}[smh]?",
    ]
}

fn is_off(text: &str) -> bool {
    let t = text.trim();
    t.eq_ignore_ascii_case("off") || t.eq_ignore_ascii_case("none")
}

/// What every outcome of `parse_duration(setting, text, optional)` must
/// satisfy.
fn check_duration(
    setting: &str,
    text: &str,
    optional: bool,
    result: Result<Option<Duration>, Error>,
) -> Result<(), String> {
    match result {
        Ok(None) if optional && is_off(text) => Ok(()),
        Ok(None) => Err(format!("{text:?} gave None (optional = {optional})")),
        Ok(Some(_)) if is_off(text) => Err(format!("{text:?} gave a duration")),
        Ok(Some(d)) if d > MAX_DURATION => {
            Err(format!("{text:?} accepted as {d:?}, over the limit"))
        }
        Ok(Some(d)) => {
            // Bare numbers are seconds.
            let t = text.trim();
            if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
                let want = Duration::from_secs_f64(t.parse::<f64>().map_err(|e| e.to_string())?);
                if d != want {
                    return Err(format!("{text:?} gave {d:?}, expected {want:?} (seconds)"));
                }
            }
            Ok(())
        }
        Err(e) => check_config_error(&e, setting, text, &["duration", "seconds"]),
    }
}

/// A rejection names `setting`, quotes `value` and says what is expected
/// (mentioning one of `hints`).
fn check_config_error(e: &Error, setting: &str, value: &str, hints: &[&str]) -> Result<(), String> {
    let Error::Config {
        setting: s,
        value: v,
        expected,
    } = e
    else {
        return Err(format!("expected a config error for {value:?}, got: {e}"));
    };
    let msg = e.to_string();
    if s != setting {
        return Err(format!("error names {s:?}, expected {setting:?}: {msg}"));
    }
    if v != value {
        return Err(format!(
            "error quotes {v:?}, the input was {value:?}: {msg}"
        ));
    }
    if !msg.contains(setting) || !msg.contains(&format!("{value:?}")) {
        return Err(format!(
            "message does not show the setting and the value: {msg}"
        ));
    }
    if !hints.iter().any(|h| expected.contains(h)) {
        return Err(format!(
            "message does not say what is expected ({hints:?}): {msg}"
        ));
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn parse_duration_never_panics_and_explains_every_rejection(
        text in duration_text(),
        optional in any::<bool>(),
    ) {
        let result = no_panic(&text, || parse_duration("DB_POOL_TIMEOUT", &text, optional))
            .map_err(TestCaseError::fail)?;
        check_duration("DB_POOL_TIMEOUT", &text, optional, result).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn a_number_with_a_unit_means_that_many_units(
        n in prop_oneof![0u64..10_000, any::<u64>()],
        unit in 0..UNITS.len(),
        space in prop::bool::ANY,
    ) {
        let (name, nanos) = UNITS[unit];
        let text = format!("{n}{}{name}", if space { " " } else { "" });
        let result = no_panic(&text, || parse_duration("X", &text, false))
            .map_err(TestCaseError::fail)?;
        let want = u128::from(n) * u128::from(nanos);
        check_duration("X", &text, false, result.clone()).map_err(TestCaseError::fail)?;
        match result {
            Ok(Some(d)) => prop_assert_eq!(d.as_nanos(), want, "{}", text),
            Ok(None) => prop_assert!(false, "{:?} gave None", text),
            Err(e) => {
                prop_assert!(
                    want > MAX_DURATION.as_nanos(),
                    "{:?} ({} ns, within the limit) was rejected: {}", text, want, e
                );
            }
        }
    }

    #[test]
    fn accepted_durations_round_trip(nanos in 0..=MAX_DURATION.as_nanos() as u64) {
        let d = Duration::from_nanos(nanos);
        for text in [
            format!("{}s {}ns", d.as_secs(), d.subsec_nanos()),
            format!("{}ms", d.as_millis()),
            d.as_secs().to_string(),
        ] {
            let back = parse_duration("X", &text, false)
                .map_err(|e| TestCaseError::fail(format!("{text:?} rejected: {e}")))?
                .expect("a duration, not off");
            let want = if text.ends_with("ms") {
                Duration::from_millis(d.as_millis() as u64)
            } else if text.ends_with("ns") {
                d
            } else {
                Duration::from_secs(d.as_secs())
            };
            prop_assert_eq!(back, want, "{}", text);
        }
    }
}

#[test]
fn nasty_duration_strings_are_rejected_or_read_exactly() {
    let accepted: &[(&str, Duration)] = &[
        ("0", Duration::ZERO),
        (" 30 ", Duration::from_secs(30)),
        ("0.5", Duration::from_millis(500)),
        (".5", Duration::from_millis(500)),
        ("1.", Duration::from_secs(1)),
        ("1h 30m", Duration::from_secs(5400)),
        ("1h30m", Duration::from_secs(5400)),
        ("500ms", Duration::from_millis(500)),
        ("1ns", Duration::from_nanos(1)),
        ("3155760000", MAX_DURATION),
        ("100y", MAX_DURATION),
        ("3155760000s", MAX_DURATION),
        ("0.000000001", Duration::from_nanos(1)),
    ];
    for (text, want) in accepted {
        let got = no_panic(text, || parse_duration("X", text, false)).unwrap();
        assert_eq!(got.ok().flatten(), Some(*want), "{text:?}");
    }
    let rejected = [
        "",
        " ",
        "soon",
        "-1",
        "-5s",
        "+5",
        "NaN",
        "nan",
        "inf",
        "-inf",
        "infinity",
        "1e3",
        "1e309",
        "0x10",
        "..",
        ".",
        "1..2",
        "1.2.3",
        "5 s x",
        "5 parsecs",
        "１０s",
        "10s\0",
        "\u{200b}10s",
        "10 s;rm -rf /",
        "18446744073709551616",
        "18446744073709551616s",
        "340282366920938463463374607431768211456",
        "99999999999999999999999999999999999999999999999999",
        "5000000000000000000000000s",
        "1000000000y",
        "3155760001",
        "3155760001s",
        "101y",
        "18446744073709551615s 1000ms",
        "18446744073709551615s 500ms 500ms",
        "18446744073709551615s 999999999ns 1ns",
        "584542046091y",
        "9223372036854775807w",
    ];
    let mut failures = Vec::new();
    for text in rejected {
        match no_panic(text, || parse_duration("DB_POOL_TIMEOUT", text, false)) {
            Err(panic) => failures.push(panic),
            Ok(Ok(d)) => failures.push(format!("{text:?} was accepted as {d:?}")),
            Ok(Err(e)) => {
                if let Err(why) =
                    check_config_error(&e, "DB_POOL_TIMEOUT", text, &["duration", "seconds"])
                {
                    failures.push(why);
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // off/none: only where a setting can be disabled.
    for text in ["off", "OFF", " none ", "None"] {
        assert_eq!(parse_duration("X", text, true).unwrap(), None, "{text:?}");
        let e = parse_duration("X", text, false).unwrap_err();
        check_config_error(&e, "X", text, &["duration"]).unwrap();
    }
}

// ------------------------------------------------------- environment settings

const COUNTS: [&str; 3] = ["POOL_SIZE", "MAX_OVERFLOW", "POOL_MIN_IDLE"];
const DURATIONS: [&str; 4] = [
    "POOL_TIMEOUT",
    "POOL_RECYCLE",
    "POOL_IDLE_TIMEOUT",
    "POOL_LEAK_THRESHOLD",
];
const SUFFIXES: [&str; 8] = [
    "POOL_SIZE",
    "MAX_OVERFLOW",
    "POOL_MIN_IDLE",
    "POOL_TIMEOUT",
    "POOL_RECYCLE",
    "POOL_IDLE_TIMEOUT",
    "POOL_LEAK_THRESHOLD",
    "POOL_PRE_PING",
];

fn count_text() -> impl Strategy<Value = String> {
    prop_oneof![
        (0usize..30).prop_map(|n| n.to_string()),
        number_text(),
        " ?[0-9]{1,3} ?",
        "0[0-9]{1,3}",
        any::<String>(),
    ]
}

fn bool_text() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(
            [
                "true", "false", "1", "0", "yes", "no", "on", "off", " TRUE ", "Yes", "y", "n",
                "2", "truee", ""
            ]
            .map(str::to_owned)
            .to_vec()
        ),
        any::<String>(),
    ]
}

/// A value for the variable with `suffix`: mostly of the right shape, often
/// not.
fn value_for(suffix: &'static str) -> BoxedStrategy<String> {
    if COUNTS.contains(&suffix) {
        prop_oneof![3 => count_text(), 1 => duration_text()].boxed()
    } else if DURATIONS.contains(&suffix) {
        prop_oneof![3 => duration_text(), 1 => count_text()].boxed()
    } else {
        prop_oneof![3 => bool_text(), 1 => duration_text()].boxed()
    }
}

fn env_vars() -> impl Strategy<Value = (String, Vec<(&'static str, String)>)> {
    let prefix = prop::sample::select(vec!["DB_", "ORDERS_DB_", "", "x-", "DB_\u{e9}_"]);
    let vars = SUFFIXES
        .iter()
        .map(|s| prop::option::weighted(0.6, value_for(s)).prop_map(move |v| (*s, v)))
        .collect::<Vec<_>>();
    (prefix, vars).prop_map(|(prefix, vars)| {
        let set = vars
            .into_iter()
            .filter_map(|(s, v)| v.map(|v| (s, v)))
            .collect();
        (prefix.to_owned(), set)
    })
}

fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// What every outcome of `from_vars` must satisfy, given the variables set.
fn check_env(prefix: &str, set: &[(&str, String)]) -> Result<(), String> {
    let map: HashMap<String, String> = set
        .iter()
        .map(|(s, v)| (format!("{prefix}{s}"), v.clone()))
        .collect();
    let asked = std::sync::Mutex::new(Vec::new());
    let lookup = |name: &str| -> Result<Option<String>, Error> {
        asked.lock().unwrap().push(name.to_owned());
        Ok(map.get(name).cloned())
    };
    let described = format!("{prefix:?} {set:?}");
    let result = no_panic(&described, || Builder::<()>::from_vars(prefix, lookup))?;
    for name in asked.lock().unwrap().iter() {
        let known = SUFFIXES.iter().any(|s| *name == format!("{prefix}{s}"));
        if !known {
            return Err(format!("read an undocumented variable {name:?}"));
        }
    }
    // Blank values count as unset.
    let given = |suffix: &str| -> Option<&str> {
        set.iter()
            .find(|(s, v)| *s == suffix && !v.trim().is_empty())
            .map(|(_, v)| v.as_str())
    };
    match result {
        Ok(builder) => {
            let c = builder
                .validate()
                .map_err(|e| format!("from_vars accepted {described} but validate() says: {e}"))?;
            let count = |s: &str, actual: usize| -> Result<(), String> {
                match given(s) {
                    Some(v) if v.trim().parse::<usize>().ok() != Some(actual) => {
                        Err(format!("{prefix}{s}={v:?} became {actual}"))
                    }
                    _ => Ok(()),
                }
            };
            count("POOL_SIZE", c.pool_size)?;
            count("MAX_OVERFLOW", c.max_overflow)?;
            count("POOL_MIN_IDLE", c.min_idle)?;
            let duration =
                |s: &str, optional: bool, actual: Option<Duration>| -> Result<(), String> {
                    if let Some(v) = given(s) {
                        let want = parse_duration("X", v, optional)
                            .map_err(|e| format!("{prefix}{s}={v:?} accepted though: {e}"))?;
                        if want != actual {
                            return Err(format!(
                                "{prefix}{s}={v:?} became {actual:?}, expected {want:?}"
                            ));
                        }
                    }
                    Ok(())
                };
            duration("POOL_TIMEOUT", false, Some(c.checkout_timeout))?;
            duration("POOL_RECYCLE", true, c.recycle_after)?;
            duration("POOL_IDLE_TIMEOUT", true, c.idle_timeout)?;
            duration("POOL_LEAK_THRESHOLD", true, c.leak_threshold)?;
            if let Some(v) = given("POOL_PRE_PING") {
                if parse_bool(v) != Some(c.pre_ping) {
                    return Err(format!("{prefix}POOL_PRE_PING={v:?} became {}", c.pre_ping));
                }
            }
            Ok(())
        }
        Err(e) => {
            let Error::Config {
                setting,
                value,
                expected,
            } = &e
            else {
                return Err(format!("{described}: not a config error: {e}"));
            };
            let msg = e.to_string();
            if expected.trim().is_empty() || !msg.contains(setting.as_str()) {
                return Err(format!("{described}: unclear message: {msg}"));
            }
            // The variables the message names, each with the text it holds.
            let named: Vec<(&str, &str)> = SUFFIXES
                .iter()
                .filter(|s| {
                    let var = format!("{prefix}{s}");
                    setting.split([' ', '(', ')']).any(|word| word == var)
                })
                .filter_map(|s| given(s).map(|v| (*s, v)))
                .collect();
            if named.is_empty() {
                return Err(format!(
                    "{described}: the error names no variable that was set: {msg}"
                ));
            }
            for (s, v) in &named {
                if !value.contains(*v) {
                    return Err(format!(
                        "{described}: the error does not quote {prefix}{s}={v:?}: {msg}"
                    ));
                }
            }
            Ok(())
        }
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn env_settings_never_panic_and_name_the_bad_variable((prefix, set) in env_vars()) {
        check_env(&prefix, &set).map_err(TestCaseError::fail)?;
    }
}

#[test]
fn nasty_env_values_are_rejected_with_their_variable_and_value() {
    let cases: &[(&str, &str)] = &[
        ("POOL_SIZE", "-1"),
        ("POOL_SIZE", "1e3"),
        ("POOL_SIZE", "99999999999999999999999"),
        ("POOL_SIZE", "4294967296"),
        ("POOL_SIZE", "１０"),
        ("POOL_SIZE", "10 connections"),
        ("POOL_SIZE", "NaN"),
        ("MAX_OVERFLOW", "0x10"),
        ("POOL_MIN_IDLE", "011"),
        ("POOL_MIN_IDLE", "11"),
        ("POOL_TIMEOUT", "forever"),
        ("POOL_TIMEOUT", "off"),
        ("POOL_TIMEOUT", "-30s"),
        ("POOL_RECYCLE", "0ms"),
        ("POOL_RECYCLE", "1e400"),
        ("POOL_IDLE_TIMEOUT", "0"),
        ("POOL_IDLE_TIMEOUT", "0.0000000001"),
        ("POOL_LEAK_THRESHOLD", "0s 0ms"),
        ("POOL_LEAK_THRESHOLD", "18446744073709551615s 1000ms"),
        ("POOL_PRE_PING", "maybe"),
        ("POOL_PRE_PING", "\u{0}"),
    ];
    let mut failures = Vec::new();
    for (suffix, value) in cases {
        let set = vec![(*suffix, value.to_string())];
        match no_panic(value, || {
            Builder::<()>::from_vars("DB_", |name| {
                Ok((name == format!("DB_{suffix}")).then(|| value.to_string()))
            })
        }) {
            Err(panic) => failures.push(panic),
            Ok(Ok(_)) => failures.push(format!("DB_{suffix}={value:?} was accepted")),
            Ok(Err(_)) => {
                if let Err(why) = check_env("DB_", &set) {
                    failures.push(why);
                }
            }
        }
    }
    // Both sizes zero: the message names both variables.
    let both = vec![
        ("POOL_SIZE", "0".to_owned()),
        ("MAX_OVERFLOW", "0".to_owned()),
    ];
    if let Err(why) = check_env("DB_", &both) {
        failures.push(why);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_failing_lookup_is_passed_through() {
    let e = Builder::<()>::from_vars("DB_", |name| {
        if name == "DB_POOL_TIMEOUT" {
            Err(Error::Config {
                setting: name.to_owned(),
                value: "\u{fffd}".to_owned(),
                expected: "valid UTF-8 text".to_owned(),
            })
        } else {
            Ok(None)
        }
    })
    .unwrap_err();
    assert!(e.to_string().contains("DB_POOL_TIMEOUT"), "{e}");
    assert!(e.to_string().contains("UTF-8"), "{e}");
}

// ---------------------------------------------------------------- URLs

/// Pieces of database URLs, shared by the adapters' fuzz tests.
#[cfg(any(feature = "postgres", feature = "mysql"))]
mod url_parts {
    use super::*;

    /// A password no other part of a generated URL can contain by chance.
    pub fn password() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9]{6,14}".prop_map(|s| format!("Sekret{s}"))
    }

    pub fn user() -> impl Strategy<Value = String> {
        prop_oneof![4 => "[a-z][a-z0-9_.]{0,10}", 1 => "[a-zA-Z0-9_.~%!$&'()*+,;=-]{1,10}"]
    }

    /// Hosts, including garbage (but never characters that end the authority
    /// part of a URL, which would move the password out of it).
    pub fn host() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => prop::sample::select(
                ["127.0.0.1", "localhost", "[::1]", "db", "%2Fvar%2Frun%2Fpostgresql", "", "[::1", "256.256.256.256"]
                    .map(str::to_owned)
                    .to_vec()
            ),
            2 => "[a-z0-9.-]{1,20}",
            1 => "[^/?#@:\\[\\] ]{0,12}",
        ]
    }

    pub fn port() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => Just(String::new()),
            3 => (0u32..70_000).prop_map(|p| format!(":{p}")),
            1 => "[0-9]{5,25}".prop_map(|p| format!(":{p}")),
            1 => "[^/?#@]{0,6}".prop_map(|p| format!(":{p}")),
            1 => Just(":".to_owned()),
        ]
    }

    pub fn path() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => "[a-z_]{0,10}".prop_map(|d| format!("/{d}")),
            1 => Just(String::new()),
            1 => "[^?#]{0,12}".prop_map(|d| format!("/{d}")),
        ]
    }

    /// Query parameters: known option names with good and bad values, and junk.
    pub fn query(keys: &'static [&'static str]) -> impl Strategy<Value = String> {
        let key = prop_oneof![
            3 => prop::sample::select(keys.to_vec()).prop_map(str::to_owned),
            1 => "[a-z_]{1,10}",
        ];
        let value = prop_oneof!["[a-z0-9]{0,8}", "[0-9]{1,25}", "[^&#=]{0,10}"];
        prop::collection::vec((key, value), 0..4).prop_map(|kv| {
            if kv.is_empty() {
                String::new()
            } else {
                let joined: Vec<String> = kv.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("?{}", joined.join("&"))
            }
        })
    }

    /// A URL with its user and password in place, the rest random.
    pub fn url(
        schemes: &'static [&'static str],
        keys: &'static [&'static str],
    ) -> impl Strategy<Value = Url> {
        (
            prop::sample::select(schemes.to_vec()),
            user(),
            password(),
            host(),
            port(),
            path(),
            query(keys),
        )
            .prop_map(|(scheme, user, password, host, port, path, query)| Url {
                text: format!("{scheme}://{user}:{password}@{host}{port}{path}{query}"),
                user,
                password,
            })
    }

    #[derive(Debug, Clone)]
    pub struct Url {
        pub text: String,
        pub user: String,
        pub password: String,
    }

    /// What every outcome of parsing a generated URL with `new` must
    /// satisfy: no panic; accepted, a `Debug` output without the password
    /// and the settings `read_back` checks; rejected, a clear error without
    /// the password.
    pub fn check_url<M: std::fmt::Debug>(
        url: &Url,
        setting: &str,
        new: impl FnOnce(&str) -> Result<M, Error>,
        read_back: impl FnOnce(&M) -> Result<(), String>,
    ) -> Result<(), String> {
        let text = &url.text;
        match no_panic(text, || new(text))? {
            Ok(m) => {
                let debug = format!("{m:?}");
                if debug.contains(&url.password) {
                    return Err(format!("{text:?}: Debug shows the password: {debug}"));
                }
                read_back(&m)
            }
            Err(e) => check_url_error(&e, setting, text, Some(&url.password)),
        }
    }

    /// Arbitrary text given to `new`: no panic, and a rejection is a clear
    /// error.
    pub fn check_text<M>(
        text: &str,
        setting: &str,
        new: impl FnOnce(&str) -> Result<M, Error>,
    ) -> Result<(), String> {
        match no_panic(text, || new(text))? {
            Ok(_) => Ok(()),
            Err(e) => check_url_error(&e, setting, text, None),
        }
    }

    /// Parses each of `nasty` (whose passwords start with "Sekret") with
    /// `new`; returns every panic, every password shown in a `Debug` output
    /// or an error, and every unclear error.
    pub fn nasty_failures<M: std::fmt::Debug>(
        nasty: &[&str],
        setting: &str,
        new: impl Fn(&str) -> Result<M, Error>,
    ) -> Vec<String> {
        let mut failures = Vec::new();
        for &text in nasty {
            match no_panic(text, || new(text)) {
                Err(panic) => failures.push(panic),
                Ok(Ok(m)) => {
                    let debug = format!("{m:?}");
                    if debug.contains("Sekret") {
                        failures.push(format!("{text:?}: Debug shows the password: {debug}"));
                    }
                }
                Ok(Err(e)) => {
                    let shown = format!("{e}\n{e:?}");
                    if shown.contains("Sekret") {
                        failures.push(format!("{text:?}: the error shows the password: {shown}"));
                    }
                    if let Err(why) = check_url_error(&e, setting, text, None) {
                        failures.push(why);
                    }
                }
            }
        }
        failures
    }

    /// A rejected URL: a config error naming `setting` that shows the URL with
    /// its password masked and never the password.
    pub fn check_url_error(
        e: &Error,
        setting: &str,
        url: &str,
        password: Option<&str>,
    ) -> Result<(), String> {
        let Error::Config {
            setting: s,
            value,
            expected,
        } = e
        else {
            return Err(format!("{url:?}: not a config error: {e}"));
        };
        let shown = format!("{e}\n{e:?}");
        if let Some(p) = password {
            if shown.contains(p) {
                return Err(format!("{url:?}: the error shows the password: {shown}"));
            }
            if !value.contains("***") {
                return Err(format!(
                    "{url:?}: the error does not show the masked URL: {e}"
                ));
            }
        }
        if s != setting || expected.trim().is_empty() || !e.to_string().contains(setting) {
            return Err(format!("{url:?}: unclear error: {e}"));
        }
        Ok(())
    }
}

#[cfg(feature = "postgres")]
mod postgres_urls {
    use super::url_parts::*;
    use super::*;
    use cistern::postgres::PostgresManager;

    const SCHEMES: &[&str] = &[
        "postgres",
        "postgresql",
        "POSTGRES",
        "postgre",
        "mysql",
        "http",
    ];
    const KEYS: &[&str] = &[
        "sslmode",
        "connect_timeout",
        "port",
        "host",
        "hostaddr",
        "dbname",
        "user",
        "application_name",
        "keepalives",
        "keepalives_idle",
        "target_session_attrs",
        "channel_binding",
        "load_balance_hosts",
        "options",
    ];
    const SETTING: &str = "postgres connection string";

    fn check(url: &Url) -> Result<(), String> {
        let text = &url.text;
        check_url(url, SETTING, PostgresManager::new, |m| {
            let c = m.config();
            if c.get_password() != Some(url.password.as_bytes()) {
                return Err(format!("{text:?}: password read as {:?}", c.get_password()));
            }
            if c.get_user().is_none() {
                return Err(format!("{text:?}: user {:?} lost", url.user));
            }
            Ok(())
        })
    }

    /// `host=... password=...` strings, quoted and not.
    fn key_value() -> impl Strategy<Value = Url> {
        (user(), password(), host(), any::<bool>(), "[^']{0,12}").prop_map(
            |(user, password, host, quoted, junk)| {
                let pw = if quoted {
                    format!("'{password}'")
                } else {
                    password.clone()
                };
                Url {
                    text: format!("host={host} user={user} password={pw} {junk}"),
                    user,
                    password,
                }
            },
        )
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn postgres_urls_never_panic_nor_show_the_password(u in url(SCHEMES, KEYS)) {
            check(&u).map_err(TestCaseError::fail)?;
        }

        #[test]
        fn postgres_key_value_strings_never_panic_nor_show_the_password(u in key_value()) {
            let text = &u.text;
            match no_panic(text, || PostgresManager::new(text)).map_err(TestCaseError::fail)? {
                Ok(m) => prop_assert!(!format!("{m:?}").contains(&u.password), "{:?}", m),
                Err(e) => {
                    let shown = format!("{e}\n{e:?}");
                    prop_assert!(!shown.contains(&u.password), "password shown: {}", shown);
                    prop_assert!(e.to_string().contains(SETTING), "{}", e);
                }
            }
        }

        #[test]
        fn postgres_arbitrary_text_never_panics(text in any::<String>()) {
            check_text(&text, SETTING, PostgresManager::new).map_err(TestCaseError::fail)?;
        }
    }

    #[test]
    fn nasty_postgres_strings() {
        let nasty = [
            "",
            " ",
            "postgres://",
            "postgres:///",
            "postgres://@",
            "postgres://:@",
            "postgres://u:Sekret1@",
            "postgres://u:Sekret1@:5432",
            "postgres://u:Sekret1@h:99999999999999999999/db",
            "postgres://u:Sekret1@h:-1/db",
            "postgres://u:Sekret1@h:port/db",
            "postgres://u:Sekret1@[::1/db",
            "postgres://u:Sekret1@h/db?sslmode=bogus",
            "postgres://u:Sekret1@h/db?connect_timeout=-5",
            "postgres://u:Sekret1@h/db?connect_timeout=99999999999999999999999",
            "postgres://u:Sekret1@h/db?keepalives_idle=NaN",
            "postgres://u:Sekret1@h/db?%zz=1",
            "postgres://u:Sekret1%zz@h/db",
            "postgres://u:Sekret1@h/db?password=Sekret2",
            "postgres://u:Sekret1@h,,,/db",
            "postgres://u:Sekret1@h/db#frag",
            "postgres://u:Sekret1@\u{1F600}/db",
            "host=h password='Sekret1",
            "host=h password=Sekret1 port=notaport",
            "host=h password=Sekret1 sslmode=bogus",
            "password=Sekret1",
            "=",
            "'",
            "\\",
            "\u{0}",
        ];
        let failures = nasty_failures(&nasty, SETTING, PostgresManager::new);
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }
}

#[cfg(feature = "mysql")]
mod mysql_urls {
    use super::url_parts::*;
    use super::*;
    use cistern::mysql::MysqlManager;

    const SCHEMES: &[&str] = &["mysql", "MYSQL", "mariadb", "postgres", "mysqlx"];
    const KEYS: &[&str] = &[
        "prefer_socket",
        "tcp_keepalive_time_ms",
        "tcp_connect_timeout_ms",
        "stmt_cache_size",
        "compress",
        "socket",
        "require_ssl",
        "verify_ca",
        "max_allowed_packet",
        "wait_timeout",
        "reset_connection",
        "pool_min",
        "pool_max",
    ];
    const SETTING: &str = "mysql url";

    fn check(url: &Url) -> Result<(), String> {
        let text = &url.text;
        check_url(url, SETTING, MysqlManager::new, |m| {
            if m.opts().get_pass() != Some(url.password.as_str()) {
                return Err(format!(
                    "{text:?}: password read as {:?}",
                    m.opts().get_pass()
                ));
            }
            Ok(())
        })
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn mysql_urls_never_panic_nor_show_the_password(u in url(SCHEMES, KEYS)) {
            check(&u).map_err(TestCaseError::fail)?;
        }

        #[test]
        fn mysql_arbitrary_text_never_panics(text in any::<String>()) {
            check_text(&text, SETTING, MysqlManager::new).map_err(TestCaseError::fail)?;
        }
    }

    #[test]
    fn nasty_mysql_urls() {
        let nasty = [
            "",
            "mysql://",
            "mysql:///",
            "mysql://@",
            "mysql://u:Sekret1@",
            "mysql://u:Sekret1@h:99999999999999999999/db",
            "mysql://u:Sekret1@h:-1/db",
            "mysql://u:Sekret1@h:port/db",
            "mysql://u:Sekret1@[::1/db",
            "mysql://u:Sekret1@h/db?prefer_socket=maybe",
            "mysql://u:Sekret1@h/db?tcp_connect_timeout_ms=-5",
            "mysql://u:Sekret1@h/db?stmt_cache_size=99999999999999999999999",
            "mysql://u:Sekret1@h/db?unknown_option=1",
            "mysql://u:Sekret1%zz@h/db",
            "mysql://u:Sekret1@h/db?password=Sekret2",
            "mysql://u:Sekret1@h/db/extra",
            "mysql://u:Sekret1@\u{1F600}/db",
            "mysql://u:Sekret1@h/db?socket=%00",
            "\u{0}",
        ];
        let failures = nasty_failures(&nasty, SETTING, MysqlManager::new);
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }
}
