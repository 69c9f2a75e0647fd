//! Per-client write queues, stored as linked lists in one per-core slab.
//!
//! A client record holds only a head/tail pair; the nodes (each a reference to
//! a shared [`Frame`]) live in a slab owned by the core. Queueing a frame for a
//! recipient reuses a free node, so fan-out allocates nothing per recipient
//! once the slab has grown to the burst size, and an idle client owns no queue
//! memory at all.

use crate::frame::Frame;
use slab::Slab;
use std::rc::Rc;

const NIL: u32 = u32::MAX;

/// The head and tail of one client's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Queue {
    head: u32,
    tail: u32,
}

impl Default for Queue {
    fn default() -> Self {
        Queue {
            head: NIL,
            tail: NIL,
        }
    }
}

impl Queue {
    pub fn is_empty(&self) -> bool {
        self.head == NIL
    }
}

#[derive(Debug)]
struct Node {
    frame: Rc<Frame>,
    next: u32,
    /// The fan-out that queued it (fits the padding: a node stays 16 bytes).
    batch: u32,
}

/// Every queued delivery of one core.
#[derive(Debug, Default)]
pub struct Deliveries {
    nodes: Slab<Node>,
}

impl Deliveries {
    pub fn push(&mut self, queue: &mut Queue, frame: Rc<Frame>, batch: u32) {
        let key = self.nodes.insert(Node {
            frame,
            next: NIL,
            batch,
        }) as u32;
        if queue.tail == NIL {
            queue.head = key;
        } else {
            self.nodes[queue.tail as usize].next = key;
        }
        queue.tail = key;
    }

    pub fn front(&self, queue: &Queue) -> Option<&Rc<Frame>> {
        (queue.head != NIL).then(|| &self.nodes[queue.head as usize].frame)
    }

    /// Takes the oldest frame of `queue`, with the fan-out that queued it.
    pub fn pop(&mut self, queue: &mut Queue) -> Option<(Rc<Frame>, u32)> {
        if queue.head == NIL {
            return None;
        }
        let node = self.nodes.remove(queue.head as usize);
        queue.head = node.next;
        if queue.head == NIL {
            queue.tail = NIL;
        }
        Some((node.frame, node.batch))
    }

    pub fn iter<'a>(&'a self, queue: &Queue) -> impl Iterator<Item = &'a Rc<Frame>> + 'a {
        let mut at = queue.head;
        std::iter::from_fn(move || {
            let node = self.nodes.get(at as usize)?;
            at = node.next;
            Some(&node.frame)
        })
    }

    /// Drops every queued frame of `queue`, telling `dropped` the fan-out
    /// of each; returns how many there were, and how many of them fan-out
    /// `batch` queued.
    pub fn clear(
        &mut self,
        queue: &mut Queue,
        batch: u32,
        mut dropped: impl FnMut(u32),
    ) -> (usize, usize) {
        let (mut all, mut of_batch) = (0, 0);
        while let Some((_, of)) = self.pop(queue) {
            of_batch += usize::from(of == batch);
            dropped(of);
            all += 1;
        }
        (all, of_batch)
    }

    /// Returns the memory of a past burst once nothing is queued.
    pub fn release_idle_memory(&mut self) {
        if self.nodes.is_empty() && self.nodes.capacity() > 4096 {
            self.nodes = Slab::new();
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_stays_small() {
        assert_eq!(std::mem::size_of::<Node>(), 16);
    }

    #[test]
    fn fifo_per_queue_with_shared_nodes() {
        let mut d = Deliveries::default();
        let (mut a, mut b) = (Queue::default(), Queue::default());
        let f1 = Rc::new(Frame::new(b"1", b""));
        let f2 = Rc::new(Frame::new(b"2", b""));
        d.push(&mut a, f1.clone(), 1);
        d.push(&mut b, f2.clone(), 1);
        d.push(&mut a, f2.clone(), 2);
        assert_eq!(d.iter(&a).count(), 2);
        assert!(Rc::ptr_eq(&d.pop(&mut a).unwrap().0, &f1));
        assert!(Rc::ptr_eq(d.front(&a).unwrap(), &f2));
        let mut seen = Vec::new();
        assert_eq!(d.clear(&mut a, 2, |b| seen.push(b)), (1, 1));
        assert_eq!(seen, [2]);
        assert!(a.is_empty());
        assert_eq!(d.len(), 1);
        assert!(Rc::ptr_eq(&d.pop(&mut b).unwrap().0, &f2));
        assert!(b.is_empty() && d.is_empty());
    }
}
