//! `create`: create a declared Backup from its inline fields or its fixture.

use kube::Api;
use kube::api::PostParams;
use lbc_api::Backup;

use super::{Shown, Step, StepError};
use crate::run::manifest::backup_manifest;
use crate::run::scope::Scope;
use crate::suite::model::CreateStep;

impl Step for CreateStep {
    const KIND: &'static str = "create";
    const MOVES_CURSOR: bool = true;
    const ACTS: bool = true;
    const SHOWN: Shown = Shown::Not;

    async fn run(&self, cx: &mut Scope<'_>) -> Result<(), StepError> {
        let decl = cx
            .suite
            .backups
            .iter()
            .find(|d| d.name == self.backup)
            .ok_or_else(|| StepError::Manifest(format!("unknown backup {}", self.backup)))?;
        let b = backup_manifest(
            cx.suite,
            decl,
            cx.names.actual(&self.backup),
            cx.root,
            cx.tool_image.as_deref(),
        )?;
        Api::<Backup>::namespaced(cx.client.clone(), &cx.namespace)
            .create(&PostParams::default(), &b)
            .await
            .map_err(StepError::kube(format!("creating Backup {}", self.backup)))?;
        Ok(())
    }
}
