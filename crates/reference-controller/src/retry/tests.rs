use super::*;
use lbc_api::BackupCondition;
use proptest::prelude::*;
use rstest::rstest;

fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).unwrap()
}

fn policy(min_s: u64, max: u32, timeout_s: u64) -> RetryPolicy {
    RetryPolicy {
        min_retry_duration: Duration::from_secs(min_s),
        max_retry_times: max,
        retry_timeout: Duration::from_secs(timeout_s),
    }
}

fn failure() -> DetectedFailure {
    DetectedFailure {
        retry_reason: retry_reason("backup-lb1-log-start"),
        original_reason: "BackoffLimitExceeded".into(),
    }
}

/// Simulate `n` failures, each retried on time, starting at `start`.
fn records_after(p: &RetryPolicy, n: usize, start: i64) -> Vec<BackoffRetryRecord> {
    let mut records: Vec<BackoffRetryRecord> = Vec::new();
    let mut now = t(start);
    for _ in 0..n {
        match decide_on_failure(p, &records, &failure(), now) {
            FailureDecision::Retry {
                mut record, delay, ..
            } => {
                now = add_saturating(now, delay);
                record.real_retry_at = Some(Time(now));
                records.push(record);
                now = add_saturating(now, Duration::from_secs(1));
            }
            other => panic!("expected a retry, got {other:?}"),
        }
    }
    records
}

#[rstest]
#[case(Some("300s"), Some(2), Some("30m"), Ok((300, 2, 1800)))]
#[case(None, None, None, Ok((300, 2, 1800)))]
#[case(Some("1m30s"), Some(0), Some("1h"), Ok((90, 0, 3600)))]
#[case(Some("30s"), Some(-3), None, Ok((30, 0, 1800)))]
#[case(
    Some("abc"),
    Some(2),
    None,
    Err("spec.backoffRetryPolicy.minRetryDuration: invalid duration \"abc\" (value \"abc\")")
)]
#[case(
    Some("30s"),
    Some(2),
    Some("5d"),
    Err(
        "spec.backoffRetryPolicy.retryTimeout: unknown unit \"d\" in duration \"5d\" (value \"5d\")"
    )
)]
#[case(
    Some(""),
    None,
    None,
    Err("spec.backoffRetryPolicy.minRetryDuration: empty duration (value \"\")")
)]
fn resolves_the_policy(
    #[case] min: Option<&str>,
    #[case] max: Option<i32>,
    #[case] timeout: Option<&str>,
    #[case] expected: Result<(u64, u32, u64), &str>,
) {
    let p = BackoffRetryPolicy {
        min_retry_duration: min.map(Into::into),
        max_retry_times: max,
        retry_timeout: timeout.map(Into::into),
    };
    let got = resolve_policy(&p)
        .map(|r| {
            (
                r.min_retry_duration.as_secs(),
                r.max_retry_times,
                r.retry_timeout.as_secs(),
            )
        })
        .map_err(|e| e.to_string());
    assert_eq!(got, expected.map_err(String::from));
}

#[rstest]
#[case(1, 30)]
#[case(2, 60)]
#[case(3, 120)]
#[case(5, 480)]
#[case(0, 30)]
fn backoff_doubles(#[case] n: u32, #[case] secs: u64) {
    assert_eq!(
        backoff(Duration::from_secs(30), n),
        Duration::from_secs(secs)
    );
}

#[rstest]
#[case(64)]
#[case(65)]
#[case(200)]
#[case(u32::MAX)]
fn backoff_saturates_instead_of_overflowing(#[case] n: u32) {
    assert_eq!(backoff(Duration::from_secs(300), n), Duration::MAX);
    assert_eq!(
        add_saturating(t(0), backoff(Duration::from_secs(300), n)),
        Timestamp::MAX
    );
    assert_eq!(backoff(Duration::ZERO, n), Duration::ZERO);
}

#[test]
fn first_failure_appends_record_one() {
    let d = decide_on_failure(&policy(30, 2, 1800), &[], &failure(), t(0));
    let FailureDecision::Retry {
        record,
        delay,
        message,
    } = d
    else {
        panic!("{d:?}")
    };
    assert_eq!(record.retry_num, 1);
    assert_eq!(record.detect_failed_at, Some(Time(t(0))));
    assert_eq!(record.expected_retry_at, Some(Time(t(30))));
    assert_eq!(record.real_retry_at, None);
    assert_eq!(
        record.retry_reason.as_deref(),
        Some("Job backup-lb1-log-start has failed")
    );
    assert_eq!(
        record.original_reason.as_deref(),
        Some("BackoffLimitExceeded")
    );
    assert_eq!(delay, Duration::from_secs(30));
    assert!(message.contains("attempt 1/2"), "{message}");
    assert!(message.contains("after 30s"), "{message}");
}

#[rstest]
#[case::below_max(1, 2, true)]
#[case::exactly_max(2, 2, false)]
#[case::above_max(3, 2, false)]
#[case::max_one(1, 1, false)]
fn at_most_max_retries(#[case] done: usize, #[case] max: u32, #[case] retries: bool) {
    let p = policy(1, max.max(done as u32), 1_000_000);
    let records = records_after(&p, done, 0);
    let p = policy(1, max, 1_000_000);
    let d = decide_on_failure(&p, &records, &failure(), t(10_000));
    match d {
        FailureDecision::Retry { .. } => assert!(retries),
        FailureDecision::Exhausted {
            reason,
            ref message,
        } => {
            assert!(!retries);
            assert_eq!(reason, ExhaustReason::ExceededMaxRetries);
            assert!(
                message.contains(&format!("Failed after {done} retries")),
                "{message}"
            );
            assert!(message.contains("BackoffLimitExceeded"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn zero_max_disables_retry() {
    let d = decide_on_failure(&policy(30, 0, 1800), &[], &failure(), t(0));
    let FailureDecision::Disabled { message } = d else {
        panic!("{d:?}")
    };
    assert!(message.contains("Job backup-lb1-log-start has failed (BackoffLimitExceeded)"));
    assert!(message.contains("maxRetryTimes: 0"));
}

#[rstest]
#[case::just_inside(100, true)]
#[case::exactly_at_timeout(101, true)]
#[case::one_second_past(102, false)]
fn timeout_is_measured_from_the_first_detection(#[case] now: i64, #[case] retries: bool) {
    // First detection at t(1); timeout 100 s: strictly more than 100 s exhausts.
    let p = policy(1, 10, 100);
    let records = records_after(&p, 1, 1);
    let d = decide_on_failure(&p, &records, &failure(), t(now));
    match d {
        FailureDecision::Retry { .. } => assert!(retries),
        FailureDecision::Exhausted { reason, message } => {
            assert!(!retries);
            assert_eq!(reason, ExhaustReason::RetryTimeout);
            assert!(message.contains("exceeds retryTimeout 1m40s"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn no_timeout_check_without_records() {
    let d = decide_on_failure(&policy(1, 2, 0), &[], &failure(), t(0));
    assert!(matches!(d, FailureDecision::Retry { .. }), "{d:?}");
}

#[test]
fn pending_and_due() {
    let p = policy(30, 2, 1800);
    let FailureDecision::Retry { record, .. } = decide_on_failure(&p, &[], &failure(), t(0)) else {
        panic!()
    };
    let records = vec![record];
    let r = pending(&records).unwrap();
    assert_eq!(until_due(r, t(10)), Duration::from_secs(20));
    assert_eq!(until_due(r, t(30)), Duration::ZERO);
    assert_eq!(until_due(r, t(31)), Duration::ZERO);
    let done = records_after(&p, 1, 0);
    assert!(pending(&done).is_none());
}

fn complete_at(secs: i64) -> LogSubCommandStatus {
    LogSubCommandStatus {
        conditions: vec![BackupCondition {
            type_: BackupConditionType::Complete,
            status: "True".into(),
            last_transition_time: Some(Time(t(secs))),
            reason: None,
            message: None,
            command: None,
        }],
        ..LogSubCommandStatus::default()
    }
}

#[rstest]
#[case::same_sub_running(LogSubcommand::Start, None, 1)]
#[case::other_sub(LogSubcommand::Stop, None, 0)]
#[case::completed_after_the_failure(LogSubcommand::Start, Some(500), 0)]
#[case::completed_before_the_failure(LogSubcommand::Start, Some(-5), 1)]
fn budget_belongs_to_one_run_of_one_subcommand(
    #[case] sub: LogSubcommand,
    #[case] completed: Option<i64>,
    #[case] live: usize,
) {
    let records = records_after(&policy(30, 2, 1800), 1, 0);
    let status = completed.map(complete_at);
    assert_eq!(
        live_records(&records, "lb1", sub, status.as_ref()).len(),
        live
    );
}

#[rstest]
#[case(
    "Job backup-lb1-log-start has failed",
    "lb1",
    Some(LogSubcommand::Start)
)]
#[case(
    "Job backup-lb1-log-pause has failed",
    "lb1",
    Some(LogSubcommand::Pause)
)]
#[case("Job backup-lb10-log-start has failed", "lb1", None)]
#[case("Job backup-a-b-log-stop has failed", "a-b", Some(LogSubcommand::Stop))]
#[case("something else", "lb1", None)]
fn record_subcommand_reads_the_job_name(
    #[case] reason: &str,
    #[case] name: &str,
    #[case] sub: Option<LogSubcommand>,
) {
    let r = BackoffRetryRecord {
        retry_num: 1,
        detect_failed_at: None,
        expected_retry_at: None,
        real_retry_at: None,
        retry_reason: Some(reason.into()),
        original_reason: None,
    };
    assert_eq!(record_subcommand(&r, name), sub);
}

proptest! {
    /// Records never exceed M; retryNum rises by exactly 1; each delay doubles.
    #[test]
    fn schedule_invariants(min_s in 1u64..600, max in 0u32..12, gaps in prop::collection::vec(0i64..50, 0..20)) {
        let p = policy(min_s, max, u64::MAX / 4);
        let mut records: Vec<BackoffRetryRecord> = Vec::new();
        let mut now = t(0);
        for gap in gaps {
            match decide_on_failure(&p, &records, &failure(), now) {
                FailureDecision::Retry { mut record, delay, .. } => {
                    let n = records.len() as i32 + 1;
                    prop_assert_eq!(record.retry_num, n);
                    let detect = record.detect_failed_at.clone().unwrap().0;
                    let expected = record.expected_retry_at.clone().unwrap().0;
                    let gap_s = expected.duration_since(detect).as_secs();
                    prop_assert_eq!(gap_s as u64, min_s << (n - 1));
                    if let Some(prev) = records.last() {
                        let pd = prev.expected_retry_at.clone().unwrap().0
                            .duration_since(prev.detect_failed_at.clone().unwrap().0).as_secs();
                        prop_assert_eq!(gap_s, pd * 2);
                    }
                    now = add_saturating(now, delay);
                    record.real_retry_at = Some(Time(now));
                    records.push(record);
                    now = add_saturating(now, Duration::from_secs(gap as u64));
                }
                FailureDecision::Disabled { .. } => prop_assert_eq!(max, 0),
                FailureDecision::Exhausted { reason, .. } => {
                    prop_assert_eq!(reason, ExhaustReason::ExceededMaxRetries);
                    prop_assert_eq!(records.len(), max as usize);
                }
            }
            prop_assert!(records.len() <= max as usize);
        }
    }
}
