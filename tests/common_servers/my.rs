//! The MariaDB / MySQL server: its handle, throwaway users, and its SQL
//! for the shared scenarios.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use cistern::mysql::MysqlManager;
use cistern::mysql::mysql::prelude::Queryable;
use cistern::mysql::mysql::{Conn, Opts, OptsBuilder, TxOpts};
use cistern::testing::proxy::FaultProxy;

use super::backend::{Account, TestServer};
use super::{Admin, Tables, mysql_url, reachable_or_skip, unique_name};

/// The MariaDB / MySQL server, reached as its administrator.
pub struct Server {
    admin: Admin<Conn>,
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
        admin: Admin::new(admin),
        opts,
    })
}

impl Server {
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
        self.admin.run(|c| {
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
            admin: self.admin.clone(),
            tables: Tables::default(),
            held: Mutex::new(None),
        }
    }
}

/// A throwaway user; see [`Server::user`].
pub struct User {
    pub name: String,
    db: String,
    admin: Admin<Conn>,
    tables: Tables,
    /// A session of the user's own, kept open until the user drops.
    held: Mutex<Option<Conn>>,
}

impl Account for User {
    type Id = u64;

    fn name(&self) -> &str {
        &self.name
    }

    fn session_ids(&self) -> Vec<u64> {
        self.admin.run(|c| {
            c.exec(
                "SELECT id FROM information_schema.processlist WHERE user = ?",
                (&self.name,),
            )
            .expect("list sessions")
        })
    }

    fn terminate(&self, ids: &[u64]) {
        self.admin.run(|c| {
            for id in ids {
                // It may have gone on its own meanwhile.
                let _ = c.query_drop(format!("KILL CONNECTION {id}"));
            }
        });
    }

    /// InnoDB, in the test database.
    fn table(&self, suffix: &str, columns: &str) -> String {
        let table = self.tables.add(&self.name, suffix);
        let db = &self.db;
        self.admin.run(|c| {
            c.query_drop(format!(
                "CREATE TABLE `{db}`.{table} ({columns}) ENGINE=InnoDB"
            ))
            .expect("create table");
        });
        table
    }

    fn count(&self, table: &str) -> i64 {
        let db = &self.db;
        self.admin.run(|c| {
            c.query_first::<i64, _>(format!("SELECT count(*) FROM `{db}`.{table}"))
                .expect("count rows")
                .unwrap_or(0)
        })
    }
}

impl Drop for User {
    fn drop(&mut self) {
        drop(self.held.lock().unwrap_or_else(|e| e.into_inner()).take());
        let tables = self.tables.take();
        let ids = self.session_ids();
        let (name, db) = (&self.name, &self.db);
        self.admin.run(|c| {
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

impl TestServer for Server {
    type Manager = MysqlManager;
    type Account = User;

    const SHORT: &'static str = "my";

    fn reach(test: &str) -> Option<Server> {
        server(test)
    }

    fn account(&self) -> User {
        self.user(0)
    }

    /// A user limited to one connection, which it holds.
    fn account_at_limit(&self) -> User {
        let user = self.user(1);
        let only_one = Conn::new(self.opts_for(&user.name)).unwrap();
        *user.held.lock().unwrap_or_else(|e| e.into_inner()) = Some(only_one);
        user
    }

    /// Over TCP.
    fn manager(&self, user: &User) -> MysqlManager {
        MysqlManager::from_opts(self.opts_for(&user.name)).ping_timeout(Duration::from_millis(500))
    }

    fn manager_for(&self, user: &str, connect_timeout: Duration) -> MysqlManager {
        MysqlManager::from_opts(self.opts_for(user)).connect_timeout(connect_timeout)
    }

    fn proxied(&self, user: &User, proxy: &FaultProxy) -> MysqlManager {
        let opts = self
            .opts_for(&user.name)
            .ip_or_hostname(Some("127.0.0.1"))
            .tcp_port(proxy.port());
        MysqlManager::from_opts(opts)
            .ping_timeout(Duration::from_millis(300))
            .connect_timeout(Duration::from_secs(1))
    }

    fn target(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.opts.get_tcp_port()))
    }

    fn session_id(conn: &mut Conn) -> u64 {
        conn.query_first("SELECT CONNECTION_ID()").unwrap().unwrap()
    }

    fn select_one(conn: &mut Conn) -> Result<i64, String> {
        conn.query_first("SELECT 1")
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "SELECT 1 returned no row".to_owned())
    }

    fn doubled(conn: &mut Conn, n: i64) -> Option<i64> {
        let got: Option<(i64, i64)> = conn.exec_first("SELECT ? * 2, SLEEP(0.001)", (n,)).unwrap();
        got.map(|r| r.0)
    }

    fn sleep_300ms(conn: &mut Conn) -> Result<(), String> {
        conn.query_drop("SELECT SLEEP(0.3)")
            .map_err(|e| e.to_string())
    }

    fn session_id_after_30ms(conn: &mut Conn) -> Result<u64, String> {
        match conn.query_first::<(u64, i64), _>("SELECT CONNECTION_ID(), SLEEP(0.03)") {
            Ok(Some((id, _))) => Ok(id),
            other => Err(format!("{other:?}")),
        }
    }

    fn begin_and_insert(conn: &mut Conn, table: &str) {
        conn.query_drop("BEGIN").unwrap();
        conn.query_drop(format!("INSERT INTO {table} VALUES (1)"))
            .unwrap();
    }

    fn insert_in_dropped_transaction(conn: &mut Conn, table: &str) {
        let mut tx = conn.start_transaction(TxOpts::default()).unwrap();
        tx.query_drop(format!("INSERT INTO {table} VALUES (1)"))
            .unwrap();
    }

    fn in_transaction(conn: &mut Conn) -> bool {
        let v: i64 = conn
            .query_first("SELECT @@in_transaction")
            .unwrap()
            .unwrap();
        v != 0
    }

    fn count(conn: &mut Conn, table: &str) -> i64 {
        conn.query_first(format!("SELECT count(*) FROM {table}"))
            .unwrap()
            .unwrap()
    }

    /// The driver's own error (I/O, or the server's "connection was
    /// killed"), printed.
    fn query_after_kill(conn: &mut Conn) {
        let err = conn.query_drop("SELECT 1").unwrap_err();
        println!("the killed session's error: {err}");
    }
}
