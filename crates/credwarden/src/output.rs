//! Finding sinks for stdout: JSON lines (the contract) or a table for people.

use std::io::Write;

use detect::Finding;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
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
                s(&f["account"]),
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
