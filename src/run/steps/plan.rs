//! `plan`: replace fake-br's plan for one subcommand of a Backup.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{Patch, PatchParams};
use lbc_api::plan::plan_configmap;
use serde_json::json;

use super::{Shown, Step, StepError};
use crate::run::scope::Scope;
use crate::suite::model::PlanStepDecl;

impl Step for PlanStepDecl {
    const KIND: &'static str = "plan";
    const MOVES_CURSOR: bool = true;
    const ACTS: bool = true;
    const SHOWN: Shown = Shown::Not;

    async fn run(&self, cx: &mut Scope<'_>) -> Result<(), StepError> {
        let name = plan_configmap(cx.names.actual(&self.backup));
        let yaml = serde_yaml::to_string(&self.steps)
            .map_err(|e| StepError::Manifest(format!("plan {name}: {e}")))?;
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
                        "data": {self.subcommand.clone(): yaml}});
        Api::<ConfigMap>::namespaced(cx.client.clone(), &cx.namespace)
            .patch(
                &name,
                &PatchParams::apply("lbc").force(),
                &Patch::Apply(&cm),
            )
            .await
            .map_err(StepError::kube(format!("writing plan {name}")))?;
        Ok(())
    }
}
