//! How a condition changes a Backup's status, after the operator's
//! `backup_status_updater.go`: a condition written for a log subcommand updates
//! `logSubCommandStatuses.<sub>` and, by the subcommand's rules, the whole status.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::{
    BackupCondition, BackupConditionType as C, BackupMode, BackupStatus, LogSubCommandStatus,
    LogSubcommand,
};

/// Upsert `cond` by type; the transition time moves only when the status value changes.
/// Returns whether anything changed.
pub fn upsert_condition(
    conditions: &mut Vec<BackupCondition>,
    mut cond: BackupCondition,
    now: Timestamp,
) -> bool {
    match conditions.iter_mut().find(|c| c.type_ == cond.type_) {
        Some(existing) => {
            cond.last_transition_time = if existing.status == cond.status {
                existing.last_transition_time.clone()
            } else {
                Some(Time(now))
            };
            if *existing == cond {
                return false;
            }
            *existing = cond;
            true
        }
        None => {
            cond.last_transition_time = Some(Time(now));
            conditions.push(cond);
            true
        }
    }
}

/// A `status: True` condition.
pub fn condition(type_: C, reason: Option<&str>, message: Option<&str>) -> BackupCondition {
    BackupCondition {
        type_,
        status: "True".into(),
        last_transition_time: None,
        reason: reason.map(Into::into),
        message: message.map(Into::into),
        command: None,
    }
}

fn set_whole(status: &mut BackupStatus, cond: BackupCondition, now: Timestamp) -> bool {
    let phase_changed = status.phase != Some(cond.type_);
    status.phase = Some(cond.type_);
    let mut cond = cond;
    cond.command = None;
    upsert_condition(&mut status.conditions, cond, now) || phase_changed
}

impl BackupStatus {
    /// Apply `cond`: for log mode with `sub`, to `logSubCommandStatuses.<sub>` and the whole
    /// status by the operator's rules; otherwise (snapshot) to the whole status.
    ///
    /// The operator copies only log-start's non-Complete conditions to the whole status;
    /// \[ours\] the retry conditions (`RetryFailed`, `Failed`, `Invalid`) of every subcommand
    /// are copied too, so a stuck stop or pause is visible at `status.phase`.
    /// Returns whether anything changed.
    pub fn apply(
        &mut self,
        mode: BackupMode,
        sub: Option<LogSubcommand>,
        cond: BackupCondition,
        now: Timestamp,
    ) -> bool {
        let (BackupMode::Log, Some(sub)) = (mode, sub) else {
            return set_whole(self, cond, now);
        };
        let key = sub.as_str().to_owned();
        let entry = self
            .log_sub_command_statuses
            .entry(key.clone())
            .or_default();
        let mut changed = apply_sub(entry, &key, cond.clone(), now);
        // Pause and resume undo each other: a change to one makes the other repeatable.
        let other = match sub {
            LogSubcommand::Pause => Some(LogSubcommand::Resume),
            LogSubcommand::Resume => Some(LogSubcommand::Pause),
            _ => None,
        };
        if changed
            && let Some(o) = other.and_then(|o| self.log_sub_command_statuses.get_mut(o.as_str()))
            && o.phase != Some(C::Repeatable)
        {
            o.phase = Some(C::Repeatable);
        }
        let whole = match (sub, cond.type_) {
            (_, C::RetryFailed | C::Failed | C::Invalid) => Some(cond.clone()),
            (LogSubcommand::Start, C::Complete) => None,
            (LogSubcommand::Start, _) => Some(cond.clone()),
            (LogSubcommand::Stop, C::Complete) => Some(BackupCondition {
                type_: C::Stopped,
                ..cond.clone()
            }),
            (LogSubcommand::Pause, C::Complete) => Some(BackupCondition {
                type_: C::Paused,
                ..cond.clone()
            }),
            (LogSubcommand::Resume, C::Complete) => Some(BackupCondition {
                type_: C::Running,
                ..cond.clone()
            }),
            _ => None,
        };
        if let Some(w) = whole {
            changed |= set_whole(self, w, now);
        }
        changed
    }
}

fn apply_sub(
    entry: &mut LogSubCommandStatus,
    key: &str,
    mut cond: BackupCondition,
    now: Timestamp,
) -> bool {
    let mut changed = false;
    if entry.command.as_deref() != Some(key) {
        entry.command = Some(key.to_owned());
        changed = true;
    }
    if entry.phase != Some(cond.type_) {
        entry.phase = Some(cond.type_);
        changed = true;
    }
    match cond.type_ {
        C::Scheduled if entry.time_started.is_some() || entry.time_completed.is_some() => {
            // A new run of this subcommand starts afresh.
            entry.time_started = None;
            entry.time_completed = None;
            changed = true;
        }
        C::Running if entry.time_started.is_none() => {
            entry.time_started = Some(Time(now));
            changed = true;
        }
        C::Complete if entry.time_completed.is_none() => {
            entry.time_completed = Some(Time(now));
            changed = true;
        }
        _ => {}
    }
    cond.command = Some(key.to_owned());
    upsert_condition(&mut entry.conditions, cond, now) || changed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    fn apply(st: &mut BackupStatus, sub: LogSubcommand, ty: C, at: i64) -> bool {
        st.apply(BackupMode::Log, Some(sub), condition(ty, None, None), t(at))
    }

    #[test]
    fn log_start_progression() {
        let mut st = BackupStatus::default();
        for (i, ty) in [C::Scheduled, C::Prepare, C::Running, C::Complete]
            .into_iter()
            .enumerate()
        {
            assert!(apply(&mut st, LogSubcommand::Start, ty, i as i64));
        }
        assert_eq!(
            st.phase,
            Some(C::Running),
            "Complete of log-start is not copied"
        );
        let sub = &st.log_sub_command_statuses["log-start"];
        assert_eq!(sub.phase, Some(C::Complete));
        assert_eq!(sub.time_started, Some(Time(t(2))));
        assert_eq!(sub.time_completed, Some(Time(t(3))));
        assert!(
            sub.conditions
                .iter()
                .all(|c| c.command.as_deref() == Some("log-start"))
        );
        assert!(st.conditions.iter().all(|c| c.command.is_none()));
    }

    #[test]
    fn repeating_a_condition_changes_nothing() {
        let mut st = BackupStatus::default();
        assert!(apply(&mut st, LogSubcommand::Start, C::Running, 0));
        let before = st.clone();
        assert!(!apply(&mut st, LogSubcommand::Start, C::Running, 5));
        assert_eq!(st, before);
    }

    #[test]
    fn stop_pause_resume_map_complete_to_whole_phase() {
        let mut st = BackupStatus::default();
        apply(&mut st, LogSubcommand::Pause, C::Complete, 0);
        assert_eq!(st.phase, Some(C::Paused));
        apply(&mut st, LogSubcommand::Resume, C::Complete, 1);
        assert_eq!(st.phase, Some(C::Running));
        assert_eq!(
            st.log_sub_command_statuses["log-pause"].phase,
            Some(C::Repeatable)
        );
        apply(&mut st, LogSubcommand::Stop, C::Running, 2);
        assert_eq!(
            st.phase,
            Some(C::Running),
            "stop's Running leaves the whole status"
        );
        apply(&mut st, LogSubcommand::Stop, C::Complete, 3);
        assert_eq!(st.phase, Some(C::Stopped));
    }

    #[test]
    fn retry_conditions_reach_the_whole_status_for_every_subcommand() {
        let mut st = BackupStatus::default();
        apply(&mut st, LogSubcommand::Stop, C::RetryFailed, 0);
        assert_eq!(st.phase, Some(C::RetryFailed));
        apply(&mut st, LogSubcommand::Stop, C::Failed, 1);
        assert_eq!(st.phase, Some(C::Failed));
    }

    #[test]
    fn snapshot_writes_the_whole_status() {
        let mut st = BackupStatus::default();
        st.apply(
            BackupMode::Snapshot,
            None,
            condition(C::Running, None, None),
            t(0),
        );
        assert_eq!(st.phase, Some(C::Running));
        assert!(st.log_sub_command_statuses.is_empty());
    }

    #[test]
    fn transition_time_moves_only_with_status() {
        let mut conds = Vec::new();
        upsert_condition(&mut conds, condition(C::Failed, Some("A"), None), t(0));
        upsert_condition(&mut conds, condition(C::Failed, Some("B"), None), t(9));
        assert_eq!(conds[0].last_transition_time, Some(Time(t(0))));
        assert_eq!(conds[0].reason.as_deref(), Some("B"));
    }
}
