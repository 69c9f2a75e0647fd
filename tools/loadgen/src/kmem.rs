//! Machine-wide kernel memory around the idle hold: what the *kernel* spends per connection, which
//! no process's RSS shows (socket structs, inodes, dentries, files, socket buffers).
//!
//! Sources: `/proc/meminfo` (`Slab`, `SUnreclaim`), `/proc/net/sockstat` (`TCP … mem`, pages of
//! socket buffers) and, when readable, `/proc/slabinfo` (bytes = objects × object size of the caches
//! a TCP connection touches). All of it is machine-wide: other processes contribute noise, so the
//! figures are meaningful for thousands of connections, not ten. On loopback each connection has
//! *both* ends in this kernel (the client socket and the server's accepted one): the report divides by
//! connections, i.e. per client–server pair.

use std::collections::BTreeMap;
use std::fs;

use serde::Serialize;

/// Slab caches reported one by one (prefix match, so `kmalloc-` covers every size class).
const CACHES: &[&str] = &[
    "TCP",
    "sock_inode_cache",
    "dentry",
    "filp",
    "eventpoll_",
    "skbuff_",
    "kmalloc-",
    "selinux",
];

/// One sample.
#[derive(Debug, Clone, Default, Serialize)]
pub struct KernelMem {
    pub slab_kb: u64,
    pub sunreclaim_kb: u64,
    /// `/proc/net/sockstat` TCP `mem`, in pages of 4 KiB: socket buffer memory of all TCP sockets.
    pub tcp_mem_pages: Option<u64>,
    /// Bytes (objects × object size) per slab cache of interest; empty when slabinfo is unreadable.
    pub caches: BTreeMap<String, u64>,
}

/// Growth between two samples, per connection.
#[derive(Debug, Clone, Serialize)]
pub struct KernelPerConn {
    pub connections: u64,
    pub before: KernelMem,
    pub after: KernelMem,
    pub slab_bytes_per_conn: f64,
    pub sunreclaim_bytes_per_conn: f64,
    pub tcp_mem_bytes_per_conn: Option<f64>,
    /// Per cache: (after − before) / connections, bytes (may be negative: reclaim, other processes).
    pub caches_bytes_per_conn: BTreeMap<String, f64>,
}

fn meminfo_kb(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// `TCP: inuse 5 orphan 0 tw 0 alloc 7 mem 2` → 2.
fn sockstat_tcp_mem(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("TCP:"))?;
    let mut words = line.split_whitespace();
    words.find(|w| *w == "mem")?;
    words.next()?.parse().ok()
}

/// `name active num objsize …` lines of slabinfo 2.x → bytes per wanted cache.
fn slab_caches(text: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for line in text.lines().skip(2) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(name), Some(num), Some(size)) = (f.first(), f.get(2), f.get(3)) else {
            continue;
        };
        if !CACHES.iter().any(|c| name.starts_with(c)) {
            continue;
        }
        if let (Ok(n), Ok(s)) = (num.parse::<u64>(), size.parse::<u64>()) {
            *out.entry((*name).to_string()).or_insert(0) += n * s;
        }
    }
    out
}

/// Samples the machine now.
pub fn sample() -> KernelMem {
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    KernelMem {
        slab_kb: meminfo_kb(&meminfo, "Slab"),
        sunreclaim_kb: meminfo_kb(&meminfo, "SUnreclaim"),
        tcp_mem_pages: fs::read_to_string("/proc/net/sockstat")
            .ok()
            .and_then(|t| sockstat_tcp_mem(&t)),
        caches: fs::read_to_string("/proc/slabinfo")
            .map(|t| slab_caches(&t))
            .unwrap_or_default(),
    }
}

impl KernelPerConn {
    pub fn between(before: KernelMem, after: KernelMem, connections: u64) -> KernelPerConn {
        let n = connections.max(1) as f64;
        let kb = |a: u64, b: u64| (b as f64 - a as f64) * 1024.0 / n;
        let caches_bytes_per_conn = after
            .caches
            .iter()
            .map(|(k, &b)| {
                let a = before.caches.get(k).copied().unwrap_or(0);
                (k.clone(), (b as f64 - a as f64) / n)
            })
            .collect();
        KernelPerConn {
            connections,
            slab_bytes_per_conn: kb(before.slab_kb, after.slab_kb),
            sunreclaim_bytes_per_conn: kb(before.sunreclaim_kb, after.sunreclaim_kb),
            tcp_mem_bytes_per_conn: before
                .tcp_mem_pages
                .zip(after.tcp_mem_pages)
                .map(|(a, b)| (b as f64 - a as f64) * 4096.0 / n),
            caches_bytes_per_conn,
            before,
            after,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_proc_files() {
        let meminfo =
            "MemTotal: 100 kB\nSlab:     2048 kB\nSReclaimable: 1000 kB\nSUnreclaim: 1048 kB\n";
        assert_eq!(meminfo_kb(meminfo, "Slab"), 2048);
        assert_eq!(meminfo_kb(meminfo, "SUnreclaim"), 1048);
        assert_eq!(meminfo_kb(meminfo, "Nope"), 0);
        let sockstat =
            "sockets: used 10\nTCP: inuse 5 orphan 0 tw 1 alloc 7 mem 12\nUDP: inuse 1 mem 0\n";
        assert_eq!(sockstat_tcp_mem(sockstat), Some(12));
        let slabinfo = "slabinfo - version: 2.1\n# name <active_objs> …\n\
                        TCP 40 50 2368 13 8 : tunables 0 0 0 : slabdata 4 4 0\n\
                        kmalloc-64 100 128 64 64 2 : tunables 0 0 0 : slabdata 2 2 0\n\
                        btrfs_inode 9 9 1000 1 1 : tunables 0 0 0 : slabdata 1 1 0\n";
        let c = slab_caches(slabinfo);
        assert_eq!(c.get("TCP"), Some(&(50 * 2368)));
        assert_eq!(c.get("kmalloc-64"), Some(&(128 * 64)));
        assert!(!c.contains_key("btrfs_inode"));
    }

    #[test]
    fn growth_per_connection() {
        let before = KernelMem {
            slab_kb: 1000,
            sunreclaim_kb: 500,
            tcp_mem_pages: Some(1),
            caches: [("TCP".to_string(), 1000u64)].into(),
        };
        let after = KernelMem {
            slab_kb: 3000,
            sunreclaim_kb: 1500,
            tcp_mem_pages: Some(3),
            caches: [("TCP".to_string(), 5000u64)].into(),
        };
        let d = KernelPerConn::between(before, after, 1024);
        assert_eq!(d.slab_bytes_per_conn, 2000.0);
        assert_eq!(d.sunreclaim_bytes_per_conn, 1000.0);
        assert_eq!(d.tcp_mem_bytes_per_conn, Some(8.0));
        assert_eq!(d.caches_bytes_per_conn["TCP"], 4000.0 / 1024.0);
        assert!(sample().slab_kb > 0);
    }
}
