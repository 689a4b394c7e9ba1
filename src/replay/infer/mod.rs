//! From a report to a suite: what happened (the situation), and what the contract says
//! should have happened — never what the reporting controller did. Plain functions over
//! plain data.

use std::fmt::Write;

use serde_json::Value;

use super::input::kernel::KernelKv;
use super::input::{Report, ReportEvent, ReportJob};

/// The story the report tells, as far as it can be read.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Situation {
    pub backup: String,
    pub mode: String,
    pub subcommand: String,
    /// `maxRetryTimes` as reported (`None`: the CRD default, 2).
    pub max_retry_times: Option<i64>,
    pub min_retry: Option<String>,
    pub retry_timeout: Option<String>,
    /// Failed attempts the report shows.
    pub failures: u32,
    /// Whether an attempt after the failures succeeded (`None`: the report does not say).
    pub succeeded_after: Option<bool>,
    /// The kernel had the task running (info key, no pause) when the report was taken.
    pub kernel_running: bool,
    pub kernel_paused: bool,
    /// The pause is PauseV2 with severity ERROR (TiKV paused the task on an error).
    pub kernel_pause_error: bool,
    /// The dump has the task's `info` key.
    pub kernel_task_exists: bool,
    /// The report holds the kernel's state (a dump, `br log status`, or an error that
    /// names it).
    pub kernel_known: bool,
    /// How the task was paused: `v1`, `manual` or `error`.
    pub pause_kind: Option<String>,
    /// The log task had started (`commitTs`, or its log-start `Complete`).
    pub started: bool,
    /// The reason of the Backup's `Failed` condition, when it ended failed
    /// (`ExceededMaxRetries`, `RetryTimeout`, …).
    pub ended_by: Option<String>,
    /// The records' `originalReason`s, in order.
    pub reasons: Vec<String>,
    /// What was read, and from where.
    pub facts: Vec<String>,
    /// What could not be inferred (and what was assumed instead).
    pub unknown: Vec<String>,
}

/// Why no suite can be written.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InferError {
    #[error("{file}: spec.backupMode: {mode:?}: not a mode the contract covers (log, snapshot)")]
    NotCovered { file: String, mode: String },
    #[error(
        "the report shows nothing the contract judges about {backup}: no failed attempt (no retry record, no failed Job, no BackoffLimitExceeded event) and no kernel state that disagrees with the spec{missing}"
    )]
    NoFailure { backup: String, missing: String },
}

/// The most failed attempts a replay plans (a retry storm beyond this is the same story).
pub const MAX_FAILURES: u32 = 40;

/// The contract's default `maxRetryTimes` (CRD default).
pub const DEFAULT_MAX_RETRY_TIMES: i64 = 2;

/// Read the situation out of `report` (which has a Backup: `input::read` checks).
///
/// # Errors
/// Not a log backup, or no failure to replay.
pub fn situation(report: &Report) -> Result<Situation, InferError> {
    let Some((file, b)) = &report.backup else {
        return Err(InferError::NoFailure {
            backup: "(none)".into(),
            missing: String::new(),
        });
    };
    let file = file.display().to_string();
    let mut s = Situation {
        backup: b["metadata"]["name"].as_str().unwrap_or("lb1").to_owned(),
        mode: b["spec"]["backupMode"]
            .as_str()
            .unwrap_or("snapshot")
            .to_owned(),
        subcommand: b["spec"]["logSubcommand"]
            .as_str()
            .unwrap_or("log-start")
            .to_owned(),
        ..Situation::default()
    };
    match s.mode.as_str() {
        "log" => {}
        // LBR-13: a snapshot backup's attempts are its one Job, `backup-<name>`.
        "snapshot" => s.subcommand = "snapshot".into(),
        _ => {
            return Err(InferError::NotCovered {
                file,
                mode: s.mode.clone(),
            });
        }
    }
    read_policy(&mut s, &b["spec"]["backoffRetryPolicy"]);

    let status = &b["status"];
    let records = status["backoffRetryStatus"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    s.reasons = records
        .iter()
        .map(|r| r["originalReason"].as_str().unwrap_or("").to_owned())
        .collect();
    let failed_condition = status["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Failed" && c["status"] != "False");
    s.ended_by = failed_condition.map(|c| c["reason"].as_str().unwrap_or("").to_owned());
    let (events, jobs) = about_backup(report, &mut s);
    let exhausted_event = events.iter().any(|e| e.reason == "RetryExhausted");
    let exhausted = failed_condition.is_some() || exhausted_event || status["phase"] == "Failed";
    let sub_phase = status["logSubCommandStatuses"][&s.subcommand]["phase"]
        .as_str()
        .unwrap_or("");
    let failed_jobs = jobs.iter().filter(|j| j.outcome == "Failed").count();
    let complete_jobs = jobs.iter().filter(|j| j.outcome == "Complete").count();
    let limit_events: u32 = events
        .iter()
        .filter(|e| e.reason == "BackoffLimitExceeded")
        .fold(0u32, |n, e| n.saturating_add(e.count));
    // A log backup's last failure, the one that exhausts it, has no record (LBR-5); a
    // snapshot backup records every failure, up to maxRetryTimes + 1 (LBR-13).
    let unrecorded = exhausted && s.mode == "log";
    let from_records = u32::try_from(records.len()).unwrap_or(u32::MAX) + u32::from(unrecorded);
    // A pasted count can be anything: a replay plans one attempt per failure.
    s.failures = from_records
        .max(u32::try_from(failed_jobs).unwrap_or(u32::MAX))
        .max(limit_events)
        .min(MAX_FAILURES);
    s.facts.push(format!(
        "{} retry record(s) in status.backoffRetryStatus{}; {failed_jobs} failed and {complete_jobs} complete Job(s) listed; {limit_events} BackoffLimitExceeded event(s) → {} failed attempt(s)",
        records.len(),
        if exhausted { ", the Backup failed (exhausted)" } else { "" },
        s.failures
    ));
    s.started = status["commitTs"].as_str().is_some_and(|c| !c.is_empty())
        || status["logSubCommandStatuses"]["log-start"]["phase"] == "Complete";
    read_kernel(&mut s, &report.kernel, report.kernel_dumps);
    kernel::from_evidence(&mut s, report, &events);
    if s.failures == 0 && !kernel::disagrees(&s) {
        return Err(InferError::NoFailure {
            missing: kernel::missing(&s, report),
            backup: s.backup,
        });
    }
    let complete = status["phase"] == "Complete" && s.mode == "snapshot";
    s.succeeded_after = if sub_phase == "Complete" || complete_jobs > 0 || complete {
        Some(true)
    } else if exhausted {
        Some(false)
    } else {
        None
    };
    if s.succeeded_after.is_none() {
        s.unknown.push(format!(
            "what the attempt after the last failure did ({} phase {:?}, no Complete Job): assumed it succeeds",
            s.subcommand, sub_phase
        ));
    }
    if records.iter().any(|r| r["realRetryAt"].is_string()) {
        s.facts.push(
            "realRetryAt values are the reporting controller's: lateness is measured by the harness instead".into(),
        );
    }
    Ok(s)
}

/// The reported retry policy (`spec.backoffRetryPolicy`), or a note that the defaults apply.
fn read_policy(s: &mut Situation, policy: &Value) {
    s.max_retry_times = policy["maxRetryTimes"].as_i64();
    s.min_retry = policy["minRetryDuration"].as_str().map(str::to_owned);
    s.retry_timeout = policy["retryTimeout"].as_str().map(str::to_owned);
    if policy.is_null() {
        s.unknown.push(
            "spec.backoffRetryPolicy is absent: the CRD defaults apply (2 / 300s / 30m)".into(),
        );
    }
}

/// The report's events and Jobs about `s.backup` and its Jobs only (`kubectl get events -n
/// NS` lists every object's), with a fact saying how many others were left out.
fn about_backup<'r>(
    report: &'r Report,
    s: &mut Situation,
) -> (Vec<&'r ReportEvent>, Vec<&'r ReportJob>) {
    let backup_object = format!("backup/{}", s.backup);
    let job_prefix = format!("backup-{}-", s.backup);
    let snapshot_job = format!("backup-{}", s.backup);
    let events: Vec<_> = report
        .events
        .iter()
        .filter(|e| {
            e.object.eq_ignore_ascii_case(&backup_object)
                || e.object
                    .strip_prefix("job/")
                    .is_some_and(|j| j.starts_with(&job_prefix) || j == snapshot_job)
        })
        .collect();
    let jobs: Vec<_> = report
        .jobs
        .iter()
        .filter(|j| j.name.starts_with(&job_prefix) || j.name == snapshot_job)
        .collect();
    let ignored = report.events.len() - events.len() + report.jobs.len() - jobs.len();
    if ignored > 0 {
        s.facts.push(format!(
            "{ignored} event(s)/Job(s) about other objects than {backup_object} and its Jobs ({job_prefix}…) ignored"
        ));
    }
    (events, jobs)
}

/// The task's state from the kernel dump (which keys of `s.backup` exist, what its pause
/// says), with what each of its values means; or a note that there is none.
fn read_kernel(s: &mut Situation, kernel: &[KernelKv], dumps: usize) {
    use super::input::kernel::{Pause, kind_and_task, meaning, pause};
    if dumps == 0 {
        s.unknown
            .push("the kernel's state (no dump of /tidb/br-stream/): assumed no task".into());
        return;
    }
    // An empty dump says no task exists; one with keys must come from the whole prefix to
    // say so: an `info/` key of some task, or keys of several kinds (not `checkpoint/` alone).
    let kinds: std::collections::BTreeSet<&str> = kernel
        .iter()
        .filter_map(|kv| kind_and_task(&kv.key).map(|(k, _)| k))
        .collect();
    let covers_info = kernel.is_empty() || kinds.contains("info") || kinds.len() > 1;
    if !covers_info {
        s.unknown.push(
            "whether the task exists: the kernel dump has no info/ key of any task (dump the whole /tidb/br-stream/ prefix)".into(),
        );
        return;
    }
    // `--keys-only`: which keys exist, not what a pause says.
    let values = kernel.iter().any(|kv| !kv.value.is_empty());
    let ours: Vec<&KernelKv> = kernel
        .iter()
        .filter(|kv| kind_and_task(&kv.key).is_some_and(|(_, t)| t == s.backup))
        .collect();
    let has = |kind: &str| {
        ours.iter()
            .find(|kv| kind_and_task(&kv.key).is_some_and(|(k, _)| k == kind))
    };
    s.kernel_known = true;
    let paused = has("pause");
    s.kernel_paused = paused.is_some();
    s.pause_kind = paused.and_then(|kv| match pause(&kv.value) {
        _ if !values => None,
        Pause::V1 => Some("v1".to_owned()),
        Pause::V2 { severity, .. } if severity == "ERROR" => Some("error".to_owned()),
        _ => Some("manual".to_owned()),
    });
    if paused.is_some() && !values {
        s.unknown.push(
            "how the task was paused (the dump has keys only): assumed a MANUAL pause".into(),
        );
    }
    s.kernel_pause_error = paused.is_some_and(
        |kv| matches!(pause(&kv.value), Pause::V2 { ref severity, .. } if severity == "ERROR"),
    );
    s.kernel_task_exists = has("info").is_some();
    s.kernel_running = s.kernel_task_exists && !s.kernel_paused;
    s.facts.push(format!(
        "kernel: task {} {}",
        s.backup,
        if s.kernel_running {
            "running"
        } else if s.kernel_paused && s.kernel_pause_error {
            "paused by an error"
        } else if s.kernel_paused {
            "paused"
        } else {
            "absent (no info key)"
        }
    ));
    for kv in ours {
        s.facts.push(format!("kernel: {}", meaning(kv)));
    }
}

/// Seconds of a Go duration string (`300s`, `5m`, `1h30m`), if it parses.
fn seconds(d: &str) -> Option<f64> {
    lbc_api::duration::parse_go_duration(d)
        .ok()
        .map(|d| d.as_secs_f64())
}

/// What a replayed attempt costs besides the backoff (a Job's start, run and detection),
/// seconds: the scaled timeout keeps this much room per attempt.
const ATTEMPT_SECONDS: f64 = 5.0;

/// The policy to replay with: the report's, scaled together so that `minRetryDuration`
/// is at most 1 s. Which limit ended the reported retries is kept: when `maxRetryTimes`
/// would (its backoffs fit in `retryTimeout`), the scaled timeout also leaves room for the
/// replayed attempts' own run time, which does not scale. Returns (min, timeout, factor).
pub fn scaled_policy(s: &Situation) -> (String, Option<String>, f64) {
    let min = s.min_retry.as_deref().and_then(seconds).unwrap_or(300.0);
    let factor = if min > 1.0 { 1.0 / min } else { 1.0 };
    let max = s
        .max_retry_times
        .unwrap_or(DEFAULT_MAX_RETRY_TIMES)
        .clamp(0, 30);
    let timeout = s
        .retry_timeout
        .as_deref()
        .and_then(seconds)
        .unwrap_or(1800.0);
    // min × (2^M − 1): the backoffs of M retries.
    let backoffs = min * (2f64.powi(i32::try_from(max).unwrap_or(30)) - 1.0);
    let mut scaled_timeout = timeout * factor;
    if timeout > backoffs {
        let room = backoffs * factor + ATTEMPT_SECONDS * (max as f64 + 2.0);
        scaled_timeout = scaled_timeout.max(room);
    }
    let ms = |secs: f64| format!("{}ms", (secs * 1000.0).round().max(1.0));
    (ms(min * factor), Some(ms(scaled_timeout)), factor)
}

/// The suite, as YAML, with the report's facts as comments.
pub fn suite_yaml(s: &Situation, name: &str) -> String {
    let max = s.max_retry_times.unwrap_or(DEFAULT_MAX_RETRY_TIMES).max(0);
    let (min, timeout, factor) = scaled_policy(s);
    let b = &s.backup;
    let sub = &s.subcommand;
    let mut y = String::new();
    write_header(&mut y, s, factor);
    let _ = writeln!(y, "name: {name}");
    let description = format!(
        "Replayed report of {b}: {} failed {sub} attempt(s){}.",
        s.failures,
        if s.kernel_running {
            " while the kernel had the task running"
        } else if s.kernel_paused {
            ", the kernel having the task paused"
        } else if s.kernel_known && !s.kernel_task_exists {
            ", the task gone from the kernel"
        } else {
            ""
        }
    );
    // A JSON string is a YAML string: quoted, whatever the text holds.
    let _ = writeln!(y, "description: {}", serde_json::Value::String(description));
    let expect = expectation(s, max);
    write_story(&mut y, s, expect, max);
    let _ = writeln!(y, "clauses: [{}]", clauses(expect).join(", "));
    let _ = writeln!(y, "labels: [replay]");
    let _ = writeln!(y, "timeout: 90s");
    let _ = writeln!(y, "backups:\n  - name: {b}");
    if s.mode == "snapshot" {
        let _ = writeln!(y, "    mode: snapshot");
    } else if sub != "log-start" {
        let _ = writeln!(y, "    subcommand: {sub}");
    }
    let _ = write!(
        y,
        "    policy: {{minRetryDuration: {min}, maxRetryTimes: {max}"
    );
    if let Some(t) = &timeout {
        let _ = write!(y, ", retryTimeout: {t}");
    }
    let _ = writeln!(y, "}}");
    let attempts = planned_attempts(s, expect, timeout.as_deref());
    let _ = writeln!(y, "plans:\n  {b}:\n    {sub}: [{}]", attempts.join(", "));
    let _ = writeln!(y, "steps:\n  - create: {{backup: {b}}}");
    write_assertions(&mut y, s, expect, max);
    y
}

/// The comments above the suite: the report's facts, what it did not say, the scaling.
fn write_header(y: &mut String, s: &Situation, factor: f64) {
    let _ = writeln!(y, "# Written by `lbc replay` from a field report.");
    for f in &s.facts {
        let _ = writeln!(y, "# fact: {f}");
    }
    for u in &s.unknown {
        let _ = writeln!(y, "# not in the report: {u}");
    }
    if (factor - 1.0).abs() > f64::EPSILON {
        let _ = writeln!(
            y,
            "# durations scaled by 1/{:.0} (reported minRetryDuration {}, retryTimeout {})",
            1.0 / factor,
            s.min_retry.as_deref().unwrap_or("300s (default)"),
            s.retry_timeout.as_deref().unwrap_or("30m (default)")
        );
    }
}

/// The suite's `story`: what the report showed and what was assumed (its facts), and what
/// the contract says a conforming controller does there.
fn write_story(y: &mut String, s: &Situation, expect: Expect, max: i64) {
    let q = |t: String| serde_json::Value::String(t).to_string();
    let _ = writeln!(y, "story:");
    for f in &s.facts {
        let _ = writeln!(y, "  - {}", q(format!("reported: {f}")));
    }
    for u in &s.unknown {
        let _ = writeln!(y, "  - {}", q(format!("assumed: {u}")));
    }
    let _ = writeln!(
        y,
        "  - {}",
        q(format!(
            "contract ({}): {}",
            clauses(expect).join(", "),
            contract_says(s, expect, max)
        ))
    );
}

/// What a conforming controller does in the situation, in a sentence.
fn contract_says(s: &Situation, expect: Expect, max: i64) -> String {
    let n = s.failures;
    match expect {
        Expect::Recover => "the kernel has the task running when the retry falls due: the Backup recovers without a new Job (realRetryAt set, subcommand Complete, one RetrySucceeded)".into(),
        Expect::Disabled => "maxRetryTimes 0: the first failure fails the Backup, with no record and one BackupFailed event".into(),
        Expect::Exhaust => format!("after {max} retries the next failure ends the Backup Failed (ExceededMaxRetries), with no record {} and one RetryExhausted", max + 1),
        Expect::Timeout => "a failure detected past retryTimeout ends the Backup Failed (RetryTimeout), with no new record and one RetryExhausted".into(),
        Expect::Retried => format!("each of the {n} failure(s) gets one record and its retry at expectedRetryAt (at most 2 s late), then the subcommand completes"),
        Expect::KeyNotFound => "the task is gone from the kernel while the spec says it runs: the Backup fails with reason LogBackupKeyNotFound within a sync period".into(),
        Expect::KernelPaused => "the kernel has the task paused while the spec says start: the status is corrected (reason LogBackupKernelSync) within a sync period".into(),
        Expect::SnapshotRetried => format!("the operator's own retry: a record for each of the {n} failure(s), then the backup completes"),
        Expect::SnapshotExhaust => format!("the operator's own retry: at most {} records, then Failed with AlreadyFailed", max + 1),
    }
}

/// The clauses a replay expecting `expect` checks.
fn clauses(expect: Expect) -> &'static [&'static str] {
    match expect {
        Expect::Recover => &["LBR-4", "LBR-9"],
        Expect::Disabled => &["LBR-7", "LBR-9"],
        Expect::Exhaust => &["LBR-1", "LBR-2", "LBR-5", "LBR-9"],
        Expect::Timeout => &["LBR-1", "LBR-2", "LBR-6", "LBR-9"],
        Expect::Retried => &["LBR-1", "LBR-2", "LBR-3", "LBR-9"],
        Expect::KeyNotFound | Expect::KernelPaused => &["LBR-10"],
        Expect::SnapshotRetried | Expect::SnapshotExhaust => &["LBR-13"],
    }
}

/// fake-br's plan for the subcommand, one step an attempt (`timeout`: the scaled
/// `retryTimeout`).
fn planned_attempts(s: &Situation, expect: Expect, timeout: Option<&str>) -> Vec<String> {
    // The plan: the reported failures, then success unless the report says otherwise. A
    // story ended by retryTimeout gets a last failure slow enough to land past it.
    let timeout_ms: u64 = timeout
        .and_then(|t| t.trim_end_matches("ms").parse().ok())
        .unwrap_or(0);
    let mut attempts: Vec<String> = (0..s.failures)
        .map(|i| {
            if i == 0 && s.kernel_running {
                "{action: fail, kernel: perform}".to_owned()
            } else if expect == Expect::Timeout && i + 1 == s.failures && i > 0 {
                format!("{{action: fail, delay: {}ms}}", timeout_ms + 1000)
            } else {
                "{action: fail, exitCode: 1}".to_owned()
            }
        })
        .collect();
    if s.succeeded_after != Some(false) {
        attempts.push("{action: succeed}".into());
    }
    attempts
}

/// The suite's assertions: what the contract says should follow (`max`: the effective
/// `maxRetryTimes`).
fn write_assertions(y: &mut String, s: &Situation, expect: Expect, max: i64) {
    let (b, sub) = (&s.backup, &s.subcommand);
    match expect {
        Expect::KeyNotFound | Expect::KernelPaused => kernel::write_assertions(y, s, expect),
        Expect::SnapshotRetried | Expect::SnapshotExhaust => {
            snapshot::write_assertions(y, s, expect, max);
        }
        Expect::Recover => {
            let _ = writeln!(
                y,
                "  # LBR-4: the kernel says running at the retry: recover without a new Job.\n  - assert:\n      eventually:\n        that: {{allOf: [{{recordRetried: {{backup: {b}, n: 1}}}}, {{subPhase: {{backup: {b}, subcommand: {sub}, phase: Complete}}}}]}}\n  - assert:\n      never:\n        that: {{jobComplete: {{backup: {b}, subcommand: {sub}}}}}\n        for: 3s\n  - assert:\n      events:\n        backup: {b}\n        expect:\n          - {{reason: RetrySucceeded, count: 1}}"
            );
        }
        Expect::Disabled => {
            let _ = writeln!(
                y,
                "  # LBR-7: maxRetryTimes 0: the first failure fails the Backup, no record, no retry.\n  - assert:\n      eventually:\n        that: {{phase: {{backup: {b}, phase: Failed}}}}\n  - assert:\n      never:\n        that: {{recordExists: {{backup: {b}, n: 1}}}}\n        for: 2s\n  - assert:\n      events:\n        backup: {b}\n        expect:\n          - {{reason: BackupFailed, type: Warning, count: 1}}\n          - {{reason: RetryStarted, count: 0}}"
            );
        }
        Expect::Exhaust => {
            let _ = writeln!(
                y,
                "  # LBR-5: after maxRetryTimes ({max}) retries the next failure ends the Backup.\n  - assert:\n      eventually:\n        that: {{condition: {{backup: {b}, type: Failed, reason: ExceededMaxRetries}}}}\n  - assert:\n      never:\n        that: {{recordExists: {{backup: {b}, n: {}}}}}\n        for: 3s\n  - assert:\n      events:\n        backup: {b}\n        expect:\n          - {{reason: RetryStarted, count: {max}}}\n          - {{reason: RetryExhausted, type: Warning, count: 1}}",
                max + 1
            );
        }
        Expect::Timeout => {
            let _ = writeln!(
                y,
                "  # LBR-6: a failure detected past retryTimeout ends the Backup, with no new record.\n  - assert:\n      eventually:\n        that: {{condition: {{backup: {b}, type: Failed, reason: RetryTimeout}}}}\n  - assert:\n      never:\n        that: {{recordExists: {{backup: {b}, n: {}}}}}\n        for: 2s\n  - assert:\n      events:\n        backup: {b}\n        expect:\n          - {{reason: RetryExhausted, type: Warning, count: 1}}",
                s.failures
            );
        }
        Expect::Retried => {
            let n = s.failures;
            let _ = writeln!(
                y,
                "  # LBR-2/3: each failure gets its record and its retry at expectedRetryAt.\n  - assert:\n      eventually:\n        that: {{recordRetried: {{backup: {b}, n: {n}}}}}"
            );
            if s.succeeded_after != Some(false) {
                let _ = writeln!(
                    y,
                    "  - assert:\n      eventually:\n        that: {{subPhase: {{backup: {b}, subcommand: {sub}, phase: Complete}}}}\n  - assert:\n      events:\n        backup: {b}\n        expect:\n          - {{reason: RetryStarted, count: {n}}}"
                );
            }
        }
    }
}

/// Which clause's outcome the replayed situation calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// LBR-4: the kernel says running at the retry.
    Recover,
    /// LBR-7: `maxRetryTimes: 0`.
    Disabled,
    /// LBR-5: more failures than `maxRetryTimes` allows retries for.
    Exhaust,
    /// LBR-6: the report's Backup ended by `retryTimeout`.
    Timeout,
    /// LBR-2/3: each failure retried.
    Retried,
    /// LBR-10: the task is gone from the kernel while the spec says it runs.
    KeyNotFound,
    /// LBR-10: the kernel has the task paused while the spec says start.
    KernelPaused,
    /// LBR-13: a snapshot backup retried by the operator's own algorithm.
    SnapshotRetried,
    /// LBR-13: a snapshot backup that failed more often than it may retry.
    SnapshotExhaust,
}

/// The contract's outcome for the situation (`max`: the effective `maxRetryTimes`).
pub fn expectation(s: &Situation, max: i64) -> Expect {
    if s.mode == "snapshot" {
        return if i64::from(s.failures) > max {
            Expect::SnapshotExhaust
        } else {
            Expect::SnapshotRetried
        };
    }
    if let Some(k) = kernel::expectation(s) {
        return k;
    }
    if s.kernel_running {
        Expect::Recover
    } else if max == 0 {
        Expect::Disabled
    } else if s.ended_by.as_deref() == Some("RetryTimeout") && i64::from(s.failures) <= max + 1 {
        Expect::Timeout
    } else if i64::from(s.failures) > max {
        Expect::Exhaust
    } else {
        Expect::Retried
    }
}

mod kernel;
mod snapshot;

#[cfg(test)]
mod tests;
