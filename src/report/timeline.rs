//! A suite's story on one time line, for the HTML report: one lane per Backup (its phases,
//! each retry record's `detectFailedAt`, `expectedRetryAt` and `realRetryAt`, and the
//! judge's lateness of the retry), one per Job attempt (from its first sight to its
//! outcome), one for the Backup's events, one for the controller (restarts, injected
//! faults), one for the kernel (its steps), and one for the checks that failed, where
//! they failed.
//!
//! Drawn from the suite's story (the watch trace, the proxy's log, the steps' times) and
//! its verdict; the records' times are drawn as the controller wrote them and said so, the
//! lateness bar is the judge's margin, never measured here. Times are seconds since the
//! suite began.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::Serialize;

use crate::judge::{Punctuality, RecordMargin};
use crate::recorder::{Entry, Kind};
use crate::run::{Shown, StepTime, Story, SuiteResult};

/// The whole picture.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Timeline {
    /// Seconds from the suite's start to its end.
    pub duration: f64,
    pub lanes: Vec<Lane>,
}

/// One row.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Lane {
    /// `backup`, `job`, `events`, `controller`, `kernel` or `checks`.
    pub group: &'static str,
    pub label: String,
    pub spans: Vec<Span>,
    pub marks: Vec<Mark>,
}

/// An interval: a phase, a Job's life, a retry's lateness.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Span {
    pub from: f64,
    pub to: f64,
    /// CSS class: `phase-Running`, `job-failed`, `late`, …
    pub class: String,
    /// Hover text.
    pub title: String,
}

/// An instant.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Mark {
    pub at: f64,
    /// `detect`, `expected`, `real`, `state`, `event`, `restart`, `fault`, `kernel`, `failed`.
    pub class: String,
    pub label: String,
    /// Hover text: the object's state at that instant, or the message.
    pub title: String,
}

/// What the timeline is drawn from.
#[derive(Debug, Clone)]
pub struct Sources<'a> {
    pub started: Timestamp,
    pub ended: Timestamp,
    pub entries: &'a [Entry],
    pub steps: &'a [StepTime],
    /// Faults the proxy injected: (when, what).
    pub faults: Vec<(Timestamp, String)>,
    /// Failures found after the steps (checks, snapshot, teardown).
    pub late_failures: &'a [String],
    /// The judge's margins: each retry's lateness as the harness saw it.
    pub margins: &'a [RecordMargin],
}

impl<'a> Sources<'a> {
    /// A finished suite's sources: its story and its verdict.
    pub fn of(result: &'a SuiteResult, story: &'a Story) -> Self {
        Self {
            started: story.started,
            ended: story.ended,
            entries: &story.entries,
            steps: &story.steps,
            faults: Story::faults(&result.api_calls),
            late_failures: result
                .failures
                .get(story.step_failures()..)
                .unwrap_or_default(),
            margins: &result.margins,
        }
    }
}

fn secs(t0: Timestamp, t: Timestamp) -> f64 {
    (t.as_millisecond() - t0.as_millisecond()) as f64 / 1000.0
}

fn parse_time(v: &serde_json::Value) -> Option<Timestamp> {
    v.as_str()?.parse().ok()
}

/// Seconds since the suite began, per the sources' clock.
#[derive(Debug, Clone, Copy)]
struct Clock {
    t0: Timestamp,
    duration: f64,
}

impl Clock {
    fn at(self, t: Timestamp) -> f64 {
        secs(self.t0, t).max(0.0)
    }
}

/// Draw the timeline.
pub fn build(s: &Sources<'_>) -> Timeline {
    let clock = Clock {
        t0: s.started,
        duration: secs(s.started, s.ended).max(0.001),
    };
    let mut backups: BTreeMap<&str, Vec<&Entry>> = BTreeMap::new();
    let mut jobs: BTreeMap<String, Vec<&Entry>> = BTreeMap::new();
    let mut events: Vec<&Entry> = Vec::new();
    for e in s.entries {
        match e.kind {
            Kind::Backup => backups.entry(e.name.as_str()).or_default().push(e),
            Kind::Job => {
                let uid = e.object["metadata"]["uid"].as_str().unwrap_or(&e.name);
                jobs.entry(uid.to_owned()).or_default().push(e);
            }
            Kind::Event if e.object["regarding"]["kind"] == "Backup" => events.push(e),
            _ => {}
        }
    }
    let mut lanes: Vec<Lane> = backups
        .iter()
        .map(|(name, seen)| backup_lane(name, seen, s.margins, clock))
        .collect();
    lanes.extend(job_lanes(&jobs, clock));
    lanes.push(events_lane(&events, clock));
    lanes.extend(step_lanes(s, clock));
    Timeline {
        duration: clock.duration,
        lanes,
    }
}

fn lane(group: &'static str, label: impl Into<String>) -> Lane {
    Lane {
        group,
        label: label.into(),
        spans: Vec::new(),
        marks: Vec::new(),
    }
}

/// A Backup: phase spans, a tick per change (its state as the hover), the records.
fn backup_lane(name: &str, seen: &[&Entry], margins: &[RecordMargin], clock: Clock) -> Lane {
    let mut lane = lane("backup", format!("Backup {name}"));
    let mut phase: Option<(f64, String)> = None;
    let mut last_status = serde_json::Value::Null;
    for e in seen {
        let t = clock.at(e.at);
        let status = &e.object["status"];
        let now = if e.deleted {
            "deleted".to_owned()
        } else {
            status["phase"].as_str().unwrap_or("(none)").to_owned()
        };
        if phase.as_ref().is_none_or(|(_, p)| *p != now) {
            if let Some((from, p)) = phase.take() {
                lane.spans.push(span_phase(from, t, &p));
            }
            phase = Some((t, now.clone()));
        }
        lane.marks.push(Mark {
            at: t,
            class: "state".into(),
            label: String::new(),
            title: format!("+{t:.2}s {}", describe_backup(status, e.deleted)),
        });
        if !e.deleted {
            last_status = status.clone();
        }
    }
    if let Some((from, p)) = phase {
        lane.spans.push(span_phase(from, clock.duration, &p));
    }
    for r in last_status["backoffRetryStatus"]
        .as_array()
        .into_iter()
        .flatten()
    {
        record_marks(&mut lane, r, name, margins, clock);
    }
    lane
}

/// A record's three times as the controller wrote them, and the judge's lateness of its
/// retry (a retry without a Job, a kernel recovery, is measured by its `realRetryAt`).
fn record_marks(
    lane: &mut Lane,
    r: &serde_json::Value,
    backup: &str,
    margins: &[RecordMargin],
    clock: Clock,
) {
    let n = r["retryNum"].as_i64().unwrap_or(0);
    let reason = r["originalReason"].as_str().unwrap_or("");
    let point = |field: &str, class: &str| {
        parse_time(&r[field]).map(|t| Mark {
            at: clock.at(t),
            class: class.into(),
            label: format!("#{n}"),
            title: format!("record {n} {field} {t} ({reason})"),
        })
    };
    let detect = point("detectFailedAt", "detect");
    let expected = point("expectedRetryAt", "expected");
    let mut real = point("realRetryAt", "real");
    if let Some(r) = &mut real {
        r.title.push_str(" — as the controller reports it");
    }
    let margin = margins
        .iter()
        .find(|m| m.actual == backup && i64::from(m.retry_num) == n);
    let punctuality = margin.and_then(|m| m.retry);
    let excused = margin.map_or(0.0, |m| m.excused);
    if let (Some(e), Some(p)) = (&expected, punctuality) {
        let seen = e.at + p.late_by() + excused;
        lane.spans.push(Span {
            from: e.at.min(seen),
            to: seen.max(e.at),
            class: if p.on_time() { "late" } else { "late too-late" }.into(),
            title: format!(
                "record {n}: the retry seen {:+.2}s after expectedRetryAt (the judge: {}; expectedRetryAt has whole seconds)",
                p.late_by(),
                match p {
                    Punctuality::OnTime(_) => "on time",
                    Punctuality::Early(_) => "early",
                    Punctuality::Late(_) => "late",
                }
            ),
        });
    }
    lane.marks
        .extend([detect, expected, real].into_iter().flatten());
}

/// One lane per Job attempt (a distinct uid), in the order first seen.
fn job_lanes(jobs: &BTreeMap<String, Vec<&Entry>>, clock: Clock) -> Vec<Lane> {
    let mut job_lanes: Vec<(f64, Lane)> = Vec::new();
    for seen in jobs.values() {
        let (Some(first), Some(last)) = (seen.first(), seen.last()) else {
            continue;
        };
        let from = clock.at(first.at);
        let outcome = job_outcome(&last.object);
        let ended = seen
            .iter()
            .find(|e| job_outcome(&e.object).is_some() || e.deleted)
            .map_or(clock.duration, |e| clock.at(e.at));
        let class = match outcome.as_deref() {
            Some("Complete") => "job-complete",
            Some(_) => "job-failed",
            None if last.deleted => "job-deleted",
            None => "job-running",
        };
        let title = format!(
            "Job {} {} → {}: {}",
            first.name,
            fmt(from),
            fmt(ended),
            outcome.clone().unwrap_or_else(|| if last.deleted {
                "deleted unfinished".into()
            } else {
                "unfinished".into()
            })
        );
        let mut l = lane("job", format!("Job {}", first.name));
        l.spans.push(Span {
            from,
            to: ended.max(from),
            class: class.into(),
            title,
        });
        job_lanes.push((from, l));
    }
    job_lanes.sort_by(|a, b| a.0.total_cmp(&b.0));
    job_lanes
        .into_iter()
        .enumerate()
        .map(|(i, (_, mut l))| {
            l.label = format!("{} (attempt {})", l.label, i + 1);
            l
        })
        .collect()
}

/// Events about Backups: one mark each time one was first seen or its count grew.
fn events_lane(events: &[&Entry], clock: Clock) -> Lane {
    let mut ev = lane("events", "Events");
    let mut counts: BTreeMap<String, i64> = BTreeMap::new();
    for e in events {
        let o = &e.object;
        let count = o["series"]["count"]
            .as_i64()
            .or_else(|| o["deprecatedCount"].as_i64())
            .unwrap_or(1);
        let seen = counts.entry(e.name.clone()).or_insert(0);
        if count <= *seen || e.deleted {
            continue;
        }
        *seen = count;
        let reason = o["reason"].as_str().unwrap_or("?").to_owned();
        ev.marks.push(Mark {
            at: clock.at(e.at),
            class: "event".into(),
            label: reason.clone(),
            title: format!(
                "{reason} ({}): {}",
                o["type"].as_str().unwrap_or(""),
                o["note"].as_str().or(o["message"].as_str()).unwrap_or("")
            ),
        });
    }
    ev
}

/// The controller (restarts, the harness's own acts, injected faults), the kernel (its
/// steps) and the failed checks, where they failed.
fn step_lanes(s: &Sources<'_>, clock: Clock) -> [Lane; 3] {
    let mut ctl = lane("controller", "Controller");
    let mut kernel = lane("kernel", "Kernel");
    let mut checks = lane("checks", "Failed checks");
    for st in s.steps {
        let t = clock.at(st.started);
        let mark = |class: &str, title: String| Mark {
            at: t,
            class: class.into(),
            label: st.kind.clone(),
            title,
        };
        match st.shown {
            Shown::Controller => ctl.marks.push(mark(
                "restart",
                format!("controller step (stop/start/restart) at {}", fmt(t)),
            )),
            Shown::Harness => ctl.marks.push(mark(
                "harness",
                format!("the harness acted ({}) at {}", st.kind, fmt(t)),
            )),
            Shown::Kernel => kernel.marks.push(mark(
                "kernel",
                format!("kernel state written at {}", fmt(t)),
            )),
            Shown::Not => {}
        }
        if let Some(err) = &st.error {
            checks.marks.push(Mark {
                at: (t + st.seconds).min(clock.duration),
                class: "failed".into(),
                label: st.kind.clone(),
                title: format!("step {} failed: {err}", st.kind),
            });
        }
    }
    for (t, what) in &s.faults {
        ctl.marks.push(fault_mark(clock.at(*t), what));
    }
    for f in s.late_failures {
        checks.marks.push(Mark {
            at: clock.duration,
            class: "failed".into(),
            label: "check".into(),
            title: f.clone(),
        });
    }
    [ctl, kernel, checks]
}

fn fault_mark(at: f64, what: &str) -> Mark {
    Mark {
        at,
        // The proxy notes "steps[N] (fault): crash after the response": a crash is also
        // the controller's restart.
        class: if what.contains("crash") {
            "restart fault"
        } else {
            "fault"
        }
        .into(),
        label: what
            .rsplit("): ")
            .next()
            .and_then(|w| w.split_whitespace().next())
            .unwrap_or("fault")
            .to_owned(),
        title: format!("fault injected at {}: {what}", fmt(at)),
    }
}

fn fmt(t: f64) -> String {
    format!("+{t:.2}s")
}

fn span_phase(from: f64, to: f64, phase: &str) -> Span {
    Span {
        from,
        to: to.max(from),
        class: format!("phase phase-{}", css_word(phase)),
        title: format!("phase {phase} {} → {}", fmt(from), fmt(to)),
    }
}

/// A word usable in a CSS class.
fn css_word(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

/// `Complete`/`Failed (reason)` once the Job has its outcome condition.
fn job_outcome(job: &serde_json::Value) -> Option<String> {
    job["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| (c["type"] == "Complete" || c["type"] == "Failed") && c["status"] == "True")
        .map(|c| match c["reason"].as_str() {
            Some(r) if c["type"] == "Failed" => format!("Failed ({r})"),
            _ => c["type"].as_str().unwrap_or("").to_owned(),
        })
}

/// The Backup's state in a few lines (the hover of a state tick).
fn describe_backup(status: &serde_json::Value, deleted: bool) -> String {
    if deleted {
        return "deleted".into();
    }
    let mut lines = vec![format!(
        "phase {}",
        status["phase"].as_str().unwrap_or("(none)")
    )];
    if let Some(subs) = status["logSubCommandStatuses"].as_object() {
        for (name, sub) in subs {
            lines.push(format!(
                "{name}: {}",
                sub["phase"].as_str().unwrap_or("(none)")
            ));
        }
    }
    let records = status["backoffRetryStatus"].as_array().map_or(0, Vec::len);
    lines.push(format!("{records} retry record(s)"));
    if let Some(last) = status["backoffRetryStatus"]
        .as_array()
        .and_then(|a| a.last())
    {
        lines.push(format!(
            "last: #{} {} expected {} real {}",
            last["retryNum"],
            last["originalReason"].as_str().unwrap_or(""),
            last["expectedRetryAt"].as_str().unwrap_or("-"),
            last["realRetryAt"].as_str().unwrap_or("-")
        ));
    }
    lines.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(kind: Kind, name: &str, at_ms: i64, object: serde_json::Value) -> Entry {
        let mut e = Entry::for_test(kind, name, object);
        e.at = Timestamp::from_millisecond(at_ms).unwrap();
        e
    }

    #[test]
    fn records_jobs_events_and_failures_get_their_lanes() {
        let t0 = Timestamp::from_millisecond(1_000_000).unwrap();
        let rec = json!({"retryNum": 1, "detectFailedAt": "1970-01-01T00:16:41Z",
                         "expectedRetryAt": "1970-01-01T00:16:43Z",
                         "realRetryAt": "1970-01-01T00:16:46Z", "originalReason": "JobFailed"});
        let entries = vec![
            entry(
                Kind::Backup,
                "lb1",
                1_000_100,
                json!({"status": {"phase": "Running"}}),
            ),
            entry(
                Kind::Job,
                "backup-lb1-log-start",
                1_000_200,
                json!({"metadata": {"uid": "a"}, "status": {}}),
            ),
            entry(
                Kind::Job,
                "backup-lb1-log-start",
                1_001_000,
                json!({"metadata": {"uid": "a"},
                "status": {"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}}),
            ),
            entry(
                Kind::Backup,
                "lb1",
                1_001_200,
                json!({"status": {"phase": "RetryFailed", "backoffRetryStatus": [rec]}}),
            ),
            entry(
                Kind::Event,
                "ev",
                1_001_300,
                json!({"regarding": {"kind": "Backup"}, "reason": "RetryStarted"}),
            ),
            entry(
                Kind::Job,
                "backup-lb1-log-start",
                1_006_000,
                json!({"metadata": {"uid": "b"}, "status": {}}),
            ),
        ];
        let steps = vec![StepTime {
            kind: "assert".into(),
            shown: Shown::Not,
            acts: false,
            started: Timestamp::from_millisecond(1_002_000).unwrap(),
            seconds: 3.0,
            error: Some("did not hold".into()),
        }];
        let tl = build(&Sources {
            started: t0,
            ended: Timestamp::from_millisecond(1_010_000).unwrap(),
            entries: &entries,
            steps: &steps,
            faults: vec![(
                Timestamp::from_millisecond(1_004_000).unwrap(),
                "steps[2] (fault): crash after the response".into(),
            )],
            late_failures: &["snapshot differs".into()],
            margins: &[RecordMargin {
                backup: "b".into(),
                actual: "lb1".into(),
                retry_num: 1,
                detection_lag: Some(0.2),
                retry: Some(Punctuality::of(3.0)),
                excused: 0.0,
            }],
        });
        let groups: Vec<&str> = tl.lanes.iter().map(|l| l.group).collect();
        assert_eq!(
            groups,
            [
                "backup",
                "job",
                "job",
                "events",
                "controller",
                "kernel",
                "checks"
            ]
        );
        let backup = &tl.lanes[0];
        let classes: Vec<&str> = backup.marks.iter().map(|m| m.class.as_str()).collect();
        assert!(
            classes.contains(&"detect")
                && classes.contains(&"expected")
                && classes.contains(&"real")
        );
        // Lateness as the judge measured it: the retry 3 s after expectedRetryAt.
        let late = backup
            .spans
            .iter()
            .find(|s| s.class.starts_with("late"))
            .unwrap();
        assert_eq!(late.class, "late too-late");
        assert!((late.to - late.from - 3.0).abs() < 1e-9);
        assert_eq!(tl.lanes[1].spans[0].class, "job-failed");
        assert!(tl.lanes[1].label.ends_with("(attempt 1)"));
        assert_eq!(tl.lanes[2].spans[0].class, "job-running");
        assert_eq!(tl.lanes[3].marks[0].label, "RetryStarted");
        assert_eq!(tl.lanes[4].marks[0].class, "restart fault");
        assert_eq!(tl.lanes[4].marks[0].label, "crash");
        let failed = &tl.lanes[6].marks;
        assert_eq!(failed.len(), 2);
        assert!(
            (failed[0].at - 5.0).abs() < 1e-9,
            "drawn where the step failed"
        );
        assert!((failed[1].at - 10.0).abs() < 1e-9);
    }
}
