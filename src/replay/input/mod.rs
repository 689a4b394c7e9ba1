//! Reading a field bug report: what `kubectl` prints for the Backup (`-o yaml` / `-o json`),
//! its events (`-o yaml`, `-o json`, or the table `kubectl get events` prints), its Jobs, and
//! a kernel dump in any form `etcdctl` prints ([`kernel`]). Each file's kind is recognised
//! from its content; a problem names the file, the line and the field.

pub mod describe;
pub mod kernel;
mod proto;
pub mod text;

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
    /// Kernel keys and raw values.
    pub kernel: Vec<kernel::KernelKv>,
    /// How many kernel dumps the report holds (an empty one says no task exists).
    pub kernel_dumps: usize,
    /// Which file gave what, for the summary.
    pub sources: Vec<String>,
    /// Files that gave nothing, each with why (an empty file, a paste of another kind).
    pub skipped: Vec<String>,
    /// Backups as `kubectl get backup` listed them (no spec: facts only).
    pub listed: Vec<text::Listed>,
    /// The operator's log lines with errors or warnings (evidence, not facts of the spec).
    pub log_errors: Vec<String>,
    /// Tasks as `br log status` showed them.
    pub br_status: Vec<text::BrStatus>,
}

/// Read the files of a report.
///
/// # Errors
/// The first unreadable, unrecognised or malformed file.
pub fn read(files: &[PathBuf]) -> Result<Report, InputError> {
    let mut report = Report::default();
    for f in files {
        let bytes = std::fs::read(f)
            .map_err(|e| InputError::new(f, None, "", format!("cannot read: {e}")))?;
        add(&mut report, f, &bytes)?;
    }
    if report.backup.is_none() {
        return Err(InputError::new(
            files
                .first()
                .map_or(Path::new("(no files)"), PathBuf::as_path),
            None,
            "",
            if report.listed.is_empty() {
                "no Backup among the report's files: give `kubectl get backup NAME -o yaml` (or -o json, or `kubectl describe backup NAME`)".to_owned()
            } else {
                format!(
                    "the report lists Backup(s) ({}) but holds no Backup object, whose spec has the retry policy: add `kubectl get backup NAME -o yaml` (or `kubectl describe backup NAME`)",
                    report
                        .listed
                        .iter()
                        .map(|l| l.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            },
        ));
    }
    Ok(report)
}

/// Add one file's content to `report`.
///
/// # Errors
/// The content is not one of the recognised shapes, or a required field is missing.
pub fn add(report: &mut Report, file: &Path, bytes: &[u8]) -> Result<(), InputError> {
    if let Some(form) = kernel::recognise(bytes) {
        let kvs = kernel::parse(file, bytes, form)?;
        report.sources.push(format!(
            "{}: {}, {} key(s)",
            file.display(),
            form.label(),
            kvs.len()
        ));
        report.kernel.extend(kvs);
        report.kernel_dumps += 1;
        return Ok(());
    }
    // Anything else is text (lossy: a stray byte must not refuse a whole paste).
    let text = String::from_utf8_lossy(bytes);
    if add_text(report, file, &text)? {
        return Ok(());
    }
    add_objects(report, file, &text)
}

/// The text shapes other than kubectl's objects: an empty file, `kubectl describe`,
/// `kubectl get backup`, the operator's log, `br log status`, an events table. Whether the
/// file was one of them.
///
/// # Errors
/// A malformed events table or described Backup.
fn add_text(report: &mut Report, file: &Path, text: &str) -> Result<bool, InputError> {
    let trimmed = text.trim_start();
    let name = file.display();
    if trimmed.is_empty() {
        report.skipped.push(format!("{name}: empty, skipped"));
        return Ok(true);
    }
    if describe::is_describe(text) {
        let (backup, events) = describe::parse(text);
        let at = ItemAt {
            file,
            text,
            index: None,
        };
        add_backup(report, &backup, &at)?;
        report.events.extend(events);
        if let Some(s) = report.sources.last_mut() {
            s.push_str(" (kubectl describe), and its events");
        }
        return Ok(true);
    }
    if text::is_listing(text) {
        let rows = text::listing(text);
        report.sources.push(format!(
            "{name}: {} Backup(s) listed (kubectl get backup)",
            rows.len()
        ));
        report.listed.extend(rows);
        return Ok(true);
    }
    if text::is_log(text) {
        let errors = text::log_errors(text, 50);
        report.sources.push(format!(
            "{name}: the operator's log, {} error/warning line(s) kept as evidence",
            errors.len()
        ));
        report.log_errors.extend(errors);
        return Ok(true);
    }
    if text::is_br_status(text) {
        let tasks = text::br_status(text);
        report
            .sources
            .push(format!("{name}: br log status, {} task(s)", tasks.len()));
        report.br_status.extend(tasks);
        return Ok(true);
    }
    if trimmed.starts_with("LAST SEEN")
        || trimmed.starts_with("NAMESPACE") && trimmed.contains("REASON")
    {
        report.events.extend(event_table(file, text)?);
        report
            .sources
            .push(format!("{}: events (table)", file.display()));
        return Ok(true);
    }
    Ok(false)
}

/// Objects as kubectl prints them (`-o yaml` / `-o json`, one or a List).
///
/// # Errors
/// Text that looks like objects but does not parse, or an object lacking a field.
fn add_objects(report: &mut Report, file: &Path, text: &str) -> Result<(), InputError> {
    let trimmed = text.trim_start();
    let name = file.display();
    // YAML or JSON from kubectl; text that is neither is skipped, saying what it looked like.
    let looks_like_objects = trimmed.starts_with('{')
        || text
            .lines()
            .any(|l| l.starts_with("kind:") || l.starts_with("apiVersion:"));
    let value: Value = match serde_yaml::from_str(text) {
        Ok(v) => v,
        Err(e) if looks_like_objects => {
            return Err(InputError::new(
                file,
                e.location().map(|l| l.line()),
                "",
                format!("not YAML/JSON as kubectl prints it: {e}"),
            ));
        }
        Err(_) => {
            report.skipped.push(format!(
                "{name}: skipped: not a paste lbc replay reads (kubectl -o yaml/json, describe, get, events, the operator's log, etcdctl, br log status); its first line: {:?}",
                trimmed.lines().next().unwrap_or_default().chars().take(60).collect::<String>()
            ));
            return Ok(());
        }
    };
    if !value.is_object() {
        report.skipped.push(format!(
            "{name}: skipped: plain text, not a paste lbc replay reads (kubectl -o yaml/json, describe, get, events, the operator's log, etcdctl, br log status)"
        ));
        return Ok(());
    }
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
        add(&mut r, Path::new("events.txt"), TABLE.as_bytes()).unwrap();
        assert_eq!(r.events.len(), 2);
        assert_eq!(r.events[1].reason, "RetryStarted");
        assert_eq!(r.events[1].object, "backup/lb1");
        assert_eq!(r.events[1].count, 3);
        assert_eq!(r.events[0].kind, "Warning");
    }

    #[test]
    fn the_all_namespaces_events_table_is_read_too() {
        let t = "NAMESPACE   LAST SEEN   TYPE      REASON                 OBJECT            MESSAGE\n\
                 tidb        2m          Warning   BackoffLimitExceeded   job/backup-lb1    Job has reached the specified backoff limit\n";
        let mut r = Report::default();
        add(&mut r, Path::new("ev-all.txt"), t.as_bytes()).unwrap();
        assert_eq!(r.events.len(), 1);
        assert_eq!(r.events[0].reason, "BackoffLimitExceeded");
        assert_eq!(r.events[0].object, "job/backup-lb1");
    }

    #[test]
    fn other_text_and_empty_files_are_skipped_in_a_line_each() {
        let mut r = Report::default();
        add(&mut r, Path::new("empty.txt"), b"  \n").unwrap();
        add(
            &mut r,
            Path::new("chat.txt"),
            b"we restarted PD at 10:00 and then it broke\n",
        )
        .unwrap();
        assert_eq!(r.skipped.len(), 2);
        assert_eq!(r.skipped[0], "empty.txt: empty, skipped");
        assert!(
            r.skipped[1].starts_with("chat.txt: skipped: plain text"),
            "{}",
            r.skipped[1]
        );
        // Text that looks like kubectl's objects yet does not parse is an error, located.
        let e = add(&mut r, Path::new("b.yaml"), b"kind: Backup\nmetadata: [\n").unwrap_err();
        assert_eq!(e.file, Path::new("b.yaml"));
        assert!(e.line.is_some(), "{e}");
    }

    #[test]
    fn lists_of_events_in_both_apis_are_read() {
        let text = r#"{"kind":"List","items":[
 {"kind":"Event","reason":"RetryStarted","type":"Normal","involvedObject":{"kind":"Backup","name":"lb1"},"count":2,"message":"m"},
 {"apiVersion":"events.k8s.io/v1","kind":"Event","reason":"RetryExhausted","type":"Warning","regarding":{"kind":"Backup","name":"lb1"},"note":"n"}]}"#;
        let mut r = Report::default();
        add(&mut r, Path::new("ev.json"), text.as_bytes()).unwrap();
        assert_eq!(r.events[0].count, 2);
        assert_eq!(r.events[1].object, "backup/lb1");
        assert_eq!(r.events[1].message, "n");
    }

    #[test]
    fn a_missing_field_names_file_line_and_field() {
        let text =
            "apiVersion: pingcap.com/v1alpha1\nkind: Backup\nmetadata:\n  namespace: x\nspec: {}\n";
        let mut r = Report::default();
        let e = add(&mut r, Path::new("backup.yaml"), text.as_bytes()).unwrap_err();
        assert_eq!(e.to_string(), "backup.yaml:2: metadata.name: missing");
        let e = add(
            &mut r,
            Path::new("j.yaml"),
            "kind: List\nitems:\n- kind: Job\n  metadata: {}\n".as_bytes(),
        )
        .unwrap_err();
        assert_eq!(e.field, "items[0].metadata.name");
        let e = add(
            &mut r,
            Path::new("x.yaml"),
            "apiVersion: v1\nkind: ConfigMap\n".as_bytes(),
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
            "/tidb/br-stream/info/lb1\n{\"name\":\"lb1\"}\n/tidb/br-stream/pause/lb1\n\n"
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(r.kernel.len(), 2);
        assert_eq!(r.kernel[0].key, "/tidb/br-stream/info/lb1");
        // A value holding a newline stays one value: only a key line starts a key.
        let mut r = Report::default();
        add(
            &mut r,
            Path::new("pd.txt"),
            "/tidb/br-stream/info/lb1\nv\n3\u{1a}1\n/tidb/br-stream/pause/lb1\n\n".as_bytes(),
        )
        .unwrap();
        assert_eq!(r.kernel.len(), 2);
        assert_eq!(r.kernel[0].value, b"v\n3\x1a1");
    }

    #[test]
    fn a_table_row_that_does_not_line_up_is_refused() {
        let mut r = Report::default();
        let e = add(
            &mut r,
            Path::new("t.txt"),
            "LAST SEEN   TYPE   REASON   OBJECT   MESSAGE\nx\n".as_bytes(),
        )
        .unwrap_err();
        assert_eq!(e.line, Some(2));
        assert_eq!(e.field, "REASON");
    }
}
