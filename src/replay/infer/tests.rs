use super::*;
use crate::replay::input::{ReportEvent, ReportJob};
use serde_json::json;

fn report(status: serde_json::Value, policy: serde_json::Value) -> Report {
    Report {
        backup: Some((
            "b.yaml".into(),
            json!({"metadata": {"name": "lb1"},
                   "spec": {"backupMode": "log", "backoffRetryPolicy": policy},
                   "status": status}),
        )),
        ..Report::default()
    }
}

#[test]
fn exhaustion_is_read_from_records_and_the_failed_condition() {
    let r = report(
        json!({"phase": "Failed", "backoffRetryStatus": [{"retryNum": 1}, {"retryNum": 2}, {"retryNum": 3}]}),
        json!({"maxRetryTimes": 2, "minRetryDuration": "300s"}),
    );
    let s = situation(&r).unwrap();
    assert_eq!(s.failures, 4);
    assert_eq!(s.succeeded_after, Some(false));
    let y = suite_yaml(&s, "replay-lb1");
    // The contract's verdict, not the report's: exhausted after 2 retries, no record 3.
    assert!(y.contains("recordExists: {backup: lb1, n: 3}"), "{y}");
    assert!(y.contains("RetryStarted, count: 2"), "{y}");
    assert!(y.contains("minRetryDuration: 1000ms"), "{y}");
    // maxRetryTimes ended it (backoffs 300 s + 600 s < 30 m): the timeout keeps room
    // for the attempts' own run time (3 s of backoffs + 4 × 5 s).
    assert!(y.contains("retryTimeout: 23000ms"), "{y}");
}

#[test]
fn a_timeout_that_ended_the_retries_keeps_its_ratio() {
    let s = Situation {
        max_retry_times: Some(5),
        min_retry: Some("60s".into()),
        retry_timeout: Some("5m".into()),
        ..Situation::default()
    };
    // Backoffs of 5 retries: 31 min > 5 m: the timeout governs; scaled 1/60.
    assert_eq!(
        scaled_policy(&s),
        ("1000ms".into(), Some("5000ms".into()), 1.0 / 60.0)
    );
}

#[test]
fn failures_come_from_the_richest_source() {
    let mut r = report(
        json!({}),
        json!({"maxRetryTimes": 3, "minRetryDuration": "1s"}),
    );
    r.events.push(ReportEvent {
        reason: "BackoffLimitExceeded".into(),
        object: "job/backup-lb1-log-start".into(),
        count: 2,
        ..ReportEvent::default()
    });
    r.jobs.push(ReportJob {
        name: "backup-lb1-log-start".into(),
        outcome: "Complete".into(),
        reason: String::new(),
    });
    let s = situation(&r).unwrap();
    assert_eq!(s.failures, 2);
    assert_eq!(s.succeeded_after, Some(true));
    let y = suite_yaml(&s, "x");
    assert!(y.contains("recordRetried: {backup: lb1, n: 2}"), "{y}");
    assert!(
        y.contains("[{action: fail, exitCode: 1}, {action: fail, exitCode: 1}, {action: succeed}]"),
        "{y}"
    );
}

#[test]
fn a_running_kernel_task_means_recovery_without_a_new_job() {
    let mut r = report(
        json!({"backoffRetryStatus": [{"retryNum": 1}]}),
        json!(null),
    );
    r.kernel
        .push(("/tidb/br-stream/info/lb1".into(), "{}".into()));
    r.kernel
        .push(("/tidb/br-stream/info/lb10".into(), "{}".into()));
    let s = situation(&r).unwrap();
    assert!(s.kernel_running);
    assert!(s.unknown.iter().any(|u| u.contains("CRD defaults")));
    let y = suite_yaml(&s, "x");
    assert!(y.contains("kernel: perform"), "{y}");
    assert!(y.contains("jobComplete"), "{y}");
}

#[test]
fn disabled_retries_and_a_timeout_get_their_own_clauses() {
    let r = report(
        json!({"phase": "Failed", "conditions": [{"type": "Failed", "status": "True", "reason": "JobFailed"}]}),
        json!({"maxRetryTimes": 0, "minRetryDuration": "1s"}),
    );
    let s = situation(&r).unwrap();
    assert_eq!(expectation(&s, 0), Expect::Disabled);
    assert!(suite_yaml(&s, "x").contains("LBR-7"));
    let r = report(
        json!({"phase": "Failed", "backoffRetryStatus": [{"retryNum": 1}],
               "conditions": [{"type": "Failed", "status": "True", "reason": "RetryTimeout"}]}),
        json!({"maxRetryTimes": 5, "minRetryDuration": "60s", "retryTimeout": "2m"}),
    );
    let s = situation(&r).unwrap();
    assert_eq!(s.failures, 2);
    assert_eq!(expectation(&s, 5), Expect::Timeout);
    let y = suite_yaml(&s, "x");
    assert!(y.contains("reason: RetryTimeout"), "{y}");
    assert!(
        y.contains("recordExists: {backup: lb1, n: 2}"),
        "no record for the late failure: {y}"
    );
    assert!(
        y.contains("delay: "),
        "the last failure lands past the timeout: {y}"
    );
}

#[test]
fn other_objects_events_and_jobs_are_not_counted() {
    let mut r = report(
        json!({"backoffRetryStatus": [{"retryNum": 1}]}),
        json!({"minRetryDuration": "1s"}),
    );
    for object in ["job/backup-lb2-log-start", "job/backup-lb1-log-start"] {
        r.events.push(ReportEvent {
            reason: "BackoffLimitExceeded".into(),
            object: object.into(),
            count: 3,
            ..ReportEvent::default()
        });
    }
    r.events.push(ReportEvent {
        reason: "RetryExhausted".into(),
        object: "backup/lb2".into(),
        count: 1,
        ..ReportEvent::default()
    });
    r.jobs.push(ReportJob {
        name: "backup-lb2-log-start".into(),
        outcome: "Complete".into(),
        reason: String::new(),
    });
    let s = situation(&r).unwrap();
    assert_eq!(s.failures, 3, "lb1's own BackoffLimitExceeded (x3) only");
    assert_eq!(s.succeeded_after, None, "lb2's Complete Job is not lb1's");
    assert!(
        s.facts
            .iter()
            .any(|f| f.contains("3 event(s)/Job(s) about other objects")),
        "{:?}",
        s.facts
    );
}

#[test]
fn nothing_to_replay_and_snapshot_backups_are_refused() {
    let r = report(json!({}), json!({}));
    assert!(matches!(situation(&r), Err(InferError::NoFailure { .. })));
    let mut r = report(json!({"backoffRetryStatus": [{"retryNum": 1}]}), json!({}));
    if let Some((_, b)) = &mut r.backup {
        b["spec"]["backupMode"] = json!("snapshot");
    }
    assert!(matches!(situation(&r), Err(InferError::NotLog { .. })));
}
