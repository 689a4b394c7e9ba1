//! The suite's steps, one executor per kind (Chainsaw's shape): `<kind>.rs` runs it, the
//! match below only dispatches. Adding a step kind: its type in `suite/model.rs`, its
//! executor here in `<kind>.rs`, and one line in [`run_step`].

mod assert;
mod controller;
mod create;
mod delete;
pub mod fault;
mod kernel;
mod kill_job;
mod patch;
mod plan;
mod snapshot;
mod wait;

pub use assert::events_hold;

use super::scope::Scope;
pub use super::step_error::StepError;
use crate::suite::model::SuiteStep;

/// A step kind's executor.
pub trait Step {
    /// The kind as suites spell it.
    const KIND: &'static str;
    /// Run the step in the suite's scope.
    fn run(&self, cx: &mut Scope<'_>) -> impl Future<Output = Result<(), StepError>> + Send;
}

/// The kind of `step`, as suites spell it.
pub fn kind(step: &SuiteStep) -> &'static str {
    use crate::suite::model as m;
    match step {
        SuiteStep::Create(_) => m::CreateStep::KIND,
        SuiteStep::Patch(_) => m::PatchStep::KIND,
        SuiteStep::Delete(_) => m::DeleteStep::KIND,
        SuiteStep::Plan(_) => m::PlanStepDecl::KIND,
        SuiteStep::Kernel(_) => m::KernelStep::KIND,
        SuiteStep::KillJob(_) => m::JobRef::KIND,
        SuiteStep::Controller(_) => m::ControllerStep::KIND,
        SuiteStep::Fault(_) => m::FaultStep::KIND,
        SuiteStep::Wait(_) => m::WaitStep::KIND,
        SuiteStep::Assert(_) => m::Assertion::KIND,
        SuiteStep::Snapshot(_) => m::SnapshotStep::KIND,
    }
}

/// Run one step.
///
/// # Errors
/// What the step's executor reports.
pub async fn run_step(step: &SuiteStep, cx: &mut Scope<'_>) -> Result<(), StepError> {
    // An action starts a new "since the previous step": what follows it is judged on the
    // states from the action on, not on older ones.
    if matches!(
        step,
        SuiteStep::Create(_)
            | SuiteStep::Patch(_)
            | SuiteStep::Delete(_)
            | SuiteStep::Plan(_)
            | SuiteStep::Kernel(_)
            | SuiteStep::KillJob(_)
    ) {
        cx.cursor.catch_up(&cx.recorder.trace);
    }
    let acts = !matches!(
        step,
        SuiteStep::Wait(_) | SuiteStep::Assert(_) | SuiteStep::Snapshot(_)
    );
    let outcome = match step {
        SuiteStep::Create(s) => s.run(cx).await,
        SuiteStep::Patch(s) => s.run(cx).await,
        SuiteStep::Delete(s) => s.run(cx).await,
        SuiteStep::Plan(s) => s.run(cx).await,
        SuiteStep::Kernel(s) => s.run(cx).await,
        SuiteStep::KillJob(s) => s.run(cx).await,
        SuiteStep::Controller(s) => s.run(cx).await,
        SuiteStep::Fault(s) => s.run(cx).await,
        SuiteStep::Wait(s) => s.run(cx).await,
        SuiteStep::Assert(s) => s.run(cx).await,
        SuiteStep::Snapshot(s) => s.run(cx).await,
    };
    if acts {
        cx.acted_at = Some(std::time::Instant::now());
    }
    outcome
}
