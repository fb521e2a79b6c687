//! The common case in one pass: an S3 delivery file (`{"Records":[…]}`) whose every element is
//! a plain record, parsed straight from its decompressed bytes.
//!
//! Why: the splitter ([`crate::split`]) walks every byte to cut records out, and serde then
//! walks the same bytes again to parse them — on real deliveries the first walk is about a
//! sixth of all the CPU a run spends. A delivery file that is well formed (nearly all of
//! them) needs no cutting: serde can read the records out of the array directly. Anything
//! else — a syntax error anywhere, a value that is not a plain record (an Insights event,
//! an envelope, an invalid record), bytes that are not UTF-8, a key besides `Records` —
//! makes this path give up and the file goes through the splitter from its first byte, which
//! locates and confines the damage exactly as before. Records are collected first and handed
//! on only when the whole file parsed, so giving up never delivers anything twice.

use serde::de::value::MapAccessDeserializer;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use crate::record::{Classified, RawRecord, Record};

/// Parse `bytes` as one delivery object of plain records into `out` (cleared first). `false`:
/// not such a file, or not entirely (bytes that are not UTF-8 included); `out` is then empty
/// and the caller splits the file.
pub fn parse_delivery(bytes: &[u8], out: &mut Vec<Record>) -> bool {
    out.clear();
    // Only what starts like a delivery object is tried: JSON lines, arrays and envelopes go
    // straight to the splitter without a UTF-8 check or a failed parse first.
    if !bytes.trim_ascii_start().starts_with(b"{\"Records\"") {
        return false;
    }
    // Checked once for the whole file, then parsed as text (see `record::parse_value`).
    let Ok(text) = std::str::from_utf8(bytes) else {
        return false;
    };
    let mut de = serde_json::Deserializer::from_str(text);
    let parsed = Delivery(out)
        .deserialize(&mut de)
        .and_then(|()| de.end())
        .is_ok();
    if !parsed {
        out.clear();
    }
    parsed
}

/// Give up (the splitter will say what is wrong, and where).
fn give_up<E: de::Error>() -> E {
    E::custom("not a plain delivery file")
}

/// The top-level object: exactly one key, `Records`.
struct Delivery<'o>(&'o mut Vec<Record>);

impl<'de> DeserializeSeed<'de> for Delivery<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Delivery<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a delivery object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        if map.next_key::<&str>()? != Some("Records") {
            return Err(give_up());
        }
        map.next_value_seed(Records(self.0))?;
        match map.next_key::<&str>()? {
            None => Ok(()),
            Some(_) => Err(give_up()),
        }
    }
}

/// The `Records` array: each element a record, nothing else.
struct Records<'o>(&'o mut Vec<Record>);

impl<'de> DeserializeSeed<'de> for Records<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Records<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a list of records")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(raw) = seq.next_element_seed(ObjectRecord)? {
            match raw.classify() {
                Classified::Record(r) => self.0.push(r),
                _ => return Err(give_up()),
            }
        }
        Ok(())
    }
}

/// One element read as a record from a JSON object only: serde would also fill a struct
/// from an array, by position, which the splitter's path refuses ("not a JSON object").
struct ObjectRecord;

impl<'de> DeserializeSeed<'de> for ObjectRecord {
    type Value = RawRecord<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<RawRecord<'de>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ObjectRecord {
    type Value = RawRecord<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a record object")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawRecord<'de>, A::Error> {
        RawRecord::deserialize(MapAccessDeserializer::new(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = r#"{"eventTime":"2024-01-01T00:00:00Z","eventSource":"s3.amazonaws.com","eventName":"GetObject","eventID":"a"}"#;

    fn parse(text: &str) -> Option<usize> {
        let mut out = Vec::new();
        let ok = parse_delivery(text.as_bytes(), &mut out);
        assert_eq!(ok, !out.is_empty() || text.contains("[]"), "{text}");
        ok.then_some(out.len())
    }

    #[test]
    fn plain_deliveries_parse_and_everything_else_gives_up() {
        assert_eq!(parse(&format!(r#"{{"Records":[{A},{A}]}}"#)), Some(2));
        assert_eq!(parse(&format!(" \n{{\"Records\" : [ {A} ] }}\n")), Some(1));
        assert_eq!(parse(&format!("{{\"Records\":[{A}]}}\n")), Some(1));
        assert_eq!(parse(r#"{"Records":[]}"#), Some(0));
        for bad in [
            format!(r#"{{"Records":[{A},]}}"#),
            format!(r#"{{"Records":[{A}]}}{{"Records":[{A}]}}"#),
            format!(r#"{{"Records":[{A}],"other":1}}"#),
            format!(r#"{{"Records":[{A}],"Records":[{A}]}}"#),
            format!(r#"{{"Records":[{A},["2024-01-01T00:00:00Z"]]}}"#),
            format!(r#"{{"Records":[{A},{{"eventSource":"s3.amazonaws.com"}}]}}"#),
            format!(r#"{{"Records":[{A},{{"eventType":"AwsCloudTrailInsight"}}]}}"#),
            format!(
                r#"{{"Records":[{A},{{"detail-type":"AWS API Call via CloudTrail","detail":{A}}}]}}"#
            ),
            format!(r#"{{"Records":[{A}"#),
            format!("{A}\n{A}\n"),
            format!("[{A}]"),
        ] {
            assert_eq!(parse(&bad), None, "{bad}");
        }
    }
}
