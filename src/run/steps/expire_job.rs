//! `expireJob`: shorten a running Job's `activeDeadlineSeconds` (a field the Job API lets
//! change) so the Job controller itself fails it with `DeadlineExceeded`: the harness never
//! writes a Job condition.

use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use kube::api::{Patch, PatchParams};
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
        let patch = serde_json::json!({"spec": {"activeDeadlineSeconds": DEADLINE}});
        jobs.patch(&job, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(StepError::kube(format!(
                "setting the deadline of Job {job}"
            )))?;
        Ok(())
    }
}
