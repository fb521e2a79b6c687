//! CloudTrail where it lives: delivery files in an S3 bucket, read through the AWS SDK.
//!
//! A trail (or an organisation trail) delivers to
//! `PREFIX/AWSLogs/[o-ORGID/]ACCOUNT/CloudTrail/REGION/YYYY/MM/DD/…json.gz`. A [`TrailScope`]
//! (accounts, regions, days) is turned into exactly those key prefixes, so a day of one
//! account never lists the whole bucket; the organisation, account, region and day levels are
//! discovered with delimiter listings (many at once) when not given, so a bucket is read one
//! delivery day at a time even without `--since` (a year of an organisation's object list
//! is never held at once). Objects are decoded like files. Delivery files (tens
//! of kilobytes) are fetched whole ahead of the decode workers, many GETs in flight within a
//! byte budget, so S3's latency overlaps decoding; a large object (a flaws.cloud-shaped
//! 100 MB file, or a hostile one) is streamed chunk by chunk when its turn comes. A GET that
//! has not answered after four times the usual time (at least 200 ms) is asked again and the
//! first answer taken, so one slow or hung request does not idle the ordered decoders.

use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use credwarden_core::EventTime;

use aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Output;

use crate::error::AwsError;
use crate::live::{call_error, sdk_config, LiveOptions};

/// `s3://BUCKET/PREFIX`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    /// Without a leading `/`; empty for the whole bucket.
    pub prefix: String,
}

impl S3Location {
    /// Parse `s3://bucket[/prefix]`; `None` when `uri` is not an S3 URI.
    pub fn parse(uri: &str) -> Option<S3Location> {
        let rest = uri.strip_prefix("s3://")?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let valid = !bucket.is_empty()
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.".contains(&b));
        valid.then(|| S3Location {
            bucket: bucket.to_owned(),
            prefix: prefix.trim_start_matches('/').to_owned(),
        })
    }

    /// The folder under which `AWSLogs/` lies.
    fn base(&self) -> String {
        let p = self.prefix.trim_end_matches('/');
        if p.is_empty() {
            String::new()
        } else {
            format!("{p}/")
        }
    }
}

/// Which part of a trail's delivery to read. Empty lists mean every account or region found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrailScope {
    pub accounts: Vec<String>,
    pub regions: Vec<String>,
    /// First and last day (UTC) to read, inclusive, when known.
    pub since: Option<EventTime>,
    pub until: Option<EventTime>,
}

impl TrailScope {
    /// True when nothing narrows the listing: everything under the location is read.
    pub fn is_everything(&self) -> bool {
        self.accounts.is_empty()
            && self.regions.is_empty()
            && self.since.is_none()
            && self.until.is_none()
    }
}

/// One listed object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    pub etag: String,
}

/// Objects of at most this size are fetched ahead, whole; larger ones are streamed.
pub const PREFETCH_OBJECT_MAX: u64 = 8 << 20;
/// Bytes one reader holds fetched ahead and not yet decoded, at most (by default).
pub const PREFETCH_BUDGET: u64 = 64 << 20;

/// A connection to S3 usable from many threads at once (the decode workers).
pub struct S3Reader {
    rt: tokio::runtime::Runtime,
    client: aws_sdk_s3::Client,
    /// Bytes fetched ahead and not yet handed over (leases outstanding).
    ahead: Arc<AtomicU64>,
    budget: u64,
    /// How long GETs take to answer, and the GETs asked again because one did not.
    latency: Arc<GetLatency>,
}

/// What an [`S3Reader`] has counted so far.
#[derive(Clone)]
pub struct S3Counters(Arc<GetLatency>);

impl S3Counters {
    /// GETs asked a second time because the first was slow to answer: a bucket or a link
    /// that is often slow shows here before it shows anywhere else.
    pub fn hedged_gets(&self) -> u64 {
        self.0.hedged.load(Ordering::Relaxed)
    }
}

/// A GET that has not answered after this long is asked again, however fast its peers are.
pub const HEDGE_AFTER_MIN: Duration = Duration::from_millis(200);
/// ... and after this many times the usual time to answer, when that is longer.
const HEDGE_AFTER_TYPICAL: u32 = 4;
/// GETs asked again at once, at most: when S3 is slow for everyone, asking everything twice
/// would only double the load.
const HEDGES_IN_FLIGHT_MAX: u64 = 8;

/// Time to the first byte of GetObject, as a moving average, and the hedges it led to.
///
/// Why: S3's own guidance for tail latency is to ask again when a request is much slower
/// than usual — a second GET for the same object usually lands on another server and answers
/// at once. Decoding is ordered, so one GET that hangs idles every core until it answers.
#[derive(Debug, Default)]
struct GetLatency {
    /// Exponentially weighted mean, microseconds (0: nothing measured yet).
    mean_us: AtomicU64,
    hedged: AtomicU64,
    in_flight: AtomicU64,
    /// A fixed delay instead of the measured one (tests, operators who know their links).
    fixed: Option<Duration>,
}

impl GetLatency {
    fn record(&self, took: Duration) {
        let sample = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let mean = self.mean_us.load(Ordering::Relaxed);
        // A racing update may be lost: the mean is a guide, not an account.
        let next = if mean == 0 {
            sample
        } else {
            mean - mean / 8 + sample / 8
        };
        self.mean_us.store(next.max(1), Ordering::Relaxed);
    }

    fn hedge_after(&self) -> Duration {
        self.fixed.unwrap_or_else(|| {
            let typical = Duration::from_micros(self.mean_us.load(Ordering::Relaxed));
            HEDGE_AFTER_MIN.max(typical * HEDGE_AFTER_TYPICAL)
        })
    }

    /// A slot for one more hedge, if fewer than the maximum are in flight.
    fn start_hedge(self: &Arc<Self>) -> Option<HedgeSlot> {
        let mut now = self.in_flight.load(Ordering::Acquire);
        loop {
            if now >= HEDGES_IN_FLIGHT_MAX {
                return None;
            }
            match self.in_flight.compare_exchange_weak(
                now,
                now + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    self.hedged.fetch_add(1, Ordering::Relaxed);
                    return Some(HedgeSlot(self.clone()));
                }
                Err(n) => now = n,
            }
        }
    }
}

/// One hedge in flight; the slot is freed when the race it joined is over.
struct HedgeSlot(Arc<GetLatency>);

impl Drop for HedgeSlot {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

type GetResult = Result<
    aws_sdk_s3::operation::get_object::GetObjectOutput,
    aws_sdk_s3::error::SdkError<aws_sdk_s3::operation::get_object::GetObjectError>,
>;

/// GetObject, asked a second time if the first has not answered (headers) within the
/// hedge delay; whichever answers first is taken (the other is dropped, its connection
/// closed). A failure of one waits for the other: a hedge never turns a success into an error.
async fn get_hedged(
    client: &aws_sdk_s3::Client,
    latency: &Arc<GetLatency>,
    bucket: &str,
    key: &str,
) -> GetResult {
    let get = || client.get_object().bucket(bucket).key(key).send();
    let started = std::time::Instant::now();
    let first = get();
    tokio::pin!(first);
    tokio::select! {
        r = &mut first => {
            if r.is_ok() {
                latency.record(started.elapsed());
            }
            return r;
        }
        _ = tokio::time::sleep(latency.hedge_after()) => {}
    }
    let Some(_slot) = latency.start_hedge() else {
        return first.await;
    };
    let asked_again = std::time::Instant::now();
    let second = get();
    tokio::pin!(second);
    // The winner's own time to answer is learned, so that a link where every GET is slow
    // soon stops being hedged at all.
    tokio::select! {
        r = &mut first => match r {
            Ok(o) => {
                latency.record(started.elapsed());
                Ok(o)
            }
            Err(_) => second.await,
        },
        r = &mut second => match r {
            Ok(o) => {
                latency.record(asked_again.elapsed());
                Ok(o)
            }
            Err(_) => first.await,
        },
    }
}

/// A share of a reader's prefetch budget, given back when the bytes it covers are dropped.
struct Lease {
    ahead: Arc<AtomicU64>,
    bytes: u64,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.ahead.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// An object's bytes, fetched whole ahead of its turn.
struct Prefetched {
    bytes: bytes::Bytes,
    _lease: Lease,
}

impl Read for Prefetched {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.bytes.len());
        buf[..n].copy_from_slice(&self.bytes[..n]);
        bytes::Buf::advance(&mut self.bytes, n);
        Ok(n)
    }
}

/// What a background GET came to: the bytes, the error a GET would have given, or `None`:
/// the object is no longer what was listed (it grew), read it the ordinary way.
type FetchResult = Option<Result<Prefetched, String>>;

fn s3_error<E>(operation: &'static str, what: &str, e: E) -> AwsError
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error,
{
    match call_error(operation, e) {
        AwsError::Call { operation, message } => AwsError::Call {
            operation,
            message: format!("{what}: {message}"),
        },
        other => other,
    }
}

impl S3Reader {
    /// With `endpoint_url` (moto, MinIO, a VPC endpoint) requests are path-style.
    pub fn connect(opts: &LiveOptions) -> Result<S3Reader, AwsError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(AwsError::Runtime)?;
        let config = rt.block_on(sdk_config(opts))?;
        let s3 = aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(opts.endpoint_url.is_some())
            .build();
        Ok(S3Reader {
            rt,
            client: aws_sdk_s3::Client::from_conf(s3),
            ahead: Arc::new(AtomicU64::new(0)),
            budget: PREFETCH_BUDGET,
            latency: Arc::new(GetLatency::default()),
        })
    }

    /// The same reader asking a GET again after exactly `delay` without an answer, instead
    /// of after [`HEDGE_AFTER_MIN`] or four times the usual time, whichever is longer.
    pub fn with_hedge_after(mut self, delay: Duration) -> S3Reader {
        self.latency = Arc::new(GetLatency {
            fixed: Some(delay),
            ..GetLatency::default()
        });
        self
    }

    /// GETs asked a second time because the first was slow to answer.
    pub fn hedged_gets(&self) -> u64 {
        self.latency.hedged.load(Ordering::Relaxed)
    }

    /// A handle on this reader's counters that outlives handing the reader to a source (for
    /// the end-of-run report).
    pub fn counters(&self) -> S3Counters {
        S3Counters(self.latency.clone())
    }

    /// The same reader with another prefetch budget (0: never fetch ahead).
    pub fn with_prefetch_budget(mut self, bytes: u64) -> S3Reader {
        self.budget = bytes;
        self
    }

    /// Bytes fetched ahead and not yet decoded.
    pub fn bytes_ahead(&self) -> u64 {
        self.ahead.load(Ordering::Acquire)
    }

    fn lease(&self, bytes: u64) -> Option<Lease> {
        let mut held = self.ahead.load(Ordering::Acquire);
        loop {
            if held.saturating_add(bytes) > self.budget {
                return None;
            }
            match self.ahead.compare_exchange_weak(
                held,
                held + bytes,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    return Some(Lease {
                        ahead: self.ahead.clone(),
                        bytes,
                    })
                }
                Err(now) => held = now,
            }
        }
    }

    /// GET the whole object on the reader's runtime, in the background. The body may be no
    /// larger than the lease (the listed size): an object replaced by a larger one since the
    /// listing is not buffered here but streamed by the ordinary open.
    fn fetch_whole(&self, bucket: &str, key: &str, lease: Lease) -> Receiver<FetchResult> {
        let (tx, rx) = sync_channel(1);
        let client = self.client.clone();
        let latency = self.latency.clone();
        let what = format!("s3://{bucket}/{key}");
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        self.rt.spawn(async move {
            let result = async {
                let object = match get_hedged(&client, &latency, &bucket, &key).await {
                    Ok(o) => o,
                    Err(e) => return Some(Err(s3_error("s3:GetObject", &what, e).to_string())),
                };
                let mut body = object.body;
                let mut bytes = bytes::BytesMut::with_capacity(lease.bytes as usize);
                while let Some(chunk) = body.next().await {
                    match chunk {
                        Ok(c) if (bytes.len() + c.len()) as u64 <= lease.bytes => {
                            bytes.extend_from_slice(&c)
                        }
                        Ok(_) => return None,
                        Err(e) => return Some(Err(format!("{what}: reading the body: {e}"))),
                    }
                }
                Some(Ok(Prefetched {
                    bytes: bytes.freeze(),
                    _lease: lease,
                }))
            }
            .await;
            // The object may have been dropped (the run ended): nobody to tell.
            let _ = tx.send(result);
        });
        rx
    }

    /// Every page of ListObjectsV2 under `prefix` (with `delimiter`, the "folders" too),
    /// handed to `each`.
    fn list_pages(
        &self,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
        each: impl FnMut(&ListObjectsV2Output),
    ) -> Result<(), AwsError> {
        self.rt
            .block_on(list_pages(&self.client, bucket, prefix, delimiter, each))
    }

    /// For each of `prefixes`, the folders and the objects directly under it (delimiter
    /// `/`), in the order given. Up to [`LIST_CONCURRENCY`] listings run at once: finding an
    /// organisation's delivery days takes a listing per account, region, year and month.
    fn levels(&self, bucket: &str, prefixes: &[String]) -> Result<Vec<Level>, AwsError> {
        self.rt.block_on(async {
            let mut out = Vec::with_capacity(prefixes.len());
            for batch in prefixes.chunks(LIST_CONCURRENCY) {
                let mut set = tokio::task::JoinSet::new();
                for (i, prefix) in batch.iter().enumerate() {
                    let (client, bucket, prefix) =
                        (self.client.clone(), bucket.to_owned(), prefix.clone());
                    set.spawn(async move { (i, list_level(&client, &bucket, &prefix).await) });
                }
                let mut got: Vec<Option<Level>> = batch.iter().map(|_| None).collect();
                while let Some(done) = set.join_next().await {
                    let (i, level) = done.map_err(|e| AwsError::Call {
                        operation: "s3:ListObjectsV2",
                        message: format!("a listing task failed: {e}"),
                    })?;
                    got[i] = Some(level?);
                }
                out.extend(got.into_iter().flatten());
            }
            Ok(out)
        })
    }

    /// Under each region prefix (`…/CloudTrail/REGION/`), its delivery-day folders
    /// (`YYYY/MM/DD/`), found a level at a time. A folder not shaped like a date and an object
    /// above the day level are prefixes of their own (undated: read first), so everything
    /// under the region is still read.
    fn day_prefixes(&self, bucket: &str, regions: Vec<String>) -> Result<Vec<String>, AwsError> {
        let mut out = Vec::new();
        let mut level = regions;
        for digits in [4, 2, 2] {
            let mut next = Vec::new();
            for (parent, listed) in level.iter().zip(self.levels(bucket, &level)?) {
                out.extend(listed.objects);
                for folder in listed.folders {
                    let name = folder[parent.len()..].trim_end_matches('/');
                    if name.len() == digits && name.bytes().all(|b| b.is_ascii_digit()) {
                        next.push(folder);
                    } else {
                        out.push(folder);
                    }
                }
            }
            level = next;
        }
        out.extend(level);
        Ok(out)
    }

    /// The account folders of the trail delivering under `logs` (`…/AWSLogs/`): directly
    /// under it, and under an organisation trail's `o-ORGID/` (a bucket may hold both).
    fn trail_accounts(&self, bucket: &str, logs: &str) -> Result<TrailAccounts, AwsError> {
        let mut found = TrailAccounts::default();
        let mut take = |parent: &str, level: Level, orgs: &mut Vec<String>| {
            found.other.extend(level.objects);
            for folder in level.folders {
                let name = folder[parent.len()..].trim_end_matches('/');
                if parent == logs && name.starts_with("o-") {
                    orgs.push(folder);
                } else if credwarden_core::account::is_account_id(name) {
                    found.accounts.push(folder);
                } else {
                    found.other.push(folder);
                }
            }
        };
        let mut orgs = Vec::new();
        for level in self.levels(bucket, &[logs.to_owned()])? {
            take(logs, level, &mut orgs);
        }
        for (org, level) in orgs.iter().zip(self.levels(bucket, &orgs)?) {
            take(org, level, &mut Vec::new());
        }
        found.orgs = orgs;
        Ok(found)
    }

    /// Everything under `location`, as prefixes a delivery day can be read from: when the
    /// location holds `AWSLogs/`, the day folders of every account and region (found with
    /// delimiter listings) and, as prefixes of their own, everything else the location holds
    /// — other folders, objects, folders not shaped like a trail's — so nothing it holds goes
    /// unread; digest folders (`CloudTrail-Digest/`, signatures, never events) are left out.
    /// A location without `AWSLogs/` is one prefix, listed whole.
    fn everything_by_day(&self, location: &S3Location) -> Result<Vec<String>, AwsError> {
        let bucket = &location.bucket;
        let base = location.base();
        let logs = format!("{base}AWSLogs/");
        let mut other = Vec::new();
        // `s3://b/org` also means `org2/…` and `org.json`: whatever the prefix itself lists.
        let top = if location.prefix == base {
            self.levels(bucket, std::slice::from_ref(&base))?
        } else {
            self.levels(bucket, &[location.prefix.clone(), base.clone()])?
        };
        if !top.last().is_some_and(|l| l.folders.contains(&logs)) {
            return Ok(vec![location.prefix.clone()]);
        }
        for level in top {
            other.extend(level.objects);
            other.extend(
                level
                    .folders
                    .into_iter()
                    .filter(|f| *f != logs && *f != base),
            );
        }
        let found = self.trail_accounts(bucket, &logs)?;
        other.extend(found.other);
        let accounts = found.accounts;
        let mut trails = Vec::new();
        for (account, level) in accounts.iter().zip(self.levels(bucket, &accounts)?) {
            other.extend(level.objects);
            for folder in level.folders {
                match &folder[account.len()..] {
                    "CloudTrail/" => trails.push(folder),
                    "CloudTrail-Digest/" => {}
                    _ => other.push(folder),
                }
            }
        }
        let mut regions = Vec::new();
        for level in self.levels(bucket, &trails)? {
            other.extend(level.objects);
            regions.extend(level.folders);
        }
        other.extend(self.day_prefixes(bucket, regions)?);
        Ok(other)
    }

    /// Every object under `prefix`, in key order, paginated to the end.
    pub fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<ObjectInfo>, AwsError> {
        let mut out = Vec::new();
        self.list_pages(bucket, prefix, None, |page| {
            for o in page.contents() {
                let Some(key) = o.key() else { continue };
                out.push(ObjectInfo {
                    key: key.to_owned(),
                    size: o.size().and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
                    etag: o.e_tag().unwrap_or("").trim_matches('"').to_owned(),
                });
            }
        })?;
        Ok(out)
    }

    /// The "folders" directly under `prefix` (delimiter `/`), e.g. the accounts under
    /// `AWSLogs/`.
    pub fn folders(&self, bucket: &str, prefix: &str) -> Result<Vec<String>, AwsError> {
        Ok(self
            .rt
            .block_on(list_level(&self.client, bucket, prefix))?
            .folders)
    }

    /// The object as a stream: its body is read as the decoder asks for it, so a large
    /// object (a flaws.cloud-shaped 100 MB file, or a hostile one) costs a chunk of memory,
    /// not its size.
    pub fn open(&self, bucket: &str, key: &str) -> Result<ObjectBody, AwsError> {
        let what = format!("s3://{bucket}/{key}");
        let object = self
            .rt
            .block_on(get_hedged(&self.client, &self.latency, bucket, key))
            .map_err(|e| s3_error("s3:GetObject", &what, e))?;
        Ok(ObjectBody {
            handle: self.rt.handle().clone(),
            body: object.body,
            chunk: bytes::Bytes::new(),
            what,
        })
    }

    /// The key prefixes that hold `scope` of the trail delivering under `location`.
    pub fn trail_prefixes(
        &self,
        location: &S3Location,
        scope: &TrailScope,
    ) -> Result<Vec<String>, AwsError> {
        if scope.is_everything() {
            return self.everything_by_day(location);
        }
        let logs = format!("{}AWSLogs/", location.base());
        let found = self.trail_accounts(&location.bucket, &logs)?;
        let accounts = if scope.accounts.is_empty() {
            found.accounts
        } else {
            // An organisation trail has one more level, o-ORGID/, above the accounts.
            let roots = if found.orgs.is_empty() {
                vec![logs]
            } else {
                found.orgs
            };
            roots
                .iter()
                .flat_map(|root| scope.accounts.iter().map(move |a| format!("{root}{a}/")))
                .collect()
        };
        let mut regions = Vec::new();
        for account in &accounts {
            let trail = format!("{account}CloudTrail/");
            if scope.regions.is_empty() {
                regions.extend(self.folders(&location.bucket, &trail)?);
            } else {
                regions.extend(scope.regions.iter().map(|r| format!("{trail}{r}/")));
            }
        }
        Ok(match day_folders(scope)? {
            None => self.day_prefixes(&location.bucket, regions)?,
            Some(days) => regions
                .iter()
                .flat_map(|r| days.iter().map(move |d| format!("{r}{d}/")))
                .collect(),
        })
    }
}

/// Delimiter listings run at once while delivery days are found.
const LIST_CONCURRENCY: usize = 16;

/// What [`S3Reader::trail_accounts`] found.
#[derive(Default)]
struct TrailAccounts {
    /// Organisation folders (`AWSLogs/o-ORGID/`).
    orgs: Vec<String>,
    /// Account folders, under `AWSLogs/` or an organisation folder.
    accounts: Vec<String>,
    /// Everything else at those levels: objects and folders that are neither.
    other: Vec<String>,
}

/// What one delimiter listing found directly under a prefix.
struct Level {
    /// `PREFIX/NAME/`, in key order.
    folders: Vec<String>,
    /// Keys of objects directly under the prefix (folder markers left out).
    objects: Vec<String>,
}

/// Every page of ListObjectsV2 under `prefix`, handed to `each`.
async fn list_pages(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
    delimiter: Option<&str>,
    mut each: impl FnMut(&ListObjectsV2Output),
) -> Result<(), AwsError> {
    let mut token = None;
    loop {
        let page = client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_delimiter(delimiter.map(str::to_owned))
            .set_continuation_token(token)
            .send()
            .await
            .map_err(|e| s3_error("s3:ListObjectsV2", &format!("s3://{bucket}/{prefix}"), e))?;
        each(&page);
        token = page.next_continuation_token().map(str::to_owned);
        if !page.is_truncated().unwrap_or(false) || token.is_none() {
            return Ok(());
        }
    }
}

/// The folders and objects directly under `prefix`.
async fn list_level(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> Result<Level, AwsError> {
    let mut level = Level {
        folders: Vec::new(),
        objects: Vec::new(),
    };
    list_pages(client, bucket, prefix, Some("/"), |page| {
        level.folders.extend(
            page.common_prefixes()
                .iter()
                .filter_map(|p| p.prefix().map(str::to_owned)),
        );
        level.objects.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key())
                .filter(|k| !k.ends_with('/'))
                .map(str::to_owned),
        );
    })
    .await?;
    Ok(level)
}

/// The longest range of delivery days a scope may name (ten years): a typo in a year must not
/// make millions of prefixes, nor be cut short without a word.
const MAX_SCOPE_DAYS: i64 = 3660;

/// `YYYY/MM/DD` for every day of the scope, or `None` for every day there is. An end without
/// a start is refused: the first delivery day is not known without listing every day.
fn day_folders(scope: &TrailScope) -> Result<Option<Vec<String>>, AwsError> {
    let since = match (scope.since, scope.until) {
        (None, None) => return Ok(None),
        (None, Some(_)) => {
            return Err(AwsError::Scope(
                "--until needs --since: give the first delivery day to read".into(),
            ))
        }
        (Some(since), _) => since,
    };
    let day = |t: EventTime| t.millis().div_euclid(86_400_000);
    let first = day(since);
    let last = day(scope.until.unwrap_or_else(credwarden_core::clock::now));
    if last - first > MAX_SCOPE_DAYS {
        return Err(AwsError::Scope(format!(
            "{} .. {} is more than {MAX_SCOPE_DAYS} days of deliveries: narrow --since/--until",
            EventTime(first * 86_400_000),
            EventTime(last * 86_400_000)
        )));
    }
    let mut out = Vec::new();
    for d in first..=last {
        let (y, m, dd, ..) = EventTime(d * 86_400_000).to_parts();
        out.push(format!("{y:04}/{m:02}/{dd:02}"));
    }
    Ok(Some(out))
}

/// One S3 object as a CloudTrail input.
#[derive(Debug)]
pub struct S3Object {
    reader: Arc<S3Reader>,
    bucket: String,
    info: ObjectInfo,
    uri: String,
    ahead: Mutex<Ahead>,
}

/// Where an object's prefetch stands.
#[derive(Debug)]
enum Ahead {
    Idle,
    Fetching(Receiver<FetchResult>),
    /// Opened (or given up on): never fetched ahead again.
    Done,
}

impl std::fmt::Debug for S3Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("S3Reader")
    }
}

impl S3Object {
    pub fn new(reader: Arc<S3Reader>, bucket: &str, info: ObjectInfo) -> S3Object {
        S3Object {
            uri: format!("s3://{bucket}/{}", info.key),
            reader,
            bucket: bucket.to_owned(),
            info,
            ahead: Mutex::new(Ahead::Idle),
        }
    }

    fn ahead(&self) -> std::sync::MutexGuard<'_, Ahead> {
        self.ahead.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A GetObject body read on demand (the decode worker blocks on the SDK's runtime for each
/// chunk).
pub struct ObjectBody {
    handle: tokio::runtime::Handle,
    body: aws_sdk_s3::primitives::ByteStream,
    chunk: bytes::Bytes,
    what: String,
}

impl Read for ObjectBody {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.chunk.is_empty() {
            match self.handle.block_on(self.body.next()) {
                None => return Ok(0),
                Some(Ok(chunk)) => self.chunk = chunk,
                Some(Err(e)) => {
                    return Err(std::io::Error::other(format!(
                        "{}: reading the body: {e}",
                        self.what
                    )))
                }
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}

impl cloudtrail::RemoteInput for S3Object {
    fn uri(&self) -> &str {
        &self.uri
    }

    fn key(&self) -> &str {
        &self.info.key
    }

    fn size(&self) -> u64 {
        self.info.size
    }

    fn version(&self) -> &str {
        &self.info.etag
    }

    fn open(&self) -> std::io::Result<Box<dyn Read + Send>> {
        let ahead = std::mem::replace(&mut *self.ahead(), Ahead::Done);
        if let Ahead::Fetching(rx) = ahead {
            match rx.recv() {
                Ok(Some(Ok(bytes))) => return Ok(Box::new(bytes)),
                Ok(Some(Err(message))) => return Err(std::io::Error::other(message)),
                // Grown since listed, or the runtime went away: read it the ordinary way.
                Ok(None) | Err(_) => {}
            }
        }
        let body = self
            .reader
            .open(&self.bucket, &self.info.key)
            .map_err(std::io::Error::other)?;
        Ok(Box::new(body))
    }

    fn prefetch(&self) {
        if self.info.size > PREFETCH_OBJECT_MAX {
            return;
        }
        let mut ahead = self.ahead();
        if !matches!(*ahead, Ahead::Idle) {
            return;
        }
        // An empty object still takes a byte of budget, so a flood of them stays bounded.
        if let Some(lease) = self.reader.lease(self.info.size.max(1)) {
            *ahead = Ahead::Fetching(self.reader.fetch_whole(&self.bucket, &self.info.key, lease));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hedge_delay_follows_the_usual_time_to_answer() {
        let latency = Arc::new(GetLatency::default());
        // Nothing measured yet: the floor.
        assert_eq!(latency.hedge_after(), HEDGE_AFTER_MIN);
        latency.record(Duration::from_millis(10));
        assert_eq!(latency.hedge_after(), HEDGE_AFTER_MIN);
        // A link where every GET takes 300 ms: four times that, after a few answers.
        for _ in 0..64 {
            latency.record(Duration::from_millis(300));
        }
        let after = latency.hedge_after();
        assert!(
            after > Duration::from_millis(1150) && after <= Duration::from_millis(1200),
            "{after:?}"
        );
        // Hedges in flight are bounded, and each counted.
        let slots: Vec<HedgeSlot> = std::iter::from_fn(|| latency.start_hedge()).collect();
        assert_eq!(slots.len() as u64, HEDGES_IN_FLIGHT_MAX);
        drop(slots);
        assert!(latency.start_hedge().is_some());
        assert_eq!(
            latency.hedged.load(Ordering::Relaxed),
            HEDGES_IN_FLIGHT_MAX + 1
        );
        let fixed = GetLatency {
            fixed: Some(Duration::from_millis(5)),
            ..GetLatency::default()
        };
        assert_eq!(fixed.hedge_after(), Duration::from_millis(5));
    }

    #[test]
    fn locations_and_days() {
        assert_eq!(
            S3Location::parse("s3://trail-bucket/org/"),
            Some(S3Location {
                bucket: "trail-bucket".into(),
                prefix: "org/".into()
            })
        );
        assert_eq!(S3Location::parse("s3://b").unwrap().base(), "");
        assert_eq!(S3Location::parse("s3://b/x/").unwrap().base(), "x/");
        assert_eq!(S3Location::parse("s3:///x"), None);
        assert_eq!(S3Location::parse("s3://Bad_Bucket/x"), None);
        assert_eq!(S3Location::parse("/tmp/x"), None);
        let scope = TrailScope {
            since: EventTime::parse("2026-02-27T10:00:00Z"),
            until: EventTime::parse("2026-03-01T00:00:00Z"),
            ..Default::default()
        };
        assert_eq!(
            day_folders(&scope).unwrap().unwrap(),
            ["2026/02/27", "2026/02/28", "2026/03/01"]
        );
        // An end alone, or a range of more than ten years, is refused rather than read as
        // nothing or cut short.
        let until_only = TrailScope {
            until: EventTime::parse("2026-03-01T00:00:00Z"),
            ..Default::default()
        };
        assert!(matches!(day_folders(&until_only), Err(AwsError::Scope(_))));
        let typo = TrailScope {
            since: EventTime::parse("2006-03-01T00:00:00Z"),
            until: EventTime::parse("2026-03-01T00:00:00Z"),
            ..Default::default()
        };
        assert!(matches!(day_folders(&typo), Err(AwsError::Scope(_))));
        assert!(TrailScope::default().is_everything());
    }
}
