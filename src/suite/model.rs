//! The suite file format (`suites/*.yaml`): plain serde types, `deny_unknown_fields`
//! everywhere, JSON Schema generated from them.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use lbc_api::plan::Step as PlanStep;

use super::duration::GoDuration;

/// The contract's clauses (`CONTRACT.md`), in order: what a suite may name.
pub const CLAUSES: [&str; 16] = [
    "LBR-1", "LBR-2", "LBR-3", "LBR-4", "LBR-5", "LBR-6", "LBR-7", "LBR-8", "LBR-9", "LBR-10",
    "LBR-11", "LBR-12", "LBR-13", "LBR-14", "LBR-15", "LBR-16",
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

/// `create: {backup: NAME}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateStep {
    pub backup: String,
}

/// `delete: {backup: NAME}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeleteStep {
    pub backup: String,
}

/// `wait: 2s`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct WaitStep(pub GoDuration);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PatchStep {
    pub backup: String,
    /// Merged into `spec`.
    pub spec: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlanStepDecl {
    pub backup: String,
    pub subcommand: String,
    pub steps: Vec<PlanStep>,
}

/// What to do to the kernel task of `task` (a Backup name).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KernelStep {
    pub task: String,
    /// `running` (put info and checkpoint, clear pause), `absent` (delete the task keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<KernelTaskState>,
    /// Pause the task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<PauseDecl>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum KernelTaskState {
    Running,
    Absent,
}

/// A pause as TiKV/BR write it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PauseDecl {
    /// `v1` (empty value; reason under last-error), `error` or `manual` (PauseV2).
    pub kind: PauseKindDecl,
    /// Text payload (v2) or last-error text (v1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// An error payload (`brpb.StreamBackupError`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorPayloadDecl>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum PauseKindDecl {
    V1,
    Error,
    Manual,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ErrorPayloadDecl {
    pub store_id: u64,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ControllerStep {
    pub action: ControllerAction,
    /// Act only once this holds (checked against the live trace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<Predicate>,
    /// How long to wait for `when` (Go duration; default: what is left of the suite).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<GoDuration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ControllerAction {
    Stop,
    Start,
    /// SIGKILL, then start.
    Restart,
}

/// `fault`: which request of the controller, and what happens to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultStep {
    /// Which requests count (every given field must match).
    #[serde(default)]
    pub request: RequestMatch,
    /// Fire at the nth matching request from now (default 1). Not for `watch`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurrence: Option<u32>,
    /// What happens. Exactly one key.
    pub inject: FaultKind,
}

/// A request of the controller under test.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequestMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verb: Option<VerbDecl>,
    /// `backups`, `jobs`, `events`, `pods`, `leases`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// e.g. `status`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subresource: Option<String>,
    /// The object's name (a declared Backup's name means that Backup).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The JSON request body contains this (every key and value given, recursively; a
    /// list matches when each given element matches one of its elements).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<serde_json::Value>,
    /// A write that makes this hold: false on the object before the write, true on the
    /// object as written (the rest of the state as recorded). Whatever verb the
    /// controller uses: an update, a merge or apply patch (not a JSON patch), a create.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub makes: Option<Predicate>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum VerbDecl {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
    /// create, update, patch or delete.
    Write,
}

/// What a fault does. Exactly one key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum FaultKind {
    /// SIGKILL the controller just before the request is forwarded, or just after the
    /// apiserver answered it (the controller never sees the answer), then start it again.
    Crash(CrashFault),
    /// Answer 409 Conflict once, without forwarding.
    Conflict(Empty),
    /// Answer an error once, without forwarding.
    Error(ErrorFault),
    /// Hold the request before forwarding it, or its response before returning it.
    Delay(DelayFault),
    /// Watch streams of `request.resource`.
    Watch(WatchFault),
}

/// `{}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CrashFault {
    /// `before` (the request never reaches the apiserver) or `after` (it took effect).
    pub at: CrashAt,
    /// Start the controller again after this long (Go duration; default at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_after: Option<GoDuration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum CrashAt {
    Before,
    After,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ErrorFault {
    /// 429, 500, 502, 503 or 504.
    pub code: u16,
    /// `Retry-After` (Go duration, whole seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<GoDuration>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DelayFault {
    /// Hold the request this long before forwarding it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<GoDuration>,
    /// Hold the response this long before returning it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<GoDuration>,
    /// Hold the request until this holds in the recorded trace (at most `bound`): a
    /// race made to happen every time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<Predicate>,
    /// The longest `until` may hold a request (Go duration, default 30s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bound: Option<GoDuration>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WatchFault {
    /// End the open watch streams now (the next one, if none is open).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub close: bool,
    /// Answer the next watch that resumes from a resourceVersion with 410 Gone.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub gone: bool,
    /// From now on deliver every watch event this much later (order kept): a stale view.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<GoDuration>,
}

/// A condition over one Backup's recorded state. Exactly one key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum Predicate {
    /// Record `n` exists (`realRetryAt` may or may not be set).
    RecordExists(RecordRef),
    /// Record `n` exists and its retry has not run.
    RecordPending(RecordRef),
    /// Record `n`'s retry has run.
    RecordRetried(RecordRef),
    /// `status.phase` equals.
    Phase(PhaseRef),
    /// `logSubCommandStatuses.<subcommand>.phase` equals.
    SubPhase(SubPhaseRef),
    /// A condition of the whole status (or a subcommand's) has this type (and reason).
    Condition(ConditionRef),
    /// The Job of a subcommand has failed.
    JobFailed(JobRef),
    /// A Job of the subcommand exists (whatever its state).
    JobExists(JobRef),
    /// The Job of a subcommand has completed (condition `Complete=True`).
    JobComplete(JobRef),
    /// The Backup no longer exists.
    Deleted(BackupRef),
    AllOf(Vec<Predicate>),
    AnyOf(Vec<Predicate>),
    Not(Box<Predicate>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RecordRef {
    pub backup: String,
    pub n: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PhaseRef {
    pub backup: String,
    pub phase: lbc_api::BackupConditionType,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubPhaseRef {
    pub backup: String,
    pub subcommand: String,
    pub phase: lbc_api::BackupConditionType,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConditionRef {
    pub backup: String,
    #[serde(rename = "type")]
    pub type_: lbc_api::BackupConditionType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Look in this subcommand's status instead of the whole status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subcommand: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JobRef {
    pub backup: String,
    pub subcommand: String,
}

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

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SnapshotStep {
    /// Round relative times to this granularity (Go duration, default `1s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub granularity: Option<GoDuration>,
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
            Self::Kernel(s) => s.checks(&format!("{field}.kernel"), out),
            Self::Controller(s) => s.checks(&format!("{field}.controller"), out),
            Self::Fault(s) => s.checks(&format!("{field}.fault"), out),
            Self::Wait(s) => s.checks(&format!("{field}.wait"), out),
            Self::Assert(s) => s.checks(&format!("{field}.assert"), out),
            Self::Snapshot(s) => s.checks(&format!("{field}.snapshot"), out),
        }
    }
}

impl Checks for PatchStep {
    fn checks<'a>(&'a self, field: &str, out: &mut Vec<Check<'a>>) {
        out.push(backup(format!("{field}.backup"), &self.backup));
        if !self.spec.is_object() {
            out.push(Check::Broken {
                field: format!("{field}.spec"),
                key: "spec",
                value: String::new(),
                message: "must be a mapping merged into spec".into(),
                choices: &[],
            });
        }
    }
}

impl Checks for PlanStepDecl {
    fn checks<'a>(&'a self, field: &str, out: &mut Vec<Check<'a>>) {
        out.push(backup(format!("{field}.backup"), &self.backup));
        out.push(Check::Subcommand {
            field: format!("{field}.subcommand"),
            value: &self.subcommand,
            snapshot: true,
        });
    }
}

impl Checks for JobRef {
    fn checks<'a>(&'a self, field: &str, out: &mut Vec<Check<'a>>) {
        out.push(backup(format!("{field}.backup"), &self.backup));
        out.push(Check::Subcommand {
            field: format!("{field}.subcommand"),
            value: &self.subcommand,
            snapshot: true,
        });
    }
}

impl Checks for KernelStep {
    fn checks<'a>(&'a self, field: &str, out: &mut Vec<Check<'a>>) {
        out.push(backup(format!("{field}.task"), &self.task));
        if self.state.is_some() == self.pause.is_some() {
            out.push(Check::Broken {
                field: field.to_owned(),
                key: "kernel",
                value: String::new(),
                message: "give exactly one of `state` or `pause`".into(),
                choices: &[],
            });
        }
    }
}

impl Checks for ControllerStep {
    fn checks<'a>(&'a self, field: &str, out: &mut Vec<Check<'a>>) {
        if let Some(w) = &self.when {
            out.push(Check::Predicate {
                field: format!("{field}.when"),
                that: w,
            });
        }
        out.extend(duration(
            format!("{field}.timeout"),
            "timeout",
            &self.timeout,
        ));
    }
}

impl Checks for FaultStep {
    fn checks<'a>(&'a self, field: &str, out: &mut Vec<Check<'a>>) {
        let broken = |key: &'static str, value: String, message: &str, choices| Check::Broken {
            field: format!("{field}.{key}"),
            key,
            value,
            message: message.to_owned(),
            choices,
        };
        if let Some(p) = &self.request.makes {
            out.push(Check::Predicate {
                field: format!("{field}.request.makes"),
                that: p,
            });
        }
        if self.occurrence == Some(0) {
            out.push(broken("occurrence", "0".into(), "counts from 1", &[]));
        }
        let is_watch = self.request.verb == Some(VerbDecl::Watch);
        match &self.inject {
            FaultKind::Crash(c) => out.extend(duration(
                format!("{field}.inject.crash.restartAfter"),
                "restartAfter",
                &c.restart_after,
            )),
            FaultKind::Conflict(_) => {}
            FaultKind::Error(e) => {
                if ![429, 500, 502, 503, 504].contains(&e.code) {
                    out.push(Check::Broken {
                        field: format!("{field}.inject.error.code"),
                        key: "code",
                        value: e.code.to_string(),
                        message: format!(
                            "{} is not an answer the apiserver gives to a healthy request; one of 429, 500, 502, 503, 504",
                            e.code
                        ),
                        choices: &[],
                    });
                }
                out.extend(duration(
                    format!("{field}.inject.error.retryAfter"),
                    "retryAfter",
                    &e.retry_after,
                ));
            }
            FaultKind::Delay(d) => {
                if d.request.is_none() && d.response.is_none() && d.until.is_none() {
                    out.push(broken(
                        "inject",
                        "delay".into(),
                        "delay needs request, response or until",
                        &["request", "response", "until"],
                    ));
                }
                if let Some(u) = &d.until {
                    out.push(Check::Predicate {
                        field: format!("{field}.inject.delay.until"),
                        that: u,
                    });
                }
                for (key, v) in [
                    ("request", &d.request),
                    ("response", &d.response),
                    ("bound", &d.bound),
                ] {
                    out.extend(duration(format!("{field}.inject.delay.{key}"), key, v));
                }
            }
            FaultKind::Watch(w) => {
                if !w.close && !w.gone && w.delay.is_none() {
                    out.push(broken(
                        "inject",
                        "watch".into(),
                        "watch needs close, gone or delay",
                        &["close", "gone", "delay"],
                    ));
                }
                if self.request.verb.is_some() && !is_watch {
                    out.push(broken(
                        "request",
                        "verb".into(),
                        "a watch fault acts on watch requests: leave verb out or say watch",
                        &["watch"],
                    ));
                }
                if self.request.resource.is_none() {
                    out.push(broken(
                        "request",
                        String::new(),
                        "a watch fault needs request.resource (which streams)",
                        &["backups", "jobs", "pods"],
                    ));
                }
                out.extend(duration(
                    format!("{field}.inject.watch.delay"),
                    "delay",
                    &w.delay,
                ));
            }
        }
        if is_watch && !matches!(self.inject, FaultKind::Watch(_)) {
            out.push(broken(
                "request",
                "watch".into(),
                "only a watch fault acts on a watch request",
                &[],
            ));
        }
    }
}

impl Checks for WaitStep {
    fn checks<'a>(&'a self, field: &str, out: &mut Vec<Check<'a>>) {
        out.push(Check::Duration {
            field: field.to_owned(),
            key: "wait",
            value: &self.0,
        });
    }
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

impl Checks for SnapshotStep {
    fn checks<'a>(&'a self, field: &str, out: &mut Vec<Check<'a>>) {
        out.extend(duration(
            format!("{field}.granularity"),
            "granularity",
            &self.granularity,
        ));
    }
}
