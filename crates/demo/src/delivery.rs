//! Delivery as CloudTrail does it: `AWSLogs/<account>/CloudTrail/<region>/YYYY/MM/DD/` files
//! (`AWSLogs/<org id>/<account>/…` for an organisation trail) of one `{"Records":[…]}` object
//! each, gzip, one per 5-minute slot (split above 500 records, or, in the organisation shape,
//! into files of a few hundred as a busy stream is delivered), records shuffled inside a file, 20 % delivered one slot late, 0.1 % delivered
//! twice, and hourly digest files beside them. Memory holds two slots of records.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use credwarden_core::EventTime;
use flate2::write::GzEncoder;
use flate2::Compression;

use crate::error::{Error, Result};
use crate::rng::Rng;

/// The first instant of the demo's data.
pub const START: &str = "2026-03-02T00:00:00Z";
/// One delivery slot: CloudTrail delivers a stream's records every five minutes.
pub const SLOT_MS: i64 = 5 * EventTime::MINUTE;
/// At most this many records per delivery file.
const MAX_PER_FILE: usize = 500;

/// The start of delivery slot `slot`.
pub fn slot_time(slot: u64) -> EventTime {
    EventTime::parse(START)
        .expect("constant")
        .plus_millis(slot as i64 * SLOT_MS)
}

fn stamp(t: EventTime) -> String {
    let (y, mo, d, h, mi, _) = t.to_parts();
    format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}Z")
}

/// One log stream: an account's trail in one region.
type Stream = (String, &'static str);

/// Records waiting for their delivery file, by (delivery slot, account, region).
type Due = (u64, String, &'static str);

/// How a stream's records for one slot are cut into files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileSplit {
    /// At most [`MAX_PER_FILE`] records a file.
    Max,
    /// Files of 260–700 records, as CloudTrail delivers a busy stream; with the quiet
    /// streams' small files, ~250 records a file on average.
    Spread,
}

/// Batches records into delivery files and writes them (and digests) as their slot closes.
pub struct DeliveryWriter {
    logs: PathBuf,
    /// `AWSLogs/` or `AWSLogs/<org id>/`.
    prefix: String,
    split: FileSplit,
    pending: BTreeMap<Due, Vec<String>>,
    rng: Rng,
    seen_streams: BTreeSet<Stream>,
    last_digest: Option<EventTime>,
    /// Delivery files written.
    pub files: u64,
    /// Digest files written.
    pub digests: u64,
    /// Bytes of gzip written, delivery and digest files together.
    pub gz_bytes: u64,
    /// Records written (a duplicate delivery counts twice).
    pub records: u64,
}

impl DeliveryWriter {
    /// A writer of `AWSLogs/…` under `logs`; with `org`, of an organisation trail's
    /// `AWSLogs/<org>/…`.
    pub fn new(logs: &Path, rng: Rng, org: Option<&str>, split: FileSplit) -> DeliveryWriter {
        DeliveryWriter {
            logs: logs.to_path_buf(),
            prefix: match org {
                Some(org) => format!("AWSLogs/{org}/"),
                None => "AWSLogs/".to_owned(),
            },
            split,
            pending: BTreeMap::new(),
            rng,
            seen_streams: BTreeSet::new(),
            last_digest: None,
            files: 0,
            digests: 0,
            gz_bytes: 0,
            records: 0,
        }
    }

    /// Queue one record of `account`'s trail in `region`, for the slot its time falls in
    /// (or the next: late delivery), now and then twice.
    pub fn add(&mut self, account: &str, region: &'static str, time: EventTime, json: String) {
        let slot = ((time.millis() - slot_time(0).millis()) / SLOT_MS).max(0) as u64;
        let delay = u64::from(self.rng.chance(0.2));
        if self.rng.chance(0.001) {
            self.pending
                .entry((slot + delay + 1, account.to_owned(), region))
                .or_default()
                .push(json.clone());
        }
        self.pending
            .entry((slot + delay, account.to_owned(), region))
            .or_default()
            .push(json);
    }

    /// Write every file due at or before `upto`.
    pub fn flush(&mut self, upto: u64) -> Result<()> {
        let due: Vec<Due> = self
            .pending
            .range(..(upto + 1, String::new(), ""))
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            let mut records = self.pending.remove(&key).expect("listed");
            let (slot, account, region) = key;
            // Records inside a delivery file are not in event-time order.
            for i in (1..records.len()).rev() {
                records.swap(i, self.rng.below(i as u64 + 1) as usize);
            }
            let delivered = slot_time(slot + 1);
            let (y, mo, d, ..) = delivered.to_parts();
            let dir = self.logs.join(format!(
                "{}{account}/CloudTrail/{region}/{y:04}/{mo:02}/{d:02}",
                self.prefix
            ));
            fs::create_dir_all(&dir).map_err(Error::create(&dir))?;
            let mut rest = &records[..];
            while !rest.is_empty() {
                let take = match self.split {
                    FileSplit::Max => MAX_PER_FILE,
                    FileSplit::Spread => 260 + self.rng.below(441) as usize,
                };
                let (chunk, after) = rest.split_at(take.min(rest.len()));
                rest = after;
                let name = format!(
                    "{account}_CloudTrail_{region}_{}_{}.json.gz",
                    stamp(delivered),
                    self.rng.alnum(16)
                );
                let mut body =
                    String::with_capacity(chunk.iter().map(|r| r.len() + 1).sum::<usize>() + 16);
                body.push_str("{\"Records\":[");
                for (i, r) in chunk.iter().enumerate() {
                    if i > 0 {
                        body.push(',');
                    }
                    body.push_str(r);
                }
                body.push_str("]}");
                self.gz_bytes += write_gz(&dir.join(name), body.as_bytes())?;
                self.files += 1;
                self.records += chunk.len() as u64;
            }
            self.seen_streams.insert((account, region));
            if delivered.millis() % EventTime::HOUR == 0 && self.last_digest != Some(delivered) {
                self.last_digest = Some(delivered);
                self.write_digests(delivered)?;
            }
        }
        Ok(())
    }

    /// Hourly digest files (integrity digests: no records; detect must skip them quietly).
    fn write_digests(&mut self, at: EventTime) -> Result<()> {
        let streams: Vec<Stream> = self.seen_streams.iter().cloned().collect();
        for (account, region) in streams {
            let (y, mo, d, ..) = at.to_parts();
            let dir = self.logs.join(format!(
                "{}{account}/CloudTrail-Digest/{region}/{y:04}/{mo:02}/{d:02}",
                self.prefix
            ));
            fs::create_dir_all(&dir).map_err(Error::create(&dir))?;
            let start = at.plus_millis(-EventTime::HOUR);
            let object = format!(
                "{}{account}/CloudTrail-Digest/{region}/{y:04}/{mo:02}/{d:02}/\
                 {account}_CloudTrail-Digest_{region}_org-trail_{region}_{}.json.gz",
                self.prefix,
                stamp(at)
            );
            let body = format!(
                concat!(
                    r#"{{"awsAccountId":"{}","digestStartTime":"{}","digestEndTime":"{}","#,
                    r#""digestS3Bucket":"corp-cloudtrail","digestS3Object":"{}","#,
                    r#""digestPublicKeyFingerprint":"{}","#,
                    r#""digestSignatureAlgorithm":"SHA256withRSA","logFiles":[]}}"#
                ),
                account,
                start,
                at,
                object,
                self.rng.hex(32)
            );
            write_gz(
                &dir.join(format!(
                    "{account}_CloudTrail-Digest_{region}_org-trail_{region}_{}.json.gz",
                    stamp(at)
                )),
                body.as_bytes(),
            )?;
            self.digests += 1;
        }
        Ok(())
    }
}

/// Write `body` gzipped to `path`; returns the file's size.
fn write_gz(path: &Path, body: &[u8]) -> Result<u64> {
    let file = fs::File::create(path).map_err(Error::create(path))?;
    let mut gz = GzEncoder::new(std::io::BufWriter::new(file), Compression::new(4));
    gz.write_all(body).map_err(Error::write(path))?;
    let mut inner = gz.finish().map_err(Error::write(path))?;
    inner.flush().map_err(Error::write(path))?;
    Ok(inner.get_ref().metadata().map_or(0, |m| m.len()))
}
