//! The suite file format (`suites/*.yaml`): plain serde types, `deny_unknown_fields`
//! everywhere, JSON Schema generated from them.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use lbc_api::plan::Step as PlanStep;

use super::duration::GoDuration;

mod assertion;
mod fault;
mod predicate;
mod steps;

pub use assertion::*;
pub use fault::*;
pub use predicate::*;
pub use steps::*;

/// The contract's clauses (`CONTRACT.md`), in order: what a suite may name.
pub const CLAUSES: [&str; 17] = [
    "LBR-1", "LBR-2", "LBR-3", "LBR-4", "LBR-5", "LBR-6", "LBR-7", "LBR-8", "LBR-9", "LBR-10",
    "LBR-11", "LBR-12", "LBR-13", "LBR-14", "LBR-15", "LBR-16", "LBR-17",
];

/// One failure story.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Suite {
    /// Unique name: lowercase letters, digits and `-`.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The contract clauses this suite checks (`LBR-1` … `LBR-16`).
    pub clauses: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// The story of the field report a suite was replayed from (`lbc replay` writes it):
    /// what the report showed, what was assumed, what the contract says should happen. Shown
    /// beside the suite's timeline in the HTML report and under a failure on the terminal.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub story: Vec<String>,
    /// The whole suite's budget (Go duration, default `120s`); steps inherit what is left.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<GoDuration>,
    /// The Backups the suite creates, by name.
    pub backups: Vec<BackupDecl>,
    /// fake-br plans: backup → subcommand (`log-start`, …, `snapshot`) → steps.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub plans: BTreeMap<String, BTreeMap<String, Vec<PlanStep>>>,
    /// What happens, in order.
    pub steps: Vec<SuiteStep>,
}

/// A Backup the suite creates: inline fields, or a fixture file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackupDecl {
    pub name: String,
    /// A YAML file (relative to the repository root) holding a Backup manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixture: Option<String>,
    /// `log` (default) or `snapshot`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// `log-start` (default for log), `log-stop` or `log-pause`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subcommand: Option<String>,
    /// `spec.backoffRetryPolicy`, as in the CRD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<lbc_api::BackoffRetryPolicy>,
    /// Finalizers the Backup is created with, e.g. to keep it `Terminating` after a
    /// `delete` as TiDB Operator's protection finalizer does. The runner removes them when
    /// the suite ends.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finalizers: Vec<String>,
}

/// One step. Exactly one key per list entry names its kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum SuiteStep {
    /// Create a declared Backup.
    Create(CreateStep),
    /// Merge-patch a Backup's spec.
    Patch(PatchStep),
    /// Delete a Backup.
    Delete(DeleteStep),
    /// Replace the fake-br plan of a Backup's subcommand.
    Plan(PlanStepDecl),
    /// Change the kernel task.
    Kernel(KernelStep),
    /// Delete the pods of a subcommand's Job (as an eviction or node loss would).
    KillJob(JobRef),
    /// Shorten a running Job's deadline: the Job controller fails it (`DeadlineExceeded`).
    ExpireJob(ExpireJobStep),
    /// Give the suite's Jobs a Pod failure policy (through the API server's admission).
    PodFailurePolicy(PodFailurePolicyStep),
    /// Give the suite's Jobs an image without its entrypoint (through admission).
    UnstartableJobs(UnstartableJobsStep),
    /// Stop, start or restart (SIGKILL + start) the controller, now or when a condition holds.
    Controller(ControllerStep),
    /// Arm a fault in the API proxy: it acts on a request of the controller under test
    /// (or its watch streams) from now on.
    Fault(FaultStep),
    /// Sleep (Go duration).
    Wait(WaitStep),
    /// Check the recorded trace.
    Assert(Assertion),
    /// Snapshot the normalized outcome (insta), named after the suite.
    Snapshot(SnapshotStep),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackupRef {
    pub backup: String,
}

/// What a suite element refers to or requires, for [`super::validate`]: the validator
/// knows no step kinds, so a new kind declares its own checks here, beside its type.
#[derive(Debug)]
pub enum Check<'a> {
    /// A declared Backup.
    Backup { field: String, name: &'a str },
    /// A subcommand (`snapshot` allowed where a Job is meant).
    Subcommand {
        field: String,
        value: &'a str,
        snapshot: bool,
    },
    /// A Go duration, written under `key`.
    Duration {
        field: String,
        key: &'static str,
        value: &'a GoDuration,
    },
    /// A predicate (checked recursively).
    Predicate { field: String, that: &'a Predicate },
    /// A rule the element broke: `key: value` locates it, `choices` suggest a fix.
    Broken {
        field: String,
        key: &'static str,
        value: String,
        message: String,
        choices: &'static [&'static str],
    },
}

/// An element of a suite that refers to other things.
pub trait Checks {
    /// The checks of this element, whose field path is `field`.
    fn checks<'a>(&'a self, field: &str, out: &mut Vec<Check<'a>>);
}

fn backup<'a>(field: String, name: &'a str) -> Check<'a> {
    Check::Backup { field, name }
}

fn duration<'a>(
    field: String,
    key: &'static str,
    value: &'a Option<GoDuration>,
) -> Option<Check<'a>> {
    value
        .as_ref()
        .map(|value| Check::Duration { field, key, value })
}

impl SuiteStep {
    /// The checks of step `steps[i]` (`field`).
    pub fn checks<'a>(&'a self, field: &str, out: &mut Vec<Check<'a>>) {
        match self {
            // `create`/`delete` name their backup without the kind (as suites always did).
            Self::Create(CreateStep { backup: b }) | Self::Delete(DeleteStep { backup: b }) => {
                out.push(backup(format!("{field}.backup"), b));
            }
            Self::Patch(s) => s.checks(&format!("{field}.patch"), out),
            Self::Plan(s) => s.checks(&format!("{field}.plan"), out),
            Self::KillJob(s) => s.checks(&format!("{field}.killJob"), out),
            Self::ExpireJob(s) => s.checks(&format!("{field}.expireJob"), out),
            Self::PodFailurePolicy(s) => s.checks(&format!("{field}.podFailurePolicy"), out),
            Self::UnstartableJobs(s) => s.checks(&format!("{field}.unstartableJobs"), out),
            Self::Kernel(s) => s.checks(&format!("{field}.kernel"), out),
            Self::Controller(s) => s.checks(&format!("{field}.controller"), out),
            Self::Fault(s) => s.checks(&format!("{field}.fault"), out),
            Self::Wait(s) => s.checks(&format!("{field}.wait"), out),
            Self::Assert(s) => s.checks(&format!("{field}.assert"), out),
            Self::Snapshot(s) => s.checks(&format!("{field}.snapshot"), out),
        }
    }
}
