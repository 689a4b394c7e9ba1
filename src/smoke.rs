//! The smoke check: run real Jobs on a cluster and report how the Job controller ended them.

use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{ListParams, PostParams};
use kube::runtime::wait::await_condition;
use kube::{Api, Client, ResourceExt};
use serde_json::json;

/// The image the local provider maps to `/bin/sh` for smoke and test Jobs.
pub const SHELL_IMAGE: &str = "lbc.local/shell";

/// Errors running a smoke Job.
#[derive(Debug, thiserror::Error)]
pub enum SmokeError {
    #[error("{what}: {source}")]
    Kube {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("Job {ns}/{name} did not finish within {secs}s; last status: {status}")]
    Timeout {
        ns: String,
        name: String,
        secs: u64,
        status: String,
    },
}

/// How a Job ended, as the Job controller and the node agent recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobOutcome {
    pub name: String,
    /// `Complete` or `Failed`.
    pub condition: String,
    pub reason: Option<String>,
    /// Exit code of the (last) pod's first container.
    pub exit_code: Option<i32>,
    pub pod_message: Option<String>,
    pub elapsed: Duration,
}

/// A one-container Job with `backoffLimit: 0` and `restartPolicy: Never`, like the
/// operator's backup Jobs.
pub fn shell_job(name: &str, image: &str, args: &[&str]) -> Job {
    serde_json::from_value(json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "main", "image": image, "args": args}],
            }},
        },
    }))
    .unwrap_or_default()
}

/// Create `ns` if missing.
///
/// # Errors
/// The API refuses.
pub async fn ensure_namespace(client: &Client, ns: &str) -> Result<(), SmokeError> {
    let api: Api<Namespace> = Api::all(client.clone());
    let obj: Namespace =
        serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap_or_default();
    match api.create(&PostParams::default(), &obj).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(source) => Err(SmokeError::Kube {
            what: format!("creating namespace {ns}"),
            source,
        }),
    }
}

/// The terminal condition (`Complete`/`Failed` with status True) of a Job, if any.
pub fn terminal_condition(job: &Job) -> Option<(String, Option<String>)> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .map(|c| (c.type_.clone(), c.reason.clone()))
}

/// Create `job` in `ns` and wait for its terminal condition.
///
/// # Errors
/// The API refuses, or the Job does not finish within `timeout`.
pub async fn run_job(
    client: &Client,
    ns: &str,
    job: &Job,
    timeout: Duration,
) -> Result<JobOutcome, SmokeError> {
    let started = Instant::now();
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    let name = job.name_any();
    jobs.create(&PostParams::default(), job)
        .await
        .map_err(|source| SmokeError::Kube {
            what: format!("creating Job {ns}/{name}"),
            source,
        })?;
    let finished = await_condition(jobs.clone(), &name, |j: Option<&Job>| {
        j.and_then(terminal_condition).is_some()
    });
    let job = match tokio::time::timeout(timeout, finished).await {
        Ok(Ok(Some(job))) => job,
        Ok(Err(e)) => {
            return Err(SmokeError::Kube {
                what: format!("watching Job {ns}/{name}"),
                source: kube::Error::Service(Box::new(e)),
            });
        }
        _ => {
            let status = jobs
                .get(&name)
                .await
                .ok()
                .and_then(|j| serde_json::to_string(&j.status).ok())
                .unwrap_or_default();
            return Err(SmokeError::Timeout {
                ns: ns.into(),
                name,
                secs: timeout.as_secs(),
                status,
            });
        }
    };
    let elapsed = started.elapsed();
    let (condition, reason) = terminal_condition(&job).unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pod_list = pods
        .list(&ListParams::default().labels(&format!("job-name={name}")))
        .await
        .map_err(|source| SmokeError::Kube {
            what: format!("listing pods of Job {ns}/{name}"),
            source,
        })?;
    let terminated = pod_list.items.iter().find_map(|p| {
        p.status
            .as_ref()?
            .container_statuses
            .as_ref()?
            .first()?
            .state
            .as_ref()?
            .terminated
            .clone()
    });
    Ok(JobOutcome {
        name,
        condition,
        reason,
        exit_code: terminated.as_ref().map(|t| t.exit_code),
        pod_message: terminated.and_then(|t| t.message),
        elapsed,
    })
}

/// Run one succeeding and one failing Job; return both outcomes.
///
/// # Errors
/// See [`run_job`].
pub async fn smoke(client: &Client, ns: &str) -> Result<Vec<JobOutcome>, SmokeError> {
    ensure_namespace(client, ns).await?;
    let timeout = Duration::from_secs(60);
    let ok = run_job(
        client,
        ns,
        &shell_job(
            "smoke-succeeds",
            SHELL_IMAGE,
            &["-c", "echo hello from a local pod"],
        ),
        timeout,
    )
    .await?;
    let bad = run_job(
        client,
        ns,
        &shell_job(
            "smoke-fails",
            SHELL_IMAGE,
            &["-c", "echo failing on purpose >&2; exit 1"],
        ),
        timeout,
    )
    .await?;
    Ok(vec![ok, bad])
}
