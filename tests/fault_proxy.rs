//! The test TCP proxy (`cistern::testing::proxy::FaultProxy`) against an
//! echo server: forwarding, cuts, blackholes, heal, its connection bound,
//! and its shutdown on drop. No database needed.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use cistern::testing::proxy::FaultProxy;

/// An echo server on loopback; runs until the test process ends.
fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut s = s;
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

fn client(proxy: &FaultProxy) -> TcpStream {
    let c = TcpStream::connect(proxy.addr()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c
}

fn echo(c: &mut TcpStream, msg: &[u8]) {
    c.write_all(msg).unwrap();
    let mut buf = vec![0u8; msg.len()];
    c.read_exact(&mut buf).unwrap();
    assert_eq!(buf, msg);
}

/// Whether nothing arrives within `wait` (the read times out).
fn silent_for(c: &mut TcpStream, wait: Duration) -> bool {
    c.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 16];
    let silent = matches!(c.read(&mut buf), Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut));
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    silent
}

/// Whether the connection has ended (end of file or reset).
fn ended(c: &mut TcpStream) -> bool {
    let mut buf = [0u8; 16];
    match c.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
    }
}

#[test]
fn forwards_both_ways() {
    let proxy = FaultProxy::start(echo_server()).unwrap();
    assert!(proxy.addr().ip().is_loopback());
    let mut c = client(&proxy);
    echo(&mut c, b"hello");
    echo(&mut c, &[7u8; 100_000]);
    assert_eq!(proxy.connections(), 1);
    assert_eq!(proxy.accepted(), 1);
}

#[test]
fn cut_all_ends_every_connection_and_lets_new_ones_through() {
    let proxy = FaultProxy::start(echo_server()).unwrap();
    let mut a = client(&proxy);
    let mut b = client(&proxy);
    echo(&mut a, b"a");
    echo(&mut b, b"b");
    assert_eq!(proxy.cut_all(), 2);
    assert!(ended(&mut a));
    assert!(ended(&mut b));
    let mut c = client(&proxy);
    echo(&mut c, b"after the cut");
    assert_eq!(proxy.cut_count(), 2);
}

#[test]
fn blackholed_new_connections_are_accepted_never_answered_and_closed_on_heal() {
    let proxy = FaultProxy::start(echo_server()).unwrap();
    let mut old = client(&proxy);
    echo(&mut old, b"before");
    proxy.blackhole_new();
    let mut c = client(&proxy);
    c.write_all(b"anyone there?").unwrap();
    assert!(silent_for(&mut c, Duration::from_millis(300)));
    // Established connections are not affected.
    echo(&mut old, b"still fine");
    proxy.heal();
    assert!(ended(&mut c));
    let mut fresh = client(&proxy);
    echo(&mut fresh, b"healed");
}

#[test]
fn blackholed_established_connections_stall_then_resume_on_heal() {
    let proxy = FaultProxy::start(echo_server()).unwrap();
    let mut c = client(&proxy);
    echo(&mut c, b"before");
    assert_eq!(proxy.blackhole_established(), 1);
    c.write_all(b"queued").unwrap();
    assert!(silent_for(&mut c, Duration::from_millis(300)));
    // New connections still go through.
    let mut other = client(&proxy);
    echo(&mut other, b"new one");
    proxy.heal();
    let mut buf = [0u8; 6];
    c.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"queued");
}

#[test]
fn connections_beyond_the_bound_are_closed_at_once() {
    let proxy = FaultProxy::with_max_connections(echo_server(), 2).unwrap();
    let mut a = client(&proxy);
    let mut b = client(&proxy);
    echo(&mut a, b"a");
    echo(&mut b, b"b");
    let mut c = client(&proxy);
    assert!(ended(&mut c));
    assert_eq!(proxy.connections(), 2);
    assert!(FaultProxy::with_max_connections(echo_server(), 0).is_err());
}

#[test]
fn dropping_the_proxy_closes_its_connections() {
    let proxy = FaultProxy::start(echo_server()).unwrap();
    let addr = proxy.addr();
    let mut c = client(&proxy);
    echo(&mut c, b"x");
    proxy.blackhole_established();
    drop(proxy);
    assert!(ended(&mut c));
    // Nothing listens any more.
    assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err());
}
