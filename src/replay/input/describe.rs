//! `kubectl describe backup NAME`: the object as kubectl's generic describer prints a custom
//! resource — `Title Case Keys:` nested by indentation, a list of objects as its items' fields
//! one after another (a key seen again starts the next item), a list of scalars a line each —
//! and the `Events:` table at the end. Turned back into the object's JSON (`Backup Mode` →
//! `backupMode`), so the rest of replay reads it like `-o yaml`.

use serde_json::{Map, Value, json};

use super::ReportEvent;

/// Whether `text` is `kubectl describe` of a Backup.
pub fn is_describe(text: &str) -> bool {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    lines.next().is_some_and(|l| l.starts_with("Name:"))
        && text.lines().any(|l| {
            l.split_once(':')
                .is_some_and(|(k, v)| k == "Kind" && v.trim() == "Backup")
        })
}

/// A key as the API spells it: `Backup Mode` → `backupMode`, `UID` → `uid`; keys that are
/// data (`log-start`, `s3`) stay as they are.
fn api_key(k: &str) -> String {
    if !k.contains(' ') && !k.starts_with(|c: char| c.is_ascii_uppercase()) {
        return k.to_owned();
    }
    let mut out = String::new();
    for (i, w) in k.split_whitespace().enumerate() {
        if i == 0 {
            out.push_str(&w.to_lowercase());
        } else {
            let mut c = w.chars();
            if let Some(f) = c.next() {
                out.extend(f.to_uppercase());
                out.push_str(&c.as_str().to_lowercase());
            }
        }
    }
    out
}

/// A scalar as JSON: integers as numbers, `<none>` as null, anything else a string.
fn scalar(v: &str) -> Value {
    let v = v.trim();
    if v == "<none>" || v.is_empty() {
        return Value::Null;
    }
    v.parse::<i64>().map_or_else(|_| json!(v), |n| json!(n))
}

/// One line: its indentation, and either `key: value`, `key:` (children follow) or a scalar
/// list item.
#[derive(Debug)]
enum Line<'a> {
    Pair(&'a str, &'a str),
    Open(&'a str),
    Item(&'a str),
}

fn line(l: &str) -> (usize, Line<'_>) {
    let indent = l.len() - l.trim_start().len();
    let t = l.trim();
    // A key is words before the first `:` followed by spaces or the end (a time such as
    // `2026-01-01T00:00:00Z` in a scalar item has no space after its colons).
    match t.find(':') {
        Some(p) if t[p + 1..].is_empty() => (indent, Line::Open(&t[..p])),
        Some(p) if t[p + 1..].starts_with(' ') && !t[..p].contains("  ") => {
            (indent, Line::Pair(&t[..p], t[p + 1..].trim()))
        }
        _ => (indent, Line::Item(t)),
    }
}

/// Read the block of lines indented deeper than `parent` starting at `*i`.
fn block(lines: &[(usize, Line<'_>)], i: &mut usize, parent: Option<usize>) -> Value {
    let mut items: Vec<Map<String, Value>> = vec![Map::new()];
    let mut scalars: Vec<Value> = Vec::new();
    while let Some((indent, l)) = lines.get(*i) {
        if parent.is_some_and(|p| *indent <= p) {
            break;
        }
        *i += 1;
        let (key, value) = match l {
            Line::Item(v) => {
                scalars.push(scalar(v));
                continue;
            }
            Line::Pair(k, v) => (api_key(k), scalar(v)),
            Line::Open(k) => (api_key(k), block(lines, i, Some(*indent))),
        };
        // A key seen again in the same block: the next item of a list of objects.
        if items.last().is_some_and(|m| m.contains_key(&key)) {
            items.push(Map::new());
        }
        if let Some(m) = items.last_mut() {
            m.insert(key, value);
        }
    }
    if !scalars.is_empty() && items.iter().all(Map::is_empty) {
        return Value::Array(scalars);
    }
    if items.len() == 1 {
        return items.pop().map_or(Value::Null, Value::Object);
    }
    Value::Array(items.into_iter().map(Value::Object).collect())
}

/// The Backup (as `-o json` would give it) and the events of the `Events:` table.
pub fn parse(text: &str) -> (Value, Vec<ReportEvent>) {
    let (object, events) = match text.find("\nEvents:") {
        Some(p) => (&text[..p], &text[p + 1..]),
        None => (text, ""),
    };
    let lines: Vec<(usize, Line<'_>)> = object
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(line)
        .collect();
    let mut i = 0;
    let mut top = block(&lines, &mut i, None);
    // The header lines belong in metadata.
    if let Some(m) = top.as_object_mut() {
        let mut meta = m
            .remove("metadata")
            .and_then(|v| v.as_object().cloned())
            .unwrap_or_default();
        for k in ["name", "namespace", "labels", "annotations"] {
            if let Some(v) = m.remove(k) {
                meta.insert(k.to_owned(), v);
            }
        }
        m.insert("metadata".into(), Value::Object(meta));
        if let Some(status) = m.get_mut("status").and_then(Value::as_object_mut) {
            // One record or condition prints as an object: the API has lists.
            for list in ["backoffRetryStatus", "conditions"] {
                if let Some(v) = status.get_mut(list)
                    && v.is_object()
                {
                    *v = Value::Array(vec![v.take()]);
                }
            }
        }
    }
    let name = top["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    (top, event_rows(events, &name))
}

/// The `Events:` table: `Type Reason Age From Message`, columns by the header's positions.
fn event_rows(text: &str, backup: &str) -> Vec<ReportEvent> {
    let mut lines = text.lines().skip(1).filter(|l| !l.trim().is_empty());
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let col = |n: &str| header.find(n);
    let (Some(kind), Some(reason), Some(message)) = (col("Type"), col("Reason"), col("Message"))
    else {
        return Vec::new();
    };
    let cell = |l: &str, from: usize| -> String {
        l.get(from..)
            .unwrap_or("")
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_owned()
    };
    lines
        .filter(|l| !l.trim_start().starts_with("----"))
        .map(|l| ReportEvent {
            reason: cell(l, reason),
            kind: cell(l, kind),
            object: format!("backup/{backup}"),
            message: l.get(message..).unwrap_or("").trim().to_owned(),
            // "(x3 over 2m)" in the Age column.
            count: l
                .find("(x")
                .and_then(|p| l[p + 2..].split_whitespace().next()?.parse().ok())
                .unwrap_or(1),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DESCRIBE: &str = "Name:         lb1
Namespace:    tidb-cluster
Labels:       <none>
Annotations:  <none>
API Version:  pingcap.com/v1alpha1
Kind:         Backup
Metadata:
  Creation Timestamp:  2026-01-01T00:00:00Z
  Finalizers:
    tidb.pingcap.com/backup-protection
  Generation:        1
  UID:               0b6d
Spec:
  Backoff Retry Policy:
    Max Retry Times:     2
    Min Retry Duration:  300s
    Retry Timeout:       30m
  Backup Mode:           log
  Br:
    Cluster:            basic
  Log Subcommand:       log-start
Status:
  Backoff Retry Status:
    Detect Failed At:   2026-01-01T00:01:00Z
    Expected Retry At:  2026-01-01T00:06:00Z
    Original Reason:    BackoffLimitExceeded
    Real Retry At:      2026-01-01T00:06:01Z
    Retry Num:          1
    Retry Reason:       Job tidb-cluster/backup-lb1-log-start has failed
    Detect Failed At:   2026-01-01T00:07:00Z
    Expected Retry At:  2026-01-01T00:17:00Z
    Original Reason:    BackoffLimitExceeded
    Retry Num:          2
    Retry Reason:       Job tidb-cluster/backup-lb1-log-start has failed
  Conditions:
    Last Transition Time:  2026-01-01T00:07:00Z
    Message:               retrying: attempt 2/2 in 10m0s
    Reason:                RetryingLogBackup
    Status:                True
    Type:                  RetryFailed
  Log Sub Command Statuses:
    log-start:
      Command:  log-start
      Phase:    RetryFailed
  Phase:        RetryFailed
Events:
  Type     Reason        Age                 From                Message
  ----     ------        ----                ----                -------
  Normal   RetryStarted  10m (x2 over 20m)   backup-controller   retry 1 of log-start
";

    #[test]
    fn a_described_backup_reads_like_its_yaml() {
        assert!(is_describe(DESCRIBE));
        let (b, events) = parse(DESCRIBE);
        assert_eq!(b["kind"], "Backup");
        assert_eq!(b["metadata"]["name"], "lb1");
        assert_eq!(b["metadata"]["namespace"], "tidb-cluster");
        assert_eq!(
            b["metadata"]["finalizers"][0],
            "tidb.pingcap.com/backup-protection"
        );
        assert_eq!(b["spec"]["backupMode"], "log");
        assert_eq!(b["spec"]["backoffRetryPolicy"]["maxRetryTimes"], 2);
        assert_eq!(b["spec"]["logSubcommand"], "log-start");
        let records = b["status"]["backoffRetryStatus"].as_array().unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[1]["retryNum"], 2);
        assert!(records[1]["realRetryAt"].is_null());
        assert_eq!(b["status"]["conditions"][0]["type"], "RetryFailed");
        assert_eq!(
            b["status"]["logSubCommandStatuses"]["log-start"]["phase"],
            "RetryFailed"
        );
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].reason, "RetryStarted");
        assert_eq!(events[0].count, 2);
        assert_eq!(events[0].object, "backup/lb1");
    }

    #[test]
    fn other_describes_are_not_taken_for_a_backup() {
        assert!(!is_describe("Name: x\nKind: Job\n"));
        assert!(!is_describe("kind: Backup\n"));
    }
}
