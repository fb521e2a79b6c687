//! Decode many sources on all cores and deliver their records in canonical source order.
//!
//! Workers take the next source as they become free (so a worker never idles behind a
//! slower one's large file while there is work left) and say which source they took on a
//! claims channel, in source order; each sends its records in batches over its own bounded
//! channel, the last batch of a source carrying its report. The consumer reads the claims in
//! order and, for source `i`, the batches of the worker that took it. So the output order is
//! exactly the source order — the detectors see the same sequence however many threads ran
//! — and memory is bounded by (batches ahead × batch size), not by input size.
//!
//! Batches go back to the worker that filled them once the consumer is done with them: the
//! worker drops the records (freeing memory on the thread that allocated it, the allocator's
//! fast path, and off the consumer, the one serial stage) and refills the same vector.

use std::sync::mpsc::{channel, sync_channel, Receiver, Sender};
use std::sync::Mutex;

use crate::decode::{decode_source_with, DecodeBuffers, FileReport};
use crate::input::InputSource;
use crate::record::Record;

/// Records per batch from a worker, at most. What the workers hold decoded ahead of the
/// consumer is batches, so this bounds it in records: at 512 a busy day's files (a few hundred
/// records each) filled every batch and held ~8 k records (~8 MB) in flight where a quiet
/// day's small files held one tenth of that — memory followed the size of the delivery files.
/// Small batches keep the bound in records whatever the files' size.
pub const CHUNK_RECORDS: usize = 64;
/// Batches all workers together may have decoded ahead of the consumer, shared out among
/// them (the sixteen workers reading S3 four each, so memory does not grow with the number
/// of workers): ~4 k records, ~4 MB, ten or twenty milliseconds of a decoder's work. The
/// slack is what keeps both cores busy: the consumer shares a core with the decoders, and
/// while the scheduler has it off the core, or the decoder of the next source in order is
/// behind, the other decoder runs ahead into it. With a quarter of this (2 k records) they
/// blocked often enough to leave a core idle a tenth of the run (185 % CPU against 195 %).
const BATCHES_AHEAD: usize = 64;
/// Remote sources (S3 objects) asked to fetch themselves ahead of the workers: enough GETs in
/// flight to cover S3's latency (tens of milliseconds a GET, a fraction of a millisecond to
/// decode a delivery file) while the cores decode. Each store bounds the bytes held.
pub const PREFETCH_AHEAD: usize = 64;

/// What the consumer receives, in order.
pub enum Decoded {
    Records(Chunk),
    /// The source with this index is finished.
    Done(usize, FileReport),
}

/// Records of one source, in file order. Dropping it hands the batch back to the worker
/// that decoded it, for reuse.
pub struct Chunk {
    records: Vec<Record>,
    home: Option<Sender<Vec<Record>>>,
}

impl Chunk {
    /// The records, for a consumer that keeps them (the batch is then not reused).
    pub fn into_vec(mut self) -> Vec<Record> {
        self.home = None;
        std::mem::take(&mut self.records)
    }
}

impl std::ops::Deref for Chunk {
    type Target = [Record];
    fn deref(&self) -> &[Record] {
        &self.records
    }
}

impl<'a> IntoIterator for &'a Chunk {
    type Item = &'a Record;
    type IntoIter = std::slice::Iter<'a, Record>;
    fn into_iter(self) -> Self::IntoIter {
        self.records.iter()
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        if let Some(home) = self.home.take() {
            // The worker may have finished: then the records are dropped here.
            let _ = home.send(std::mem::take(&mut self.records));
        }
    }
}

/// One message from a worker: records of its current source, and, on the last one, the
/// source's index and report.
struct Batch {
    records: Vec<Record>,
    done: Option<(usize, FileReport)>,
}

/// A batch vector to fill: one the consumer gave back (its old records dropped here, on
/// the thread that made them), or a new one.
fn fresh(spare: &Receiver<Vec<Record>>, capacity: usize) -> Vec<Record> {
    match spare.try_recv() {
        Ok(mut v) => {
            v.clear();
            v
        }
        Err(_) => Vec::with_capacity(capacity),
    }
}

/// Stdin, or a path that is not a regular file (a named pipe, a character device): what it
/// holds may still be being written, so its records are handed on one by one. A stat per
/// file, against milliseconds of decoding one.
fn may_be_live(source: &InputSource) -> bool {
    match source {
        InputSource::Stdin => true,
        InputSource::File(path) => std::fs::metadata(path).is_ok_and(|m| !m.is_file()),
        InputSource::Remote(_) => false,
    }
}

/// Decode `sources` with `threads` workers (0: one per core), calling `on` in source order.
pub fn decode_in_order(sources: &[InputSource], threads: usize, mut on: impl FnMut(Decoded)) {
    let threads = if threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        threads
    };
    let n = threads.clamp(1, sources.len().max(1));
    // The next source to take. A worker sends its claim while holding the lock, so claims
    // arrive in source order.
    let next = Mutex::new(0usize);
    let (claim_tx, claims) = channel::<usize>();
    let depth = (BATCHES_AHEAD / n).max(2);
    std::thread::scope(|scope| {
        let mut workers: Vec<(Receiver<Batch>, Sender<Vec<Record>>)> = Vec::with_capacity(n);
        for w in 0..n {
            let (tx, rx) = sync_channel::<Batch>(depth);
            let (spare_tx, spare) = channel::<Vec<Record>>();
            workers.push((rx, spare_tx));
            let claim_tx = claim_tx.clone();
            let next = &next;
            scope.spawn(move || {
                let mut buffers = DecodeBuffers::default();
                loop {
                    let i = {
                        let mut next = next.lock().unwrap_or_else(|e| e.into_inner());
                        let i = *next;
                        if i >= sources.len() || claim_tx.send(w).is_err() {
                            return;
                        }
                        *next += 1;
                        i
                    };
                    let source = &sources[i];
                    // The window slides with every claim of a remote source; asking again is
                    // cheap, and an object its store had no room for yet is asked again later.
                    if matches!(source, InputSource::Remote(_)) {
                        for ahead in sources[i + 1..].iter().take(PREFETCH_AHEAD) {
                            if let InputSource::Remote(r) = ahead {
                                r.0.prefetch();
                            }
                        }
                    }
                    // A stream may be a live feed: hand each record on as it arrives rather
                    // than waiting for a batch to fill (which may never happen).
                    let limit = if may_be_live(source) {
                        1
                    } else {
                        CHUNK_RECORDS
                    };
                    let mut chunk = fresh(&spare, limit);
                    let mut failed = false;
                    let report = decode_source_with(source, &mut buffers, &mut |r| {
                        chunk.push(r);
                        if chunk.len() >= limit && !failed {
                            let records = std::mem::replace(&mut chunk, fresh(&spare, limit));
                            failed = tx
                                .send(Batch {
                                    records,
                                    done: None,
                                })
                                .is_err();
                        }
                    });
                    let last = Batch {
                        records: chunk,
                        done: Some((i, report)),
                    };
                    if failed || tx.send(last).is_err() {
                        return; // the consumer has gone away
                    }
                }
            });
        }
        drop(claim_tx);
        for i in 0..sources.len() {
            let Ok(w) = claims.recv() else {
                return; // every worker has stopped: one panicked, and scope re-raises it
            };
            let (batches, home) = &workers[w];
            loop {
                let Ok(Batch { records, done }) = batches.recv() else {
                    return; // a worker panicked; scope re-raises it
                };
                if !records.is_empty() {
                    on(Decoded::Records(Chunk {
                        records,
                        home: Some(home.clone()),
                    }));
                } else {
                    let _ = home.send(records);
                }
                if let Some((idx, report)) = done {
                    debug_assert_eq!(idx, i);
                    on(Decoded::Done(idx, report));
                    break;
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A named pipe given as a path is a live feed: its first record reaches the consumer
    /// while the writer still holds the pipe open, not when a batch has filled.
    #[test]
    fn a_named_pipe_hands_each_record_on_as_it_arrives() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let fifo = crate::test_support::fifo(dir.path(), "live.jsonl");
        let record = crate::test_support::line;
        let (seen_tx, seen_rx) = std::sync::mpsc::channel::<String>();
        let writer = {
            let fifo = fifo.clone();
            std::thread::spawn(move || {
                let mut w = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
                w.write_all(record("first").as_bytes()).unwrap();
                w.flush().unwrap();
                let live = seen_rx.recv_timeout(std::time::Duration::from_secs(30));
                w.write_all(record("second").as_bytes()).unwrap();
                live.is_ok()
            })
        };
        let mut ids = Vec::new();
        decode_in_order(&[InputSource::File(fifo)], 2, |d| {
            if let Decoded::Records(chunk) = d {
                for r in &chunk {
                    let id = r.event_id.clone().unwrap().to_string();
                    let _ = seen_tx.send(id.clone());
                    ids.push(id);
                }
            }
        });
        assert!(
            writer.join().unwrap(),
            "the first record waited for more to fill its batch"
        );
        assert_eq!(ids, ["first", "second"]);
    }

    /// Files of very different sizes, one unreadable: every thread count gives the same
    /// records and reports, in source order.
    #[test]
    fn order_is_the_source_order_whatever_the_threads() {
        let dir = tempfile::tempdir().unwrap();
        let mut sources = Vec::new();
        for f in 0..40u32 {
            let n = [1, 700, 3, 1300, 0, 260][f as usize % 6];
            let records: Vec<String> = (0..n)
                .map(|k| {
                    format!(
                        r#"{{"eventTime":"2024-01-01T00:00:00Z","eventSource":"s3.amazonaws.com","eventName":"E","eventID":"{f}-{k}"}}"#
                    )
                })
                .collect();
            let path = dir.path().join(format!("{f:02}.json"));
            std::fs::write(&path, format!(r#"{{"Records":[{}]}}"#, records.join(","))).unwrap();
            sources.push(InputSource::File(path));
        }
        sources.insert(7, InputSource::File(dir.path().join("missing.json")));
        let run = |threads| {
            let mut seen = Vec::new();
            decode_in_order(&sources, threads, |d| match d {
                Decoded::Records(chunk) => {
                    assert!(chunk.len() <= CHUNK_RECORDS);
                    seen.extend(
                        chunk
                            .iter()
                            .map(|r| r.event_id.clone().unwrap().to_string()),
                    )
                }
                Decoded::Done(i, report) => seen.push(format!(
                    "done {i} {} {}",
                    report.records,
                    report.error_count()
                )),
            });
            seen
        };
        let one = run(1);
        assert_eq!(one.iter().filter(|s| s.starts_with("done")).count(), 41);
        assert!(one.contains(&"done 7 0 1".to_owned()));
        let expected_records: usize = (0..40).map(|f| [1, 700, 3, 1300, 0, 260][f % 6]).sum();
        assert_eq!(one.len(), expected_records + 41);
        for threads in [2, 3, 8] {
            assert_eq!(run(threads), one, "{threads} threads");
        }
    }
}
