//! What a run tells its reporters, as it happens (cargo-nextest's shape: the runner emits,
//! reporters only consume). A new report format touches no runner code.

use std::sync::Arc;

use super::SuiteResult;

/// One thing that happened in a run.
#[derive(Debug, Clone)]
pub enum SuiteEvent {
    /// A suite began (its namespace exists, the controller is starting).
    Started { suite: String },
    /// A step finished, well or not.
    StepDone {
        suite: String,
        index: usize,
        kind: &'static str,
        seconds: f64,
        error: Option<String>,
    },
    /// A check after the steps failed (schedule, events, snapshot, controller alive).
    CheckFailed { suite: String, message: String },
    /// The suite is over; its verdict is final.
    Finished(Arc<SuiteResult>),
}

/// Where events go. Reporters implement it; it must not block the run.
pub trait Reporter: Send + Sync {
    fn report(&self, event: &SuiteEvent);
}

/// Ignores everything (a run with no reporter).
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;

impl Reporter for Silent {
    fn report(&self, _: &SuiteEvent) {}
}
