//! The names the operator's protocol fixes: Job names, PD's service address, the job image.

use crate::LogSubcommand;

/// The image TiDB Operator's backup Jobs run (backup-manager); the harness maps it to
/// fake-br.
pub const JOB_IMAGE: &str = "pingcap/tidb-backup-manager:latest";

/// `backup-<name>-<sub>` for log mode, `backup-<name>` for snapshot.
///
/// ```
/// use lbc_api::{LogSubcommand, names::job_name};
/// assert_eq!(job_name("lb1", Some(LogSubcommand::Start)), "backup-lb1-log-start");
/// assert_eq!(job_name("sb1", None), "backup-sb1");
/// ```
pub fn job_name(backup: &str, sub: Option<LogSubcommand>) -> String {
    match sub {
        Some(s) => format!("backup-{backup}-{s}"),
        None => format!("backup-{backup}"),
    }
}

/// [`job_name`] for a subcommand spelled as suites spell it (`log-start`, …, or
/// `snapshot` for a snapshot backup's Job).
pub fn job_name_for(backup: &str, subcommand: &str) -> String {
    if subcommand == "snapshot" {
        format!("backup-{backup}")
    } else {
        format!("backup-{backup}-{subcommand}")
    }
}

/// Job-name spellings of every subcommand, as [`job_name_for`] takes them.
const JOB_SUBCOMMANDS: [&str; 6] = [
    "snapshot",
    "log-start",
    "log-stop",
    "log-pause",
    "log-resume",
    "log-truncate",
];

/// Which subcommand's Job `job` is, if it is one of `backup`'s Jobs. Exact: `backup-lb1-…`
/// is not a Job of `lb` or of `lb10`.
///
/// ```
/// use lbc_api::names::job_subcommand;
/// assert_eq!(job_subcommand("lb1", "backup-lb1-log-start"), Some("log-start"));
/// assert_eq!(job_subcommand("sb", "backup-sb"), Some("snapshot"));
/// assert_eq!(job_subcommand("lb", "backup-lb-1-log-start"), None);
/// assert_eq!(job_subcommand("lb1", "backup-lb10-log-start"), None);
/// ```
pub fn job_subcommand(backup: &str, job: &str) -> Option<&'static str> {
    JOB_SUBCOMMANDS
        .into_iter()
        .find(|s| job_name_for(backup, s) == job)
}

/// Whether `text` names one of `backup`'s Jobs as a whole word.
///
/// ```
/// use lbc_api::names::names_job_of;
/// assert!(names_job_of("Job backup-lb1-log-start failed", "lb1"));
/// assert!(!names_job_of("Job backup-lb10-log-start failed", "lb1"));
/// ```
pub fn names_job_of(text: &str, backup: &str) -> bool {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '.';
    text.split(|c: char| !word(c))
        .any(|w| job_subcommand(backup, w.trim_end_matches('.')).is_some())
}

/// Where backup-manager finds PD (the kernel): `<cluster>-pd.<namespace>:2379`.
pub fn pd_endpoint(cluster: &str, namespace: &str) -> String {
    format!("{cluster}-pd.{namespace}:2379")
}
