//! The counters every thread *and every shard process* of one run shares, in one memory mapping.
//!
//! Why shared memory: the delivery accounting (see `accounting`) reads the publisher's per-topic
//! counters at the moment a subscription starts or ends and, for an out-of-order arrival, the acked
//! prefix at the time a seq was sent. When the clients are spread over several processes (see
//! `shard`) those reads must see the publisher's values of *now*, not a copy shipped over a pipe, or
//! the lost/duplicated/reordered verdicts would stop being exact. So the publisher's counters, the
//! workers' live counters (which the coordinator polls) and the global client index live in a
//! `memfd` mapping: the parent creates it, shard processes inherit the descriptor and map the same
//! pages. In a single-process run the mapping is simply not shared: one code path either way.
//!
//! Everything in the mapping is an atomic written by exactly one thread (or a `fetch_add`), and an
//! all-zero page is a valid initial value for every field, so the fresh `ftruncate`d file needs no
//! initialisation. The mapping lives as long as the process (it is leaked on purpose: the threads
//! hold `&'static` references into it).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, AtomicU64};

use crate::shared::WorkerStats;

/// Per-topic publish counters (written by the publisher only).
#[derive(Debug, Default)]
#[repr(C)]
pub struct TopicCounters {
    /// First seq not yet sent: every seq below it has been handed to a request.
    pub next: AtomicU64,
    /// Every seq below it has been answered (successfully or not).
    pub acked: AtomicU64,
}

/// Sizes that fix the mapping's layout; the parent and its shards compute the same one from the
/// same command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Worker slots over all processes.
    pub workers: usize,
    pub topics: usize,
    /// Seqs per topic whose `lag_at_send` is kept (see [`Region::lag`]).
    pub lag_cap: usize,
}

/// Total `lag_at_send` entries over all topics: 4 bytes each, 256 MiB of *address space* at most;
/// only the pages of seqs actually sent are ever touched.
const LAG_ENTRIES: usize = 1 << 26;

impl Layout {
    pub fn new(workers: usize, topics: usize) -> Layout {
        let topics = topics.max(1);
        Layout {
            workers: workers.max(1),
            topics,
            lag_cap: (LAG_ENTRIES / topics).max(1 << 12),
        }
    }

    const HEADER: usize = 128;

    fn stats_off(&self) -> usize {
        Self::HEADER
    }

    fn topics_off(&self) -> usize {
        self.stats_off() + self.workers * size_of::<WorkerStats>()
    }

    fn lags_off(&self) -> usize {
        self.topics_off() + self.topics * size_of::<TopicCounters>()
    }

    fn len(&self) -> usize {
        self.lags_off() + self.topics * self.lag_cap * size_of::<AtomicU32>()
    }
}

/// The mapped counters of one run.
#[derive(Debug)]
pub struct Region {
    fd: OwnedFd,
    base: *mut u8,
    layout: Layout,
}

// SAFETY: the mapping is only accessed through atomics.
unsafe impl Send for Region {}
// SAFETY: as above.
unsafe impl Sync for Region {}

impl Region {
    /// Creates the mapping (the parent). The descriptor is inheritable (no close-on-exec) so that
    /// shard processes started afterwards find it under the same number.
    pub fn create(layout: Layout) -> io::Result<&'static Region> {
        // SAFETY: a valid C string and flags.
        let fd = unsafe { libc::memfd_create(c"ringcast-loadgen".as_ptr(), 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let len = libc::off_t::try_from(layout.len()).map_err(io::Error::other)?;
        // SAFETY: a valid descriptor.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), len) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Self::map(fd, layout)
    }

    /// Maps the parent's region in a shard, from the inherited descriptor `fd`.
    pub fn open(fd: RawFd, layout: Layout) -> io::Result<&'static Region> {
        // SAFETY: an fstat out-parameter.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: valid pointer; fails cleanly on a bad descriptor.
        if unsafe { libc::fstat(fd, &mut st) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fstat proved the descriptor open; from here on we own it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        if usize::try_from(st.st_size).ok() != Some(layout.len()) {
            return Err(io::Error::other(format!(
                "shared counters: descriptor {} is {} bytes, expected {} (parent and shard disagree on the layout)",
                fd.as_raw_fd(),
                st.st_size,
                layout.len()
            )));
        }
        Self::map(fd, layout)
    }

    fn map(fd: OwnedFd, layout: Layout) -> io::Result<&'static Region> {
        // SAFETY: a shared read/write mapping of a file of exactly this length.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                layout.len(),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Box::leak(Box::new(Region {
            fd,
            base: p.cast(),
            layout,
        })))
    }

    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// # Safety
    /// `off` is inside the mapping and aligned for `T`, and `T` is made of atomics that are valid
    /// when zeroed.
    unsafe fn at<T>(&self, off: usize) -> &T {
        debug_assert!(off + size_of::<T>() <= self.layout.len());
        debug_assert!(off.is_multiple_of(align_of::<T>()));
        // SAFETY: guaranteed by the caller; the mapping is never unmapped.
        unsafe { &*self.base.add(off).cast::<T>() }
    }

    /// The next global client index (initial clients are 0..N; churn joins continue from there).
    pub fn next_client(&self) -> &AtomicU64 {
        // SAFETY: the header's first word; the mapping is page-aligned.
        unsafe { self.at(0) }
    }

    /// Worker slot `i`'s live counters (a shard's workers own slots `first..first + threads`).
    pub fn worker_stats(&self, i: usize) -> &WorkerStats {
        assert!(i < self.layout.workers, "worker slot {i} out of range");
        // SAFETY: in range (checked); the size of WorkerStats is a multiple of its alignment.
        unsafe { self.at(self.layout.stats_off() + i * size_of::<WorkerStats>()) }
    }

    pub fn topic(&self, t: usize) -> &TopicCounters {
        assert!(t < self.layout.topics, "topic {t} out of range");
        // SAFETY: in range; 8-byte aligned (all offsets before are multiples of 8).
        unsafe { self.at(self.layout.topics_off() + t * size_of::<TopicCounters>()) }
    }

    /// For each seq `s` of topic `t` below `lag_cap`: `s - acked` at the moment `s` was sent (how far
    /// the acked prefix lagged behind; 0 when publishing one at a time). Lets a receiver tell a real
    /// reorder from two publishes that were in flight together (see `accounting`). `None` past the
    /// capacity, where the accounting is lenient.
    pub fn lag(&self, t: usize, s: u64) -> Option<&AtomicU32> {
        let s = usize::try_from(s)
            .ok()
            .filter(|s| *s < self.layout.lag_cap)?;
        assert!(t < self.layout.topics, "topic {t} out of range");
        let i = t * self.layout.lag_cap + s;
        // SAFETY: in range; 4-byte aligned.
        Some(unsafe { self.at(self.layout.lags_off() + i * size_of::<AtomicU32>()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn a_second_mapping_sees_the_same_counters() {
        let layout = Layout::new(3, 2);
        let a = Region::create(layout).unwrap();
        // SAFETY: dup of a valid descriptor; `open` takes ownership of the copy.
        let dup = unsafe { libc::dup(a.fd()) };
        let b = Region::open(dup, layout).unwrap();
        a.topic(1).next.store(7, Ordering::Release);
        a.lag(1, 5).unwrap().store(2, Ordering::Relaxed);
        a.worker_stats(2).events.store(11, Ordering::Relaxed);
        a.next_client().fetch_add(4, Ordering::Relaxed);
        assert_eq!(b.topic(1).next.load(Ordering::Acquire), 7);
        assert_eq!(b.topic(0).next.load(Ordering::Acquire), 0);
        assert_eq!(b.lag(1, 5).unwrap().load(Ordering::Relaxed), 2);
        assert_eq!(b.worker_stats(2).events.load(Ordering::Relaxed), 11);
        assert_eq!(b.next_client().load(Ordering::Relaxed), 4);
        assert!(b.lag(0, layout.lag_cap as u64).is_none());
    }

    #[test]
    fn a_layout_mismatch_is_an_error() {
        let a = Region::create(Layout::new(1, 1)).unwrap();
        // SAFETY: as above.
        let dup = unsafe { libc::dup(a.fd()) };
        assert!(Region::open(dup, Layout::new(2, 1)).is_err());
    }
}
