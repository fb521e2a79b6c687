//! The engine's duplicate check: CloudTrail delivers some events twice; the engine drops the
//! second copy within its window, across runs too (`--state`), whichever process hashed the
//! ids it remembers.

mod common;

use std::hash::BuildHasher;

use common::records;
use detect::fasthash::FastState;
use detect::Engine;
use serde_json::json;

/// Event time as the engine saves it (milliseconds).
fn at(minute: u32) -> i64 {
    cloudtrail::EventTime::parse(&format!(
        "2024-03-01T{:02}:{:02}:00Z",
        minute / 60,
        minute % 60
    ))
    .unwrap()
    .millis()
}

fn event(minute: u32, id: &str) -> serde_json::Value {
    event_at(&format!("{:02}:{:02}:00", minute / 60, minute % 60), id)
}

fn event_at(time: &str, id: &str) -> serde_json::Value {
    json!({"eventTime": format!("2024-03-01T{time}Z"),
           "eventSource": "s3.amazonaws.com", "eventName": "GetObject", "eventID": id,
           "awsRegion": "us-east-1", "sourceIPAddress": "198.51.100.7"})
}

/// Feed `values` to `engine`; its duplicate counter after.
fn feed(engine: &mut Engine, values: &[serde_json::Value]) -> u64 {
    let mut out = Vec::new();
    for r in &records(values) {
        engine.process(r, &mut out);
    }
    engine.stats.duplicates
}

fn engine_state(engine: &Engine) -> Vec<(String, serde_json::Value)> {
    engine
        .save_state()
        .into_iter()
        .map(|(name, v)| (name.to_owned(), v))
        .collect()
}

#[test]
fn a_second_delivery_of_an_event_is_dropped_and_counted() {
    let mut engine = Engine::new(Vec::new());
    let n = feed(
        &mut engine,
        &[event(0, "a"), event(1, "b"), event(0, "a"), event(2, "c")],
    );
    assert_eq!(n, 1);
    assert_eq!(engine.stats.records, 4);
}

#[test]
fn ids_are_forgotten_once_event_time_has_passed_them_by_the_window() {
    let mut engine = Engine::new(Vec::new());
    // 61 minutes later the first "a" has left the hour's window: a copy then is processed.
    let n = feed(
        &mut engine,
        &[event(0, "a"), event(61, "z"), event(62, "a")],
    );
    assert_eq!(n, 0);
}

/// Ids are kept by the minute they were seen in: never less than the window.
#[test]
fn an_id_is_remembered_for_the_whole_window_to_the_second() {
    let mut engine = Engine::new(Vec::new());
    let n = feed(
        &mut engine,
        &[
            event_at("00:00:59", "a"),
            event_at("00:30:00", "b"),
            event_at("01:00:58", "a"),
        ],
    );
    assert_eq!(n, 1);
}

#[test]
fn duplicates_are_dropped_across_runs_of_this_process() {
    let mut first = Engine::new(Vec::new());
    feed(&mut first, &[event(0, "a"), event(1, "b")]);
    let mut second = Engine::new(Vec::new());
    second.restore_state(engine_state(&first)).unwrap();
    assert_eq!(feed(&mut second, &[event(2, "b"), event(3, "c")]), 1);
}

/// A state written by another process: its ids were hashed with that process's key. They
/// still count as seen, until the window has passed them; the state saved meanwhile keeps
/// them under their own key.
#[test]
fn ids_remembered_by_another_process_still_count_until_the_window_passes() {
    let other = FastState::default();
    let hash = |id: &str| other.hash_one(id);
    let saved = json!({
        "watermark": at(1),
        "recent_key": other.key(),
        "recent": [[at(0), hash("a")], [at(1), hash("b")]],
        "window_ms": 3_600_000,
    });
    // Written before `recent_earlier` existed: still read.
    let mut engine = Engine::new(Vec::new());
    engine
        .restore_state(vec![("engine".into(), saved.clone())])
        .unwrap();
    assert_eq!(feed(&mut engine, &[event(2, "a"), event(3, "new")]), 1);
    // Saved and restored again (a third process): "b" is still known, under the old key.
    let state = engine_state(&engine);
    let earlier = &state[0].1["recent_earlier"];
    assert_eq!(earlier[0]["key"], json!(other.key()), "{earlier}");
    let mut third = Engine::new(Vec::new());
    third.restore_state(state).unwrap();
    assert_eq!(feed(&mut third, &[event(4, "b"), event(5, "new")]), 2);
    // An hour and more after "b" was first seen, the old window is gone and "b" is new.
    assert_eq!(feed(&mut third, &[event(62, "late"), event(63, "b")]), 2);
    let state = engine_state(&third);
    assert_eq!(state[0].1["recent_earlier"], json!([]));
}

#[test]
fn a_damaged_saved_window_is_an_error_not_a_guess() {
    let mut engine = Engine::new(Vec::new());
    let err = engine
        .restore_state(vec![(
            "engine".into(),
            json!({"watermark": null, "recent_key": 1, "recent": [], "recent_earlier": "x"}),
        )])
        .unwrap_err();
    assert!(err.contains("recent_earlier"), "{err}");
}
