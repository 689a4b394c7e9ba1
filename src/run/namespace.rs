//! A suite's namespace, fresh for each run. On a cluster that outlives the run (`lbc up`,
//! `--provider kubeconfig`) the previous run's namespace may still be terminating, or left
//! by a run that was killed; the harness waits for the first and clears the second, but
//! never touches a namespace it did not make.

use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

/// The label on every namespace the harness makes for a suite.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "logbackup-conformance");

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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    Absent,
    /// Being deleted: wait.
    Terminating,
    /// Made by the harness in an earlier run: delete, then wait.
    Leftover,
    /// Someone else's: refuse.
    Foreign,
}

/// Pure: classify what a GET of the namespace returned.
pub fn classify(ns: Option<&Namespace>) -> Found {
    let Some(ns) = ns else {
        return Found::Absent;
    };
    let terminating = ns.metadata.deletion_timestamp.is_some()
        || ns
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_some_and(|p| p == "Terminating");
    if terminating {
        return Found::Terminating;
    }
    let ours = ns
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(MANAGED_BY.0))
        .is_some_and(|v| v == MANAGED_BY.1);
    if ours {
        Found::Leftover
    } else {
        Found::Foreign
    }
}

/// Make namespace `name` for a suite, new and labelled as the harness's; an earlier run's is
/// waited out (terminating) or deleted first (left over), for up to `timeout`.
///
/// # Errors
/// Someone else's namespace of that name, a namespace that does not go, or the API refuses.
pub async fn fresh(client: &Client, name: &str, timeout: Duration) -> Result<(), NamespaceError> {
    let api: Api<Namespace> = Api::all(client.clone());
    let kube_err = |source| NamespaceError::Kube {
        name: name.to_owned(),
        source,
    };
    let obj: Namespace = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {MANAGED_BY.0: MANAGED_BY.1}}
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
        match classify(found.as_ref()) {
            Found::Absent | Found::Terminating => {}
            Found::Leftover => {
                tracing::info!(namespace = name, "deleting an earlier run's namespace");
                match api.delete(name, &DeleteParams::background()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
                    Err(e) => return Err(kube_err(e)),
                }
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

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn ns(v: serde_json::Value) -> Namespace {
        serde_json::from_value(v).unwrap()
    }

    #[rstest]
    #[case::absent(None, Found::Absent)]
    #[case::ours(Some(json!({"metadata": {"name": "s", "labels": {"app.kubernetes.io/managed-by": "logbackup-conformance"}}})), Found::Leftover)]
    #[case::someone_elses(Some(json!({"metadata": {"name": "s"}})), Found::Foreign)]
    #[case::other_manager(Some(json!({"metadata": {"name": "s", "labels": {"app.kubernetes.io/managed-by": "helm"}}})), Found::Foreign)]
    #[case::deleting(Some(json!({"metadata": {"name": "s", "deletionTimestamp": "2026-11-30T00:00:00Z"}})), Found::Terminating)]
    #[case::terminating_phase(Some(json!({"metadata": {"name": "s"}, "status": {"phase": "Terminating"}})), Found::Terminating)]
    #[case::ours_terminating(Some(json!({"metadata": {"name": "s", "labels": {"app.kubernetes.io/managed-by": "logbackup-conformance"}}, "status": {"phase": "Terminating"}})), Found::Terminating)]
    fn what_is_found_decides(#[case] got: Option<serde_json::Value>, #[case] want: Found) {
        let got = got.map(ns);
        assert_eq!(classify(got.as_ref()), want);
    }
}
