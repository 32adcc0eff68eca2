//! The Prometheus exposition parses with a real parser (`prometheus-parse`)
//! and follows the format rules `promtool check metrics` enforces.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::thread;
use std::time::{Duration, Instant};

use cistern::testing::FaultManager;
use cistern::{CloseReason, Pool, Pooled, Stats, WAIT_BUCKETS, prometheus_text};
use prometheus_parse::{Scrape, Value};

/// One sample line, parsed strictly (label values unescaped).
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn valid_metric_name(n: &str) -> bool {
    let mut chars = n.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn valid_label_name(n: &str) -> bool {
    let mut chars = n.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !n.starts_with("__")
}

fn parse_value(v: &str) -> Result<f64, String> {
    match v {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => v.parse().map_err(|_| format!("bad value {v:?}")),
    }
}

/// Parses `name{label="value",...} value` following the text format's
/// escaping rules (`\\`, `\"`, `\n` in label values).
fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(['{', ' '])
        .ok_or_else(|| format!("no value in {line:?}"))?;
    let name = &line[..name_end];
    if !valid_metric_name(name) {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(after) = rest.strip_prefix('{') {
        let mut chars = after.char_indices().peekable();
        loop {
            let start = chars.peek().map(|(i, _)| *i).ok_or("unterminated labels")?;
            if after[start..].starts_with('}') {
                rest = &after[start + 1..];
                break;
            }
            let eq = after[start..].find('=').ok_or("label without '='")? + start;
            let label = &after[start..eq];
            if !valid_label_name(label) {
                return Err(format!("bad label name {label:?} in {line:?}"));
            }
            while chars.peek().is_some_and(|(i, _)| *i <= eq) {
                chars.next();
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                return Err(format!("label value not quoted in {line:?}"));
            }
            let mut value = String::new();
            loop {
                match chars.next().map(|(_, c)| c) {
                    Some('\\') => match chars.next().map(|(_, c)| c) {
                        Some('\\') => value.push('\\'),
                        Some('"') => value.push('"'),
                        Some('n') => value.push('\n'),
                        other => return Err(format!("bad escape {other:?} in {line:?}")),
                    },
                    Some('"') => break,
                    Some('\n') => return Err(format!("raw line feed in {line:?}")),
                    Some(c) => value.push(c),
                    None => return Err(format!("unterminated label value in {line:?}")),
                }
            }
            if labels.insert(label.to_owned(), value).is_some() {
                return Err(format!("label {label} twice in {line:?}"));
            }
            match chars.peek().map(|(_, c)| *c) {
                Some(',') => {
                    chars.next();
                }
                Some('}') => {}
                _ => return Err(format!("expected ',' or '}}' in {line:?}")),
            }
        }
    }
    let mut fields = rest.split(' ').filter(|f| !f.is_empty());
    let value = parse_value(fields.next().ok_or("no value")?)?;
    if let Some(ts) = fields.next() {
        ts.parse::<i64>()
            .map_err(|_| format!("bad timestamp in {line:?}"))?;
    }
    if fields.next().is_some() {
        return Err(format!("trailing fields in {line:?}"));
    }
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// The family a sample belongs to, given the declared types.
fn family_of<'a>(name: &'a str, types: &HashMap<String, String>) -> &'a str {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if matches!(
                types.get(base).map(String::as_str),
                Some("histogram" | "summary")
            ) {
                return base;
            }
        }
    }
    name
}

/// Checks the text against the exposition format rules and returns its
/// samples.
fn check_format(text: &str) -> Vec<Sample> {
    assert!(text.ends_with('\n'), "the exposition ends with a line feed");
    let mut helps = HashSet::new();
    let mut types: HashMap<String, String> = HashMap::new();
    let mut finished: HashSet<String> = HashSet::new();
    let mut current: Option<String> = None;
    let mut series = HashSet::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        assert!(!line.is_empty(), "no blank lines");
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("HELP has a text");
            assert!(!help.trim().is_empty(), "empty HELP for {name}");
            assert!(helps.insert(name.to_owned()), "HELP twice for {name}");
            assert!(!types.contains_key(name), "HELP after TYPE for {name}");
            assert!(!finished.contains(name), "HELP after samples of {name}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE has a type");
            assert!(valid_metric_name(name), "{name}");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{kind}"
            );
            assert!(helps.contains(name), "TYPE without HELP before it: {name}");
            assert!(
                types.insert(name.to_owned(), kind.to_owned()).is_none(),
                "TYPE twice for {name}"
            );
            if kind == "counter" {
                assert!(
                    name.ends_with("_total"),
                    "counter {name} must end in _total"
                );
            } else {
                assert!(
                    !name.ends_with("_total"),
                    "non-counter {name} ends in _total"
                );
            }
            if let Some(prev) = current.replace(name.to_owned()) {
                finished.insert(prev);
            }
            continue;
        }
        assert!(!line.starts_with('#'), "unexpected comment {line:?}");
        let sample = parse_sample(line).unwrap_or_else(|e| panic!("{e}"));
        let family = family_of(&sample.name, &types);
        assert!(
            types.contains_key(family),
            "sample of {family} before its TYPE line"
        );
        assert_eq!(
            current.as_deref(),
            Some(family),
            "samples of {family} are not grouped under its TYPE line"
        );
        assert!(sample.name.starts_with("cistern_"), "{}", sample.name);
        assert!(
            sample.labels.contains_key("pool"),
            "{line} has no pool label"
        );
        if types[family] == "counter" || sample.name.ends_with("_count") {
            assert!(sample.value >= 0.0 && sample.value.fract() == 0.0, "{line}");
        }
        let key = format!("{}{:?}", sample.name, sample.labels);
        assert!(series.insert(key), "duplicate series {line}");
        samples.push(sample);
    }
    check_histograms(&samples, &types);
    samples
}

/// `promtool`'s histogram rules: buckets sorted by `le`, cumulative, ending
/// at `+Inf`, with `_count` equal to the `+Inf` bucket and a `_sum`.
fn check_histograms(samples: &[Sample], types: &HashMap<String, String>) {
    for (family, kind) in types {
        if kind != "histogram" {
            continue;
        }
        let pools: HashSet<&str> = samples
            .iter()
            .filter(|s| family_of(&s.name, types) == family)
            .map(|s| s.labels["pool"].as_str())
            .collect();
        assert!(!pools.is_empty(), "histogram {family} has no samples");
        for pool in pools {
            let of = |suffix: &str| -> Vec<&Sample> {
                samples
                    .iter()
                    .filter(|s| s.name == format!("{family}{suffix}") && s.labels["pool"] == pool)
                    .collect()
            };
            let buckets = of("_bucket");
            let bounds: Vec<f64> = buckets
                .iter()
                .map(|s| parse_value(&s.labels["le"]).unwrap())
                .collect();
            assert!(
                bounds.windows(2).all(|w| w[0] < w[1]),
                "le not increasing: {bounds:?}"
            );
            assert_eq!(
                bounds.last().copied(),
                Some(f64::INFINITY),
                "last bucket is +Inf"
            );
            let counts: Vec<f64> = buckets.iter().map(|s| s.value).collect();
            assert!(
                counts.windows(2).all(|w| w[0] <= w[1]),
                "not cumulative: {counts:?}"
            );
            let count = of("_count");
            let sum = of("_sum");
            assert_eq!(count.len(), 1, "one _count for {family}{{pool={pool}}}");
            assert_eq!(sum.len(), 1, "one _sum for {family}{{pool={pool}}}");
            assert_eq!(
                count[0].value,
                *counts.last().unwrap(),
                "_count != +Inf bucket"
            );
            // Observations above the first bound make the sum positive.
            if count[0].value > counts[0] {
                assert!(
                    sum[0].value > 0.0,
                    "_sum is 0 with observations above the first bucket"
                );
            } else {
                assert!(sum[0].value >= 0.0);
            }
        }
    }
}

fn value_of(samples: &[Sample], name: &str, pool: &str, extra: Option<(&str, &str)>) -> f64 {
    let found: Vec<&Sample> = samples
        .iter()
        .filter(|s| {
            s.name == name
                && s.labels["pool"] == pool
                && extra.is_none_or(|(k, v)| s.labels.get(k).map(String::as_str) == Some(v))
        })
        .collect();
    assert_eq!(found.len(), 1, "{name} {pool} {extra:?}: {found:?}");
    found[0].value
}

fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(5));
    }
}

/// A pool with waits, timeouts, closes of several reasons and a failed
/// connect behind it.
fn busy_pool(name: &str) -> Pool<FaultManager> {
    let db = FaultManager::new();
    let pool = Pool::builder()
        .name(name)
        .pool_size(2)
        .max_overflow(1)
        .ping_bypass(Duration::ZERO)
        .backoff_initial(Duration::from_millis(5))
        .backoff_max(Duration::from_millis(10))
        .checkout_timeout(Duration::from_secs(10))
        .build(db.clone())
        .unwrap();
    let all: Vec<_> = (0..3).map(|_| pool.get().unwrap()).collect();
    let waiter = {
        let pool = pool.clone();
        thread::spawn(move || drop(pool.get().unwrap()))
    };
    eventually("a waiter", || pool.stats().waiting == 1);
    thread::sleep(Duration::from_millis(2));
    drop(all);
    waiter.join().unwrap();
    let all: Vec<_> = (0..3).map(|_| pool.get().unwrap()).collect();
    assert!(
        pool.get_timeout(Duration::from_millis(5))
            .unwrap_err()
            .is_timeout()
    );
    drop(all);
    let mut g = pool.get().unwrap();
    Pooled::mark_broken(&mut g);
    drop(g);
    db.fail_next_pings(1);
    db.fail_next_connects(1);
    drop(pool.get().unwrap());
    eventually("rest", || {
        let s = pool.stats();
        s.connecting == 0 && s.in_use == 0
    });
    pool
}

#[test]
fn exposition_parses_with_prometheus_parse_and_matches_stats() {
    let pool = busy_pool("orders-primary");
    let text = pool.prometheus();
    let stats = pool.stats();
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();

    let find = |name: &str| {
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == name && s.labels.get("pool") == Some("orders-primary"))
            .collect::<Vec<_>>()
    };
    let counter = |name: &str| match &find(name)[..] {
        [s] => match s.value {
            Value::Counter(v) => v,
            ref other => panic!("{name} parsed as {other:?}"),
        },
        other => panic!("{name}: {other:?}"),
    };
    let gauge = |name: &str| match &find(name)[..] {
        [s] => match s.value {
            Value::Gauge(v) => v,
            ref other => panic!("{name} parsed as {other:?}"),
        },
        other => panic!("{name}: {other:?}"),
    };
    assert_eq!(counter("cistern_checkouts_total"), stats.checkouts as f64);
    assert_eq!(
        counter("cistern_checkouts_waited_total"),
        stats.waited as f64
    );
    assert_eq!(
        counter("cistern_checkout_timeouts_total"),
        stats.timeouts as f64
    );
    assert_eq!(
        counter("cistern_connections_created_total"),
        stats.created as f64
    );
    assert_eq!(
        counter("cistern_connect_errors_total"),
        stats.connect_errors as f64
    );
    assert_eq!(counter("cistern_pings_total"), stats.pings as f64);
    assert_eq!(gauge("cistern_connections_open"), stats.open as f64);
    assert_eq!(gauge("cistern_connections_idle"), stats.idle as f64);
    assert_eq!(gauge("cistern_pool_size"), 2.0);
    assert_eq!(gauge("cistern_pool_max_open"), 3.0);
    assert!(stats.waited >= 1 && stats.timeouts == 1 && stats.connect_errors >= 1);

    let closed: HashMap<String, f64> = find("cistern_connections_closed_total")
        .iter()
        .map(|s| match s.value {
            Value::Counter(v) => (s.labels.get("reason").unwrap().to_owned(), v),
            ref other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        closed.len(),
        CloseReason::ALL.len(),
        "every reason is exposed"
    );
    for r in CloseReason::ALL {
        assert_eq!(closed[r.as_str()], stats.closed_by.get(r) as f64, "{r}");
    }
    assert!(closed["broken"] >= 1.0 && closed["failed_ping"] >= 1.0);

    let histogram = match &find("cistern_checkout_wait_seconds")[..] {
        [s] => match &s.value {
            Value::Histogram(h) => h.clone(),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    };
    assert_eq!(histogram.len(), WAIT_BUCKETS.len() + 1);
    for (h, bound) in histogram.iter().zip(WAIT_BUCKETS) {
        assert_eq!(h.less_than, bound);
    }
    let inf = histogram.last().unwrap();
    assert!(inf.less_than.is_infinite());
    assert_eq!(inf.count, stats.checkouts as f64);
    // The parser reads _count and _sum as plain samples.
    let count = match &find("cistern_checkout_wait_seconds_count")[..] {
        [s] => match s.value {
            Value::Untyped(v) => v,
            ref other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    };
    assert_eq!(count, inf.count);
    assert_eq!(find("cistern_checkout_wait_seconds_sum").len(), 1);
    assert!(!scrape.docs.is_empty());
    for name in scrape.docs.keys() {
        assert!(name.starts_with("cistern_"), "{name}");
    }
}

#[test]
fn exposition_follows_the_format_rules() {
    let pool = busy_pool("format-rules");
    let stats = pool.stats();
    let samples = check_format(&pool.prometheus());
    let v = |name: &str| value_of(&samples, name, "format-rules", None);
    assert_eq!(v("cistern_checkouts_total"), stats.checkouts as f64);
    assert_eq!(
        v("cistern_connection_held_seconds_count"),
        stats.held.count as f64
    );
    assert!((v("cistern_connection_held_seconds_sum") - stats.held.sum.as_secs_f64()).abs() < 1e-9);
    assert_eq!(
        value_of(
            &samples,
            "cistern_checkout_wait_seconds_bucket",
            "format-rules",
            Some(("le", "+Inf"))
        ),
        stats.checkouts as f64
    );
    assert_eq!(
        value_of(
            &samples,
            "cistern_connections_closed_total",
            "format-rules",
            Some(("reason", "excess"))
        ),
        stats.closed_by.excess as f64
    );
    assert!((v("cistern_checkout_wait_seconds_sum") - stats.wait.sum.as_secs_f64()).abs() < 1e-9);
}

#[test]
fn pool_name_label_is_escaped() {
    let name = "eu \"west\" \\ primary\nreplica";
    let pool = Pool::builder()
        .name(name)
        .build(FaultManager::new())
        .unwrap();
    drop(pool.get().unwrap());
    let text = pool.prometheus();
    assert!(
        text.contains(r#"pool="eu \"west\" \\ primary\nreplica""#),
        "{text}"
    );
    let samples = check_format(&text);
    assert!(samples.iter().all(|s| s.labels["pool"] == name));
    assert_eq!(
        value_of(&samples, "cistern_checkouts_total", name, None),
        1.0
    );
}

#[test]
fn several_pools_share_one_help_and_type_per_family() {
    let a = busy_pool("multi-a");
    let b = Pool::builder()
        .name("multi-b")
        .build(FaultManager::new())
        .unwrap();
    let stats: Vec<Stats> = vec![a.stats(), b.stats()];
    let text = prometheus_text(&stats);
    let samples = check_format(&text);
    for pool in ["multi-a", "multi-b"] {
        assert_eq!(
            value_of(&samples, "cistern_checkouts_total", pool, None),
            stats.iter().find(|s| s.name == pool).unwrap().checkouts as f64
        );
    }
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let pools: HashSet<&str> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "cistern_checkout_wait_seconds")
        .filter_map(|s| s.labels.get("pool"))
        .collect();
    assert_eq!(pools, HashSet::from(["multi-a", "multi-b"]));
}

#[test]
fn a_fresh_pool_exposes_every_family_with_zeroes() {
    let pool = Pool::builder()
        .name("fresh")
        .build(FaultManager::new())
        .unwrap();
    let samples = check_format(&pool.prometheus());
    assert_eq!(
        value_of(&samples, "cistern_checkouts_total", "fresh", None),
        0.0
    );
    assert_eq!(
        value_of(
            &samples,
            "cistern_checkout_wait_seconds_count",
            "fresh",
            None
        ),
        0.0
    );
    assert_eq!(
        value_of(&samples, "cistern_pool_utilization_ratio", "fresh", None),
        0.0
    );
}
