//! Reading a field bug report: what `kubectl` prints for the Backup (`-o yaml` / `-o json`),
//! its events (`-o yaml`, `-o json`, or the table `kubectl get events` prints), its Jobs, and
//! a kernel dump (`etcdctl get --prefix --keys-only /tidb/br-stream/`; only which keys exist
//! is used, and with values the lines pair up only when no value holds a newline). Each file's
//! kind is recognised from its content; a problem names the file, the line and the field.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// A problem with one input file.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}{}: {}{message}", file.display(), line.map(|l| format!(":{l}")).unwrap_or_default(), if field.is_empty() { String::new() } else { format!("{field}: ") })]
pub struct InputError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub field: String,
    pub message: String,
}

impl InputError {
    fn new(file: &Path, line: Option<usize>, field: &str, message: impl Into<String>) -> Self {
        Self {
            file: file.to_owned(),
            line,
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

/// One event, whatever shape it came in.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReportEvent {
    pub reason: String,
    pub kind: String,
    pub object: String,
    pub message: String,
    pub count: u32,
}

/// One Job as listed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReportJob {
    pub name: String,
    /// `Complete`, `Failed` or empty (running).
    pub outcome: String,
    pub reason: String,
}

/// Everything read from a report's files.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// The Backup object, and the file it came from.
    pub backup: Option<(PathBuf, Value)>,
    pub events: Vec<ReportEvent>,
    pub jobs: Vec<ReportJob>,
    /// Kernel keys and values.
    pub kernel: Vec<(String, String)>,
    /// Which file gave what, for the summary.
    pub sources: Vec<String>,
}

/// Read the files of a report.
///
/// # Errors
/// The first unreadable, unrecognised or malformed file.
pub fn read(files: &[PathBuf]) -> Result<Report, InputError> {
    let mut report = Report::default();
    for f in files {
        // Lossy: a kernel dump with values holds binary (protobuf, big-endian integers).
        let bytes = std::fs::read(f)
            .map_err(|e| InputError::new(f, None, "", format!("cannot read: {e}")))?;
        add(&mut report, f, &String::from_utf8_lossy(&bytes))?;
    }
    if report.backup.is_none() {
        return Err(InputError::new(
            files
                .first()
                .map_or(Path::new("(no files)"), PathBuf::as_path),
            None,
            "",
            "no Backup among the report's files: give `kubectl get backup NAME -o yaml` (or -o json)",
        ));
    }
    Ok(report)
}

/// Add one file's content to `report`.
///
/// # Errors
/// The content is not one of the recognised shapes, or a required field is missing.
pub fn add(report: &mut Report, file: &Path, text: &str) -> Result<(), InputError> {
    let trimmed = text.trim_start();
    if trimmed.starts_with("/tidb/br-stream/") {
        report.kernel.extend(kernel_dump(file, text)?);
        report
            .sources
            .push(format!("{}: kernel dump", file.display()));
        return Ok(());
    }
    if trimmed.starts_with("LAST SEEN")
        || trimmed.starts_with("NAMESPACE") && trimmed.contains("REASON")
    {
        report.events.extend(event_table(file, text)?);
        report
            .sources
            .push(format!("{}: events (table)", file.display()));
        return Ok(());
    }
    let value: Value = serde_yaml::from_str(text).map_err(|e| {
        InputError::new(
            file,
            e.location().map(|l| l.line()),
            "",
            format!("neither YAML/JSON from kubectl, an events table nor a kernel dump: {e}"),
        )
    })?;
    let kind = value["kind"].as_str().unwrap_or_default().to_owned();
    let kind = kind.as_str();
    let items: Vec<Value> = match kind {
        "List" | "EventList" | "JobList" | "BackupList" => {
            value["items"].as_array().cloned().unwrap_or_default()
        }
        "" => {
            return Err(InputError::new(
                file,
                Some(1),
                "kind",
                "missing: expected a Backup, Event(s) or Job(s) as kubectl prints them",
            ));
        }
        _ => vec![value],
    };
    let listed = items.len() > 1 || matches!(kind, "List" | "EventList" | "JobList" | "BackupList");
    for (i, item) in items.iter().enumerate() {
        let at = ItemAt {
            file,
            text,
            index: listed.then_some(i),
        };
        match item["kind"].as_str().unwrap_or(kind) {
            "Backup" => add_backup(report, item, &at)?,
            "Event" => report.events.push(event(item, &at)?),
            "Job" => report.jobs.push(job(item, &at)?),
            other => {
                return Err(InputError::new(
                    file,
                    at.line("kind", other),
                    &at.field("kind"),
                    format!("{other:?} is not part of a Backup report (Backup, Event, Job)"),
                ));
            }
        }
    }
    if kind != "Backup" && !items.is_empty() {
        let what = items[0]["kind"].as_str().unwrap_or(kind);
        report
            .sources
            .push(format!("{}: {} {what}(s)", file.display(), items.len()));
    }
    Ok(())
}

/// Where an item of a file is, for the errors about it.
struct ItemAt<'a> {
    file: &'a Path,
    text: &'a str,
    /// Its index when the file holds a list.
    index: Option<usize>,
}

impl ItemAt<'_> {
    /// The path of `field` in the file: under `items[i]` in a list.
    fn field(&self, field: &str) -> String {
        match self.index {
            Some(i) => format!("items[{i}].{field}"),
            None => field.to_owned(),
        }
    }

    /// `field` of an item of `kind` is missing.
    fn missing(&self, kind: &str, field: &str) -> InputError {
        InputError::new(
            self.file,
            self.line("kind", kind),
            &self.field(field),
            "missing",
        )
    }

    /// The line of `key: value` in the file.
    fn line(&self, key: &str, value: &str) -> Option<usize> {
        crate::suite::locate::locate(self.text, key, value).map(|(l, _)| l)
    }
}

/// Take `item`, a Backup, as the report's one Backup.
fn add_backup(report: &mut Report, item: &Value, at: &ItemAt) -> Result<(), InputError> {
    let file = at.file;
    let name = item["metadata"]["name"]
        .as_str()
        .ok_or_else(|| at.missing("Backup", "metadata.name"))?;
    if item["spec"].is_null() {
        return Err(InputError::new(
            file,
            at.line("name", name),
            &at.field("spec"),
            "missing: the Backup's spec is needed (backupMode, backoffRetryPolicy)",
        ));
    }
    if let Some((first, _)) = &report.backup {
        return Err(InputError::new(
            file,
            at.line("name", name),
            &at.field("metadata.name"),
            format!(
                "a second Backup ({name}); the report's Backup came from {}: replay one Backup at a time",
                first.display()
            ),
        ));
    }
    report.backup = Some((file.to_owned(), item.clone()));
    report
        .sources
        .push(format!("{}: Backup {name}", file.display()));
    Ok(())
}

/// An Event of either API (`events.k8s.io/v1` or core `v1`).
fn event(item: &Value, at: &ItemAt) -> Result<ReportEvent, InputError> {
    let reason = item["reason"]
        .as_str()
        .ok_or_else(|| at.missing("Event", "reason"))?;
    let regarding = if item["regarding"].is_object() {
        &item["regarding"]
    } else {
        &item["involvedObject"]
    };
    Ok(ReportEvent {
        reason: reason.to_owned(),
        kind: item["type"].as_str().unwrap_or("").to_owned(),
        object: format!(
            "{}/{}",
            regarding["kind"].as_str().unwrap_or("").to_lowercase(),
            regarding["name"].as_str().unwrap_or("")
        ),
        message: item["note"]
            .as_str()
            .or(item["message"].as_str())
            .unwrap_or("")
            .to_owned(),
        count: item["series"]["count"]
            .as_u64()
            .or(item["count"].as_u64())
            .or(item["deprecatedCount"].as_u64())
            .unwrap_or(1)
            .try_into()
            .unwrap_or(u32::MAX),
    })
}

/// A Job: its name and how it ended, if it has.
fn job(item: &Value, at: &ItemAt) -> Result<ReportJob, InputError> {
    let name = item["metadata"]["name"]
        .as_str()
        .ok_or_else(|| at.missing("Job", "metadata.name"))?;
    let cond = item["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| (c["type"] == "Complete" || c["type"] == "Failed") && c["status"] == "True");
    Ok(ReportJob {
        name: name.to_owned(),
        outcome: cond
            .and_then(|c| c["type"].as_str())
            .unwrap_or("")
            .to_owned(),
        reason: cond
            .and_then(|c| c["reason"].as_str())
            .unwrap_or("")
            .to_owned(),
    })
}

/// `kubectl get events` as a table: columns found by the header's positions.
fn event_table(file: &Path, text: &str) -> Result<Vec<ReportEvent>, InputError> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let Some((_, header)) = lines.next() else {
        return Ok(Vec::new());
    };
    let col = |name: &str| header.find(name);
    let (Some(reason), Some(object), Some(message)) =
        (col("REASON"), col("OBJECT"), col("MESSAGE"))
    else {
        return Err(InputError::new(
            file,
            Some(1),
            "header",
            "expected the columns REASON, OBJECT and MESSAGE (`kubectl get events`)",
        ));
    };
    let kind = col("TYPE");
    let mut out = Vec::new();
    for (i, line) in lines {
        let cell = |from: usize| -> &str {
            line.get(from..)
                .unwrap_or("")
                .split_whitespace()
                .next()
                .unwrap_or("")
        };
        let r = cell(reason);
        if r.is_empty() {
            return Err(InputError::new(
                file,
                Some(i + 1),
                "REASON",
                "empty: the row does not line up with the header",
            ));
        }
        // `kubectl get events` folds repeats into "(x3 over 2m)" in LAST SEEN.
        let count = line
            .find("(x")
            .and_then(|p| line[p + 2..].split_whitespace().next()?.parse().ok())
            .unwrap_or(1);
        out.push(ReportEvent {
            reason: r.to_owned(),
            kind: kind.map(|k| cell(k).to_owned()).unwrap_or_default(),
            object: cell(object).to_owned(),
            message: line.get(message..).unwrap_or("").trim().to_owned(),
            count,
        });
    }
    Ok(out)
}

/// `etcdctl get --prefix`: alternating key and value lines.
fn kernel_dump(file: &Path, text: &str) -> Result<Vec<(String, String)>, InputError> {
    // Not filtered: an empty value (a v1 pause) is an empty line.
    let lines: Vec<(usize, &str)> = text.lines().enumerate().collect();
    let mut out = Vec::new();
    let mut it = lines.iter();
    while let Some((i, key)) = it.next() {
        if key.trim().is_empty() {
            continue;
        }
        if !key.starts_with("/tidb/br-stream/") {
            return Err(InputError::new(
                file,
                Some(i + 1),
                "key",
                format!(
                    "{key:?} is not a /tidb/br-stream/ key (expected key and value lines, as `etcdctl get --prefix` prints)"
                ),
            ));
        }
        let value = it.next().map_or("", |(_, v)| *v);
        out.push(((*key).to_owned(), value.to_owned()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "LAST SEEN          TYPE      REASON                 OBJECT                     MESSAGE
2m                 Warning   BackoffLimitExceeded   job/backup-lb1-log-start   Job has reached the specified backoff limit
90s (x3 over 5m)   Normal    RetryStarted           backup/lb1                 retry 1 of log-start
";

    #[test]
    fn the_events_table_is_read_by_its_header() {
        let mut r = Report::default();
        add(&mut r, Path::new("events.txt"), TABLE).unwrap();
        assert_eq!(r.events.len(), 2);
        assert_eq!(r.events[1].reason, "RetryStarted");
        assert_eq!(r.events[1].object, "backup/lb1");
        assert_eq!(r.events[1].count, 3);
        assert_eq!(r.events[0].kind, "Warning");
    }

    #[test]
    fn lists_of_events_in_both_apis_are_read() {
        let text = r#"{"kind":"List","items":[
 {"kind":"Event","reason":"RetryStarted","type":"Normal","involvedObject":{"kind":"Backup","name":"lb1"},"count":2,"message":"m"},
 {"apiVersion":"events.k8s.io/v1","kind":"Event","reason":"RetryExhausted","type":"Warning","regarding":{"kind":"Backup","name":"lb1"},"note":"n"}]}"#;
        let mut r = Report::default();
        add(&mut r, Path::new("ev.json"), text).unwrap();
        assert_eq!(r.events[0].count, 2);
        assert_eq!(r.events[1].object, "backup/lb1");
        assert_eq!(r.events[1].message, "n");
    }

    #[test]
    fn a_missing_field_names_file_line_and_field() {
        let text =
            "apiVersion: pingcap.com/v1alpha1\nkind: Backup\nmetadata:\n  namespace: x\nspec: {}\n";
        let mut r = Report::default();
        let e = add(&mut r, Path::new("backup.yaml"), text).unwrap_err();
        assert_eq!(e.to_string(), "backup.yaml:2: metadata.name: missing");
        let e = add(
            &mut r,
            Path::new("j.yaml"),
            "kind: List\nitems:\n- kind: Job\n  metadata: {}\n",
        )
        .unwrap_err();
        assert_eq!(e.field, "items[0].metadata.name");
        let e = add(
            &mut r,
            Path::new("x.yaml"),
            "apiVersion: v1\nkind: ConfigMap\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("ConfigMap"), "{e}");
    }

    #[test]
    fn kernel_dumps_pair_keys_and_values() {
        let mut r = Report::default();
        add(
            &mut r,
            Path::new("pd.txt"),
            "/tidb/br-stream/info/lb1\n{\"name\":\"lb1\"}\n/tidb/br-stream/pause/lb1\n\n",
        )
        .unwrap();
        assert_eq!(r.kernel.len(), 2);
        assert_eq!(r.kernel[0].0, "/tidb/br-stream/info/lb1");
        let e = add(
            &mut r,
            Path::new("pd.txt"),
            "/tidb/br-stream/info/lb1\nv\nnot-a-key\nv\n",
        )
        .unwrap_err();
        assert_eq!(e.line, Some(3));
    }

    #[test]
    fn a_table_row_that_does_not_line_up_is_refused() {
        let mut r = Report::default();
        let e = add(
            &mut r,
            Path::new("t.txt"),
            "LAST SEEN   TYPE   REASON   OBJECT   MESSAGE\nx\n",
        )
        .unwrap_err();
        assert_eq!(e.line, Some(2));
        assert_eq!(e.field, "REASON");
    }
}
