//! Helpers the detector tests share: records through the real decoder, a detector through
//! the real engine.

#![allow(dead_code)]

use cloudtrail::{decode_bytes, Record};
use detect::{Detector, Engine, Finding};

/// JSON values as records, decoded as production decodes them (JSON lines); no errors allowed.
pub fn records(values: &[serde_json::Value]) -> Vec<Record> {
    let text: String = values.iter().map(|v| v.to_string() + "\n").collect();
    let mut out = Vec::new();
    let report = decode_bytes("test", text.as_bytes(), &mut |r| out.push(r));
    assert_eq!(report.error_count(), 0, "{:?}", report.errors);
    out
}

/// Every record through an engine running `detector`, then the end of input.
pub fn run_detector(detector: Box<dyn Detector>, records: &[Record]) -> Vec<Finding> {
    let mut engine = Engine::new(vec![detector]);
    let mut out = Vec::new();
    for r in records {
        engine.process(r, &mut out);
    }
    engine.finish(&mut out);
    out
}
