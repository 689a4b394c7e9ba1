//! `kernel`: change the log backup task in the kernel (PD's etcd), as TiKV/BR or an
//! operator's user would: running, absent, or paused (v1 / v2 ERROR / v2 MANUAL).

use lbc_api::kernel::keys::{PauseKind, PauseV2Payload, StreamBackupError, pause_v2, task_keys};
use lbc_api::kernel::tso_now;

use super::{Shown, Step, StepError};
use crate::run::scope::Scope;
use crate::suite::model::{KernelStep, KernelTaskState, PauseKindDecl};

impl Step for KernelStep {
    const KIND: &'static str = "kernel";
    const MOVES_CURSOR: bool = true;
    const ACTS: bool = true;
    const SHOWN: Shown = Shown::Kernel;

    async fn run(&self, cx: &mut Scope<'_>) -> Result<(), StepError> {
        let keys = task_keys(cx.names.actual(&self.task));
        let kernel = &cx.kernel;
        match (&self.state, &self.pause) {
            (Some(KernelTaskState::Running), _) => {
                kernel.put(&keys.info, b"{}").await?;
                kernel
                    .put(&keys.checkpoint, &tso_now().to_be_bytes())
                    .await?;
                kernel.delete(&keys.pause).await?;
            }
            (Some(KernelTaskState::Absent), _) => {
                for key in [&keys.info, &keys.checkpoint, &keys.pause, &keys.last_error] {
                    kernel.delete(key).await?;
                }
            }
            (None, Some(p)) => {
                let value = match p.kind {
                    PauseKindDecl::V1 => {
                        if let Some(t) = &p.text {
                            kernel.put(&keys.last_error, t.as_bytes()).await?;
                        }
                        Vec::new()
                    }
                    kind => {
                        let payload = match (&p.error, &p.text) {
                            (None, Some(t)) if p.payload_type.is_some() => {
                                Some(PauseV2Payload::Other {
                                    payload_type: p.payload_type.clone().unwrap_or_default(),
                                    bytes: t.as_bytes().to_vec(),
                                })
                            }
                            (Some(e), _) => Some(PauseV2Payload::Error(StreamBackupError {
                                store_id: e.store_id,
                                error_message: e.message.clone(),
                                ..StreamBackupError::default()
                            })),
                            (None, Some(t)) => Some(PauseV2Payload::Text(t.clone())),
                            (None, None) => None,
                        };
                        let kind = if kind == PauseKindDecl::Error {
                            PauseKind::Error
                        } else {
                            PauseKind::Manual
                        };
                        pause_v2(kind, payload, "lbc", 1, "2026-01-01T00:00:00Z")
                    }
                };
                kernel.put(&keys.pause, &value).await?;
            }
            // Validation refuses this; a hand-built suite gets a clear error.
            (None, None) => {
                return Err(StepError::Manifest(
                    "kernel step without state or pause".into(),
                ));
            }
        }
        Ok(())
    }
}
