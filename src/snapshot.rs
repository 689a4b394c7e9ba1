//! The contract snapshot of a suite: only what `CONTRACT.md` fixes, so every conforming
//! controller produces the same text. Per Backup: the phase where the contract fixes one
//! (`Failed`, `Invalid` with its reason; `RetryFailed` while a retry waits; else `not
//! failed`), the phase of the subcommand the spec asks for (`Complete`, `Failed` or
//! `other`; not for a Backup that ended or is being deleted), each record (number, delay,
//! punctuality — "not early" for a snapshot backup — reasons), the four contract events by
//! type, reason and count, and the Jobs per subcommand: how each failed attempt failed,
//! the others `not failed` — taken from the trace, not from events. Messages, extra events,
//! other subcommands and leftover conditions are not in it. Compared with the committed
//! `tests/snapshots/suites__<name>.snap`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use kube::ResourceExt;
use lbc_api::{BackoffRetryRecord, BackupCondition, BackupConditionType as C};
use serde_json::{Value, json};

use crate::judge::margin::{self, Punctuality, RealRetry};
use crate::judge::{BackupNames, contract, events_about, job_failed};
use crate::recorder::{Entry, Kind, State};

/// Phases whose condition reason the contract fixes.
const CONTRACT_CONDITIONS: [C; 2] = [C::Failed, C::Invalid];
/// Reasons the contract names; any other reason shows as `[other]`.
const CONTRACT_REASONS: [&str; 6] = [
    "ExceededMaxRetries",
    "RetryTimeout",
    "AlreadyFailed",
    "InvalidSpec",
    "LogBackupKernelSync",
    "LogBackupKeyNotFound",
];
/// The events the contract fixes (LBR-9).
const CONTRACT_EVENTS: [&str; 4] = [
    "RetryStarted",
    "RetrySucceeded",
    "RetryExhausted",
    "BackupFailed",
];

/// A record in the contract's words: its delay as persisted (`detectFailedAt + 6s`), the
/// judge's punctuality of its `realRetryAt`, the Job named or not.
pub(crate) fn record(
    r: &BackoffRetryRecord,
    granularity: Duration,
    backup: &str,
    down: &[(jiff::Timestamp, jiff::Timestamp)],
) -> Value {
    let round = |secs: f64| {
        let g = granularity.as_secs_f64().max(0.001);
        (secs / g).round() * g
    };
    let claim = margin::claim_with(r, down);
    let expected = claim.delay.map_or(Value::Null, |d| {
        let sign = if d.is_negative() { "−" } else { "+" };
        json!(format!(
            "detectFailedAt {sign} {}",
            contract::show(d.unsigned_abs())
        ))
    });
    let real = match claim.real {
        RealRetry::Measured(Punctuality::OnTime(_)) => {
            json!(format!("on time (within {}s)", Punctuality::bound()))
        }
        RealRetry::Measured(Punctuality::Early(s)) => json!(format!("{}s early", round(s))),
        RealRetry::Measured(Punctuality::Late(s)) => json!(format!("{}s late", round(s))),
        RealRetry::Pending => json!("pending"),
        RealRetry::WithoutExpected => json!("[set]"),
    };
    let names_job = r
        .retry_reason
        .as_deref()
        .is_some_and(|x| lbc_api::names::names_job_of(x, backup));
    json!({
        "retryNum": r.retry_num,
        "expectedRetryAt": expected,
        "realRetryAt": real,
        "retryReason": if names_job { "names the Job" } else { "does not name the Job" },
        "originalReason": r.original_reason,
    })
}

/// The reason of the condition that made the phase, where the phase is one the contract
/// gives a reason for (`Failed`, `Invalid`); leftover conditions of earlier phases are a
/// controller's own business.
fn phase_reason(phase: Option<C>, list: &[BackupCondition]) -> Value {
    let Some(phase) = phase.filter(|p| CONTRACT_CONDITIONS.contains(p)) else {
        return Value::Null;
    };
    let reason = list
        .iter()
        .find(|c| c.type_ == phase && c.status == "True")
        .map(|c| match c.reason.as_deref() {
            Some(r) if CONTRACT_REASONS.contains(&r) => r,
            Some(_) => "[other]",
            None => "[none]",
        });
    json!(reason.unwrap_or("[no condition]"))
}

/// The Jobs of the Backup named `actual`, per subcommand, each attempt (a distinct uid) with
/// how it last looked: `Failed (reason)`, `Complete`, or `unfinished`.
pub(crate) fn jobs(entries: &[Entry], actual: &str) -> Value {
    let mut attempts: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for e in entries.iter().filter(|e| e.kind == Kind::Job && !e.deleted) {
        let Some(sub) = lbc_api::names::job_subcommand(actual, &e.name).map(str::to_owned) else {
            continue;
        };
        let Ok(job) = serde_json::from_value::<k8s_openapi::api::batch::v1::Job>(e.object.clone())
        else {
            continue;
        };
        let uid = job.metadata.uid.clone().unwrap_or_default();
        let complete = job
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c.type_ == "Complete" && c.status == "True")
            });
        let outcome = match job_failed(&job) {
            Some(reason) => format!("Failed ({reason})"),
            None if complete => "Complete".into(),
            None => "unfinished".into(),
        };
        let list = attempts.entry(sub).or_default();
        match list.iter_mut().find(|(u, _)| *u == uid) {
            Some(a) => a.1 = outcome,
            None => list.push((uid, outcome)),
        }
    }
    json!(
        attempts
            .into_iter()
            .map(|(sub, list)| (sub, list.into_iter().map(|(_, o)| o).collect::<Vec<_>>()))
            .collect::<BTreeMap<_, _>>()
    )
}

/// The contract events about a Backup by reason and type with their counts, in the order
/// each first occurred (so a count that changes reads as a change of that line).
fn contract_events(state: &State, actual: &str, uid: Option<&str>) -> Vec<Value> {
    let mut folded: Vec<((String, String), u32)> = Vec::new();
    // `events_about` gives them in order of first occurrence.
    for e in events_about(state, actual, uid)
        .into_iter()
        .filter(|e| CONTRACT_EVENTS.contains(&e.reason.as_str()))
    {
        let key = (e.reason, e.type_);
        match folded.iter_mut().find(|(k, _)| *k == key) {
            Some((_, n)) => *n += e.count,
            None => folded.push((key, e.count)),
        }
    }
    folded
        .into_iter()
        .map(|((reason, type_), count)| json!({"reason": reason, "type": type_, "count": count}))
        .collect()
}

/// The Backup's phase as far as the contract fixes it: `Failed` and `Invalid` (LBR-5/6/7/
/// 10/14), `RetryFailed` while a retry waits (LBR-3); any other phase (`Running`,
/// `Complete`, `Paused`, `RetryFailed` after the retry ran, …) is a controller's choice.
fn contract_phase(phase: Option<C>, pending: bool) -> Value {
    match phase {
        Some(p @ (C::Failed | C::Invalid)) => json!(p),
        Some(C::RetryFailed) if pending => json!(C::RetryFailed),
        // Waiting, yet not showing it: the contract's claim fails visibly.
        Some(p) if pending => json!(p),
        None if pending => Value::Null,
        _ => json!("not failed"),
    }
}

/// A subcommand's phase in the contract's words: `Complete`, `Failed`, or `other`.
fn contract_sub_phase(phase: Option<C>) -> Value {
    match phase {
        Some(p @ (C::Complete | C::Failed)) => json!(p),
        Some(_) => json!("other"),
        None => Value::Null,
    }
}

/// Jobs as the contract sees them: how each failed attempt failed (the harness provoked
/// it), and whether the others failed — `Complete` or still running is Kubernetes' and the
/// controller's business (a controller may delete a finished Job).
fn contract_jobs(mut jobs: Value) -> Value {
    if let Some(m) = jobs.as_object_mut() {
        for list in m.values_mut() {
            if let Some(a) = list.as_array_mut() {
                for o in a.iter_mut() {
                    if matches!(o.as_str(), Some("Complete" | "unfinished")) {
                        *o = json!("not failed");
                    }
                }
            }
        }
    }
    jobs
}

/// A record in the contract's words. A snapshot backup's retry keeps the operator's own
/// timing (LBR-13: its resync, whole seconds): only "not early" is fixed there.
fn contract_record(mut r: Value, log: bool) -> Value {
    if !log
        && let Some(real) = r.get_mut("realRetryAt")
        && real
            .as_str()
            .is_some_and(|x| x.starts_with("on time") || x.ends_with(" late"))
    {
        *real = json!("set, not early");
    }
    r
}

/// The contract snapshot of the Backups in `names` at `state`, with Jobs from `entries`.
pub fn normalize(
    names: &BackupNames,
    state: &State,
    entries: &[Entry],
    granularity: Duration,
    down: &[(jiff::Timestamp, jiff::Timestamp)],
) -> String {
    let mut out = serde_json::Map::new();
    for (decl, actual) in &names.0 {
        let Some(b) = state.backups.get(actual) else {
            out.insert(
                decl.clone(),
                json!({"deleted": true, "jobs": contract_jobs(jobs(entries, actual))}),
            );
            continue;
        };
        let st = b.status.clone().unwrap_or_default();
        let log = b.spec.backup_mode == lbc_api::BackupMode::Log;
        let records: Vec<Value> = st
            .backoff_retry_status
            .iter()
            .map(|r| contract_record(record(r, granularity, actual, down), log))
            .collect();
        let pending = st
            .backoff_retry_status
            .last()
            .is_some_and(|r| r.real_retry_at.is_none());
        let events = contract_events(state, actual, b.uid().as_deref());
        let mut v = json!({
            "phase": contract_phase(st.phase, pending),
            "phaseReason": phase_reason(st.phase, &st.conditions),
            "backoffRetryStatus": records,
            "events": events,
            "jobs": contract_jobs(jobs(entries, actual)),
        });
        let ended = matches!(st.phase, Some(C::Failed | C::Invalid));
        // Being deleted (a finalizer holds it): LBR-12 fixes that no retry Job runs, not
        // what the phases show meanwhile (TiDB Operator runs log-stop and shows Stopped).
        let terminating = b.metadata.deletion_timestamp.is_some();
        if let Some(m) = v.as_object_mut() {
            if terminating {
                m.remove("phase");
                m.remove("phaseReason");
                m.insert("terminating".into(), json!(true));
            } else if log && !ended && !pending {
                // Only the subcommand the spec asks for, in the contract's words (LBR-4:
                // `Complete`); the others, and one whose Backup ended or waits for a
                // retry, are left open.
                let sub = b
                    .spec
                    .log_subcommand
                    .unwrap_or(lbc_api::LogSubcommand::Start);
                let phase = st
                    .log_sub_command_statuses
                    .get(sub.as_str())
                    .and_then(|s| s.phase);
                m.insert(
                    "subcommand".into(),
                    json!({ sub.as_str(): contract_sub_phase(phase) }),
                );
            }
        }
        out.insert(decl.clone(), v);
    }
    serde_yaml::to_string(&Value::Object(out)).unwrap_or_default()
}

/// Compare `got` with the committed snapshot `dir/suites__<name>.snap`.
///
/// # Errors
/// A message with a unified diff (committed → got), or that there is none committed.
pub fn compare(dir: &Path, name: &str, got: &str) -> Result<(), String> {
    let path = dir.join(format!("suites__{name}.snap"));
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Err(format!(
            "no committed snapshot {}; snapshots are recorded from the reference controller: run `cargo test --features e2e` in the checkout and review the new one with `cargo insta review`",
            path.display()
        ));
    };
    // insta's file: a `---` header block, then the body.
    let want = text
        .strip_prefix("---")
        .and_then(|t| t.split_once("\n---\n"))
        .map_or(text.as_str(), |(_, body)| body)
        .trim_end();
    if want == got.trim_end() {
        return Ok(());
    }
    let diff = similar::TextDiff::from_lines(want, got.trim_end())
        .unified_diff()
        .context_radius(3)
        .header(&path.display().to_string(), "this run")
        .to_string();
    let first = match (
        serde_yaml::from_str::<Value>(want),
        serde_yaml::from_str::<Value>(got),
    ) {
        (Ok(w), Ok(g)) => first_difference(&w, &g, "").map(|d| format!(" — {d}")),
        _ => None,
    };
    Err(format!(
        "the contract snapshot differs from {}{}:\n{diff}",
        path.display(),
        first.unwrap_or_default()
    ))
}

/// The first difference between the committed snapshot (`want`) and this run's (`got`), in
/// a line: where, what this run has, what was expected. Contract events are matched by
/// reason and type, so a count change reads as one (`lb1.events: RetryStarted ×3, expected
/// ×1`).
pub(crate) fn first_difference(want: &Value, got: &Value, at: &str) -> Option<String> {
    let here = |rest: &str| {
        if at.is_empty() {
            rest.to_owned()
        } else if rest.starts_with('[') {
            format!("{at}{rest}")
        } else {
            format!("{at}.{rest}")
        }
    };
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => {
            let keys: std::collections::BTreeSet<&String> = w.keys().chain(g.keys()).collect();
            keys.into_iter().find_map(|k| match (w.get(k), g.get(k)) {
                (Some(a), Some(b)) => first_difference(a, b, &here(k)),
                (Some(a), None) => Some(format!("{}: absent, expected {}", here(k), short(a))),
                (None, Some(b)) => Some(format!("{}: {}, expected none", here(k), short(b))),
                (None, None) => None,
            })
        }
        (Value::Array(w), Value::Array(g)) if at.ends_with("events") => event_difference(w, g, at),
        (Value::Array(w), Value::Array(g)) => w
            .iter()
            .zip(g)
            .enumerate()
            .find_map(|(i, (a, b))| first_difference(a, b, &here(&format!("[{i}]"))))
            .or_else(|| {
                (w.len() != g.len())
                    .then(|| format!("{at}: {} item(s), expected {}", g.len(), w.len()))
            }),
        (w, g) if w == g => None,
        (w, g) => Some(format!("{at}: {}, expected {}", short(g), short(w))),
    }
}

/// Contract events differ: the first (reason, type) whose count is not the committed one.
fn event_difference(want: &[Value], got: &[Value], at: &str) -> Option<String> {
    let count = |list: &[Value], e: &Value| {
        list.iter()
            .find(|x| x["reason"] == e["reason"] && x["type"] == e["type"])
            .map(|x| x["count"].clone())
    };
    let label = |e: &Value| {
        format!(
            "{} ({})",
            e["reason"].as_str().unwrap_or("?"),
            e["type"].as_str().unwrap_or("?")
        )
    };
    want.iter()
        .chain(got)
        .find_map(|e| match (count(want, e), count(got, e)) {
            (Some(w), Some(g)) if w == g => None,
            (Some(w), Some(g)) => Some(format!("{at}: {} ×{g}, expected ×{w}", label(e))),
            (Some(w), None) => Some(format!("{at}: no {}, expected ×{w}", label(e))),
            (None, Some(g)) => Some(format!("{at}: {} ×{g}, expected none", label(e))),
            (None, None) => None,
        })
}

/// A value in a line (long ones cut).
fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 80 {
        format!("{}…", s.chars().take(80).collect::<String>())
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[test]
    fn contract_events_come_in_the_order_they_first_occurred() {
        let event = |name: &str, reason: &str, at: &str| {
            entry(
                Kind::Event,
                name,
                json!({"metadata": {"name": name}, "reason": reason, "type": "Normal",
                       "eventTime": at, "regarding": {"kind": "Backup", "name": "lb1", "uid": "u1"}}),
            )
        };
        let entries = vec![
            event("e1", "RetryStarted", "2026-01-01T00:00:01.000000Z"),
            event("e2", "RetrySucceeded", "2026-01-01T00:00:03.000000Z"),
            event("e3", "RetryStarted", "2026-01-01T00:00:05.000000Z"),
        ];
        let got = contract_events(&State::replay(&entries), "lb1", Some("u1"));
        let reasons: Vec<(&str, u64)> = got
            .iter()
            .map(|e| (e["reason"].as_str().unwrap(), e["count"].as_u64().unwrap()))
            .collect();
        assert_eq!(reasons, [("RetryStarted", 2), ("RetrySucceeded", 1)]);
    }

    #[rstest]
    #[case::same("a: 1", "a: 1", None)]
    #[case::scalar(
        "lb1: {phase: Running}",
        "lb1: {phase: Failed}",
        Some(r#"lb1.phase: "Failed", expected "Running""#)
    )]
    #[case::record(
        "lb1: {r: [{n: 1}, {n: 2}]}",
        "lb1: {r: [{n: 1}, {n: 3}]}",
        Some("lb1.r[1].n: 3, expected 2")
    )]
    #[case::fewer(
        "lb1: {r: [1, 2]}",
        "lb1: {r: [1]}",
        Some("lb1.r: 1 item(s), expected 2")
    )]
    #[case::key("lb1: {a: 1}", "lb1: {a: 1, b: 2}", Some("lb1.b: 2, expected none"))]
    #[case::count(
        "lb1: {events: [{reason: RetryStarted, type: Normal, count: 1}]}",
        "lb1: {events: [{reason: BackupFailed, type: Warning, count: 1}, {reason: RetryStarted, type: Normal, count: 3}]}",
        Some("lb1.events: RetryStarted (Normal) ×3, expected ×1")
    )]
    #[case::missing_event(
        "lb1: {events: [{reason: RetryExhausted, type: Warning, count: 1}]}",
        "lb1: {events: []}",
        Some("lb1.events: no RetryExhausted (Warning), expected ×1")
    )]
    fn the_first_difference_reads_in_a_line(
        #[case] want: &str,
        #[case] got: &str,
        #[case] line: Option<&str>,
    ) {
        let v = |t: &str| serde_yaml::from_str::<Value>(t).unwrap();
        assert_eq!(first_difference(&v(want), &v(got), "").as_deref(), line);
    }

    fn entry(kind: Kind, name: &str, object: Value) -> Entry {
        Entry {
            at: k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            received: std::time::Instant::now(),
            kind,
            name: name.into(),
            deleted: false,
            object,
        }
    }

    #[test]
    fn only_what_the_contract_fixes() {
        let b = json!({
            "apiVersion": "pingcap.com/v1alpha1", "kind": "Backup",
            "metadata": {"name": "3fa9-lb1", "namespace": "suite-a", "uid": "u1", "resourceVersion": "77"},
            "spec": {"backupMode": "log"},
            "status": {"phase": "Running", "commitTs": "4711",
              "conditions": [{"type": "Running", "status": "True", "lastTransitionTime": "2026-01-01T00:00:09Z"},
                             {"type": "RetryFailed", "status": "True", "reason": "RetryingLogBackup",
                              "message": "Job backup-3fa9-lb1-log-start has failed"}],
              "logSubCommandStatuses": {"log-start": {"phase": "Complete"}},
              "backoffRetryStatus": [{"retryNum": 1, "detectFailedAt": "2026-01-01T00:00:01Z",
                "expectedRetryAt": "2026-01-01T00:00:03Z", "realRetryAt": "2026-01-01T00:00:04Z",
                "retryReason": "Job backup-3fa9-lb1-log-start has failed", "originalReason": "BackoffLimitExceeded"}]}
        });
        let job = |uid: &str, cond: &str| {
            json!({"metadata": {"name": "backup-3fa9-lb1-log-start", "uid": uid},
                   "status": {"conditions": [{"type": cond, "status": "True", "reason": "BackoffLimitExceeded"}]}})
        };
        let event = |name: &str, reason: &str, count: i32| {
            json!({"metadata": {"name": name}, "reason": reason, "type": "Normal", "note": "any words",
                   "deprecatedCount": count,
                   "regarding": {"kind": "Backup", "name": "3fa9-lb1", "uid": "u1"}})
        };
        let entries = vec![
            entry(Kind::Backup, "3fa9-lb1", b),
            entry(Kind::Job, "backup-3fa9-lb1-log-start", job("j1", "Failed")),
            entry(
                Kind::Job,
                "backup-3fa9-lb1-log-start",
                job("j2", "Complete"),
            ),
            entry(Kind::Event, "e1", event("e1", "RetryStarted", 1)),
            entry(Kind::Event, "e2", event("e2", "SuccessfulCreate", 2)),
        ];
        let state = State::replay(&entries);
        let names = BackupNames([("lb1".to_owned(), "3fa9-lb1".to_owned())].into());
        let text = normalize(&names, &state, &entries, Duration::from_secs(1), &[]);
        insta::assert_snapshot!(text);
        for absent in [
            "3fa9",
            "4711",
            "2026",
            "RetryingLogBackup",
            "SuccessfulCreate",
            "any words",
        ] {
            assert!(!text.contains(absent), "{absent} in\n{text}");
        }
    }

    #[rstest::rstest]
    #[case(Some(C::Failed), false, "Failed")]
    #[case(Some(C::Invalid), true, "Invalid")]
    #[case(Some(C::RetryFailed), true, "RetryFailed")]
    #[case(Some(C::RetryFailed), false, "not failed")]
    #[case(Some(C::Running), false, "not failed")]
    #[case(Some(C::Paused), false, "not failed")]
    // Waiting for a retry yet showing Running: the claim of LBR-3 fails visibly.
    #[case(Some(C::Running), true, "Running")]
    fn the_phase_as_far_as_the_contract_fixes_it(
        #[case] phase: Option<C>,
        #[case] pending: bool,
        #[case] want: &str,
    ) {
        assert_eq!(contract_phase(phase, pending), json!(want));
    }

    #[test]
    fn a_difference_comes_with_a_diff() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("suites__x.snap"),
            "---\nsource: tests/suites.rs\nexpression: snapshot\n---\na: 1\nb: 2\n",
        )
        .unwrap();
        assert!(compare(dir.path(), "x", "a: 1\nb: 2\n").is_ok());
        let e = compare(dir.path(), "x", "a: 1\nb: 3\n").unwrap_err();
        assert!(e.contains("-b: 2") && e.contains("+b: 3"), "{e}");
        assert!(
            compare(dir.path(), "y", "")
                .unwrap_err()
                .contains("no committed snapshot")
        );
    }
}
