#![allow(dead_code)] // each test binary uses part of it

//! Access to the real PostgreSQL and MariaDB servers for the tests that
//! need them, and throwaway roles / users so that counting and killing
//! server sessions never disturbs a test running beside.
//!
//! Skip rule: without a reachable server, a test prints that it was
//! skipped and passes, unless `CI=true`, where an unreachable server fails
//! the test.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// `postgres://...` of the server (env `CISTERN_POSTGRES_URL`).
pub fn postgres_url() -> String {
    std::env::var("CISTERN_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// `mysql://...` of the server (env `CISTERN_MYSQL_URL`).
pub fn mysql_url() -> String {
    std::env::var("CISTERN_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".to_owned())
}

/// `url` with the password of its `user:password@` part masked, for
/// messages.
pub fn shown(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => match rest[..at].split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***{}", &rest[at..]),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Applies the skip rule: `None` (after printing why) when the server is
/// unreachable outside CI; a panic in CI.
fn reachable_or_skip<T, E: std::fmt::Display>(
    test: &str,
    what: &str,
    url: &str,
    attempt: Result<T, E>,
) -> Option<T> {
    let url = shown(url);
    match attempt {
        Ok(v) => Some(v),
        Err(e) if in_ci() => panic!("{test}: {what} at {url} is unreachable with CI=true: {e}"),
        Err(e) => {
            eprintln!(
                "{test}: skipped: {what} at {url} is unreachable ({e}); set CI=true to fail instead"
            );
            None
        }
    }
}

/// A name nobody else uses: `cistern_t_<hex>`.
pub fn unique_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut z = nanos
        ^ (u64::from(std::process::id()) << 32)
        ^ COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    format!("cistern_t_{:012x}", (z ^ (z >> 31)) & 0xffff_ffff_ffff)
}

/// Polls `check` until it is true or `deadline` passes; returns the last
/// answer.
pub fn wait_until(deadline: Duration, mut check: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `f` on a thread and returns its result, or panics if it has not
/// finished within `limit` (a generous watchdog against hangs, not a
/// timing assertion).
pub fn within<T: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(v) => v,
        Err(_) => panic!("{what} did not return within the watchdog's {limit:?}"),
    }
}

#[cfg(feature = "postgres")]
pub mod pg {
    use super::*;
    use cistern::postgres::postgres::{Client, Config, NoTls};
    use std::sync::{Arc, Mutex};

    /// The PostgreSQL server, reached as its superuser.
    pub struct Server {
        admin: Arc<Mutex<Client>>,
        config: Config,
    }

    /// The server, or `None` (skip) per the skip rule.
    pub fn server(test: &str) -> Option<Server> {
        let url = postgres_url();
        let config: Config = url
            .parse()
            .expect("CISTERN_POSTGRES_URL must be a postgres URL");
        let mut probe = config.clone();
        probe.connect_timeout(Duration::from_secs(3));
        let admin = reachable_or_skip(test, "PostgreSQL", &url, probe.connect(NoTls))?;
        Some(Server {
            admin: Arc::new(Mutex::new(admin)),
            config,
        })
    }

    impl Server {
        /// Runs `f` on the superuser connection.
        pub fn admin<T>(&self, f: impl FnOnce(&mut Client) -> T) -> T {
            let mut c = self.admin.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut c)
        }

        /// The server's config (host, port, database) for another user.
        pub fn config_for(&self, user: &str) -> Config {
            let mut c = self.config.clone();
            c.user(user);
            c
        }

        /// A new login role (`CONNECTION LIMIT limit`, -1 for none), dropped
        /// with its sessions and tables when the value drops.
        pub fn role(&self, limit: i32) -> Role {
            let name = unique_name();
            self.admin(|c| {
                c.batch_execute(&format!(
                    "CREATE ROLE {name} LOGIN CONNECTION LIMIT {limit}"
                ))
                .expect("create role");
            });
            Role {
                name,
                admin: Arc::clone(&self.admin),
                tables: Mutex::new(Vec::new()),
            }
        }
    }

    /// A throwaway role; see [`Server::role`].
    pub struct Role {
        pub name: String,
        admin: Arc<Mutex<Client>>,
        tables: Mutex<Vec<String>>,
    }

    impl Role {
        fn admin<T>(&self, f: impl FnOnce(&mut Client) -> T) -> T {
            let mut c = self.admin.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut c)
        }

        /// Server sessions of this role now.
        pub fn sessions(&self) -> i64 {
            self.admin(|c| {
                c.query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE usename = $1",
                    &[&self.name],
                )
                .expect("count sessions")
                .get(0)
            })
        }

        /// Backend pids of this role's sessions.
        pub fn pids(&self) -> Vec<i32> {
            self.admin(|c| {
                c.query(
                    "SELECT pid FROM pg_stat_activity WHERE usename = $1",
                    &[&self.name],
                )
                .expect("list sessions")
                .iter()
                .map(|r| r.get(0))
                .collect()
            })
        }

        /// Terminates every session of this role and waits until the
        /// server reports them gone; returns how many there were.
        pub fn kill_all(&self) -> usize {
            let pids = self.pids();
            self.kill(&pids);
            pids.len()
        }

        /// Terminates these backends and waits until they are gone.
        pub fn kill(&self, pids: &[i32]) {
            self.admin(|c| {
                for pid in pids {
                    c.query_one("SELECT pg_terminate_backend($1)", &[pid])
                        .expect("terminate");
                }
            });
            let gone = wait_until(Duration::from_secs(20), || {
                let alive = self.pids();
                pids.iter().all(|p| !alive.contains(p))
            });
            assert!(gone, "the server still shows killed backends {pids:?}");
        }

        /// Creates `<role>_<suffix>` as the superuser, grants it to the
        /// role, and returns its name (dropped with the role).
        pub fn table(&self, suffix: &str, columns: &str) -> String {
            let table = format!("{}_{suffix}", self.name);
            self.admin(|c| {
                c.batch_execute(&format!(
                    "CREATE TABLE {table} ({columns}); GRANT ALL ON {table} TO {}",
                    self.name
                ))
                .expect("create table");
            });
            self.tables
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(table.clone());
            table
        }

        /// Rows in `table`, as the superuser sees them (committed only).
        pub fn count(&self, table: &str) -> i64 {
            self.admin(|c| {
                c.query_one(&format!("SELECT count(*) FROM {table}"), &[])
                    .expect("count rows")
                    .get(0)
            })
        }
    }

    impl Drop for Role {
        fn drop(&mut self) {
            let tables =
                std::mem::take(&mut *self.tables.lock().unwrap_or_else(|e| e.into_inner()));
            let name = self.name.clone();
            self.admin(|c| {
                let _ = c.batch_execute(&format!("ALTER ROLE {name} NOLOGIN"));
                let _ = c.query(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1",
                    &[&name],
                );
                for t in &tables {
                    let _ = c.batch_execute(&format!("DROP TABLE IF EXISTS {t}"));
                }
            });
            // The role can be dropped once its sessions are gone.
            let _ = wait_until(Duration::from_secs(20), || self.sessions() == 0);
            self.admin(|c| {
                if let Err(e) = c.batch_execute(&format!("DROP OWNED BY {name}; DROP ROLE {name}"))
                {
                    eprintln!("could not drop role {name}: {e}");
                }
            });
        }
    }
}

#[cfg(feature = "mysql")]
pub mod my {
    use super::*;
    use cistern::mysql::mysql::prelude::Queryable;
    use cistern::mysql::mysql::{Conn, Opts, OptsBuilder};
    use std::sync::{Arc, Mutex};

    /// The MariaDB / MySQL server, reached as its administrator.
    pub struct Server {
        admin: Arc<Mutex<Conn>>,
        opts: Opts,
    }

    /// The server, or `None` (skip) per the skip rule.
    pub fn server(test: &str) -> Option<Server> {
        let url = mysql_url();
        let opts = Opts::from_url(&url).expect("CISTERN_MYSQL_URL must be a mysql URL");
        let probe = OptsBuilder::from_opts(opts.clone())
            .tcp_connect_timeout(Some(Duration::from_secs(3)))
            .read_timeout(Some(Duration::from_secs(30)));
        let admin = reachable_or_skip(test, "MariaDB", &url, Conn::new(probe))?;
        Some(Server {
            admin: Arc::new(Mutex::new(admin)),
            opts,
        })
    }

    impl Server {
        /// Runs `f` on the administrator connection.
        pub fn admin<T>(&self, f: impl FnOnce(&mut Conn) -> T) -> T {
            let mut c = self.admin.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut c)
        }

        /// Options (TCP, no `prefer_socket`) for another user.
        pub fn opts_for(&self, user: &str) -> OptsBuilder {
            OptsBuilder::from_opts(self.opts.clone())
                .user(Some(user))
                .pass(None::<String>)
                .prefer_socket(false)
        }

        /// The database the tests use.
        pub fn db(&self) -> String {
            self.opts.get_db_name().unwrap_or("test").to_owned()
        }

        /// A new user (with `MAX_USER_CONNECTIONS limit`, 0 for none)
        /// allowed everything on the test database; dropped with its
        /// sessions and tables when the value drops.
        pub fn user(&self, limit: u32) -> User {
            let name = unique_name();
            let db = self.db();
            self.admin(|c| {
                c.query_drop(format!(
                    "CREATE USER '{name}'@'%' WITH MAX_USER_CONNECTIONS {limit}"
                ))
                .expect("create user");
                c.query_drop(format!("GRANT ALL ON `{db}`.* TO '{name}'@'%'"))
                    .expect("grant");
            });
            User {
                name,
                db,
                admin: Arc::clone(&self.admin),
                tables: Mutex::new(Vec::new()),
            }
        }
    }

    /// A throwaway user; see [`Server::user`].
    pub struct User {
        pub name: String,
        db: String,
        admin: Arc<Mutex<Conn>>,
        tables: Mutex<Vec<String>>,
    }

    impl User {
        fn admin<T>(&self, f: impl FnOnce(&mut Conn) -> T) -> T {
            let mut c = self.admin.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut c)
        }

        /// Connection ids of this user's sessions.
        pub fn ids(&self) -> Vec<u64> {
            self.admin(|c| {
                c.exec(
                    "SELECT id FROM information_schema.processlist WHERE user = ?",
                    (&self.name,),
                )
                .expect("list sessions")
            })
        }

        /// Server sessions of this user now.
        pub fn sessions(&self) -> usize {
            self.ids().len()
        }

        /// Kills every session of this user and waits until the server
        /// reports them gone; returns how many there were.
        pub fn kill_all(&self) -> usize {
            let ids = self.ids();
            self.kill(&ids);
            ids.len()
        }

        /// Kills these sessions and waits until they are gone.
        pub fn kill(&self, ids: &[u64]) {
            self.admin(|c| {
                for id in ids {
                    // It may have gone on its own meanwhile.
                    let _ = c.query_drop(format!("KILL CONNECTION {id}"));
                }
            });
            let gone = wait_until(Duration::from_secs(20), || {
                let alive = self.ids();
                ids.iter().all(|i| !alive.contains(i))
            });
            assert!(gone, "the server still shows killed sessions {ids:?}");
        }

        /// Creates `<user>_<suffix>` (InnoDB) as the administrator and
        /// returns its name (dropped with the user).
        pub fn table(&self, suffix: &str, columns: &str) -> String {
            let table = format!("{}_{suffix}", self.name);
            let db = self.db.clone();
            self.admin(|c| {
                c.query_drop(format!(
                    "CREATE TABLE `{db}`.{table} ({columns}) ENGINE=InnoDB"
                ))
                .expect("create table");
            });
            self.tables
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(table.clone());
            table
        }

        /// Rows in `table`, as the administrator sees them (committed only).
        pub fn count(&self, table: &str) -> i64 {
            let db = self.db.clone();
            self.admin(|c| {
                c.query_first::<i64, _>(format!("SELECT count(*) FROM `{db}`.{table}"))
                    .expect("count rows")
                    .unwrap_or(0)
            })
        }
    }

    impl Drop for User {
        fn drop(&mut self) {
            let tables =
                std::mem::take(&mut *self.tables.lock().unwrap_or_else(|e| e.into_inner()));
            let ids = self.ids();
            let (name, db) = (self.name.clone(), self.db.clone());
            self.admin(|c| {
                for id in &ids {
                    let _ = c.query_drop(format!("KILL CONNECTION {id}"));
                }
                for t in &tables {
                    let _ = c.query_drop(format!("DROP TABLE IF EXISTS `{db}`.{t}"));
                }
                if let Err(e) = c.query_drop(format!("DROP USER IF EXISTS '{name}'@'%'")) {
                    eprintln!("could not drop user {name}: {e}");
                }
            });
        }
    }
}
