//! The kernel's side of a report (LBR-4, LBR-10): its state from a dump, from `br log
//! status`, or from the errors that name it (`ErrStreamLogTaskExist` says the task exists),
//! and the contract's expectation when that state disagrees with the spec.

use std::fmt::Write;

use super::{Expect, Situation};
use crate::replay::input::{Report, ReportEvent};

/// Errors that say the task exists in the kernel (`br log start` refused: a task of that
/// name is already there — seen after a Backup was deleted and applied again).
const TASK_EXISTS: [&str; 2] = ["ErrStreamLogTaskExist", "stream task already exists"];
/// Words that say the task is gone from the kernel.
const TASK_GONE: [&str; 3] = [
    "LogBackupKeyNotFound",
    "LogBackupTaskNotFound",
    "task not found",
];

/// The LBR-10 expectation, when the kernel disagrees with the spec and nothing failed that
/// the retry clauses judge first.
pub(super) fn expectation(s: &Situation) -> Option<Expect> {
    if s.mode != "log" {
        return None;
    }
    // Both replays start the task as log-start does, then change the kernel under it; a
    // report whose failures were never overcome is a retry story instead.
    if s.subcommand != "log-start" || (s.failures > 0 && s.succeeded_after != Some(true)) {
        return None;
    }
    if s.kernel_paused {
        return Some(Expect::KernelPaused);
    }
    if s.kernel_known && !s.kernel_task_exists && s.failures == 0 && s.started {
        return Some(Expect::KeyNotFound);
    }
    None
}

/// Whether the kernel disagrees with the spec (something to replay without a failure).
pub(super) fn disagrees(s: &Situation) -> bool {
    expectation(s).is_some()
}

/// What the report would need to show something the contract judges.
pub(super) fn missing(s: &Situation, report: &Report) -> String {
    let mut need = Vec::new();
    if report.events.is_empty() {
        need.push("the events (`kubectl get events -n NS`)");
    }
    if report.jobs.is_empty() {
        need.push("the Jobs (`kubectl get jobs -n NS -o yaml`)");
    }
    if !s.kernel_known {
        need.push("the kernel (`etcdctl get --prefix /tidb/br-stream/ -w json`)");
    }
    if need.is_empty() {
        String::new()
    } else {
        format!("; the report lacks {}", need.join(", "))
    }
}

/// Read the kernel's state from what the report says besides a dump: `br log status`, and
/// errors in the events, the Jobs, the Backup's conditions and the operator's log.
pub(super) fn from_evidence(s: &mut Situation, report: &Report, events: &[&ReportEvent]) {
    let b = s.backup.clone();
    let mut texts: Vec<String> = events.iter().map(|e| e.message.clone()).collect();
    texts.extend(report.jobs.iter().map(|j| j.reason.clone()));
    if let Some((_, obj)) = &report.backup {
        for c in obj["status"]["conditions"].as_array().into_iter().flatten() {
            texts.push(format!(
                "{} {}",
                c["reason"].as_str().unwrap_or(""),
                c["message"].as_str().unwrap_or("")
            ));
        }
    }
    let log: Vec<&String> = report
        .log_errors
        .iter()
        .filter(|l| l.contains(&b))
        .collect();
    for l in log.iter().take(3) {
        s.facts.push(format!("operator log: {}", l.trim()));
    }
    texts.extend(log.into_iter().cloned());
    let says = |words: &[&str]| texts.iter().find(|t| words.iter().any(|w| t.contains(w)));
    if let Some(t) = says(&TASK_EXISTS) {
        s.facts.push(format!(
            "the report says the task already exists in the kernel: {:?}",
            t.trim()
        ));
        if !s.kernel_known {
            s.kernel_known = true;
            s.kernel_task_exists = true;
            s.kernel_running = true;
            s.unknown.push(
                "the kernel's own state: taken as running, since starting the task failed because it exists".into(),
            );
        }
    } else if let Some(t) = says(&TASK_GONE)
        && !s.kernel_known
    {
        s.kernel_known = true;
        s.facts.push(format!(
            "the report says the task is gone from the kernel: {:?}",
            t.trim()
        ));
    }
    if !s.kernel_known
        && let Some(t) = report
            .br_status
            .iter()
            .find(|t| t.name == b)
            .or_else(|| (report.br_status.len() == 1).then(|| &report.br_status[0]))
    {
        s.kernel_known = true;
        s.kernel_task_exists = true;
        match t.status.to_ascii_uppercase().as_str() {
            "NORMAL" => s.kernel_running = true,
            "ERROR" => {
                s.kernel_paused = true;
                s.kernel_pause_error = true;
                s.pause_kind = Some("error".into());
            }
            _ => {
                s.kernel_paused = true;
                s.pause_kind = Some("manual".into());
            }
        }
        s.facts
            .push(format!("br log status: task {} is {}", t.name, t.status));
    }
}

/// The LBR-10 steps: the task starts as the spec says, then the kernel changes as the
/// report showed; the controller must correct the status.
pub(super) fn write_assertions(y: &mut String, s: &Situation, expect: Expect) {
    let b = &s.backup;
    let _ = writeln!(
        y,
        "  - assert:\n      eventually:\n        that: {{subPhase: {{backup: {b}, subcommand: log-start, phase: Complete}}}}"
    );
    match expect {
        Expect::KernelPaused => {
            let kind = s.pause_kind.as_deref().unwrap_or("manual");
            let pause = match kind {
                "error" => "{kind: error, error: {storeId: 1, message: replayed error pause}}",
                "v1" => "{kind: v1, text: replayed pause}",
                _ => "{kind: manual}",
            };
            let _ = writeln!(
                y,
                "  # LBR-10: the kernel has the task paused ({kind}) while the spec says start: the status is corrected.\n  - kernel:\n      task: {b}\n      pause: {pause}\n  - assert:\n      eventually:\n        that: {{condition: {{backup: {b}, subcommand: log-pause, type: Complete, reason: LogBackupKernelSync}}}}\n        within: 15s"
            );
        }
        _ => {
            let _ = writeln!(
                y,
                "  # LBR-10: the task is gone from the kernel while the spec says start: the Backup fails, saying so.\n  - kernel: {{task: {b}, state: absent}}\n  - assert:\n      eventually:\n        that: {{condition: {{backup: {b}, type: Failed, reason: LogBackupKeyNotFound}}}}\n        within: 15s"
            );
        }
    }
}
