//! The suite's steps, one executor per kind (Chainsaw's shape): `<kind>.rs` runs it, the
//! matches below only dispatch. Adding a step kind: its type in `suite/model/steps.rs`, its
//! executor here in `<kind>.rs` (the `Step` constants say how the runner treats it), and
//! one arm in each of [`info`] and [`run_step`] (the compiler asks for both).

mod admission;
mod assert;
mod controller;
mod create;
mod delete;
mod expire_job;
pub mod fault;
mod kernel;
mod kill_job;
mod patch;
mod plan;
mod snapshot;
mod wait;

use super::scope::Scope;
pub use super::step_error::StepError;
pub use super::story::Shown;
use crate::suite::model::SuiteStep;

/// A step kind's executor, and what the runner knows of the kind without running it.
pub trait Step {
    /// The kind as suites spell it.
    const KIND: &'static str;
    /// An action on the cluster: what follows it is judged on the states from it on, not
    /// on older ones (the cursor catches up before it runs).
    const MOVES_CURSOR: bool;
    /// It acts rather than only observes (it sets the scope's `acted_at`).
    const ACTS: bool;
    /// Where a reader of the suite's story sees it.
    const SHOWN: Shown;
    /// Run the step in the suite's scope.
    fn run(&self, cx: &mut Scope<'_>) -> impl Future<Output = Result<(), StepError>> + Send;
}

/// A step kind as the runner reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindInfo {
    pub kind: &'static str,
    pub shown: Shown,
    pub acts: bool,
}

fn info_of<S: Step>(_: &S) -> KindInfo {
    KindInfo {
        kind: S::KIND,
        shown: S::SHOWN,
        acts: S::ACTS,
    }
}

/// What the runner knows of `step`'s kind.
pub fn info(step: &SuiteStep) -> KindInfo {
    match step {
        SuiteStep::Create(s) => info_of(s),
        SuiteStep::Patch(s) => info_of(s),
        SuiteStep::Delete(s) => info_of(s),
        SuiteStep::Plan(s) => info_of(s),
        SuiteStep::Kernel(s) => info_of(s),
        SuiteStep::KillJob(s) => info_of(s),
        SuiteStep::ExpireJob(s) => info_of(s),
        SuiteStep::PodFailurePolicy(s) => info_of(s),
        SuiteStep::UnstartableJobs(s) => info_of(s),
        SuiteStep::Controller(s) => info_of(s),
        SuiteStep::Fault(s) => info_of(s),
        SuiteStep::Wait(s) => info_of(s),
        SuiteStep::Assert(s) => info_of(s),
        SuiteStep::Snapshot(s) => info_of(s),
    }
}

/// The kind of `step`, as suites spell it.
pub fn kind(step: &SuiteStep) -> &'static str {
    info(step).kind
}

/// Run one step.
///
/// # Errors
/// What the step's executor reports.
pub async fn run_step(step: &SuiteStep, cx: &mut Scope<'_>) -> Result<(), StepError> {
    match step {
        SuiteStep::Create(s) => exec(s, cx).await,
        SuiteStep::Patch(s) => exec(s, cx).await,
        SuiteStep::Delete(s) => exec(s, cx).await,
        SuiteStep::Plan(s) => exec(s, cx).await,
        SuiteStep::Kernel(s) => exec(s, cx).await,
        SuiteStep::KillJob(s) => exec(s, cx).await,
        SuiteStep::ExpireJob(s) => exec(s, cx).await,
        SuiteStep::PodFailurePolicy(s) => exec(s, cx).await,
        SuiteStep::UnstartableJobs(s) => exec(s, cx).await,
        SuiteStep::Controller(s) => exec(s, cx).await,
        SuiteStep::Fault(s) => exec(s, cx).await,
        SuiteStep::Wait(s) => exec(s, cx).await,
        SuiteStep::Assert(s) => exec(s, cx).await,
        SuiteStep::Snapshot(s) => exec(s, cx).await,
    }
}

async fn exec<S: Step>(step: &S, cx: &mut Scope<'_>) -> Result<(), StepError> {
    if S::MOVES_CURSOR {
        cx.cursor.catch_up(&cx.recorder.trace);
    }
    let outcome = step.run(cx).await;
    if S::ACTS {
        cx.acted_at = Some(std::time::Instant::now());
    }
    outcome
}
