//! The kernel's key layout (CONTRACT "Kernel state"): the keys of one log backup task under
//! `/tidb/br-stream/`, and the pause values TiKV/BR write (v1: empty; v2: JSON).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

/// The keys of one task, read exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskKeys {
    pub info: String,
    pub checkpoint: String,
    pub pause: String,
    pub last_error: String,
}

/// The keys of task `task` (the Backup's name).
pub fn task_keys(task: &str) -> TaskKeys {
    TaskKeys {
        info: format!("/tidb/br-stream/info/{task}"),
        checkpoint: format!("/tidb/br-stream/checkpoint/{task}"),
        pause: format!("/tidb/br-stream/pause/{task}"),
        last_error: format!("/tidb/br-stream/last-error/{task}"),
    }
}

/// How a task was paused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PauseKind {
    /// Empty `pause` value; the reason, if any, is under `last-error`.
    V1,
    /// PauseV2 with severity MANUAL.
    Manual,
    /// PauseV2 with severity ERROR.
    Error,
}

/// PauseV2 as TiKV/BR write it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PauseV2 {
    pub severity: String,
    #[serde(default)]
    pub operation_hostname: String,
    #[serde(default)]
    pub operation_pid: u64,
    #[serde(default)]
    pub operation_time: String,
    #[serde(default)]
    pub payload_type: String,
    /// base64
    #[serde(default)]
    pub payload: String,
}

/// brpb.StreamBackupError, in the JSON form the operator reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct StreamBackupError {
    #[serde(default)]
    pub happen_at: u64,
    #[serde(default)]
    pub error_code: String,
    #[serde(default)]
    pub error_message: String,
    #[serde(default)]
    pub store_id: u64,
}

/// The MIME type of a text payload.
pub const TEXT_PAYLOAD: &str = "text/plain; charset=UTF-8";
/// The MIME type of an error payload.
pub const ERROR_PAYLOAD: &str = "application/x-protobuf;messagetype=brpb.StreamBackupError";

/// A PauseV2 value (for fake-br and suites).
pub fn pause_v2(
    kind: PauseKind,
    payload: Option<PauseV2Payload>,
    hostname: &str,
    pid: u64,
    time: &str,
) -> Vec<u8> {
    let (payload_type, payload) = match payload {
        None => (String::new(), String::new()),
        Some(PauseV2Payload::Text(t)) => (TEXT_PAYLOAD.to_owned(), B64.encode(t)),
        Some(PauseV2Payload::Error(e)) => (
            ERROR_PAYLOAD.to_owned(),
            B64.encode(serde_json::to_vec(&e).unwrap_or_default()),
        ),
        Some(PauseV2Payload::Other {
            payload_type,
            bytes,
        }) => (payload_type, B64.encode(bytes)),
    };
    let v = PauseV2 {
        severity: match kind {
            PauseKind::Error => "ERROR",
            _ => "MANUAL",
        }
        .into(),
        operation_hostname: hostname.into(),
        operation_pid: pid,
        operation_time: time.into(),
        payload_type,
        payload,
    };
    serde_json::to_vec(&v).unwrap_or_default()
}

/// What a PauseV2 carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PauseV2Payload {
    Text(String),
    Error(StreamBackupError),
    /// Bytes of a MIME type a reader may not know (a newer TiKV's payload).
    Other {
        payload_type: String,
        bytes: Vec<u8>,
    },
}

/// The raw values of a task's keys (`None` = key absent).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawTask {
    pub info: Option<Vec<u8>>,
    pub checkpoint: Option<Vec<u8>>,
    pub pause: Option<Vec<u8>>,
    pub last_error: Option<Vec<u8>>,
}
