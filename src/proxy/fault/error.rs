//! `error`: answer 500, 503 or 429 without forwarding, with `Retry-After`.

use std::time::Duration;

use super::super::{Fired, Shared, answered, status_response};

pub(in crate::proxy) fn fire(
    shared: &Shared,
    seq: u64,
    code: u16,
    retry_after: Option<Duration>,
) -> Fired {
    let reason = match code {
        429 => "TooManyRequests",
        503 => "ServiceUnavailable",
        _ => "InternalError",
    };
    Fired::Answer(answered(
        shared,
        seq,
        status_response(code, reason, "injected by lbc", retry_after),
    ))
}
