//! One source, start to finish: open, split, parse, classify, unwrap envelopes, and account
//! for everything (records, skipped non-records, errors) in a [`FileReport`].

use serde_json::value::RawValue;

use crate::error::InputError;
use crate::input::{open_with, InputSource};
use crate::record::{parse_value, Classified, Record};
use crate::split::{split, split_with, Sink};

/// At most this many errors are kept per file; the rest are only counted.
pub const MAX_ERRORS_KEPT: usize = 50;

/// What decoding one source produced besides its records.
#[derive(Clone, Debug, Default)]
pub struct FileReport {
    pub source: String,
    pub records: u64,
    /// Uncompressed bytes read.
    pub bytes: u64,
    pub errors: Vec<InputError>,
    /// Errors beyond [`MAX_ERRORS_KEPT`], counted only.
    pub errors_dropped: u64,
    /// Values recognised as not being records (digests, notifications, Insights events).
    pub skipped: u64,
    /// One note per kind of skipped value.
    pub notes: Vec<String>,
    /// The source could not be opened or read to its end: it must be read again later.
    pub io_failed: bool,
}

impl FileReport {
    pub fn error_count(&self) -> u64 {
        self.errors.len() as u64 + self.errors_dropped
    }

    fn error(&mut self, record: Option<u64>, line: Option<u64>, reason: String) {
        if self.errors.len() < MAX_ERRORS_KEPT {
            self.errors.push(InputError {
                file: self.source.clone(),
                record,
                line,
                reason,
            });
        } else {
            self.errors_dropped += 1;
        }
    }
}

struct Decoder<'f, F: FnMut(Record)> {
    report: FileReport,
    emit: &'f mut F,
}

impl<F: FnMut(Record)> Decoder<'_, F> {
    /// Classify one value and deliver what it holds. `depth` bounds envelope nesting so a
    /// hostile file cannot recurse without end.
    fn take(&mut self, bytes: &[u8], depth: u8) -> Result<(), String> {
        match parse_value(bytes)?.classify() {
            Classified::Record(r) => {
                self.report.records += 1;
                (self.emit)(r);
                Ok(())
            }
            Classified::EventBridge(detail) if depth < 2 => {
                self.take(detail.get().as_bytes(), depth + 1)
            }
            Classified::LookupEvents(events) if depth < 2 => self.take_lookup_events(events, depth),
            Classified::Records(records) if depth < 2 => {
                let list: Vec<&RawValue> = serde_json::from_str(records.get())
                    .map_err(|e| format!("field `Records` is not a list: {e}"))?;
                for (i, r) in list.iter().enumerate() {
                    if let Err(reason) = self.take(r.get().as_bytes(), depth + 1) {
                        self.report
                            .error(Some(i as u64), None, format!("Records[{i}]: {reason}"));
                    }
                }
                Ok(())
            }
            Classified::Skip(why) => {
                self.report.skipped += 1;
                if !self.report.notes.iter().any(|n| n == why) {
                    self.report.notes.push(why.to_owned());
                }
                Ok(())
            }
            Classified::Invalid(reason) => Err(reason),
            Classified::EventBridge(_) | Classified::LookupEvents(_) | Classified::Records(_) => {
                Err("envelopes nested too deeply".to_owned())
            }
        }
    }

    /// `aws cloudtrail lookup-events` output: each `CloudTrailEvent` is a record as a JSON string.
    fn take_lookup_events(&mut self, events: &RawValue, depth: u8) -> Result<(), String> {
        #[derive(serde::Deserialize)]
        struct Event<'a> {
            #[serde(rename = "CloudTrailEvent", borrow, default)]
            cloudtrail_event: crate::record::Lenient<'a>,
        }
        let list: Vec<Event> = serde_json::from_str(events.get())
            .map_err(|e| format!("field `Events` is not a list of events: {e}"))?;
        for (i, ev) in list.iter().enumerate() {
            let result = match ev.cloudtrail_event.as_deref() {
                Some(s) => self.take(s.as_bytes(), depth + 1),
                None => Err("field `CloudTrailEvent` is missing or not a string".to_owned()),
            };
            if let Err(reason) = result {
                self.report
                    .error(Some(i as u64), None, format!("Events[{i}]: {reason}"));
            }
        }
        Ok(())
    }
}

impl<F: FnMut(Record)> Sink for Decoder<'_, F> {
    fn value(&mut self, _index: u64, bytes: &[u8]) -> Result<(), String> {
        self.take(bytes, 0)
    }
    fn error(&mut self, record: Option<u64>, line: u64, reason: String) {
        self.report.error(record, Some(line), reason);
    }
}

/// Decode one source, calling `emit` for each record in file order. Never fails: an
/// unreadable or corrupt source becomes errors in the report, after every good record
/// before the damage has been emitted.
pub fn decode_source(source: &InputSource, emit: &mut impl FnMut(Record)) -> FileReport {
    decode_source_with(source, &mut DecodeBuffers::default(), emit)
}

/// Buffers one decoding thread reuses from source to source: real deliveries are thousands
/// of files of a few hundred records, where allocating (and zeroing) buffers of hundreds of
/// kilobytes per file cost more than some of the files' records.
#[derive(Default)]
pub struct DecodeBuffers {
    /// A small file's raw (usually gzip) bytes, read whole.
    raw: Vec<u8>,
    /// The splitter's window of decompressed bytes.
    split: Vec<u8>,
    /// A delivery file's decompressed bytes, whole (up to [`WHOLE_DECODED_MAX`]).
    whole: Vec<u8>,
    /// Its records, parsed in one pass and handed on once all of them parsed.
    records: Vec<Record>,
}

/// Decompressed files up to this size are parsed whole when they are plain delivery files
/// ([`crate::delivery`]); larger ones, and every other shape, stream through the splitter.
/// Real delivery files are tens to hundreds of kilobytes; the bound keeps a decode worker's
/// buffer small whatever arrives.
pub const WHOLE_DECODED_MAX: usize = 4 << 20;

/// A worker keeps its whole-file buffers from file to file up to this size; a larger file's
/// are given back once it is decoded, so that sixteen S3 workers that each met one large
/// file do not hold sixteen large buffers for the rest of the run.
const WHOLE_KEPT: usize = 1 << 20;

/// Read `source` (already opened as `reader`) whole if it is small, and parse it in one pass
/// if it is a plain delivery file; otherwise split it. The splitter sees exactly the bytes,
/// and the read error, it would have seen streaming.
fn decode_whole<F: FnMut(Record)>(
    reader: &mut impl std::io::Read,
    dec: &mut Decoder<'_, F>,
    whole: &mut Vec<u8>,
    records: &mut Vec<Record>,
    split: &mut Vec<u8>,
) -> std::io::Result<()> {
    use std::io::Read;
    whole.clear();
    let result = match reader.take(WHOLE_DECODED_MAX as u64 + 1).read_to_end(whole) {
        Ok(n) if n <= WHOLE_DECODED_MAX => {
            if crate::delivery::parse_delivery(whole, records) {
                for r in records.drain(..) {
                    dec.report.records += 1;
                    (dec.emit)(r);
                }
                Ok(())
            } else {
                split_with(whole.as_slice(), dec, split)
            }
        }
        // Larger than a delivery file: what was read, then the rest as it comes.
        Ok(_) => split_with(whole.as_slice().chain(reader), dec, split),
        Err(e) => split_with(whole.as_slice().chain(FailWith(Some(e))), dec, split),
    };
    if whole.capacity() > WHOLE_KEPT {
        *whole = Vec::new();
    }
    if records.capacity() * std::mem::size_of::<Record>() > WHOLE_KEPT {
        *records = Vec::new();
    }
    result
}

/// A reader that fails with the error a read of the source gave (after the bytes before it).
struct FailWith(Option<std::io::Error>);

impl std::io::Read for FailWith {
    fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
        self.0.take().map_or(Ok(0), Err)
    }
}

/// [`decode_source`] with buffers kept from an earlier call.
pub fn decode_source_with(
    source: &InputSource,
    buffers: &mut DecodeBuffers,
    emit: &mut impl FnMut(Record),
) -> FileReport {
    let mut dec = Decoder {
        report: FileReport {
            source: source.to_string(),
            ..Default::default()
        },
        emit,
    };
    let DecodeBuffers {
        raw,
        split,
        whole,
        records,
    } = buffers;
    match open_with(source, raw) {
        Err(e) => {
            dec.report.io_failed = true;
            dec.report.error(None, None, format!("cannot open: {e}"))
        }
        Ok(mut reader) => {
            // A stream (stdin, a named pipe) may be a live feed: never wait for it to end.
            let result = if !reader.finite {
                split_with(&mut reader, &mut dec, split)
            } else {
                decode_whole(&mut reader, &mut dec, whole, records, split)
            };
            dec.report.bytes = reader.count;
            if let Err(e) = result {
                dec.report.io_failed = true;
                let what = if e.kind() == std::io::ErrorKind::UnexpectedEof {
                    "truncated".to_owned()
                } else {
                    e.to_string()
                };
                let records = dec.report.records;
                dec.report.error(
                    None,
                    None,
                    format!("read failed after {records} records ({} bytes): {what}; records before this point were kept", reader.count),
                );
            }
        }
    }
    dec.report
}

/// Decode bytes already in memory (tests, benchmarks, embedded callers).
pub fn decode_bytes(name: &str, bytes: &[u8], emit: &mut impl FnMut(Record)) -> FileReport {
    let mut dec = Decoder {
        report: FileReport {
            source: name.to_owned(),
            bytes: bytes.len() as u64,
            ..Default::default()
        },
        emit,
    };
    if let Err(e) = split(bytes, &mut dec) {
        dec.report.error(None, None, e.to_string());
    }
    dec.report
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn gzip(parts: &[&str]) -> Vec<u8> {
        // One gzip member per part: CloudTrail's files are one, concatenated ones are several.
        let mut out = Vec::new();
        for p in parts {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(p.as_bytes()).unwrap();
            out.extend(gz.finish().unwrap());
        }
        out
    }

    fn records(n: usize, from: usize) -> String {
        let list: Vec<String> = (from..from + n)
            .map(|i| {
                format!(
                    r#"{{"eventTime":"2024-01-01T00:00:00Z","eventSource":"s3.amazonaws.com","eventName":"E","eventID":"{i}"}}"#
                )
            })
            .collect();
        format!(r#"{{"Records":[{}]}}"#, list.join(","))
    }

    /// A named pipe is a live feed like stdin: its records are handed on as they arrive, not
    /// when the writer closes it (the whole-file path waits for the end).
    #[cfg(unix)]
    #[test]
    fn a_named_pipe_is_read_as_it_is_written() {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::{mpsc, Arc};

        let dir = tempfile::tempdir().unwrap();
        let fifo = crate::test_support::fifo(dir.path(), "live.jsonl");
        let record = crate::test_support::line;
        let (tx, rx) = mpsc::channel();
        let live = Arc::new(AtomicBool::new(false));
        let writer = {
            let (fifo, live) = (fifo.clone(), live.clone());
            std::thread::spawn(move || {
                let mut w = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
                w.write_all(record("first").as_bytes()).unwrap();
                w.flush().unwrap();
                // The first record must come out while the pipe is still open.
                let seen = rx.recv_timeout(std::time::Duration::from_secs(30)).is_ok();
                live.store(seen, Ordering::SeqCst);
                w.write_all(record("second").as_bytes()).unwrap();
            })
        };
        let mut ids = Vec::new();
        let report = decode_source(&InputSource::File(fifo), &mut |r| {
            ids.push(r.event_id.unwrap().to_string());
            let _ = tx.send(());
        });
        writer.join().unwrap();
        assert!(
            live.load(Ordering::SeqCst),
            "the first record waited for the writer to close"
        );
        assert_eq!(ids, ["first", "second"]);
        assert_eq!(report.error_count(), 0);
    }

    /// One set of buffers serves file after file: whole, multi-member, truncated, plain,
    /// large enough to stream; each is decoded as if alone.
    #[test]
    fn reused_buffers_decode_each_file_as_if_alone() {
        let dir = tempfile::tempdir().unwrap();
        let whole = gzip(&[&records(300, 0)]);
        let members = gzip(&[&records(2, 0), &records(3, 2)]);
        let truncated = whole[..whole.len() * 2 / 3].to_vec();
        let plain = records(4, 0);
        let big = records(60_000, 0);
        assert!(big.len() as u64 > crate::input::READ_WHOLE_MAX);
        let files: [(&str, &[u8]); 5] = [
            ("whole.json.gz", &whole),
            ("members.json.gz", &members),
            ("truncated.json.gz", &truncated),
            ("plain.json", plain.as_bytes()),
            ("big.json", big.as_bytes()),
        ];
        let mut buffers = DecodeBuffers::default();
        let mut got = Vec::new();
        for (name, bytes) in files {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            let mut ids = Vec::new();
            let report = decode_source_with(&InputSource::File(path), &mut buffers, &mut |r| {
                ids.push(r.event_id.unwrap().to_string())
            });
            // Records come in file order, and each file counts only its own.
            assert!(ids.iter().enumerate().all(|(i, id)| *id == i.to_string()));
            assert_eq!(report.records, ids.len() as u64);
            got.push((ids.len(), report.error_count(), report.io_failed));
        }
        assert_eq!(got[0], (300, 0, false));
        assert_eq!(got[1], (5, 0, false));
        let (kept, errors, failed) = got[2];
        assert!(kept > 0 && kept < 300 && errors == 1 && failed, "{got:?}");
        assert_eq!(got[3], (4, 0, false));
        assert_eq!(got[4], (60_000, 0, false));
    }
}
