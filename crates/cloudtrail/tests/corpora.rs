//! Decode the third-party corpora in `../shared/corpora`: real CloudTrail from public
//! projects, including AWS's own malformed parser-test files.

use std::path::PathBuf;

use cloudtrail::{decode_source, discover, FileReport, InputSource, Record, SourceAddress};

fn corpora() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpora")
}

fn decode(rel: &str) -> (Vec<Record>, FileReport) {
    let path = corpora().join(rel);
    assert!(path.exists(), "corpus file missing: {}", path.display());
    let mut records = Vec::new();
    let report = decode_source(&InputSource::File(path), &mut |r| records.push(r));
    (records, report)
}

#[test]
fn aws_parser_test_files_good_and_bad() {
    let base = "aws-cloudtrail-processing-library/";
    let (good, report) = decode(&format!("{base}SerializerTestFile.json"));
    assert_eq!(report.error_count(), 0, "{:?}", report.errors);
    assert_eq!(good.len(), 6);

    let (compact, report) = decode(&format!("{base}SerializerTestFileCompact.json.gz"));
    assert_eq!(report.error_count(), 0, "{:?}", report.errors);
    assert!(!compact.is_empty());

    // A `}` is missing in the first record: that record is reported at its line, the
    // second (complete) record is kept.
    let (records, report) = decode(&format!("{base}SerializerTestFileBadJsonFormat.json"));
    assert_eq!(report.error_count(), 1, "{:?}", report.errors);
    let err = &report.errors[0];
    assert_eq!(err.record, Some(0));
    assert_eq!(err.line, Some(3));
    assert!(err.reason.contains("brackets do not balance"), "{err}");
    assert!(err.to_string().starts_with(&format!(
        "{}",
        corpora()
            .join(base)
            .join("SerializerTestFileBadJsonFormat.json")
            .display()
    )));
    assert_eq!(records.len(), 1);
    assert_eq!(&*records[0].event_name, "eventName2");

    // All fields null: the record is named as invalid, the rest are kept.
    let (records, report) = decode(&format!("{base}SerializerAllFieldsNull.json"));
    assert_eq!(report.error_count(), 1, "{:?}", report.errors);
    assert_eq!(report.errors[0].record, Some(0));
    assert!(report.errors[0].reason.contains("eventTime"));
    assert!(!records.is_empty());

    // SQS/SNS notification bodies are skipped with a note, not errors.
    for f in ["SQSMessageBody.json", "SQSMessageBodyWrongFormat.json"] {
        let (records, report) = decode(&format!("{base}{f}"));
        assert!(records.is_empty());
        assert_eq!(report.error_count(), 0, "{f}: {:?}", report.errors);
        assert_eq!(report.skipped, 1, "{f}");
        assert!(report.notes[0].contains("notification"));
    }
}

#[test]
fn every_aws_parser_file_decodes_without_panicking_and_accounts_for_itself() {
    let (sources, _) = discover(&[corpora().join("aws-cloudtrail-processing-library")]).unwrap();
    assert!(sources.len() >= 14);
    for s in &sources {
        let mut n = 0u64;
        let report = decode_source(s, &mut |_| n += 1);
        assert_eq!(report.records, n);
        assert!(
            n + report.error_count() + report.skipped > 0,
            "{s}: nothing at all"
        );
    }
}

#[test]
fn stratus_detonation_logs_decode_cleanly() {
    let (sources, ignored) =
        discover(&[corpora().join("stratus-red-team/detonation-logs")]).unwrap();
    assert_eq!(sources.len(), 35);
    assert!(ignored.is_empty());
    let mut total = 0;
    for s in &sources {
        let report = decode_source(s, &mut |_| total += 1);
        assert_eq!(report.error_count(), 0, "{s}: {:?}", report.errors);
    }
    assert_eq!(total, 310);
}

#[test]
fn permiso_console_sessions_decode_as_json_lines() {
    let (sources, ignored) =
        discover(&[corpora().join("permiso-cloudconsolecartographer/sessions")]).unwrap();
    // 32 sessions of events plus 31 annotation files (also .json, so also picked up).
    assert_eq!(sources.len(), 63);
    assert!(ignored.is_empty());
    let mut total = 0;
    for s in sources
        .iter()
        .filter(|s| s.to_string().ends_with(".events.jsonl"))
    {
        let report = decode_source(s, &mut |_| total += 1);
        assert_eq!(report.error_count(), 0, "{s}: {:?}", report.errors);
    }
    assert_eq!(total, 9226);
}

#[test]
fn sample_input_forms() {
    let (r, rep) = decode("samples/19_eventbridge_envelope_aws_api_call_via_cloudtrail.json");
    assert_eq!((r.len(), rep.error_count()), (1, 0), "{:?}", rep.errors);
    assert_eq!(&*r[0].event_name, "ListObjects");

    let (r, rep) = decode("samples/20_lookupevents_output_cloudtrailevent_is_string.json");
    assert_eq!(rep.error_count(), 0, "{:?}", rep.errors);
    assert!(!r.is_empty());
    assert_eq!(&*r[0].event_name, "ConsoleLogin");

    let (r, rep) = decode("samples/21_sns_notification_log_file_delivered.json");
    assert_eq!((r.len(), rep.error_count(), rep.skipped), (0, 0, 1));

    let (r, rep) = decode("samples/24_insights_event_pair_records_wrapper.json");
    assert_eq!((r.len(), rep.error_count()), (0, 0), "{:?}", rep.errors);
    assert_eq!(rep.skipped, 2);

    let (r, rep) = decode("samples/27_anonymized_ipv4_with_leading_zeros_stratus.json");
    assert_eq!(rep.error_count(), 0);
    assert!(r
        .iter()
        .any(|r| r.source == SourceAddress::V4("8.1.250.216".parse().unwrap())));

    let (r, _) = decode("samples/25_vpce_network_activity_event_allowed_management.json");
    assert!(r[0].vpc_endpoint_id.is_some() && r[0].vpc_endpoint_account_id.is_some());
}
