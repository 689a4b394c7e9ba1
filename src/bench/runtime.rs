//! `lbc bench runtime`: the node agent's two runtimes side by side — how long a Job whose
//! Pod runs `sh -c true` takes from create to the Pod's `Succeeded`, as processes (the
//! default) and as Docker containers. Printed, never asserted.

use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use serde_json::json;

use crate::cluster::RunningCluster;
use crate::smoke::ensure_namespace;

/// One runtime's figures.
#[derive(Debug, Clone)]
pub struct RuntimeReport {
    pub runtime: &'static str,
    /// Seconds from create to Complete, one per Job.
    pub seconds: Vec<f64>,
}

impl RuntimeReport {
    /// (median, p99, max) in seconds.
    pub fn figures(&self) -> (f64, f64, f64) {
        let mut v = self.seconds.clone();
        v.sort_by(f64::total_cmp);
        let q = |p| super::run::quantile(&v, p).unwrap_or(0.0);
        (q(0.5), q(0.99), q(1.0))
    }
}

/// A Job running `true` in the shell of `image`; `command` says whether the shell is named
/// as the container's command (an image) or is the mapped program itself (a process).
pub fn true_job(name: &str, image: &str, command: bool) -> Job {
    let container = if command {
        json!({"name": "main", "image": image, "command": ["/bin/sh", "-c", "true"]})
    } else {
        json!({"name": "main", "image": image, "args": ["-c", "true"]})
    };
    serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name},
        "spec": {"backoffLimit": 0, "template": {"spec": {
            "restartPolicy": "Never", "containers": [container],
        }}},
    }))
    .unwrap_or_default()
}

/// Run `jobs` Jobs (`PREFIX0`…) one after another on `cluster` and time each, from the
/// Job's create to its Pod's `Succeeded` as the node agent publishes it (polled every
/// 10 ms; the Job controller's own 1 s batching of Pod updates is not the runtime's).
///
/// # Errors
/// No client, an API error, or a Pod that does not succeed within a minute (described).
pub async fn measure(
    cluster: &RunningCluster,
    runtime: &'static str,
    image: &str,
    command: bool,
    jobs: usize,
    prefix: &str,
) -> Result<RuntimeReport, String> {
    use k8s_openapi::api::core::v1::Pod;
    use kube::Api;
    use kube::api::{DeleteParams, ListParams, PostParams};
    let client = cluster.client().map_err(|e| format!("a client: {e}"))?;
    let ns = format!("bench-{runtime}");
    ensure_namespace(&client, &ns)
        .await
        .map_err(|e| e.to_string())?;
    let job_api: Api<Job> = Api::namespaced(client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let mut seconds = Vec::with_capacity(jobs);
    for i in 0..jobs {
        let name = format!("{prefix}{i}");
        let job = true_job(&name, image, command);
        let started = Instant::now();
        job_api
            .create(&PostParams::default(), &job)
            .await
            .map_err(|e| format!("creating Job {name}: {e}"))?;
        let selector = ListParams::default().labels(&format!("job-name={name}"));
        loop {
            let list = pods
                .list(&selector)
                .await
                .map_err(|e| format!("listing Pods of {name}: {e}"))?;
            let phase = list
                .items
                .first()
                .and_then(|p| p.status.as_ref()?.phase.clone());
            match phase.as_deref() {
                Some("Succeeded") => break,
                Some("Failed") => return Err(format!("{runtime}: the Pod of {name} failed")),
                _ if started.elapsed() > Duration::from_secs(60) => {
                    return Err(format!(
                        "{runtime}: the Pod of {name} did not succeed in 60 s"
                    ));
                }
                _ => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
        seconds.push(started.elapsed().as_secs_f64());
        let _ = job_api.delete(&name, &DeleteParams::background()).await;
    }
    Ok(RuntimeReport { runtime, seconds })
}
