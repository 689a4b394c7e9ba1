//! Status writes: the Pod's `status` alone, by merge patch on the `/status` subresource.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;

use super::{Agent, Finished, PodRun};

impl Agent {
    pub(super) async fn patch_status(
        &self,
        pods: &Api<Pod>,
        name: &str,
        status: serde_json::Value,
    ) {
        if let Err(e) = pods
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await
        {
            tracing::warn!(pod = %name, error = %e, "node agent: status patch failed");
        }
    }
}

fn ready_conditions(ready: bool, now: &str) -> serde_json::Value {
    let s = if ready { "True" } else { "False" };
    json!([
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
        {"type": "Initialized", "status": "True", "lastTransitionTime": now},
        {"type": "ContainersReady", "status": s, "lastTransitionTime": now},
        {"type": "Ready", "status": s, "lastTransitionTime": now},
    ])
}

fn container_status_entries(run: &PodRun, init: bool) -> Vec<serde_json::Value> {
    let specs = if init {
        &run.spec_init
    } else {
        &run.spec_containers
    };
    specs
        .iter()
        .map(|c| {
            let image = c.image.clone().unwrap_or_default();
            if let Some(r) = run
                .running
                .iter()
                .find(|r| r.name == c.name && r.init == init)
            {
                json!({"name": c.name, "image": image, "imageID": "", "ready": !init,
                       "started": true, "restartCount": 0,
                       "state": {"running": {"startedAt": r.started_at.to_string()}}})
            } else if let Some(f) = run
                .finished
                .iter()
                .find(|f| f.name == c.name && f.init == init)
            {
                terminated_entry(f)
            } else {
                json!({"name": c.name, "image": image, "imageID": "", "ready": false,
                       "started": false, "restartCount": 0,
                       "state": {"waiting": {"reason": "PodInitializing"}}})
            }
        })
        .collect()
}

fn terminated_entry(f: &Finished) -> serde_json::Value {
    let mut terminated = json!({
        "exitCode": f.exit_code, "reason": f.reason,
        "startedAt": f.started_at.to_string(), "finishedAt": f.finished_at.to_string(),
    });
    if let Some(m) = &f.message {
        terminated["message"] = json!(m);
    }
    json!({"name": f.name, "image": f.image, "imageID": "", "ready": false, "started": false,
           "restartCount": 0, "state": {"terminated": terminated}})
}

pub(super) fn running_status(run: &PodRun) -> serde_json::Value {
    let now = Timestamp::now().to_string();
    let initializing = run.next_init.is_some();
    let phase = if initializing { "Pending" } else { "Running" };
    json!({"status": {
        "phase": phase,
        "hostIP": "127.0.0.1", "podIP": "127.0.0.1",
        "podIPs": [{"ip": "127.0.0.1"}], "hostIPs": [{"ip": "127.0.0.1"}],
        "startTime": now,
        "conditions": ready_conditions(!initializing, &now),
        "initContainerStatuses": container_status_entries(run, true),
        "containerStatuses": container_status_entries(run, false),
    }})
}

/// The final status: `Succeeded` when every container exited 0, else `Failed`.
pub(super) fn terminal_status(finished: &[Finished], deleted: bool) -> serde_json::Value {
    let now = Timestamp::now().to_string();
    let failed = deleted || finished.is_empty() || finished.iter().any(|f| f.exit_code != 0);
    let by_init: BTreeMap<bool, Vec<serde_json::Value>> =
        finished.iter().fold(BTreeMap::new(), |mut m, f| {
            m.entry(f.init).or_default().push(terminated_entry(f));
            m
        });
    json!({"status": {
        "phase": if failed { "Failed" } else { "Succeeded" },
        "hostIP": "127.0.0.1", "podIP": "127.0.0.1",
        "conditions": ready_conditions(false, &now),
        "initContainerStatuses": by_init.get(&true).cloned().unwrap_or_default(),
        "containerStatuses": by_init.get(&false).cloned().unwrap_or_default(),
    }})
}
