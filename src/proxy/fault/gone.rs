//! `gone`: answer a watch that resumes from a resourceVersion with `410 Gone`, as an
//! `ERROR` event (what the apiserver does when the version is too old).

use http::{HeaderValue, Response, header};

use super::super::{Fired, Shared, answered, full};

pub(in crate::proxy) fn fire(shared: &Shared, seq: u64) -> Fired {
    let event = serde_json::json!({"type": "ERROR", "object": {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "too old resource version (injected by lbc)", "reason": "Expired", "code": 410,
    }});
    let mut r = Response::new(full(format!("{event}\n")));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json;stream=watch"),
    );
    Fired::Answer(answered(shared, seq, r))
}
