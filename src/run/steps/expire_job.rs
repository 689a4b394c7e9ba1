//! `expireJob`: shorten a running Job's `activeDeadlineSeconds` (a field the Job API lets
//! change) so the Job controller itself fails it with `DeadlineExceeded`: the harness never
//! writes a Job condition.
//!
//! It waits first until the Job controller itself counts the pod ready: a deadline patched
//! while that controller is still writing the Job's status can lose its `FailureTarget` to
//! a write conflict, and the pod it then deletes comes back as a failure counted against
//! `backoffLimit` — the Job ends `BackoffLimitExceeded` instead (seen once in 500 runs).

use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use kube::api::{Patch, PatchParams};
use kube::runtime::wait::await_condition;
use lbc_api::names::job_name_for;

use super::{Shown, Step, StepError};
use crate::run::scope::Scope;
use crate::suite::model::ExpireJobStep;

/// The deadline set, seconds from the Job's start: already past for a Job that has run.
const DEADLINE: i64 = 1;

impl Step for ExpireJobStep {
    const KIND: &'static str = "expireJob";
    const MOVES_CURSOR: bool = true;
    const ACTS: bool = true;
    const SHOWN: Shown = Shown::Harness;

    async fn run(&self, cx: &mut Scope<'_>) -> Result<(), StepError> {
        let job = job_name_for(cx.names.actual(&self.0.backup), &self.0.subcommand);
        let jobs: Api<Job> = Api::namespaced(cx.client.clone(), &cx.namespace);
        let ready = await_condition(jobs.clone(), &job, counts_a_ready_pod);
        match tokio::time::timeout(cx.left(), ready).await {
            Ok(Ok(Some(_))) => {}
            Ok(Err(e)) => {
                return Err(StepError::Manifest(format!(
                    "watching Job {job} for a ready pod: {e}"
                )));
            }
            Ok(Ok(None)) | Err(_) => return Err(StepError::NotRunning(job)),
        }
        let patch = serde_json::json!({"spec": {"activeDeadlineSeconds": DEADLINE}});
        jobs.patch(&job, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(StepError::kube(format!(
                "setting the deadline of Job {job}"
            )))?;
        Ok(())
    }
}

/// The Job controller has counted a ready pod and has nothing left to count.
fn counts_a_ready_pod(job: Option<&Job>) -> bool {
    let Some(st) = job.and_then(|j| j.status.as_ref()) else {
        return false;
    };
    let uncounted = st.uncounted_terminated_pods.as_ref().is_some_and(|u| {
        u.failed.as_ref().is_some_and(|f| !f.is_empty())
            || u.succeeded.as_ref().is_some_and(|s| !s.is_empty())
    });
    st.ready.unwrap_or(0) >= 1 && st.active.unwrap_or(0) >= 1 && !uncounted
}
