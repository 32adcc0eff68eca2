//! Passwords never appear in `Debug` output, error messages or log lines of
//! any adapter: URLs with a password, config structs with a password, bad
//! URLs, failed connects.

#![cfg(all(feature = "postgres", feature = "mysql", feature = "r2d2"))]

mod common_servers;
#[path = "common/log_capture.rs"]
mod log_capture;

use std::net::TcpListener;
use std::time::Duration;

use cistern::mysql::{MysqlManager, OptsBuilder};
use cistern::postgres::{Config, PostgresManager};
use cistern::{Manager, Pool};

const SECRETS: [&str; 9] = [
    "PgUrlSecret1",
    "PgKeyValueSecret2",
    "PgConfigSecret3",
    "PgBadUrlSecret4",
    "MyUrlSecret5",
    "MyOptsSecret6",
    "MyBadUrlSecret7",
    "MyServerSecret8",
    "R2d2Secret9",
];

/// An r2d2 manager whose derived `Debug` shows its password, as many do.
#[derive(Debug)]
struct R2d2WithPassword {
    password: String,
}

impl cistern::r2d2::r2d2::ManageConnection for R2d2WithPassword {
    type Connection = ();
    type Error = std::io::Error;
    fn connect(&self) -> Result<(), std::io::Error> {
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "refused",
        ))
    }
    fn is_valid(&self, _: &mut ()) -> Result<(), std::io::Error> {
        Ok(())
    }
    fn has_broken(&self, _: &mut ()) -> bool {
        false
    }
}

fn assert_clean(what: &str, text: &str) {
    for s in SECRETS {
        assert!(!text.contains(s), "{what} shows a password: {text}");
    }
}

/// A loopback port nothing listens on: connects are refused.
fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Builds a pool over `manager`, fails a checkout, and checks every text
/// the pool and the adapter produce on the way.
fn check_pool<M: Manager + std::fmt::Debug>(what: &str, manager: M) {
    assert_clean(&format!("{what}: manager Debug"), &format!("{manager:?}"));
    let pool = Pool::builder()
        .name(format!("secrets-{what}"))
        .checkout_timeout(Duration::from_millis(500))
        .backoff_initial(Duration::from_millis(50))
        .build(manager)
        .unwrap();
    assert_clean(
        &format!("{what}: pool Debug"),
        &format!("{pool:?} {:?}", pool.config()),
    );
    let err = pool.get().unwrap_err();
    assert!(err.is_timeout(), "{what}: {err}");
    assert!(
        err.to_string().contains("connects are failing"),
        "{what}: {err}"
    );
    assert_clean(&format!("{what}: error Display"), &err.to_string());
    assert_clean(&format!("{what}: error Debug"), &format!("{err:?}"));
    assert_clean(&format!("{what}: stats"), &format!("{:?}", pool.stats()));
    assert_clean(
        &format!("{what}: manager Debug via pool"),
        &format!("{:?}", pool.manager()),
    );
}

#[test]
fn no_adapter_shows_a_password() {
    log_capture::install();

    // PostgreSQL: URL, key=value string, Config struct, bad URL.
    let port = closed_port();
    check_pool(
        "postgres url",
        PostgresManager::new(&format!("postgres://app:PgUrlSecret1@127.0.0.1:{port}/db")).unwrap(),
    );
    check_pool(
        "postgres key=value",
        PostgresManager::new(&format!(
            "host=127.0.0.1 port={port} user=app password=PgKeyValueSecret2"
        ))
        .unwrap(),
    );
    let mut config = Config::new();
    config
        .host("127.0.0.1")
        .port(port)
        .user("app")
        .password("PgConfigSecret3");
    check_pool("postgres config", PostgresManager::from_config(config));
    for bad in [
        "postgres://app:PgBadUrlSecret4@127.0.0.1:notaport/db",
        "host=127.0.0.1 password=PgBadUrlSecret4 sslmode=sometimes",
        "user=app password='PgBadUrlSecret4'",
    ] {
        let err = PostgresManager::new(bad).unwrap_err();
        assert_clean("postgres bad url Display", &err.to_string());
        assert_clean("postgres bad url Debug", &format!("{err:?}"));
    }

    // MySQL: URL, OptsBuilder, bad URL.
    check_pool(
        "mysql url",
        MysqlManager::new(&format!(
            "mysql://root:MyUrlSecret5@127.0.0.1:{port}/test?prefer_socket=false"
        ))
        .unwrap(),
    );
    let opts = OptsBuilder::new()
        .ip_or_hostname(Some("127.0.0.1"))
        .tcp_port(port)
        .user(Some("root"))
        .pass(Some("MyOptsSecret6"))
        .prefer_socket(false);
    check_pool("mysql opts", MysqlManager::from_opts(opts));
    for bad in [
        "mysql://root:MyBadUrlSecret7@127.0.0.1:notaport/test",
        "mysql://root:MyBadUrlSecret7@127.0.0.1/test?no_such_option=1",
        "mysqlx://root:MyBadUrlSecret7@127.0.0.1/test",
    ] {
        let err = MysqlManager::new(bad).unwrap_err();
        assert_clean("mysql bad url Display", &err.to_string());
        assert_clean("mysql bad url Debug", &format!("{err:?}"));
    }

    // A real server refusing a wrong password (when one is reachable).
    if let Some(server) = common_servers::my::server("adapter_secrets mysql") {
        let opts = server.opts_for("root").pass(Some("MyServerSecret8"));
        let m = MysqlManager::from_opts(opts);
        let e = m.connect().unwrap_err();
        assert!(e.to_string().contains("Access denied"), "{e}");
        assert_clean("mysql auth error", &format!("{e} {e:?}"));
        check_pool("mysql wrong password", m);
    }

    // r2d2: the wrapped manager's own Debug is never used.
    let inner = R2d2WithPassword {
        password: "R2d2Secret9".to_owned(),
    };
    assert!(format!("{inner:?}").contains(&inner.password));
    check_pool("r2d2", cistern::r2d2::R2d2Manager::new(inner));

    // Everything logged meanwhile, by the pool or the adapters.
    let lines = log_capture::all();
    assert!(
        lines.iter().any(|l| l.text.contains("connect failed")),
        "the failed connects were not logged"
    );
    for line in lines {
        assert_clean("a log line", &line.text);
    }
}
