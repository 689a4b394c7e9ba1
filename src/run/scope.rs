//! One running suite: what every step may use (client, namespace, names, recorder, the
//! controller under test, the kernel, the deadline), and waiting on the recorded trace.

use std::path::Path;
use std::time::Duration;

use kube::Client;
use lbc_api::kernel::KernelClient;
use tokio::time::Instant;

use super::controller::ControllerProcess;
use super::steps::StepError;
use crate::judge::{BackupNames, describe, eval};
use crate::recorder::{Cursor, Recorder, State};
use crate::suite::Suite;
use crate::suite::model::Predicate;

/// Where to scrape the controller's metrics.
#[derive(Debug, Clone)]
pub enum MetricsAt {
    /// `host:port`.
    Tcp(String),
    /// A socket `lbc-sandbox` exposes for an isolated controller.
    Unix(std::path::PathBuf),
}

/// The running suite, lent to each step in turn.
pub struct Scope<'a> {
    pub suite: &'a Suite,
    /// The repository root (fixtures are relative to it).
    pub root: &'a Path,
    pub client: Client,
    pub namespace: String,
    pub names: BackupNames,
    pub recorder: Recorder,
    /// The trace applied up to the last entry a step looked at.
    pub cursor: Cursor,
    pub controller: ControllerProcess,
    /// The suite's own kernel, if it has one (else `kernel` is the cluster's).
    pub own_kernel: Option<super::kernel::SuiteKernel>,
    /// The harness's side of an isolated controller (stops with the scope).
    pub bridges: Option<super::isolate::HostBridges>,
    /// Where the controller under test serves `/metrics`, if the harness knows.
    pub metrics_at: Option<MetricsAt>,
    pub metric_names: Option<crate::judge::metrics::MetricNames>,
    pub kernel: KernelClient,
    pub deadline: Instant,
    /// The normalized outcome, once a `snapshot` step took it.
    pub snapshot: Option<String>,
    /// The behaviour fingerprint, taken with the snapshot (`None`: at the end).
    pub fingerprint: Option<String>,
    /// `events` assertions that held, to check again over the whole trace at the end.
    pub final_events: Vec<crate::suite::model::EventsAssertion>,
}

impl std::fmt::Debug for Scope<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scope")
            .field("suite", &self.suite.name)
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl Scope<'_> {
    /// What is left of the suite's budget.
    pub fn left(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// `now + d`, capped by the suite's deadline (`None`: the deadline).
    pub fn within(&self, d: Option<Duration>) -> Instant {
        let d = d.unwrap_or_else(|| self.left()).min(self.left());
        Instant::now() + d
    }

    /// Wait until `p` holds in a recorded state: `now` — in the current state or a later
    /// one (a `when`: act on the present); otherwise in any state from the cursor on, so a
    /// transient state since the previous step counts but the suite's distant past (e.g.
    /// "no Job yet" before the first Job) does not.
    ///
    /// # Errors
    /// [`StepError::NotHeld`] at `until`, with the last state.
    pub async fn wait_until(
        &mut self,
        p: &Predicate,
        until: Instant,
        now: bool,
    ) -> Result<(), StepError> {
        if now {
            self.cursor.catch_up(&self.recorder.trace);
        }
        loop {
            if eval(p, self.cursor.state(), &self.names) {
                return Ok(());
            }
            if self.cursor.step(&self.recorder.trace).is_some() {
                continue;
            }
            let changed = self.recorder.changed_before(until).await;
            if !changed && self.cursor.position() == self.recorder.trace.len() {
                return Err(StepError::NotHeld {
                    predicate: describe(p),
                    state: self.describe(self.cursor.state()),
                });
            }
        }
    }

    /// When `p` held at some point of the suite before the cursor, if it did. The one
    /// place a trace is walked from its start: only for "over the whole suite so far".
    pub fn held_before(&self, p: &Predicate) -> Option<(k8s_openapi::jiff::Timestamp, State)> {
        let mut state = State::default();
        for e in self
            .recorder
            .trace
            .since(0)
            .iter()
            .take(self.cursor.position())
        {
            state.apply(e);
            if eval(p, &state, &self.names) {
                return Some((e.at, state));
            }
        }
        None
    }

    /// Fail if `p` holds at any recorded point from the cursor until `until` (`None`: over
    /// what has been recorded so far).
    ///
    /// # Errors
    /// [`StepError::Held`], with when and the state.
    pub async fn never(&mut self, p: &Predicate, until: Option<Instant>) -> Result<(), StepError> {
        loop {
            if eval(p, self.cursor.state(), &self.names) {
                return Err(self.held(p));
            }
            if self.cursor.step(&self.recorder.trace).is_some() {
                continue;
            }
            match until {
                Some(u) if Instant::now() < u => {
                    self.recorder.changed_before(u).await;
                }
                _ => return Ok(()),
            }
        }
    }

    fn held(&self, p: &Predicate) -> StepError {
        let at = self
            .recorder
            .trace
            .since(self.cursor.position().saturating_sub(1))
            .first()
            .map(|e| e.at.to_string())
            .unwrap_or_default();
        StepError::Held {
            predicate: describe(p),
            at,
            state: self.describe(self.cursor.state()),
        }
    }

    /// The suite's Backups' statuses in `s`, as YAML, for messages.
    pub fn describe(&self, s: &State) -> String {
        let mut out = String::new();
        for actual in self.names.0.values() {
            if let Some(b) = s.backups.get(actual) {
                out.push_str(&serde_yaml::to_string(&b.status).unwrap_or_default());
            }
        }
        out
    }
}
