//! Finding sinks for stdout: JSON lines (the contract) or a table for people.

use std::io::Write;

use detect::Finding;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Jsonl,
}

/// Write one finding. Tables are streamed: fixed columns, the summary on its own line.
pub fn write_finding<W: Write + ?Sized>(w: &mut W, f: &Finding, format: Format) -> std::io::Result<()> {
    match format {
        Format::Jsonl => {
            serde_json::to_writer(&mut *w, f)?;
            w.write_all(b"\n")
        }
        Format::Table => {
            let source = f
                .source
                .vpc_endpoint
                .as_ref()
                .map_or_else(|| f.source.ip.clone().unwrap_or_default(), |v| format!("{} via {v}", f.source.ip.as_deref().unwrap_or("?")));
            writeln!(
                w,
                "{:<20}  {:<8}  {:<28}  {:<12}  {:<20}  {}",
                f.time.get(..19).unwrap_or(&f.time).replace('T', " "),
                f.severity.as_str(),
                f.detector,
                f.account.as_deref().unwrap_or("-"),
                f.access_key_id.as_deref().unwrap_or("-"),
                source
            )?;
            writeln!(w, "    {}", f.summary)?;
            writeln!(w, "    id {}  principal {}", f.id, f.principal.as_deref().unwrap_or("-"))
        }
    }
}

pub fn write_table_header<W: Write + ?Sized>(w: &mut W) -> std::io::Result<()> {
    writeln!(w, "{:<20}  {:<8}  {:<28}  {:<12}  {:<20}  SOURCE", "TIME (UTC)", "SEVERITY", "DETECTOR", "ACCOUNT", "ACCESS KEY")
}
