//! LBR-16, no stale overwrite: once the Job's entrypoint has written `Running`, `Complete` or
//! `Failed` for a subcommand, no later write moves that subcommand back to `Scheduled` or
//! `Prepare` — unless a new Job of the subcommand (a retry, a new run) started in between,
//! or the controller marked a retry (`RetryFailed`) or a new run (`Repeatable`).

use std::collections::BTreeMap;

use lbc_api::BackupConditionType as C;

use crate::recorder::{Entry, Kind, State};

/// Phases only the Job's entrypoint writes, after the Job runs.
fn progressed(p: C) -> bool {
    matches!(p, C::Running | C::Complete | C::Failed)
}

/// Phases of a Job that has not run yet.
fn early(p: C) -> bool {
    matches!(p, C::Scheduled | C::Prepare)
}

/// The violations of LBR-16 for the Backup named `actual` over `entries`.
pub fn check_no_regression(entries: &[Entry], actual: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut state = State::default();
    // Subcommand → the progressed phase seen since its last new Job, and when.
    let mut reached: BTreeMap<String, (C, String)> = BTreeMap::new();
    let mut jobs_seen: Vec<String> = Vec::new();
    let mut retries_run = 0;
    for e in entries {
        state.apply(e);
        match e.kind {
            Kind::Job if !e.deleted => {
                let Some(sub) =
                    lbc_api::names::job_subcommand(actual, &e.name).filter(|s| *s != "snapshot")
                else {
                    continue;
                };
                let uid = state
                    .jobs
                    .get(&e.name)
                    .and_then(|j| j.metadata.uid.clone())
                    .unwrap_or_default();
                if !jobs_seen.contains(&uid) {
                    jobs_seen.push(uid);
                    // A new attempt starts from Scheduled again.
                    reached.remove(sub);
                }
            }
            Kind::Backup if !e.deleted && e.name == actual => {
                let Some(status) = state.backups.get(actual).and_then(|b| b.status.clone()) else {
                    continue;
                };
                // A retry ran (or is waiting, shown only in the whole status): what follows
                // is a new attempt, whose Job's watch event may arrive after its status.
                let run = status
                    .backoff_retry_status
                    .iter()
                    .filter(|r| r.real_retry_at.is_some())
                    .count();
                if run > retries_run || status.phase == Some(C::RetryFailed) {
                    reached.clear();
                }
                retries_run = run;
                for (sub, s) in &status.log_sub_command_statuses {
                    let Some(phase) = s.phase else { continue };
                    if progressed(phase) {
                        reached.insert(sub.clone(), (phase, e.at.to_string()));
                    } else if matches!(phase, C::RetryFailed | C::Repeatable) {
                        // The controller took note: a retry or a new run follows (its Job's
                        // watch event may arrive after the next status).
                        reached.remove(sub);
                    } else if early(phase)
                        && let Some((was, at)) = reached.get(sub)
                    {
                        out.push(format!(
                            "{sub} went back from {was:?} (seen {at}) to {phase:?} at {} with no new Job in between (LBR-16: a stale write)",
                            e.at
                        ));
                        reached.remove(sub);
                    }
                }
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn backup(phase: &str) -> Entry {
        entry(
            Kind::Backup,
            "lb1",
            json!({"apiVersion": "pingcap.com/v1alpha1", "kind": "Backup", "metadata": {"name": "lb1"},
                   "spec": {}, "status": {"logSubCommandStatuses": {"log-start": {"phase": phase}}}}),
        )
    }

    fn job(uid: &str) -> Entry {
        entry(
            Kind::Job,
            "backup-lb1-log-start",
            json!({"metadata": {"name": "backup-lb1-log-start", "uid": uid}}),
        )
    }

    fn entry(kind: Kind, name: &str, object: Value) -> Entry {
        Entry::for_test(kind, name, object)
    }

    #[test]
    fn a_late_scheduled_write_is_caught() {
        let t = [
            job("j1"),
            backup("Running"),
            backup("Complete"),
            backup("Scheduled"),
        ];
        let v = check_no_regression(&t, "lb1").join("\n");
        assert!(v.contains("log-start went back from Complete"), "{v}");
    }

    #[test]
    fn a_retry_may_start_over() {
        let t = [
            job("j1"),
            backup("Running"),
            backup("Failed"),
            backup("RetryFailed"),
            // The retry's Scheduled may be seen before its Job.
            backup("Scheduled"),
            job("j2"),
            backup("Running"),
            backup("Complete"),
        ];
        assert_eq!(check_no_regression(&t, "lb1"), Vec::<String>::new());
    }
}
