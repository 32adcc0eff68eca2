//! [`FaultProxy`]: a TCP proxy in front of a real server that breaks the
//! network on command, for outage tests.
//!
//! What each fault looks like to a client:
//!
//! | command | what the client sees |
//! |---|---|
//! | [`FaultProxy::cut_all`] | every open connection ends at once (end of file), as after a server restart or a failover; new connections go through |
//! | [`FaultProxy::blackhole_new`] | new connections are accepted and then never answered (nothing reaches the server) |
//! | [`FaultProxy::blackhole_established`] | open connections stop forwarding in both directions, mid-stream; bytes sent stay queued |
//! | [`FaultProxy::heal`] | forwarding resumes on stalled connections; connections accepted while blackholing are closed (the client's connect fails); new ones go through |
//!
//! A user-space proxy's kernel still acknowledges every packet, so a
//! blackhole here never trips TCP-level timeouts (keepalive,
//! TCP_USER_TIMEOUT): it tests the application-level ones (connect, ping,
//! checkout timeouts).
//!
//! Threads only: one accepting, two per forwarded connection. At most
//! `max_connections` connections are open through the proxy (more are
//! closed as soon as accepted). Dropping the proxy closes every connection
//! and joins every thread.
//!
//! ```
//! use std::io::{Read, Write};
//! use std::net::{TcpListener, TcpStream};
//! use cistern::testing::proxy::FaultProxy;
//!
//! // An echo server stands in for a database.
//! let server = TcpListener::bind("127.0.0.1:0")?;
//! let target = server.local_addr()?;
//! std::thread::spawn(move || {
//!     for s in server.incoming().flatten() {
//!         std::thread::spawn(move || {
//!             let mut s = s;
//!             let mut buf = [0u8; 64];
//!             while let Ok(n) = s.read(&mut buf) {
//!                 if n == 0 || s.write_all(&buf[..n]).is_err() { break; }
//!             }
//!         });
//!     }
//! });
//!
//! let proxy = FaultProxy::start(target)?;
//! let mut c = TcpStream::connect(proxy.addr())?;
//! c.write_all(b"ping")?;
//! let mut buf = [0u8; 4];
//! c.read_exact(&mut buf)?;
//! assert_eq!(&buf, b"ping");
//!
//! proxy.cut_all(); // a "restart": the connection ends
//! assert_eq!(c.read(&mut buf)?, 0);
//! # Ok::<(), std::io::Error>(())
//! ```

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

/// Default bound on connections open through one proxy.
pub const DEFAULT_MAX_CONNECTIONS: usize = 64;

/// How often a forwarding thread looks up from a blocked read to see
/// whether it was stalled, cut or stopped.
const POLL: Duration = Duration::from_millis(20);
/// Longest wait to connect to the target or to write to either side.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// A TCP proxy on `127.0.0.1:<random port>` forwarding to a target, with
/// faults on command. See the [module docs](self).
pub struct FaultProxy {
    addr: SocketAddr,
    target: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

struct Shared {
    state: Mutex<State>,
    /// Signalled when a stall ends or the proxy stops (stalled forwarding
    /// threads wait on it).
    resumed: Condvar,
    stop: AtomicBool,
    max_connections: usize,
}

/// Everything the proxy knows, under `Shared::state`.
///
/// Invariant: `links.len() + held.len() <= max_connections`; every link's
/// two threads are in `threads` until joined.
#[derive(Default)]
struct State {
    blackhole_new: bool,
    links: HashMap<u64, Link>,
    /// Connections accepted while blackholing new ones: never answered.
    held: Vec<TcpStream>,
    threads: Vec<JoinHandle<()>>,
    next_id: u64,
    accepted: u64,
    cut: u64,
}

/// One forwarded connection.
struct Link {
    client: TcpStream,
    upstream: TcpStream,
    /// Forwarding paused (blackholed mid-stream).
    stalled: Arc<AtomicBool>,
}

impl Link {
    fn close(&self) {
        let _ = self.client.shutdown(Shutdown::Both);
        let _ = self.upstream.shutdown(Shutdown::Both);
    }
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.shared.state.lock();
        f.debug_struct("FaultProxy")
            .field("addr", &self.addr)
            .field("target", &self.target)
            .field("forwarding", &st.links.len())
            .field("held", &st.held.len())
            .field("blackhole_new", &st.blackhole_new)
            .finish()
    }
}

impl FaultProxy {
    /// Starts a proxy to `target` on `127.0.0.1:0` (a free port), with at
    /// most [`DEFAULT_MAX_CONNECTIONS`] connections.
    pub fn start(target: impl ToSocketAddrs) -> io::Result<FaultProxy> {
        FaultProxy::with_max_connections(target, DEFAULT_MAX_CONNECTIONS)
    }

    /// Like [`FaultProxy::start`] with another connection bound (at least 1).
    pub fn with_max_connections(
        target: impl ToSocketAddrs,
        max_connections: usize,
    ) -> io::Result<FaultProxy> {
        let target = target.to_socket_addrs()?.next().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "the proxy target resolves to no address",
            )
        })?;
        if max_connections == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "max_connections = 0: expected at least 1",
            ));
        }
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            resumed: Condvar::new(),
            stop: AtomicBool::new(false),
            max_connections,
        });
        let acceptor = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("cistern-proxy-accept".to_owned())
                .spawn(move || accept_loop(listener, target, shared))?
        };
        Ok(FaultProxy {
            addr,
            target,
            shared,
            acceptor: Some(acceptor),
        })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The proxy's port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The address connections are forwarded to.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// Ends every open connection at once (both sides see end of file),
    /// including those held by [`FaultProxy::blackhole_new`]. New
    /// connections are handled as before. Returns how many were cut.
    pub fn cut_all(&self) -> usize {
        let mut st = self.shared.state.lock();
        let n = st.links.len() + st.held.len();
        for (_, link) in st.links.drain() {
            link.close();
        }
        for s in st.held.drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
        st.cut += n as u64;
        drop(st);
        self.shared.resumed.notify_all();
        n
    }

    /// From now on, new connections are accepted and never answered (the
    /// server never hears of them), until [`FaultProxy::heal`].
    pub fn blackhole_new(&self) {
        self.shared.state.lock().blackhole_new = true;
    }

    /// Stops forwarding, both ways, on every connection open now (new ones
    /// are not affected), until [`FaultProxy::heal`]. Returns how many
    /// were stalled.
    pub fn blackhole_established(&self) -> usize {
        let st = self.shared.state.lock();
        for link in st.links.values() {
            link.stalled.store(true, Ordering::SeqCst);
        }
        st.links.len()
    }

    /// Ends every fault: stalled connections forward again, connections
    /// held unanswered are closed, new ones go through.
    pub fn heal(&self) {
        let mut st = self.shared.state.lock();
        st.blackhole_new = false;
        for link in st.links.values() {
            link.stalled.store(false, Ordering::SeqCst);
        }
        for s in st.held.drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
        drop(st);
        self.shared.resumed.notify_all();
    }

    /// Connections open through the proxy now (forwarded or held).
    pub fn connections(&self) -> usize {
        let st = self.shared.state.lock();
        st.links.len() + st.held.len()
    }

    /// Connections accepted since start.
    pub fn accepted(&self) -> u64 {
        self.shared.state.lock().accepted
    }

    /// Connections ended by [`FaultProxy::cut_all`] since start.
    pub fn cut_count(&self) -> u64 {
        self.shared.state.lock().cut
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accepting thread with a connection of our own.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
        let threads = {
            let mut st = self.shared.state.lock();
            for (_, link) in st.links.drain() {
                link.close();
            }
            for s in st.held.drain(..) {
                let _ = s.shutdown(Shutdown::Both);
            }
            std::mem::take(&mut st.threads)
        };
        self.shared.resumed.notify_all();
        for t in threads {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: TcpListener, target: SocketAddr, shared: Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = stream else {
            // EMFILE and the like: back off a little instead of spinning.
            std::thread::sleep(POLL);
            continue;
        };
        let mut st = shared.state.lock();
        st.accepted += 1;
        st.threads.retain(|t| !t.is_finished());
        if st.links.len() + st.held.len() >= shared.max_connections {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        }
        if st.blackhole_new {
            st.held.push(client);
            continue;
        }
        drop(st);
        let Ok(upstream) = TcpStream::connect_timeout(&target, IO_TIMEOUT) else {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        };
        if let Err(e) = start_link(&shared, client, upstream) {
            log::warn!("fault proxy: could not forward a connection: {e}");
        }
    }
}

fn start_link(shared: &Arc<Shared>, client: TcpStream, upstream: TcpStream) -> io::Result<()> {
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    for s in [&client, &upstream] {
        s.set_read_timeout(Some(POLL))?;
        s.set_write_timeout(Some(IO_TIMEOUT))?;
    }
    let stalled = Arc::new(AtomicBool::new(false));
    let link = Link {
        client: client.try_clone()?,
        upstream: upstream.try_clone()?,
        stalled: Arc::clone(&stalled),
    };
    let mut st = shared.state.lock();
    let id = st.next_id;
    st.next_id += 1;
    let directions = [
        (client.try_clone()?, upstream.try_clone()?),
        (upstream, client),
    ];
    st.links.insert(id, link);
    for (i, (from, to)) in directions.into_iter().enumerate() {
        let shared2 = Arc::clone(shared);
        let stalled = Arc::clone(&stalled);
        let spawned = std::thread::Builder::new()
            .name(format!("cistern-proxy-{id}-{i}"))
            .spawn(move || forward(&shared2, id, from, to, &stalled));
        match spawned {
            Ok(t) => st.threads.push(t),
            Err(e) => {
                if let Some(link) = st.links.remove(&id) {
                    link.close();
                }
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Copies `from` to `to` until either side ends, the link is cut or the
/// proxy stops; pauses while the link is stalled. Then closes the link.
fn forward(shared: &Shared, id: u64, mut from: TcpStream, mut to: TcpStream, stalled: &AtomicBool) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        if stalled.load(Ordering::SeqCst) {
            let mut st = shared.state.lock();
            if !st.links.contains_key(&id) {
                break;
            }
            shared.resumed.wait_for(&mut st, POLL);
            continue;
        }
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        // Bytes read just as a stall began are held until it ends, as a
        // network would queue them.
        while stalled.load(Ordering::SeqCst) && !shared.stop.load(Ordering::SeqCst) {
            let mut st = shared.state.lock();
            if !st.links.contains_key(&id) {
                return;
            }
            shared.resumed.wait_for(&mut st, POLL);
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let link = shared.state.lock().links.remove(&id);
    if let Some(link) = link {
        link.close();
    } else {
        let _ = from.shutdown(Shutdown::Both);
        let _ = to.shutdown(Shutdown::Both);
    }
}
