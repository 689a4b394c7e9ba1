//! LBR-17 "Quiet when settled": once nothing is due — no Job running, no retry pending, the
//! kernel and the spec unchanged — the controller writes nothing. Judged on every suite over
//! the controller's API calls (the proxy's log) after the last thing that could call for a
//! write, and the controller's writes counted as its API cost.
//!
//! What may call for a write (a *cause*): a Job or Pod of the suite changing, a step that
//! acts (create, patch, delete, plan, kernel, killJob, controller, fault), a fault firing.
//! The controller's own writes (status, Jobs it creates, events) are not causes. After the
//! last cause the controller has [`REACTION`] to finish reacting; a write after that is a
//! write while settled.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use crate::proxy::{ApiCall, Verb};
use crate::recorder::{Entry, Kind, State};

/// How long a controller may go on reacting to the last cause (status, events, the Job it
/// deletes); a harness default like LBR-3's lateness.
pub const REACTION: Duration = Duration::from_secs(3);
/// Writes shown when the suite fails on LBR-17.
const SHOWN: usize = 5;

/// What the quiet judge reads.
#[derive(Debug, Clone, Copy)]
pub struct Settling<'a> {
    pub entries: &'a [Entry],
    /// The cluster at the end of the trace.
    pub state: &'a State,
    /// The controller's API calls.
    pub calls: &'a [ApiCall],
    /// When each acting step ran: (start, end).
    pub acts: &'a [(Timestamp, Timestamp)],
    /// When the suite began its steps (times in messages count from it).
    pub started: Timestamp,
}

/// The quiet judge's findings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QuietCheck {
    /// When the suite was settled (the last cause + [`REACTION`]); `None`: never (a Job
    /// still running, a retry still pending).
    pub settled_at: Option<Timestamp>,
    pub violation: Option<String>,
    /// Every write the controller made in the suite (its API cost).
    pub writes: usize,
}

/// Whether `call` writes something about the suite (leases are the controller's own).
fn is_write(call: &ApiCall) -> bool {
    call.request.verb.is_some_and(Verb::is_write)
        && call.request.resource.as_deref() != Some("leases")
}

/// A retry is pending for a Backup whose last record has not run and that has not ended.
fn retry_pending(state: &State) -> bool {
    state.backups.values().any(|b| {
        let Some(st) = &b.status else { return false };
        let ended = st
            .phase
            .is_some_and(|p| matches!(p, lbc_api::BackupConditionType::Failed));
        !ended
            && st
                .backoff_retry_status
                .last()
                .is_some_and(|r| r.real_retry_at.is_none())
    })
}

/// The last cause of a write, and what it was.
fn last_cause(s: &Settling<'_>) -> Option<(Timestamp, String)> {
    let changes = s
        .entries
        .iter()
        .filter(|e| matches!(e.kind, Kind::Job | Kind::Pod))
        .map(|e| (e.at, format!("{:?} {} changed", e.kind, e.name)));
    let acts = s
        .acts
        .iter()
        .map(|(_, end)| (*end, "a step acted".to_owned()));
    let faults = s
        .calls
        .iter()
        .filter(|c| c.fault.is_some())
        .map(|c| (c.end.unwrap_or(c.start), "a fault fired".to_owned()));
    changes.chain(acts).chain(faults).max_by_key(|(t, _)| *t)
}

fn since(t0: Timestamp, t: Timestamp) -> f64 {
    t.duration_since(t0).as_secs_f64()
}

/// Judge LBR-17 over one suite.
pub fn check_quiet(s: &Settling<'_>) -> QuietCheck {
    let writes: Vec<&ApiCall> = s.calls.iter().filter(|c| is_write(c)).collect();
    let mut out = QuietCheck {
        writes: writes.len(),
        ..QuietCheck::default()
    };
    if !s.state.unfinished_jobs().is_empty() || retry_pending(s.state) {
        return out;
    }
    let Some((cause_at, cause)) = last_cause(s) else {
        return out;
    };
    let Ok(settled) = cause_at.checked_add(REACTION) else {
        return out;
    };
    out.settled_at = Some(settled);
    // Writes that took effect: a rejected attempt changed nothing (it still costs).
    let late: Vec<&&ApiCall> = writes
        .iter()
        .filter(|c| c.start > settled && (200..300).contains(&c.status))
        .collect();
    if late.is_empty() {
        return out;
    }
    let shown: Vec<String> = late
        .iter()
        .take(SHOWN)
        .map(|c| {
            format!(
                "+{:.1}s {}",
                since(s.started, c.start),
                c.request.describe()
            )
        })
        .collect();
    out.violation = Some(format!(
        "LBR-17: nothing was due from +{:.1}s ({cause} at +{:.1}s, then {}s to react), yet the controller wrote {} time(s): {}{}",
        since(s.started, settled),
        since(s.started, cause_at),
        REACTION.as_secs(),
        late.len(),
        shown.join(", "),
        if late.len() > SHOWN { ", …" } else { "" }
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::RequestInfo;
    use serde_json::json;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_000 + secs).unwrap()
    }

    fn call(at: i64, method: &str, path: &str) -> ApiCall {
        ApiCall {
            seq: 0,
            start: t(at),
            end: Some(t(at)),
            request: RequestInfo::parse(method, path, None),
            rv_sent: None,
            rv_returned: None,
            created: None,
            reason: None,
            status: 200,
            watch_events: None,
            fault: None,
        }
    }

    fn job(at: i64, finished: bool) -> Entry {
        let status = if finished {
            json!({"conditions": [{"type": "Complete", "status": "True"}]})
        } else {
            json!({})
        };
        let mut e = Entry::for_test(
            Kind::Job,
            "backup-lb1-log-start",
            json!({"metadata": {"name": "backup-lb1-log-start", "uid": "u"}, "status": status}),
        );
        e.at = t(at);
        e
    }

    fn judge(entries: &[Entry], calls: &[ApiCall]) -> QuietCheck {
        let state = State::replay(entries);
        check_quiet(&Settling {
            entries,
            state: &state,
            calls,
            acts: &[(t(0), t(1))],
            started: t(0),
        })
    }

    const STATUS: &str = "/apis/pingcap.com/v1alpha1/namespaces/s/backups/lb1";
    const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/s/events";

    #[test]
    fn writes_in_reaction_to_the_last_change_are_fine() {
        let entries = [job(2, false), job(10, true)];
        let calls = [
            call(11, "PUT", STATUS),
            call(12, "POST", EVENTS),
            call(20, "GET", STATUS),
        ];
        let q = judge(&entries, &calls);
        assert_eq!(q.violation, None);
        assert_eq!(q.writes, 2);
        assert_eq!(q.settled_at, Some(t(13)));
    }

    #[test]
    fn a_write_while_settled_fails_naming_it() {
        let entries = [job(2, false), job(10, true)];
        let calls = [call(11, "PUT", STATUS), call(20, "PUT", STATUS)];
        let v = judge(&entries, &calls).violation.unwrap();
        assert!(v.starts_with("LBR-17: nothing was due from +13.0s"), "{v}");
        assert!(v.contains("+20.0s"), "{v}");
    }

    #[test]
    fn a_running_job_or_a_lease_is_not_judged() {
        let calls = [call(30, "PUT", STATUS)];
        assert_eq!(judge(&[job(2, false)], &calls).violation, None);
        let lease = [call(
            30,
            "PUT",
            "/apis/coordination.k8s.io/v1/namespaces/s/leases/op",
        )];
        let q = judge(&[job(2, true)], &lease);
        assert_eq!((q.violation, q.writes), (None, 0));
    }
}
