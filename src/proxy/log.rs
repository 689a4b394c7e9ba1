//! The controller's API traffic as the proxy saw it: one [`ApiCall`] per request, in the
//! order requests arrived.

use std::sync::{Arc, Mutex, MutexGuard};

use k8s_openapi::jiff::Timestamp;
use serde::Serialize;

use super::request::RequestInfo;

/// One request of the controller under test.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiCall {
    /// Arrival order, from 0.
    pub seq: u64,
    pub start: Timestamp,
    /// When the response (head, for a watch) went back; `None` while in flight.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end: Option<Timestamp>,
    #[serde(flatten)]
    pub request: RequestInfo,
    /// `metadata.resourceVersion` of the request body (a precondition for an update).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rv_sent: Option<String>,
    /// `metadata.resourceVersion` of the response object (the list's, for a list).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rv_returned: Option<String>,
    /// The object's name from the response, when the path has none (a create).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// The `reason` of an Event the controller writes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// HTTP status given to the controller (0: none, it was killed first).
    pub status: u16,
    /// Watch events passed through, for a watch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watch_events: Option<u64>,
    /// The fault injected into this request, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
}

/// The log, shared with the proxy's connection tasks.
#[derive(Debug, Clone, Default)]
pub struct ApiLog {
    calls: Arc<Mutex<Vec<ApiCall>>>,
}

impl ApiLog {
    fn lock(&self) -> MutexGuard<'_, Vec<ApiCall>> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Record a new request; returns its `seq`.
    pub(crate) fn begin(
        &self,
        request: RequestInfo,
        rv_sent: Option<String>,
        reason: Option<String>,
    ) -> u64 {
        let mut calls = self.lock();
        let seq = calls.len() as u64;
        calls.push(ApiCall {
            seq,
            start: Timestamp::now(),
            end: None,
            request,
            rv_sent,
            rv_returned: None,
            created: None,
            reason,
            status: 0,
            watch_events: None,
            fault: None,
        });
        seq
    }

    /// Change the call `seq`.
    pub(crate) fn update(&self, seq: u64, f: impl FnOnce(&mut ApiCall)) {
        if let Some(c) = self.lock().get_mut(seq as usize) {
            f(c);
        }
    }

    /// A copy of every call so far.
    pub fn calls(&self) -> Vec<ApiCall> {
        self.lock().clone()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
