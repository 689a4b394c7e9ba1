//! `patch`: merge-patch a Backup's spec (a user changing it).

use kube::Api;
use kube::api::{Patch, PatchParams};
use lbc_api::Backup;
use serde_json::json;

use super::{Shown, Step, StepError};
use crate::run::scope::Scope;
use crate::suite::model::PatchStep;

impl Step for PatchStep {
    const KIND: &'static str = "patch";
    const MOVES_CURSOR: bool = true;
    const ACTS: bool = true;
    const SHOWN: Shown = Shown::Not;

    async fn run(&self, cx: &mut Scope<'_>) -> Result<(), StepError> {
        let patch = json!({"spec": self.spec});
        Api::<Backup>::namespaced(cx.client.clone(), &cx.namespace)
            .patch(
                cx.names.actual(&self.backup),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .map_err(StepError::kube(format!("patching Backup {}", self.backup)))?;
        Ok(())
    }
}
