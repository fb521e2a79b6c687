//! `credwarden ip-ranges fetch`: download AWS's published address ranges, check that what
//! arrived is really that file, and replace the local copy atomically.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use detect::AwsIpRanges;

pub const OFFICIAL_URL: &str = "https://ip-ranges.amazonaws.com/ip-ranges.json";
/// The real file is a few MB; refuse anything absurdly larger.
const MAX_BYTES: u64 = 64 * 1024 * 1024;

pub fn fetch(url: &str, output: &Path) -> Result<AwsIpRanges> {
    let response = match ureq::get(url).timeout(Duration::from_secs(60)).call() {
        Ok(r) => r,
        Err(ureq::Error::Status(code, r)) => bail!("{url}: HTTP {code} {}", r.status_text()),
        Err(e) => bail!("{url}: {e}"),
    };
    let mut body = Vec::new();
    response
        .into_reader()
        .take(MAX_BYTES + 1)
        .read_to_end(&mut body)
        .with_context(|| format!("{url}: reading the response"))?;
    if body.len() as u64 > MAX_BYTES {
        bail!("{url}: response larger than {MAX_BYTES} bytes; not an ip-ranges file");
    }
    let ranges = AwsIpRanges::parse(&body).with_context(|| format!("{url}: the response"))?;
    let tmp = output.with_extension("json.partial");
    std::fs::write(&tmp, &body).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, output)
        .with_context(|| format!("cannot replace {}", output.display()))?;
    Ok(ranges)
}

pub fn load(path: &Path) -> Result<AwsIpRanges> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read AWS ip ranges {}", path.display()))?;
    AwsIpRanges::parse(&bytes).with_context(|| format!("{}", path.display()))
}
