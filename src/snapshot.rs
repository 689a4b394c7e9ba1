//! The normalized outcome of a suite, as an insta YAML snapshot: status records,
//! conditions (sorted by type), subcommand statuses and events (with occurrence counts);
//! uids, resourceVersions, names and absolute times redacted; record times kept relative
//! (to the detection, the previous retry, the expected time), so a wrong schedule changes
//! the snapshot and second-granularity jitter does not.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use serde_json::{Value, json};

use crate::api::BackupCondition;
use crate::oracle::{Names, State, events_about};

/// A record's times in the words of the contract: `expectedRetryAt` as detection plus the
/// delay (exact: both are persisted from one instant), `realRetryAt` as on time within the
/// lateness bound or how far off, later detections relative to the previous retry. Whole-
/// second jitter of the CR cannot flip these; a wrong schedule does.
fn record_times(
    r: &crate::api::BackoffRetryRecord,
    prev_real: Option<Timestamp>,
    granularity: Duration,
) -> (Value, Value, Value) {
    let ts = |t: &Option<Time>| t.as_ref().map(|t| t.0);
    let round = |secs: f64| {
        let g = granularity.as_secs_f64().max(0.001);
        (secs / g).round() * g
    };
    let detect = match (ts(&r.detect_failed_at), prev_real) {
        (None, _) => Value::Null,
        (Some(_), None) => json!("first failure"),
        (Some(d), Some(p)) => {
            let secs = d.duration_since(p).as_secs_f64();
            if (0.0..=crate::oracle::DETECT_WITHIN.as_secs_f64()).contains(&secs) {
                json!(format!(
                    "within {}s of retry {}",
                    crate::oracle::DETECT_WITHIN.as_secs(),
                    r.retry_num - 1
                ))
            } else {
                json!(format!(
                    "{:+}s after retry {}",
                    round(secs),
                    r.retry_num - 1
                ))
            }
        }
    };
    let expected = match (ts(&r.detect_failed_at), ts(&r.expected_retry_at)) {
        (Some(d), Some(e)) => json!(format!(
            "detectFailedAt + {}",
            crate::retry::duration::format_go_duration(e.duration_since(d).unsigned_abs())
        )),
        _ => Value::Null,
    };
    let real = match (ts(&r.expected_retry_at), ts(&r.real_retry_at)) {
        (Some(e), Some(x)) => {
            let late = x.duration_since(e).as_secs_f64();
            if (0.0..=crate::oracle::LATENESS.as_secs_f64()).contains(&late) {
                json!(format!(
                    "on time (within {}s)",
                    crate::oracle::LATENESS.as_secs()
                ))
            } else if late < 0.0 {
                json!(format!("{}s early", round(-late)))
            } else {
                json!(format!("{}s late", round(late)))
            }
        }
        (_, None) => Value::Null,
        (None, Some(_)) => json!("[set]"),
    };
    (detect, expected, real)
}

fn conditions(list: &[BackupCondition]) -> Value {
    let mut v: Vec<&BackupCondition> = list.iter().collect();
    v.sort_by_key(|c| format!("{:?}", c.type_));
    Value::Array(
        v.into_iter()
            .map(|c| {
                let mut o = json!({"type": c.type_, "status": c.status});
                if let Some(r) = &c.reason {
                    o["reason"] = json!(r);
                }
                if let Some(m) = &c.message {
                    o["message"] = json!(m);
                }
                o
            })
            .collect(),
    )
}

/// The normalized outcome of the Backups in `names` (decl → actual) in `state`.
pub fn normalize(names: &Names, namespace: &str, state: &State, granularity: Duration) -> String {
    let mut decls: Vec<(&String, &String)> = names.0.iter().collect();
    decls.sort();
    let mut out = serde_json::Map::new();
    for (decl, actual) in &decls {
        let Some(b) = state.backups.get(*actual) else {
            out.insert((*decl).clone(), json!("deleted"));
            continue;
        };
        let st = b.status.clone().unwrap_or_default();
        let mut prev_real = None;
        let records: Vec<Value> = st
            .backoff_retry_status
            .iter()
            .map(|r| {
                let (detect, expected, real) = record_times(r, prev_real, granularity);
                prev_real = r.real_retry_at.as_ref().map(|t| t.0);
                json!({
                    "retryNum": r.retry_num,
                    "detectFailedAt": detect,
                    "expectedRetryAt": expected,
                    "realRetryAt": real,
                    "retryReason": r.retry_reason,
                    "originalReason": r.original_reason,
                })
            })
            .collect();
        let subs: serde_json::Map<String, Value> = st
            .log_sub_command_statuses
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    json!({"phase": v.phase, "conditions": conditions(&v.conditions)}),
                )
            })
            .collect();
        let events: Vec<Value> = events_about(state, actual, b.uid().as_deref())
            .into_iter()
            .map(|e| json!({"type": e.type_, "reason": e.reason, "message": e.note, "count": e.count}))
            .collect();
        out.insert(
            (*decl).clone(),
            json!({
                "phase": st.phase,
                "commitTs": if st.commit_ts.is_some() { "[set]" } else { "[unset]" },
                "conditions": conditions(&st.conditions),
                "logSubCommandStatuses": subs,
                "backoffRetryStatus": records,
                "events": events,
            }),
        );
    }
    let mut text = serde_yaml::to_string(&Value::Object(out)).unwrap_or_default();
    // Longest names first, so `lb1-abc` is replaced before `lb1`.
    let mut pairs: Vec<(&String, &String)> = decls.clone();
    pairs.sort_by_key(|(_, a)| std::cmp::Reverse(a.len()));
    for (decl, actual) in pairs {
        text = text.replace(actual.as_str(), decl);
    }
    text.replace(&format!("{namespace}/"), "[ns]/")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recorder::{Entry, Kind};

    #[test]
    fn times_become_rounded_offsets_and_names_are_redacted() {
        let b = json!({
            "apiVersion": "pingcap.com/v1alpha1", "kind": "Backup",
            "metadata": {"name": "lb1-3fa9", "namespace": "suite-a", "uid": "u1", "resourceVersion": "77"},
            "spec": {"backupMode": "log"},
            "status": {"phase": "Running", "commitTs": "4711",
              "conditions": [{"type": "Running", "status": "True", "lastTransitionTime": "2026-01-01T00:00:09Z"},
                             {"type": "RetryFailed", "status": "True", "reason": "RetryingLogBackup",
                              "message": "Job backup-lb1-3fa9-log-start has failed"}],
              "backoffRetryStatus": [{"retryNum": 1, "detectFailedAt": "2026-01-01T00:00:01Z",
                "expectedRetryAt": "2026-01-01T00:00:03Z", "realRetryAt": "2026-01-01T00:00:04Z",
                "retryReason": "Job backup-lb1-3fa9-log-start has failed", "originalReason": "BackoffLimitExceeded"}]}
        });
        let state = State::replay(&[Entry {
            at: Timestamp::UNIX_EPOCH,
            kind: Kind::Backup,
            name: "lb1-3fa9".into(),
            deleted: false,
            object: b,
        }]);
        let names = Names([("lb1".to_owned(), "lb1-3fa9".to_owned())].into());
        let text = normalize(&names, "suite-a", &state, Duration::from_secs(1));
        insta::assert_snapshot!(text);
        assert!(!text.contains("3fa9") && !text.contains("4711") && !text.contains("2026"));
    }
}
