//! Checkout tracking: who holds each connection, since when, from where.
//!
//! Every checkout writes one [`Checkout`] record into its connection's cell
//! (`slots.rs`: one per open connection, under a lock the checkout takes
//! anyway, so recording costs a few stores). The call site comes from
//! `#[track_caller]` (free), the thread from a thread-local tag (no
//! `thread::current()` per checkout), the backtrace only when
//! `leak_backtraces` is on (a few microseconds: std captures frames
//! unresolved and symbolises them only when printed; captures are serialised
//! process-wide by the runtime).
//!
//! The maintenance thread scans the table and reports each guard held past
//! `leak_threshold` exactly once; the return of a reported guard is logged
//! once more.

use std::backtrace::Backtrace;
use std::collections::HashMap;
use std::panic::Location;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

use crate::clock::Tick;

/// One checkout in progress.
#[derive(Clone)]
pub(crate) struct Checkout {
    pub(crate) conn_id: u64,
    pub(crate) taken: Tick,
    pub(crate) thread: u64,
    pub(crate) site: &'static Location<'static>,
    pub(crate) backtrace: Option<Arc<Backtrace>>,
    /// Already reported as a leak.
    pub(crate) reported: bool,
}

/// A snapshot of one current checkout, from [`Pool::holders`](crate::Pool::holders).
#[derive(Debug, Clone)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct Holder {
    /// The connection's id within the pool.
    pub connection_id: u64,
    /// How long it has been held.
    pub held: Duration,
    /// The holding thread's name (`"<unnamed>"` when it has none).
    pub thread_name: String,
    /// A number unique to the holding thread within this process.
    pub thread_id: u64,
    /// `file:line:column` of the `get()` call that took it.
    pub location: String,
    /// The backtrace of that `get()`, trimmed to the caller's frames, when
    /// `leak_backtraces` is on.
    pub backtrace: Option<String>,
    /// Whether it has been reported as held past `leak_threshold`.
    pub reported_as_leak: bool,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "connection {} held {} by thread '{}' (#{}) from {}",
            self.connection_id,
            crate::fmt_duration(self.held),
            self.thread_name,
            self.thread_id,
            self.location
        )
    }
}

impl Checkout {
    pub(crate) fn to_holder(&self, now: Tick) -> Holder {
        Holder {
            connection_id: self.conn_id,
            held: now.since(self.taken),
            thread_name: thread_name(self.thread),
            thread_id: self.thread,
            location: format!(
                "{}:{}:{}",
                self.site.file(),
                self.site.line(),
                self.site.column()
            ),
            backtrace: self.backtrace.as_deref().map(trimmed),
            reported_as_leak: self.reported,
        }
    }
}

/// The oldest checkouts first, as a snapshot.
pub(crate) fn holders(records: &[Checkout], now: Tick) -> Vec<Holder> {
    let mut active: Vec<&Checkout> = records.iter().collect();
    active.sort_by_key(|c| c.taken);
    active.iter().map(|c| c.to_holder(now)).collect()
}

/// One line naming the `n` longest-held checkouts, for the timeout error.
pub(crate) fn summary(records: &[Checkout], now: Tick, n: usize) -> String {
    let mut active: Vec<&Checkout> = records.iter().collect();
    active.sort_by_key(|c| c.taken);
    let mut parts: Vec<String> = active
        .iter()
        .take(n)
        .map(|c| {
            format!(
                "{} by thread '{}' at {}:{}",
                crate::fmt_duration(now.since(c.taken)),
                thread_name(c.thread),
                c.site.file(),
                c.site.line()
            )
        })
        .collect();
    if active.len() > n {
        parts.push(format!("and {} more", active.len() - n));
    }
    parts.join(", ")
}

// ---- threads -----------------------------------------------------------

static NEXT_THREAD: AtomicU64 = AtomicU64::new(1);
static THREAD_NAMES: Mutex<Option<HashMap<u64, String>>> = Mutex::new(None);

/// A thread's tag: registered on its first checkout, unregistered when the
/// thread exits (so a process that spawns a thread per request does not
/// grow the table).
struct ThreadTag(u64);

impl ThreadTag {
    fn register() -> ThreadTag {
        let id = NEXT_THREAD.fetch_add(1, Ordering::Relaxed);
        let name = std::thread::current()
            .name()
            .unwrap_or("<unnamed>")
            .to_owned();
        THREAD_NAMES
            .lock()
            .get_or_insert_with(HashMap::new)
            .insert(id, name);
        ThreadTag(id)
    }
}

impl Drop for ThreadTag {
    fn drop(&mut self) {
        if let Some(map) = THREAD_NAMES.lock().as_mut() {
            map.remove(&self.0);
        }
    }
}

thread_local! {
    static TAG: ThreadTag = ThreadTag::register();
}

/// This thread's tag (a thread-local read after the first call).
#[inline]
pub(crate) fn thread_tag() -> u64 {
    TAG.try_with(|t| t.0).unwrap_or(0)
}

fn thread_name(tag: u64) -> String {
    THREAD_NAMES
        .lock()
        .as_ref()
        .and_then(|m| m.get(&tag).cloned())
        .unwrap_or_else(|| "<exited>".to_owned())
}

// ---- backtraces ----------------------------------------------------------

static CAPTURES: AtomicU64 = AtomicU64::new(0);

/// Captures a backtrace inside `get()`.
#[inline(never)]
pub(crate) fn capture() -> Arc<Backtrace> {
    CAPTURES.fetch_add(1, Ordering::Relaxed);
    Arc::new(Backtrace::force_capture())
}

/// Backtraces captured by checkouts in this process so far (for tests that
/// check tracking without backtraces captures none).
#[doc(hidden)]
pub fn backtraces_captured() -> u64 {
    CAPTURES.load(Ordering::Relaxed)
}

/// The backtrace as text, without the frames of std and of this crate at
/// its top, so it starts at the caller of `get()`.
pub(crate) fn trimmed(bt: &Backtrace) -> String {
    let text = bt.to_string();
    let mut frames: Vec<Vec<&str>> = Vec::new();
    for line in text.lines() {
        let is_frame_start = line
            .trim_start()
            .split_once(": ")
            .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        match frames.last_mut() {
            Some(frame) if !is_frame_start => frame.push(line),
            _ => frames.push(vec![line]),
        }
    }
    let internal = |frame: &Vec<&str>| {
        let symbol = frame[0]
            .trim_start()
            .split_once(": ")
            .map_or("", |(_, s)| s);
        let symbol = symbol.trim_start_matches('<');
        [
            "std::",
            "core::",
            "alloc::",
            "backtrace",
            "cistern::leak::capture",
            "cistern::pool::",
            "cistern::slots::",
        ]
        .iter()
        .any(|p| symbol.starts_with(p))
    };
    let start = frames
        .iter()
        .position(|f| !internal(f))
        .unwrap_or(frames.len());
    // Stop at the runtime's entry frames (nothing of the user's below them),
    // then drop the std/core frames that lead into them.
    let mut kept: Vec<&Vec<&str>> = frames[start..]
        .iter()
        .take_while(|f| {
            ![
                "std::rt::lang_start",
                "__rust_begin_short_backtrace",
                "__libc_start",
            ]
            .iter()
            .any(|stop| f[0].contains(stop))
        })
        .take(40)
        .collect();
    while kept.last().is_some_and(|f| internal(f)) {
        kept.pop();
    }
    let kept: Vec<String> = kept.iter().map(|f| f.join("\n")).collect();
    if kept.is_empty() {
        // Symbols unavailable (stripped binary): show what there is.
        return text;
    }
    kept.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn a_caller_frame() -> Arc<Backtrace> {
        capture()
    }

    #[test]
    fn trimmed_backtrace_starts_at_the_caller() {
        let bt = a_caller_frame();
        let text = trimmed(&bt);
        let first = text.lines().next().unwrap_or_default();
        assert!(
            first.contains("a_caller_frame"),
            "first frame should be the caller: {first}\n{text}"
        );
    }

    #[test]
    fn thread_names_are_registered_and_released() {
        let (tag, name) = std::thread::Builder::new()
            .name("leak-test-thread".into())
            .spawn(|| {
                let tag = thread_tag();
                (tag, thread_name(tag))
            })
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(name, "leak-test-thread");
        assert_eq!(thread_name(tag), "<exited>");
    }
}
