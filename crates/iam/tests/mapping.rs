//! Every event in the third-party corpora maps to catalogue actions or is listed, with a
//! reason, as needing no permission or as not mappable. Nothing is unknown.

use std::path::PathBuf;

use iam::{Catalogue, EventActions, EventMap};
use serde_json::Value;

fn corpora() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpora")
}

fn check(events: impl Iterator<Item = (String, String)>) -> (usize, usize, usize) {
    let (c, m) = (Catalogue::builtin(), EventMap::builtin());
    let (mut mapped, mut listed, mut total) = (0, 0, 0);
    let mut unknown = Vec::new();
    for (source, name) in events {
        total += 1;
        match m.map(c, &source, &name) {
            EventActions::Actions { actions } => {
                for a in &actions {
                    assert!(
                        c.lookup(a).is_some(),
                        "{source} {name} → {a}: not in the catalogue"
                    );
                }
                mapped += 1
            }
            EventActions::NoPermission { reason } | EventActions::Unmappable { reason } => {
                assert!(!reason.trim().is_empty());
                listed += 1
            }
            EventActions::Unknown { guess } => {
                unknown.push(format!("{source} {name} (guess {guess})"))
            }
        }
    }
    assert!(unknown.is_empty(), "unmapped events: {unknown:#?}");
    (mapped, listed, total)
}

#[test]
fn traildiscover_examples_all_map() {
    let text = std::fs::read_to_string(corpora().join("traildiscover/log_examples.jsonl")).unwrap();
    let events = text.lines().filter(|l| !l.trim().is_empty()).map(|l| {
        let v: Value = serde_json::from_str(l).unwrap();
        (
            v["event"]["eventSource"].as_str().unwrap().to_owned(),
            v["event"]["eventName"].as_str().unwrap().to_owned(),
        )
    });
    let (mapped, listed, total) = check(events);
    assert_eq!(total, 315);
    assert!(mapped >= 300, "{mapped} mapped, {listed} listed");
}

#[test]
fn stratus_detonations_all_map() {
    let mut events = Vec::new();
    for entry in std::fs::read_dir(corpora().join("stratus-red-team/detonation-logs")).unwrap() {
        let path = entry.unwrap().path();
        let records: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        for r in records.as_array().unwrap() {
            events.push((
                r["eventSource"].as_str().unwrap().to_owned(),
                r["eventName"].as_str().unwrap().to_owned(),
            ));
        }
    }
    let (mapped, _, total) = check(events.into_iter());
    assert_eq!(total, 310);
    assert!(mapped >= 300);
}
