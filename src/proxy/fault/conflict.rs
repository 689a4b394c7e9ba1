//! `conflict`: answer 409 Conflict without forwarding, as an optimistic-concurrency loss.

use super::super::{Fired, RequestInfo, Shared, answered, status_response};

pub(in crate::proxy) fn fire(shared: &Shared, seq: u64, info: &RequestInfo) -> Fired {
    let msg = format!(
        "Operation cannot be fulfilled on {} {:?}: the object has been modified; please apply your changes to the latest version and try again (injected by lbc)",
        info.resource.as_deref().unwrap_or("object"),
        info.name.as_deref().unwrap_or_default()
    );
    Fired::Answer(answered(
        shared,
        seq,
        status_response(409, "Conflict", &msg, None),
    ))
}
