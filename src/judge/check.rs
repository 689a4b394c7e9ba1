//! Check identities: every verdict a suite gets is one named check — a step of the suite
//! (`steps[3] assert recordRetried`), a judge rule (`judge LBR-3 late`), the snapshot, the
//! set-up or the teardown — passed, failed, or not reached. Two runs of the same suites are
//! compared check by check ([`super::gate`]), not suite by suite.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::suite::model::SuiteStep;

/// A rule of the judge's checks after the steps, with the clause it enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// The controller under test stayed up ("neither crashes").
    ControllerUp,
    /// The suite's own kernel stayed up (a harness premise).
    KernelUp,
    /// Every fault the suite armed fired (a premise: else it tested nothing).
    FaultFired,
    /// `events` assertions still hold at the end.
    EventsHeld,
    /// No subcommand's phase moves back.
    NoRegression,
    /// Nothing written about a settled Backup.
    Quiet,
    /// A rerun Job has the record of the failure before it.
    RecordedRerun,
    /// `retryNum` counts 1, 2, …
    RetryNum,
    /// A record has `detectFailedAt` and `expectedRetryAt`.
    RecordTimes,
    /// `expectedRetryAt − detectFailedAt` is the policy's delay.
    Delay,
    /// `retryReason` names the failed Job.
    RetryReason,
    /// `originalReason` is the Job's own reason.
    OriginalReason,
    /// The Backup shows `RetryFailed` while a retry waits.
    WaitingShown,
    /// No failure is recorded twice.
    RecordedOnce,
    /// `detectFailedAt` is when the controller detected, not earlier.
    DetectionTime,
    /// The record appears within `detectWithin` of the Job's failure.
    DetectedInTime,
    /// The retry runs no earlier than `expectedRetryAt`.
    NotEarly,
    /// The retry runs no later than `expectedRetryAt` + lateness.
    NotLate,
    /// `realRetryAt` is when the retry ran, and only then.
    RealRetryAt,
}

impl Rule {
    /// Every rule, in the order the judge applies them.
    pub const ALL: [Rule; 19] = [
        Rule::ControllerUp,
        Rule::KernelUp,
        Rule::FaultFired,
        Rule::EventsHeld,
        Rule::NoRegression,
        Rule::Quiet,
        Rule::RecordedRerun,
        Rule::RetryNum,
        Rule::RecordTimes,
        Rule::Delay,
        Rule::RetryReason,
        Rule::OriginalReason,
        Rule::WaitingShown,
        Rule::RecordedOnce,
        Rule::DetectionTime,
        Rule::DetectedInTime,
        Rule::NotEarly,
        Rule::NotLate,
        Rule::RealRetryAt,
    ];

    /// The contract clause the rule enforces; `None` for the harness's own premises.
    pub fn clause(self) -> Option<&'static str> {
        Some(match self {
            Rule::ControllerUp => "LBR-14",
            Rule::KernelUp | Rule::FaultFired => return None,
            Rule::EventsHeld => "LBR-9",
            Rule::NoRegression => "LBR-16",
            Rule::Quiet => "LBR-17",
            Rule::DetectedInTime => "LBR-1",
            Rule::RecordedRerun
            | Rule::RetryNum
            | Rule::RecordTimes
            | Rule::Delay
            | Rule::RetryReason
            | Rule::OriginalReason
            | Rule::RecordedOnce
            | Rule::DetectionTime => "LBR-2",
            Rule::WaitingShown | Rule::NotEarly | Rule::NotLate | Rule::RealRetryAt => "LBR-3",
        })
    }

    /// What the rule asks, in a few words (the gate's summary lines).
    pub fn what(self) -> &'static str {
        match self {
            Rule::ControllerUp => "the controller stays up",
            Rule::KernelUp => "the suite's kernel stays up",
            Rule::FaultFired => "every armed fault fires",
            Rule::EventsHeld => "events still hold at the end",
            Rule::NoRegression => "no phase moves back",
            Rule::Quiet => "quiet when settled",
            Rule::RecordedRerun => "a rerun Job has its record",
            Rule::RetryNum => "retryNum counts from 1",
            Rule::RecordTimes => "records have their times",
            Rule::Delay => "expectedRetryAt follows the policy",
            Rule::RetryReason => "retryReason names the Job",
            Rule::OriginalReason => "originalReason is the Job's",
            Rule::WaitingShown => "RetryFailed shown while waiting",
            Rule::RecordedOnce => "no failure recorded twice",
            Rule::DetectionTime => "detectFailedAt is the detection",
            Rule::DetectedInTime => "detected within detectWithin",
            Rule::NotEarly => "retry not early",
            Rule::NotLate => "retry not late",
            Rule::RealRetryAt => "realRetryAt is the retry",
        }
    }

    /// Whether the rule is judged per Backup (its checks are one per declared Backup, so a
    /// new failure on another Backup is not hidden by an old one).
    pub fn per_backup(self) -> bool {
        !matches!(
            self,
            Rule::ControllerUp | Rule::KernelUp | Rule::FaultFired | Rule::Quiet
        )
    }

    /// The check's stable identity.
    pub fn id(self) -> String {
        let name = serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        format!("judge {name}")
    }
}

/// One violation the judge found: its rule, the Backup it is about (as the suite declares
/// it) for a rule judged per Backup, and what was seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub rule: Rule,
    pub about: Option<String>,
    pub message: String,
}

impl Finding {
    pub fn new(rule: Rule, message: impl Into<String>) -> Self {
        Self {
            rule,
            about: None,
            message: message.into(),
        }
    }

    /// The finding is about Backup `decl`.
    #[must_use]
    pub fn about(mut self, decl: &str) -> Self {
        self.about = Some(decl.to_owned());
        self
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum CheckState {
    Passed,
    Failed,
    /// A step after the first failing one: never evaluated.
    NotReached,
}

/// One check of one suite run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// Stable within a suite across builds: `steps[3] assert`, `judge not-late`, `snapshot`.
    pub id: String,
    /// What it asks, the same across suites (the gate groups by it).
    pub what: String,
    /// The clause it enforces, when one is known; else the suite's clauses apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clause: Option<String>,
    pub state: CheckState,
}

impl Check {
    fn new(id: String, what: String, clause: Option<&str>, state: CheckState) -> Self {
        Self {
            id,
            what,
            clause: clause.map(str::to_owned),
            state,
        }
    }

    /// The check of step `index`: passed, failed, or never reached.
    pub fn step(index: usize, step: &SuiteStep, kind: &str, state: CheckState) -> Self {
        let what = match first_predicate(step) {
            Some(p) => format!("{kind} {p}"),
            None => kind.to_owned(),
        };
        Self::new(format!("steps[{index}] {kind}"), what, None, state)
    }

    /// A judge rule, for Backup `about` when the rule is judged per Backup: failed when a
    /// finding names it; else passed — if the steps all ran (`complete`): a suite cut short
    /// gave the rule too little to look at, so it was not reached.
    pub fn rule(rule: Rule, about: Option<&str>, findings: &[Finding], complete: bool) -> Self {
        let state = if findings
            .iter()
            .any(|f| f.rule == rule && (about.is_none() || f.about.as_deref() == about))
        {
            CheckState::Failed
        } else if complete {
            CheckState::Passed
        } else {
            CheckState::NotReached
        };
        let id = match about {
            Some(b) => format!("{} {b}", rule.id()),
            None => rule.id(),
        };
        Self::new(id, rule.what().to_owned(), rule.clause(), state)
    }

    /// Every rule's checks for a suite of Backups `decls`.
    pub fn rules<'a>(
        decls: impl Iterator<Item = &'a String> + Clone,
        findings: &[Finding],
        complete: bool,
    ) -> Vec<Self> {
        let mut out = Vec::new();
        for rule in Rule::ALL {
            if rule.per_backup() {
                out.extend(
                    decls
                        .clone()
                        .map(|d| Self::rule(rule, Some(d), findings, complete)),
                );
            } else {
                out.push(Self::rule(rule, None, findings, complete));
            }
        }
        out
    }

    /// A check of the run itself: `set-up`, `snapshot`, `teardown`.
    pub fn named(id: &str, passed: bool) -> Self {
        let state = if passed {
            CheckState::Passed
        } else {
            CheckState::Failed
        };
        Self::new(id.to_owned(), id.to_owned(), None, state)
    }
}

/// The first predicate a step names (`recordRetried`, `subPhase`, …), read from its YAML
/// form: the step's own words, so the label needs no list to keep up to date.
fn first_predicate(step: &SuiteStep) -> Option<String> {
    fn find(v: &serde_json::Value) -> Option<String> {
        let obj = v.as_object()?;
        if let Some(that) = obj.get("that").and_then(|t| t.as_object()) {
            return that.keys().next().cloned();
        }
        obj.values().find_map(find)
    }
    find(&serde_json::to_value(step).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_has_a_distinct_id_and_the_harness_premises_no_clause() {
        let ids: std::collections::BTreeSet<String> = Rule::ALL.iter().map(|r| r.id()).collect();
        assert_eq!(ids.len(), Rule::ALL.len());
        assert_eq!(Rule::NotLate.id(), "judge not-late");
        assert_eq!(Rule::NotLate.clause(), Some("LBR-3"));
        assert_eq!(Rule::FaultFired.clause(), None);
    }

    #[test]
    fn a_rule_fails_only_when_a_finding_names_it() {
        let f = [Finding::new(Rule::NotLate, "retry 1 ran 3 s late").about("lb2")];
        let on = |rule, about, complete| Check::rule(rule, about, &f, complete).state;
        assert_eq!(on(Rule::NotLate, Some("lb2"), true), CheckState::Failed);
        assert_eq!(on(Rule::NotLate, Some("lb1"), true), CheckState::Passed);
        assert_eq!(on(Rule::NotEarly, Some("lb2"), true), CheckState::Passed);
        // Steps cut short: no finding is no pass.
        assert_eq!(
            on(Rule::NotEarly, Some("lb2"), false),
            CheckState::NotReached
        );
        assert_eq!(on(Rule::NotLate, Some("lb2"), false), CheckState::Failed);
        let ids: Vec<String> = Check::rules(["lb1".to_owned()].iter(), &f, true)
            .into_iter()
            .map(|c| c.id)
            .collect();
        assert!(
            ids.contains(&"judge not-late lb1".to_owned())
                && ids.contains(&"judge quiet".to_owned())
        );
    }

    #[test]
    fn a_step_check_names_its_index_kind_and_predicate() {
        let step: SuiteStep = serde_json::from_value(serde_json::json!(
            {"assert": {"eventually": {"that": {"recordRetried": {"backup": "lb1", "n": 1}}}}}
        ))
        .unwrap();
        let c = Check::step(3, &step, "assert", CheckState::NotReached);
        assert_eq!(c.id, "steps[3] assert");
        assert_eq!(c.what, "assert recordRetried");
    }
}
