use super::*;
use crate::replay::input::kernel::KernelKv;
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
    r.kernel.push(KernelKv {
        key: "/tidb/br-stream/info/lb1".into(),
        value: b"{}".to_vec(),
    });
    r.kernel.push(KernelKv {
        key: "/tidb/br-stream/info/lb10".into(),
        value: b"{}".to_vec(),
    });
    r.kernel_dumps = 1;
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
fn nothing_judged_says_what_the_report_lacks_and_other_modes_are_refused() {
    let r = report(json!({}), json!({}));
    let e = situation(&r).unwrap_err();
    assert!(matches!(e, InferError::NoFailure { .. }));
    let text = e.to_string();
    assert!(
        text.contains("the report lacks the events") && text.contains("etcdctl get --prefix"),
        "{text}"
    );
    let mut r = report(json!({"backoffRetryStatus": [{"retryNum": 1}]}), json!({}));
    if let Some((_, b)) = &mut r.backup {
        b["spec"]["backupMode"] = json!("volume-snapshot");
    }
    assert!(matches!(situation(&r), Err(InferError::NotCovered { .. })));
}

fn kv(key: &str, value: &[u8]) -> KernelKv {
    KernelKv {
        key: key.into(),
        value: value.to_vec(),
    }
}

#[test]
fn a_started_task_gone_from_the_kernel_is_lbr_10_key_not_found() {
    let mut r = report(
        json!({"commitTs": "4711", "phase": "Running", "logSubCommandStatuses": {"log-start": {"phase": "Complete"}}}),
        json!({}),
    );
    // The dump has another task, not this one.
    r.kernel.push(kv("/tidb/br-stream/info/other", b""));
    r.kernel_dumps = 1;
    let s = situation(&r).unwrap();
    assert_eq!(expectation(&s, 2), Expect::KeyNotFound);
    let y = suite_yaml(&s, "replay-lb1");
    assert!(y.contains("kernel: {task: lb1, state: absent}"), "{y}");
    assert!(y.contains("reason: LogBackupKeyNotFound"), "{y}");
    assert!(y.contains("clauses: [LBR-10]"), "{y}");
}

#[rstest::rstest]
#[case(b"".as_slice(), "{kind: v1")]
#[case(br#"{"severity":"ERROR","operation_hostname":"tikv-1"}"#.as_slice(), "{kind: error")]
#[case(br#"{"severity":"MANUAL"}"#.as_slice(), "{kind: manual}")]
fn a_task_paused_in_the_kernel_while_the_spec_says_start_is_lbr_10_sync(
    #[case] pause: &[u8],
    #[case] want: &str,
) {
    let mut r = report(json!({"commitTs": "4711", "phase": "Running"}), json!({}));
    // A real task info always has a value (protobuf): the dump has values.
    r.kernel
        .push(kv("/tidb/br-stream/info/lb1", b"\x22\x03lb1"));
    r.kernel.push(kv("/tidb/br-stream/pause/lb1", pause));
    r.kernel_dumps = 1;
    let s = situation(&r).unwrap();
    assert_eq!(expectation(&s, 2), Expect::KernelPaused);
    let y = suite_yaml(&s, "replay-lb1");
    assert!(y.contains(want), "{y}");
    assert!(y.contains("reason: LogBackupKernelSync"), "{y}");
}

#[test]
fn err_stream_log_task_exist_says_the_task_runs_and_a_retry_recovers() {
    let mut r = report(
        json!({"phase": "RetryFailed", "backoffRetryStatus": [{"retryNum": 1, "originalReason": "BackoffLimitExceeded"}]}),
        json!({"maxRetryTimes": 2, "minRetryDuration": "60s"}),
    );
    r.log_errors.push(
        "E1207 10:00:00.000000 1 backup.go:1] backup ns/lb1 failed: [BR:Stream:ErrStreamLogTaskExist]stream task already exists".into(),
    );
    let s = situation(&r).unwrap();
    assert!(s.kernel_running);
    assert_eq!(expectation(&s, 2), Expect::Recover);
    assert!(
        s.facts.iter().any(|f| f.contains("already exists")),
        "{:?}",
        s.facts
    );
    // br log status alone says the same for a paused task.
    let mut r = report(json!({"commitTs": "1"}), json!({}));
    r.br_status.push(crate::replay::input::text::BrStatus {
        name: "lb1".into(),
        status: "ERROR".into(),
    });
    let s = situation(&r).unwrap();
    assert_eq!(expectation(&s, 2), Expect::KernelPaused);
}

#[test]
fn a_kernel_that_cannot_say_stays_unknown() {
    let started =
        json!({"commitTs": "4711", "logSubCommandStatuses": {"log-start": {"phase": "Complete"}}});
    // A dump of only the checkpoints does not show whether the task exists.
    let mut r = report(started.clone(), json!({}));
    r.kernel
        .push(kv("/tidb/br-stream/checkpoint/lb1/central_global", b""));
    r.kernel_dumps = 1;
    assert!(matches!(situation(&r), Err(InferError::NoFailure { .. })));
    // An empty dump does: no task.
    let mut r = report(started, json!({}));
    r.kernel_dumps = 1;
    assert_eq!(expectation(&situation(&r).unwrap(), 2), Expect::KeyNotFound);
    // Keys only: paused, but how is not said; the assumption is.
    let mut r = report(json!({"commitTs": "1"}), json!({}));
    r.kernel.push(kv("/tidb/br-stream/info/lb1", b""));
    r.kernel.push(kv("/tidb/br-stream/pause/lb1", b""));
    r.kernel_dumps = 1;
    let s = situation(&r).unwrap();
    assert_eq!(s.pause_kind, None);
    assert!(
        s.unknown.iter().any(|u| u.contains("keys only")),
        "{:?}",
        s.unknown
    );
}

#[test]
fn a_pause_after_unrecovered_failures_is_a_retry_story() {
    let mut r = report(
        json!({"phase": "Failed", "conditions": [{"type": "Failed", "status": "True", "reason": "ExceededMaxRetries"}],
               "backoffRetryStatus": [{"retryNum": 1}, {"retryNum": 2}]}),
        json!({"maxRetryTimes": 2, "minRetryDuration": "1s"}),
    );
    r.kernel.push(kv("/tidb/br-stream/info/lb1", b""));
    r.kernel.push(kv("/tidb/br-stream/pause/lb1", b""));
    r.kernel_dumps = 1;
    assert_eq!(expectation(&situation(&r).unwrap(), 2), Expect::Exhaust);
}

#[test]
fn a_snapshot_backup_replays_under_lbr_13() {
    let mut r = report(
        json!({"phase": "Failed", "backoffRetryStatus": [{"retryNum": 1}, {"retryNum": 2}, {"retryNum": 3}]}),
        json!({"maxRetryTimes": 2, "minRetryDuration": "30s"}),
    );
    if let Some((_, b)) = &mut r.backup {
        b["spec"]["backupMode"] = json!("snapshot");
    }
    let s = situation(&r).unwrap();
    assert_eq!(expectation(&s, 2), Expect::SnapshotExhaust);
    let y = suite_yaml(&s, "replay-sb");
    assert!(
        y.contains("mode: snapshot") && y.contains("snapshot: [{action: fail"),
        "{y}"
    );
    assert!(y.contains("reason: AlreadyFailed"), "{y}");
    assert!(y.contains("clauses: [LBR-13]"), "{y}");
}
