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

use super::check::{Finding, Rule};
use super::contract::{self, DETECT_WITHIN, go_duration};
use super::instant;
use super::margin::{Punctuality, RecordMargin};
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
    pub violations: Vec<Finding>,
    /// What the harness measured of each record (detection lag, the retry's lateness).
    pub margins: Vec<RecordMargin>,
}

impl ScheduleCheck {
    /// The violations' messages, one per line.
    pub fn text(&self) -> String {
        self.violations
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    }
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

/// A Job failure the controller ran again (a new Job of the same name) with no record of it.
#[derive(Debug, Clone)]
struct Unrecorded {
    uid: String,
    job: String,
    failed: Timestamp,
    rerun: Timestamp,
}

/// The unattributed failures of Job `e` that its new uid `uid` runs again (each must be
/// recorded by the end; a record may trail by a watch's skew) — under the same spec
/// (`generation`): after the user changed the spec (a new truncation, a switch back), a
/// new run is not a retry of the old failure.
fn reruns_of(
    failures: &BTreeMap<String, (String, Timestamp, String)>,
    generations: &HashMap<String, Option<i64>>,
    generation: Option<i64>,
    uid: &str,
    e: &Entry,
) -> Vec<Unrecorded> {
    failures
        .iter()
        .filter(|(u, f)| *u != uid && f.0 == e.name)
        .filter(|(u, _)| generations.get(*u).copied().flatten() == generation)
        .map(|(u, f)| Unrecorded {
            uid: u.clone(),
            job: f.0.clone(),
            failed: f.1,
            rerun: e.at,
        })
        .collect()
}

/// A record seen just before the failure of Job `e` it records (watches of different kinds
/// are not ordered with each other).
fn early_record<'a>(seen: &'a mut [SeenRecord], e: &Entry) -> Option<&'a mut SeenRecord> {
    seen.iter_mut().rev().find(|r| {
        r.failure.is_none()
            && secs(e.at, r.appeared) <= WATCH_SKEW.as_secs_f64()
            && r.record
                .retry_reason
                .as_deref()
                .is_none_or(|x| x.contains(&e.name))
    })
}

/// Walk the trace for the Backup named `actual` and collect what was seen of its records,
/// and the failures that were run again without one.
fn observe(
    entries: &[Entry],
    actual: &str,
    policy: &contract::Policy,
) -> (Vec<SeenRecord>, Vec<Unrecorded>) {
    let mut state = State::default();
    let mut seen: Vec<SeenRecord> = Vec::new();
    let mut reruns: Vec<Unrecorded> = Vec::new();
    let mut uids: Vec<String> = Vec::new();
    // Job uid → (name, first seen failed, reason), not yet attributed to a record.
    let mut failures: BTreeMap<String, (String, Timestamp, String)> = BTreeMap::new();
    // Job uid → the Backup's generation when the harness saw that Job fail.
    let mut generations: HashMap<String, Option<i64>> = HashMap::new();
    let mut attributed: Vec<String> = Vec::new();
    for e in entries {
        state.apply(e);
        match e.kind {
            Kind::Job if !e.deleted && job_of(&e.name, actual) => {
                let Some(job) = state.jobs.get(&e.name) else {
                    continue;
                };
                let uid = job.metadata.uid.clone().unwrap_or_default();
                let generation = state
                    .backups
                    .get(actual)
                    .and_then(|b| b.metadata.generation);
                if !uids.contains(&uid) {
                    uids.push(uid.clone());
                    reruns.extend(reruns_of(&failures, &generations, generation, &uid, e));
                }
                if let Some(reason) = job_failed(job)
                    && !attributed.contains(&uid)
                    && !failures.contains_key(&uid)
                {
                    match early_record(&mut seen, e) {
                        Some(r) => {
                            r.failure = Some((e.name.clone(), e.at, reason));
                            attributed.push(uid.clone());
                        }
                        None => {
                            generations.insert(uid.clone(), generation);
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
    reruns.retain(|r| !attributed.contains(&r.uid));
    reruns.sort_by(|a, b| a.uid.cmp(&b.uid));
    reruns.dedup_by(|a, b| a.uid == b.uid);
    (seen, reruns)
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
    check_schedule_with(backup, entries, &[])
}

/// [`check_schedule`], knowing when the harness had the controller down (`down`: stopped or
/// killed, until started again): a retry's lateness is excused by exactly the time the
/// controller was down after `expectedRetryAt` — and only that.
pub fn check_schedule_with(
    backup: &Backup,
    entries: &[Entry],
    down: &[(Timestamp, Timestamp)],
) -> ScheduleCheck {
    let mut out = ScheduleCheck::default();
    let actual = backup.metadata.name.clone().unwrap_or_default();
    let Ok(policy) = contract::policy(&backup.spec.backoff_retry_policy) else {
        return out;
    };
    let log = backup.spec.backup_mode == BackupMode::Log;
    let (observed, unrecorded) = observe(entries, &actual, &policy);
    if log {
        for u in &unrecorded {
            out.violations.push(Finding::new(Rule::RecordedRerun, format!(
                "Job {} failed ({}) and was run again ({}) with no record of the failure (LBR-2: each retried failure appends one record)",
                u.job, u.failed, u.rerun
            )));
        }
    }
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
            out.violations.push(Finding::new(Rule::RetryNum, format!(
                "record {n} has retryNum {}, expected {n} (numbering starts at 1 and rises by 1)",
                r.retry_num
            )));
        }
        let (Some(detect), Some(expected)) =
            (instant(&r.detect_failed_at), instant(&r.expected_retry_at))
        else {
            out.violations.push(Finding::new(
                Rule::RecordTimes,
                format!("record {n} lacks detectFailedAt or expectedRetryAt"),
            ));
            continue;
        };
        if let Some(want) = contract::delay(policy.min_retry_duration, n) {
            let got = expected.duration_since(detect).as_secs_f64();
            // Both times are whole seconds of one instant: exact for whole-second delays.
            let slack = if want.subsec_nanos() == 0 { 0.0 } else { 1.0 };
            if (got - want.as_secs_f64()).abs() > slack {
                out.violations.push(Finding::new(Rule::Delay, format!(
                    "record {n}: expectedRetryAt − detectFailedAt is {got}s, the policy gives {} (minRetryDuration {} × 2^{})",
                    contract::show(want),
                    contract::show(policy.min_retry_duration),
                    n - 1
                )));
            }
        }
        let seen = by_identity.get(&(r.retry_num, Some(detect)));
        if log {
            check_reasons(n, r, seen.copied(), &actual, &mut out.violations);
        }
        if log
            && let Some(s) = seen
            && !s.showed_waiting
            && s.retried().is_some()
        {
            out.violations.push(Finding::new(Rule::WaitingShown, format!(
                "while retry {n} waited, the backup never showed phase RetryFailed with a RetryFailed message naming attempt {n}/{} and the delay {}",
                policy.max_retry_times,
                contract::delay(policy.min_retry_duration, n).map_or("?".into(), contract::show)
            )));
        }
        if log && seen.is_some_and(|s| s.failure.is_none()) {
            out.violations.push(Finding::new(Rule::RecordedOnce, format!(
                "record {n} appeared with no Job failure left to record (a failure recorded twice?)"
            )));
        }
        if let (Some((_, failed_at)), Some(detect)) = (
            seen.and_then(|s| s.detection()),
            instant(&r.detect_failed_at),
        ) && secs(failed_at, detect) > BACKDATING.as_secs_f64()
        {
            out.violations.push(Finding::new(Rule::DetectionTime, format!(
                "record {n}: detectFailedAt is {:.1} s before the harness saw its Job fail (a backdated detection shortens the backoff)",
                secs(failed_at, detect)
            )));
        }
        let mut margin = RecordMargin {
            backup: actual.clone(),
            actual: actual.clone(),
            retry_num: r.retry_num,
            detection_lag: None,
            retry: None,
            excused: 0.0,
        };
        if let Some((appeared, failed_at)) = seen.and_then(|s| s.detection()) {
            let latency = secs(appeared, failed_at);
            margin.detection_lag = Some(latency);
            if latency > DETECT_WITHIN.as_secs_f64() {
                out.violations.push(Finding::new(Rule::DetectedInTime, format!(
                    "record {n} appeared {latency:.1} s after the harness saw its Job fail (LBR-1 bound {}s)",
                    DETECT_WITHIN.as_secs()
                )));
            }
        }
        // LBR-13: a snapshot backup keeps the operator's algorithm; only its numbering and
        // delays are judged here.
        if !log {
            out.margins.push(margin);
            continue;
        }
        (margin.retry, margin.excused) =
            check_retry(n, r, seen.copied(), (expected, down), &mut out.violations);
        out.margins.push(margin);
    }
    out
}

/// LBR-4 for a log backup's record: `retryReason` names the failed Job and
/// `originalReason` is the Job's own failure reason.
fn check_reasons(
    n: u32,
    r: &BackoffRetryRecord,
    seen: Option<&SeenRecord>,
    actual: &str,
    violations: &mut Vec<Finding>,
) {
    match seen.and_then(|s| s.failure.as_ref()) {
        Some((job, _, reason)) => {
            if !r
                .retry_reason
                .as_deref()
                .is_some_and(|x| x.contains(job.as_str()))
            {
                violations.push(Finding::new(
                    Rule::RetryReason,
                    format!(
                        "record {n}: retryReason {:?} does not name the failed Job {job}",
                        r.retry_reason.as_deref().unwrap_or_default()
                    ),
                ));
            }
            if r.original_reason.as_deref() != Some(reason.as_str()) {
                violations.push(Finding::new(Rule::OriginalReason, format!(
                        "record {n}: originalReason {:?}, but the Job's Failed condition says {reason:?}",
                        r.original_reason.as_deref().unwrap_or_default()
                    )));
            }
        }
        None if !r
            .retry_reason
            .as_deref()
            .is_some_and(|x| lbc_api::names::names_job_of(x, actual)) =>
        {
            violations.push(Finding::new(
                Rule::RetryReason,
                format!(
                    "record {n}: retryReason {:?} does not name the failed Job",
                    r.retry_reason.as_deref().unwrap_or_default()
                ),
            ));
        }
        None => {}
    }
}

/// LBR-3: the retry as the harness saw it against `expectedRetryAt` (less the time the
/// controller was down after it), and `realRetryAt` against the harness's sight. Returns
/// the retry's punctuality, when it ran, and the seconds excused.
fn check_retry(
    n: u32,
    r: &BackoffRetryRecord,
    seen: Option<&SeenRecord>,
    (expected, down): (Timestamp, &[(Timestamp, Timestamp)]),
    violations: &mut Vec<Finding>,
) -> (Option<Punctuality>, f64) {
    let Some(at) = seen.and_then(|s| s.retried()) else {
        if r.real_retry_at.is_some() {
            violations.push(Finding::new(
                Rule::RealRetryAt,
                format!("record {n}: realRetryAt is set but the harness saw no retry"),
            ));
        }
        return (None, 0.0);
    };
    let excused = super::margin::down_between(expected, at, down);
    let punctuality = Punctuality::of(secs(at, expected) - excused);
    match punctuality {
        Punctuality::Early(early) => violations.push(Finding::new(Rule::NotEarly, format!(
            "retry {n} ran {early:.1} s before expectedRetryAt (seen by the harness)"
        ))),
        Punctuality::Late(late) => violations.push(Finding::new(Rule::NotLate, format!(
            "retry {n} ran {late:.1} s after expectedRetryAt{}, seen by the harness (LBR-3 bound {}s)",
            if excused > 0.0 {
                format!(" not counting the {excused:.1} s the controller was down")
            } else {
                String::new()
            },
            Punctuality::bound()
        ))),
        Punctuality::OnTime(_) => {}
    }
    match instant(&r.real_retry_at) {
        Some(real) if secs(real, at).abs() > AGREEMENT.as_secs_f64() => {
            violations.push(Finding::new(
                Rule::RealRetryAt,
                format!(
                    "record {n}: realRetryAt is {:+.1} s from when the harness saw the retry",
                    secs(real, at)
                ),
            ));
        }
        None => violations.push(Finding::new(
            Rule::RealRetryAt,
            format!("retry {n} ran (seen by the harness) but realRetryAt was never set"),
        )),
        _ => {}
    }
    (Some(punctuality), excused)
}

mod detection;

pub use detection::check_detection_times;

#[cfg(test)]
mod tests;
