#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

fn minimal() -> serde_json::Value {
    serde_json::json!({
        "format": EXPORT_FORMAT,
        "format_version": EXPORT_FORMAT_VERSION,
        "journal_format": 3,
        "exported_at_ms": 0,
        "run": {
            "workflow_id": "w-1",
            "workflow_name": "flow",
            "status": "running",
            "input": "00",
            "run_no": 0,
            "created_at_ms": 0,
            "updated_at_ms": 0
        },
        "events": [],
        "pending_signals": []
    })
}

fn parse(value: &serde_json::Value) -> Result<RunExport, ExportError> {
    RunExport::from_json(serde_json::to_string(value).unwrap().as_bytes())
}

#[test]
fn a_minimal_export_parses() {
    let export = parse(&minimal()).unwrap();
    assert_eq!(export.run.workflow_id, "w-1");
    assert_eq!(export.run.input, vec![0]);
}

#[test]
fn other_versions_and_documents_are_refused_clearly() {
    let mut newer = minimal();
    newer["format_version"] = serde_json::json!(EXPORT_FORMAT_VERSION + 1);
    let error = parse(&newer).unwrap_err();
    assert!(
        matches!(error, ExportError::UnsupportedVersion { found, .. } if found == EXPORT_FORMAT_VERSION + 1)
    );
    assert!(error.to_string().contains("not supported"), "{error}");

    let mut other = minimal();
    other["format"] = serde_json::json!("something-else");
    assert!(matches!(
        parse(&other),
        Err(ExportError::NotAnExport { .. })
    ));
    assert!(matches!(
        RunExport::from_json(b"[1, 2"),
        Err(ExportError::NotAnExport { .. })
    ));
}

#[test]
fn hostile_contents_are_refused() {
    let mut bad_hex = minimal();
    bad_hex["run"]["input"] = serde_json::json!("0g");
    assert!(matches!(
        parse(&bad_hex),
        Err(ExportError::Malformed { .. })
    ));

    let mut long_id = minimal();
    long_id["run"]["workflow_id"] = serde_json::json!("x".repeat(5_000));
    let error = parse(&long_id).unwrap_err();
    assert!(matches!(error, ExportError::Invalid { .. }), "{error}");
    assert!(
        error.to_string().len() < 600,
        "the id is shortened: {error}"
    );

    let mut lying_kind = minimal();
    let body = crate::journal::encode_event_body(&crate::journal::EventBody::TimerFired).unwrap();
    lying_kind["events"] = serde_json::json!([{
        "seq": 1, "step": 1, "kind": 1, "kind_name": "ActivityCompleted",
        "recorded_at_ms": 0, "payload": hex::encode(&body)
    }]);
    assert!(matches!(
        parse(&lying_kind),
        Err(ExportError::Invalid { .. })
    ));

    let mut garbage = minimal();
    garbage["events"] = serde_json::json!([{
        "seq": 1, "step": 1, "kind": 3, "kind_name": "TimerStarted",
        "recorded_at_ms": 0, "payload": "ffffffffffffffffffff"
    }]);
    assert!(matches!(parse(&garbage), Err(ExportError::Invalid { .. })));

    let oversized = vec![b' '; MAX_EXPORT_BYTES + 1];
    assert!(matches!(
        RunExport::from_json(&oversized),
        Err(ExportError::TooLarge { .. })
    ));
}
