//! A finished suite's story: what reporters need besides the verdict (the trace, the steps'
//! times, the final objects, the kernel's keys). The runner hands it over with the result
//! and keeps nothing; each reporter takes what it draws from (cargo-nextest hands its
//! reporters a test's output the same way).

use std::path::PathBuf;

use jiff::Timestamp;

use crate::recorder::{Entry, State};

/// One suite's story.
#[derive(Debug, Clone)]
pub struct Story {
    /// When the steps began and when the suite ended.
    pub started: Timestamp,
    pub ended: Timestamp,
    /// The whole watch trace.
    pub entries: Vec<Entry>,
    /// The cluster at the end of the trace.
    pub state: State,
    pub steps: Vec<StepTime>,
    /// The suite's namespace (its Pods' logs are `<namespace>_*`).
    pub namespace: String,
    /// The kernel's keys of the suite's tasks, one `key = "value"` line each (or why they
    /// could not be read); gathered only when the suite keeps a bundle.
    pub kernel_tasks: Option<String>,
    /// Where the node agent keeps Pods' logs, when the cluster has such a directory.
    pub pod_logs: Option<PathBuf>,
}

/// Where a reader of a suite's story sees a step (each step kind says, see
/// `steps::Step::SHOWN`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shown {
    /// Only as a step (and where it failed).
    Not,
    /// It stopped, started or restarted the controller.
    Controller,
    /// The harness acted on a Job behind the controller's back.
    Harness,
    /// It wrote the kernel's task state.
    Kernel,
}

/// A step as it ran.
#[derive(Debug, Clone, PartialEq)]
pub struct StepTime {
    pub kind: String,
    pub shown: Shown,
    /// It acted on the cluster or the controller (see `steps::Step::ACTS`).
    pub acts: bool,
    pub started: Timestamp,
    pub seconds: f64,
    pub error: Option<String>,
}

impl Story {
    /// Faults the proxy injected: (when, what), from the controller's API calls.
    pub fn faults(calls: &[crate::proxy::ApiCall]) -> Vec<(Timestamp, String)> {
        calls
            .iter()
            .filter_map(|c| Some((c.start, c.fault.clone()?)))
            .collect()
    }

    /// How many steps failed (at most one: the first failing step ends the steps).
    pub fn step_failures(&self) -> usize {
        self.steps.iter().filter(|s| s.error.is_some()).count()
    }
}
