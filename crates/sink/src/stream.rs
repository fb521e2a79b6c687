//! A stream (stdout) in a [`Format`], and optionally a JSON-lines file fsynced before a
//! finding counts as delivered: `detect`'s sink. Every finding is delivered as its JSON line
//! (the form it is stored in, so a finding delivered after a restart looks exactly like one
//! delivered at once).

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use credwarden_core::Finding;

use crate::error::SinkError;
use crate::route::Router;

/// How findings are written to a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Fixed columns and the summary on its own line, for people.
    Table,
    /// One JSON object per line: the contract.
    Jsonl,
}

/// Write one finding. Tables are streamed: fixed columns, the summary on its own line.
pub fn write_finding<W: Write + ?Sized>(
    w: &mut W,
    f: &Finding,
    format: Format,
) -> std::io::Result<()> {
    write_finding_json(w, &serde_json::to_string(f)?, format)
}

/// Write one finding given as its JSON line (the form findings are stored in, so a finding
/// delivered after a restart looks exactly like one delivered at once).
pub fn write_finding_json<W: Write + ?Sized>(
    w: &mut W,
    json: &str,
    format: Format,
) -> std::io::Result<()> {
    match format {
        Format::Jsonl => {
            w.write_all(json.as_bytes())?;
            w.write_all(b"\n")
        }
        Format::Table => {
            let f: serde_json::Value = serde_json::from_str(json)?;
            let s = |v: &serde_json::Value| v.as_str().unwrap_or("-").to_owned();
            let time = s(&f["time"]);
            let source = match f["source"]["vpc_endpoint"].as_str() {
                Some(v) => format!("{} via {v}", f["source"]["ip"].as_str().unwrap_or("?")),
                None => f["source"]["ip"].as_str().unwrap_or("").to_owned(),
            };
            writeln!(
                w,
                "{:<20}  {:<8}  {:<28}  {:<12}  {:<20}  {}",
                time.get(..19).unwrap_or(&time).replace('T', " "),
                s(&f["severity"]),
                s(&f["detector"]),
                f["account_name"]
                    .as_str()
                    .map_or_else(|| s(&f["account"]), str::to_owned),
                s(&f["access_key_id"]),
                source
            )?;
            writeln!(w, "    {}", s(&f["summary"]))?;
            writeln!(
                w,
                "    id {}  principal {}",
                s(&f["id"]),
                s(&f["principal"])
            )
        }
    }
}

pub fn write_table_header<W: Write + ?Sized>(w: &mut W) -> std::io::Result<()> {
    writeln!(
        w,
        "{:<20}  {:<8}  {:<28}  {:<12}  {:<20}  SOURCE",
        "TIME (UTC)", "SEVERITY", "DETECTOR", "ACCOUNT", "ACCESS KEY"
    )
}

/// A stream in a format, and optionally a JSON-lines file (`--output`).
pub struct FindingSink<'a> {
    pub out: &'a mut dyn Write,
    pub format: Format,
    pub file: Option<File>,
    /// Findings delivered by this sink.
    pub delivered: u64,
    /// Also queue each delivered finding (in the state file's spool) for every notify route
    /// it matches; no routes: nothing is queued.
    pub spool: Router,
}

impl<'a> FindingSink<'a> {
    pub fn new(out: &'a mut dyn Write, format: Format, file: Option<File>) -> FindingSink<'a> {
        FindingSink {
            out,
            format,
            file,
            delivered: 0,
            spool: Router::default(),
        }
    }

    /// Write one finding given as its JSON line.
    pub fn deliver(&mut self, json: &str) -> Result<(), SinkError> {
        write_finding_json(self.out, json, self.format).map_err(SinkError::Deliver)?;
        if let Some(f) = &mut self.file {
            write_finding_json(f, json, Format::Jsonl).map_err(SinkError::Deliver)?;
        }
        self.delivered += 1;
        Ok(())
    }

    /// Make what was delivered durable (the stream flushed, the file fsynced).
    pub fn sync(&mut self) -> Result<(), SinkError> {
        self.out.flush().map_err(SinkError::Deliver)?;
        if let Some(f) = &mut self.file {
            f.sync_data().map_err(SinkError::Deliver)?;
        }
        Ok(())
    }
}

/// Open `--output` for appending (created 0600: findings name keys and addresses). With
/// `repair` (only needed when an interrupted run left findings in the outbox), a half-written
/// last line is cut off first, and the ids the file already holds are returned.
pub fn open_output(path: &Path, repair: bool) -> Result<(File, HashSet<String>), SinkError> {
    let failed = |what: &'static str| {
        move |source| SinkError::File {
            what,
            path: path.to_path_buf(),
            source,
        }
    };
    let mut options = OpenOptions::new();
    options.create(true).read(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(failed("cannot open --output"))?;
    let mut ids = HashSet::new();
    if repair {
        let mut text = Vec::new();
        file.seek(SeekFrom::Start(0))
            .and_then(|_| file.read_to_end(&mut text))
            .map_err(failed("cannot read --output"))?;
        let complete = text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        if complete < text.len() {
            file.set_len(complete as u64)
                .map_err(failed("cannot repair --output"))?;
        }
        #[derive(serde::Deserialize)]
        struct Id {
            id: String,
        }
        for line in text[..complete]
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
        {
            if let Ok(i) = serde_json::from_slice::<Id>(line) {
                ids.insert(i.id);
            }
        }
    }
    Ok((file, ids))
}
