//! Which sockets listen on a TCP port: the inodes [`super::listens_on`] matches against an
//! instance's descriptors.
//!
//! Asked of the kernel's socket-diagnostics netlink interface (`sock_diag(7)`) for listening
//! sockets only, which walks the listening table alone. `/proc/net/tcp` (the fallback) prints
//! every socket, TIME_WAIT ones included: a gateway that has served many short connections has
//! tens of thousands of those, and reading the file then took 45 ms (20,000 TIME_WAIT sockets)
//! to 150 ms, on every cold start, on the control plane's thread.

use rustix::net::netlink::{SocketAddrNetlink, SOCK_DIAG};
use rustix::net::sockopt::{set_socket_timeout, Timeout};
use rustix::net::{recv, sendto, socket_with, AddressFamily, RecvFlags, SendFlags};
use rustix::net::{SocketFlags, SocketType};
use std::time::Duration;

/// Inodes of the TCP sockets listening on `port` (IPv4 and IPv6); `None` when neither the
/// kernel nor `/proc/net` can tell.
pub(super) fn listening_inodes(port: u16) -> Option<Vec<u64>> {
    sock_diag_listening_inodes(port).or_else(|| proc_net_listening_inodes(port))
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
/// In `struct inet_diag_msg`: the source port (network order) after family, state, timer and
/// retransmits; the inode after the 48-byte socket id and four `u32`s (expires, queues, uid).
const MSG_SPORT_AT: usize = 4;
const MSG_INODE_AT: usize = 4 + 48 + 16;

/// Listening sockets on `port`, by a `SOCK_DIAG_BY_FAMILY` dump per address family. `None` if
/// netlink is unavailable or refuses (a seccomp profile, an old kernel).
fn sock_diag_listening_inodes(port: u16) -> Option<Vec<u64>> {
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
                        if let Some(inode) = listening_on(body, port) {
                            found.push(inode);
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

/// The inode of one `inet_diag_msg`, if its socket's local port is `port`.
fn listening_on(msg: &[u8], port: u16) -> Option<u64> {
    let sport = u16::from_be_bytes(msg.get(MSG_SPORT_AT..MSG_SPORT_AT + 2)?.try_into().ok()?);
    let inode = u32::from_ne_bytes(msg.get(MSG_INODE_AT..MSG_INODE_AT + 4)?.try_into().ok()?);
    (sport == port).then_some(u64::from(inode))
}

/// The same from `/proc/net/tcp{,6}`: right, but as slow as the table is long.
fn proc_net_listening_inodes(port: u16) -> Option<Vec<u64>> {
    let mut found = Vec::new();
    let mut readable = false;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        readable = true;
        found.extend(proc_net_listeners(&text, port));
    }
    readable.then_some(found)
}

/// Inodes of the LISTEN rows on `port` in one `/proc/net/tcp`-format table.
fn proc_net_listeners(table: &str, port: u16) -> Vec<u64> {
    let mut found = Vec::new();
    for line in table.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
        if fields.len() < 10 || fields[3] != "0A" {
            continue;
        }
        let local_port = fields[1]
            .rsplit_once(':')
            .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
        if local_port == Some(port) {
            if let Ok(inode) = fields[9].parse() {
                found.push(inode);
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv6Addr, TcpListener, TcpStream};
    use std::os::unix::fs::MetadataExt as _;

    /// The inode behind a socket, as `/proc/self/fd` shows it.
    fn inode_of(socket: &impl std::os::fd::AsRawFd) -> u64 {
        std::fs::metadata(format!("/proc/self/fd/{}", socket.as_raw_fd()))
            .expect("fd")
            .ino()
    }

    #[test]
    fn the_kernel_names_ipv4_and_ipv6_listeners_and_nothing_else() {
        let v4 = TcpListener::bind(("127.0.0.1", 0)).expect("binds");
        let v4_port = v4.local_addr().expect("bound").port();
        // Without an IPv6 loopback here, the IPv4 half still runs.
        let v6 = TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).ok();
        // A connected socket on the listener's port is not listening.
        let client = TcpStream::connect(v4.local_addr().expect("bound")).expect("connects");
        let (served, _) = v4.accept().expect("accepts");

        let got = sock_diag_listening_inodes(v4_port).expect("sock_diag answers");
        assert_eq!(
            got,
            vec![inode_of(&v4)],
            "only the listener, not the accepted socket"
        );
        assert_ne!(inode_of(&served), inode_of(&v4));
        if let Some(v6) = &v6 {
            let v6_port = v6.local_addr().expect("bound").port();
            let got = sock_diag_listening_inodes(v6_port).expect("sock_diag answers");
            assert!(got.contains(&inode_of(v6)), "the IPv6 listener: {got:?}");
        }
        drop((client, served));

        // And it agrees with /proc/net.
        assert_eq!(
            proc_net_listening_inodes(v4_port).expect("/proc/net readable"),
            vec![inode_of(&v4)]
        );
        drop(v4);
        assert_eq!(sock_diag_listening_inodes(v4_port), Some(vec![]));
    }

    #[test]
    fn a_dump_of_many_listeners_spans_several_reads() {
        // Enough listeners that the dump does not fit in one 32 KiB read (72 bytes each).
        let listeners: Vec<TcpListener> = (0..600)
            .map(|_| TcpListener::bind(("127.0.0.1", 0)).expect("binds"))
            .collect();
        for l in [&listeners[0], &listeners[599]] {
            let port = l.local_addr().expect("bound").port();
            assert_eq!(sock_diag_listening_inodes(port), Some(vec![inode_of(l)]));
        }
    }

    #[test]
    fn proc_net_rows_other_than_listen_are_skipped() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0 100 0 0 10 0\n\
   1: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 4343 1 0 20 4 30 10 -1\n\
   2: 0100007F:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4444 1 0 100 0 0 10 0\n";
        assert_eq!(proc_net_listeners(table, 0x1F90), vec![4242]);
        assert_eq!(proc_net_listeners(table, 0x1F91), vec![4444]);
        assert!(proc_net_listeners(table, 80).is_empty());
    }
}
