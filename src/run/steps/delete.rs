//! `delete`: delete a Backup (a user deleting it).

use kube::Api;
use kube::api::DeleteParams;
use lbc_api::Backup;

use super::{Shown, Step, StepError};
use crate::run::scope::Scope;
use crate::suite::model::DeleteStep;

impl Step for DeleteStep {
    const KIND: &'static str = "delete";
    const MOVES_CURSOR: bool = true;
    const ACTS: bool = true;
    const SHOWN: Shown = Shown::Not;

    async fn run(&self, cx: &mut Scope<'_>) -> Result<(), StepError> {
        Api::<Backup>::namespaced(cx.client.clone(), &cx.namespace)
            .delete(cx.names.actual(&self.backup), &DeleteParams::default())
            .await
            .map_err(StepError::kube(format!("deleting Backup {}", self.backup)))?;
        Ok(())
    }
}
