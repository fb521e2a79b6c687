//! Decode many sources on all cores and deliver their records in canonical source order.
//!
//! Source `i` goes to worker `i % n`; each worker decodes its sources in order and sends
//! records in chunks over its own bounded channel; the consumer reads source 0 from worker 0,
//! source 1 from worker 1, and so on. So the output order is exactly the source order — the
//! detectors see the same sequence however many threads ran — and memory is bounded by
//! (workers × channel depth × chunk), not by input size.

use std::sync::mpsc::{sync_channel, Receiver};

use crate::decode::{decode_source, FileReport};
use crate::input::InputSource;
use crate::record::Record;

/// Records per message from a worker.
pub const CHUNK_RECORDS: usize = 2048;
const CHANNEL_DEPTH: usize = 2;

/// What the consumer receives, in order.
pub enum Decoded {
    Records(Vec<Record>),
    /// The source with this index is finished.
    Done(usize, FileReport),
}

/// Decode `sources` with `threads` workers (0: one per core), calling `on` in source order.
pub fn decode_in_order(sources: &[InputSource], threads: usize, mut on: impl FnMut(Decoded)) {
    let threads = if threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        threads
    };
    let n = threads.clamp(1, sources.len().max(1));
    std::thread::scope(|scope| {
        let mut receivers: Vec<Receiver<Decoded>> = Vec::with_capacity(n);
        for w in 0..n {
            let (tx, rx) = sync_channel::<Decoded>(CHANNEL_DEPTH);
            receivers.push(rx);
            scope.spawn(move || {
                for (i, source) in sources.iter().enumerate().skip(w).step_by(n) {
                    // A stream (stdin) may be a live feed: hand each record on as it arrives
                    // rather than waiting for a chunk to fill.
                    let chunk_records = if matches!(source, InputSource::Stdin) {
                        1
                    } else {
                        CHUNK_RECORDS
                    };
                    let mut chunk = Vec::with_capacity(chunk_records);
                    let mut failed = false;
                    let report = decode_source(source, &mut |r| {
                        chunk.push(r);
                        if chunk.len() >= chunk_records && !failed {
                            failed = tx
                                .send(Decoded::Records(std::mem::replace(
                                    &mut chunk,
                                    Vec::with_capacity(chunk_records),
                                )))
                                .is_err();
                        }
                    });
                    if failed
                        || (!chunk.is_empty() && tx.send(Decoded::Records(chunk)).is_err())
                        || tx.send(Decoded::Done(i, report)).is_err()
                    {
                        return; // the consumer has gone away
                    }
                }
            });
        }
        for i in 0..sources.len() {
            loop {
                match receivers[i % n].recv() {
                    Ok(Decoded::Done(idx, report)) => {
                        debug_assert_eq!(idx, i);
                        on(Decoded::Done(idx, report));
                        break;
                    }
                    Ok(msg) => on(msg),
                    Err(_) => return, // a worker panicked; scope re-raises it
                }
            }
        }
    });
}
