//! `crash`: SIGKILL the controller while its request is held, before forwarding or once
//! the apiserver answered (the controller never sees the answer).

use std::time::Duration;

use http::Response;
use k8s_openapi::jiff::Timestamp;

use super::super::{Fired, Post, ProxyBody, Shared, status_response};

/// Before forwarding: crash now. After the response: forward, then [`now`].
pub(in crate::proxy) fn fire(
    shared: &Shared,
    seq: u64,
    after_response: bool,
    restart_after: Option<Duration>,
) -> Fired {
    if after_response {
        Fired::Forward(Some(Post::Crash(restart_after)))
    } else {
        Fired::Answer(now(shared, seq, restart_after))
    }
}

/// Kill the controller (and start it again after `restart_after`) while its request `seq`
/// is held; the answer goes nowhere, the controller is gone.
pub(in crate::proxy) fn now(
    shared: &Shared,
    seq: u64,
    restart_after: Option<Duration>,
) -> Response<ProxyBody> {
    if let Some(h) = &shared.hook {
        h.crash(restart_after);
    }
    shared.log.update(seq, |c| c.end = Some(Timestamp::now()));
    status_response(
        503,
        "ServiceUnavailable",
        "lbc proxy: the controller was killed",
        None,
    )
}
