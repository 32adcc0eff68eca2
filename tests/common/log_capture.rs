#![allow(dead_code)] // each test binary uses part of it

//! A `log::Log` that keeps every record, for tests that check what the pool
//! logs. Installed once per test binary; tests running in parallel tell
//! their lines apart by their pool's name.

use std::sync::{Mutex, OnceLock};

/// One captured line.
#[derive(Debug, Clone)]
pub struct Line {
    pub level: log::Level,
    pub target: String,
    pub text: String,
}

struct Capture {
    lines: Mutex<Vec<Line>>,
}

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        let line = Line {
            level: record.level(),
            target: record.target().to_owned(),
            text: record.args().to_string(),
        };
        self.lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(line);
    }

    fn flush(&self) {}
}

static CAPTURE: OnceLock<&'static Capture> = OnceLock::new();

fn capture() -> &'static Capture {
    CAPTURE.get_or_init(|| {
        let c: &'static Capture = Box::leak(Box::new(Capture {
            lines: Mutex::new(Vec::new()),
        }));
        log::set_logger(c).expect("no other logger in this test binary");
        log::set_max_level(log::LevelFilter::Trace);
        c
    })
}

/// Installs the logger (idempotent).
pub fn install() {
    capture();
}

/// Every line captured so far, from every test of this binary.
pub fn all() -> Vec<Line> {
    capture()
        .lines
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
}

/// The lines that name pool `name` (as `pool 'name'`).
pub fn of_pool(name: &str) -> Vec<Line> {
    let tag = format!("pool '{name}'");
    all()
        .into_iter()
        .filter(|l| l.text.contains(&tag))
        .collect()
}
