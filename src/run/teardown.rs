//! The end of a suite, for any controller: the suite's finalizers come off and its Backups
//! are deleted *while the controller under test still runs* (so it can remove its own
//! finalizers, as TiDB Operator's protection finalizer needs), then the controller stops,
//! then the namespace goes. A Backup still there after that is a finding of the suite,
//! with the finalizer named, and is then forced away so the next suite starts clean.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use lbc_api::Backup;
use serde_json::json;

use super::scope::Scope;

/// How long the controller under test gets to let its Backups go.
const GRACE: Duration = Duration::from_secs(10);

/// Tear the suite down; returns its findings (failures).
pub async fn teardown(cx: &mut Scope<'_>) -> Vec<String> {
    let mut findings = Vec::new();
    if cx.suite.steps.iter().any(|s| {
        matches!(
            s,
            crate::suite::model::SuiteStep::PodFailurePolicy(_)
                | crate::suite::model::SuiteStep::UnstartableJobs(_)
        )
    }) {
        super::admission::remove(&cx.client, &cx.namespace).await;
    }
    let api: Api<Backup> = Api::namespaced(cx.client.clone(), &cx.namespace);
    let declared: BTreeSet<&str> = cx
        .suite
        .backups
        .iter()
        .flat_map(|b| b.finalizers.iter().map(String::as_str))
        .collect();
    let list = api.list(&ListParams::default()).await.map(|l| l.items);
    for b in list.iter().flatten() {
        let mine: Vec<&String> = b
            .finalizers()
            .iter()
            .filter(|f| declared.contains(f.as_str()))
            .collect();
        if !mine.is_empty() {
            let rest: Vec<&String> = b
                .finalizers()
                .iter()
                .filter(|f| !declared.contains(f.as_str()))
                .collect();
            set_finalizers(&api, &b.name_any(), &rest).await;
        }
        let _ = api.delete(&b.name_any(), &DeleteParams::background()).await;
    }
    let deadline = tokio::time::Instant::now() + GRACE;
    // The recorder's watch says when they are gone (no polling while the controller works);
    // the API then confirms, and is polled if the watch was ahead of it or cut.
    loop {
        cx.cursor.catch_up(&cx.recorder.trace);
        if cx.cursor.state().backups.is_empty() || !cx.recorder.changed_before(deadline).await {
            break;
        }
    }
    let left = loop {
        let listed = api.list(&ListParams::default()).await.map(|l| l.items);
        let over = tokio::time::Instant::now() >= deadline;
        match listed {
            Ok(items) if items.is_empty() || over => break items,
            Err(e) if over => {
                // Not knowing is a finding too, not a pass.
                findings.push(format!(
                    "teardown: could not list the suite's Backups {}s after their deletion: {e}",
                    GRACE.as_secs()
                ));
                break Vec::new();
            }
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    // Stopping waits for the process to exit (up to its grace): on a blocking thread, not
    // on one of the runtime's few workers, which every other suite's watches share.
    let controller = cx.controller.clone();
    crate::programs::process::off_the_runtime(move || controller.close(Duration::from_secs(2)))
        .await;
    for b in &left {
        findings.push(format!(
            "teardown: Backup {} was still there {}s after its deletion, held by finalizers {:?} \
             that the controller under test did not remove; forced away",
            b.name_any(),
            GRACE.as_secs(),
            b.finalizers()
        ));
        set_finalizers(&api, &b.name_any(), &[]).await;
    }
    // The namespace controller deletes the rest (Jobs, Pods, events).
    let _ = Api::<Namespace>::all(cx.client.clone())
        .delete(&cx.namespace, &DeleteParams::background())
        .await;
    findings
}

/// Set Backup `name`'s finalizers (a failure is logged: the caller's wait then reports it).
pub(super) async fn set_finalizers(api: &Api<Backup>, name: &str, finalizers: &[&String]) {
    let patch = json!({"metadata": {"finalizers": finalizers}});
    if let Err(e) = api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        tracing::warn!(backup = name, error = %e, "setting finalizers");
    }
}
