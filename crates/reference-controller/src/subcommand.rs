//! Which log subcommand a Backup is asking for now (the operator's
//! `ParseLogBackupSubcommand`): derived from the spec and the whole-status phase.

use lbc_api::{BackupConditionType, BackupSpec, BackupStatus, LogSubcommand};

/// The current subcommand: `log-resume` when a started backup is paused and the spec says
/// start; `log-truncate` when the selected command is already in sync and a new
/// `logTruncateUntil` is set.
pub fn derive(spec: &BackupSpec, status: Option<&BackupStatus>) -> LogSubcommand {
    let phase = status.and_then(|s| s.phase);
    let selected = match spec.log_subcommand {
        None if spec.log_stop == Some(true) || phase == Some(BackupConditionType::Stopped) => {
            LogSubcommand::Stop
        }
        None | Some(LogSubcommand::Start) | Some(LogSubcommand::Resume) => {
            if phase == Some(BackupConditionType::Paused) {
                LogSubcommand::Resume
            } else {
                LogSubcommand::Start
            }
        }
        Some(LogSubcommand::Truncate) => LogSubcommand::Start,
        Some(other) => other,
    };
    let in_sync = match selected {
        LogSubcommand::Start => status
            .and_then(|s| s.commit_ts.as_deref())
            .is_some_and(|c| !c.is_empty()),
        LogSubcommand::Stop => phase == Some(BackupConditionType::Stopped),
        LogSubcommand::Pause => phase == Some(BackupConditionType::Paused),
        LogSubcommand::Resume => phase == Some(BackupConditionType::Running),
        LogSubcommand::Truncate => false,
    };
    let wanted_truncate = spec.log_truncate_until.as_deref().filter(|t| !t.is_empty());
    let done_truncate = status.and_then(|s| s.log_success_truncate_until.as_deref());
    match wanted_truncate {
        Some(until) if in_sync && Some(until) != done_truncate => LogSubcommand::Truncate,
        _ => selected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use BackupConditionType as P;
    use LogSubcommand as S;
    use rstest::rstest;

    #[rstest]
    #[case(None, None, None, None, None, S::Start)]
    #[case(Some(S::Start), None, None, None, None, S::Start)]
    #[case(Some(S::Start), Some(P::Paused), None, None, None, S::Resume)]
    #[case(None, Some(P::Paused), None, None, None, S::Resume)]
    #[case(None, Some(P::Stopped), None, None, None, S::Stop)]
    #[case(Some(S::Stop), Some(P::Running), None, None, None, S::Stop)]
    #[case(Some(S::Pause), Some(P::Running), None, None, None, S::Pause)]
    #[case::truncate_after_start(
        Some(S::Start),
        Some(P::Running),
        Some("42"),
        Some("100"),
        None,
        S::Truncate
    )]
    #[case::truncate_done(
        Some(S::Start),
        Some(P::Running),
        Some("42"),
        Some("100"),
        Some("100"),
        S::Start
    )]
    #[case::truncate_waits_for_start(
        Some(S::Start),
        Some(P::Running),
        None,
        Some("100"),
        None,
        S::Start
    )]
    #[case::truncate_while_paused(
        Some(S::Pause),
        Some(P::Paused),
        Some("42"),
        Some("100"),
        None,
        S::Truncate
    )]
    fn derives_like_the_operator(
        #[case] spec_sub: Option<LogSubcommand>,
        #[case] phase: Option<BackupConditionType>,
        #[case] commit_ts: Option<&str>,
        #[case] truncate_until: Option<&str>,
        #[case] truncated: Option<&str>,
        #[case] expected: LogSubcommand,
    ) {
        let spec = BackupSpec {
            log_subcommand: spec_sub,
            log_truncate_until: truncate_until.map(Into::into),
            ..BackupSpec::default()
        };
        let status = BackupStatus {
            phase,
            commit_ts: commit_ts.map(Into::into),
            log_success_truncate_until: truncated.map(Into::into),
            ..BackupStatus::default()
        };
        assert_eq!(derive(&spec, Some(&status)), expected);
    }

    #[test]
    fn legacy_log_stop() {
        let spec = BackupSpec {
            log_stop: Some(true),
            ..BackupSpec::default()
        };
        assert_eq!(derive(&spec, None), S::Stop);
    }
}
