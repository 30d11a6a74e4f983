//! TCP sockets listening on a port, and their inodes, from the kernel: the proxy checks that
//! its listeners are bound (`/ready`), the controller that a local instance's port is the
//! instance's own (matching inodes against `/proc/PID/fd`).
//!
//! Asked of the kernel's socket-diagnostics netlink interface (`sock_diag(7)`) for listening
//! sockets only, which walks the listening table alone. `/proc/net/tcp` (the fallback) prints
//! every socket, TIME_WAIT ones included: a machine that has served many short connections has
//! tens of thousands of those, and reading the file then took 45 ms (20,000 TIME_WAIT sockets)
//! to 150 ms, once per local instance's cold start and per listener at the proxy's start.

use rustix::net::netlink::{SocketAddrNetlink, SOCK_DIAG};
use rustix::net::sockopt::{set_socket_timeout, Timeout};
use rustix::net::{recv, sendto, socket_with, AddressFamily, RecvFlags, SendFlags};
use rustix::net::{SocketFlags, SocketType};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// One listening TCP socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListeningSocket {
    /// The address it is bound to (unspecified for all addresses).
    pub addr: SocketAddr,
    /// Its inode: `/proc/PID/fd/N` links to `socket:[inode]`.
    pub inode: u64,
}

/// The TCP sockets listening on `port` (IPv4 and IPv6); `None` when neither the kernel nor
/// `/proc/net` can tell.
pub fn listening_sockets(port: u16) -> Option<Vec<ListeningSocket>> {
    sock_diag_listening(port).or_else(|| proc_net_listening(port))
}

/// Whether process `pid` holds one of `sockets` as an open descriptor (`/proc/PID/fd/N` links to
/// `socket:[inode]`).
pub fn held_by(pid: u32, sockets: &[ListeningSocket]) -> bool {
    if sockets.is_empty() {
        return false;
    }
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path()).is_ok_and(|link| {
            link.to_str()
                .and_then(|l| l.strip_prefix("socket:[")?.strip_suffix(']'))
                .and_then(|inode| inode.parse::<u64>().ok())
                .is_some_and(|inode| sockets.iter().any(|s| s.inode == inode))
        })
    })
}

// linux/netlink.h, linux/sock_diag.h, linux/inet_diag.h: the kernel's ABI.
const NLMSG_HEADER_LEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const IPPROTO_TCP: u8 = 6;
const TCP_LISTEN: u32 = 10;
/// `struct inet_diag_req_v2`: family, protocol, extensions, pad, state mask, then a 48-byte
/// `inet_diag_sockid` (all zero: no filter by address).
const REQUEST_LEN: usize = 8 + 48;
/// In `struct inet_diag_msg`: the family first; the source port (network order) after family,
/// state, timer and retransmits, then the destination port and the source address (16 bytes,
/// an IPv4 one in the first 4); the inode after the 48-byte socket id and four `u32`s
/// (expires, queues, uid).
const MSG_SPORT_AT: usize = 4;
const MSG_SRC_AT: usize = 8;
const MSG_INODE_AT: usize = 4 + 48 + 16;

/// Listening sockets on `port`, by a `SOCK_DIAG_BY_FAMILY` dump per address family. `None` if
/// netlink is unavailable or refuses (a seccomp profile, an old kernel).
fn sock_diag_listening(port: u16) -> Option<Vec<ListeningSocket>> {
    let fd = socket_with(
        AddressFamily::NETLINK,
        SocketType::DGRAM,
        SocketFlags::CLOEXEC,
        Some(SOCK_DIAG),
    )
    .ok()?;
    // A dump answers at once; this only bounds a kernel that never does.
    set_socket_timeout(&fd, Timeout::Recv, Some(Duration::from_secs(1))).ok()?;
    let kernel = SocketAddrNetlink::new(0, 0);
    let mut found = Vec::new();
    let mut buf = vec![0u8; 32 * 1024];
    for (seq, family) in [(1u32, AddressFamily::INET), (2, AddressFamily::INET6)] {
        let request = dump_request(seq, family);
        sendto(&fd, &request, SendFlags::empty(), &kernel).ok()?;
        'dump: loop {
            let (_, len) = recv(&fd, &mut buf[..], RecvFlags::empty()).ok()?;
            let mut rest = buf.get(..len)?;
            while rest.len() >= NLMSG_HEADER_LEN {
                let msg_len = u32::from_ne_bytes(rest[0..4].try_into().ok()?) as usize;
                let msg_type = u16::from_ne_bytes(rest[4..6].try_into().ok()?);
                if msg_len < NLMSG_HEADER_LEN || msg_len > rest.len() {
                    return None;
                }
                let body = &rest[NLMSG_HEADER_LEN..msg_len];
                match msg_type {
                    NLMSG_DONE => break 'dump,
                    NLMSG_ERROR => return None,
                    _ => {
                        if let Some(socket) = listening_on(body, port) {
                            found.push(socket);
                        }
                    }
                }
                // Messages are 4-byte aligned.
                rest = rest.get(msg_len.next_multiple_of(4)..).unwrap_or_default();
            }
            if len == 0 {
                return None;
            }
        }
    }
    Some(found)
}

/// A netlink message asking for every listening TCP socket of `family`.
fn dump_request(seq: u32, family: AddressFamily) -> Vec<u8> {
    let total = NLMSG_HEADER_LEN + REQUEST_LEN;
    let mut msg = Vec::with_capacity(total);
    msg.extend_from_slice(&u32::try_from(total).unwrap_or(u32::MAX).to_ne_bytes());
    msg.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    msg.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    msg.extend_from_slice(&seq.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it in
    msg.push(u8::try_from(family.as_raw()).unwrap_or(0));
    msg.push(IPPROTO_TCP);
    msg.push(0); // no extensions
    msg.push(0);
    msg.extend_from_slice(&(1u32 << TCP_LISTEN).to_ne_bytes());
    msg.resize(total, 0); // the socket id: no filter
    msg
}

/// The socket one `inet_diag_msg` describes, if its local port is `port`.
fn listening_on(msg: &[u8], port: u16) -> Option<ListeningSocket> {
    let sport = u16::from_be_bytes(msg.get(MSG_SPORT_AT..MSG_SPORT_AT + 2)?.try_into().ok()?);
    if sport != port {
        return None;
    }
    let src: [u8; 16] = msg.get(MSG_SRC_AT..MSG_SRC_AT + 16)?.try_into().ok()?;
    let ip = if u16::from(*msg.first()?) == AddressFamily::INET6.as_raw() {
        IpAddr::V6(Ipv6Addr::from(src))
    } else {
        IpAddr::V4(Ipv4Addr::new(src[0], src[1], src[2], src[3]))
    };
    let inode = u32::from_ne_bytes(msg.get(MSG_INODE_AT..MSG_INODE_AT + 4)?.try_into().ok()?);
    Some(ListeningSocket {
        addr: SocketAddr::new(ip, port),
        inode: u64::from(inode),
    })
}

/// The same from `/proc/net/tcp{,6}`: right, but as slow as the table is long.
fn proc_net_listening(port: u16) -> Option<Vec<ListeningSocket>> {
    let mut found = Vec::new();
    let mut readable = false;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        readable = true;
        found.extend(proc_net_listeners(&text, port));
    }
    // A kernel may print a listening socket twice (6.18 does so for IPv4 listeners).
    found.sort_by_key(|s| s.inode);
    found.dedup();
    readable.then_some(found)
}

/// The LISTEN rows on `port` in one `/proc/net/tcp`-format table.
fn proc_net_listeners(table: &str, port: u16) -> Vec<ListeningSocket> {
    let mut found = Vec::new();
    for line in table.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
        if fields.len() < 10 || fields[3] != "0A" {
            continue;
        }
        let Some((ip, local_port)) = fields[1].rsplit_once(':') else {
            continue;
        };
        if u16::from_str_radix(local_port, 16).ok() != Some(port) {
            continue;
        }
        if let (Some(ip), Ok(inode)) = (proc_net_ip(ip), fields[9].parse()) {
            found.push(ListeningSocket {
                addr: SocketAddr::new(ip, port),
                inode,
            });
        }
    }
    found
}

/// An address as `/proc/net/tcp{,6}` prints it: the address's 32-bit words in turn, each as
/// the host-order number its bytes make.
fn proc_net_ip(hex: &str) -> Option<IpAddr> {
    let mut bytes = Vec::with_capacity(16);
    for word in hex.as_bytes().chunks(8) {
        let word = u32::from_str_radix(std::str::from_utf8(word).ok()?, 16).ok()?;
        bytes.extend_from_slice(&word.to_ne_bytes());
    }
    match bytes.len() {
        4 => Some(IpAddr::V4(Ipv4Addr::new(
            bytes[0], bytes[1], bytes[2], bytes[3],
        ))),
        16 => Some(IpAddr::V6(Ipv6Addr::from(
            <[u8; 16]>::try_from(bytes).ok()?,
        ))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};
    use std::os::unix::fs::MetadataExt as _;

    /// The listening socket a listener is, as the kernel should name it.
    fn named(listener: &TcpListener) -> ListeningSocket {
        use std::os::fd::AsRawFd as _;
        let inode = std::fs::metadata(format!("/proc/self/fd/{}", listener.as_raw_fd()))
            .expect("fd")
            .ino();
        ListeningSocket {
            addr: listener.local_addr().expect("bound"),
            inode,
        }
    }

    #[test]
    fn the_kernel_names_ipv4_and_ipv6_listeners_and_nothing_else() {
        let v4 = TcpListener::bind(("127.0.0.1", 0)).expect("binds");
        let port = v4.local_addr().expect("bound").port();
        // The same port on IPv6's loopback (skipped where there is none) and on another IPv4
        // loopback address: the answer names all three, each with its own address.
        let v6 = TcpListener::bind((Ipv6Addr::LOCALHOST, port)).ok();
        let other = TcpListener::bind(("127.0.0.2", port)).expect("binds 127.0.0.2");
        // A connected socket on the listener's port is not listening.
        let client = TcpStream::connect(v4.local_addr().expect("bound")).expect("connects");
        let (served, _) = v4.accept().expect("accepts");

        let mut want = vec![named(&v4), named(&other)];
        want.extend(v6.as_ref().map(named));
        want.sort_by_key(|s| s.inode);
        let mut got = sock_diag_listening(port).expect("sock_diag answers");
        got.sort_by_key(|s| s.inode);
        assert_eq!(got, want, "the listeners only, not the accepted socket");
        assert!(want.iter().all(|s| s.addr.port() == port));
        drop((client, served));

        // /proc/net says the same.
        let mut from_proc = proc_net_listening(port).expect("/proc/net readable");
        from_proc.sort_by_key(|s| s.inode);
        assert_eq!(from_proc, want);
        drop((v4, v6, other));
        assert_eq!(listening_sockets(port), Some(vec![]));
    }

    #[test]
    fn a_socket_is_held_by_the_process_whose_descriptor_it_is() {
        let listener = TcpListener::bind(("127.0.0.1", 0)).expect("binds");
        let mine = named(&listener);
        assert!(held_by(std::process::id(), &[mine]));
        let not_mine = ListeningSocket { inode: 0, ..mine };
        assert!(!held_by(std::process::id(), &[not_mine]));
        assert!(!held_by(std::process::id(), &[]));
        // PID 1 is not this test: it does not hold this process's socket.
        assert!(!held_by(1, &[mine]));
    }

    #[test]
    fn a_dump_of_many_listeners_spans_several_reads() {
        // Enough listeners that the dump does not fit in one 32 KiB read (a header and a
        // 72-byte `inet_diag_msg` each, at least 88 bytes).
        let listeners: Vec<TcpListener> = (0..600)
            .map(|_| TcpListener::bind(("127.0.0.1", 0)).expect("binds"))
            .collect();
        for l in [&listeners[0], &listeners[599]] {
            let port = l.local_addr().expect("bound").port();
            assert_eq!(sock_diag_listening(port), Some(vec![named(l)]));
        }
    }

    #[test]
    fn proc_net_rows_other_than_listen_are_skipped_and_addresses_read() {
        let v4 = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0 100 0 0 10 0\n\
   1: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 4343 1 0 20 4 30 10 -1\n\
   2: 00000000:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4444 1 0 100 0 0 10 0\n";
        let at = |addr: &str, inode| ListeningSocket {
            addr: addr.parse().expect("address"),
            inode,
        };
        assert_eq!(
            proc_net_listeners(v4, 0x1F90),
            vec![at("127.0.0.1:8080", 4242)]
        );
        assert_eq!(
            proc_net_listeners(v4, 0x1F91),
            vec![at("0.0.0.0:8081", 4444)]
        );
        assert!(proc_net_listeners(v4, 80).is_empty());
        let v6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5151 1 0 100 0 0 10 0\n";
        assert_eq!(proc_net_listeners(v6, 0x1F90), vec![at("[::1]:8080", 5151)]);
    }
}
