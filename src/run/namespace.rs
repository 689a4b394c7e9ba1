//! A suite's namespace, fresh for each run. On a cluster that outlives the run (`lbc up`,
//! `--provider kubeconfig`) the previous run's namespace may still be terminating, or left
//! by a run that was killed; the harness waits for the first and clears the second. It
//! never touches a namespace it did not make, nor one that another run may still be using.

use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client, ResourceExt};
use lbc_api::Backup;
use serde_json::json;

/// The label on every namespace the harness makes for a suite.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "logbackup-conformance");
/// The label naming the run that made it.
pub const RUN_LABEL: &str = "logbackup-conformance/run";

/// Errors making a suite's namespace.
#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    #[error(
        "namespace {0} exists and was not made by lbc (no label {key}={value}): the suite needs a namespace of its own; delete it or rename the suite",
        key = MANAGED_BY.0,
        value = MANAGED_BY.1
    )]
    Foreign(String),
    #[error(
        "namespace {name} is in use by another lbc run ({run}, made {age}s ago); if that run was killed, delete the namespace, or run again after {left}s"
    )]
    InUse {
        name: String,
        run: String,
        age: u64,
        left: u64,
    },
    #[error(
        "namespace {name} was still being deleted after {secs}s (a finalizer may hold it: kubectl get backups,jobs -n {name})"
    )]
    StillTerminating { name: String, secs: u64 },
    #[error("namespace {name}: {source}")]
    Kube {
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// What is there under the suite's namespace name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    Absent,
    /// Being deleted: wait. `stale`: made by a run that is over (as for `Leftover`), so
    /// its Backups' finalizers may be taken off, or they would hold it forever.
    Terminating {
        stale: bool,
    },
    /// Made by the harness in a run that is over: delete, then wait.
    Leftover,
    /// Made by another run that may still be using it (younger than `in_use_for`).
    InUse {
        run: String,
        age: Duration,
    },
    /// Someone else's: refuse.
    Foreign,
}

/// Pure: classify what a GET of the namespace returned, for run `run_id` at `now`. Another
/// run's namespace counts as in use while younger than `in_use_for` (how long a suite's
/// namespace lives at most in a run: its timeout, set-up and teardown).
pub fn classify(
    ns: Option<&Namespace>,
    run_id: &str,
    now: Timestamp,
    in_use_for: Duration,
) -> Found {
    let Some(ns) = ns else {
        return Found::Absent;
    };
    let terminating = ns.metadata.deletion_timestamp.is_some()
        || ns
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_some_and(|p| p == "Terminating");
    let ours = ns
        .labels()
        .get(MANAGED_BY.0)
        .is_some_and(|v| v == MANAGED_BY.1);
    let run = ns.labels().get(RUN_LABEL).cloned().unwrap_or_default();
    let age = ns
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| now.duration_since(t.0))
        .and_then(|d| Duration::try_from(d).ok())
        .unwrap_or(Duration::MAX);
    let over = ours && (run.is_empty() || age >= in_use_for);
    match (terminating, ours) {
        (true, _) => Found::Terminating { stale: over },
        (false, false) => Found::Foreign,
        // This run's own (a suite name run twice) is over too.
        (false, true) if over || run == run_id => Found::Leftover,
        (false, true) => Found::InUse { run, age },
    }
}

/// Make namespace `name` for a suite of run `run_id`, new and labelled as the harness's; an
/// earlier run's is waited out (terminating) or deleted first (left over: its Backups'
/// finalizers too, whose controller is gone), for up to `timeout`.
///
/// # Errors
/// Someone else's namespace of that name, another run's still in use, a namespace that
/// does not go, or the API refuses.
pub async fn fresh(
    client: &Client,
    name: &str,
    run_id: &str,
    in_use_for: Duration,
    timeout: Duration,
) -> Result<(), NamespaceError> {
    let api: Api<Namespace> = Api::all(client.clone());
    let kube_err = |source| NamespaceError::Kube {
        name: name.to_owned(),
        source,
    };
    let obj: Namespace = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {MANAGED_BY.0: MANAGED_BY.1, RUN_LABEL: run_id}}
    }))
    .unwrap_or_default();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        // Create first: on a fresh cluster (every local run) that is the only request.
        match api.create(&PostParams::default(), &obj).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(kube_err(e)),
        }
        let found = api.get_opt(name).await.map_err(kube_err)?;
        match classify(found.as_ref(), run_id, Timestamp::now(), in_use_for) {
            Found::Absent | Found::Terminating { stale: false } => {}
            Found::Terminating { stale: true } => {
                release_backups(client, name).await.map_err(kube_err)?;
            }
            Found::Leftover => {
                tracing::info!(namespace = name, "deleting an earlier run's namespace");
                release_backups(client, name).await.map_err(kube_err)?;
                match api.delete(name, &DeleteParams::background()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
                    Err(e) => return Err(kube_err(e)),
                }
            }
            Found::InUse { run, age } => {
                return Err(NamespaceError::InUse {
                    name: name.to_owned(),
                    run,
                    age: age.as_secs(),
                    left: in_use_for.saturating_sub(age).as_secs(),
                });
            }
            Found::Foreign => return Err(NamespaceError::Foreign(name.to_owned())),
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(NamespaceError::StillTerminating {
                name: name.to_owned(),
                secs: timeout.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Take the finalizers off the Backups of a leftover namespace: the controller that would
/// remove them ran with the killed run, and they would hold the namespace forever.
async fn release_backups(client: &Client, ns: &str) -> Result<(), kube::Error> {
    let api: Api<Backup> = Api::namespaced(client.clone(), ns);
    let held = match api.list(&ListParams::default()).await {
        Ok(l) => l.items,
        // No Backup CRD: nothing to hold the namespace.
        Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
        Err(e) => return Err(e),
    };
    for b in held.iter().filter(|b| !b.finalizers().is_empty()) {
        super::teardown::set_finalizers(&api, &b.name_any(), &[]).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn ns(v: serde_json::Value) -> Namespace {
        serde_json::from_value(v).unwrap()
    }

    const MINUTE: Duration = Duration::from_secs(60);

    fn now() -> Timestamp {
        "2026-11-30T01:00:00Z".parse().unwrap()
    }

    fn ours(run: Option<&str>, created: &str) -> serde_json::Value {
        let mut labels = json!({"app.kubernetes.io/managed-by": "logbackup-conformance"});
        if let Some(r) = run {
            labels[RUN_LABEL] = json!(r);
        }
        json!({"metadata": {"name": "s", "labels": labels, "creationTimestamp": created}})
    }

    #[rstest]
    #[case::absent(None, Found::Absent)]
    #[case::ours_this_run(Some(ours(Some("me"), "2026-11-30T00:59:50Z")), Found::Leftover)]
    #[case::ours_older_lbc(Some(ours(None, "2026-11-30T00:59:50Z")), Found::Leftover)]
    #[case::another_run_long_ago(
        Some(ours(Some("other"), "2026-11-30T00:50:00Z")),
        Found::Leftover
    )]
    #[case::another_run_just_now(Some(ours(Some("other"), "2026-11-30T00:59:50Z")), Found::InUse { run: "other".into(), age: Duration::from_secs(10) })]
    #[case::someone_elses(Some(json!({"metadata": {"name": "s"}})), Found::Foreign)]
    #[case::other_manager(Some(json!({"metadata": {"name": "s", "labels": {"app.kubernetes.io/managed-by": "helm"}}})), Found::Foreign)]
    #[case::deleting(Some(json!({"metadata": {"name": "s", "deletionTimestamp": "2026-11-30T00:00:00Z"}})), Found::Terminating { stale: false })]
    #[case::terminating_phase(Some(json!({"metadata": {"name": "s"}, "status": {"phase": "Terminating"}})), Found::Terminating { stale: false })]
    #[case::ours_terminating_older_lbc(Some(json!({"metadata": {"name": "s", "labels": {"app.kubernetes.io/managed-by": "logbackup-conformance"}}, "status": {"phase": "Terminating"}})), Found::Terminating { stale: true })]
    #[case::another_runs_terminating_young(Some(json!({"metadata": {"name": "s", "creationTimestamp": "2026-11-30T00:59:00Z", "deletionTimestamp": "2026-11-30T00:59:50Z", "labels": {"app.kubernetes.io/managed-by": "logbackup-conformance", "logbackup-conformance/run": "other"}}})), Found::Terminating { stale: false })]
    #[case::another_runs_terminating_old(Some(json!({"metadata": {"name": "s", "creationTimestamp": "2026-11-30T00:40:00Z", "deletionTimestamp": "2026-11-30T00:45:00Z", "labels": {"app.kubernetes.io/managed-by": "logbackup-conformance", "logbackup-conformance/run": "other"}}})), Found::Terminating { stale: true })]
    fn what_is_found_decides(#[case] got: Option<serde_json::Value>, #[case] want: Found) {
        let got = got.map(ns);
        assert_eq!(classify(got.as_ref(), "me", now(), 3 * MINUTE), want);
    }
}
