//! `controller`: stop, start or restart (SIGKILL + start) the controller under test, now
//! or once a predicate holds.

use std::time::Duration;

use super::{Shown, Step, StepError};
use crate::run::controller::ControllerError;
use crate::run::scope::Scope;
use crate::suite::model::{ControllerAction, ControllerStep};

impl Step for ControllerStep {
    const KIND: &'static str = "controller";
    const MOVES_CURSOR: bool = false;
    const ACTS: bool = true;
    const SHOWN: Shown = Shown::Controller;

    async fn run(&self, cx: &mut Scope<'_>) -> Result<(), StepError> {
        if let Some(w) = &self.when {
            let within = self.timeout.as_ref().map(|d| d.get());
            cx.wait_until(w, cx.within(within), within, true)
                .await
                .map_err(|e| StepError::When(Box::new(e)))?;
        }
        match self.action {
            ControllerAction::Stop => {
                // Waits for it to exit: off the runtime's workers.
                let c = cx.controller.clone();
                crate::programs::process::off_the_runtime(move || c.stop(Duration::from_secs(2)))
                    .await;
            }
            // A Pod takes seconds to run again: off the runtime's workers too.
            ControllerAction::Start | ControllerAction::Restart => {
                let (c, restart) = (
                    cx.controller.clone(),
                    self.action == ControllerAction::Restart,
                );
                tokio::task::spawn_blocking(move || {
                    if restart {
                        c.restart()
                    } else {
                        c.start_again()
                    }
                })
                .await
                .map_err(|e| StepError::Controller(ControllerError::Pod(e.to_string())))??;
            }
        }
        Ok(())
    }
}
