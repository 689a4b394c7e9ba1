//! Predicates over one state of the trace (a suite's `when`, `eventually`, `never` …).

use k8s_openapi::api::batch::v1::Job;
use lbc_api::names::job_name_for;

use super::BackupNames as Names;
use crate::recorder::State;
use crate::suite::model::Predicate;

/// CONTRACT Vocabulary: a Job has failed when its condition `Failed` is `True`; the
/// condition's reason (the record's `originalReason`), if it has failed.
pub fn job_failed(job: &Job) -> Option<String> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Failed" && c.status == "True")
        .map(|c| c.reason.clone().unwrap_or_default())
}

/// The predicate as written in the suite, for messages.
pub fn describe(p: &Predicate) -> String {
    serde_json::to_string(p).unwrap_or_default()
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
                    && r.message_contains.as_ref().is_none_or(|want| {
                        c.message
                            .as_deref()
                            .is_some_and(|m| m.contains(want.as_str()))
                    })
            })
        }
        Predicate::JobFailed(r) => {
            let job = job_name_for(names.actual(&r.backup), &r.subcommand);
            s.jobs.get(&job).is_some_and(|j| job_failed(j).is_some())
        }
        Predicate::JobExists(r) => s
            .jobs
            .contains_key(&job_name_for(names.actual(&r.backup), &r.subcommand)),
        Predicate::JobComplete(r) => {
            let job = job_name_for(names.actual(&r.backup), &r.subcommand);
            s.jobs.get(&job).is_some_and(|j| {
                j.status
                    .as_ref()
                    .and_then(|st| st.conditions.as_ref())
                    .is_some_and(|cs| {
                        cs.iter()
                            .any(|c| c.type_ == "Complete" && c.status == "True")
                    })
            })
        }
        Predicate::Deleted(r) => backup(&r.backup).is_none(),
        Predicate::AllOf(ps) => ps.iter().all(|q| eval(q, s, names)),
        Predicate::AnyOf(ps) => ps.iter().any(|q| eval(q, s, names)),
        Predicate::Not(q) => !eval(q, s, names),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recorder::{Entry, Kind};
    use crate::suite::model::{RecordRef, SubPhaseRef};
    use k8s_openapi::jiff::Timestamp;
    use lbc_api::Backup;
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
            received: std::time::Instant::now(),
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
        let names = Names(
            [("lb1".to_owned(), "lb1-x".to_owned())]
                .into_iter()
                .collect(),
        );
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
            phase: lbc_api::BackupConditionType::RetryFailed,
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
}
