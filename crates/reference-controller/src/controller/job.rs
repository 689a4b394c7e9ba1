//! The backup Job, as the operator builds it (`makeBRBackupJob`): one per subcommand,
//! named `backup-<name>-<sub>`, owned by the Backup, `backoffLimit: 0`, `restartPolicy: Never`.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use kube::{Resource, ResourceExt};
use serde_json::json;

use lbc_api::{Backup, LogSubcommand};

/// Annotation on each Job the reference controller creates: which retry it runs (0 = the
/// first attempt). It lets a restarted controller tell a failure it already recorded from
/// a new one without any in-memory state.
pub const ATTEMPT_ANNOTATION: &str = "logbackup-conformance.pingcap.com/attempt";

pub use lbc_api::names::job_name;

/// The labels the operator puts on backup Jobs and their Pods.
pub fn job_labels(backup: &Backup) -> BTreeMap<String, String> {
    let name = backup.name_any();
    let mut labels: BTreeMap<String, String> = backup.labels().clone();
    let instance = labels
        .get("app.kubernetes.io/instance")
        .cloned()
        .unwrap_or_else(|| name.clone());
    for (k, v) in [
        ("app.kubernetes.io/name", "backup".to_owned()),
        ("app.kubernetes.io/component", "backup".to_owned()),
        ("app.kubernetes.io/managed-by", "backup-operator".to_owned()),
        ("app.kubernetes.io/instance", instance),
        ("tidb.pingcap.com/backup", name),
    ] {
        labels.insert(k.into(), v);
    }
    labels
}

/// backup-manager's argument list.
pub fn job_args(backup: &Backup, sub: Option<LogSubcommand>) -> Vec<String> {
    let ns = backup.namespace().unwrap_or_default();
    let mut args = vec![
        "backup".to_owned(),
        format!("--namespace={ns}"),
        format!("--backupName={}", backup.name_any()),
    ];
    if let Some(sub) = sub {
        args.push("--mode=log".into());
        args.push(format!("--subcommand={sub}"));
        if sub == LogSubcommand::Start
            && let Some(ts) = backup.spec.commit_ts.as_deref().filter(|t| !t.is_empty())
        {
            args.push(format!("--commit-ts={ts}"));
        }
        if sub == LogSubcommand::Truncate
            && let Some(until) = backup.spec.log_truncate_until.as_deref()
        {
            args.push(format!("--truncate-until={until}"));
        }
    }
    args
}

/// The Job for `sub` (None: snapshot) running `attempt`.
pub fn build_job(backup: &Backup, sub: Option<LogSubcommand>, image: &str, attempt: u32) -> Job {
    let name = job_name(&backup.name_any(), sub);
    let labels = job_labels(backup);
    let owner = backup.controller_owner_ref(&());
    let mut annotations = backup.annotations().clone();
    annotations.insert(ATTEMPT_ANNOTATION.into(), attempt.to_string());
    let value = json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": backup.namespace(),
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": owner.into_iter().collect::<Vec<_>>(),
        },
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"labels": labels, "annotations": backup.annotations()},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{
                        "name": "backup",
                        "image": image,
                        "imagePullPolicy": "IfNotPresent",
                        "args": job_args(backup, sub),
                        "env": [{"name": "BR_LOG_TO_TERM", "value": "\u{1}"}],
                    }],
                },
            },
        },
    });
    serde_json::from_value(value).unwrap_or_default()
}

/// Which attempt a Job runs (0 when the annotation is absent or unreadable).
pub fn attempt_of(job: &Job) -> u32 {
    job.annotations()
        .get(ATTEMPT_ANNOTATION)
        .and_then(|a| a.parse().ok())
        .unwrap_or(0)
}

/// The reason of the Job's `Failed=True` condition, if it has failed.
pub fn job_failure(job: &Job) -> Option<String> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Failed" && c.status == "True")
        .map(|c| c.reason.clone().unwrap_or_else(|| "Failed".into()))
}

/// Whether `job` is owned (as controller) by the Backup with `uid`.
pub fn owned_by(job: &Job, uid: &str) -> bool {
    job.owner_references()
        .iter()
        .any(|o| o.uid == uid && o.controller == Some(true))
}

/// The Job name and kind as the Backup's `Resource` sees it (for events).
pub fn backup_kind() -> String {
    Backup::kind(&()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backup() -> Backup {
        serde_json::from_value(json!({
            "apiVersion": "pingcap.com/v1alpha1", "kind": "Backup",
            "metadata": {"name": "lb1", "namespace": "ns", "uid": "u-1", "labels": {"team": "x"}},
            "spec": {"backupMode": "log", "logSubcommand": "log-start", "commitTs": "42",
                     "logTruncateUntil": "99", "br": {"cluster": "basic"}},
        }))
        .unwrap()
    }

    #[test]
    fn log_start_job_matches_the_operator() {
        let job = build_job(
            &backup(),
            Some(LogSubcommand::Start),
            lbc_api::names::JOB_IMAGE,
            0,
        );
        assert_eq!(job.name_any(), "backup-lb1-log-start");
        let labels = job.labels();
        assert_eq!(labels["app.kubernetes.io/managed-by"], "backup-operator");
        assert_eq!(labels["tidb.pingcap.com/backup"], "lb1");
        assert_eq!(labels["app.kubernetes.io/instance"], "lb1");
        assert_eq!(labels["team"], "x");
        let owner = &job.owner_references()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("Backup", "u-1", Some(true))
        );
        let spec = job.spec.unwrap();
        assert_eq!(spec.backoff_limit, Some(0));
        let pod = spec.template.spec.unwrap();
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        assert_eq!(
            pod.containers[0].args.clone().unwrap(),
            vec![
                "backup",
                "--namespace=ns",
                "--backupName=lb1",
                "--mode=log",
                "--subcommand=log-start",
                "--commit-ts=42"
            ]
        );
    }

    #[test]
    fn truncate_and_snapshot_args() {
        let b = backup();
        assert!(
            job_args(&b, Some(LogSubcommand::Truncate)).contains(&"--truncate-until=99".to_owned())
        );
        assert!(
            !job_args(&b, Some(LogSubcommand::Stop))
                .iter()
                .any(|a| a.starts_with("--commit-ts"))
        );
        assert_eq!(
            job_args(&b, None),
            vec!["backup", "--namespace=ns", "--backupName=lb1"]
        );
        assert_eq!(job_name("lb1", None), "backup-lb1");
    }

    #[test]
    fn attempt_round_trips() {
        let job = build_job(&backup(), Some(LogSubcommand::Start), "img", 3);
        assert_eq!(attempt_of(&job), 3);
        assert!(owned_by(&job, "u-1"));
        assert!(!owned_by(&job, "u-2"));
    }
}
