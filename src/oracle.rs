//! Verdicts over the recorded trace: predicate evaluation on replayed states, event
//! counting, and the built-in backoff-schedule oracle (LBR-2/LBR-3). Pure.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::jiff::Timestamp;

use crate::api::{Backup, BackupMode};
use crate::recorder::{Entry, Kind};
use crate::retry::{backoff, resolve_policy};
use crate::suite::model::Predicate;

/// LBR-3's default lateness bound.
pub const LATENESS: Duration = Duration::from_secs(2);
/// LBR-1's default detection bound.
pub const DETECT_WITHIN: Duration = Duration::from_secs(10);

/// Suite names → names in the cluster.
#[derive(Debug, Clone, Default)]
pub struct Names(pub HashMap<String, String>);

impl Names {
    pub fn actual<'a>(&'a self, decl: &'a str) -> &'a str {
        self.0.get(decl).map_or(decl, String::as_str)
    }
}

/// The cluster as of some point of the trace.
#[derive(Debug, Clone, Default)]
pub struct State {
    pub backups: BTreeMap<String, Backup>,
    pub jobs: BTreeMap<String, Job>,
    pub events: BTreeMap<String, Event>,
}

impl State {
    /// Apply one watch event.
    pub fn apply(&mut self, e: &Entry) {
        fn put<T: serde::de::DeserializeOwned>(map: &mut BTreeMap<String, T>, e: &Entry) {
            if e.deleted {
                map.remove(&e.name);
            } else if let Ok(v) = serde_json::from_value(e.object.clone()) {
                map.insert(e.name.clone(), v);
            }
        }
        match e.kind {
            Kind::Backup => put(&mut self.backups, e),
            Kind::Job => put(&mut self.jobs, e),
            Kind::Event => put(&mut self.events, e),
            Kind::Pod => {}
        }
    }

    /// Replay `entries`.
    pub fn replay(entries: &[Entry]) -> Self {
        let mut s = Self::default();
        for e in entries {
            s.apply(e);
        }
        s
    }
}

/// Whether `p` holds in `s`.
pub fn eval(p: &Predicate, s: &State, names: &Names) -> bool {
    let backup = |decl: &str| s.backups.get(names.actual(decl));
    let status = |decl: &str| {
        backup(decl)
            .and_then(|b| b.status.clone())
            .unwrap_or_default()
    };
    match p {
        Predicate::RecordExists(r) => status(&r.backup)
            .backoff_retry_status
            .iter()
            .any(|x| x.retry_num as u32 == r.n),
        Predicate::RecordPending(r) => status(&r.backup)
            .backoff_retry_status
            .iter()
            .any(|x| x.retry_num as u32 == r.n && x.real_retry_at.is_none()),
        Predicate::RecordRetried(r) => status(&r.backup)
            .backoff_retry_status
            .iter()
            .any(|x| x.retry_num as u32 == r.n && x.real_retry_at.is_some()),
        Predicate::Phase(r) => {
            backup(&r.backup).is_some() && status(&r.backup).phase == Some(r.phase)
        }
        Predicate::SubPhase(r) => {
            status(&r.backup)
                .log_sub_command_statuses
                .get(&r.subcommand)
                .and_then(|x| x.phase)
                == Some(r.phase)
        }
        Predicate::Condition(r) => {
            let st = status(&r.backup);
            let conds = match &r.subcommand {
                Some(sub) => st
                    .log_sub_command_statuses
                    .get(sub)
                    .map(|x| x.conditions.clone())
                    .unwrap_or_default(),
                None => st.conditions,
            };
            conds.iter().any(|c| {
                c.type_ == r.type_
                    && c.status == "True"
                    && r.reason
                        .as_ref()
                        .is_none_or(|want| c.reason.as_ref() == Some(want))
            })
        }
        Predicate::JobFailed(r) => {
            let actual = names.actual(&r.backup);
            let job = if r.subcommand == "snapshot" {
                format!("backup-{actual}")
            } else {
                format!("backup-{actual}-{}", r.subcommand)
            };
            s.jobs
                .get(&job)
                .is_some_and(|j| crate::controller::job::job_failure(j).is_some())
        }
        Predicate::Deleted(r) => backup(&r.backup).is_none(),
        Predicate::AllOf(ps) => ps.iter().all(|q| eval(q, s, names)),
        Predicate::AnyOf(ps) => ps.iter().any(|q| eval(q, s, names)),
        Predicate::Not(q) => !eval(q, s, names),
    }
}

/// One event about a Backup, with its occurrences (a series counts each).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Occurrence {
    pub reason: String,
    pub type_: String,
    pub note: String,
    pub count: u32,
    pub first: Option<Timestamp>,
}

/// Events regarding the Backup with this name and (if known) uid, oldest first.
pub fn events_about(s: &State, actual_name: &str, uid: Option<&str>) -> Vec<Occurrence> {
    let mut out: Vec<Occurrence> = s
        .events
        .values()
        .filter(|e| {
            e.regarding.as_ref().is_some_and(|r| {
                r.kind.as_deref() == Some("Backup")
                    && r.name.as_deref() == Some(actual_name)
                    && uid.is_none_or(|u| r.uid.as_deref() == Some(u))
            })
        })
        .map(|e| Occurrence {
            reason: e.reason.clone().unwrap_or_default(),
            type_: e.type_.clone().unwrap_or_default(),
            note: e.note.clone().unwrap_or_default(),
            count: e.series.as_ref().map_or(1, |x| x.count.max(1)) as u32,
            first: e.event_time.as_ref().map(|t| t.0),
        })
        .collect();
    out.sort_by(|a, b| a.first.cmp(&b.first).then(a.reason.cmp(&b.reason)));
    out
}

/// The backoff-schedule oracle's findings for one Backup.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScheduleCheck {
    pub violations: Vec<String>,
    /// e.g. "retry 2 ran +0.41 s after expected".
    pub margins: Vec<String>,
}

/// Check LBR-2/LBR-3 on `backup`'s records from its own policy. `first_seen` maps a retry
/// number to when the harness first saw its `realRetryAt` (finer than the CR's seconds).
pub fn check_schedule(backup: &Backup, first_seen: &HashMap<i32, Timestamp>) -> ScheduleCheck {
    let mut out = ScheduleCheck::default();
    let Ok(policy) = resolve_policy(&backup.spec.backoff_retry_policy) else {
        return out;
    };
    let records = backup
        .status
        .clone()
        .unwrap_or_default()
        .backoff_retry_status;
    let ts =
        |t: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>| t.as_ref().map(|t| t.0);
    for (i, r) in records.iter().enumerate() {
        // Positions, not retryNum: a wrong retryNum must not excuse a wrong delay.
        let n = i as i32 + 1;
        if r.retry_num != n {
            out.violations.push(format!(
                "record {n} has retryNum {}, expected {n} (numbering starts at 1 and rises by 1)",
                r.retry_num
            ));
        }
        let (Some(detect), Some(expected)) = (ts(&r.detect_failed_at), ts(&r.expected_retry_at))
        else {
            out.violations.push(format!(
                "record {n} lacks detectFailedAt or expectedRetryAt"
            ));
            continue;
        };
        let want = backoff(policy.min_retry_duration, n.max(1) as u32);
        let got = expected.duration_since(detect);
        if got.as_secs() != want.as_secs() as i64 {
            out.violations.push(format!(
                "record {n}: expectedRetryAt − detectFailedAt is {}s, the policy gives {}s (minRetryDuration × 2^{})",
                got.as_secs(),
                want.as_secs(),
                n - 1
            ));
        }
        if backup.spec.backup_mode == BackupMode::Log
            && r.retry_reason
                .as_deref()
                .is_none_or(|x| !x.starts_with("Job ") || !x.ends_with(" has failed"))
        {
            out.violations.push(format!(
                "record {n}: retryReason {:?} does not name the failed Job",
                r.retry_reason
            ));
        }
        if let Some(real) = ts(&r.real_retry_at) {
            let late = real.duration_since(expected);
            if late.is_negative() {
                out.violations.push(format!(
                    "retry {n} ran {:.0}s before expectedRetryAt",
                    late.as_secs_f64().abs()
                ));
            } else if late.as_secs_f64() > LATENESS.as_secs_f64() {
                out.violations.push(format!(
                    "retry {n} ran {:.0}s after expectedRetryAt (bound {}s)",
                    late.as_secs_f64(),
                    LATENESS.as_secs()
                ));
            }
            let observed = first_seen.get(&r.retry_num).copied().unwrap_or(real);
            out.margins.push(format!(
                "retry {n} ran {:+.2} s after expected",
                observed.duration_since(expected).as_secs_f64()
            ));
        }
    }
    out
}

/// When each retry's `realRetryAt` was first seen in the trace, per Backup name.
pub fn first_retry_seen(entries: &[Entry]) -> HashMap<String, HashMap<i32, Timestamp>> {
    let mut out: HashMap<String, HashMap<i32, Timestamp>> = HashMap::new();
    for e in entries
        .iter()
        .filter(|e| e.kind == Kind::Backup && !e.deleted)
    {
        let Ok(b) = serde_json::from_value::<Backup>(e.object.clone()) else {
            continue;
        };
        for r in b.status.unwrap_or_default().backoff_retry_status {
            if r.real_retry_at.is_some() {
                out.entry(e.name.clone())
                    .or_default()
                    .entry(r.retry_num)
                    .or_insert(e.at);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::model::{RecordRef, SubPhaseRef};
    use serde_json::json;

    fn backup(records: serde_json::Value, min: &str) -> Backup {
        serde_json::from_value(json!({
            "apiVersion": "pingcap.com/v1alpha1", "kind": "Backup",
            "metadata": {"name": "lb1-x", "namespace": "s"},
            "spec": {"backupMode": "log", "backoffRetryPolicy": {"minRetryDuration": min}},
            "status": {"phase": "RetryFailed", "logSubCommandStatuses": {"log-start": {"phase": "RetryFailed"}},
                       "backoffRetryStatus": records},
        }))
        .unwrap()
    }

    fn entry(b: &Backup) -> Entry {
        Entry {
            at: Timestamp::UNIX_EPOCH,
            kind: Kind::Backup,
            name: "lb1-x".into(),
            deleted: false,
            object: serde_json::to_value(b).unwrap(),
        }
    }

    #[test]
    fn predicates_over_a_replayed_state() {
        let b = backup(
            json!([{"retryNum": 1, "detectFailedAt": "2026-01-01T00:00:00Z", "expectedRetryAt": "2026-01-01T00:00:02Z"}]),
            "2s",
        );
        let s = State::replay(&[entry(&b)]);
        let names = Names([("lb1".to_owned(), "lb1-x".to_owned())].into());
        let rec = |n| RecordRef {
            backup: "lb1".into(),
            n,
        };
        assert!(eval(&Predicate::RecordPending(rec(1)), &s, &names));
        assert!(!eval(&Predicate::RecordRetried(rec(1)), &s, &names));
        assert!(!eval(&Predicate::RecordExists(rec(2)), &s, &names));
        let sub = Predicate::SubPhase(SubPhaseRef {
            backup: "lb1".into(),
            subcommand: "log-start".into(),
            phase: crate::api::BackupConditionType::RetryFailed,
        });
        assert!(eval(&sub, &s, &names));
        assert!(eval(
            &Predicate::Not(Box::new(Predicate::RecordExists(rec(2)))),
            &s,
            &names
        ));
        let mut gone = entry(&b);
        gone.deleted = true;
        let s2 = State::replay(&[entry(&b), gone]);
        assert!(eval(
            &Predicate::Deleted(crate::suite::model::BackupRef {
                backup: "lb1".into()
            }),
            &s2,
            &names
        ));
    }

    #[test]
    fn schedule_oracle_accepts_a_good_schedule_and_reports_margins() {
        let b = backup(
            json!([
                {"retryNum": 1, "detectFailedAt": "2026-01-01T00:00:00Z", "expectedRetryAt": "2026-01-01T00:00:02Z",
                 "realRetryAt": "2026-01-01T00:00:02Z", "retryReason": "Job backup-lb1-log-start has failed"},
                {"retryNum": 2, "detectFailedAt": "2026-01-01T00:00:05Z", "expectedRetryAt": "2026-01-01T00:00:09Z",
                 "retryReason": "Job backup-lb1-log-start has failed"},
            ]),
            "2s",
        );
        let seen = HashMap::from([(1, Timestamp::from_second(1_767_225_602).unwrap())]);
        let c = check_schedule(&b, &seen);
        assert_eq!(c.violations, Vec::<String>::new());
        assert_eq!(c.margins.len(), 1);
    }

    #[test]
    fn schedule_oracle_catches_numbering_doubling_and_lateness() {
        let b = backup(
            json!([
                {"retryNum": 1, "detectFailedAt": "2026-01-01T00:00:00Z", "expectedRetryAt": "2026-01-01T00:00:02Z",
                 "realRetryAt": "2026-01-01T00:00:07Z", "retryReason": "Job backup-lb1-log-start has failed"},
                {"retryNum": 1, "detectFailedAt": "2026-01-01T00:00:10Z", "expectedRetryAt": "2026-01-01T00:00:12Z",
                 "retryReason": "JobFailed"},
            ]),
            "2s",
        );
        let v = check_schedule(&b, &HashMap::new()).violations.join("\n");
        assert!(v.contains("retry 1 ran 5s after expectedRetryAt"), "{v}");
        assert!(v.contains("record 2 has retryNum 1"), "{v}");
        assert!(
            v.contains("expectedRetryAt − detectFailedAt is 2s, the policy gives 4s"),
            "{v}"
        );
        assert!(v.contains("does not name the failed Job"), "{v}");
    }
}
