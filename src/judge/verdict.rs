//! The checks every suite gets after its steps, over plain data: the controller under test
//! still running (LBR-14 "neither crashes"), the suite's kernel alive, every armed fault
//! fired, every `events` assertion still holding over the whole trace, no subcommand going
//! back (LBR-16), the schedule judge (LBR-1/2/3) on every Backup — with the margins — and
//! quiet when settled (LBR-17) with the controller's API cost.

use k8s_openapi::jiff::Timestamp;
use lbc_api::Backup;

use super::check::{Finding, Rule};
use super::margin::RecordMargin;
use super::quiet::{Settling, check_quiet};
use super::{BackupNames, check_events, check_no_regression, events_about};
use crate::proxy::{ApiCall, Armed};
use crate::recorder::{Entry, Kind, State};
use crate::suite::model::EventsAssertion;

/// What the runner observed when the steps were over.
#[derive(Debug, Clone, Copy)]
pub struct Finale<'a> {
    pub names: &'a BackupNames,
    /// The cluster at the end of the trace.
    pub state: &'a State,
    pub entries: &'a [Entry],
    /// `events` assertions that held during the steps.
    pub events_held: &'a [EventsAssertion],
    /// How the controller under test exited, if it did.
    pub controller_exit: Option<&'a str>,
    /// How the suite's own kernel (etcd) exited, if it did.
    pub kernel_exit: Option<&'a str>,
    /// The faults the suite armed, as the proxy last saw them.
    pub faults: &'a [Armed],
    /// The controller's API calls; `None`: the run had no proxy (LBR-17 is not judged).
    pub calls: Option<&'a [ApiCall]>,
    /// When each acting step ran: (start, end).
    pub acts: &'a [(Timestamp, Timestamp)],
    /// When the steps began.
    pub started: Timestamp,
    /// When the harness had the controller down: (stopped or killed, started again).
    pub down: &'a [(Timestamp, Timestamp)],
}

/// The judge's word on a suite after its steps.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Verdict {
    /// One per violation, each with its rule; none when the suite passed these checks.
    pub failures: Vec<Finding>,
    /// What the harness measured of every record.
    pub margins: Vec<RecordMargin>,
    /// The longest, over the suite's Backups, of Σ (expectedRetryAt − detectFailedAt) over
    /// its final records whose retry ran: time the suite had to wait.
    pub backoff_seconds: f64,
    /// Armed faults that never fired.
    pub unfired_faults: usize,
    /// The controller's writes in the suite (its API cost), when the run had the proxy.
    pub api_writes: Option<usize>,
    /// Retry cycles the suite went through: the records of every Backup at the end.
    pub retry_cycles: usize,
}

/// Whether the events about `a.backup` match `a` in `state`.
///
/// # Errors
/// What differs.
pub fn events_hold(a: &EventsAssertion, names: &BackupNames, state: &State) -> Result<(), String> {
    let actual = names.actual(&a.backup);
    let uid = state
        .backups
        .get(actual)
        .and_then(|b| b.metadata.uid.clone());
    check_events(a, &events_about(state, actual, uid.as_deref()))
}

/// Judge the end of a suite.
pub fn after_steps(f: &Finale<'_>) -> Verdict {
    let mut out = Verdict::default();
    if let Some(status) = f.controller_exit {
        out.failures.push(Finding::new(
            Rule::ControllerUp,
            format!(
                "the controller under test exited during the suite ({status}); see controller.log"
            ),
        ));
    }
    if let Some(exit) = f.kernel_exit {
        out.failures.push(Finding::new(
            Rule::KernelUp,
            format!("the suite's kernel (etcd) died during the suite ({exit})"),
        ));
    }
    let unfired = unfired(f.faults);
    out.unfired_faults = unfired.len();
    out.failures.extend(
        unfired
            .into_iter()
            .map(|m| Finding::new(Rule::FaultFired, m)),
    );
    for a in f.events_held {
        if let Err(e) = events_hold(a, f.names, f.state) {
            out.failures.push(
                Finding::new(
                    Rule::EventsHeld,
                    format!(
                        "events about {} changed after the assertion held (checked again at the end): {e}",
                        a.backup
                    ),
                )
                .about(&a.backup),
            );
        }
    }
    if let Some(calls) = f.calls {
        let quiet = check_quiet(&Settling {
            entries: f.entries,
            state: f.state,
            calls,
            acts: f.acts,
            started: f.started,
            down: f.down,
        });
        out.api_writes = Some(quiet.writes);
        out.failures
            .extend(quiet.violation.map(|m| Finding::new(Rule::Quiet, m)));
    }
    for (decl, actual) in &f.names.0 {
        out.failures.extend(
            check_no_regression(f.entries, actual).into_iter().map(|v| {
                Finding::new(Rule::NoRegression, format!("phases, {decl}: {v}")).about(decl)
            }),
        );
        let Some(b) = final_backup(f, actual) else {
            continue;
        };
        let check = super::schedule::check_schedule_with(&b, f.entries, f.down);
        out.failures.extend(
            check
                .violations
                .into_iter()
                .map(|v| Finding::new(v.rule, format!("schedule judge, {decl}: {v}")).about(decl)),
        );
        out.margins
            .extend(check.margins.into_iter().map(|m| RecordMargin {
                backup: decl.clone(),
                ..m
            }));
        if let Some(calls) = f.calls {
            out.failures.extend(
                super::schedule::check_detection_times(actual, f.entries, calls)
                    .into_iter()
                    .map(|v| {
                        Finding::new(Rule::DetectionTime, format!("schedule judge, {decl}: {v}"))
                            .about(decl)
                    }),
            );
        }
        // Backups wait side by side: the suite waits for the longest of them.
        out.backoff_seconds = out.backoff_seconds.max(backoff_waited(&b));
        out.retry_cycles += b
            .status
            .as_ref()
            .map_or(0, |s| s.backoff_retry_status.len());
    }
    out
}

/// The Backup as it ended; one deleted during the suite is judged as it last was.
fn final_backup(f: &Finale<'_>, actual: &str) -> Option<Backup> {
    f.state.backups.get(actual).cloned().or_else(|| {
        f.entries
            .iter()
            .rev()
            .find(|e| e.kind == Kind::Backup && !e.deleted && e.name == actual)
            .and_then(|e| serde_json::from_value::<Backup>(e.object.clone()).ok())
    })
}

/// The backoff of the records whose retry ran: a suite that stops before a long delay does
/// not wait it.
fn backoff_waited(b: &Backup) -> f64 {
    b.status
        .as_ref()
        .map(|s| s.backoff_retry_status.as_slice())
        .unwrap_or_default()
        .iter()
        .filter_map(
            |r| match (&r.detect_failed_at, &r.expected_retry_at, &r.real_retry_at) {
                (Some(d), Some(e), Some(_)) => Some(e.0.duration_since(d.0).as_secs_f64()),
                _ => None,
            },
        )
        .sum()
}

/// A failure for each armed fault that never fired: its suite tested nothing with it.
fn unfired(armed: &[Armed]) -> Vec<String> {
    armed
        .iter()
        .filter(|a| a.fired.is_none())
        .map(|a| {
            format!(
                "{}: the controller never made the request this fault waits for ({}): {} matching request(s) came, the fault waited for number {}",
                a.fault.label,
                a.fault.action.describe(),
                a.seen,
                a.fault.occurrence
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use serde_json::json;

    fn finale<'a>(
        names: &'a BackupNames,
        state: &'a State,
        controller: Option<&'a str>,
        kernel: Option<&'a str>,
    ) -> Finale<'a> {
        Finale {
            names,
            state,
            entries: &[],
            events_held: &[],
            controller_exit: controller,
            kernel_exit: kernel,
            faults: &[],
            calls: None,
            acts: &[],
            started: Timestamp::UNIX_EPOCH,
            down: &[],
        }
    }

    #[rstest]
    #[case(None, None, 0)]
    #[case(Some("signal 9"), None, 1)]
    #[case(None, Some("exit 1"), 1)]
    #[case(Some("signal 9"), Some("exit 1"), 2)]
    fn a_dead_controller_or_kernel_fails_the_suite(
        #[case] controller: Option<&str>,
        #[case] kernel: Option<&str>,
        #[case] failures: usize,
    ) {
        let (names, state) = (BackupNames::default(), State::default());
        let v = after_steps(&finale(&names, &state, controller, kernel));
        assert_eq!(v.failures.len(), failures, "{:?}", v.failures);
    }

    #[test]
    fn margins_carry_the_suites_name_and_backoff_counts_retries_that_ran() {
        let at = |s: &str| format!("2026-01-01T00:00:{s}Z");
        let b: Backup = serde_json::from_value(json!({
            "apiVersion": "pingcap.com/v1alpha1", "kind": "Backup",
            "metadata": {"name": "x-lb1"},
            "spec": {"backupMode": "log", "backoffRetryPolicy": {"minRetryDuration": "2s"}},
            "status": {"backoffRetryStatus": [
                {"retryNum": 1, "detectFailedAt": at("00"), "expectedRetryAt": at("02"),
                 "realRetryAt": at("02")},
                {"retryNum": 2, "detectFailedAt": at("10"), "expectedRetryAt": at("14")}
            ]}
        }))
        .unwrap();
        let mut state = State::default();
        state.backups.insert("x-lb1".into(), b);
        let names = BackupNames([("lb1".to_owned(), "x-lb1".to_owned())].into());
        let v = after_steps(&finale(&names, &state, None, None));
        assert!(
            (v.backoff_seconds - 2.0).abs() < 1e-9,
            "{}",
            v.backoff_seconds
        );
        assert_eq!(v.margins.len(), 2);
        assert!(
            v.margins
                .iter()
                .all(|m| m.backup == "lb1" && m.actual == "x-lb1")
        );
        // A second Backup waiting 2 s beside it: the suite still waits 2 s, not 4.
        let mut b2 = state.backups["x-lb1"].clone();
        b2.metadata.name = Some("x-lb2".into());
        state.backups.insert("x-lb2".into(), b2);
        let names = BackupNames(
            [("lb1", "x-lb1"), ("lb2", "x-lb2")]
                .map(|(a, b)| (a.to_owned(), b.to_owned()))
                .into(),
        );
        let v = after_steps(&finale(&names, &state, None, None));
        assert!(
            (v.backoff_seconds - 2.0).abs() < 1e-9,
            "{}",
            v.backoff_seconds
        );
    }
}
