//! The kernel-state mapping (CONTRACT "Kernel state", LBR-4, LBR-10): what the raw keys
//! under `/tidb/br-stream/` say about a task, and whether that is what a subcommand wants.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use lbc_api::LogSubcommand;
pub use lbc_api::kernel::keys::PauseKind;
pub use lbc_api::kernel::keys::RawTask;
use lbc_api::kernel::keys::{PauseV2, StreamBackupError};

/// The task's state as the controller sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelState {
    Running {
        checkpoint: Option<u64>,
    },
    Paused {
        kind: PauseKind,
        message: Option<String>,
    },
    Absent,
}

impl KernelState {
    /// `running`, `paused` or `absent`, as messages spell it.
    pub fn word(&self) -> &'static str {
        match self {
            Self::Running { .. } => "running",
            Self::Paused { .. } => "paused",
            Self::Absent => "absent",
        }
    }
}

/// A kernel value that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("pause value is neither empty (v1) nor PauseV2 JSON: {0}")]
    PauseJson(String),
    #[error("pause severity {0:?} is neither ERROR nor MANUAL")]
    Severity(String),
    #[error("pause payload is not base64: {0}")]
    PayloadBase64(String),
    #[error("pause payload type {0:?} is neither text/plain nor a brpb.StreamBackupError")]
    PayloadType(String),
    #[error("error payload is not a StreamBackupError: {0}")]
    ErrorPayload(String),
}

fn format_error(e: &StreamBackupError) -> String {
    format!("Paused by error(store {}): {}", e.store_id, e.error_message)
}

/// Decode a PauseV2 payload into its message.
fn payload_message(p: &PauseV2) -> Result<Option<String>, StateError> {
    if p.payload.is_empty() {
        return Ok(None);
    }
    let bytes = B64
        .decode(&p.payload)
        .map_err(|e| StateError::PayloadBase64(e.to_string()))?;
    let mime = p.payload_type.to_ascii_lowercase();
    let base = mime.split(';').next().unwrap_or("").trim();
    if base == "text/plain" {
        return Ok(Some(String::from_utf8_lossy(&bytes).into_owned()));
    }
    let is_error = base == "application/x-protobuf"
        && mime
            .split(';')
            .skip(1)
            .any(|param| param.trim().replace(' ', "") == "messagetype=brpb.streambackuperror");
    if is_error {
        let e: StreamBackupError =
            serde_json::from_slice(&bytes).map_err(|e| StateError::ErrorPayload(e.to_string()))?;
        return Ok(Some(format_error(&e)));
    }
    Err(StateError::PayloadType(p.payload_type.clone()))
}

/// Classify a task from its raw keys.
///
/// # Errors
/// A `pause` value that is neither v1 nor parseable PauseV2.
pub fn classify(raw: &RawTask) -> Result<KernelState, StateError> {
    if raw.info.is_none() {
        return Ok(KernelState::Absent);
    }
    let Some(pause) = &raw.pause else {
        let checkpoint = raw
            .checkpoint
            .as_deref()
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_be_bytes);
        return Ok(KernelState::Running { checkpoint });
    };
    if pause.is_empty() {
        let message = raw
            .last_error
            .as_deref()
            .filter(|e| !e.is_empty())
            .map(|e| {
                serde_json::from_slice::<StreamBackupError>(e)
                    .map(|se| format_error(&se))
                    .unwrap_or_else(|_| String::from_utf8_lossy(e).into_owned())
            });
        return Ok(KernelState::Paused {
            kind: PauseKind::V1,
            message,
        });
    }
    let v2: PauseV2 =
        serde_json::from_slice(pause).map_err(|e| StateError::PauseJson(e.to_string()))?;
    let kind = match v2.severity.as_str() {
        "ERROR" => PauseKind::Error,
        "MANUAL" => PauseKind::Manual,
        other => return Err(StateError::Severity(other.into())),
    };
    Ok(KernelState::Paused {
        kind,
        message: payload_message(&v2)?,
    })
}

/// Whether the kernel is in the state `sub` wants: running for start/resume, paused for
/// pause, absent for stop (CONTRACT's mapping). Truncate wants no state the kernel shows: a
/// running task says nothing of whether the truncation happened, so it never recovers a
/// truncate without its Job.
pub fn satisfies(state: &KernelState, sub: LogSubcommand) -> bool {
    match sub {
        LogSubcommand::Start | LogSubcommand::Resume => {
            matches!(state, KernelState::Running { .. })
        }
        LogSubcommand::Pause => matches!(state, KernelState::Paused { .. }),
        LogSubcommand::Stop => matches!(state, KernelState::Absent),
        LogSubcommand::Truncate => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lbc_api::kernel::keys::{PauseV2Payload, pause_v2, task_keys};
    use rstest::rstest;

    fn running() -> RawTask {
        RawTask {
            info: Some(b"{}".to_vec()),
            checkpoint: Some(42u64.to_be_bytes().to_vec()),
            ..RawTask::default()
        }
    }

    #[test]
    fn keys_are_exact_per_task() {
        let k = task_keys("lb1");
        assert_eq!(k.info, "/tidb/br-stream/info/lb1");
        assert_eq!(k.last_error, "/tidb/br-stream/last-error/lb1");
    }

    #[test]
    fn running_with_checkpoint() {
        assert_eq!(
            classify(&running()),
            Ok(KernelState::Running {
                checkpoint: Some(42)
            })
        );
        let mut r = running();
        r.checkpoint = Some(vec![1, 2, 3]);
        assert_eq!(classify(&r), Ok(KernelState::Running { checkpoint: None }));
    }

    #[test]
    fn absent_without_info_even_if_other_keys_linger() {
        let r = RawTask {
            pause: Some(vec![]),
            ..RawTask::default()
        };
        assert_eq!(classify(&r), Ok(KernelState::Absent));
    }

    #[rstest]
    #[case::v1_no_reason(Some(vec![]), None, PauseKind::V1, None)]
    #[case::v1_text_reason(Some(vec![]), Some(b"disk full".to_vec()), PauseKind::V1, Some("disk full"))]
    #[case::v1_json_reason(
        Some(vec![]),
        Some(br#"{"store_id":7,"error_message":"oops"}"#.to_vec()),
        PauseKind::V1,
        Some("Paused by error(store 7): oops")
    )]
    #[case::v2_manual(
        Some(pause_v2(PauseKind::Manual, None, "h", 1, "t")),
        None,
        PauseKind::Manual,
        None
    )]
    #[case::v2_error_text(
        Some(pause_v2(PauseKind::Error, Some(PauseV2Payload::Text("gc safepoint".into())), "h", 1, "t")),
        None,
        PauseKind::Error,
        Some("gc safepoint")
    )]
    #[case::v2_error_payload(
        Some(pause_v2(PauseKind::Error, Some(PauseV2Payload::Error(StreamBackupError { store_id: 3, error_message: "io".into(), ..Default::default() })), "h", 1, "t")),
        None,
        PauseKind::Error,
        Some("Paused by error(store 3): io")
    )]
    fn pauses(
        #[case] pause: Option<Vec<u8>>,
        #[case] last_error: Option<Vec<u8>>,
        #[case] kind: PauseKind,
        #[case] message: Option<&str>,
    ) {
        let r = RawTask {
            pause,
            last_error,
            ..running()
        };
        assert_eq!(
            classify(&r),
            Ok(KernelState::Paused {
                kind,
                message: message.map(Into::into)
            })
        );
    }

    #[test]
    fn payload_type_parameter_is_case_insensitive() {
        let v = PauseV2 {
            severity: "ERROR".into(),
            operation_hostname: String::new(),
            operation_pid: 0,
            operation_time: String::new(),
            payload_type: "application/x-protobuf; MessageType=brpb.StreamBackupError".into(),
            payload: B64.encode(br#"{"store_id":1,"error_message":"x"}"#),
        };
        assert_eq!(
            payload_message(&v),
            Ok(Some("Paused by error(store 1): x".into()))
        );
    }

    #[rstest]
    #[case(b"not json".to_vec(), "neither empty (v1) nor PauseV2 JSON")]
    #[case(br#"{"severity":"LOUD"}"#.to_vec(), "neither ERROR nor MANUAL")]
    #[case(br#"{"severity":"ERROR","payload_type":"image/png","payload":"AA=="}"#.to_vec(), "image/png")]
    #[case(br#"{"severity":"ERROR","payload_type":"text/plain","payload":"%%%"}"#.to_vec(), "not base64")]
    fn bad_pause_values_are_errors(#[case] pause: Vec<u8>, #[case] message: &str) {
        let r = RawTask {
            pause: Some(pause),
            ..running()
        };
        let err = classify(&r).unwrap_err().to_string();
        assert!(err.contains(message), "{err}");
    }

    #[rstest]
    #[case(LogSubcommand::Start, KernelState::Running { checkpoint: None }, true)]
    #[case(LogSubcommand::Resume, KernelState::Running { checkpoint: None }, true)]
    #[case(LogSubcommand::Start, KernelState::Absent, false)]
    #[case(LogSubcommand::Start, KernelState::Paused { kind: PauseKind::Manual, message: None }, false)]
    #[case(LogSubcommand::Pause, KernelState::Paused { kind: PauseKind::V1, message: None }, true)]
    #[case(LogSubcommand::Pause, KernelState::Running { checkpoint: None }, false)]
    #[case(LogSubcommand::Stop, KernelState::Absent, true)]
    #[case(LogSubcommand::Stop, KernelState::Running { checkpoint: None }, false)]
    #[case(LogSubcommand::Truncate, KernelState::Absent, false)]
    #[case(LogSubcommand::Truncate, KernelState::Running { checkpoint: None }, false)]
    fn mapping(#[case] sub: LogSubcommand, #[case] state: KernelState, #[case] ok: bool) {
        assert_eq!(satisfies(&state, sub), ok);
    }
}
