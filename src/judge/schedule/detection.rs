//! LBR-2's `detectFailedAt` = the detection time, held to when the controller wrote the
//! record: the record's first write is the detection made durable, so `detectFailedAt`
//! may trail the write's sending by the whole-second truncation only. A controller that
//! copies the Job condition's time into it, or keeps an old detection, backdates it and
//! shortens the backoff. The sending time comes from the proxy's log (the write whose
//! answer carried the record's first resourceVersion), so time a request was held on its
//! way to the API server is not held against the controller.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use super::super::instant;
use crate::proxy::{ApiCall, Verb};
use crate::recorder::{Entry, Kind};

/// The truncation to whole seconds, and a little for the clock read before the write.
const TRAIL: Duration = Duration::from_millis(2500);

/// The violations for the Backup named `actual`: each record whose `detectFailedAt` is
/// earlier than the controller's write of it by more than the whole-second truncation
/// allows (2.5 s).
pub fn check_detection_times(actual: &str, entries: &[Entry], calls: &[ApiCall]) -> Vec<String> {
    let mut out = Vec::new();
    let mut known: BTreeSet<(i32, Option<Timestamp>)> = BTreeSet::new();
    for e in entries
        .iter()
        .filter(|e| e.kind == Kind::Backup && !e.deleted && e.name == actual)
    {
        let Ok(b) = serde_json::from_value::<lbc_api::Backup>(e.object.clone()) else {
            continue;
        };
        let rv = b.metadata.resource_version.clone();
        for r in b.status.map(|s| s.backoff_retry_status).unwrap_or_default() {
            let detect = instant(&r.detect_failed_at);
            if !known.insert((r.retry_num, detect)) {
                continue;
            }
            let (Some(detect), Some(sent)) = (detect, written_at(calls, rv.as_deref())) else {
                continue;
            };
            let trail = sent.duration_since(detect).as_secs_f64();
            if trail > TRAIL.as_secs_f64() {
                out.push(format!(
                    "record {}: detectFailedAt {detect} is {trail:.1} s before the controller wrote the record ({sent}): a detection time is when the controller detected, not earlier (LBR-2)",
                    r.retry_num
                ));
            }
        }
    }
    out
}

/// When the controller first tried the Backup write the API server answered with `rv`: the
/// successful call, or the first of the refused attempts (a conflict, an error) right before
/// it — a controller that retries its write keeps its detection time.
fn written_at(calls: &[ApiCall], rv: Option<&str>) -> Option<Timestamp> {
    let rv = rv?;
    let writes_backup = |c: &ApiCall| {
        c.request.resource.as_deref() == Some("backups")
            && matches!(
                c.request.verb,
                Some(Verb::Update | Verb::Patch | Verb::Create)
            )
    };
    let i = calls
        .iter()
        .position(|c| writes_backup(c) && c.rv_returned.as_deref() == Some(rv))?;
    let name = calls[i].request.name.as_deref();
    let first = calls[..i]
        .iter()
        .rev()
        .filter(|c| writes_backup(c) && c.request.name.as_deref() == name)
        .take_while(|c| !(200..300).contains(&c.status))
        .last()
        .unwrap_or(&calls[i]);
    Some(first.start)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::RequestInfo;
    use serde_json::json;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_767_225_600 + s).unwrap()
    }

    fn entry(rv: &str, detect: i64) -> Entry {
        let mut e = Entry::for_test(
            Kind::Backup,
            "lb1",
            json!({"apiVersion": "pingcap.com/v1alpha1", "kind": "Backup",
                   "metadata": {"name": "lb1", "resourceVersion": rv}, "spec": {},
                   "status": {"backoffRetryStatus": [{"retryNum": 1,
                       "detectFailedAt": t(detect).to_string(),
                       "expectedRetryAt": t(detect + 2).to_string()}]}}),
        );
        e.at = t(10);
        e
    }

    fn put(rv: &str, at: i64) -> ApiCall {
        ApiCall {
            seq: 0,
            start: t(at),
            end: None,
            request: RequestInfo::parse(
                "PUT",
                "/apis/pingcap.com/v1alpha1/namespaces/s/backups/lb1",
                None,
            ),
            rv_sent: None,
            rv_returned: Some(rv.into()),
            created: None,
            reason: None,
            status: 200,
            watch_events: None,
            fault: None,
        }
    }

    #[rstest::rstest]
    #[case::detected_when_written(9, 9, true)]
    #[case::truncated_a_second(8, 9, true)]
    #[case::copied_from_the_job(4, 9, false)]
    fn a_backdated_detection_is_caught(#[case] detect: i64, #[case] sent: i64, #[case] ok: bool) {
        let v = check_detection_times("lb1", &[entry("7", detect)], &[put("7", sent)]);
        assert_eq!(v.is_empty(), ok, "{v:?}");
    }

    #[test]
    fn a_write_retried_after_a_conflict_keeps_its_detection_time() {
        // Detected at 4, refused at 4, written at 9: held to the first attempt.
        let refused = ApiCall {
            rv_returned: None,
            status: 409,
            ..put("", 4)
        };
        let v = check_detection_times("lb1", &[entry("7", 4)], &[refused, put("7", 9)]);
        assert!(v.is_empty(), "{v:?}");
        // Without the refused attempt, 5 s is a backdated detection.
        assert_eq!(
            check_detection_times("lb1", &[entry("7", 4)], &[put("7", 9)]).len(),
            1
        );
    }

    #[test]
    fn without_the_write_in_the_log_nothing_is_claimed() {
        assert!(check_detection_times("lb1", &[entry("7", 0)], &[put("8", 9)]).is_empty());
    }
}
