//! Streaming splitter: decompressed bytes in, one JSON value per record out.
//!
//! An S3 delivery file is one JSON object, `{"Records":[…]}`, that can be ~100 MB; JSON lines
//! exports are one record per line; some tools write a plain JSON array. Parsing any of them
//! as one document would hold the whole file (and serde's tree of it) in memory. Instead a
//! small structural scanner walks the bytes once, tracking only strings and bracket depth,
//! and hands each element of the `Records` array (or each top-level value) to the caller as a
//! byte slice, which is then parsed on its own. Memory is one record plus one read chunk.
//!
//! Because records are cut out before they are parsed, a syntax error inside one record
//! costs that record only. A record whose brackets do not balance (a `}` missing, as in AWS's
//! own `SerializerTestFileBadJsonFormat.json`) is reported, and the complete records that the
//! scanner swallowed while out of step are recovered from its bytes.

use std::io::{self, Read};

use memchr::{memchr, memchr2};

const CHUNK: usize = 256 * 1024;
/// The largest record, top-level value or JSON line held in memory. Real CloudTrail records
/// are a few kilobytes; anything this big is broken or hostile and is skipped, not buffered.
pub const MAX_VALUE_BYTES: usize = 32 << 20;
/// The deepest nesting tracked. Records nest a few levels; deeper input is followed by a
/// counter (no memory) and the record holding it is reported by the parser.
pub const MAX_DEPTH: usize = 128;

/// Receives what the splitter finds.
pub trait Sink {
    /// One complete JSON value: a record from a records array, or a top-level value.
    /// `Err(reason)` reports the record as invalid; the splitter adds its location.
    fn value(&mut self, index: u64, bytes: &[u8]) -> Result<(), String>;
    /// A record or value that could not be cut out or parsed, at `record` index, `line` (1-based).
    fn error(&mut self, record: Option<u64>, line: u64, reason: String);
}

/// Split everything `reader` yields. Returns the reader's error (for example a truncated gzip
/// stream) after every complete record before it has been delivered.
pub fn split<R: Read, S: Sink>(reader: R, sink: &mut S) -> io::Result<()> {
    split_with(reader, sink, &mut Vec::new())
}

/// [`split`] reading through `buf`, which keeps its allocation for the next call: a worker
/// that decodes thousands of small delivery files allocates (and zeroes) it once, not once
/// a file.
pub fn split_with<R: Read, S: Sink>(
    mut reader: R,
    sink: &mut S,
    buf: &mut Vec<u8>,
) -> io::Result<()> {
    // `buf[..len]` holds input; the rest is initialised space to read into, kept between
    // reads and calls so it is zeroed only when it grows.
    let mut len = 0usize;
    let mut scan = Scanner::default();
    let mut pos = 0usize;
    let mut need_more = true;
    loop {
        if need_more || pos >= len {
            scan.enforce_size_limit(&buf[..len], pos, sink);
            let keep = scan.keep_from(pos);
            if keep > 0 {
                scan.dropped_lines += scan.newlines_before(&buf[..len], keep);
                scan.line_mark.set((0, 0));
                buf.copy_within(keep..len, 0);
                len -= keep;
                pos -= keep;
                scan.shift(keep);
            }
            if buf.len() < len + CHUNK {
                buf.resize(len + CHUNK, 0);
            }
            let n = loop {
                match reader.read(&mut buf[len..]) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            };
            len += n;
            if n == 0 {
                break;
            }
        }
        let input = &buf[..len];
        (pos, need_more) = if scan.line_mode {
            scan.lines(input, pos, false, sink)
        } else {
            (scan.scan(input, pos, sink), false)
        };
    }
    let input = &buf[..len];
    if scan.line_mode {
        scan.lines(input, pos, true, sink);
    } else {
        scan.finish(input, pos, sink);
    }
    // A huge record grew the buffer: give that memory back rather than keep it for good.
    if buf.len() > KEEP_BUFFER {
        *buf = Vec::new();
    }
    Ok(())
}

/// The most buffer [`split_with`] keeps between calls.
const KEEP_BUFFER: usize = 4 * CHUNK;

fn count_newlines(b: &[u8]) -> u64 {
    memchr::memchr_iter(b'\n', b).count() as u64
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\r' | b'\t')
}

fn trim(mut b: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = b {
        if is_ws(*first) {
            b = rest
        } else {
            break;
        }
    }
    while let [rest @ .., last] = b {
        if is_ws(*last) {
            b = rest
        } else {
            break;
        }
    }
    b
}

#[derive(Default)]
struct Scanner {
    stack: Vec<u8>,
    in_string: bool,
    /// Bytes to skip at the start of the next buffer (an escape split across reads).
    skip: usize,
    /// Start of the top-level key being read (only keys of the top-level object matter).
    key_start: Option<usize>,
    expecting_key: bool,
    /// In the top-level object, a `:` has been seen and its value has not started.
    awaiting_value: bool,
    records_key: bool,
    /// Stack depth of the records array we are inside (0: none).
    records_depth: usize,
    elem_start: Option<usize>,
    elem_index: u64,
    value_start: Option<usize>,
    value_is_wrapper: bool,
    value_index: u64,
    /// Garbage between top-level values is reported once per run, not once per byte.
    in_garbage: bool,
    line_mode: bool,
    line_no: u64,
    dropped_lines: u64,
    /// A buffer offset and the newlines before it. Errors ask for lines in nearly increasing
    /// order: counting from the mark, not from the buffer's start, keeps a file of many small
    /// errors linear (counting from the start each time made it quadratic: a fuzz hang).
    line_mark: std::cell::Cell<(usize, u64)>,
    /// Nesting beyond [`MAX_DEPTH`], counted rather than stacked.
    overflow: usize,
    /// The current element / top-level value / line was too large and is being skipped.
    skip_elem: bool,
    skip_value: bool,
    skip_line: bool,
}

impl Scanner {
    /// The first buffer offset that must survive compaction.
    fn keep_from(&self, pos: usize) -> usize {
        let mut keep = pos;
        for o in [self.elem_start, self.key_start, self.value_start]
            .into_iter()
            .flatten()
        {
            keep = keep.min(o);
        }
        keep
    }

    /// Stop buffering a record, value or key that has grown past [`MAX_VALUE_BYTES`]: report
    /// it now and skip the rest of it as it streams past.
    fn enforce_size_limit<S: Sink>(&mut self, buf: &[u8], pos: usize, sink: &mut S) {
        let too_big = |start: Option<usize>| start.is_some_and(|s| pos - s > MAX_VALUE_BYTES);
        let why = format!("larger than {} MiB; skipped", MAX_VALUE_BYTES >> 20);
        if too_big(self.elem_start) {
            let s = self.elem_start.take().expect("checked");
            sink.error(
                Some(self.elem_index),
                self.line_at(buf, s),
                format!("record {why}"),
            );
            self.skip_elem = true;
        }
        if too_big(self.value_start) {
            let s = self.value_start.take().expect("checked");
            sink.error(
                Some(self.value_index),
                self.line_at(buf, s),
                format!("JSON value {why}"),
            );
            self.skip_value = true;
        }
        if too_big(self.key_start) {
            self.key_start = None;
        }
    }

    fn shift(&mut self, by: usize) {
        for o in [
            &mut self.elem_start,
            &mut self.key_start,
            &mut self.value_start,
        ]
        .into_iter()
        .flatten()
        {
            *o -= by;
        }
    }

    fn line_at(&self, buf: &[u8], pos: usize) -> u64 {
        self.dropped_lines + self.newlines_before(buf, pos) + 1
    }

    /// Newlines in `buf[..pos]`, counted from the mark, which moves to `pos`.
    fn newlines_before(&self, buf: &[u8], pos: usize) -> u64 {
        let pos = pos.min(buf.len());
        let (at, before) = self.line_mark.get();
        let at = at.min(buf.len());
        let n = if pos >= at {
            before + count_newlines(&buf[at..pos])
        } else {
            before - count_newlines(&buf[pos..at])
        };
        self.line_mark.set((pos, n));
        n
    }

    fn deliver<S: Sink>(&self, sink: &mut S, buf: &[u8], start: usize, index: u64, bytes: &[u8]) {
        if let Err(reason) = sink.value(index, bytes) {
            sink.error(Some(index), self.line_at(buf, start), reason);
        }
    }

    fn maybe_start_elem(&mut self, pos: usize) {
        if self.records_depth != 0
            && self.stack.len() == self.records_depth
            && self.elem_start.is_none()
        {
            self.elem_start = Some(pos);
        }
    }

    fn end_elem<S: Sink>(&mut self, buf: &[u8], pos: usize, sink: &mut S) {
        if let Some(s) = self.elem_start.take() {
            self.deliver(sink, buf, s, self.elem_index, trim(&buf[s..pos]));
            self.elem_index += 1;
        } else if std::mem::take(&mut self.skip_elem) {
            self.elem_index += 1; // reported when it outgrew the limit
        }
    }

    /// Structural scan of `buf[pos..]`. Returns where it stopped (end of buffer, or the
    /// start of the second line when the input turned out to be JSON lines).
    fn scan<S: Sink>(&mut self, buf: &[u8], mut pos: usize, sink: &mut S) -> usize {
        let end = buf.len();
        pos += std::mem::take(&mut self.skip);
        while pos < end {
            if self.in_string {
                match memchr2(b'"', b'\\', &buf[pos..]) {
                    None => return end,
                    Some(i) => {
                        pos += i;
                        if buf[pos] == b'\\' {
                            pos += 2;
                            if pos > end {
                                self.skip = pos - end;
                                return end;
                            }
                        } else {
                            self.in_string = false;
                            if let Some(ks) = self.key_start.take() {
                                self.records_key = &buf[ks..pos] == b"Records";
                            }
                            pos += 1;
                        }
                    }
                }
                continue;
            }
            let b = buf[pos];
            match b {
                b' ' | b'\n' | b'\r' | b'\t' => {}
                b'"' => {
                    if self.stack.is_empty() {
                        self.garbage(buf, pos, sink);
                    } else {
                        self.in_string = true;
                        self.maybe_start_elem(pos);
                        if self.stack.len() == 1 && self.expecting_key {
                            self.key_start = Some(pos + 1);
                        } else if self.stack.len() == 1 {
                            self.awaiting_value = false;
                        }
                    }
                }
                // In the top-level object an object or array can only be a value after `:`.
                // Anywhere else it means the value before was never closed (a JSON line missing
                // its `}`): report that value and start again here.
                b'{' | b'['
                    if self.stack.len() == 1 && self.stack[0] == b'{' && !self.awaiting_value =>
                {
                    pos = self.broken_top_value(buf, pos, sink);
                    if self.line_mode {
                        return pos;
                    }
                    continue;
                }
                b'{' | b'[' if self.stack.len() >= MAX_DEPTH => self.overflow += 1,
                b'}' | b']' if self.overflow > 0 => self.overflow -= 1,
                b'{' | b'[' => {
                    if self.stack.is_empty() {
                        self.in_garbage = false;
                        self.value_start = Some(pos);
                        self.value_is_wrapper = false;
                        self.records_key = false;
                    } else {
                        self.maybe_start_elem(pos);
                    }
                    self.awaiting_value = false;
                    self.stack.push(b);
                    if b == b'[' && self.records_depth == 0 {
                        let top_array = self.stack.len() == 1;
                        let records_array =
                            self.stack.len() == 2 && self.stack[0] == b'{' && self.records_key;
                        if top_array || records_array {
                            self.records_depth = self.stack.len();
                            self.value_is_wrapper = true;
                            // The wrapper's own bytes are never needed: let compaction drop them.
                            self.value_start = None;
                            self.elem_index = 0;
                        }
                    }
                    self.expecting_key = b == b'{' && self.stack.len() == 1;
                }
                b'}' | b']' => {
                    let open = if b == b'}' { b'{' } else { b'[' };
                    if self.stack.last() != Some(&open) {
                        pos = self.mismatch(buf, pos, sink);
                        continue;
                    }
                    if self.records_depth != 0 && self.stack.len() == self.records_depth {
                        self.end_elem(buf, pos, sink);
                        self.records_depth = 0;
                    }
                    self.stack.pop();
                    if self.stack.is_empty() {
                        let start = self.value_start.take();
                        let oversized = std::mem::take(&mut self.skip_value);
                        if let (Some(start), false, false) =
                            (start, self.value_is_wrapper, oversized)
                        {
                            let bytes = &buf[start..=pos];
                            self.deliver(sink, buf, start, self.value_index, bytes);
                            if self.value_index == 0 && memchr(b'\n', bytes).is_none() {
                                // A first value on one line that is not a Records wrapper: JSON
                                // lines. From here on each line stands alone, so one broken line
                                // cannot put the rest of the file out of step.
                                self.value_index += 1;
                                self.line_mode = true;
                                // The rest of this line is handed to line mode as line `line_no`.
                                self.line_no = self.line_at(buf, pos) - 1;
                                return pos + 1;
                            }
                        }
                        self.value_index += 1;
                    }
                }
                b',' => {
                    if self.records_depth != 0 && self.stack.len() == self.records_depth {
                        self.end_elem(buf, pos, sink);
                    } else if self.stack.len() == 1 && self.stack[0] == b'{' {
                        self.expecting_key = true;
                    } else if self.stack.is_empty() {
                        self.garbage(buf, pos, sink);
                    }
                }
                b':' => {
                    if self.stack.len() == 1 {
                        self.expecting_key = false;
                        self.awaiting_value = true;
                    }
                }
                _ => {
                    if self.stack.is_empty() {
                        self.garbage(buf, pos, sink);
                    } else {
                        if self.stack.len() == 1 {
                            self.awaiting_value = false;
                        }
                        self.maybe_start_elem(pos);
                    }
                }
            }
            pos += 1;
        }
        end
    }

    /// The top-level value was never closed and a new one starts at `pos`: report it, reset,
    /// and resume at `pos` — line by line if the new value starts a line.
    fn broken_top_value<S: Sink>(&mut self, buf: &[u8], pos: usize, sink: &mut S) -> usize {
        let line = self.line_at(buf, pos);
        let start_line = self.value_start.map_or(line, |s| self.line_at(buf, s));
        let index = if self.records_depth != 0 {
            None
        } else {
            Some(self.value_index)
        };
        sink.error(
            index,
            start_line,
            format!(
                "malformed JSON: object not closed before line {line}; the rest of it is skipped"
            ),
        );
        let was_wrapper = self.value_is_wrapper;
        self.value_index += 1;
        self.stack.clear();
        self.records_depth = 0;
        self.elem_start = None;
        self.value_start = None;
        self.key_start = None;
        self.expecting_key = false;
        self.awaiting_value = false;
        self.skip_elem = false;
        self.skip_value = false;
        let starts_line = buf[..pos]
            .iter()
            .rev()
            .find(|b| !matches!(b, b' ' | b'\t' | b'\r'))
            .is_none_or(|b| *b == b'\n');
        // A one-line value followed by a new line's value: JSON lines. (A pretty-printed object
        // spanning lines stays in structural mode.)
        if starts_line && !was_wrapper && start_line + 1 == line {
            self.line_mode = true;
            self.line_no = line - 1;
        }
        pos
    }

    fn garbage<S: Sink>(&mut self, buf: &[u8], pos: usize, sink: &mut S) {
        if !self.in_garbage {
            self.in_garbage = true;
            let c = buf[pos];
            let shown = if c.is_ascii_graphic() {
                format!("`{}`", c as char)
            } else {
                format!("byte 0x{c:02x}")
            };
            sink.error(
                None,
                self.line_at(buf, pos),
                format!("not JSON: unexpected {shown} outside any object"),
            );
        }
    }

    /// A closing bracket that does not match. Inside a records array the damage is confined
    /// to one element: report it, recover the complete records inside it, and carry on at the
    /// array's depth. Anywhere else the whole top-level value is lost.
    fn mismatch<S: Sink>(&mut self, buf: &[u8], pos: usize, sink: &mut S) -> usize {
        let c = buf[pos] as char;
        let line = self.line_at(buf, pos);
        if self.records_depth != 0 && self.stack.len() > self.records_depth {
            let start = self.elem_start.take().unwrap_or(pos);
            sink.error(
                Some(self.elem_index),
                self.line_at(buf, start),
                format!(
                    "malformed JSON: brackets do not balance (unexpected `{c}` at line {line})"
                ),
            );
            self.elem_index += 1;
            self.skip_elem = false;
            self.recover(buf, start + 1, pos, sink);
            self.stack.truncate(self.records_depth);
            self.expecting_key = false;
            // A `]` may well be the array's own end: look at it again at the array's depth.
            // Anything else was part of the damage.
            return if buf[pos] == b']' { pos } else { pos + 1 };
        }
        if self.records_depth != 0 {
            self.end_elem(buf, pos, sink);
        }
        if self.stack.is_empty() {
            self.garbage(buf, pos, sink);
        } else {
            let start = self.value_start.unwrap_or(pos);
            let index = if self.records_depth != 0 {
                Some(self.elem_index)
            } else {
                Some(self.value_index)
            };
            sink.error(
                index,
                self.line_at(buf, start),
                format!("malformed JSON: brackets do not balance (unexpected `{c}` at line {line}); the rest of this value is skipped"),
            );
            self.value_index += 1;
            self.in_garbage = true;
        }
        self.stack.clear();
        self.records_depth = 0;
        self.value_start = None;
        self.elem_start = None;
        pos + 1
    }

    /// Find complete records inside a damaged region: objects that open after `,` or `[`,
    /// balance on their own, and look like CloudTrail records.
    fn recover<S: Sink>(&mut self, buf: &[u8], from: usize, to: usize, sink: &mut S) {
        let region = &buf[..to];
        let mut prev = b'{';
        let mut p = from;
        // Trial scans are bounded in total, so hostile nesting cannot make recovery quadratic.
        let mut budget = 8 * (to - from.min(to)) + (1 << 20);
        while p < to {
            let b = region[p];
            if b == b'"' {
                p = string_end(region, p + 1);
                prev = b'"';
                continue;
            }
            if b == b'{' && (prev == b',' || prev == b'[') && budget > 0 {
                if let Some(close) = balanced_end(region, p, &mut budget) {
                    let bytes = &region[p..=close];
                    if looks_like_record(bytes) {
                        self.deliver(sink, buf, p, self.elem_index, bytes);
                        self.elem_index += 1;
                        p = close + 1;
                        prev = b'}';
                        continue;
                    }
                }
            }
            if !is_ws(b) {
                prev = b;
            }
            p += 1;
        }
    }

    /// JSON lines: every complete line in `buf[pos..]` is one value. Returns the start of the
    /// first incomplete line and whether more input is needed.
    fn lines<S: Sink>(
        &mut self,
        buf: &[u8],
        mut pos: usize,
        at_eof: bool,
        sink: &mut S,
    ) -> (usize, bool) {
        loop {
            if self.skip_line {
                match memchr(b'\n', &buf[pos..]) {
                    Some(i) => {
                        pos += i + 1;
                        self.skip_line = false;
                    }
                    None => return (buf.len(), !at_eof),
                }
            }
            let (line_end, next) = match memchr(b'\n', &buf[pos..]) {
                Some(i) => (pos + i, pos + i + 1),
                None if at_eof => (buf.len(), buf.len()),
                None if buf.len() - pos > MAX_VALUE_BYTES => {
                    self.line_no += 1;
                    let index = self.value_index;
                    self.value_index += 1;
                    sink.error(
                        Some(index),
                        self.line_no,
                        format!("line longer than {} MiB; skipped", MAX_VALUE_BYTES >> 20),
                    );
                    self.skip_line = true;
                    return (buf.len(), true);
                }
                None => return (pos, true),
            };
            let line = trim(&buf[pos..line_end]);
            self.line_no += 1;
            if !line.is_empty() {
                let index = self.value_index;
                self.value_index += 1;
                let result = if line[0] == b'{' || line[0] == b'[' {
                    sink.value(index, line)
                } else {
                    Err("not JSON: a line of JSON lines input must be an object".to_owned())
                };
                if let Err(reason) = result {
                    sink.error(Some(index), self.line_no, reason);
                }
            }
            pos = next;
            if pos >= buf.len() {
                return (pos, !at_eof);
            }
        }
    }

    fn finish<S: Sink>(&mut self, buf: &[u8], pos: usize, sink: &mut S) {
        if self.stack.is_empty() && !self.in_string {
            return;
        }
        let line = self.line_at(buf, pos);
        match (self.records_depth, self.elem_start) {
            (d, Some(start)) if d != 0 => sink.error(
                Some(self.elem_index),
                self.line_at(buf, start),
                format!(
                    "unexpected end of input inside this record at line {line} (file truncated?)"
                ),
            ),
            (d, None) if d != 0 => sink.error(
                None,
                line,
                format!(
                    "unexpected end of input after {} records (file truncated?)",
                    self.elem_index
                ),
            ),
            _ => sink.error(
                Some(self.value_index),
                line,
                "unexpected end of input (file truncated?)".to_owned(),
            ),
        }
    }
}

/// The index of the bracket that closes the object opening at `start`, if it closes in `b`
/// within `budget` steps (which it spends).
fn balanced_end(b: &[u8], start: usize, budget: &mut usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut p = start;
    while p < b.len() {
        *budget = budget.checked_sub(1)?;
        let c = b[p];
        match c {
            b'"' => {
                p = string_end(b, p + 1);
                continue;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return (c == b'}').then_some(p);
                }
            }
            _ => {}
        }
        p += 1;
    }
    None
}

/// The index just past the closing quote of a string whose contents start at `p`, or
/// `b.len()` when it does not close.
fn string_end(b: &[u8], mut p: usize) -> usize {
    while let Some(i) = memchr2(b'"', b'\\', &b[p.min(b.len())..]) {
        p += i;
        if b[p] == b'"' {
            return p + 1;
        }
        p += 2;
    }
    b.len()
}

fn looks_like_record(bytes: &[u8]) -> bool {
    crate::record::parse_value(bytes)
        .is_ok_and(|r| r.event_time.0.is_some() && r.event_name.0.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default, Debug)]
    struct Collect {
        values: Vec<(u64, String)>,
        errors: Vec<(Option<u64>, u64, String)>,
    }

    impl Sink for Collect {
        fn value(&mut self, index: u64, bytes: &[u8]) -> Result<(), String> {
            let s = String::from_utf8(bytes.to_vec()).map_err(|e| e.to_string())?;
            serde_json::from_str::<serde_json::Value>(&s).map_err(|e| e.to_string())?;
            self.values.push((index, s));
            Ok(())
        }
        fn error(&mut self, record: Option<u64>, line: u64, reason: String) {
            self.errors.push((record, line, reason));
        }
    }

    /// A reader that hands out `n` bytes at a time, to cross every buffer boundary.
    struct Trickle<'a>(&'a [u8], usize);
    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let n = self.1.min(self.0.len()).min(out.len());
            out[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    fn run(input: &str) -> Collect {
        let whole = {
            let mut c = Collect::default();
            split(input.as_bytes(), &mut c).unwrap();
            c
        };
        for step in [1, 2, 3, 7] {
            let mut c = Collect::default();
            split(Trickle(input.as_bytes(), step), &mut c).unwrap();
            assert_eq!(c.values, whole.values, "step {step}");
            assert_eq!(c.errors, whole.errors, "step {step}");
        }
        whole
    }

    #[test]
    fn splits_a_records_wrapper() {
        let c = run(r#"{"Records":[{"a":"x\"]}"},{"b":[1,{"c":2}]} , {"d":"\\"}]}"#);
        let got: Vec<_> = c.values.iter().map(|(i, s)| (*i, s.as_str())).collect();
        assert_eq!(
            got,
            vec![
                (0, r#"{"a":"x\"]}"}"#),
                (1, r#"{"b":[1,{"c":2}]}"#),
                (2, r#"{"d":"\\"}"#)
            ]
        );
        assert!(c.errors.is_empty());
    }

    #[test]
    fn records_key_need_not_come_first() {
        let c = run(r#"{"x":{"Records":[1]},"Records":[{"a":1},{"a":2}],"y":"Records"}"#);
        assert_eq!(c.values.len(), 2);
    }

    #[test]
    fn splits_arrays_and_json_lines_and_single_objects() {
        assert_eq!(run(r#"[{"a":1},{"a":2}]"#).values.len(), 2);
        let c = run("{\"a\":1}\n{\"a\":2}\r\n\n{\"a\":3}");
        assert_eq!(
            c.values.iter().map(|v| v.0).collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
        assert_eq!(run("{\n \"a\": 1\n}\n").values.len(), 1);
    }

    #[test]
    fn a_broken_json_line_costs_that_line_only() {
        let c = run("{\"a\":1}\n{\"a\":\n{\"a\":3}\nnot json\n");
        assert_eq!(c.values.iter().map(|v| v.0).collect::<Vec<_>>(), vec![0, 2]);
        assert_eq!(c.errors.len(), 2);
        assert_eq!((c.errors[0].0, c.errors[0].1), (Some(1), 2));
        assert_eq!((c.errors[1].0, c.errors[1].1), (Some(3), 4));
    }

    /// Many broken records, one a line: each error names its own line, read whole or in
    /// dribs (the line count is carried across buffer compactions, not recounted per error).
    #[test]
    fn every_error_of_many_names_its_line() {
        let n = 3_000;
        let elements: Vec<&str> = (0..n)
            .map(|i| {
                if i % 2 == 0 {
                    r#"{"a":1}"#
                } else {
                    r#"{"a":tru}"#
                }
            })
            .collect();
        let c = run(&format!("{{\"Records\":[\n{}\n]}}", elements.join(",\n")));
        assert_eq!(c.values.len(), n / 2);
        let got: Vec<(Option<u64>, u64)> = c.errors.iter().map(|e| (e.0, e.1)).collect();
        let want: Vec<(Option<u64>, u64)> =
            (1..n as u64).step_by(2).map(|i| (Some(i), i + 2)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn recovery_work_is_bounded_on_hostile_nesting() {
        let n = 30_000;
        let input = format!(
            r#"{{"Records":[{{"a":{}{}]}},{{"eventTime":"t","eventName":"after"}}]}}"#,
            "[{".repeat(n),
            "}]".repeat(n)
        );
        let mut c = Collect::default();
        split(input.as_bytes(), &mut c).unwrap();
        assert!(!c.errors.is_empty());
    }

    #[test]
    fn a_broken_first_json_line_costs_that_line_only() {
        let c = run("{\"a\":1,\"b\":\"x\"\n{\"a\":2}\n{\"a\":3}\n");
        assert_eq!(
            c.values.iter().map(|v| v.1.as_str()).collect::<Vec<_>>(),
            vec!["{\"a\":2}", "{\"a\":3}"]
        );
        assert_eq!(c.errors.len(), 1);
        assert_eq!((c.errors[0].0, c.errors[0].1), (Some(0), 1));
        // Pretty-printed objects one after another resync too.
        let c = run("{\n \"a\": 1,\n \"b\": 2\n\n{\n \"a\": 3\n}\n");
        assert_eq!(c.values.len(), 1, "{c:?}");
        assert_eq!(c.errors.len(), 1);
    }

    #[test]
    fn unbalanced_record_is_reported_and_neighbours_recovered() {
        let input = "{\"Records\":[\n{\"eventTime\":\"t\",\"eventName\":\"one\"},\n{\"eventTime\":\"t\",\"u\":{\"x\":1,\n\"eventName\":\"broken\"},\n{\"eventTime\":\"t\",\"eventName\":\"three\"}\n]}";
        let c = run(input);
        let names: Vec<_> = c
            .values
            .iter()
            .map(|v| v.1.contains("one") as u8 + 2 * v.1.contains("three") as u8)
            .collect();
        assert_eq!(names, vec![1, 2]);
        assert_eq!(c.errors.len(), 1);
        assert_eq!((c.errors[0].0, c.errors[0].1), (Some(1), 3));
    }

    #[test]
    fn truncation_is_reported_and_earlier_records_kept() {
        let c = run(r#"{"Records":[{"a":1},{"a":2},{"a":"#);
        assert_eq!(c.values.len(), 2);
        assert_eq!(c.errors.len(), 1);
        assert!(c.errors[0].2.contains("truncated"), "{:?}", c.errors);
        assert_eq!(c.errors[0].0, Some(2));
    }

    #[test]
    fn deep_nesting_costs_one_record_and_no_memory() {
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        let input = format!(r#"{{"Records":[{deep},{{"b":1}}]}}"#);
        let mut c = Collect::default();
        split(input.as_bytes(), &mut c).unwrap();
        assert_eq!(c.values.len(), 1, "{:?}", c.errors);
        assert_eq!(c.errors.len(), 1);
        assert_eq!(c.errors[0].0, Some(0));
    }

    #[test]
    fn oversized_records_and_lines_are_skipped_not_buffered() {
        // The limit is checked as the buffer refills, so it holds to within one read chunk.
        let big = "x".repeat(MAX_VALUE_BYTES + 2 * CHUNK);
        let input = format!(r#"{{"Records":[{{"a":1}},{{"huge":"{big}"}},{{"a":3}}]}}"#);
        let mut c = Collect::default();
        split(input.as_bytes(), &mut c).unwrap();
        assert_eq!(c.values.iter().map(|v| v.0).collect::<Vec<_>>(), vec![0, 2]);
        assert_eq!(c.errors.len(), 1);
        assert!(c.errors[0].2.contains("larger than"), "{:?}", c.errors);
        assert_eq!(c.errors[0].0, Some(1));

        let input = format!("{{\"a\":1}}\n{{\"huge\":\"{big}\"}}\n{{\"a\":3}}\n");
        let mut c = Collect::default();
        split(input.as_bytes(), &mut c).unwrap();
        assert_eq!(c.values.iter().map(|v| v.0).collect::<Vec<_>>(), vec![0, 2]);
        assert_eq!((c.errors[0].0, c.errors[0].1), (Some(1), 2));

        let input = format!("{{\"huge\":\"{big}\"}}");
        let mut c = Collect::default();
        split(input.as_bytes(), &mut c).unwrap();
        assert!(c.values.is_empty());
        assert_eq!(c.errors.len(), 1);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 150, failure_persistence: None, ..Default::default() })]

        /// Damaged input never panics, and how the bytes arrive (read sizes) never changes
        /// what comes out; an undamaged record is never lost to damage elsewhere in a
        /// JSON-lines file.
        #[test]
        fn damage_and_read_sizes(cut in 0usize..400, byte in proptest::prelude::any::<u8>(), step in 1usize..64, lines in proptest::prelude::any::<bool>()) {
            let recs: Vec<String> = (0..6).map(|i| format!(r#"{{"eventTime":"2024-01-01T00:00:0{i}Z","eventName":"E{i}","x":[1,{{"y":"a\\\"]}}"}}]}}"#)).collect();
            let mut input = if lines { recs.join("\n").into_bytes() } else { format!(r#"{{"Records":[{}]}}"#, recs.join(",")).into_bytes() };
            let at = cut % input.len();
            input[at] = byte;
            let mut whole = Collect::default();
            split(&input[..], &mut whole).unwrap();
            let mut trickled = Collect::default();
            split(Trickle(&input, step), &mut trickled).unwrap();
            proptest::prop_assert_eq!(&whole.values, &trickled.values);
            proptest::prop_assert_eq!(&whole.errors, &trickled.errors);
            if lines {
                // One damaged byte costs at most the two records it can join or split.
                proptest::prop_assert!(whole.values.len() >= 4, "{:?}", whole);
            }
        }
    }

    #[test]
    fn garbage_is_reported_once() {
        let c = run("hello world");
        assert_eq!(c.errors.len(), 1);
        assert!(c.values.is_empty());
    }

    #[test]
    fn an_element_that_is_not_json_is_named() {
        let c = run(r#"{"Records":[{"a":1},{"a":tru},{"a":3}]}"#);
        assert_eq!(c.values.len(), 2);
        assert_eq!(c.errors[0].0, Some(1));
    }
}
