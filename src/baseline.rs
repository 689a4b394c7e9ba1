//! Behaviour fingerprints: the second, optional layer beside the contract snapshot.
//!
//! A fingerprint keeps what the contract snapshot leaves out — every condition with its
//! reason and message, every event about the Backup with its note and count (a count other
//! than the contract events' only as `repeated`: it follows the run's timing), the records'
//! reasons verbatim — normalized only for what changes from run to run (the namespace,
//! times, uids, long numbers, fractional seconds). `lbc run --baseline NAME` compares each
//! suite's fingerprint with `tests/baselines/NAME/<suite>.yaml`, so a team sees what changed
//! between two releases of the *same* controller; it is never a conformance verdict.

use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use lbc_api::{BackupCondition, LogSubCommandStatus};
use regex::Regex;
use serde_json::{Value, json};

use crate::judge::{BackupNames, events_about};
use crate::recorder::{Entry, State};

/// What a comparison with the baseline found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// No baseline yet: this run's fingerprint was written.
    Recorded,
    Same,
    /// A unified diff (baseline → this run); this run's fingerprint is beside the baseline
    /// as `<suite>.yaml.new`.
    Changed(String),
}

/// Run-to-run noise, replaced by a placeholder.
static NOISE: LazyLock<[(Regex, &'static str); 4]> = LazyLock::new(|| {
    let re = |p: &str| Regex::new(p).unwrap_or_else(|e| unreachable!("pattern {p}: {e}"));
    [
        (
            re(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})?"),
            "<time>",
        ),
        (
            re(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"),
            "<uid>",
        ),
        (re(r"\b\d+\.\d+(ms|s|m)\b"), "<dur>"),
        (re(r"\b\d{6,}\b"), "<n>"),
    ]
});

/// `text` without what changes from run to run.
pub fn normalize_text(text: &str, namespace: &str) -> String {
    let mut out = if namespace.is_empty() {
        text.to_owned()
    } else {
        text.replace(namespace, "<namespace>")
    };
    for (re, with) in NOISE.iter() {
        out = re.replace_all(&out, *with).into_owned();
    }
    out
}

fn conditions(list: &[BackupCondition], ns: &str) -> Value {
    let mut out: Vec<Value> = list
        .iter()
        .map(|c| {
            json!({
                "type": c.type_,
                "status": c.status,
                "reason": c.reason,
                "message": c.message.as_deref().map(|m| normalize_text(m, ns)),
            })
        })
        .collect();
    out.sort_by_key(Value::to_string);
    json!(out)
}

fn subcommand(s: &LogSubCommandStatus, ns: &str) -> Value {
    json!({"phase": s.phase, "conditions": conditions(&s.conditions, ns)})
}

/// The fingerprint of the Backups in `names` at `state` (Jobs from `entries`).
/// `down`: when the harness had the controller down (its lateness excused as the judge does).
pub fn fingerprint(
    names: &BackupNames,
    state: &State,
    entries: &[Entry],
    ns: &str,
    down: &[(jiff::Timestamp, jiff::Timestamp)],
) -> String {
    let mut out = serde_json::Map::new();
    for (decl, actual) in &names.0 {
        let jobs = crate::snapshot::jobs(entries, actual);
        let Some(b) = state.backups.get(actual) else {
            out.insert(decl.clone(), json!({"deleted": true, "jobs": jobs}));
            continue;
        };
        let st = b.status.clone().unwrap_or_default();
        let records: Vec<Value> = st
            .backoff_retry_status
            .iter()
            .map(|r| {
                let mut v =
                    crate::snapshot::record(r, std::time::Duration::from_secs(1), actual, down);
                v["retryReason"] = json!(r.retry_reason.as_deref().map(|t| normalize_text(t, ns)));
                v
            })
            .collect();
        let mut events: Vec<Value> = events_about(state, actual, b.metadata.uid.as_deref())
            .into_iter()
            .map(|e| {
                let count = stable_count(&e.reason, e.count);
                json!({"type": e.type_, "reason": e.reason, "note": normalize_text(&e.note, ns), "count": count})
            })
            .collect();
        events.sort_by_key(Value::to_string);
        out.insert(
            decl.clone(),
            json!({
                "phase": st.phase,
                "conditions": conditions(&st.conditions, ns),
                "subcommands": st.log_sub_command_statuses.iter()
                    .map(|(k, v)| (k.clone(), subcommand(v, ns)))
                    .collect::<serde_json::Map<_, _>>(),
                "backoffRetryStatus": records,
                "events": events,
                "jobs": jobs,
            }),
        );
    }
    serde_yaml::to_string(&Value::Object(out)).unwrap_or_default()
}

/// An event's count as far as it is stable from run to run: exact for the contract's
/// events (LBR-9 fixes them), `repeated` for any other seen more than once — how often a
/// controller repeats its own events (a `FailedValidation` every resync, a `SuccessfulCreate`
/// per rerun) follows the run's timing.
pub fn stable_count(reason: &str, count: u32) -> Value {
    const CONTRACT: [&str; 4] = [
        "RetryStarted",
        "RetrySucceeded",
        "RetryExhausted",
        "BackupFailed",
    ];
    if count <= 1 || CONTRACT.contains(&reason) {
        json!(count)
    } else {
        json!("repeated")
    }
}

/// `dir/<suite>.yaml`.
pub fn path(dir: &Path, suite: &str) -> PathBuf {
    dir.join(format!("{suite}.yaml"))
}

/// Compare `got` with the baseline in `dir`; record it when there is none, or when
/// `update`.
///
/// # Errors
/// The baseline directory or file cannot be written.
pub fn compare(dir: &Path, suite: &str, got: &str, update: bool) -> std::io::Result<Verdict> {
    let file = path(dir, suite);
    let new = file.with_extension("yaml.new");
    let _ = std::fs::remove_file(&new);
    let want = match std::fs::read_to_string(&file) {
        Ok(t) if !update => t,
        _ => {
            std::fs::create_dir_all(dir)?;
            std::fs::write(&file, got)?;
            return Ok(Verdict::Recorded);
        }
    };
    if want.trim_end() == got.trim_end() {
        return Ok(Verdict::Same);
    }
    std::fs::write(&new, got)?;
    let diff = similar::TextDiff::from_lines(want.trim_end(), got.trim_end())
        .unified_diff()
        .context_radius(3)
        .header(&file.display().to_string(), "this run")
        .to_string();
    Ok(Verdict::Changed(diff))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case(
        "Job backup-lb1-log-start in suite-x failed",
        "Job backup-lb1-log-start in <namespace> failed"
    )]
    #[case(
        "at 2026-11-29T08:45:40Z, retry in 1.998s",
        "at <time>, retry in <dur>"
    )]
    #[case("retry 2/3 in 4s", "retry 2/3 in 4s")]
    #[case(
        "uid 0b6f1c1e-3c8a-4a4e-9a43-2d1f3b9c0a11 ts 449173245718462465",
        "uid <uid> ts <n>"
    )]
    fn noise_is_normalized_and_meaning_kept(#[case] text: &str, #[case] want: &str) {
        assert_eq!(normalize_text(text, "suite-x"), want);
    }

    #[rstest]
    #[case("RetryStarted", 3, json!(3))]
    #[case("FailedValidation", 1, json!(1))]
    #[case("FailedValidation", 7, json!("repeated"))]
    #[case("SuccessfulCreate", 2, json!("repeated"))]
    fn only_the_contract_events_keep_their_exact_count(
        #[case] reason: &str,
        #[case] count: u32,
        #[case] want: Value,
    ) {
        assert_eq!(stable_count(reason, count), want);
    }

    #[test]
    fn first_run_records_then_same_then_changed() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            compare(dir.path(), "s", "a: 1\n", false).unwrap(),
            Verdict::Recorded
        );
        assert_eq!(
            compare(dir.path(), "s", "a: 1\n", false).unwrap(),
            Verdict::Same
        );
        let Verdict::Changed(diff) = compare(dir.path(), "s", "a: 2\n", false).unwrap() else {
            panic!("not changed");
        };
        assert!(diff.contains("-a: 1") && diff.contains("+a: 2"), "{diff}");
        assert!(dir.path().join("s.yaml.new").exists());
        // --baseline-update accepts the change.
        assert_eq!(
            compare(dir.path(), "s", "a: 2\n", true).unwrap(),
            Verdict::Recorded
        );
        assert_eq!(
            compare(dir.path(), "s", "a: 2\n", false).unwrap(),
            Verdict::Same
        );
        assert!(!dir.path().join("s.yaml.new").exists());
    }
}
