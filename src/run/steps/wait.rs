//! `wait`: sleep (capped by the suite's deadline).

use super::{Step, StepError};
use crate::run::scope::Scope;
use crate::suite::model::WaitStep;

impl Step for WaitStep {
    const KIND: &'static str = "wait";

    async fn run(&self, cx: &mut Scope<'_>) -> Result<(), StepError> {
        tokio::time::sleep(self.0.get().min(cx.left())).await;
        Ok(())
    }
}
