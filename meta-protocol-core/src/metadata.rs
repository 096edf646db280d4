//! [`Metadata`]: the routable string key/values of a message, plus typed opaque values.
//!
//! Routes match only on the string pairs. Codecs fill them while decoding with
//! [`Metadata::record`] (which does not count as a change); filters and the router change them
//! with [`Metadata::insert`] and [`Metadata::remove`], which mark the metadata modified so that
//! the codec re-serialises the header on encode.
//!
//! ```
//! use meta_protocol_core::{Metadata, MetaValue};
//!
//! let mut md = Metadata::new();
//! md.record("method", MetaValue::from_static("sayHello"));
//! assert!(!md.is_modified());
//! md.insert("x-tenant", "blue");
//! assert!(md.is_modified());
//! assert_eq!(md.get("method").map(|v| v.as_str()), Some("sayHello"));
//! ```

use std::any::{Any, TypeId};
use std::fmt;

use smallvec::SmallVec;

use crate::MetaValue;

/// Entries kept inline before the list spills to the heap.
const INLINE_ENTRIES: usize = 6;

/// Routable key/values and typed opaque values of one message.
#[derive(Clone, Default)]
pub struct Metadata {
    entries: SmallVec<[(MetaValue, MetaValue); INLINE_ENTRIES]>,
    typed: Option<Box<TypedMap>>,
    modified: bool,
}

// === impl Metadata ===

impl Metadata {
    /// Empty metadata.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a value read from the frame. Replaces an earlier value of the same key. Does not
    /// mark the metadata modified: this is what codecs call while decoding.
    pub fn record(&mut self, key: impl Into<MetaValue>, value: impl Into<MetaValue>) {
        let key = key.into();
        let value = value.into();
        match self.position(key.as_bytes()) {
            Some(i) => self.entries[i].1 = value,
            None => self.entries.push((key, value)),
        }
    }

    /// Records a value read from the frame under a key the caller knows is not present yet
    /// (a codec's fixed keys, each recorded once): like [`record`](Self::record) without the
    /// search for an earlier value, which is most of the cost of recording many keys.
    ///
    /// If the key is present after all, [`get`](Self::get) keeps returning the earlier value
    /// (debug builds assert that it is not).
    pub fn append(&mut self, key: impl Into<MetaValue>, value: impl Into<MetaValue>) {
        let key = key.into();
        debug_assert!(
            !self.contains(key.as_str()),
            "Metadata::append of a key that is already present: {key:?}"
        );
        self.entries.push((key, value.into()));
    }

    /// Sets `key` to `value` and marks the metadata modified. Returns the previous value.
    pub fn insert(
        &mut self,
        key: impl Into<MetaValue>,
        value: impl Into<MetaValue>,
    ) -> Option<MetaValue> {
        let key = key.into();
        let value = value.into();
        self.modified = true;
        match self.position(key.as_bytes()) {
            Some(i) => Some(std::mem::replace(&mut self.entries[i].1, value)),
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
        Some(self.entries.remove(i).1)
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&MetaValue> {
        self.position(key.as_bytes()).map(|i| &self.entries[i].1)
    }

    /// The value of `key` as a string slice.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).map(MetaValue::as_str)
    }

    /// True when `key` is present.
    pub fn contains(&self, key: &str) -> bool {
        self.position(key.as_bytes()).is_some()
    }

    /// The key/value pairs in the order they were recorded.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&MetaValue, &MetaValue)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    /// Number of key/value pairs.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there are no key/value pairs.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// True once [`insert`](Self::insert) or [`remove`](Self::remove) changed something since
    /// decode (or since [`mark_unmodified`](Self::mark_unmodified)).
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

    fn position(&self, key: &[u8]) -> Option<usize> {
        self.entries.iter().position(|(k, _)| k.as_bytes() == key)
    }
}

/// Equality of the routable pairs (in order); typed values and the modified flag are ignored.
impl PartialEq for Metadata {
    fn eq(&self, other: &Self) -> bool {
        self.entries == other.entries
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
        assert!(md.is_modified());
        md.mark_unmodified();
        assert_eq!(md.remove("missing"), None);
        assert!(!md.is_modified());
        assert_eq!(md.remove("a").as_deref(), Some("3"));
        assert!(md.is_modified());
        assert!(md.is_empty());
    }

    #[test]
    fn many_entries_spill_and_keep_order() {
        let md: Metadata = (0..20u64)
            .map(|i| (MetaValue::from_u64(i), MetaValue::from_u64(i * 2)))
            .collect();
        let keys: Vec<_> = md.iter().map(|(k, _)| k.as_str().to_owned()).collect();
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
