//! What a run tells its reporters, as it happens (cargo-nextest's shape: the runner emits,
//! reporters only consume). A new report format is a new `Reporter`; it touches no runner
//! code.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::SuiteResult;
use super::all::Cut;
use super::story::Story;

/// One thing that happened in a run.
#[derive(Debug, Clone)]
pub enum SuiteEvent {
    /// A target's suites begin (targets run one after another).
    TargetStarted {
        label: String,
        suites: usize,
        /// Where this target's reports go.
        report_dir: PathBuf,
    },
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
    Finished {
        result: Arc<SuiteResult>,
        story: Arc<Story>,
    },
    /// A target's suites are over (or were cut short).
    TargetFinished(Arc<TargetResults>),
    /// Every target ran.
    RunFinished(Arc<RunResults>),
}

/// One target's results, sorted by suite name.
#[derive(Debug, Clone)]
pub struct TargetResults {
    pub label: String,
    pub results: Vec<SuiteResult>,
    /// Suites that never ran (`--fail-fast` after a failure, or the run was cut), by name.
    pub not_run: Vec<String>,
    pub wall: Duration,
    pub report_dir: PathBuf,
    pub cut: Option<Cut>,
    /// Why it was cut, in a line (the watchdog's limit, which component died).
    pub why: Option<String>,
}

/// The whole run: one column per target, in the order they ran.
#[derive(Debug, Clone)]
pub struct RunResults {
    pub targets: Vec<Arc<TargetResults>>,
    pub wall: Duration,
}

impl RunResults {
    /// Suites that failed (not counting the flaky ones), over every target.
    pub fn failed(&self) -> usize {
        self.targets
            .iter()
            .flat_map(|t| &t.results)
            .filter(|r| !r.passed && !r.flaky)
            .count()
    }

    /// Suites that failed and then passed when run again, over every target.
    pub fn flaky(&self) -> usize {
        self.targets
            .iter()
            .flat_map(|t| &t.results)
            .filter(|r| r.flaky)
            .count()
    }

    /// (target, its results) in the order the targets ran, for tables.
    pub fn columns(&self) -> Vec<(String, Vec<SuiteResult>)> {
        self.targets
            .iter()
            .map(|t| (t.label.clone(), t.results.clone()))
            .collect()
    }

    /// Why the run ended early, if it did.
    pub fn cut(&self) -> Option<Cut> {
        self.targets.iter().find_map(|t| t.cut)
    }
}

/// Where events go. Reporters implement it; it must not block the run.
pub trait Reporter: Send + Sync {
    fn report(&self, event: &SuiteEvent);

    /// What the reporter could not do (a file it could not write), asked once the run is
    /// over: a report that failed must not pass silently.
    fn errors(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Ignores everything (a run with no reporter).
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;

impl Reporter for Silent {
    fn report(&self, _: &SuiteEvent) {}
}

/// Every event to each of several reporters, in order.
#[derive(Default)]
pub struct Fanout(pub Vec<Arc<dyn Reporter>>);

impl Reporter for Fanout {
    fn report(&self, event: &SuiteEvent) {
        for r in &self.0 {
            r.report(event);
        }
    }

    fn errors(&self) -> Vec<String> {
        self.0.iter().flat_map(|r| r.errors()).collect()
    }
}
