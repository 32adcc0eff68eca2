//! The PostgreSQL server: its handle, throwaway roles, and its SQL for the
//! shared scenarios.

use std::net::SocketAddr;
use std::time::Duration;

use cistern::Builder;
use cistern::postgres::postgres::error::SqlState;
use cistern::postgres::postgres::{Client, Config, NoTls, SimpleQueryMessage};
use cistern::postgres::{PostgresConnection, PostgresManager};
use cistern::testing::proxy::FaultProxy;

use super::backend::{Account, TestServer};
use super::{Admin, Tables, postgres_url, reachable_or_skip, unique_name, wait_until};

/// The PostgreSQL server, reached as its superuser.
pub struct Server {
    admin: Admin<Client>,
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
        admin: Admin::new(admin),
        config,
    })
}

impl Server {
    /// The server's config (host, port, database) for another user.
    pub fn config_for(&self, user: &str) -> Config {
        let mut c = self.config.clone();
        c.user(user);
        c
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.config.get_ports().first().copied().unwrap_or(5432)
    }

    /// The database the tests use.
    pub fn dbname(&self) -> String {
        self.config.get_dbname().unwrap_or("test").to_owned()
    }

    /// A new login role (`CONNECTION LIMIT limit`, -1 for none), dropped
    /// with its sessions and tables when the value drops.
    pub fn role(&self, limit: i32) -> Role {
        let name = unique_name();
        self.admin.run(|c| {
            c.batch_execute(&format!(
                "CREATE ROLE {name} LOGIN CONNECTION LIMIT {limit}"
            ))
            .expect("create role");
        });
        Role {
            name,
            admin: self.admin.clone(),
            tables: Tables::default(),
        }
    }
}

/// A throwaway role; see [`Server::role`].
pub struct Role {
    pub name: String,
    admin: Admin<Client>,
    tables: Tables,
}

impl Account for Role {
    type Id = i32;

    fn name(&self) -> &str {
        &self.name
    }

    fn session_ids(&self) -> Vec<i32> {
        self.admin.run(|c| {
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

    fn terminate(&self, pids: &[i32]) {
        self.admin.run(|c| {
            for pid in pids {
                c.query_one("SELECT pg_terminate_backend($1)", &[pid])
                    .expect("terminate");
            }
        });
    }

    fn table(&self, suffix: &str, columns: &str) -> String {
        let table = self.tables.add(&self.name, suffix);
        self.admin.run(|c| {
            c.batch_execute(&format!(
                "CREATE TABLE {table} ({columns}); GRANT ALL ON {table} TO {}",
                self.name
            ))
            .expect("create table");
        });
        table
    }

    fn count(&self, table: &str) -> i64 {
        self.admin.run(|c| {
            c.query_one(&format!("SELECT count(*) FROM {table}"), &[])
                .expect("count rows")
                .get(0)
        })
    }
}

impl Drop for Role {
    fn drop(&mut self) {
        let tables = self.tables.take();
        let name = self.name.clone();
        self.admin.run(|c| {
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
        self.admin.run(|c| {
            if let Err(e) = c.batch_execute(&format!("DROP OWNED BY {name}; DROP ROLE {name}")) {
                eprintln!("could not drop role {name}: {e}");
            }
        });
    }
}

impl TestServer for Server {
    type Manager = PostgresManager;
    type Account = Role;

    const SHORT: &'static str = "pg";

    fn reach(test: &str) -> Option<Server> {
        server(test)
    }

    fn account(&self) -> Role {
        self.role(-1)
    }

    fn account_at_limit(&self) -> Role {
        self.role(0)
    }

    fn manager(&self, role: &Role) -> PostgresManager {
        PostgresManager::from_config(self.config_for(&role.name))
            .ping_timeout(Duration::from_millis(500))
    }

    fn manager_for(&self, user: &str, connect_timeout: Duration) -> PostgresManager {
        PostgresManager::from_config(self.config_for(user)).connect_timeout(connect_timeout)
    }

    fn proxied(&self, role: &Role, proxy: &FaultProxy) -> PostgresManager {
        let mut config = Config::new();
        config
            .host("127.0.0.1")
            .port(proxy.port())
            .user(&role.name)
            .dbname(&self.dbname());
        PostgresManager::from_config(config)
            .ping_timeout(Duration::from_millis(300))
            .connect_timeout(Duration::from_secs(1))
    }

    fn target(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port()))
    }

    /// One connect at a time, so that each finds its socket unambiguously.
    fn for_killed_connections(builder: Builder<PostgresManager>) -> Builder<PostgresManager> {
        builder.max_connecting(1)
    }

    fn socket_found(conn: &PostgresConnection) -> Option<bool> {
        Some(conn.has_socket_probe())
    }

    fn session_id(conn: &mut PostgresConnection) -> i32 {
        conn.query_one("SELECT pg_backend_pid()", &[])
            .unwrap()
            .get(0)
    }

    fn select_one(conn: &mut PostgresConnection) -> Result<i64, String> {
        let row = conn.query_one("SELECT 1", &[]).map_err(|e| e.to_string())?;
        Ok(i64::from(row.get::<_, i32>(0)))
    }

    fn doubled(conn: &mut PostgresConnection, n: i64) -> Option<i64> {
        let n = i32::try_from(n).expect("an int4");
        let row = conn
            .query_one("SELECT $1::int4 * 2, pg_sleep(0.001)::text", &[&n])
            .unwrap();
        Some(i64::from(row.get::<_, i32>(0)))
    }

    fn sleep_300ms(conn: &mut PostgresConnection) -> Result<(), String> {
        conn.query_one("SELECT pg_sleep(0.3)::text", &[])
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn session_id_after_30ms(conn: &mut PostgresConnection) -> Result<i32, String> {
        conn.query_one("SELECT pg_backend_pid(), pg_sleep(0.03)::text", &[])
            .map(|row| row.get(0))
            .map_err(|e| e.to_string())
    }

    fn begin_and_insert(conn: &mut PostgresConnection, table: &str) {
        conn.batch_execute(&format!("BEGIN; INSERT INTO {table} VALUES (1)"))
            .unwrap();
    }

    fn insert_in_dropped_transaction(conn: &mut PostgresConnection, table: &str) {
        let mut tx = conn.transaction().unwrap();
        tx.execute(&format!("INSERT INTO {table} VALUES (1)"), &[])
            .unwrap();
    }

    /// `now()` is the transaction's start: in a simple query it equals the
    /// statement's start only when no transaction was left open before it.
    fn in_transaction(conn: &mut PostgresConnection) -> bool {
        let rows = conn
            .simple_query("SELECT now() = statement_timestamp()")
            .unwrap();
        let fresh = rows.iter().find_map(|m| match m {
            SimpleQueryMessage::Row(r) => r.get(0).map(|v| v == "t"),
            _ => None,
        });
        fresh != Some(true)
    }

    fn count(conn: &mut PostgresConnection, table: &str) -> i64 {
        conn.query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .unwrap()
            .get(0)
    }

    /// The driver's own error: the server's goodbye (57P01), or the I/O
    /// error / closed connection that follows it.
    fn query_after_kill(conn: &mut PostgresConnection) {
        let err = conn.query_one("SELECT 1", &[]).unwrap_err();
        let io = std::error::Error::source(&err).is_some_and(|s| s.is::<std::io::Error>());
        assert!(
            err.is_closed() || io || err.code() == Some(&SqlState::ADMIN_SHUTDOWN),
            "expected the driver's error for a killed session, got {err:?}"
        );
    }
}
