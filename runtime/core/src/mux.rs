//! Correlation bookkeeping for multiplexing and pipelining.
//!
//! - [`IdMap`]: an upstream connection shared by many downstream connections gives every
//!   request a fresh id that is unique on that connection, and maps the reply's id back to
//!   whoever asked (who then restores the client's own id).
//! - [`Reorder`]: a downstream connection whose client relies on order (Redis, Kafka, Thrift
//!   clients that reuse seqid 0) gets its replies in request order, however the upstreams
//!   answer.

use std::collections::{HashMap, VecDeque};

/// Fresh request ids for one upstream connection, and who each in-flight id belongs to.
#[derive(Debug, Clone)]
pub struct IdMap<T> {
    next: u64,
    max: u64,
    in_flight: HashMap<u64, T>,
}

impl<T> IdMap<T> {
    /// Ids from 1 up to `max` (the largest the protocol's id field holds), then wrapping
    /// around, skipping ids still in flight.
    pub fn new(max: u64) -> Self {
        IdMap {
            next: 1,
            max: max.max(1),
            in_flight: HashMap::new(),
        }
    }

    /// Allocates an id for `owner`; `None` when every id is in flight.
    pub fn insert(&mut self, owner: T) -> Option<u64> {
        if self.in_flight.len() as u64 >= self.max {
            return None;
        }
        loop {
            let id = self.next;
            self.next = if self.next >= self.max {
                1
            } else {
                self.next + 1
            };
            if let std::collections::hash_map::Entry::Vacant(e) = self.in_flight.entry(id) {
                e.insert(owner);
                return Some(id);
            }
        }
    }

    /// The owner of `id`, which is no longer in flight.
    pub fn remove(&mut self, id: u64) -> Option<T> {
        self.in_flight.remove(&id)
    }

    /// Ids in flight.
    pub fn len(&self) -> usize {
        self.in_flight.len()
    }

    /// True when nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.in_flight.is_empty()
    }

    /// Removes and returns every owner (the connection failed).
    pub fn drain(&mut self) -> impl Iterator<Item = (u64, T)> + '_ {
        self.in_flight.drain()
    }
}

/// Releases replies in the order their requests arrived.
#[derive(Debug, Clone)]
pub struct Reorder<T> {
    /// Sequence number of the oldest request not yet answered downstream.
    head: u64,
    /// Next sequence number to hand out.
    tail: u64,
    /// Replies that arrived before an older one, by sequence number.
    waiting: VecDeque<Option<T>>,
}

impl<T> Default for Reorder<T> {
    fn default() -> Self {
        Reorder {
            head: 0,
            tail: 0,
            waiting: VecDeque::new(),
        }
    }
}

impl<T> Reorder<T> {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a request that expects one reply; returns its sequence number.
    pub fn request(&mut self) -> u64 {
        let seq = self.tail;
        self.tail += 1;
        self.waiting.push_back(None);
        seq
    }

    /// Stores the reply to request `seq` and returns every reply now ready to send, in order.
    /// A second reply for the same request, or one for an unknown request, is ignored.
    pub fn complete(&mut self, seq: u64, reply: T) -> Vec<T> {
        if seq >= self.head
            && let Some(slot) = self.waiting.get_mut((seq - self.head) as usize)
            && slot.is_none()
        {
            *slot = Some(reply);
        }
        let mut ready = Vec::new();
        while let Some(Some(_)) = self.waiting.front() {
            if let Some(Some(r)) = self.waiting.pop_front() {
                ready.push(r);
            }
            self.head += 1;
        }
        ready
    }

    /// Requests still waiting for their reply to be sent.
    pub fn pending(&self) -> usize {
        self.waiting.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_while_in_flight_and_wrap() {
        let mut m = IdMap::new(3);
        assert_eq!(m.insert("a"), Some(1));
        assert_eq!(m.insert("b"), Some(2));
        assert_eq!(m.insert("c"), Some(3));
        assert_eq!(m.insert("d"), None, "all ids in flight");
        assert_eq!(m.remove(2), Some("b"));
        assert_eq!(m.insert("e"), Some(2), "wraps and skips 1 and 3");
        assert_eq!(m.remove(2), Some("e"));
        assert_eq!(m.remove(2), None);
        assert_eq!(m.len(), 2);
        let mut drained: Vec<_> = m.drain().collect();
        drained.sort();
        assert_eq!(drained, vec![(1, "a"), (3, "c")]);
        assert!(m.is_empty());
    }

    #[test]
    fn replies_leave_in_request_order() {
        let mut r = Reorder::new();
        let a = r.request();
        let b = r.request();
        let c = r.request();
        assert_eq!(r.complete(c, "C"), Vec::<&str>::new());
        assert_eq!(r.complete(b, "B"), Vec::<&str>::new());
        assert_eq!(r.complete(b, "B2"), Vec::<&str>::new(), "duplicate ignored");
        assert_eq!(r.complete(a, "A"), vec!["A", "B", "C"]);
        assert_eq!(r.pending(), 0);
        let d = r.request();
        assert_eq!(r.complete(d, "D"), vec!["D"]);
        assert_eq!(
            r.complete(a, "again"),
            Vec::<&str>::new(),
            "already answered"
        );
    }
}
