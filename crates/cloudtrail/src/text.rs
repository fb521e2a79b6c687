//! [`Text`], the owned string of a record's fields and of the detectors' state.
//!
//! Most of what a CloudTrail record says is short: service and event names, regions, account
//! ids, access key ids, identity types, error codes. As `Box<str>` every one of them was an
//! allocation on a decode worker and a free later — about a dozen per record, a sixth of the
//! decode CPU on real-shaped deliveries (issue 16). `Text` keeps strings of up to
//! [`INLINE_MAX`] bytes inside itself and only longer ones (ARNs, user agents, event ids) on
//! the heap, in the same 24 bytes an `Option<Text>` takes.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;

/// Strings of at most this many bytes are stored inline.
pub const INLINE_MAX: usize = 22;

/// An immutable owned string, inline when short. Hashes, compares and borrows as `str`, so a
/// map keyed by `Text` is looked up with a `&str`.
#[derive(Clone)]
pub struct Text(Repr);

#[derive(Clone)]
enum Repr {
    /// Invariant: `bytes[..len]` is the UTF-8 of a whole `str` (copied from one in
    /// [`Text::new`]), and `len <= INLINE_MAX`.
    Inline {
        len: u8,
        bytes: [u8; INLINE_MAX],
    },
    Heap(Box<str>),
}

impl Text {
    pub fn new(s: &str) -> Text {
        if s.len() <= INLINE_MAX {
            let mut bytes = [0u8; INLINE_MAX];
            bytes[..s.len()].copy_from_slice(s.as_bytes());
            Text(Repr::Inline {
                len: s.len() as u8,
                bytes,
            })
        } else {
            Text(Repr::Heap(s.into()))
        }
    }

    #[inline]
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Inline { len, bytes } => {
                let bytes = &bytes[..usize::from(*len)];
                // SAFETY: by the invariant of `Repr::Inline`, these bytes were copied whole
                // from a `str` and are never changed: they are valid UTF-8. Checking again on
                // every read would cost what inlining saves.
                unsafe { std::str::from_utf8_unchecked(bytes) }
            }
            Repr::Heap(s) => s,
        }
    }

    #[cfg(test)]
    fn is_heap(&self) -> bool {
        matches!(self.0, Repr::Heap(_))
    }
}

impl Default for Text {
    fn default() -> Text {
        Text::new("")
    }
}

impl Deref for Text {
    type Target = str;
    #[inline]
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Text {
    #[inline]
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for Text {
    #[inline]
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Text {
        Text::new(s)
    }
}

impl From<String> for Text {
    fn from(s: String) -> Text {
        if s.len() <= INLINE_MAX {
            Text::new(&s)
        } else {
            Text(Repr::Heap(s.into_boxed_str()))
        }
    }
}

impl From<Box<str>> for Text {
    fn from(s: Box<str>) -> Text {
        if s.len() <= INLINE_MAX {
            Text::new(&s)
        } else {
            Text(Repr::Heap(s))
        }
    }
}

impl From<Text> for String {
    fn from(t: Text) -> String {
        match t.0 {
            Repr::Heap(s) => s.into_string(),
            Repr::Inline { .. } => t.as_str().to_owned(),
        }
    }
}

impl From<Text> for Box<str> {
    fn from(t: Text) -> Box<str> {
        match t.0 {
            Repr::Heap(s) => s,
            Repr::Inline { .. } => t.as_str().into(),
        }
    }
}

impl PartialEq for Text {
    #[inline]
    fn eq(&self, other: &Text) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Text {}

impl PartialEq<str> for Text {
    #[inline]
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Text {
    #[inline]
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialOrd for Text {
    #[inline]
    fn partial_cmp(&self, other: &Text) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Text {
    #[inline]
    fn cmp(&self, other: &Text) -> Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl Hash for Text {
    // As `str` hashes, so `Borrow<str>` lookups find what `Text` keys stored.
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.as_str(), f)
    }
}

impl serde::Serialize for Text {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Text {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Text, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Text, E> {
                Ok(Text::new(v))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Text, E> {
                Ok(Text::from(v))
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, HashMap};

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn short_strings_are_inline_and_long_ones_on_the_heap() {
        assert_eq!(std::mem::size_of::<Option<Text>>(), 24);
        for s in [
            "",
            "s3.amazonaws.com",
            "dynamodb.amazonaws.com",
            "ASIAEXAMPLEEXAMPLE12",
        ] {
            assert!(!Text::new(s).is_heap(), "{s}");
        }
        for s in [
            "cloudtrail.amazonaws.com",
            "arn:aws:iam::123456789012:role/app",
        ] {
            assert!(Text::new(s).is_heap(), "{s}");
        }
        // Multi-byte characters up to the limit stay whole.
        let s = "é".repeat(11);
        assert_eq!(s.len(), 22);
        assert_eq!(Text::new(&s).as_str(), s);
    }

    #[test]
    fn maps_keyed_by_text_are_looked_up_by_str() {
        let mut m = HashMap::new();
        m.insert(Text::new("us-east-1"), 1);
        m.insert(
            Text::from("arn:aws:iam::123456789012:role/app".to_owned()),
            2,
        );
        assert_eq!(m.get("us-east-1"), Some(&1));
        assert_eq!(m.get("arn:aws:iam::123456789012:role/app"), Some(&2));
    }

    proptest! {
        /// Every way in and out keeps the string, and order, equality and hashing are the
        /// string's, inline or not.
        #[test]
        fn behaves_as_the_string_it_holds(a in "\\PC{0,40}", b in "\\PC{0,40}") {
            let (ta, tb) = (Text::new(&a), Text::from(b.clone()));
            prop_assert_eq!(ta.as_str(), a.as_str());
            prop_assert_eq!(&*tb, b.as_str());
            prop_assert_eq!(String::from(ta.clone()), a.clone());
            prop_assert_eq!(&*Box::<str>::from(tb.clone()), b.as_str());
            prop_assert_eq!(Text::from(Box::<str>::from(a.as_str())), ta.clone());
            prop_assert_eq!(ta == tb, a == b);
            prop_assert_eq!(ta.cmp(&tb), a.cmp(&b));
            prop_assert_eq!(ta.to_string(), a.clone());
            prop_assert_eq!(format!("{ta:?}"), format!("{a:?}"));
            let json = serde_json::to_string(&ta).unwrap();
            prop_assert_eq!(&json, &serde_json::to_string(&a).unwrap());
            prop_assert_eq!(serde_json::from_str::<Text>(&json).unwrap(), ta.clone());
            let set: BTreeSet<Text> = [ta.clone(), tb.clone()].into_iter().collect();
            prop_assert!(set.contains(a.as_str()) && set.contains(b.as_str()));
        }
    }
}
