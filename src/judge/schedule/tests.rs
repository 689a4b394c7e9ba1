use super::*;
use serde_json::{Value, json};

const T0: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z

fn at(s: f64) -> Timestamp {
    Timestamp::from_millisecond(T0 * 1000 + (s * 1000.0) as i64).unwrap()
}

fn iso(s: i64) -> String {
    Timestamp::from_second(T0 + s).unwrap().to_string()
}

fn backup(records: Value) -> Value {
    json!({
        "apiVersion": "pingcap.com/v1alpha1", "kind": "Backup",
        "metadata": {"name": "lb1", "namespace": "s"},
        "spec": {"backupMode": "log", "backoffRetryPolicy": {"minRetryDuration": "2s"}},
        "status": {"backoffRetryStatus": records},
    })
}

/// The Backup as it shows a waiting retry (LBR-3).
fn waiting(mut b: Value, n: i32, delay: &str) -> Value {
    b["status"]["phase"] = json!("RetryFailed");
    b["status"]["conditions"] = json!([{"type": "RetryFailed", "status": "True",
        "message": format!("any words, attempt {n}/2, after {delay}")}]);
    b
}

fn job(uid: &str, failed: bool) -> Value {
    let conds = if failed {
        json!([{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}])
    } else {
        json!([])
    };
    json!({"metadata": {"name": "backup-lb1-log-start", "uid": uid}, "status": {"conditions": conds}})
}

fn entry(t: f64, kind: Kind, name: &str, object: Value) -> Entry {
    Entry {
        at: at(t),
        received: std::time::Instant::now(),
        kind,
        name: name.into(),
        deleted: false,
        object,
    }
}

fn record(n: i32, detect: i64, expected: i64, real: Option<i64>) -> Value {
    let mut r = json!({"retryNum": n, "detectFailedAt": iso(detect), "expectedRetryAt": iso(expected),
        "retryReason": "Job backup-lb1-log-start has failed", "originalReason": "BackoffLimitExceeded"});
    if let Some(x) = real {
        r["realRetryAt"] = json!(iso(x));
    }
    r
}

/// A story: Job j1 fails at `fail`, the record appears at `rec`, Job j2 appears at
/// `retry`, and the controller claims `real`.
fn story(fail: f64, rec: f64, retry: f64, real: i64) -> (Backup, Vec<Entry>) {
    let job_name = "backup-lb1-log-start";
    let pending = waiting(
        backup(json!([record(1, rec as i64, rec as i64 + 2, None)])),
        1,
        "2s",
    );
    let done = backup(json!([record(1, rec as i64, rec as i64 + 2, Some(real))]));
    let entries = vec![
        entry(0.0, Kind::Job, job_name, job("j1", false)),
        entry(fail, Kind::Job, job_name, job("j1", true)),
        entry(rec, Kind::Backup, "lb1", pending),
        entry(retry, Kind::Job, job_name, job("j2", false)),
        entry(retry + 0.1, Kind::Backup, "lb1", done.clone()),
    ];
    (serde_json::from_value(done).unwrap(), entries)
}

#[test]
fn a_record_seen_just_before_its_jobs_failure_is_no_double_record() {
    // The Backup watch delivered the record 6 ms before the Job watch delivered the
    // failure it records.
    let swapped = |fail: f64| {
        let (b, mut entries) = story(fail, 1.5, 3.8, 3);
        entries.swap(1, 2);
        (b, entries)
    };
    let (b, entries) = swapped(1.506);
    let c = check_schedule(&b, &entries);
    assert!(c.violations.is_empty(), "{}", c.text());
    // Beyond the skew it is one: a record with no failure seen.
    let (b, entries) = swapped(3.0);
    let v = check_schedule(&b, &entries).text();
    assert!(v.contains("no Job failure left to record"), "{v}");
}

#[test]
fn a_punctual_story_passes_with_margins() {
    let (b, entries) = story(1.0, 1.5, 3.8, 3);
    let c = check_schedule(&b, &entries);
    assert!(c.violations.is_empty(), "{}", c.text());
    assert!(
        c.margins.iter().any(|m| m.retry_num == 1
            && m.retry
                .is_some_and(|p| p.on_time() && (p.late_by() - 0.8).abs() < 0.01)),
        "{:?}",
        c.margins
    );
}

#[test]
fn a_late_retry_is_caught_even_when_the_controller_claims_punctuality() {
    // The controller writes realRetryAt = expectedRetryAt but the Job came 6 s late.
    let (b, entries) = story(1.0, 1.5, 9.0, 3);
    let v = check_schedule(&b, &entries).text();
    assert!(v.contains("retry 1 ran 6.0 s after expectedRetryAt"), "{v}");
    assert!(
        v.contains("realRetryAt is -6.0 s from when the harness saw"),
        "{v}"
    );
}

#[test]
fn an_early_retry_and_slow_detection_are_caught() {
    let (b, entries) = story(1.0, 14.0, 15.0, 15);
    let v = check_schedule(&b, &entries).text();
    assert!(
        v.contains("record 1 appeared 13.0 s after the harness saw its Job fail"),
        "{v}"
    );
    assert!(
        v.contains("retry 1 ran 1.0 s before expectedRetryAt"),
        "{v}"
    );
}

#[test]
fn a_retry_that_never_showed_its_wait_is_caught() {
    let (b, mut entries) = story(1.0, 1.5, 3.8, 3);
    // The pending state without RetryFailed, then with a message naming no attempt.
    entries[2].object = backup(json!([record(1, 1, 3, None)]));
    let v = check_schedule(&b, &entries).text();
    assert!(v.contains("never showed phase RetryFailed"), "{v}");
    entries[2].object = waiting(backup(json!([record(1, 1, 3, None)])), 2, "2s");
    let v = check_schedule(&b, &entries).text();
    assert!(v.contains("naming attempt 1/2 and the delay 2s"), "{v}");
}

#[test]
fn a_backdated_detection_and_a_double_record_are_caught() {
    // The Job is seen failed at 8 s but the record says it was detected at 1 s.
    let job_name = "backup-lb1-log-start";
    let backdated = waiting(backup(json!([record(1, 1, 3, None)])), 1, "2s");
    let entries = vec![
        entry(0.0, Kind::Job, job_name, job("j1", false)),
        entry(8.0, Kind::Job, job_name, job("j1", true)),
        entry(8.5, Kind::Backup, "lb1", backdated.clone()),
    ];
    let b: Backup = serde_json::from_value(backdated).unwrap();
    let v = check_schedule(&b, &entries).text();
    assert!(
        v.contains("detectFailedAt is 7.0 s before the harness saw its Job fail"),
        "{v}"
    );
    // A second record of the same (single) failure.
    let twice = waiting(
        backup(json!([record(1, 1, 3, Some(3)), record(2, 4, 8, None)])),
        2,
        "4s",
    );
    let (_, mut entries) = story(1.0, 1.5, 3.8, 3);
    entries.push(entry(4.0, Kind::Backup, "lb1", twice.clone()));
    let b: Backup = serde_json::from_value(twice).unwrap();
    let v = check_schedule(&b, &entries).text();
    assert!(
        v.contains("record 2 appeared with no Job failure left to record"),
        "{v}"
    );
}

#[rstest::rstest]
#[case("waiting 6s (attempt 1/2)", 6, true)]
#[case("retry in 6 seconds", 6, true)]
#[case("Next retry in 5m0s", 300, true)]
#[case("after 300s.", 300, true)]
#[case("after 5m", 300, true)]
#[case("after 60s", 6, false)]
#[case("attempt 6/7", 6, false)]
fn delays_are_recognised_in_any_spelling(
    #[case] message: &str,
    #[case] secs: u64,
    #[case] want: bool,
) {
    assert_eq!(
        mentions(message, Duration::from_secs(secs)),
        want,
        "{message}"
    );
}

#[test]
fn numbering_doubling_and_reasons_are_checked() {
    let b: Backup = serde_json::from_value(backup(json!([
        record(1, 0, 2, None),
        {"retryNum": 1, "detectFailedAt": iso(10), "expectedRetryAt": iso(12),
         "retryReason": "JobFailed", "originalReason": "BackoffLimitExceeded"},
    ])))
    .unwrap();
    let v = check_schedule(&b, &[]).text();
    assert!(v.contains("record 2 has retryNum 1"), "{v}");
    assert!(
        v.contains("expectedRetryAt − detectFailedAt is 2s, the policy gives 4s"),
        "{v}"
    );
    assert!(
        v.contains("record 2: retryReason \"JobFailed\" does not name"),
        "{v}"
    );
}

#[test]
fn original_reason_must_be_the_jobs() {
    let (mut b, mut entries) = story(1.0, 1.5, 3.8, 3);
    let mut wrong = serde_json::to_value(&b).unwrap();
    wrong["status"]["backoffRetryStatus"][0]["originalReason"] = json!("DeadlineExceeded");
    entries.push(entry(4.0, Kind::Backup, "lb1", wrong.clone()));
    b = serde_json::from_value(wrong).unwrap();
    let v = check_schedule(&b, &entries).text();
    assert!(v.contains("originalReason \"DeadlineExceeded\", but the Job's Failed condition says \"BackoffLimitExceeded\""), "{v}");
}

#[test]
fn a_claimed_retry_nobody_saw_is_caught() {
    let job_name = "backup-lb1-log-start";
    let done = backup(json!([record(1, 1, 3, Some(3))]));
    let entries = vec![
        entry(0.0, Kind::Job, job_name, job("j1", true)),
        entry(
            1.2,
            Kind::Backup,
            "lb1",
            waiting(backup(json!([record(1, 1, 3, None)])), 1, "2s"),
        ),
        entry(3.1, Kind::Backup, "lb1", done.clone()),
    ];
    // realRetryAt seen at 3.1 counts as the recovery: consistent, no violation.
    let b: Backup = serde_json::from_value(done).unwrap();
    assert!(check_schedule(&b, &entries).violations.is_empty());
    // The same final state with no trace at all: the claim has no witness.
    let v = check_schedule(&b, &[]).text();
    assert!(
        v.contains("realRetryAt is set but the harness saw no retry"),
        "{v}"
    );
}

#[test]
fn a_failure_run_again_without_a_record_is_caught() {
    let job_name = "backup-lb1-log-start";
    let b = backup(json!([]));
    let entries = vec![
        entry(0.0, Kind::Job, job_name, job("j1", false)),
        entry(1.0, Kind::Job, job_name, job("j1", true)),
        entry(4.0, Kind::Job, job_name, job("j2", false)),
    ];
    let v = check_schedule(&serde_json::from_value(b).unwrap(), &entries).text();
    assert!(
        v.contains("Job backup-lb1-log-start failed") && v.contains("with no record"),
        "{v}"
    );
    // Recorded, the same story passes that check.
    let (b, entries) = story(1.0, 1.5, 3.8, 3);
    let v = check_schedule(&b, &entries).text();
    assert!(!v.contains("with no record"), "{v}");
    // The user changed the spec in between (a new run, e.g. a new truncation): no retry.
    let at_generation = |g: i64| {
        let mut b = backup(json!([]));
        b["metadata"]["generation"] = json!(g);
        b
    };
    let entries = vec![
        entry(0.0, Kind::Backup, "lb1", at_generation(1)),
        entry(0.5, Kind::Job, job_name, job("j1", false)),
        entry(1.0, Kind::Job, job_name, job("j1", true)),
        entry(3.0, Kind::Backup, "lb1", at_generation(2)),
        entry(4.0, Kind::Job, job_name, job("j2", false)),
    ];
    let b = serde_json::from_value(at_generation(2)).unwrap();
    let v = check_schedule(&b, &entries).text();
    assert!(!v.contains("with no record"), "{v}");
}

#[test]
fn lateness_is_excused_by_exactly_the_time_the_controller_was_down() {
    let down = [(at(2.0), at(8.0))];
    // Expected at 3, the controller down until 8, the retry Job at 9: 1 s late.
    let (b, entries) = story(1.0, 1.5, 9.0, 9);
    let c = check_schedule_with(&b, &entries, &down);
    assert!(c.violations.is_empty(), "{}", c.text());
    assert!((c.margins[0].excused - 5.0).abs() < 1e-9);
    assert_eq!(
        check_schedule(&b, &entries).violations[0].rule,
        crate::judge::check::Rule::NotLate
    );
    // Without the downtime it is 6 s late.
    let v = check_schedule(&b, &entries).text();
    assert!(v.contains("retry 1 ran 6.0 s after expectedRetryAt"), "{v}");
    // Down only 2 s of it: 4 s late, named as such.
    let v = check_schedule_with(&b, &entries, &[(at(2.0), at(5.0))]).text();
    assert!(
        v.contains("ran 4.0 s after expectedRetryAt not counting the 2.0 s"),
        "{v}"
    );
    // A controller that copies expectedRetryAt into realRetryAt is held to the Job.
    let (b, entries) = story(1.0, 1.5, 9.0, 3);
    let v = check_schedule_with(&b, &entries, &down).text();
    assert!(
        v.contains("realRetryAt is -6.0 s from when the harness saw the retry"),
        "{v}"
    );
}
