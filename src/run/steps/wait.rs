//! `wait`: sleep (capped by the suite's deadline).

use super::{Shown, Step, StepError};
use crate::run::scope::Scope;
use crate::suite::model::WaitStep;

impl Step for WaitStep {
    const KIND: &'static str = "wait";
    const MOVES_CURSOR: bool = false;
    const ACTS: bool = false;
    const SHOWN: Shown = Shown::Not;

    async fn run(&self, cx: &mut Scope<'_>) -> Result<(), StepError> {
        tokio::time::sleep(self.0.get().min(cx.left())).await;
        Ok(())
    }
}
