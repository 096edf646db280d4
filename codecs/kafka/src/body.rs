//! Just enough of the Produce, Fetch and Metadata request bodies to reach the topic names (or
//! ids) and partition indexes; record batches are skipped by their length, never decoded.

use std::ops::Range;

use crate::table::{FETCH, METADATA, PRODUCE};
use crate::wire::Reader;

/// Highest versions whose body layout this crate knows (and answers with error replies).
pub(crate) const MAX_PRODUCE: i16 = 13;
pub(crate) const MAX_FETCH: i16 = 18;
pub(crate) const MAX_METADATA: i16 = 13;
pub(crate) const MAX_API_VERSIONS: i16 = 4;

/// A topic as a request names it: by name (a range of the frame), by id, or both (Metadata
/// v10+ carries both fields; one is usually null or zero).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TopicRef {
    pub(crate) name: Option<Range<usize>>,
    pub(crate) id: Option<[u8; 16]>,
}

/// What the walk saw, for the callbacks.
pub(crate) trait Visit {
    fn topic(&mut self, topic: TopicRef);
    fn partition(&mut self, _index: i32) {}
}

/// What a walk found besides topics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Walked {
    /// Produce's `acks`.
    pub(crate) acks: Option<i16>,
    /// Metadata's topic array was null or empty ("all topics").
    pub(crate) all_topics: bool,
}

/// True when this crate knows the body layout of `version` of `key` (walks it, and answers
/// it with an error reply).
pub(crate) fn known_body(key: i16, version: i16) -> bool {
    match key {
        PRODUCE => (0..=MAX_PRODUCE).contains(&version),
        FETCH => (0..=MAX_FETCH).contains(&version),
        METADATA => (0..=MAX_METADATA).contains(&version),
        _ => false,
    }
}

/// Walks the body of a Produce, Fetch or Metadata request that starts at `at` in `frame`.
/// `None` when the body is malformed; trailing fields after the topics are not read.
pub(crate) fn walk(
    key: i16,
    version: i16,
    frame: &[u8],
    at: usize,
    v: &mut impl Visit,
) -> Option<Walked> {
    let mut r = Reader::new(frame, at);
    match key {
        PRODUCE => produce(&mut r, version, v),
        FETCH => fetch(&mut r, version, v),
        METADATA => metadata(&mut r, version, v),
        _ => Some(Walked::default()),
    }
}

fn produce(r: &mut Reader<'_>, version: i16, v: &mut impl Visit) -> Option<Walked> {
    let flex = version >= 9;
    if version >= 3 {
        r.string(flex)?; // transactional_id
    }
    let acks = r.i16()?;
    r.i32()?; // timeout_ms
    let topics = r.array(flex)?.unwrap_or(0);
    for _ in 0..topics {
        v.topic(topic_name_or_id(r, version >= 13, flex)?);
        let partitions = r.array(flex)?.unwrap_or(0);
        for _ in 0..partitions {
            v.partition(r.i32()?);
            r.skip_bytes(flex)?; // records
            if flex {
                r.skip_tagged()?;
            }
        }
        if flex {
            r.skip_tagged()?;
        }
    }
    Some(Walked {
        acks: Some(acks),
        all_topics: false,
    })
}

fn fetch(r: &mut Reader<'_>, version: i16, v: &mut impl Visit) -> Option<Walked> {
    let flex = version >= 12;
    if version <= 14 {
        r.i32()?; // replica_id
    }
    r.skip(8)?; // max_wait_ms, min_bytes
    if version >= 3 {
        r.i32()?; // max_bytes
    }
    if version >= 4 {
        r.i8()?; // isolation_level
    }
    if version >= 7 {
        r.skip(8)?; // session_id, session_epoch
    }
    let topics = r.array(flex)?.unwrap_or(0);
    for _ in 0..topics {
        v.topic(topic_name_or_id(r, version >= 13, flex)?);
        let partitions = r.array(flex)?.unwrap_or(0);
        for _ in 0..partitions {
            v.partition(r.i32()?);
            if version >= 9 {
                r.i32()?; // current_leader_epoch
            }
            r.skip(8)?; // fetch_offset
            if version >= 12 {
                r.i32()?; // last_fetched_epoch
            }
            if version >= 5 {
                r.skip(8)?; // log_start_offset
            }
            r.i32()?; // partition_max_bytes
            if flex {
                r.skip_tagged()?;
            }
        }
        if flex {
            r.skip_tagged()?;
        }
    }
    Some(Walked::default())
}

fn metadata(r: &mut Reader<'_>, version: i16, v: &mut impl Visit) -> Option<Walked> {
    let flex = version >= 9;
    let topics = r.array(flex)?;
    for _ in 0..topics.unwrap_or(0) {
        let id = if version >= 10 {
            Some(r.uuid()?).filter(|id| *id != [0; 16])
        } else {
            None
        };
        let name = r.string(flex)?;
        if flex {
            r.skip_tagged()?;
        }
        v.topic(TopicRef { name, id });
    }
    Some(Walked {
        acks: None,
        all_topics: topics.unwrap_or(0) == 0,
    })
}

fn topic_name_or_id(r: &mut Reader<'_>, by_id: bool, flex: bool) -> Option<TopicRef> {
    Some(if by_id {
        TopicRef {
            name: None,
            id: Some(r.uuid()?),
        }
    } else {
        TopicRef {
            name: r.string(flex)?,
            id: None,
        }
    })
}

/// The topics of a request with their partition indexes, in request order: what an error
/// reply echoes.
#[derive(Debug, Default)]
pub(crate) struct Collect {
    pub(crate) topics: Vec<(TopicRef, Vec<i32>)>,
}

impl Visit for Collect {
    fn topic(&mut self, topic: TopicRef) {
        self.topics.push((topic, Vec::new()));
    }
    fn partition(&mut self, index: i32) {
        if let Some((_, p)) = self.topics.last_mut() {
            p.push(index);
        }
    }
}

/// The mechanism a SaslHandshake request names (its body is one int16-length string).
pub(crate) fn sasl_mechanism(frame: &[u8], at: usize) -> Option<&[u8]> {
    let range = Reader::new(frame, at).string(false)??;
    frame.get(range)
}

/// Kafka prints topic ids as URL-safe base64 without padding (`Uuid.toString()`).
pub(crate) fn uuid_to_string(id: &[u8; 16]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(22);
    for chunk in id.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_like_kafka() {
        // Kafka: new Uuid(0L, 1L).toString() == "AAAAAAAAAAAAAAAAAAAAAQ"
        let mut id = [0u8; 16];
        id[15] = 1;
        assert_eq!(uuid_to_string(&id), "AAAAAAAAAAAAAAAAAAAAAQ");
        assert_eq!(uuid_to_string(&[0xff; 16]), "_____________________w");
    }
}
