//! `podFailurePolicy` and `unstartableJobs`: the suite's Jobs get a Pod failure policy, or
//! an image without its entrypoint, from the API server (see `run::admission`); the
//! controller under test creates them as it always does.

use super::{Shown, Step, StepError};
use crate::run::admission;
use crate::run::scope::Scope;
use crate::suite::model::{PodFailurePolicyStep, UnstartableJobsStep};

impl Step for PodFailurePolicyStep {
    const KIND: &'static str = "podFailurePolicy";
    const MOVES_CURSOR: bool = false;
    const ACTS: bool = true;
    const SHOWN: Shown = Shown::Harness;

    async fn run(&self, cx: &mut Scope<'_>) -> Result<(), StepError> {
        admission::fail_job_on_exit_codes(&cx.client, &cx.namespace, &self.fail_job_on_exit_codes)
            .await
            .map_err(StepError::Manifest)
    }
}

impl Step for UnstartableJobsStep {
    const KIND: &'static str = "unstartableJobs";
    const MOVES_CURSOR: bool = false;
    const ACTS: bool = true;
    const SHOWN: Shown = Shown::Harness;

    async fn run(&self, cx: &mut Scope<'_>) -> Result<(), StepError> {
        admission::jobs_cannot_start(&cx.client, &cx.namespace)
            .await
            .map_err(StepError::Manifest)
    }
}
