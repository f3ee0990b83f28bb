//! Journals written by earlier versions still decode: the events below are byte-for-byte what the
//! encoding of version 0.2 (before `ActivityError::Failure` and `WorkflowError::Failure` existed)
//! produced. New variants are only ever appended to the journaled enums, so these bytes must keep
//! decoding to the same values.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use super::EventBody;
use crate::error::{ActivityError, WorkflowError};

fn decode(bytes: &[u8]) -> EventBody {
    super::decode_event_body(bytes).unwrap()
}

#[test]
fn an_old_activity_completion_with_an_error_decodes() {
    // ActivityCompleted { name: "charge", input_fingerprint: 7, attempts: 3,
    //                     result: Err(NonRetryable { message: "declined" }) }
    let bytes = [
        0, 6, b'c', b'h', b'a', b'r', b'g', b'e', 7, 3, 1, 1, 8, b'd', b'e', b'c', b'l', b'i',
        b'n', b'e', b'd',
    ];
    let expected = EventBody::ActivityCompleted {
        name: "charge".into(),
        input_fingerprint: 7,
        attempts: 3,
        result: Err(ActivityError::non_retryable("declined")),
    };
    assert_eq!(decode(&bytes), expected);
    assert_eq!(super::encode_event_body(&expected).unwrap(), bytes);
}

#[test]
fn an_old_failed_attempt_with_a_timeout_decodes() {
    // ActivityAttemptFailed { name: "ship", input_fingerprint: 1, attempt: 2,
    //                         error: Timeout { timeout: 10s }, retry_at_ms: 5 }
    let bytes = [1, 4, b's', b'h', b'i', b'p', 1, 2, 2, 10, 0, 10];
    let expected = EventBody::ActivityAttemptFailed {
        name: "ship".into(),
        input_fingerprint: 1,
        attempt: 2,
        error: ActivityError::Timeout {
            timeout: Duration::from_secs(10),
        },
        retry_at_ms: 5,
    };
    assert_eq!(decode(&bytes), expected);
}

#[test]
fn an_old_child_failure_decodes() {
    // RunFinished { workflow_id: "c", result: Err(Application { message: "no" }) }
    let bytes = [9, 1, b'c', 1, 4, 2, b'n', b'o'];
    let expected = EventBody::RunFinished {
        workflow_id: "c".into(),
        result: Err(WorkflowError::failed("no")),
    };
    assert_eq!(decode(&bytes), expected);
}
