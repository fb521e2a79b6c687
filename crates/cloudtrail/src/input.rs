//! Where records come from: files, folders walked recursively, and stdin; gzip recognised by
//! its magic bytes, not its name. Sources are put in one canonical order (delivery time from
//! the S3 object name, then path) so that the order the user or the file system lists them
//! in never changes what comes out.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::bufread::MultiGzDecoder;

use crate::error::DiscoverError;

/// One input stream.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum InputSource {
    File(PathBuf),
    Stdin,
    /// An object elsewhere (an S3 delivery file), read through its [`RemoteInput`].
    Remote(RemoteSource),
}

impl fmt::Display for InputSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InputSource::File(p) => write!(f, "{}", p.display()),
            InputSource::Stdin => f.write_str("<stdin>"),
            InputSource::Remote(r) => f.write_str(r.0.uri()),
        }
    }
}

/// An input that lives elsewhere: this crate only needs its name and a way to read it, so
/// that it does not depend on any cloud SDK.
pub trait RemoteInput: Send + Sync + fmt::Debug {
    /// Where it is, as people write it (`s3://bucket/key`): names it in errors and orders it.
    fn uri(&self) -> &str;
    /// The object's name within its store (the S3 key): its delivery stamp orders it.
    fn key(&self) -> &str;
    /// Its size in bytes, as listed.
    fn size(&self) -> u64;
    /// What changes when its content does (the S3 ETag).
    fn version(&self) -> &str;
    /// Read it; the bytes may be gzip (recognised by their magic, like files).
    fn open(&self) -> io::Result<Box<dyn Read + Send>>;
    /// Start fetching it in the background if the store can and the bytes fit its budget,
    /// so that `open` finds them there. The decode workers call this for the sources just
    /// ahead of the one they take: a slow GET then overlaps other objects' decoding instead
    /// of idling a core. Calling it again, or never, changes nothing but speed.
    fn prefetch(&self) {}
}

/// A shared [`RemoteInput`], compared and ordered by its URI and version.
#[derive(Clone, Debug)]
pub struct RemoteSource(pub std::sync::Arc<dyn RemoteInput>);

impl RemoteSource {
    fn identity(&self) -> (&str, &str) {
        (self.0.uri(), self.0.version())
    }
}

impl PartialEq for RemoteSource {
    fn eq(&self, other: &Self) -> bool {
        self.identity() == other.identity()
    }
}

impl Eq for RemoteSource {}

impl std::hash::Hash for RemoteSource {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.identity().hash(state);
    }
}

impl PartialOrd for RemoteSource {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for RemoteSource {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.identity().cmp(&other.identity())
    }
}

/// Put remote inputs in the canonical order files get: delivery stamp, then key.
pub fn sort_remote(inputs: &mut [RemoteSource]) {
    canonical_sort(inputs, |r| Path::new(r.0.key()));
}

/// The canonical order of inputs: delivery stamp, then name. Names first, then a stable sort
/// by stamp, so no key is built per input.
fn canonical_sort<T>(items: &mut [T], name: impl Fn(&T) -> &Path) {
    items.sort_by(|a, b| name(a).cmp(name(b)));
    items.sort_by_key(|t| delivery_stamp(name(t)));
}

/// File names a folder walk picks up. Files named explicitly are always read.
pub fn looks_like_trail(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    let n = n.strip_suffix(".gz").unwrap_or(&n);
    !name.starts_with('.')
        && (n.ends_with(".json") || n.ends_with(".jsonl") || n.ends_with(".ndjson"))
}

/// Expand paths (files, folders, `-`) into sources in canonical order. Also returns the
/// files a folder walk passed over because their names are not CloudTrail's. Holds every
/// source in memory at once: a run over many days reads them through [`DeliveryDays`].
pub fn discover<P: AsRef<Path>>(
    paths: &[P],
) -> Result<(Vec<InputSource>, Vec<PathBuf>), DiscoverError> {
    let mut days = DeliveryDays::walk(paths)?;
    let mut sources = Vec::with_capacity(days.total());
    while let Some(day) = days.next_day()? {
        sources.extend(day);
    }
    Ok((sources, days.ignored))
}

/// The sources under some paths (files, folders walked recursively, `-`), handed out one
/// delivery day at a time in canonical order (undated files first, stdin last).
///
/// Why: an organisation's trail delivers a file per account, region and ~5 minutes — hundreds
/// of thousands a day. Holding every path of a month in memory would make a run's memory grow
/// with its input. The walk keeps only which folders hold files of which day; each day's
/// files are listed again from those folders when that day's turn comes. Days follow each
/// other in the canonical order (a file's day is its delivery stamp's), so the
/// concatenation of the days is exactly the order [`discover`] gives.
#[derive(Debug, Default)]
pub struct DeliveryDays {
    /// Per delivery day (YYYYMMDD; 0 for files without a stamp): the folders holding files of
    /// that day (indexes into `folders`).
    days: BTreeMap<u32, BTreeSet<usize>>,
    folders: Vec<PathBuf>,
    /// The folders walked, by their real path.
    visited: std::collections::HashSet<PathBuf>,
    /// Files named on the command line, by day.
    named: BTreeMap<u32, Vec<PathBuf>>,
    stdin: bool,
    total: usize,
    /// Files a folder walk passed over because their names are not CloudTrail's.
    pub ignored: Vec<PathBuf>,
}

impl DeliveryDays {
    /// Walk `paths`: a missing path or an unreadable folder is an error naming it.
    pub fn walk<P: AsRef<Path>>(paths: &[P]) -> Result<DeliveryDays, DiscoverError> {
        let mut days = DeliveryDays::default();
        for p in paths {
            let p = p.as_ref();
            if p == Path::new("-") {
                if !days.stdin {
                    days.total += 1;
                }
                days.stdin = true;
                continue;
            }
            let meta = std::fs::metadata(p).map_err(|e| DiscoverError {
                path: p.to_path_buf(),
                source: e,
            })?;
            if meta.is_dir() {
                days.walk_folder(p)?;
            } else {
                days.total += 1;
                days.named
                    .entry(day_of(p))
                    .or_default()
                    .push(p.to_path_buf());
            }
        }
        Ok(days)
    }

    fn walk_folder(&mut self, dir: &Path) -> Result<(), DiscoverError> {
        // A folder reached twice (named twice, named inside another, or through a symlink —
        // a symlink to an ancestor would otherwise recurse until the stack ran out) is
        // walked once.
        let real = std::fs::canonicalize(dir).map_err(|e| DiscoverError {
            path: dir.to_path_buf(),
            source: e,
        })?;
        if !self.visited.insert(real) {
            return Ok(());
        }
        let index = self.folders.len();
        self.folders.push(dir.to_path_buf());
        for entry in read_folder(dir)? {
            match entry? {
                Entry::Folder(sub) => self.walk_folder(&sub)?,
                Entry::Trail(file) => {
                    self.total += 1;
                    self.days.entry(day_of(&file)).or_default().insert(index);
                }
                Entry::Other(file) => self.ignored.push(file),
            }
        }
        Ok(())
    }

    /// Sources the walk found, stdin included. A file named twice (or both named and found in
    /// a walked folder) counts twice here but is handed out once.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Whether every day (and stdin) has been handed out.
    pub fn is_done(&self) -> bool {
        self.days.is_empty() && self.named.is_empty() && !self.stdin
    }

    /// The next day's sources in canonical order; stdin after the last day; `None` when
    /// everything has been handed out. A folder gone since the walk holds nothing (its files
    /// went with it); any other failure to read it again is an error naming it.
    pub fn next_day(&mut self) -> Result<Option<Vec<InputSource>>, DiscoverError> {
        let next = [self.days.keys().next(), self.named.keys().next()]
            .into_iter()
            .flatten()
            .min()
            .copied();
        let Some(day) = next else {
            return Ok(std::mem::take(&mut self.stdin).then(|| vec![InputSource::Stdin]));
        };
        let mut files = self.named.remove(&day).unwrap_or_default();
        for index in self.days.remove(&day).unwrap_or_default() {
            let entries = match read_folder(&self.folders[index]) {
                Ok(entries) => entries,
                Err(e) if e.source.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            for entry in entries {
                if let Entry::Trail(file) = entry? {
                    if day_of(&file) == day {
                        files.push(file);
                    }
                }
            }
        }
        canonical_sort(&mut files, |p| p);
        files.dedup();
        let mut sources: Vec<InputSource> = files.into_iter().map(InputSource::File).collect();
        if self.days.is_empty() && self.named.is_empty() && std::mem::take(&mut self.stdin) {
            sources.push(InputSource::Stdin);
        }
        Ok(Some(sources))
    }
}

/// A file's delivery day: its stamp's YYYYMMDD, 0 without one.
fn day_of(path: &Path) -> u32 {
    (delivery_stamp(path) / 10_000) as u32
}

/// What a folder walk finds in a folder.
enum Entry {
    Folder(PathBuf),
    /// A file named like CloudTrail (see [`looks_like_trail`]).
    Trail(PathBuf),
    Other(PathBuf),
}

/// A folder's entries, classified the same way on the walk and when a day is listed again.
fn read_folder(
    dir: &Path,
) -> Result<impl Iterator<Item = Result<Entry, DiscoverError>> + '_, DiscoverError> {
    let err = move |e| DiscoverError {
        path: dir.to_path_buf(),
        source: e,
    };
    Ok(std::fs::read_dir(dir).map_err(err)?.map(move |entry| {
        let entry = entry.map_err(err)?;
        let path = entry.path();
        let kind = entry.file_type().map_err(err)?;
        // Follow symlinks to files and folders alike, as a user pointing at a tree expects.
        let is_dir = if kind.is_symlink() {
            path.is_dir()
        } else {
            kind.is_dir()
        };
        Ok(if is_dir {
            Entry::Folder(path)
        } else if looks_like_trail(&entry.file_name().to_string_lossy()) {
            Entry::Trail(path)
        } else {
            Entry::Other(path)
        })
    }))
}

/// The delivery stamp in an S3 object name
/// (`<account>_CloudTrail_<region>_<YYYYMMDDTHHMMZ>_<random>.json.gz`) as the number
/// YYYYMMDDHHMM, or 0 for files without one (exports, hand-made files), which therefore sort
/// first. Sources are ordered by (stamp, path): a total order, the same however they were listed.
pub fn delivery_stamp(path: &Path) -> u64 {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return 0;
    };
    name.split('_')
        .find_map(|part| {
            let b = part.as_bytes();
            let shape = b.len() == 14 && b[8] == b'T' && b[13] == b'Z';
            let digits = || b[..8].iter().chain(&b[9..13]).all(u8::is_ascii_digit);
            (shape && digits()).then(|| {
                b[..8]
                    .iter()
                    .chain(&b[9..13])
                    .fold(0u64, |v, d| v * 10 + u64::from(d - b'0'))
            })
        })
        .unwrap_or(0)
}

/// Counts bytes as they are read: the uncompressed size, for throughput figures.
pub struct CountingReader<R> {
    inner: R,
    pub count: u64,
    /// The source has an end that comes without waiting for anyone: a regular file or a
    /// stored object, not stdin, a named pipe or a device, which may be live feeds.
    pub finite: bool,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

/// Open a source for reading, decompressing gzip (including multi-member streams) when the
/// first bytes say so.
pub fn open(source: &InputSource) -> io::Result<CountingReader<Box<dyn Read + Send>>> {
    let (raw, finite): (Box<dyn Read + Send>, bool) = match source {
        InputSource::File(p) => {
            let file = File::open(p)?;
            let regular = file.metadata()?.is_file();
            (Box::new(file), regular)
        }
        InputSource::Stdin => (Box::new(io::stdin()), false),
        InputSource::Remote(r) => (r.0.open()?, true),
    };
    let mut buffered = BufReader::with_capacity(256 * 1024, raw);
    let head = buffered.fill_buf()?;
    let inner: Box<dyn Read + Send> = if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(MultiGzDecoder::new(buffered))
    } else {
        Box::new(buffered)
    };
    Ok(CountingReader {
        inner,
        count: 0,
        finite,
    })
}

/// Files up to this size are read whole into the caller's buffer (a delivery file is tens of
/// kilobytes of gzip); larger ones stream, so memory stays flat whatever the file's size.
pub const READ_WHOLE_MAX: u64 = 4 << 20;

/// [`open`], reading a small file whole into `raw` (kept by the caller from file to file)
/// instead of through a buffer allocated for it.
pub fn open_with<'b>(
    source: &InputSource,
    raw: &'b mut Vec<u8>,
) -> io::Result<CountingReader<Box<dyn Read + 'b>>> {
    if let InputSource::File(p) = source {
        let file = File::open(p)?;
        let meta = file.metadata()?;
        raw.clear();
        // Regular files only (a FIFO has no end to read to); a file that grew past the limit
        // since its size was read streams from its start like a large one.
        if meta.is_file()
            && meta.len() <= READ_WHOLE_MAX
            && file.take(READ_WHOLE_MAX + 1).read_to_end(raw)? as u64 <= READ_WHOLE_MAX
        {
            let bytes: &'b [u8] = raw;
            let inner: Box<dyn Read + 'b> = if bytes.starts_with(&[0x1f, 0x8b]) {
                Box::new(MultiGzDecoder::new(bytes))
            } else {
                Box::new(bytes)
            };
            return Ok(CountingReader {
                inner,
                count: 0,
                finite: true,
            });
        }
    }
    let CountingReader {
        inner,
        count,
        finite,
    } = open(source)?;
    Ok(CountingReader {
        inner: inner as Box<dyn Read + 'b>,
        count,
        finite,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_stamp_orders_before_path() {
        let a = Path::new("AWSLogs/2/CloudTrail/us-east-1/2024/01/01/2_CloudTrail_us-east-1_20240101T0005Z_abc.json.gz");
        let b = Path::new("AWSLogs/1/CloudTrail/us-west-2/2024/01/01/1_CloudTrail_us-west-2_20240101T0010Z_abc.json.gz");
        assert!(delivery_stamp(a) < delivery_stamp(b));
        assert_eq!(delivery_stamp(a), 202401010005);
        assert_eq!(delivery_stamp(Path::new("x.json")), 0);
        assert_eq!(
            delivery_stamp(Path::new("1_CloudTrail_r_2024010xT0005Z_a.json")),
            0
        );
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "b_CloudTrail_r_20240101T0010Z_x.json",
            "a_CloudTrail_r_20240101T0010Z_x.json",
            "z_CloudTrail_r_20240101T0005Z_x.json",
            "plain.json",
        ] {
            std::fs::write(dir.path().join(name), "{}").unwrap();
        }
        let (sources, _) = discover(&[dir.path()]).unwrap();
        let names: Vec<String> = sources
            .iter()
            .map(|s| s.to_string().rsplit('/').next().unwrap().to_owned())
            .collect();
        assert_eq!(
            names,
            [
                "plain.json",
                "z_CloudTrail_r_20240101T0005Z_x.json",
                "a_CloudTrail_r_20240101T0010Z_x.json",
                "b_CloudTrail_r_20240101T0010Z_x.json"
            ]
        );
    }

    /// Names `<acct>_CloudTrail_<region>_<stamp>_x.json.gz` under the delivery layout, some
    /// days in their own folders and some sharing one flat folder.
    fn days_tree() -> (tempfile::TempDir, Vec<PathBuf>) {
        let dir = tempfile::tempdir().unwrap();
        let mut files = Vec::new();
        for (folder, name) in [
            (
                "AWSLogs/1/CloudTrail/us-east-1/2024/01/02",
                "1_CloudTrail_us-east-1_20240102T0005Z_a.json.gz",
            ),
            (
                "AWSLogs/1/CloudTrail/us-east-1/2024/01/01",
                "1_CloudTrail_us-east-1_20240101T2355Z_b.json.gz",
            ),
            (
                "AWSLogs/2/CloudTrail/eu-west-1/2024/01/01",
                "2_CloudTrail_eu-west-1_20240101T0010Z_c.json.gz",
            ),
            (
                "AWSLogs/2/CloudTrail/eu-west-1/2024/01/03",
                "2_CloudTrail_eu-west-1_20240103T0000Z_d.json.gz",
            ),
            // A flat copy holding several days in one folder.
            ("flat", "3_CloudTrail_us-east-1_20240102T0000Z_e.json"),
            ("flat", "3_CloudTrail_us-east-1_20240101T0000Z_f.json"),
            ("flat", "3_CloudTrail_us-east-1_20240103T1200Z_g.json"),
            ("flat", "export.json"),
        ] {
            let folder = dir.path().join(folder);
            std::fs::create_dir_all(&folder).unwrap();
            std::fs::write(folder.join(name), "{}").unwrap();
            files.push(folder.join(name));
        }
        (dir, files)
    }

    #[test]
    fn days_are_handed_out_in_the_canonical_order() {
        let (dir, mut files) = days_tree();
        let named = dir
            .path()
            .join("flat/3_CloudTrail_us-east-1_20240102T0000Z_e.json");
        let mut days = DeliveryDays::walk(&[dir.path(), named.as_path(), Path::new("-")]).unwrap();
        // Eight files walked, one named again, and stdin.
        assert_eq!(days.total(), 10);
        let mut parts = Vec::new();
        while let Some(day) = days.next_day().unwrap() {
            parts.push(day);
        }
        assert!(days.is_done());
        // Undated first, then 1, 2 and 3 January; stdin rides with the last day.
        assert_eq!(parts.len(), 4);
        assert_eq!(
            parts[0],
            [InputSource::File(dir.path().join("flat/export.json"))]
        );
        assert_eq!(parts[3].last(), Some(&InputSource::Stdin));
        // Together: every file once (the named one too), in (stamp, path) order, the same
        // order a sort of the whole list gives.
        files.sort_by_key(|p| (delivery_stamp(p), p.clone()));
        let mut expected: Vec<InputSource> = files.into_iter().map(InputSource::File).collect();
        expected.push(InputSource::Stdin);
        let all: Vec<InputSource> = parts.concat();
        assert_eq!(all, expected);
        assert_eq!(
            discover(&[dir.path(), named.as_path(), Path::new("-")])
                .unwrap()
                .0,
            expected
        );
    }

    #[test]
    fn a_day_is_listed_when_its_turn_comes() {
        let (dir, _) = days_tree();
        let mut days = DeliveryDays::walk(&[dir.path()]).unwrap();
        let first = days.next_day().unwrap().unwrap();
        assert_eq!(first.len(), 1, "{first:?}");
        // Retention removed a day's folder after the walk: its files went with it.
        std::fs::remove_dir_all(dir.path().join("AWSLogs/2/CloudTrail/eu-west-1/2024/01/03"))
            .unwrap();
        // A file of a day not handed out yet arrived: it is read with its day.
        let late = dir
            .path()
            .join("flat/3_CloudTrail_us-east-1_20240103T1300Z_h.json");
        std::fs::write(&late, "{}").unwrap();
        let rest: Vec<Vec<InputSource>> = std::iter::from_fn(|| days.next_day().unwrap()).collect();
        let names: Vec<String> = rest
            .concat()
            .iter()
            .map(|s| s.to_string().rsplit('/').next().unwrap().to_owned())
            .collect();
        assert_eq!(
            names,
            [
                "3_CloudTrail_us-east-1_20240101T0000Z_f.json",
                "2_CloudTrail_eu-west-1_20240101T0010Z_c.json.gz",
                "1_CloudTrail_us-east-1_20240101T2355Z_b.json.gz",
                "3_CloudTrail_us-east-1_20240102T0000Z_e.json",
                "1_CloudTrail_us-east-1_20240102T0005Z_a.json.gz",
                "3_CloudTrail_us-east-1_20240103T1200Z_g.json",
                "3_CloudTrail_us-east-1_20240103T1300Z_h.json",
            ]
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_folder_reached_twice_is_walked_once() {
        let (dir, files) = days_tree();
        // A symlink back to the root (a loop), and the root named twice.
        std::os::unix::fs::symlink(dir.path(), dir.path().join("flat/loop")).unwrap();
        let (sources, _) = discover(&[dir.path(), dir.path()]).unwrap();
        assert_eq!(sources.len(), files.len());
    }

    #[test]
    fn folder_walk_picks_trail_files_recursively() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a/b");
        std::fs::create_dir_all(&deep).unwrap();
        for name in [
            "a/b/x.json.gz",
            "a/y.jsonl",
            "z.json",
            "README.md",
            ".hidden.json",
        ] {
            std::fs::write(dir.path().join(name), "{}").unwrap();
        }
        let (sources, ignored) = discover(&[dir.path()]).unwrap();
        assert_eq!(sources.len(), 3);
        assert_eq!(ignored.len(), 2);
        assert!(discover(&[dir.path().join("missing")])
            .unwrap_err()
            .to_string()
            .contains("missing"));
    }
}
