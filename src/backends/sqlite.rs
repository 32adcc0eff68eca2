//! SQLite through `rusqlite` (bundled SQLite: no system library needed).
//!
//! ```
//! use cistern::{Pool, sqlite::SqliteManager};
//!
//! let dir = std::env::temp_dir().join(format!("cistern-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! let manager = SqliteManager::file(dir.join("app.db"))
//!     .pragma("cache_size", "-16000")
//!     .init_sql("CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v TEXT)");
//! let pool = Pool::new(manager)?;
//! pool.get()?.execute("INSERT OR REPLACE INTO kv VALUES ('a', 'b')", []).unwrap();
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok::<(), cistern::Error>(())
//! ```

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

pub use rusqlite;
use rusqlite::{Connection, OpenFlags};

use crate::backends::MASK;
use crate::backends::init::Init;

/// A [`Manager`](crate::Manager) for SQLite files or shared in-memory
/// databases.
///
/// Every new connection gets these pragmas unless changed with
/// [`SqliteManager::pragma`] or [`SqliteManager::no_default_pragmas`]:
/// `journal_mode = WAL` (files only: concurrent readers with one writer),
/// `synchronous = NORMAL`, `busy_timeout = 5000` (ms: wait for a writer
/// instead of failing with SQLITE_BUSY), `foreign_keys = ON`.
#[derive(Clone)]
pub struct SqliteManager {
    target: Target,
    flags: OpenFlags,
    pragmas: Vec<(String, String)>,
    init: Init<Connection, rusqlite::Error>,
}

#[derive(Clone, Debug)]
enum Target {
    File(PathBuf),
    Memory(String),
}

impl fmt::Debug for SqliteManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // SQLCipher's key pragmas carry the database key: masked.
        let pragmas: Vec<(&str, &str)> = self
            .pragmas
            .iter()
            .map(|(name, value)| {
                let secret = ["key", "rekey", "hexkey", "hexrekey"]
                    .iter()
                    .any(|k| name.eq_ignore_ascii_case(k));
                (name.as_str(), if secret { MASK } else { value.as_str() })
            })
            .collect();
        f.debug_struct("SqliteManager")
            .field("target", &self.target)
            .field("pragmas", &pragmas)
            .field("init", &self.init)
            .finish()
    }
}

impl SqliteManager {
    fn with_target(target: Target) -> SqliteManager {
        let wal = matches!(target, Target::File(_));
        let mut pragmas = vec![
            ("synchronous".to_owned(), "NORMAL".to_owned()),
            ("busy_timeout".to_owned(), "5000".to_owned()),
            ("foreign_keys".to_owned(), "ON".to_owned()),
        ];
        if wal {
            pragmas.insert(0, ("journal_mode".to_owned(), "WAL".to_owned()));
        }
        SqliteManager {
            target,
            flags: OpenFlags::default(),
            pragmas,
            init: Init::new(),
        }
    }

    /// A database file, created if missing.
    pub fn file(path: impl Into<PathBuf>) -> SqliteManager {
        SqliteManager::with_target(Target::File(path.into()))
    }

    /// A named in-memory database shared by the pool's connections. It
    /// lives while at least one connection is open: keep `min_idle >= 1`
    /// if its contents must survive idle periods.
    pub fn memory(name: &str) -> SqliteManager {
        SqliteManager::with_target(Target::Memory(name.to_owned()))
    }

    /// Sets (or overrides) a pragma run on every new connection.
    pub fn pragma(mut self, name: &str, value: &str) -> SqliteManager {
        self.pragmas.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.pragmas.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Drops the default pragmas (those set with `pragma` afterwards stay).
    pub fn no_default_pragmas(mut self) -> SqliteManager {
        self.pragmas.clear();
        self
    }

    /// Open flags (default: read-write, create, URI, no mutex).
    pub fn flags(mut self, flags: OpenFlags) -> SqliteManager {
        self.flags = flags;
        self
    }

    /// SQL run on every new connection after the pragmas.
    pub fn init_sql(mut self, sql: &str) -> SqliteManager {
        self.init.push_sql(sql);
        self
    }

    /// A closure run on every new connection after the pragmas and SQL.
    pub fn init_with(
        mut self,
        f: impl Fn(&mut Connection) -> rusqlite::Result<()> + Send + Sync + 'static,
    ) -> SqliteManager {
        self.init.set_fn(f);
        self
    }
}

impl crate::Manager for SqliteManager {
    type Connection = Connection;
    type Error = rusqlite::Error;

    fn connect(&self) -> Result<Connection, rusqlite::Error> {
        match &self.target {
            Target::File(path) => Connection::open_with_flags(path, self.flags),
            Target::Memory(name) => Connection::open_with_flags(
                format!("file:{name}?mode=memory&cache=shared"),
                self.flags | OpenFlags::SQLITE_OPEN_URI,
            ),
        }
    }

    fn init(&self, conn: &mut Connection) -> Result<(), rusqlite::Error> {
        for (name, value) in &self.pragmas {
            if name.eq_ignore_ascii_case("busy_timeout") {
                let ms: u64 = value.parse().map_err(|_| {
                    rusqlite::Error::InvalidParameterName(format!(
                        "busy_timeout = {value:?}: expected milliseconds"
                    ))
                })?;
                conn.busy_timeout(Duration::from_millis(ms))?;
            } else {
                // pragma_update returns rows for some pragmas (journal_mode):
                // read and ignore them.
                conn.query_row(&format!("PRAGMA {name} = {value}"), [], |_| Ok(()))
                    .or_else(|e| match e {
                        rusqlite::Error::QueryReturnedNoRows => Ok(()),
                        other => Err(other),
                    })?;
            }
        }
        self.init.run(conn, |c, sql| c.execute_batch(sql))
    }

    fn ping(&self, conn: &mut Connection) -> Result<(), rusqlite::Error> {
        conn.prepare_cached("SELECT 1")?.query_row([], |_| Ok(()))
    }

    /// Rolls back a transaction left open by the last user (local, cheap):
    /// the next user starts clean.
    fn on_checkin(&self, conn: &mut Connection) -> Result<(), rusqlite::Error> {
        if !conn.is_autocommit() {
            conn.execute_batch("ROLLBACK")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Manager;

    #[test]
    fn debug_masks_key_pragmas() {
        let m = SqliteManager::memory("dbg")
            .pragma("key", "s3cret-key")
            .pragma("cache_size", "-99");
        let text = format!("{m:?}");
        assert!(!text.contains("s3cret-key"), "{text}");
        assert!(
            text.contains("\"key\", \"***\"") && text.contains("-99"),
            "{text}"
        );
    }

    #[test]
    fn pragmas_are_applied() {
        let dir = std::env::temp_dir().join(format!("cistern-sqlite-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let m = SqliteManager::file(dir.join("p.db")).pragma("cache_size", "-1234");
        let mut c = m.connect().unwrap();
        m.init(&mut c).unwrap();
        let mode: String = c
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode.to_lowercase(), "wal");
        let fk: i64 = c
            .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
            .unwrap();
        assert_eq!(fk, 1);
        let cs: i64 = c.query_row("PRAGMA cache_size", [], |r| r.get(0)).unwrap();
        assert_eq!(cs, -1234);
        m.ping(&mut c).unwrap();
        drop(c);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn bad_busy_timeout_is_an_error() {
        let m = SqliteManager::memory("unit_bad_busy").pragma("busy_timeout", "soon");
        let mut c = m.connect().unwrap();
        let e = m.init(&mut c).unwrap_err().to_string();
        assert!(e.contains("busy_timeout"), "{e}");
    }

    #[test]
    fn open_transaction_is_rolled_back_on_checkin() {
        let m = SqliteManager::memory("unit_rollback");
        let mut c = m.connect().unwrap();
        c.execute_batch("BEGIN").unwrap();
        assert!(!c.is_autocommit());
        m.on_checkin(&mut c).unwrap();
        assert!(c.is_autocommit());
    }
}
