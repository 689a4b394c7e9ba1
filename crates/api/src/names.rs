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

/// Where backup-manager finds PD (the kernel): `<cluster>-pd.<namespace>:2379`.
pub fn pd_endpoint(cluster: &str, namespace: &str) -> String {
    format!("{cluster}-pd.{namespace}:2379")
}
