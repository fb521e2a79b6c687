//! The one-pass delivery parser ([`cloudtrail::delivery`]) against the splitter: for every
//! file of the third-party corpora and the fuzz seeds, and for thousands of damaged copies of
//! a delivery file, decoding a file (which takes the one-pass path when it can) gives the
//! same records, errors, skips and notes as splitting the same bytes.

use std::io::Read;
use std::path::{Path, PathBuf};

use cloudtrail::{decode_bytes, decode_source, discover, FileReport, InputSource, Record};
use proptest::prelude::*;

fn here() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// What a decode gives (records, errors, records counted, values skipped), with the
/// report's file name left out (the two paths name it alike).
type Outcome = (Vec<Record>, Vec<String>, u64, u64);

fn outcome(records: Vec<Record>, report: FileReport) -> Outcome {
    let errors = report
        .errors
        .iter()
        .map(|e| format!("{:?}:{:?}:{}", e.record, e.line, e.reason))
        .collect();
    (records, errors, report.records, report.skipped)
}

/// Decode the file at `path` (one pass when it can) and split its decompressed bytes.
fn both_ways(path: &Path) -> Option<[Outcome; 2]> {
    let source = InputSource::File(path.to_path_buf());
    let mut bytes = Vec::new();
    // Only files that decompress whole: a truncated gzip is the splitter's either way.
    cloudtrail::input::open(&source)
        .ok()?
        .read_to_end(&mut bytes)
        .ok()?;
    let mut fast = Vec::new();
    let fast_report = decode_source(&source, &mut |r| fast.push(r));
    let mut split = Vec::new();
    let split_report = decode_bytes(&source.to_string(), &bytes, &mut |r| split.push(r));
    assert_eq!(fast_report.notes, split_report.notes, "{}", path.display());
    Some([outcome(fast, fast_report), outcome(split, split_report)])
}

#[test]
fn corpora_and_seeds_decode_alike_both_ways() {
    let roots = [
        here().join("../../../shared/corpora"),
        here().join("../fuzz/seeds/cloudtrail"),
    ];
    let (sources, _) = discover(&roots).unwrap();
    let mut compared = 0;
    for source in &sources {
        let InputSource::File(path) = source else {
            continue;
        };
        if let Some([fast, split]) = both_ways(path) {
            assert_eq!(fast, split, "{}", path.display());
            compared += 1;
        }
    }
    assert!(compared > 100, "only {compared} files compared");
}

const RECORD: &str = r#"{"eventVersion":"1.08","userIdentity":{"type":"AssumedRole","principalId":"AROA:i-1","arn":"arn:aws:sts::111122223333:assumed-role/app/i-1","accountId":"111122223333","accessKeyId":"ASIAEXAMPLE","sessionContext":{"sessionIssuer":{"type":"Role","arn":"arn:aws:iam::111122223333:role/app"},"ec2RoleDelivery":"2.0"}},"eventTime":"2024-01-01T00:00:00Z","eventSource":"s3.amazonaws.com","eventName":"GetObject","awsRegion":"us-east-1","sourceIPAddress":"203.0.113.9","userAgent":"aws-sdk-go","requestParameters":{"bucketName":"b\"q\u00e9","key":"k"},"responseElements":null,"eventID":"ID","readOnly":true,"recipientAccountId":"111122223333"}"#;

fn delivery(n: usize) -> String {
    let records: Vec<String> = (0..n)
        .map(|i| RECORD.replace("\"ID\"", &format!("\"e{i}\"")))
        .collect();
    format!("{{\"Records\":[\n{}\n]}}\n", records.join(",\n"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// A delivery file with a byte changed, removed or inserted somewhere: whatever the
    /// damage, both ways agree (the one-pass path gives up on anything it cannot take whole).
    #[test]
    fn damaged_deliveries_decode_alike_both_ways(
        at in 0usize..4000,
        op in 0u8..3,
        byte in prop::sample::select(b"{}[],:\"\\ 0a\n".to_vec()),
    ) {
        let mut bytes = delivery(3).into_bytes();
        let at = at % bytes.len();
        match op {
            0 => bytes[at] = byte,
            1 => { bytes.remove(at); }
            _ => bytes.insert(at, byte),
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("1_CloudTrail_us-east-1_20240101T0000Z_x.json");
        std::fs::write(&path, &bytes).unwrap();
        let [fast, split] = both_ways(&path).unwrap();
        prop_assert_eq!(fast, split);
    }
}

#[test]
fn an_intact_delivery_is_read_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.json");
    std::fs::write(&path, delivery(5)).unwrap();
    // The one-pass parser takes it (so the comparison below is of the two paths).
    let mut whole = Vec::new();
    assert!(cloudtrail::delivery::parse_delivery(
        delivery(5).as_bytes(),
        &mut whole
    ));
    assert_eq!(whole.len(), 5);
    let [fast, split] = both_ways(&path).unwrap();
    assert_eq!(fast.0.len(), 5);
    assert_eq!(fast, split);
}
