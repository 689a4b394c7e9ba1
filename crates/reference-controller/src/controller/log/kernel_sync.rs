//! LBR-10: a completed subcommand kept in step with the kernel.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::controller::Action;
use lbc_api::{BackupCondition, BackupConditionType as C, LogSubcommand, condition};

use super::Reconcile;
use crate::controller::ReconcileError;
use crate::kernel_state::{KernelState, PauseKind, classify};

impl Reconcile<'_> {
    /// LBR-10: compare the kernel with a completed subcommand; correct the status when they
    /// disagree; write nothing when they agree.
    pub(super) async fn kernel_sync(&self) -> Result<Action, ReconcileError> {
        let (sub, name) = (self.sub, &self.name);
        let period = self.ctx.config.kernel_sync_period;
        if !matches!(
            sub,
            LogSubcommand::Start | LogSubcommand::Resume | LogSubcommand::Pause
        ) {
            return Ok(Action::await_change());
        }
        let raw = match self.ctx.read_kernel_task(self.backup, name).await {
            Ok(raw) => raw,
            Err(e) => {
                tracing::warn!(backup = %name, error = %e, "kernel sync: kernel unreachable");
                return Ok(Action::requeue(period));
            }
        };
        let state = match classify(&raw) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(backup = %name, error = %e, "kernel sync: unreadable task state");
                return Ok(Action::requeue(period));
            }
        };
        let Some((target, cond)) = kernel_correction(&state, sub, name) else {
            return Ok(Action::requeue(period));
        };
        let now = self.now;
        // timeSynced moves only with a correction: with nothing changed, nothing is written.
        self.write(target, &[cond], now, |st, changed| {
            if changed {
                st.time_synced = Some(Time(now));
            }
            Some(changed)
        })
        .await?;
        Ok(Action::requeue(period))
    }
}

/// LBR-10, pure: the correction for a kernel that disagrees with the completed `sub` (the
/// subcommand whose status to write, and the condition), or `None` when they agree.
pub(super) fn kernel_correction(
    state: &KernelState,
    sub: LogSubcommand,
    name: &str,
) -> Option<(LogSubcommand, BackupCondition)> {
    match (state, sub) {
        (KernelState::Absent, _) => Some((
            sub,
            condition(
                C::Failed,
                Some("LogBackupKeyNotFound"),
                Some(&format!(
                    "log backup task {name} not found in the kernel (/tidb/br-stream/info/{name})"
                )),
            ),
        )),
        (KernelState::Paused { kind, message }, LogSubcommand::Start | LogSubcommand::Resume) => {
            let kind = match kind {
                PauseKind::V1 => "v1",
                PauseKind::Manual => "MANUAL",
                PauseKind::Error => "ERROR",
            };
            let text = match message {
                Some(m) => format!("Synced with kernel state: paused ({kind}). {m}"),
                None => format!("Synced with kernel state: paused ({kind})"),
            };
            Some((
                LogSubcommand::Pause,
                condition(C::Complete, Some("LogBackupKernelSync"), Some(&text)),
            ))
        }
        (KernelState::Running { .. }, LogSubcommand::Pause) => Some((
            LogSubcommand::Resume,
            condition(
                C::Complete,
                Some("LogBackupKernelSync"),
                Some("Synced with kernel state: running"),
            ),
        )),
        _ => None,
    }
}
