//! `killJob`: delete the pods of a subcommand's Job, as an eviction or node loss would.

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, ListParams};
use lbc_api::names::job_name_for;

use super::{Shown, Step, StepError};
use crate::run::scope::Scope;
use crate::suite::model::JobRef;

impl Step for JobRef {
    const KIND: &'static str = "killJob";
    const MOVES_CURSOR: bool = true;
    const ACTS: bool = true;
    const SHOWN: Shown = Shown::Harness;

    async fn run(&self, cx: &mut Scope<'_>) -> Result<(), StepError> {
        let job = job_name_for(cx.names.actual(&self.backup), &self.subcommand);
        let pods: Api<Pod> = Api::namespaced(cx.client.clone(), &cx.namespace);
        let list = pods
            .list(&ListParams::default().labels(&format!("job-name={job}")))
            .await
            .map_err(StepError::kube(format!("listing pods of {job}")))?;
        if list.items.is_empty() {
            return Err(StepError::NoPod(job));
        }
        for p in list.items {
            let name = p.metadata.name.unwrap_or_default();
            pods.delete(&name, &DeleteParams::default())
                .await
                .map_err(StepError::kube(format!("deleting pod {name}")))?;
        }
        Ok(())
    }
}
