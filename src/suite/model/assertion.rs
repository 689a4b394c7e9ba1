//! `assert` steps: records, phases, events, metrics, and the timing windows.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::*;
use crate::suite::duration::GoDuration;

/// A check over the recorded trace. Exactly one key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum Assertion {
    /// Holds at some point within `within` (default: what is left of the suite).
    Eventually(Timed),
    /// Never held, over `for` from now, or (without `for`) over the whole suite so far.
    Never(Window),
    /// `that` holds at every recorded point until `until` first holds.
    AlwaysUntil(AlwaysUntil),
    /// Events about a Backup, in this order (others may interleave), with counts.
    Events(EventsAssertion),
    /// The controller's counters about a Backup's subcommand, scraped from its metrics
    /// endpoint (LBR-15), equal within `within`.
    Metrics(MetricsAssertion),
}

/// `metrics: {backup, subcommand, expect: {jobFailures, retries, kernelRecoveries}}`.
///
/// Counts are since the controller under test last started, for the series labelled
/// `namespace`, `name` (the Backup) and `subcommand` (as the contract names them). Which
/// metric family plays which role is the target's configuration, not the contract's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricsAssertion {
    pub backup: String,
    pub subcommand: String,
    pub expect: MetricCounts,
    /// Default 5s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within: Option<GoDuration>,
}

/// Expected counter values; an omitted role is not checked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricCounts {
    /// Failed Jobs detected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_failures: Option<u64>,
    /// Retries started (a new Job or a kernel recovery).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u64>,
    /// Retries resolved by the kernel being in the wanted state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_recoveries: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Timed {
    pub that: Predicate,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within: Option<GoDuration>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Window {
    pub that: Predicate,
    #[serde(default, rename = "for", skip_serializing_if = "Option::is_none")]
    pub for_: Option<GoDuration>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AlwaysUntil {
    pub that: Predicate,
    pub until: Predicate,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within: Option<GoDuration>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventsAssertion {
    pub backup: String,
    /// `true`: the listed reasons appear in this order; `false`: any order.
    #[serde(default)]
    pub ordered: bool,
    pub expect: Vec<EventExpectation>,
    /// Reasons listed in `expect` must occur exactly as counted; unlisted reasons are free
    /// unless `exhaustive`.
    #[serde(default)]
    pub exhaustive: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventExpectation {
    pub reason: String,
    /// `Normal` or `Warning`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// Occurrences (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
}

impl Checks for Assertion {
    fn checks<'a>(&'a self, field: &str, out: &mut Vec<Check<'a>>) {
        let that = |field: String, that| Check::Predicate { field, that };
        match self {
            Self::Eventually(t) => {
                out.push(that(format!("{field}.eventually.that"), &t.that));
                out.extend(duration(
                    format!("{field}.eventually.within"),
                    "within",
                    &t.within,
                ));
            }
            Self::Never(w) => {
                out.push(that(format!("{field}.never.that"), &w.that));
                out.extend(duration(format!("{field}.never.for"), "for", &w.for_));
            }
            Self::AlwaysUntil(a) => {
                out.push(that(format!("{field}.alwaysUntil.that"), &a.that));
                out.push(that(format!("{field}.alwaysUntil.until"), &a.until));
                out.extend(duration(
                    format!("{field}.alwaysUntil.within"),
                    "within",
                    &a.within,
                ));
            }
            Self::Metrics(m) => {
                out.push(backup(format!("{field}.metrics.backup"), &m.backup));
                out.push(Check::Subcommand {
                    field: format!("{field}.metrics.subcommand"),
                    value: &m.subcommand,
                    snapshot: true,
                });
                out.extend(duration(
                    format!("{field}.metrics.within"),
                    "within",
                    &m.within,
                ));
                if m.expect == MetricCounts::default() {
                    out.push(Check::Broken {
                        field: format!("{field}.metrics.expect"),
                        key: "expect",
                        value: String::new(),
                        message: "expects nothing; give at least one counter".into(),
                        choices: &["jobFailures", "retries", "kernelRecoveries"],
                    });
                }
            }
            Self::Events(e) => {
                out.push(backup(format!("{field}.events.backup"), &e.backup));
                for (j, x) in e.expect.iter().enumerate() {
                    if let Some(t) = &x.type_
                        && t != "Normal"
                        && t != "Warning"
                    {
                        out.push(Check::Broken {
                            field: format!("{field}.events.expect[{j}].type"),
                            key: "type",
                            value: t.clone(),
                            message: format!("event type {t:?} is neither Normal nor Warning"),
                            choices: &["Normal", "Warning"],
                        });
                    }
                }
            }
        }
    }
}
