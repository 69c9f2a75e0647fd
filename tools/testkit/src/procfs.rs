//! What the kernel says about a process (`/proc/<pid>/…`) and its sockets (`/proc/net/tcp`):
//! memory, CPU time, open files, a connection's state and queues. Tests that attack the server
//! read these to prove it stays bounded: resident memory that does not grow with the attack, a
//! core that does not spin, descriptors that are given back, connections that really end.
//!
//! Every function answers `None` when the process (or socket) is gone, or the file cannot be
//! read.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

/// Resident set size (`VmRSS` of `/proc/<pid>/status`), in bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// CPU time used so far, user and system, all threads (`utime` + `stime` of `/proc/<pid>/stat`).
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count from after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, so utime (14) and stime (15) are at 11 and 12 here.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as u64 } else { 100 };
    Some(Duration::from_nanos(ticks * 1_000_000_000 / hz))
}

/// Number of open file descriptors (entries of `/proc/<pid>/fd`).
pub fn open_fds(pid: u32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// One TCP socket as the kernel sees it (`/proc/net/tcp`): its state and its queues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpSocket {
    /// `ESTABLISHED`, `FIN-WAIT-1`, … (as `ss` names them).
    pub state: &'static str,
    /// Bytes sent but not acknowledged (or not sent yet, for a zero window).
    pub send_queue: u64,
    pub recv_queue: u64,
}

/// The IPv4 socket with this local and remote address, from `/proc/net/tcp` (every socket of
/// the network namespace: the server's side of a test's connection is `tcp_socket(server,
/// client)`). For many lookups, read the table once with [`tcp_sockets`].
pub fn tcp_socket(local: SocketAddr, remote: SocketAddr) -> Option<TcpSocket> {
    tcp_sockets().remove(&(local, remote))
}

/// Every IPv4 TCP socket of the network namespace, by (local, remote) address.
pub fn tcp_sockets() -> HashMap<(SocketAddr, SocketAddr), TcpSocket> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (tx, rx) = f.get(4)?.split_once(':')?;
            let socket = TcpSocket {
                state: tcp_state_name(u8::from_str_radix(f.get(3)?, 16).ok()?),
                send_queue: u64::from_str_radix(tx, 16).ok()?,
                recv_queue: u64::from_str_radix(rx, 16).ok()?,
            };
            Some(((proc_addr(f.get(1)?)?, proc_addr(f.get(2)?)?), socket))
        })
        .collect()
}

/// `0100007F:1F90` is 127.0.0.1:8080: the address is the 32-bit word in host order, in hex.
fn proc_addr(s: &str) -> Option<SocketAddr> {
    let (ip, port) = s.split_once(':')?;
    let ip = u32::from_str_radix(ip, 16).ok()?.to_ne_bytes();
    Some(SocketAddr::from((ip, u16::from_str_radix(port, 16).ok()?)))
}

fn tcp_state_name(n: u8) -> &'static str {
    match n {
        1 => "ESTABLISHED",
        2 => "SYN-SENT",
        3 => "SYN-RECV",
        4 => "FIN-WAIT-1",
        5 => "FIN-WAIT-2",
        6 => "TIME-WAIT",
        7 => "CLOSE",
        8 => "CLOSE-WAIT",
        9 => "LAST-ACK",
        10 => "LISTEN",
        11 => "CLOSING",
        _ => "UNKNOWN",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process() {
        let pid = std::process::id();
        assert!(rss_bytes(pid).is_some_and(|r| r > 0));
        assert!(cpu_time(pid).is_some());
        assert!(open_fds(pid).is_some_and(|n| n >= 3));
        assert_eq!(rss_bytes(u32::MAX), None);
    }

    #[test]
    fn a_loopback_connection_seen_from_both_ends() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        let (ca, sa) = (c.local_addr().unwrap(), s.local_addr().unwrap());
        assert_eq!(tcp_socket(sa, ca).unwrap().state, "ESTABLISHED");
        assert_eq!(tcp_socket(ca, sa).unwrap().send_queue, 0);
        drop(s);
        let after = tcp_socket(sa, ca).unwrap();
        assert!(after.state.starts_with("FIN-WAIT"), "{after:?}");
    }
}
