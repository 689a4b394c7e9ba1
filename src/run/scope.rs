//! One running suite: what every step may use (client, namespace, names, recorder, the
//! controller under test, the kernel, the deadline), and waiting on the recorded trace.

use std::path::Path;
use std::time::Duration;

use kube::Client;
use lbc_api::kernel::KernelClient;
use tokio::time::Instant;

use super::controller::SharedController;
use super::step_error::StepError;
use crate::judge::{BackupNames, describe, eval};
use crate::recorder::{Cursor, Recorder, State};
use crate::suite::Suite;
use crate::suite::model::Predicate;

/// How long a namespace may stay quiet (no change to its Backups, Jobs or Pods)
/// while a step waits, with no retry pending: above the contract's detection bound
/// (`detectWithin`, 10 s) and a controller's usual kernel sync period.
pub const QUIET_FLOOR: Duration = Duration::from_secs(15);

/// How long after a `controller` step starts the controller under test again no wait fails
/// for quiet: enough for one that must wait out its predecessor's leader-election lease
/// (TiDB Operator: 15 s) and sync its informers.
pub const CONTROLLER_START_GRACE: Duration = Duration::from_secs(30);

/// The longest `delay` of any fake-br plan step of `suite`.
pub fn longest_plan_delay(suite: &Suite) -> Duration {
    suite
        .plans
        .values()
        .flat_map(|m| m.values().flatten())
        .filter_map(|st| st.delay.as_deref())
        .filter_map(|d| lbc_api::duration::parse_go_duration(d).ok())
        .max()
        .unwrap_or_default()
}

/// The quiet limit in state `s`: `floor`, or longer while a recorded retry is due later
/// (until its `expectedRetryAt` + the contract's lateness + 3 s).
pub fn quiet_limit(s: &State, floor: Duration) -> Duration {
    let now = k8s_openapi::jiff::Timestamp::now();
    s.backups
        .values()
        .filter_map(|b| b.status.as_ref())
        .flat_map(|st| st.backoff_retry_status.iter())
        .filter(|r| r.real_retry_at.is_none())
        .filter_map(|r| r.expected_retry_at.as_ref())
        .filter_map(|at| {
            let left = at.0.duration_since(now);
            (left.is_positive()).then(|| left.unsigned_abs())
        })
        .map(|left| left + crate::judge::contract::LATENESS + Duration::from_secs(3))
        .fold(floor, Duration::max)
}

/// Where to scrape the controller's metrics.
#[derive(Debug, Clone)]
pub enum MetricsAt {
    /// `host:port`.
    Tcp(String),
    /// A socket `lbc-sandbox` exposes for an isolated controller.
    Unix(std::path::PathBuf),
    /// This port of the controller's Pod (the Deployment form), through the API server.
    Pod(u16),
}

/// The running suite, lent to each step in turn.
pub struct Scope<'a> {
    pub suite: &'a Suite,
    /// The index of the step running (for labels).
    pub step: usize,
    /// The repository root (fixtures are relative to it).
    pub root: &'a Path,
    pub client: Client,
    pub namespace: String,
    pub names: BackupNames,
    pub recorder: Recorder,
    /// The trace applied up to the last entry a step looked at.
    pub cursor: Cursor,
    pub controller: std::sync::Arc<SharedController>,
    /// The API proxy in front of the controller (its traffic and faults), if it has one.
    pub proxy: Option<crate::proxy::ApiProxy>,
    /// The suite's own kernel, if it has one (else `kernel` is the cluster's).
    pub own_kernel: Option<super::kernel::SuiteKernel>,
    /// The harness's side of an isolated controller (stops with the scope).
    pub bridges: Option<super::isolate::HostBridges>,
    /// Where the controller under test serves `/metrics`, if the harness knows.
    pub metrics_at: Option<MetricsAt>,
    pub metric_names: Option<crate::judge::metrics::MetricNames>,
    /// `spec.toolImage` for the Backups the suite creates (unset when `None`).
    pub tool_image: Option<String>,
    pub kernel: KernelClient,
    pub deadline: Instant,
    /// The normalized outcome, once a `snapshot` step took it.
    pub snapshot: Option<String>,
    /// The behaviour fingerprint, taken with the snapshot (`None`: at the end).
    pub fingerprint: Option<String>,
    /// `events` assertions that held, to check again over the whole trace at the end.
    pub final_events: Vec<crate::suite::model::EventsAssertion>,
    /// When the last step that acts on the cluster (create, patch, delete, plan, kernel,
    /// killJob, controller, fault) ended.
    pub acted_at: Option<std::time::Instant>,
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
    /// Fails early when the namespace stays quiet (no Backup, Job or Pod changes; Events do
    /// not count) for longer than anything could still be
    /// on its way: [`QUIET_FLOOR`] (or the step's own `within`, if longer), extended while a
    /// recorded retry is pending until its `expectedRetryAt` plus the contract's lateness.
    /// A controller that will never act thus fails in seconds, not at the suite timeout.
    ///
    /// # Errors
    /// [`StepError::NotHeld`] at `until`, [`StepError::Quiet`] when nothing changed for long.
    pub async fn wait_until(
        &mut self,
        p: &Predicate,
        until: Instant,
        within: Option<Duration>,
        now: bool,
    ) -> Result<(), StepError> {
        if now {
            self.cursor.catch_up(&self.recorder.trace);
        }
        // A Job the plan keeps running (a delay) changes nothing while it runs.
        let floor = within
            .unwrap_or_default()
            .max(QUIET_FLOOR)
            .max(longest_plan_delay(self.suite) + Duration::from_secs(5));
        // Not before the controller had time to start again (a step or a crash fault).
        let controller = self.controller.clone();
        let not_before = move || {
            controller
                .restarted_at()
                .map(|t| t + CONTROLLER_START_GRACE)
        };
        let limit = |s: &State| {
            let at = Instant::now() + quiet_limit(s, floor);
            not_before().map_or(at, |t| at.max(t))
        };
        let mut quiet_until = limit(self.cursor.state());
        loop {
            if eval(p, self.cursor.state(), &self.names) {
                return Ok(());
            }
            if let Some(e) = self.cursor.step(&self.recorder.trace) {
                // Events do not move a predicate; some controllers repeat one about another
                // object (TiDB Operator: `FailedValidation` on the TidbCluster every resync).
                if e.kind != crate::recorder::Kind::Event {
                    quiet_until = limit(self.cursor.state());
                }
                continue;
            }
            if self.recorder.changed_before(until.min(quiet_until)).await {
                continue;
            }
            if self.cursor.position() != self.recorder.trace.len() {
                continue;
            }
            let now = Instant::now();
            if now >= until {
                return Err(StepError::NotHeld {
                    predicate: describe(p),
                    state: self.describe(self.cursor.state()),
                });
            }
            if now >= quiet_until && not_before().is_none_or(|t| now >= t) {
                return Err(StepError::Quiet {
                    predicate: describe(p),
                    secs: quiet_limit(self.cursor.state(), floor).as_secs(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::{SignedDuration, Timestamp};
    use serde_json::json;

    fn with_record(expected_in: i64, ran: bool) -> State {
        let at = |d: i64| {
            Timestamp::now()
                .checked_add(SignedDuration::from_secs(d))
                .unwrap()
                .strftime("%Y-%m-%dT%H:%M:%SZ")
                .to_string()
        };
        let mut record =
            json!({"retryNum": 1, "detectFailedAt": at(0), "expectedRetryAt": at(expected_in)});
        if ran {
            record["realRetryAt"] = json!(at(expected_in));
        }
        let b: lbc_api::Backup = serde_json::from_value(json!({
            "apiVersion": "pingcap.com/v1alpha1", "kind": "Backup",
            "metadata": {"name": "lb1"},
            "spec": {"backupMode": "log"},
            "status": {"backoffRetryStatus": [record]},
        }))
        .unwrap();
        let mut s = State::default();
        s.backups.insert("lb1".into(), b);
        s
    }

    #[test]
    fn the_longest_plan_delay_is_found() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let text = "name: d\nclauses: [LBR-1]\nbackups: [{name: lb1}, {name: lb2}]\nplans:\n  lb1:\n    log-start: [{action: fail, delay: 2500ms}]\n  lb2:\n    log-stop: [{action: hang, delay: 20s}, {action: succeed}]\nsteps:\n  - create: {backup: lb1}\n";
        let s = crate::suite::load_str(std::path::Path::new("d.yaml"), text, root).unwrap();
        assert_eq!(longest_plan_delay(&s), Duration::from_secs(20));
        let none = "name: n\nclauses: [LBR-1]\nbackups: [{name: lb1}]\nsteps:\n  - create: {backup: lb1}\n";
        let s = crate::suite::load_str(std::path::Path::new("n.yaml"), none, root).unwrap();
        assert_eq!(longest_plan_delay(&s), Duration::ZERO);
    }

    #[test]
    fn quiet_limit_waits_for_a_pending_retry() {
        let floor = Duration::from_secs(15);
        assert_eq!(quiet_limit(&State::default(), floor), floor);
        let pending = quiet_limit(&with_record(60, false), floor);
        assert!(
            pending > Duration::from_secs(60) && pending <= Duration::from_secs(66),
            "{pending:?}"
        );
        assert_eq!(quiet_limit(&with_record(60, true), floor), floor, "it ran");
        assert_eq!(
            quiet_limit(&with_record(-30, false), floor),
            floor,
            "overdue"
        );
    }
}
