//! Parked futures that are not tokio tasks: a slab of them, polled by one
//! task per core, each woken on its own.
//!
//! An idle realtime stream is one small future. As a tokio task it would cost
//! a 256-byte, 128-byte-aligned allocation (which glibc carves out of a
//! larger chunk, leaving fragments), most of it tokio's own header and
//! trailer. Here it costs its slab slot. Each future gets a waker of its own,
//! so only what was woken is polled: the waker is the future's key (and its
//! thread's tag) in a pointer-sized word, and waking it puts the key in this
//! thread's ready list and wakes the driver task. No allocation per waker.
//!
//! The wakers are only meant to be woken on the thread that made them (the
//! core and the io_uring driver that hold them run there); a wake from any
//! other thread is ignored rather than touching this thread's list.

use slab::Slab;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};

// A waker's word holds a thread tag and a key of 32 bits each.
const _: () = assert!(usize::BITS == 64);

/// Tags told to threads as they first park something (0: none yet).
static NEXT_TAG: AtomicU32 = AtomicU32::new(1);

thread_local! {
    static READY: RefCell<Ready> = RefCell::new(Ready {
        tag: NEXT_TAG.fetch_add(1, Ordering::Relaxed),
        keys: Vec::new(),
        driver: None,
    });
}

/// This thread's woken keys and the task that polls them.
struct Ready {
    tag: u32,
    keys: Vec<u32>,
    driver: Option<Waker>,
}

/// Puts `key` in line and wakes the driver, if `tag` is this thread's.
fn ready(tag: u32, key: u32) {
    let driver = READY.try_with(|r| {
        let mut r = r.try_borrow_mut().ok()?;
        if r.tag != tag {
            return None;
        }
        r.keys.push(key);
        r.driver.take()
    });
    // Woken outside the borrow: a waker may run code that wakes again.
    if let Ok(Some(driver)) = driver {
        driver.wake();
    }
}

static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, wake, wake, drop_waker);

fn word(tag: u32, key: u32) -> *const () {
    (((tag as usize) << 32) | key as usize) as *const ()
}

fn clone(word: *const ()) -> RawWaker {
    RawWaker::new(word, &VTABLE)
}

fn wake(word: *const ()) {
    let word = word as usize;
    ready((word >> 32) as u32, word as u32);
}

fn drop_waker(_: *const ()) {}

fn waker(tag: u32, key: u32) -> Waker {
    // SAFETY: the vtable's functions treat the word as plain data (never as
    // a pointer) and uphold RawWaker's contract: clone copies it, drop does
    // nothing, wake may run on any thread (it then only reads a thread-local).
    unsafe { Waker::from_raw(clone(word(tag, key))) }
}

/// One thread's parked futures. Keep it in a thread-local and have one task
/// poll [`Parked::poll_woken`] for as long as the thread runs.
pub struct Parked<F> {
    /// A future is out of its slot (`None`) while it is being polled.
    slots: RefCell<Slab<Option<F>>>,
    driven: Cell<bool>,
}

impl<F: Future<Output = ()> + Unpin> Parked<F> {
    pub const fn new() -> Parked<F> {
        Parked {
            slots: RefCell::new(Slab::new()),
            driven: Cell::new(false),
        }
    }

    /// Parks `future`; it is first polled by the driver's next turn.
    /// Returns whether the thread has no driver task yet (the caller spawns one).
    pub fn insert(&self, future: F) -> bool {
        let key = self.slots.borrow_mut().insert(Some(future));
        // Fits u32: the slab holds at most one slot per connection.
        ready(tag(), key as u32);
        !self.driven.replace(true)
    }

    /// The driver: polls what was woken since its last turn; never completes.
    pub fn poll_woken(&self, cx: &mut Context<'_>) -> Poll<()> {
        let (tag, keys) = READY.with(|r| {
            let mut r = r.borrow_mut();
            r.driver = Some(cx.waker().clone());
            (r.tag, std::mem::take(&mut r.keys))
        });
        for &key in &keys {
            // A key may be stale (its future done, the slot reused): the
            // future then gets a spurious poll, which futures allow.
            let taken = self
                .slots
                .borrow_mut()
                .get_mut(key as usize)
                .and_then(Option::take);
            let Some(mut future) = taken else {
                continue;
            };
            let waker = waker(tag, key);
            let done = Pin::new(&mut future)
                .poll(&mut Context::from_waker(&waker))
                .is_ready();
            let mut slots = self.slots.borrow_mut();
            if done {
                slots.remove(key as usize);
                drop(slots);
                // Dropped outside the borrow: it may park another future.
                drop(future);
            } else {
                slots[key as usize] = Some(future);
            }
        }
        // Hand the list back (keeping its capacity) unless wakes came meanwhile;
        // those are polled on the next turn, after other tasks had theirs.
        let again = READY.with(|r| {
            let mut r = r.borrow_mut();
            if r.keys.is_empty() {
                let mut keys = keys;
                keys.clear();
                r.keys = keys;
                None
            } else {
                r.driver.take()
            }
        });
        if let Some(driver) = again {
            driver.wake();
        }
        Poll::Pending
    }

    /// Drops every parked future (at the end of the thread's loop, while
    /// the runtime they need for dropping is still there).
    pub fn clear(&self) {
        let all: Vec<F> = self.slots.borrow_mut().drain().flatten().collect();
        drop(all);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.slots.borrow().len()
    }
}

impl<F: Future<Output = ()> + Unpin> Default for Parked<F> {
    fn default() -> Self {
        Parked::new()
    }
}

fn tag() -> u32 {
    READY.with(|r| r.borrow().tag)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    /// Completes on its `n`-th poll, remembering its waker meanwhile.
    struct Countdown {
        polls: Rc<Cell<u32>>,
        n: u32,
        waker: Rc<RefCell<Option<Waker>>>,
    }

    impl Future for Countdown {
        type Output = ();
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.polls.set(self.polls.get() + 1);
            if self.polls.get() >= self.n {
                return Poll::Ready(());
            }
            *self.waker.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        }
    }

    /// A countdown's poll count and its last waker.
    type Probe = (Rc<Cell<u32>>, Rc<RefCell<Option<Waker>>>);

    fn countdown(n: u32) -> (Countdown, Probe) {
        let (polls, waker) = (Rc::default(), Rc::default());
        let f = Countdown {
            polls: Rc::clone(&polls),
            n,
            waker: Rc::clone(&waker),
        };
        (f, (polls, waker))
    }

    #[test]
    fn only_woken_futures_are_polled_and_done_ones_leave() {
        let parked = Parked::new();
        let (a, (a_polls, a_waker)) = countdown(2);
        let (b, (b_polls, _)) = countdown(3);
        assert!(parked.insert(a), "the first insert asks for a driver");
        assert!(!parked.insert(b));
        let driver = Waker::noop();
        let mut cx = Context::from_waker(driver);
        assert!(parked.poll_woken(&mut cx).is_pending());
        assert_eq!((a_polls.get(), b_polls.get()), (1, 1));
        assert!(parked.poll_woken(&mut cx).is_pending());
        assert_eq!((a_polls.get(), b_polls.get()), (1, 1), "nothing was woken");
        let w = a_waker.borrow_mut().take().unwrap();
        let copy = w.clone();
        copy.wake();
        w.wake_by_ref();
        assert!(parked.poll_woken(&mut cx).is_pending());
        assert_eq!(
            (a_polls.get(), b_polls.get()),
            (2, 1),
            "a woken twice, polled once to its end"
        );
        assert_eq!(parked.len(), 1);
        // A stale wake of a's key now reaches nobody.
        w.wake();
        assert!(parked.poll_woken(&mut cx).is_pending());
        assert_eq!(b_polls.get(), 1);
        parked.clear();
        assert_eq!(parked.len(), 0);
    }

    #[test]
    fn a_wake_from_another_thread_is_ignored() {
        let parked = Parked::new();
        let (a, (a_polls, a_waker)) = countdown(3);
        parked.insert(a);
        let mut cx = Context::from_waker(Waker::noop());
        let _ = parked.poll_woken(&mut cx);
        let w = a_waker.borrow_mut().take().unwrap();
        std::thread::spawn(move || w.wake()).join().unwrap();
        let _ = parked.poll_woken(&mut cx);
        assert_eq!(a_polls.get(), 1);
    }
}
