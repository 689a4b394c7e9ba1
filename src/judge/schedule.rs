//! The schedule judge (LBR-1, LBR-2, LBR-3): every record of a Backup checked against the
//! contract's arithmetic and against what the harness itself saw happen, from the trace.
//!
//! What the harness sees is the truth; the controller's own timestamps are claims to be
//! checked against it:
//! - detection: the harness first sees the Job `Failed=True` → it first sees the record;
//! - the retry: the harness first sees the next Job of the Backup (a new uid) or, for a
//!   recovery without a Job, the record's `realRetryAt` — against `expectedRetryAt`;
//! - `realRetryAt` must agree with when the retry was seen.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use lbc_api::{BackoffRetryRecord, Backup, BackupConditionType as C, BackupMode, BackupStatus};

use super::contract::{self, DETECT_WITHIN, LATENESS, go_duration};
use super::instant;
use super::predicates::job_failed;
use crate::recorder::{Entry, Kind, State};

/// How much earlier than the harness's first sight of the Job `Failed` a detection may be
/// dated: the entrypoint's own `Failed` status write comes first, and times are whole seconds.
const BACKDATING: Duration = Duration::from_secs(3);

/// How far a controller's persisted time may be from what the harness saw: metav1.Time
/// keeps whole seconds, and the watch delivers a little later.
const AGREEMENT: Duration = Duration::from_secs(2);
/// Watches of different kinds are not ordered with each other: the record can reach the
/// harness a few milliseconds before the Job failure it records (seen: 6 ms). A failure
/// first seen this soon after an unmatched record is that record's.
const WATCH_SKEW: Duration = Duration::from_secs(1);

/// The schedule judge's findings for one Backup.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScheduleCheck {
    pub violations: Vec<String>,
    /// Measured figures, e.g. "retry 2 seen +0.41 s after expectedRetryAt".
    pub margins: Vec<String>,
}

/// One record as the harness saw it come and go.
#[derive(Debug, Clone)]
struct SeenRecord {
    record: BackoffRetryRecord,
    /// When the record first appeared.
    appeared: Timestamp,
    /// The failed Job (name, when first seen failed, reason) it most likely records.
    failure: Option<(String, Timestamp, String)>,
    /// When the harness first saw a new Job of the same name (the retry's Job).
    job_retry: Option<Timestamp>,
    /// When the harness first saw `realRetryAt` set.
    real_seen: Option<Timestamp>,
    /// Job uids present when the record appeared: a Job not among them is the retry.
    jobs_then: Vec<String>,
    /// While it waited, the Backup showed `RetryFailed` with a message naming the attempt
    /// (`n/M`) and the delay (LBR-3).
    showed_waiting: bool,
}

impl SeenRecord {
    /// When the retry was seen: its new Job; only without one (a kernel recovery) the
    /// `realRetryAt` claim — a Job created late cannot hide behind a punctual claim.
    fn retried(&self) -> Option<Timestamp> {
        self.job_retry.or(self.real_seen)
    }

    /// (when the record appeared, when its Job was seen failed), if a failure was seen.
    fn detection(&self) -> Option<(Timestamp, Timestamp)> {
        self.failure.as_ref().map(|f| (self.appeared, f.1))
    }
}

fn secs(a: Timestamp, b: Timestamp) -> f64 {
    a.duration_since(b).as_secs_f64()
}

/// Whether `job` is one of `backup`'s Jobs (by the protocol's name, `backup-<name>[-sub]`).
fn job_of(job_name: &str, backup: &str) -> bool {
    lbc_api::names::job_subcommand(backup, job_name).is_some()
}

/// Walk the trace for the Backup named `actual` and collect what was seen of its records.
fn observe(entries: &[Entry], actual: &str, policy: &contract::Policy) -> Vec<SeenRecord> {
    let mut state = State::default();
    let mut seen: Vec<SeenRecord> = Vec::new();
    // Job uid → (name, first seen failed, reason), not yet attributed to a record.
    let mut failures: BTreeMap<String, (String, Timestamp, String)> = BTreeMap::new();
    let mut attributed: Vec<String> = Vec::new();
    for e in entries {
        state.apply(e);
        match e.kind {
            Kind::Job if !e.deleted && job_of(&e.name, actual) => {
                let Some(job) = state.jobs.get(&e.name) else {
                    continue;
                };
                let uid = job.metadata.uid.clone().unwrap_or_default();
                if let Some(reason) = job_failed(job)
                    && !attributed.contains(&uid)
                    && !failures.contains_key(&uid)
                {
                    let early = seen.iter_mut().rev().find(|r| {
                        r.failure.is_none()
                            && secs(e.at, r.appeared) <= WATCH_SKEW.as_secs_f64()
                            && r.record
                                .retry_reason
                                .as_deref()
                                .is_none_or(|x| x.contains(&e.name))
                    });
                    match early {
                        Some(r) => {
                            r.failure = Some((e.name.clone(), e.at, reason));
                            attributed.push(uid.clone());
                        }
                        None => {
                            failures.insert(uid.clone(), (e.name.clone(), e.at, reason));
                        }
                    }
                }
                // The retry is a new Job for the same subcommand (the same Job name); a
                // Job of another subcommand is a new budget, not this record's retry.
                for r in seen.iter_mut().filter(|r| r.job_retry.is_none()) {
                    let same = r.failure.as_ref().is_none_or(|f| f.0 == e.name);
                    if same && !r.jobs_then.contains(&uid) {
                        r.job_retry = Some(e.at);
                    }
                }
            }
            Kind::Backup if !e.deleted && e.name == actual => {
                let Some(b) = state.backups.get(actual) else {
                    continue;
                };
                let status = b.status.clone().unwrap_or_default();
                let records = status.backoff_retry_status.clone();
                for r in records {
                    let known = seen.iter_mut().rev().find(|s| {
                        s.record.retry_num == r.retry_num
                            && s.record.detect_failed_at == r.detect_failed_at
                    });
                    match known {
                        Some(s) => {
                            if s.real_seen.is_none() && r.real_retry_at.is_some() {
                                s.real_seen = Some(e.at);
                            }
                            s.record = r;
                        }
                        None => {
                            // The failure of the Job the record names, else the most recent
                            // unattributed one.
                            let named = |f: &(String, Timestamp, String)| {
                                r.retry_reason.as_deref().is_some_and(|x| x.contains(&f.0))
                            };
                            let failure = failures
                                .iter()
                                .max_by_key(|(_, f)| (named(f), f.1))
                                .map(|(uid, f)| (uid.clone(), f.clone()));
                            if let Some((uid, _)) = &failure {
                                failures.remove(uid);
                                attributed.push(uid.clone());
                            }
                            let jobs_then = state
                                .jobs
                                .iter()
                                .filter(|(n, _)| job_of(n, actual))
                                .filter_map(|(_, j)| j.metadata.uid.clone())
                                .collect();
                            let real_seen = r.real_retry_at.as_ref().map(|_| e.at);
                            seen.push(SeenRecord {
                                record: r,
                                appeared: e.at,
                                failure: failure.map(|(_, f)| f),
                                job_retry: None,
                                real_seen,
                                jobs_then,
                                showed_waiting: false,
                            });
                        }
                    }
                }
                for r in seen
                    .iter_mut()
                    .filter(|r| r.retried().is_none() && !r.showed_waiting)
                {
                    r.showed_waiting = shows_waiting(&status, r.record.retry_num, policy);
                }
            }
            _ => {}
        }
    }
    seen
}

/// Whether `message` states the delay `d` in any common spelling: a Go duration (`6s`,
/// `1m30s`, `5m0s`, `1.5s`) or a number of seconds (`6 s`, `6 seconds`, `300s`).
fn mentions(message: &str, d: Duration) -> bool {
    let words: Vec<&str> = message
        .split(|c: char| !(c.is_alphanumeric() || c == '.'))
        .filter(|w| !w.is_empty())
        .collect();
    let secs = d.as_secs_f64();
    words.iter().enumerate().any(|(i, w)| {
        let w = w.trim_end_matches('.');
        go_duration(w).is_ok_and(|x| x == d)
            || (w.parse::<f64>().is_ok_and(|x| (x - secs).abs() < 1e-9)
                && words
                    .get(i + 1)
                    .is_some_and(|u| matches!(*u, "s" | "sec" | "secs" | "second" | "seconds")))
    })
}

/// LBR-3: the phase (whole or of a subcommand) is `RetryFailed` and a `RetryFailed`
/// condition's message names attempt `n/M` and the delay.
fn shows_waiting(status: &BackupStatus, n: i32, policy: &contract::Policy) -> bool {
    let phase = status.phase == Some(C::RetryFailed)
        || status
            .log_sub_command_statuses
            .values()
            .any(|s| s.phase == Some(C::RetryFailed));
    let delay = u32::try_from(n)
        .ok()
        .and_then(|n| contract::delay(policy.min_retry_duration, n));
    let attempt = format!("{n}/{}", policy.max_retry_times);
    let names = |m: &str| m.contains(&attempt) && delay.is_some_and(|d| mentions(m, d));
    let conditions = status.conditions.iter().chain(
        status
            .log_sub_command_statuses
            .values()
            .flat_map(|s| s.conditions.iter()),
    );
    phase
        && conditions
            .filter(|c| c.type_ == C::RetryFailed && c.status == "True")
            .any(|c| c.message.as_deref().is_some_and(names))
}

/// Check LBR-1/2/3 for `backup` (its final state) over the recorded `entries`.
pub fn check_schedule(backup: &Backup, entries: &[Entry]) -> ScheduleCheck {
    let mut out = ScheduleCheck::default();
    let actual = backup.metadata.name.clone().unwrap_or_default();
    let Ok(policy) = contract::policy(&backup.spec.backoff_retry_policy) else {
        return out;
    };
    let log = backup.spec.backup_mode == BackupMode::Log;
    let observed = observe(entries, &actual, &policy);
    let by_identity: HashMap<(i32, Option<Timestamp>), &SeenRecord> = observed
        .iter()
        .map(|s| ((s.record.retry_num, instant(&s.record.detect_failed_at)), s))
        .collect();
    let records = backup
        .status
        .clone()
        .unwrap_or_default()
        .backoff_retry_status;
    for (i, r) in records.iter().enumerate() {
        // Positions, not retryNum: a wrong retryNum must not excuse a wrong delay.
        let n = i as u32 + 1;
        if r.retry_num != n as i32 {
            out.violations.push(format!(
                "record {n} has retryNum {}, expected {n} (numbering starts at 1 and rises by 1)",
                r.retry_num
            ));
        }
        let (Some(detect), Some(expected)) =
            (instant(&r.detect_failed_at), instant(&r.expected_retry_at))
        else {
            out.violations.push(format!(
                "record {n} lacks detectFailedAt or expectedRetryAt"
            ));
            continue;
        };
        if let Some(want) = contract::delay(policy.min_retry_duration, n) {
            let got = expected.duration_since(detect).as_secs_f64();
            // Both times are whole seconds of one instant: exact for whole-second delays.
            let slack = if want.subsec_nanos() == 0 { 0.0 } else { 1.0 };
            if (got - want.as_secs_f64()).abs() > slack {
                out.violations.push(format!(
                    "record {n}: expectedRetryAt − detectFailedAt is {got}s, the policy gives {} (minRetryDuration {} × 2^{})",
                    contract::show(want),
                    contract::show(policy.min_retry_duration),
                    n - 1
                ));
            }
        }
        let seen = by_identity.get(&(r.retry_num, Some(detect)));
        if log {
            match seen.and_then(|s| s.failure.as_ref()) {
                Some((job, _, reason)) => {
                    if !r
                        .retry_reason
                        .as_deref()
                        .is_some_and(|x| x.contains(job.as_str()))
                    {
                        out.violations.push(format!(
                            "record {n}: retryReason {:?} does not name the failed Job {job}",
                            r.retry_reason.as_deref().unwrap_or_default()
                        ));
                    }
                    if r.original_reason.as_deref() != Some(reason.as_str()) {
                        out.violations.push(format!(
                            "record {n}: originalReason {:?}, but the Job's Failed condition says {reason:?}",
                            r.original_reason.as_deref().unwrap_or_default()
                        ));
                    }
                }
                None if !r
                    .retry_reason
                    .as_deref()
                    .is_some_and(|x| lbc_api::names::names_job_of(x, &actual)) =>
                {
                    out.violations.push(format!(
                        "record {n}: retryReason {:?} does not name the failed Job",
                        r.retry_reason.as_deref().unwrap_or_default()
                    ));
                }
                None => {}
            }
        }
        if log
            && let Some(s) = seen
            && !s.showed_waiting
            && s.retried().is_some()
        {
            out.violations.push(format!(
                "while retry {n} waited, the backup never showed phase RetryFailed with a RetryFailed message naming attempt {n}/{} and the delay {}",
                policy.max_retry_times,
                contract::delay(policy.min_retry_duration, n).map_or("?".into(), contract::show)
            ));
        }
        if log && seen.is_some_and(|s| s.failure.is_none()) {
            out.violations.push(format!(
                "record {n} appeared with no Job failure left to record (a failure recorded twice?)"
            ));
        }
        if let (Some((_, failed_at)), Some(detect)) = (
            seen.and_then(|s| s.detection()),
            instant(&r.detect_failed_at),
        ) && secs(failed_at, detect) > BACKDATING.as_secs_f64()
        {
            out.violations.push(format!(
                "record {n}: detectFailedAt is {:.1} s before the harness saw its Job fail (a backdated detection shortens the backoff)",
                secs(failed_at, detect)
            ));
        }
        if let Some((appeared, failed_at)) = seen.and_then(|s| s.detection()) {
            let latency = secs(appeared, failed_at);
            out.margins.push(format!(
                "record {n} seen {latency:.2} s after its Job failed"
            ));
            if latency > DETECT_WITHIN.as_secs_f64() {
                out.violations.push(format!(
                    "record {n} appeared {latency:.1} s after the harness saw its Job fail (LBR-1 bound {}s)",
                    DETECT_WITHIN.as_secs()
                ));
            }
        }
        // LBR-13: a snapshot backup keeps the operator's algorithm; only its numbering and
        // delays are judged here.
        if !log {
            continue;
        }
        match (seen.and_then(|s| s.retried()), instant(&r.real_retry_at)) {
            (Some(at), real) => {
                let late = secs(at, expected);
                out.margins
                    .push(format!("retry {n} seen {late:+.2} s after expectedRetryAt"));
                if late < 0.0 {
                    out.violations.push(format!(
                        "retry {n} ran {:.1} s before expectedRetryAt (seen by the harness)",
                        -late
                    ));
                } else if late > LATENESS.as_secs_f64() {
                    out.violations.push(format!(
                        "retry {n} ran {late:.1} s after expectedRetryAt, seen by the harness (LBR-3 bound {}s)",
                        LATENESS.as_secs()
                    ));
                }
                match real {
                    Some(real) if secs(real, at).abs() > AGREEMENT.as_secs_f64() => {
                        out.violations.push(format!(
                            "record {n}: realRetryAt is {:+.1} s from when the harness saw the retry",
                            secs(real, at)
                        ));
                    }
                    None => out.violations.push(format!(
                        "retry {n} ran (seen by the harness) but realRetryAt was never set"
                    )),
                    _ => {}
                }
            }
            (None, Some(_)) => out.violations.push(format!(
                "record {n}: realRetryAt is set but the harness saw no retry"
            )),
            (None, None) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
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
        assert_eq!(c.violations, Vec::<String>::new());
        // Beyond the skew it is one: a record with no failure seen.
        let (b, entries) = swapped(3.0);
        let v = check_schedule(&b, &entries).violations.join("\n");
        assert!(v.contains("no Job failure left to record"), "{v}");
    }

    #[test]
    fn a_punctual_story_passes_with_margins() {
        let (b, entries) = story(1.0, 1.5, 3.8, 3);
        let c = check_schedule(&b, &entries);
        assert_eq!(c.violations, Vec::<String>::new());
        assert!(
            c.margins.iter().any(|m| m.contains("retry 1 seen +0.80 s")),
            "{:?}",
            c.margins
        );
    }

    #[test]
    fn a_late_retry_is_caught_even_when_the_controller_claims_punctuality() {
        // The controller writes realRetryAt = expectedRetryAt but the Job came 6 s late.
        let (b, entries) = story(1.0, 1.5, 9.0, 3);
        let v = check_schedule(&b, &entries).violations.join("\n");
        assert!(v.contains("retry 1 ran 6.0 s after expectedRetryAt"), "{v}");
        assert!(
            v.contains("realRetryAt is -6.0 s from when the harness saw"),
            "{v}"
        );
    }

    #[test]
    fn an_early_retry_and_slow_detection_are_caught() {
        let (b, entries) = story(1.0, 14.0, 15.0, 15);
        let v = check_schedule(&b, &entries).violations.join("\n");
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
        let v = check_schedule(&b, &entries).violations.join("\n");
        assert!(v.contains("never showed phase RetryFailed"), "{v}");
        entries[2].object = waiting(backup(json!([record(1, 1, 3, None)])), 2, "2s");
        let v = check_schedule(&b, &entries).violations.join("\n");
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
        let v = check_schedule(&b, &entries).violations.join("\n");
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
        let v = check_schedule(&b, &entries).violations.join("\n");
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
        let v = check_schedule(&b, &[]).violations.join("\n");
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
        let v = check_schedule(&b, &entries).violations.join("\n");
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
        assert_eq!(
            check_schedule(&b, &entries).violations,
            Vec::<String>::new()
        );
        // The same final state with no trace at all: the claim has no witness.
        let v = check_schedule(&b, &[]).violations.join("\n");
        assert!(
            v.contains("realRetryAt is set but the harness saw no retry"),
            "{v}"
        );
    }
}
