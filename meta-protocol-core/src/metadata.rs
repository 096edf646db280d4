//! [`Metadata`]: the routable string key/values of a message, plus typed opaque values.
//!
//! Routes match only on the string pairs. Codecs fill them while decoding (which does not
//! count as a change); filters and the router change them with [`Metadata::insert`] and
//! [`Metadata::remove`], which mark the metadata modified so that the codec re-serialises the
//! header on encode.
//!
//! Metadata built with [`Metadata::for_frame`] holds the frame it was decoded from, and values
//! (and keys) read from the frame are stored as ranges into it
//! ([`append_frame`](Metadata::append_frame), [`record_frame`](Metadata::record_frame)): no copy,
//! no reference count per value. Fixed keys are `&'static str`, numbers are rendered inline.
//!
//! ```
//! use bytes::Bytes;
//! use meta_protocol_core::{Metadata, MetaValue};
//!
//! let frame = Bytes::from_static(b"..sayHello..");
//! let mut md = Metadata::for_frame(frame);
//! assert!(md.append_frame("method", 2..10));
//! md.append("seq", MetaValue::from_u64(7));
//! assert!(!md.is_modified());
//! md.insert("x-tenant", "blue");
//! assert!(md.is_modified());
//! assert_eq!(md.get("method"), Some("sayHello"));
//! assert!(md.is_zero_copy("method"));
//! ```

use std::any::{Any, TypeId};
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use smallvec::SmallVec;

use crate::MetaValue;
use crate::value::Repr;

/// The well-known key a codec sets to `"true"` on a request that makes its connection
/// stateful (a transaction, a subscription, a stream): hosts then pin the downstream
/// connection to one upstream connection.
pub const PIN_KEY: &str = "pin";

/// Entries kept inline before the list spills to the heap.
const INLINE_ENTRIES: usize = 8;

/// Longest string a [`Str`] keeps inline.
const STR_INLINE: usize = 22;

/// Routable key/values and typed opaque values of one message.
#[derive(Clone, Default)]
pub struct Metadata {
    /// The frame that [`Str::Frame`] ranges point into.
    source: Bytes,
    entries: SmallVec<[(Str, Str); INLINE_ENTRIES]>,
    typed: Option<Box<TypedMap>>,
    modified: bool,
}

/// One key or value, 24 bytes: a range of the metadata's frame, a static string, a short
/// inline string or a reference-counted copy. Frame ranges are checked to be UTF-8 when
/// recorded.
#[derive(Clone)]
enum Str {
    Static(&'static str),
    Frame { start: u32, len: u32 },
    Inline { len: u8, buf: [u8; STR_INLINE] },
    Owned(Arc<str>),
}

// === impl Metadata ===

impl Metadata {
    /// Empty metadata.
    #[inline]
    pub fn new() -> Self {
        Self::default()
    }

    /// Empty metadata for a message decoded from `frame`: keys and values read from it can then
    /// be recorded as ranges ([`append_frame`](Self::append_frame),
    /// [`record_frame`](Self::record_frame)) and values given as slices of it are stored as
    /// ranges too. Costs one reference count on the frame.
    #[inline]
    pub fn for_frame(frame: Bytes) -> Self {
        Metadata {
            source: frame,
            ..Self::default()
        }
    }

    /// The frame given to [`for_frame`](Self::for_frame) (empty otherwise).
    pub fn frame(&self) -> &Bytes {
        &self.source
    }

    /// Records a value read from the frame. Replaces an earlier value of the same key. Does not
    /// mark the metadata modified: this is what codecs call while decoding.
    #[inline]
    pub fn record(&mut self, key: impl Into<MetaValue>, value: impl Into<MetaValue>) {
        let key = self.store(key.into());
        let value = self.store(value.into());
        self.put(key, value);
    }

    /// Records a value read from the frame under a key the caller knows is not present yet
    /// (a codec's fixed keys, each recorded once): like [`record`](Self::record) without the
    /// search for an earlier value, which is most of the cost of recording many keys.
    ///
    /// If the key is present after all, [`get`](Self::get) keeps returning the earlier value
    /// (debug builds assert that it is not).
    #[inline]
    pub fn append(&mut self, key: impl Into<MetaValue>, value: impl Into<MetaValue>) {
        let key = self.store(key.into());
        debug_assert!(
            self.position(self.resolve(&key).as_bytes()).is_none(),
            "Metadata::append of a key that is already present: {:?}",
            self.resolve(&key)
        );
        let value = self.store(value.into());
        self.entries.push((key, value));
    }

    /// [`append`](Self::append) of a static value under a fixed key: the cheapest entry.
    #[inline]
    pub fn append_static(&mut self, key: &'static str, value: &'static str) {
        debug_assert!(
            !self.contains(key),
            "Metadata::append_static of a present key: {key:?}"
        );
        self.entries.push((Str::Static(key), Str::Static(value)));
    }

    /// [`append`](Self::append) of an integer, rendered in decimal inline, under a fixed key.
    #[inline]
    pub fn append_int(&mut self, key: &'static str, value: i64) {
        debug_assert!(
            !self.contains(key),
            "Metadata::append_int of a present key: {key:?}"
        );
        self.entries.push((Str::Static(key), Str::int(value)));
    }

    /// [`append`](Self::append) of an unsigned integer, rendered in decimal inline, under a
    /// fixed key.
    #[inline]
    pub fn append_uint(&mut self, key: &'static str, value: u64) {
        debug_assert!(
            !self.contains(key),
            "Metadata::append_uint of a present key: {key:?}"
        );
        let mut buf = [0u8; STR_INLINE];
        let len = crate::value::render_u64(value, &mut buf[..20]);
        self.entries.push((
            Str::Static(key),
            Str::Inline {
                len: len as u8,
                buf,
            },
        ));
    }

    /// [`append`](Self::append) of the frame's bytes at `range` under a fixed key, without a
    /// copy. Returns false, recording nothing, when the range is outside the frame or not UTF-8.
    #[inline]
    pub fn append_frame(&mut self, key: &'static str, range: Range<usize>) -> bool {
        let Some(value) = self.frame_str(range) else {
            return false;
        };
        debug_assert!(
            !self.contains(key),
            "Metadata::append_frame of a key that is already present: {key:?}"
        );
        self.entries.push((Str::Static(key), value));
        true
    }

    /// [`record`](Self::record) of a key and a value that are both in the frame (THeader info
    /// headers, Dubbo attachments, bRPC user fields), without a copy. Returns false, recording
    /// nothing, when a range is outside the frame or not UTF-8.
    #[inline]
    pub fn record_frame(&mut self, key: Range<usize>, value: Range<usize>) -> bool {
        let (Some(k), Some(v)) = (self.frame_str(key), self.frame_str(value)) else {
            return false;
        };
        self.put(k, v);
        true
    }

    /// Sets `key` to `value` and marks the metadata modified. Returns the previous value.
    pub fn insert(
        &mut self,
        key: impl Into<MetaValue>,
        value: impl Into<MetaValue>,
    ) -> Option<MetaValue> {
        let key = self.store(key.into());
        let value = self.store(value.into());
        self.modified = true;
        match self.position(self.resolve(&key).as_bytes()) {
            Some(i) => {
                let old = std::mem::replace(&mut self.entries[i].1, value);
                Some(self.to_value(old))
            }
            None => {
                self.entries.push((key, value));
                None
            }
        }
    }

    /// Removes `key`, marking the metadata modified if it was present.
    pub fn remove(&mut self, key: &str) -> Option<MetaValue> {
        let i = self.position(key.as_bytes())?;
        self.modified = true;
        let (_, old) = self.entries.remove(i);
        Some(self.to_value(old))
    }

    /// The value of `key`.
    #[inline]
    pub fn get(&self, key: &str) -> Option<&str> {
        self.position(key.as_bytes())
            .map(|i| self.resolve(&self.entries[i].1))
    }

    /// The value of `key` (the same as [`get`](Self::get)).
    #[inline]
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key)
    }

    /// The value of `key` as an owned [`MetaValue`] (a frame range becomes a slice of the
    /// frame: a reference count, no copy).
    pub fn get_value(&self, key: &str) -> Option<MetaValue> {
        self.position(key.as_bytes())
            .map(|i| self.to_value(self.entries[i].1.clone()))
    }

    /// True when the value of `key` is stored as a range of the frame (zero-copy).
    pub fn is_zero_copy(&self, key: &str) -> bool {
        self.position(key.as_bytes())
            .is_some_and(|i| matches!(self.entries[i].1, Str::Frame { .. }))
    }

    /// True when `key` is present.
    #[inline]
    pub fn contains(&self, key: &str) -> bool {
        self.position(key.as_bytes()).is_some()
    }

    /// The key/value pairs in the order they were recorded.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> {
        self.entries
            .iter()
            .map(|(k, v)| (self.resolve(k), self.resolve(v)))
    }

    /// Number of key/value pairs.
    #[inline]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there are no key/value pairs.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// True once [`insert`](Self::insert) or [`remove`](Self::remove) changed something since
    /// decode (or since [`mark_unmodified`](Self::mark_unmodified)).
    #[inline]
    pub fn is_modified(&self) -> bool {
        self.modified
    }

    /// Forgets earlier changes, e.g. after a codec has re-serialised them into new original
    /// bytes.
    pub fn mark_unmodified(&mut self) {
        self.modified = false;
    }

    /// Stores a typed opaque value (one per type), e.g. a codec's parsed view of the frame.
    /// Typed values are never routed on and never change the encoded bytes by themselves.
    pub fn insert_typed<T: Clone + Send + Sync + 'static>(&mut self, value: T) -> Option<T> {
        let map = self.typed.get_or_insert_with(Default::default);
        let id = TypeId::of::<T>();
        let boxed: Box<dyn CloneAny> = Box::new(value);
        match map.0.iter_mut().find(|(t, _)| *t == id) {
            Some((_, slot)) => {
                let old = std::mem::replace(slot, boxed);
                old.into_any().downcast::<T>().ok().map(|b| *b)
            }
            None => {
                map.0.push((id, boxed));
                None
            }
        }
    }

    /// The typed opaque value of type `T`.
    pub fn get_typed<T: 'static>(&self) -> Option<&T> {
        let map = self.typed.as_ref()?;
        let id = TypeId::of::<T>();
        map.0
            .iter()
            .find(|(t, _)| *t == id)
            .and_then(|(_, v)| (**v).as_any().downcast_ref())
    }

    /// Mutable access to the typed opaque value of type `T`.
    pub fn get_typed_mut<T: 'static>(&mut self) -> Option<&mut T> {
        let map = self.typed.as_mut()?;
        let id = TypeId::of::<T>();
        map.0
            .iter_mut()
            .find(|(t, _)| *t == id)
            .and_then(|(_, v)| (**v).as_any_mut().downcast_mut())
    }

    #[inline]
    fn put(&mut self, key: Str, value: Str) {
        match self.position(self.resolve(&key).as_bytes()) {
            Some(i) => self.entries[i].1 = value,
            None => self.entries.push((key, value)),
        }
    }

    #[inline]
    fn position(&self, key: &[u8]) -> Option<usize> {
        self.entries
            .iter()
            .position(|(k, _)| self.resolve(k).as_bytes() == key)
    }

    #[inline]
    fn resolve<'a>(&'a self, s: &'a Str) -> &'a str {
        match s {
            Str::Static(s) => s,
            Str::Owned(s) => s,
            Str::Inline { len, buf } => std::str::from_utf8(&buf[..*len as usize]).unwrap_or(""),
            Str::Frame { start, len } => {
                let (start, len) = (*start as usize, *len as usize);
                // Checked when recorded; the check keeps the crate free of `unsafe`.
                self.source
                    .get(start..start + len)
                    .and_then(|b| std::str::from_utf8(b).ok())
                    .unwrap_or("")
            }
        }
    }

    /// A range of the frame as a [`Str`], if it is inside the frame and UTF-8.
    #[inline]
    fn frame_str(&self, range: Range<usize>) -> Option<Str> {
        let bytes = self.source.get(range.clone())?;
        std::str::from_utf8(bytes).ok()?;
        Some(Str::Frame {
            start: u32::try_from(range.start).ok()?,
            len: u32::try_from(bytes.len()).ok()?,
        })
    }

    /// The compact form of `v`: a frame slice becomes a range, a short string goes inline.
    #[inline]
    fn store(&self, v: MetaValue) -> Str {
        match v.0 {
            Repr::Static(s) => Str::Static(s),
            Repr::Owned(s) => Str::Owned(s),
            Repr::Shared(b) => match self.offset_in_frame(&b) {
                Some(start) => Str::Frame {
                    start,
                    len: b.len() as u32,
                },
                None => Str::copy(MetaValue(Repr::Shared(b)).as_str()),
            },
            Repr::Inline { len, buf } if len as usize <= STR_INLINE => {
                // Already UTF-8 (every `MetaValue` is).
                let mut short = [0u8; STR_INLINE];
                short.copy_from_slice(&buf[..STR_INLINE]);
                Str::Inline { len, buf: short }
            }
            Repr::Inline { len, buf } => {
                Str::copy(std::str::from_utf8(&buf[..len as usize]).unwrap_or(""))
            }
        }
    }

    /// Where `b` starts in the frame, when it is a slice of it (a live slice inside the frame's
    /// memory can only be a view of the same bytes).
    #[inline]
    fn offset_in_frame(&self, b: &Bytes) -> Option<u32> {
        let base = self.source.as_ptr() as usize;
        let at = b.as_ptr() as usize;
        let inside = !b.is_empty() && at >= base && at + b.len() <= base + self.source.len();
        if inside {
            u32::try_from(at - base).ok()
        } else {
            None
        }
    }

    fn to_value(&self, s: Str) -> MetaValue {
        match s {
            Str::Static(s) => MetaValue::from_static(s),
            Str::Owned(s) => MetaValue::from(s),
            Str::Inline { .. } => MetaValue::copy_from_str(self.resolve(&s)),
            Str::Frame { start, len } => {
                let (start, len) = (start as usize, len as usize);
                MetaValue(Repr::Shared(self.source.slice(start..start + len)))
            }
        }
    }
}

impl Str {
    #[inline]
    fn int(v: i64) -> Str {
        let mut buf = [0u8; STR_INLINE];
        let len = crate::value::render_i64(v, &mut buf);
        Str::Inline {
            len: len as u8,
            buf,
        }
    }

    fn copy(s: &str) -> Str {
        if s.len() <= STR_INLINE {
            let mut buf = [0u8; STR_INLINE];
            buf[..s.len()].copy_from_slice(s.as_bytes());
            Str::Inline {
                len: s.len() as u8,
                buf,
            }
        } else {
            Str::Owned(Arc::from(s))
        }
    }
}

/// Equality of the routable pairs (in order); typed values and the modified flag are ignored.
impl PartialEq for Metadata {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl fmt::Debug for Metadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        m.entries(self.iter());
        if let Some(t) = &self.typed {
            m.entry(&"<typed values>", &t.0.len());
        }
        m.finish()
    }
}

impl<K: Into<MetaValue>, V: Into<MetaValue>> FromIterator<(K, V)> for Metadata {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut md = Metadata::new();
        for (k, v) in iter {
            md.record(k, v);
        }
        md
    }
}

// === typed values ===

#[derive(Default)]
struct TypedMap(Vec<(TypeId, Box<dyn CloneAny>)>);

impl Clone for TypedMap {
    fn clone(&self) -> Self {
        TypedMap(
            self.0
                .iter()
                .map(|(t, v)| (*t, (**v).clone_box()))
                .collect(),
        )
    }
}

trait CloneAny: Any + Send + Sync {
    fn clone_box(&self) -> Box<dyn CloneAny>;
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
    fn into_any(self: Box<Self>) -> Box<dyn Any>;
}

impl<T: Clone + Send + Sync + 'static> CloneAny for T {
    fn clone_box(&self) -> Box<dyn CloneAny> {
        Box::new(self.clone())
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_adds_without_searching() {
        let mut md = Metadata::new();
        md.append("a", "1");
        md.append("b", "2");
        md.record("a", "3");
        assert_eq!(md.len(), 2);
        assert_eq!(md.get_str("a"), Some("3"));
        assert!(!md.is_modified());
    }

    #[test]
    fn record_does_not_mark_modified_but_insert_and_remove_do() {
        let mut md = Metadata::new();
        md.record("a", "1");
        md.record("a", "2");
        assert_eq!(md.len(), 1);
        assert_eq!(md.get_str("a"), Some("2"));
        assert!(!md.is_modified());

        assert_eq!(md.insert("a", "3").as_deref(), Some("2"));
        assert_eq!(md.get("a"), Some("3"));
        assert!(md.is_modified());
        md.mark_unmodified();
        assert_eq!(md.remove("missing"), None);
        assert!(!md.is_modified());
        assert_eq!(md.remove("a").as_deref(), Some("3"));
        assert!(md.is_modified());
        assert!(md.is_empty());
    }

    #[test]
    fn frame_ranges_are_zero_copy_and_checked() {
        let frame = Bytes::from_static(b"k1v1\xffkey-two");
        let mut md = Metadata::for_frame(frame.clone());
        assert!(md.append_frame("a", 2..4));
        assert!(!md.append_frame("bad", 4..5), "not UTF-8");
        assert!(!md.append_frame("out", 3..99), "outside the frame");
        assert!(md.record_frame(0..2, 5..12));
        assert!(
            md.record_frame(0..2, 2..4),
            "a frame key replaces like record"
        );
        assert_eq!(md.len(), 2);
        assert_eq!(md.get("k1"), Some("v1"));
        assert!(md.is_zero_copy("a") && md.is_zero_copy("k1"));
        // A slice of the frame given as a value is stored as a range too.
        md.record("b", MetaValue::from_utf8(frame.slice(5..8)).expect("utf8"));
        assert!(md.is_zero_copy("b"));
        assert_eq!(md.get("b"), Some("key"));
        // A slice of another buffer is copied.
        md.record(
            "c",
            MetaValue::from_utf8(Bytes::from_static(b"elsewhere")).expect("utf8"),
        );
        assert!(!md.is_zero_copy("c"));
        assert_eq!(md.get("c"), Some("elsewhere"));
        let old = md.remove("b").expect("present");
        assert!(
            old.is_shared(),
            "a removed range comes back as a frame slice"
        );
        assert_eq!(old, "key");
        let long = "v".repeat(STR_INLINE + 1);
        md.insert("long", long.clone());
        assert_eq!(md.get("long"), Some(long.as_str()));
        assert_eq!(md.get_value("long").as_deref(), Some(long.as_str()));
    }

    #[test]
    fn integers_are_rendered_inline() {
        let mut md = Metadata::new();
        md.append_int("min", i64::MIN);
        md.append_int("neg", -42);
        md.append_uint("max", u64::MAX);
        assert_eq!(md.get("min"), Some(i64::MIN.to_string().as_str()));
        assert_eq!(md.get("neg"), Some("-42"));
        assert_eq!(md.get("max"), Some(u64::MAX.to_string().as_str()));
    }

    #[test]
    fn entries_stay_small() {
        assert_eq!(std::mem::size_of::<Str>(), 24);
    }

    #[test]
    fn many_entries_spill_and_keep_order() {
        let md: Metadata = (0..20u64)
            .map(|i| (MetaValue::from_u64(i), MetaValue::from_u64(i * 2)))
            .collect();
        let keys: Vec<_> = md.iter().map(|(k, _)| k.to_owned()).collect();
        assert_eq!(keys, (0..20).map(|i| i.to_string()).collect::<Vec<_>>());
        assert_eq!(md.get_str("19"), Some("38"));
    }

    #[test]
    fn typed_values_by_type_and_cloned_with_the_metadata() {
        #[derive(Clone, Debug, PartialEq)]
        struct Offsets(u32);
        let mut md = Metadata::new();
        assert_eq!(md.insert_typed(Offsets(1)), None);
        assert_eq!(md.insert_typed(Offsets(2)), Some(Offsets(1)));
        md.insert_typed(7u8);
        if let Some(v) = md.get_typed_mut::<u8>() {
            *v += 1;
        }
        let copy = md.clone();
        assert_eq!(copy.get_typed::<Offsets>(), Some(&Offsets(2)));
        assert_eq!(copy.get_typed::<u8>(), Some(&8));
        assert_eq!(copy.get_typed::<u16>(), None);
        assert!(
            !md.is_modified(),
            "typed values do not change the wire form"
        );
    }
}
