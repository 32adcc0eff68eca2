//! Finding the socket of a `postgres::Client`, so that `is_broken` can peek
//! at it.
//!
//! The blocking client hides its socket inside a private tokio runtime, and
//! reads it only during calls: `is_closed()` stays `false` after the server
//! killed the session. So, once per connect (Linux only):
//!
//! 1. before the connect, list the socket inodes this process has open
//!    (`/proc/self/fd/*` links read `socket:[inode]`);
//! 2. after it, take the sockets that are new and whose peer is the server
//!    asked for (TCP: one of the configured ports; Unix: the server's socket
//!    path `<dir>/.s.PGSQL.<port>`);
//! 3. if more than one is left (another connect ran at the same time), keep
//!    the one whose local port is the server's `inet_client_port()`;
//! 4. duplicate it with `pidfd_getfd` (an [`OwnedFd`] of our own: no unsafe
//!    code, and the descriptor can never be closed or reused under us) and
//!    check that the duplicate is the same inode.
//!
//! Anything unclear (no `/proc`, `pidfd_getfd` refused, two candidates left)
//! means no socket: `is_broken` then relies on `is_closed()` alone and the
//! pre-ping does the rest. A wrong pick is harmless (the descriptor is our
//! own duplicate): at worst a needless ping or a needless reconnect.
//!
//! Cost: the listing reads one link per open descriptor, twice per connect
//! (about 100 µs for a few dozen descriptors); the peek itself is one
//! `recv` system call.

use std::collections::HashSet;
#[cfg(target_os = "linux")]
use std::net::SocketAddr;
use std::path::PathBuf;

use rustix::fd::OwnedFd;

use crate::backends::peek::{self, Peek};

/// Where the client was told to connect, to recognise its socket.
#[derive(Debug, Clone, Default)]
pub(crate) struct Expected {
    /// TCP ports of the configured hosts.
    pub(crate) tcp_ports: Vec<u16>,
    /// Socket paths of the configured Unix-socket directories.
    pub(crate) unix_paths: Vec<PathBuf>,
}

/// Our own duplicate of a client's socket descriptor.
#[derive(Debug)]
pub(crate) struct SocketProbe {
    fd: OwnedFd,
}

impl SocketProbe {
    /// Looks at the socket without reading or waiting.
    pub(crate) fn peek(&self) -> Peek {
        peek::peek(&self.fd)
    }

    /// Shuts the socket down both ways, so that a client blocked on it (or
    /// about to wait for a response in its `Drop`) sees end of file.
    pub(crate) fn shutdown(&self) {
        // Errors are ignored: it may be shut down already.
        let _ = rustix::net::shutdown(&self.fd, rustix::net::Shutdown::Both);
    }
}

/// Socket inodes open in this process now; `None` where this cannot be
/// known (no `/proc`).
pub(crate) fn socket_inodes() -> Option<HashSet<u64>> {
    #[cfg(target_os = "linux")]
    {
        Some(list_sockets()?.into_iter().map(|(_, ino)| ino).collect())
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// Finds the socket opened since `before` whose peer is `expected`.
/// `client_port` asks the server for the connection's client port; it is
/// called only when several sockets qualify. The error says why none was
/// chosen (for a debug log line).
pub(crate) fn find_new(
    before: &HashSet<u64>,
    expected: &Expected,
    client_port: impl FnOnce() -> Option<u16>,
) -> Result<SocketProbe, String> {
    #[cfg(target_os = "linux")]
    {
        linux::find_new(before, expected, client_port)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (before, expected, client_port);
        Err("socket discovery needs Linux".to_owned())
    }
}

/// `(descriptor, inode)` of every socket open in this process.
#[cfg(target_os = "linux")]
fn list_sockets() -> Option<Vec<(i32, u64)>> {
    let dir = std::fs::read_dir("/proc/self/fd").ok()?;
    let mut out = Vec::new();
    for entry in dir.flatten() {
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(link) = std::fs::read_link(entry.path()) else {
            continue;
        };
        let link = link.to_string_lossy();
        if let Some(ino) = link
            .strip_prefix("socket:[")
            .and_then(|r| r.strip_suffix(']'))
            .and_then(|n| n.parse::<u64>().ok())
        {
            out.push((fd, ino));
        }
    }
    Some(out)
}

#[cfg(target_os = "linux")]
mod linux {
    use super::*;
    use rustix::net::{SocketAddrAny, SocketAddrUnix};
    use rustix::process::{PidfdFlags, PidfdGetfdFlags, getpid, pidfd_getfd, pidfd_open};
    use std::os::unix::ffi::OsStrExt;

    struct Candidate {
        fd: OwnedFd,
        local_port: Option<u16>,
    }

    pub(super) fn find_new(
        before: &HashSet<u64>,
        expected: &Expected,
        client_port: impl FnOnce() -> Option<u16>,
    ) -> Result<SocketProbe, String> {
        let sockets = list_sockets().ok_or("/proc/self/fd cannot be read")?;
        let pidfd = pidfd_open(getpid(), PidfdFlags::empty())
            .map_err(|e| format!("pidfd_open failed: {e}"))?;
        let mut candidates = Vec::new();
        // One socket can have several descriptors (a concurrent discovery
        // in another thread holds duplicates for a moment): each inode is
        // one candidate.
        let mut seen = HashSet::new();
        for (raw, ino) in sockets {
            if before.contains(&ino) || seen.contains(&ino) {
                continue;
            }
            // The descriptor may have been closed (and its number reused)
            // since the listing: the inode check below catches that.
            let fd = match pidfd_getfd(&pidfd, raw, PidfdGetfdFlags::empty()) {
                Ok(fd) => fd,
                Err(rustix::io::Errno::BADF) => continue,
                Err(e) => return Err(format!("pidfd_getfd failed: {e}")),
            };
            if !rustix::fs::fstat(&fd).is_ok_and(|st| st.st_ino == ino) {
                continue;
            }
            seen.insert(ino);
            if let Some(local_port) = matches(&fd, expected) {
                candidates.push(Candidate { fd, local_port });
            }
        }
        match candidates.len() {
            0 => Err("no new socket connected to the server was found".to_owned()),
            1 => Ok(SocketProbe {
                fd: candidates.remove(0).fd,
            }),
            n => {
                let port = client_port()
                    .ok_or_else(|| format!("{n} new sockets to the server and no client port"))?;
                let mut same: Vec<_> = candidates
                    .into_iter()
                    .filter(|c| c.local_port == Some(port))
                    .collect();
                if same.len() == 1 {
                    Ok(SocketProbe {
                        fd: same.remove(0).fd,
                    })
                } else {
                    Err(format!(
                        "{n} new sockets to the server, {} with client port {port}",
                        same.len()
                    ))
                }
            }
        }
    }

    /// `Some(local port)` (`Some(None)` for Unix sockets) when the socket's
    /// peer is one the client was told to use.
    fn matches(fd: &OwnedFd, expected: &Expected) -> Option<Option<u16>> {
        let peer: SocketAddrAny = rustix::net::getpeername(fd).ok()??;
        if let Ok(addr) = SocketAddr::try_from(peer.clone()) {
            if !expected.tcp_ports.contains(&addr.port()) {
                return None;
            }
            let local = rustix::net::getsockname(fd).ok()?;
            return Some(SocketAddr::try_from(local).ok().map(|a| a.port()));
        }
        let unix = SocketAddrUnix::try_from(peer).ok()?;
        let path = unix.path_bytes()?;
        let peer_path = std::path::Path::new(std::ffi::OsStr::from_bytes(path));
        // The server reports the path it bound; the config may name the
        // same directory through a symbolic link (/var/run vs /run).
        let same = |p: &PathBuf| {
            p.as_os_str().as_bytes() == path
                || matches!(
                    (std::fs::canonicalize(p), std::fs::canonicalize(peer_path)),
                    (Ok(a), Ok(b)) if a == b
                )
        };
        expected.unix_paths.iter().any(same).then_some(None)
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn the_new_socket_to_the_expected_port_is_found() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let before = socket_inodes().unwrap();
        let client = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (server, _) = listener.accept().unwrap();
        let expected = Expected {
            tcp_ports: vec![port],
            unix_paths: Vec::new(),
        };
        let probe = find_new(&before, &expected, || None).unwrap();
        assert_eq!(probe.peek(), Peek::Quiet);
        drop(server);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while probe.peek() != Peek::Closed && std::time::Instant::now() < deadline {
            std::thread::yield_now();
        }
        assert_eq!(probe.peek(), Peek::Closed);
        drop(client);
    }

    #[test]
    fn a_socket_with_two_descriptors_is_one_candidate() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let before = socket_inodes().unwrap();
        let client = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let twin = client.try_clone().unwrap();
        let expected = Expected {
            tcp_ports: vec![port],
            unix_paths: Vec::new(),
        };
        let probe = find_new(&before, &expected, || None);
        assert!(probe.is_ok(), "{:?}", probe.err());
        drop((client, twin));
    }

    #[test]
    fn two_new_sockets_are_told_apart_by_client_port_or_refused() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let before = socket_inodes().unwrap();
        let a = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let b = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let expected = Expected {
            tcp_ports: vec![port],
            unix_paths: Vec::new(),
        };
        let err = find_new(&before, &expected, || None).unwrap_err();
        assert!(err.contains("2 new sockets"), "{err}");
        let b_port = b.local_addr().unwrap().port();
        let probe = find_new(&before, &expected, || Some(b_port)).unwrap();
        let (server_a, _) = listener.accept().unwrap();
        let (server_b, _) = listener.accept().unwrap();
        // Closing b's server side shows on the probe; a's does not matter.
        let (b_side, a_side) = if server_a.peer_addr().unwrap().port() == b_port {
            (server_a, server_b)
        } else {
            (server_b, server_a)
        };
        drop(b_side);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while probe.peek() != Peek::Closed && std::time::Instant::now() < deadline {
            std::thread::yield_now();
        }
        assert_eq!(probe.peek(), Peek::Closed);
        drop((a, b, a_side));
    }
}
