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

    /// Allocates an id for `owner`; gives `owner` back when every id is in flight.
    ///
    /// # Errors
    /// `Err(owner)` when no id is free.
    pub fn insert(&mut self, owner: T) -> Result<u64, T> {
        if self.in_flight.len() as u64 >= self.max {
            return Err(owner);
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
                return Ok(id);
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
///
/// A reply for the oldest unanswered request can be written straight away
/// ([`is_next`](Reorder::is_next), then [`skip`](Reorder::skip)); a reply that overtook an
/// older one waits here until the older ones are answered.
#[derive(Debug, Clone)]
pub struct Reorder<T> {
    /// Sequence number of the oldest request not yet answered downstream.
    head: u64,
    /// Next sequence number to hand out.
    tail: u64,
    /// One slot per request from `head` on.
    waiting: VecDeque<Slot<T>>,
}

#[derive(Debug, Clone)]
enum Slot<T> {
    Waiting,
    Ready(T),
    /// Answered without a stored reply (written directly, or no reply at all).
    Done,
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
        self.waiting.push_back(Slot::Waiting);
        seq
    }

    /// True when `seq` is the oldest request still waiting: its reply can be sent now.
    pub fn is_next(&self, seq: u64) -> bool {
        seq == self.head && matches!(self.waiting.front(), Some(Slot::Waiting))
    }

    /// Stores the reply to request `seq` and passes every reply now ready to `out`, in order.
    /// A second reply for the same request, or one for an unknown request, is ignored.
    pub fn complete(&mut self, seq: u64, reply: T, out: impl FnMut(T)) {
        self.set(seq, Slot::Ready(reply));
        self.release(out);
    }

    /// Marks request `seq` answered without storing a reply (its reply was written directly,
    /// or it gets none), and passes every reply now ready to `out`, in order.
    pub fn skip(&mut self, seq: u64, out: impl FnMut(T)) {
        self.set(seq, Slot::Done);
        self.release(out);
    }

    /// Requests still waiting for their reply to be sent.
    pub fn pending(&self) -> usize {
        self.waiting.len()
    }

    fn set(&mut self, seq: u64, slot: Slot<T>) {
        if seq >= self.head
            && let Some(s) = self.waiting.get_mut((seq - self.head) as usize)
            && matches!(s, Slot::Waiting)
        {
            *s = slot;
        }
    }

    fn release(&mut self, mut out: impl FnMut(T)) {
        while let Some(front) = self.waiting.front() {
            if matches!(front, Slot::Waiting) {
                break;
            }
            if let Some(Slot::Ready(r)) = self.waiting.pop_front() {
                out(r);
            }
            self.head += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_while_in_flight_and_wrap() {
        let mut m = IdMap::new(3);
        assert_eq!(m.insert("a"), Ok(1));
        assert_eq!(m.insert("b"), Ok(2));
        assert_eq!(m.insert("c"), Ok(3));
        assert_eq!(
            m.insert("d"),
            Err("d"),
            "all ids in flight: the owner comes back"
        );
        assert_eq!(m.remove(2), Some("b"));
        assert_eq!(m.insert("e"), Ok(2), "wraps and skips 1 and 3");
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
        let mut sent = Vec::new();
        let a = r.request();
        let b = r.request();
        let c = r.request();
        assert!(r.is_next(a) && !r.is_next(b));
        r.complete(c, "C", |x| sent.push(x));
        r.complete(b, "B", |x| sent.push(x));
        r.complete(b, "B2", |x| sent.push(x));
        assert!(sent.is_empty(), "held behind A; the duplicate is ignored");
        r.complete(a, "A", |x| sent.push(x));
        assert_eq!(sent, ["A", "B", "C"]);
        assert_eq!(r.pending(), 0);
        let d = r.request();
        r.complete(d, "D", |x| sent.push(x));
        r.complete(a, "again", |x| sent.push(x));
        assert_eq!(sent, ["A", "B", "C", "D"], "already answered");
    }

    #[test]
    fn a_skipped_request_releases_those_behind_it() {
        let mut r = Reorder::new();
        let mut sent = Vec::new();
        let a = r.request();
        let b = r.request();
        let c = r.request();
        r.complete(c, "C", |x| sent.push(x));
        r.skip(b, |x| sent.push(x));
        assert!(sent.is_empty() && r.is_next(a));
        // A's reply is written directly by the caller, then A is skipped.
        r.skip(a, |x| sent.push(x));
        assert_eq!(sent, ["C"]);
        assert_eq!(r.pending(), 0);
    }
}
