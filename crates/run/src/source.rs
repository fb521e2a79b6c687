//! Where a run's CloudTrail comes from, and which of it is new.
//!
//! A [`Source`] lists the inputs there are now, in canonical order, whole or in parts (a folder
//! walk or an S3 scope with days hands out one delivery day per listing); a run lists again
//! until the source is drained, and again on every poll when it follows. [`PathSource`] serves files, folders (walked recursively) and stdin.
//! Sources that live elsewhere (S3 listings, SQS notifications) implement the same trait.
//!
//! Which inputs are new is decided by their [`FileIdentity`] (path, size, modification
//! time): the run's ledger (memory, or the state file's processed set) says whether an
//! identity was seen, and [`select`] keeps the rest.

use std::path::PathBuf;
use std::time::Duration;

use cloudtrail::{DeliveryDays, InputSource};

use crate::error::RunError;

/// What a source holds now.
#[derive(Debug, Default)]
pub struct Listing {
    /// In canonical order (delivery stamp, then path).
    pub inputs: Vec<InputSource>,
    /// Files a folder walk passed over because their names are not CloudTrail's.
    pub ignored: Vec<PathBuf>,
    /// What the operator should know about this listing (messages left on a queue, …).
    pub notes: Vec<String>,
    /// When the source hands out a walk in parts (a folder walk, one delivery day per
    /// listing) and knows its size up front: the inputs of all its parts.
    pub total: Option<usize>,
}

impl Listing {
    /// What the operator is told of the files passed over, if any.
    pub fn ignored_note(&self) -> Option<String> {
        let first = self.ignored.first()?;
        Some(format!(
            "note: {} file(s) in the given folders are not named like CloudTrail (.json, \
             .json.gz, .jsonl) and were not read, e.g. {}",
            self.ignored.len(),
            first.display()
        ))
    }
}

/// A place CloudTrail is read from.
pub trait Source {
    /// The inputs there are now, or the next part of them: a source may hand out what it
    /// holds over several listings (one delivery day each, so that memory does not grow with
    /// the input) and says so through [`Source::drained`]. Called once per pass.
    fn list(&mut self) -> Result<Listing, RunError>;

    /// Whether the inputs include a live stream (stdin): a stream cannot be read again, so
    /// its progress cannot be checkpointed.
    fn has_stream(&self) -> bool {
        false
    }

    /// Decoding threads this source reads best with when the user did not say; `None`: one
    /// per core.
    fn preferred_threads(&self) -> Option<usize> {
        None
    }

    /// Everything listed so far has been processed and committed (checkpointed with
    /// `--state`): a queue deletes the messages that announced it. Files need nothing.
    fn committed(&mut self) -> Result<(), RunError> {
        Ok(())
    }

    /// Whether everything there was has been listed: a queue is drained when a receive came
    /// back empty, a folder walk when its last day was handed out. A run that does not follow
    /// ends then; one that follows waits its poll interval before listing again.
    fn drained(&self) -> bool {
        true
    }
}

/// Files, folders and `-` (stdin), as given on the command line, handed out one delivery day
/// per listing ([`DeliveryDays`]): a run over a month of an organisation's files holds one
/// day's paths at a time, not the month's.
#[derive(Debug)]
pub struct PathSource {
    paths: Vec<PathBuf>,
    /// The walk being handed out; `None` between walks (the next listing walks again).
    walk: Option<DeliveryDays>,
}

impl PathSource {
    pub fn new(paths: Vec<PathBuf>) -> PathSource {
        PathSource { paths, walk: None }
    }
}

impl Source for PathSource {
    fn list(&mut self) -> Result<Listing, RunError> {
        let mut listing = Listing::default();
        let walk = match &mut self.walk {
            Some(walk) => walk,
            None => {
                let mut walk = DeliveryDays::walk(&self.paths)?;
                listing.ignored = std::mem::take(&mut walk.ignored);
                listing.total = Some(walk.total());
                self.walk.insert(walk)
            }
        };
        listing.inputs = walk.next_day()?.unwrap_or_default();
        if walk.is_done() {
            self.walk = None;
        }
        Ok(listing)
    }

    fn has_stream(&self) -> bool {
        self.paths.iter().any(|p| p.as_os_str() == "-")
    }

    fn drained(&self) -> bool {
        self.walk.is_none()
    }
}

/// A file as it was when it was read: path (canonical), size, modification time.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FileIdentity {
    pub path: String,
    pub size: i64,
    pub mtime_ns: i64,
}

impl FileIdentity {
    /// The identity of a file source now; `None` for a stream or a file gone since listing.
    /// A remote object (S3) is its URI, its listed size and, standing in for the modification
    /// time, a hash of its version (ETag): a rewritten object is read again.
    pub fn of(source: &InputSource) -> Option<FileIdentity> {
        let p = match source {
            InputSource::File(p) => p,
            InputSource::Stdin => return None,
            InputSource::Remote(r) => {
                return Some(FileIdentity {
                    path: r.0.uri().to_owned(),
                    size: i64::try_from(r.0.size()).ok()?,
                    mtime_ns: version_stamp(r.0.version()),
                })
            }
        };
        // The same file reached as `logs/x` or `/abs/logs/x` is one file.
        let p = std::fs::canonicalize(p).ok()?;
        let m = std::fs::metadata(&p).ok()?;
        let mtime = m
            .modified()
            .ok()?
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?;
        Some(FileIdentity {
            path: p.display().to_string(),
            size: i64::try_from(m.len()).ok()?,
            mtime_ns: i64::try_from(mtime.as_nanos()).ok()?,
        })
    }
}

/// A stable 63-bit number for a version string (FNV-1a), stored where files keep their
/// modification time.
fn version_stamp(version: &str) -> i64 {
    let hash = version.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    (hash >> 1) as i64
}

/// What an earlier look knows of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    New,
    Changed,
    Unchanged,
}

/// The inputs to read in one pass.
#[derive(Debug, Default)]
pub struct Picked {
    pub todo: Vec<InputSource>,
    /// Per input in `todo`: its identity (None for a stream, or when not asked for).
    pub identities: Vec<Option<FileIdentity>>,
    pub notes: Vec<String>,
    /// Files left out because an earlier run read them unchanged.
    pub skipped: usize,
}

/// Files modified this recently may still be being written (an S3 sync in progress): when
/// following, they wait for the next look.
pub const SETTLE: Duration = Duration::from_secs(2);

/// Choose what to read: everything not seen unchanged before; when `following`, not files
/// still being written. Without `identify` (a single pass that remembers nothing), every
/// input is taken and no file is looked at: identities cost a `canonicalize` and a `stat`
/// per file and a few hundred bytes each while the pass runs.
pub fn select(
    inputs: Vec<InputSource>,
    following: bool,
    identify: bool,
    mut seen: impl FnMut(&FileIdentity) -> Result<Seen, RunError>,
) -> Result<Picked, RunError> {
    let now = credwarden_core::clock::now_nanos();
    let mut picked = Picked::default();
    for source in inputs {
        let id = if identify {
            FileIdentity::of(&source)
        } else {
            None
        };
        if let Some(identity) = &id {
            let settling = matches!(source, InputSource::File(_))
                && now - identity.mtime_ns < SETTLE.as_nanos() as i64;
            if following && settling {
                continue;
            }
            match seen(identity)? {
                Seen::Unchanged => {
                    picked.skipped += 1;
                    continue;
                }
                Seen::Changed => picked.notes.push(format!(
                    "note: {} changed since an earlier run processed it; it is read again",
                    identity.path
                )),
                Seen::New => {}
            }
        }
        picked.identities.push(id);
        picked.todo.push(source);
    }
    Ok(picked)
}

/// Delivery files in S3 (`s3://BUCKET/PREFIX`), narrowed to a [`aws::TrailScope`]: only the
/// key prefixes of the accounts, regions and days asked for are listed. Objects are read by
/// the decode workers, so GETs of one worker overlap the decoding of the others.
///
/// The prefixes are listed one delivery day per listing, like folders: a month of an
/// organisation's trail holds one day's object list in memory. The days are those of the
/// scope (`--since`), or else the day folders found under each region; prefixes that are not a
/// day (objects and folders outside a trail's layout) are listed first.
pub struct S3Source {
    reader: std::sync::Arc<aws::S3Reader>,
    locations: Vec<aws::S3Location>,
    scope: aws::TrailScope,
    /// The walk being handed out: (bucket, prefix) pairs by delivery day (`YYYY/MM/DD`, or
    /// empty when the scope has no days); `None` between walks.
    days: Option<std::collections::BTreeMap<String, Vec<(String, String)>>>,
}

impl S3Source {
    pub fn new(
        reader: aws::S3Reader,
        locations: Vec<aws::S3Location>,
        scope: aws::TrailScope,
    ) -> S3Source {
        S3Source {
            reader: std::sync::Arc::new(reader),
            locations,
            scope,
            days: None,
        }
    }

    /// Every prefix of the scope, grouped by the delivery day it ends with.
    fn walk(&self) -> Result<std::collections::BTreeMap<String, Vec<(String, String)>>, RunError> {
        let mut days = std::collections::BTreeMap::<String, Vec<(String, String)>>::new();
        for location in &self.locations {
            for prefix in self.reader.trail_prefixes(location, &self.scope)? {
                let day = day_of_prefix(&prefix).unwrap_or_default().to_owned();
                days.entry(day)
                    .or_default()
                    .push((location.bucket.clone(), prefix));
            }
        }
        Ok(days)
    }
}

/// The `YYYY/MM/DD` a trail prefix ends with (`…/REGION/YYYY/MM/DD/`), if it does.
fn day_of_prefix(prefix: &str) -> Option<&str> {
    let day = prefix.strip_suffix('/')?;
    let day = day.get(day.len().checked_sub(10)?..)?;
    let b = day.as_bytes();
    let shape = b.iter().enumerate().all(|(i, c)| {
        if i == 4 || i == 7 {
            *c == b'/'
        } else {
            c.is_ascii_digit()
        }
    });
    shape.then_some(day)
}

/// One S3 object as a decoder input.
fn s3_input(
    reader: &std::sync::Arc<aws::S3Reader>,
    bucket: &str,
    info: aws::ObjectInfo,
) -> cloudtrail::RemoteSource {
    let object = aws::S3Object::new(reader.clone(), bucket, info);
    cloudtrail::RemoteSource(std::sync::Arc::new(object))
}

/// Workers reading S3. Delivery files are fetched ahead of them (`RemoteInput::prefetch`,
/// up to 64 GETs in flight within the reader's byte budget); objects too large to fetch
/// whole are streamed by the worker that takes them, so more workers than cores keep the
/// cores decoding while such a stream waits (memory: one object and two chunks of records
/// per worker).
const S3_WORKERS: usize = 16;

impl Source for S3Source {
    fn preferred_threads(&self) -> Option<usize> {
        Some(S3_WORKERS)
    }

    fn list(&mut self) -> Result<Listing, RunError> {
        let days = match &mut self.days {
            Some(days) => days,
            None => {
                let walked = self.walk()?;
                self.days.insert(walked)
            }
        };
        let prefixes = days.pop_first().map(|(_, p)| p).unwrap_or_default();
        if days.is_empty() {
            self.days = None;
        }
        let mut seen = std::collections::HashSet::new();
        let mut remote = Vec::new();
        let mut ignored = Vec::new();
        for (bucket, prefix) in prefixes {
            for info in self.reader.list(&bucket, &prefix)? {
                // Folder markers (keys ending in `/`, made by the S3 console) hold nothing.
                if info.key.ends_with('/') || !seen.insert((bucket.clone(), info.key.clone())) {
                    continue;
                }
                let name = info.key.rsplit('/').next().unwrap_or("");
                if !cloudtrail::looks_like_trail(name) {
                    ignored.push(PathBuf::from(format!("s3://{bucket}/{}", info.key)));
                    continue;
                }
                remote.push(s3_input(&self.reader, &bucket, info));
            }
        }
        cloudtrail::sort_remote(&mut remote);
        Ok(Listing {
            inputs: remote.into_iter().map(InputSource::Remote).collect(),
            ignored,
            ..Listing::default()
        })
    }

    fn drained(&self) -> bool {
        self.days.is_none()
    }
}

/// Delivery files announced on an SQS queue (S3 event notifications, direct, through SNS or
/// EventBridge, and CloudTrail's own SNS notifications), read from S3.
///
/// Exactly once: a message is deleted only after the pass that read its objects has been
/// committed ([`Source::committed`], after the ledger's checkpoint), so a crash before that
/// leaves it on the queue to be received again, and the state file's processed set (key and
/// ETag) keeps its objects from being counted twice. Messages are received invisible for
/// [`SQS_VISIBILITY_SECONDS`] and a pass takes at most [`SQS_MESSAGES_PER_PASS`] of them, so
/// a pass ends long before they reappear. Test events and digest files are noted and
/// deleted; a message that cannot be read is noted and left to the queue's redrive policy.
pub struct SqsSource {
    queue: aws::SqsQueue,
    reader: std::sync::Arc<aws::S3Reader>,
    wait_seconds: i32,
    visibility_seconds: i32,
    buckets: Vec<String>,
    pending: Vec<String>,
    drained: bool,
}

/// How long a received message stays invisible to other consumers unless configured.
pub const SQS_VISIBILITY_SECONDS: i32 = 900;
/// Messages one pass takes at most (each names one or a few delivery files).
pub const SQS_MESSAGES_PER_PASS: usize = 200;

impl SqsSource {
    /// `wait_seconds`: long-polling wait of a receive (0..=20); `visibility_seconds`: how
    /// long received messages stay invisible (a crashed run's messages come back after it);
    /// `buckets`: the trail buckets whose objects may be read. Whoever can send to the queue
    /// could otherwise have credwarden read CloudTrail of their making from a bucket of
    /// theirs — and pre-lock a stolen credential's source.
    pub fn new(
        queue: aws::SqsQueue,
        reader: aws::S3Reader,
        wait_seconds: i32,
        visibility_seconds: i32,
        buckets: Vec<String>,
    ) -> SqsSource {
        SqsSource {
            buckets,
            queue,
            reader: std::sync::Arc::new(reader),
            wait_seconds: wait_seconds.clamp(0, 20),
            visibility_seconds: visibility_seconds.clamp(1, 43_200),
            pending: Vec::new(),
            drained: false,
        }
    }
}

impl Source for SqsSource {
    fn preferred_threads(&self) -> Option<usize> {
        Some(S3_WORKERS)
    }

    fn list(&mut self) -> Result<Listing, RunError> {
        let mut listing = Listing::default();
        let mut remote = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let (mut test_events, mut skipped) = (0usize, 0usize);
        let mut taken = 0;
        self.drained = false;
        while taken < SQS_MESSAGES_PER_PASS {
            // Wait only for the first message of a pass; then take what is there.
            let wait = if taken == 0 { self.wait_seconds } else { 0 };
            let messages = self.queue.receive(wait, self.visibility_seconds)?;
            if messages.is_empty() {
                self.drained = true;
                break;
            }
            taken += messages.len();
            for m in messages {
                match aws::sqs::parse_notification(&m.body) {
                    aws::Notification::Test => {
                        test_events += 1;
                        self.pending.push(m.receipt);
                    }
                    aws::Notification::Unreadable(why) => listing.notes.push(format!(
                        "note: SQS message {} is not a notification credwarden reads ({why}); \
                         it is left on the queue for its redrive policy",
                        m.id
                    )),
                    aws::Notification::Objects(objects)
                        if objects.iter().any(|o| !self.buckets.contains(&o.bucket)) =>
                    {
                        let stranger = objects
                            .iter()
                            .find(|o| !self.buckets.contains(&o.bucket))
                            .map_or("", |o| o.bucket.as_str());
                        listing.notes.push(format!(
                            "note: SQS message {} names bucket {stranger:?}, not one of \
                             --sqs-bucket; it is not read and is left on the queue",
                            m.id
                        ));
                    }
                    aws::Notification::Objects(objects) => {
                        for o in objects {
                            let name = o.key.rsplit('/').next().unwrap_or("");
                            if o.key.contains("/CloudTrail-Digest/")
                                || !cloudtrail::looks_like_trail(name)
                            {
                                skipped += 1;
                                continue;
                            }
                            if !seen.insert((o.bucket.clone(), o.key.clone())) {
                                continue;
                            }
                            let info = aws::ObjectInfo {
                                key: o.key,
                                size: o.size,
                                etag: o.etag,
                            };
                            remote.push(s3_input(&self.reader, &o.bucket, info));
                        }
                        self.pending.push(m.receipt);
                    }
                }
            }
        }
        if test_events > 0 {
            listing
                .notes
                .push(format!("note: {test_events} S3 test event(s) on the queue"));
        }
        if skipped > 0 {
            listing.notes.push(format!(
                "note: {skipped} announced object(s) are digests or not CloudTrail and were not read"
            ));
        }
        cloudtrail::sort_remote(&mut remote);
        listing.inputs = remote.into_iter().map(InputSource::Remote).collect();
        Ok(listing)
    }

    fn committed(&mut self) -> Result<(), RunError> {
        if !self.pending.is_empty() {
            self.queue.delete(&self.pending)?;
            self.pending.clear();
        }
        Ok(())
    }

    fn drained(&self) -> bool {
        self.drained
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_is_listed_one_delivery_day_at_a_time_then_again() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "1_CloudTrail_r_20240102T0000Z_a.json",
            "1_CloudTrail_r_20240101T0000Z_b.json",
            "1_CloudTrail_r_20240101T0005Z_c.json",
            "notes.txt",
        ] {
            std::fs::write(dir.path().join(name), "{}").unwrap();
        }
        let mut source = PathSource::new(vec![dir.path().to_path_buf()]);
        let first = source.list().unwrap();
        // The first part carries what the walk found in all: the progress total, the note.
        assert_eq!(first.total, Some(3));
        assert_eq!(first.ignored.len(), 1);
        assert_eq!(first.inputs.len(), 2);
        assert!(!source.drained());
        let second = source.list().unwrap();
        assert_eq!((second.inputs.len(), second.total), (1, None));
        assert!(second.ignored.is_empty());
        assert!(source.drained());
        // Following lists again: a new walk.
        let third = source.list().unwrap();
        assert_eq!((third.inputs.len(), third.total), (2, Some(3)));
        // Nothing there: one empty listing, drained.
        let bare = tempfile::tempdir().unwrap();
        let mut empty = PathSource::new(vec![bare.path().to_path_buf()]);
        let none = empty.list().unwrap();
        assert!(none.inputs.is_empty());
        assert!(empty.drained());
    }

    #[test]
    fn trail_prefixes_are_grouped_by_their_delivery_day() {
        assert_eq!(
            day_of_prefix("org/AWSLogs/o-1/111122223333/CloudTrail/us-east-1/2024/05/01/"),
            Some("2024/05/01")
        );
        for none in [
            "org/AWSLogs/o-1/111122223333/CloudTrail/us-east-1/",
            "2024/05/01",
            "x/2024-05-01/",
            "/",
            "",
        ] {
            assert_eq!(day_of_prefix(none), None, "{none}");
        }
    }

    #[test]
    fn a_single_pass_without_memory_looks_at_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("x.json");
        std::fs::write(&file, "{}").unwrap();
        let inputs = vec![InputSource::File(file)];
        let picked = select(inputs.clone(), false, false, |_| unreachable!()).unwrap();
        assert_eq!(picked.identities, [None]);
        let picked = select(inputs, false, true, |_| Ok(Seen::Unchanged)).unwrap();
        assert!(picked.todo.is_empty());
        assert_eq!(picked.skipped, 1);
    }
}
