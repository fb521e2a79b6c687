//! The mutation engine: a seeded xorshift generator, the mutations, and the loop that runs a
//! target on each input under `catch_unwind` with a time budget.
//!
//! There is no coverage instrumentation on stable Rust, so the only feedback is the target's
//! *outcome*: a small hash of what the input made the library do (an error kind, a decision,
//! a status code). An input with an outcome not seen before joins the corpus and is mutated
//! further, which keeps inputs that got somewhere new instead of drifting back to noise.

use std::collections::HashSet;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::targets::Target;

/// xorshift64* (Vigna): small, fast, and the same sequence for the same seed everywhere.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // Zero is xorshift's fixed point; mix the seed so nearby seeds diverge at once.
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-enough in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    pub fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// FNV-1a: names crash files after their content and folds outcomes into one number.
pub fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Tokens every target gets besides its own dictionary.
const COMMON_TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    "\"",
    "\\",
    ",",
    ":",
    "\n",
    "\r\n",
    "\0",
    "\\u0000",
    "\\ud800",
    "%",
    "%00",
    "%2f",
    "%25",
    "${",
    "}",
    "*",
    "?",
    "null",
    "true",
    "-0",
    "1e999",
    "\u{feff}",
    "é",
    "\u{10ffff}",
];

/// Numbers that sit on the edges of integer and float types.
const HUGE_NUMBERS: &[&str] = &[
    "0",
    "-1",
    "2147483648",
    "4294967296",
    "9223372036854775807",
    "-9223372036854775808",
    "18446744073709551616",
    "99999999999999999999999999999999999999",
    "1e308",
    "-1e400",
    "0.0000000000000000000000001",
    "NaN",
];

/// Bytes that end up special in one parser or another.
const INTERESTING_BYTES: &[u8] = &[0, 0x7f, 0x80, 0xff, b'"', b'\\', b'\n', b'%', b'{', b'['];

/// Applies random mutations to inputs.
pub struct Mutator<'a> {
    pub rng: Rng,
    dictionary: &'a [&'a str],
    max_len: usize,
}

impl<'a> Mutator<'a> {
    pub fn new(seed: u64, dictionary: &'a [&'a str], max_len: usize) -> Mutator<'a> {
        Mutator {
            rng: Rng::new(seed),
            dictionary,
            max_len,
        }
    }

    fn token(&mut self) -> &'a str {
        if self.dictionary.is_empty() || self.rng.chance(3) {
            self.rng.pick::<&str>(COMMON_TOKENS)
        } else {
            self.rng.pick::<&str>(self.dictionary)
        }
    }

    /// A new input from `base`: one to eight stacked mutations, `other` for splicing.
    pub fn mutate(&mut self, base: &[u8], other: &[u8]) -> Vec<u8> {
        let mut data = base.to_vec();
        let rounds = 1 + self.rng.below(8);
        for _ in 0..rounds {
            self.mutate_once(&mut data, other);
        }
        data.truncate(self.max_len);
        data
    }

    fn mutate_once(&mut self, data: &mut Vec<u8>, other: &[u8]) {
        let len = data.len();
        let at = self.rng.below(len + 1);
        match self.rng.below(14) {
            0 if len > 0 => {
                let i = self.rng.below(len);
                data[i] ^= 1 << self.rng.below(8);
            }
            1 if len > 0 => {
                let i = self.rng.below(len);
                data[i] = if self.rng.chance(2) {
                    *self.rng.pick(INTERESTING_BYTES)
                } else {
                    self.rng.next_u64() as u8
                };
            }
            2 if len > 0 => {
                let n = 1 + self.rng.below((len - at.min(len - 1)).min(64));
                let start = at.min(len - 1);
                data.drain(start..(start + n).min(len));
            }
            3 => data.truncate(at),
            4 | 5 => {
                let t = self.token().as_bytes().to_vec();
                data.splice(at..at, t);
            }
            6 if len > 0 => {
                // Overwrite in place with a token.
                let t = self.token().as_bytes();
                let end = (at + t.len()).min(len);
                data.splice(at..end, t.iter().copied());
            }
            7 => {
                // A long run: one byte or a token repeated.
                let unit = if self.rng.chance(2) {
                    vec![self.rng.next_u64() as u8 | 0x20]
                } else {
                    self.token().as_bytes().to_vec()
                };
                let cap = if self.rng.chance(8) { 70_000 } else { 600 };
                let n = 1 + self.rng.below(cap);
                let run: Vec<u8> = unit.iter().copied().cycle().take(n * unit.len()).collect();
                data.splice(at..at, run);
            }
            8 => {
                let t = self.rng.pick(HUGE_NUMBERS).as_bytes();
                data.splice(at..at, t.iter().copied());
            }
            9 => {
                // Replace a run of digits with an edge number.
                if let Some(s) = data.iter().skip(at).position(u8::is_ascii_digit) {
                    let s = at + s;
                    let e = s + data[s..].iter().take_while(|b| b.is_ascii_digit()).count();
                    let t = self.rng.pick(HUGE_NUMBERS).as_bytes();
                    data.splice(s..e, t.iter().copied());
                }
            }
            10 => {
                // Deep nesting: a tower of arrays or objects, closed or not.
                let cap = if self.rng.chance(4) { 5_000 } else { 200 };
                let depth = 1 + self.rng.below(cap);
                let (open, close): (&[u8], &[u8]) = match self.rng.below(3) {
                    0 => (b"[", b"]"),
                    1 => (b"{\"a\":", b"}"),
                    _ => (b"{\"Records\":[", b"]}"),
                };
                let mut tower = open.repeat(depth);
                if self.rng.chance(2) {
                    tower.extend(close.repeat(depth));
                }
                data.splice(at..at, tower);
            }
            11 if !other.is_empty() => {
                // Splice: our head, the other input's tail.
                let from = self.rng.below(other.len());
                data.truncate(at);
                data.extend_from_slice(&other[from..]);
            }
            12 if len > 0 => {
                // Copy a slice of ourselves somewhere else.
                let s = self.rng.below(len);
                let n = 1 + self.rng.below((len - s).min(256));
                let chunk = data[s..s + n].to_vec();
                data.splice(at..at, chunk);
            }
            13 if len > 1 => {
                let i = self.rng.below(len);
                let j = self.rng.below(len);
                data.swap(i, j);
            }
            _ => {
                let t = self.token().as_bytes().to_vec();
                data.splice(at..at, t);
            }
        }
    }
}

/// Options for one campaign.
#[derive(Clone, Debug)]
pub struct Options {
    pub seconds: f64,
    /// Stop after this many inputs instead (reproducible runs end on the same input).
    pub runs: Option<u64>,
    pub seed: u64,
    /// An input slower than this counts as a hang.
    pub budget: Duration,
    /// Where crashing inputs are written (`<dir>/<target>/<hash>`).
    pub crash_dir: PathBuf,
    /// Extra seed files or folders.
    pub seed_paths: Vec<PathBuf>,
}

/// How a campaign ended.
#[derive(Debug)]
pub struct Report {
    pub target: &'static str,
    pub inputs: u64,
    pub corpus: usize,
    pub outcomes: usize,
    pub elapsed: Duration,
    pub failure: Option<Failure>,
}

/// A crash or hang: what happened and where the input was written.
#[derive(Debug)]
pub struct Failure {
    pub kind: &'static str,
    pub message: String,
    pub input: Vec<u8>,
    pub saved: Option<PathBuf>,
}

static PANIC_MESSAGE: Mutex<Option<String>> = Mutex::new(None);

/// Replace the panic hook with one that records the message and location for the report
/// instead of printing them.
pub fn install_panic_hook() {
    panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(non-string panic payload)".into());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        if let Ok(mut slot) = PANIC_MESSAGE.lock() {
            *slot = Some(format!("{msg}{at}"));
        }
    }));
}

/// Run `target` once on `data`, catching a panic: `Ok(outcome)` or `Err(message)`.
pub fn run_one(target: &Target, data: &[u8]) -> Result<u64, String> {
    if let Ok(mut slot) = PANIC_MESSAGE.lock() {
        *slot = None;
    }
    panic::catch_unwind(AssertUnwindSafe(|| (target.run)(data))).map_err(|_| {
        PANIC_MESSAGE
            .lock()
            .ok()
            .and_then(|mut s| s.take())
            .unwrap_or_else(|| "panic".into())
    })
}

/// Read seed files: the target's own folder, then `extra` (files, or folders walked one
/// level deep), each capped at `max_len` bytes.
pub fn load_seeds(dirs: &[PathBuf], max_len: usize) -> Vec<Vec<u8>> {
    let mut files = Vec::new();
    for d in dirs {
        if d.is_file() {
            files.push(d.clone());
        } else if let Ok(rd) = std::fs::read_dir(d) {
            let mut v: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
            v.sort();
            files.extend(v.into_iter().filter(|p| p.is_file()));
        }
    }
    files
        .iter()
        .filter_map(|p| std::fs::read(p).ok())
        .map(|mut b| {
            b.truncate(max_len);
            b
        })
        .collect()
}

/// Write a failing input under `dir/target/<hash>`.
fn save(dir: &Path, target: &str, data: &[u8]) -> Option<PathBuf> {
    let folder = dir.join(target);
    std::fs::create_dir_all(&folder).ok()?;
    let path = folder.join(format!("{:016x}", fnv(data)));
    std::fs::write(&path, data).ok()?;
    Some(path)
}

/// Fuzz one target until time (or `runs`) is up or an input fails.
pub fn campaign(target: &'static Target, seeds: Vec<Vec<u8>>, opts: &Options) -> Report {
    let started = Instant::now();
    let mut corpus: Vec<Vec<u8>> = seeds;
    if corpus.is_empty() {
        corpus.push(Vec::new());
    }
    // The worker runs inputs; this thread watches the clock so a hang is reported, not waited
    // out (the process exits with the worker still stuck in it).
    let (to_worker, inbox) = mpsc::sync_channel::<Vec<u8>>(0);
    let (to_main, results) = mpsc::channel::<(Result<u64, String>, Duration)>();
    let worker = std::thread::Builder::new()
        .name(format!("fuzz-{}", target.name))
        .stack_size(64 << 20)
        .spawn(move || {
            for data in inbox {
                let t = Instant::now();
                let r = run_one(target, &data);
                if to_main.send((r, t.elapsed())).is_err() {
                    break;
                }
            }
        })
        .expect("spawn the fuzz worker");

    let mut mutator = Mutator::new(opts.seed, target.dictionary, target.max_len);
    let mut outcomes: HashSet<u64> = HashSet::new();
    let mut inputs = 0u64;
    let mut failure = None;
    // Seeds first, as they are; then mutants.
    let mut queue: Vec<Vec<u8>> = corpus.iter().rev().cloned().collect();
    loop {
        let done = match opts.runs {
            Some(n) => inputs >= n,
            None => started.elapsed().as_secs_f64() >= opts.seconds,
        };
        if done {
            break;
        }
        let data = queue.pop().unwrap_or_else(|| {
            let base = &corpus[mutator.rng.below(corpus.len())];
            let other = &corpus[mutator.rng.below(corpus.len())];
            mutator.mutate(base, other)
        });
        inputs += 1;
        if to_worker.send(data.clone()).is_err() {
            break;
        }
        let outcome = match results.recv_timeout(opts.budget) {
            Ok((_, took)) if took > opts.budget => Err(("hang", format!("took {took:?}"))),
            Ok((Ok(o), _)) => Ok(o),
            Ok((Err(msg), _)) => Err(("crash", msg)),
            Err(_) => Err(("hang", format!("no answer within {:?}", opts.budget))),
        };
        match outcome {
            Ok(o) => {
                if outcomes.insert(o) && corpus.len() < 8192 {
                    corpus.push(data);
                }
            }
            Err((kind, message)) => {
                let saved = save(&opts.crash_dir, target.name, &data);
                failure = Some(Failure {
                    kind,
                    message,
                    input: data,
                    saved,
                });
                break;
            }
        }
    }
    drop(to_worker);
    // A hung worker is left behind (the caller exits); a healthy one ends with the channel.
    if failure.as_ref().is_none_or(|f| f.kind != "hang") {
        let _ = worker.join();
    }
    Report {
        target: target.name,
        inputs,
        corpus: corpus.len(),
        outcomes: outcomes.len(),
        elapsed: started.elapsed(),
        failure,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generator_is_reproducible() {
        let a: Vec<u64> = {
            let mut r = Rng::new(7);
            (0..5).map(|_| r.next_u64()).collect()
        };
        let b: Vec<u64> = {
            let mut r = Rng::new(7);
            (0..5).map(|_| r.next_u64()).collect()
        };
        assert_eq!(a, b);
        assert_ne!(a, {
            let mut r = Rng::new(8);
            (0..5).map(|_| r.next_u64()).collect::<Vec<_>>()
        });
    }

    fn planted(data: &[u8]) -> u64 {
        assert!(!data.windows(4).any(|w| w == b"boom"), "planted bug");
        fnv(data) % 3
    }

    #[test]
    fn a_planted_crash_is_found_saved_and_reported() {
        static PLANTED: Target = Target {
            name: "planted",
            about: "test",
            run: planted,
            dictionary: &["boom"],
            max_len: 64,
        };
        install_panic_hook();
        let dir = tempfile::tempdir().unwrap();
        let opts = Options {
            seconds: 30.0,
            runs: Some(100_000),
            seed: 3,
            budget: Duration::from_secs(5),
            crash_dir: dir.path().to_path_buf(),
            seed_paths: Vec::new(),
        };
        let report = campaign(&PLANTED, vec![b"hello".to_vec()], &opts);
        let f = report.failure.expect("the planted crash is found");
        assert_eq!(f.kind, "crash");
        assert!(f.message.contains("planted bug"), "{}", f.message);
        let saved = f.saved.expect("saved");
        assert!(saved.starts_with(dir.path().join("planted")));
        assert_eq!(std::fs::read(saved).unwrap(), f.input);
    }

    #[test]
    fn mutations_stay_under_the_cap() {
        let mut m = Mutator::new(1, &["{"], 100);
        for _ in 0..2000 {
            let out = m.mutate(b"{\"Records\":[{\"a\":1}]}", b"[1,2,3]");
            assert!(out.len() <= 100);
        }
    }
}
