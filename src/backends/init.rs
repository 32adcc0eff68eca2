//! Per-connection initialisation shared by the adapters: SQL statements,
//! then a closure, run by `Manager::init` on every new connection.

use std::fmt;
use std::sync::Arc;

type InitFn<C, E> = dyn Fn(&mut C) -> Result<(), E> + Send + Sync;

/// What to run on a new connection `C` whose driver errors are `E`.
pub(crate) struct Init<C, E> {
    sql: Vec<String>,
    f: Option<Arc<InitFn<C, E>>>,
}

impl<C, E> Init<C, E> {
    pub(crate) fn new() -> Self {
        Init {
            sql: Vec::new(),
            f: None,
        }
    }

    /// Adds a statement, run after the ones added before.
    pub(crate) fn push_sql(&mut self, sql: &str) {
        self.sql.push(sql.to_owned());
    }

    /// Sets the closure, run after every statement.
    pub(crate) fn set_fn(&mut self, f: impl Fn(&mut C) -> Result<(), E> + Send + Sync + 'static) {
        self.f = Some(Arc::new(f));
    }

    /// Runs the statements with the driver's `exec`, then the closure; the
    /// first error stops it.
    pub(crate) fn run(
        &self,
        conn: &mut C,
        exec: impl Fn(&mut C, &str) -> Result<(), E>,
    ) -> Result<(), E> {
        for sql in &self.sql {
            exec(conn, sql)?;
        }
        match &self.f {
            Some(f) => f(conn),
            None => Ok(()),
        }
    }
}

impl<C, E> Clone for Init<C, E> {
    fn clone(&self) -> Self {
        Init {
            sql: self.sql.clone(),
            f: self.f.clone(),
        }
    }
}

/// Shows counts only: statements may carry secrets.
impl<C, E> fmt::Debug for Init<C, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Init")
            .field("sql_statements", &self.sql.len())
            .field("closure", &self.f.is_some())
            .finish()
    }
}
