//! LBR-17 "Quiet when settled": once nothing is due — no Job running, no retry pending, the
//! kernel and the spec unchanged — the controller writes nothing. Judged on every suite over
//! the controller's API calls (the proxy's log) after the last thing that could call for a
//! write, and the controller's writes counted as its API cost.
//!
//! What may call for a write (a *cause*): a Job or Pod of the suite changing, a step that
//! acts (create, patch, delete, plan, kernel, killJob, controller, fault), a fault firing,
//! the controller coming back after the harness stopped it, a record's `expectedRetryAt`
//! (a retry falling due, or a recovery). The controller's own writes (status, Jobs it
//! creates, events) are not causes. After the last cause the controller has [`REACTION`]
//! to finish reacting — as long as LBR-1 gives it to notice a failure — and a write about
//! the suite's Backups after that (the Backup, its Jobs, an event about a Backup) is a write
//! while settled. Writes about anything else (a TidbCluster's events, leader election) are
//! the controller's own business.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use crate::proxy::{ApiCall, Verb};
use crate::recorder::{Entry, Kind, State};

/// How long a controller may go on reacting to the last cause: LBR-1's detection bound (a
/// conforming controller may notice a failure that late, then write).
pub const REACTION: Duration = super::contract::DETECT_WITHIN;
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
    /// When the harness had the controller down: (stopped, started again).
    pub down: &'a [(Timestamp, Timestamp)],
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

/// Whether `call` writes something about the suite's Backups: a Backup, a Job, or an event
/// whose subject is a Backup (`about_backups`: such events' names, from the trace).
fn is_write(call: &ApiCall, about_backups: &BTreeSet<&str>) -> bool {
    if !call.request.verb.is_some_and(Verb::is_write) {
        return false;
    }
    match call.request.resource.as_deref() {
        Some("backups" | "jobs") => true,
        Some("events") => call
            .request
            .name
            .as_deref()
            .or(call.created.as_deref())
            .is_some_and(|n| about_backups.contains(n)),
        _ => false,
    }
}

/// The names of the events about Backups the trace holds.
fn events_about_backups(entries: &[Entry]) -> BTreeSet<&str> {
    entries
        .iter()
        .filter(|e| e.kind == Kind::Event)
        .filter(|e| {
            e.object["regarding"]["kind"] == "Backup"
                || e.object["involvedObject"]["kind"] == "Backup"
        })
        .map(|e| e.name.as_str())
        .collect()
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
    let restarts = s
        .down
        .iter()
        .map(|(_, up)| (*up, "the controller started again".to_owned()));
    let due = s.state.backups.values().flat_map(|b| {
        b.status
            .iter()
            .flat_map(|st| &st.backoff_retry_status)
            .filter_map(|r| r.expected_retry_at.as_ref())
            .map(|t| (t.0, "a retry fell due".to_owned()))
    });
    changes
        .chain(acts)
        .chain(faults)
        .chain(restarts)
        .chain(due)
        .max_by_key(|(t, _)| *t)
}

fn since(t0: Timestamp, t: Timestamp) -> f64 {
    t.duration_since(t0).as_secs_f64()
}

/// Judge LBR-17 over one suite.
pub fn check_quiet(s: &Settling<'_>) -> QuietCheck {
    let about = events_about_backups(s.entries);
    let writes: Vec<&ApiCall> = s.calls.iter().filter(|c| is_write(c, &about)).collect();
    let mut out = QuietCheck {
        writes: writes.len(),
        ..QuietCheck::default()
    };
    // A Job still running is something due; a retry still to come is a cause in the future.
    if !s.state.unfinished_jobs().is_empty() {
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
        "LBR-17: nothing was due from +{:.1}s ({cause} at +{:.1}s, then {}s to react), yet the controller wrote about the Backups {} time(s): {}{}",
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
            down: &[],
        })
    }

    const STATUS: &str = "/apis/pingcap.com/v1alpha1/namespaces/s/backups/lb1";
    const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/s/events";

    fn event_about(name: &str, kind: &str) -> Entry {
        let mut e = Entry::for_test(
            Kind::Event,
            name,
            json!({"metadata": {"name": name}, "regarding": {"kind": kind, "name": "lb1"}}),
        );
        e.at = t(11);
        e
    }

    fn post_event(at: i64, name: &str) -> ApiCall {
        ApiCall {
            created: Some(name.into()),
            ..call(at, "POST", EVENTS)
        }
    }

    #[test]
    fn writes_in_reaction_to_the_last_change_are_fine() {
        let entries = [job(2, false), job(10, true), event_about("e1", "Backup")];
        let calls = [
            call(11, "PUT", STATUS),
            post_event(12, "e1"),
            call(25, "GET", STATUS),
        ];
        let q = judge(&entries, &calls);
        assert_eq!(q.violation, None);
        assert_eq!(q.writes, 2);
        assert_eq!(q.settled_at, Some(t(20)));
    }

    #[test]
    fn a_write_while_settled_fails_naming_it() {
        let entries = [job(2, false), job(10, true)];
        let calls = [call(11, "PUT", STATUS), call(25, "PUT", STATUS)];
        let v = judge(&entries, &calls).violation.unwrap();
        assert!(v.starts_with("LBR-17: nothing was due from +20.0s"), "{v}");
        assert!(v.contains("+25.0s"), "{v}");
    }

    #[test]
    fn a_running_job_a_lease_or_another_objects_event_is_not_judged() {
        let calls = [call(30, "PUT", STATUS)];
        assert_eq!(judge(&[job(2, false)], &calls).violation, None);
        let lease = [call(
            30,
            "PUT",
            "/apis/coordination.k8s.io/v1/namespaces/s/leases/op",
        )];
        let q = judge(&[job(2, true)], &lease);
        assert_eq!((q.violation, q.writes), (None, 0));
        // TiDB Operator repeats an event about its TidbCluster every resync: not ours.
        let entries = [job(2, true), event_about("tc", "TidbCluster")];
        let q = judge(&entries, &[post_event(30, "tc")]);
        assert_eq!((q.violation, q.writes), (None, 0));
    }

    #[test]
    fn a_retry_falling_due_and_a_restart_are_causes() {
        let mut b: lbc_api::Backup = serde_json::from_value(json!({
            "apiVersion": "pingcap.com/v1alpha1", "kind": "Backup",
            "metadata": {"name": "lb1"}, "spec": {},
            "status": {"backoffRetryStatus": [{"retryNum": 1,
                "expectedRetryAt": t(18).to_string()}]}
        }))
        .unwrap();
        let entries = [job(2, true)];
        let mut state = State::replay(&entries);
        state.backups.insert("lb1".into(), b.clone());
        let calls = [call(20, "PUT", STATUS)];
        let check = |state: &State, down: &[(Timestamp, Timestamp)]| {
            check_quiet(&Settling {
                entries: &entries,
                state,
                calls: &calls,
                acts: &[],
                started: t(0),
                down,
            })
        };
        // The recovery write at +20 s answers the retry due at +18 s.
        assert_eq!(check(&state, &[]).violation, None);
        b.status = None;
        state.backups.insert("lb1".into(), b);
        assert!(check(&state, &[]).violation.is_some());
        // The controller back at +15 s may write at +20 s.
        assert_eq!(check(&state, &[(t(5), t(15))]).violation, None);
    }
}
