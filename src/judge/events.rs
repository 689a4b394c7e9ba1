//! Events about a Backup, counted as any recorder writes them: events.k8s.io `series.count`
//! (kube-rs, newer client-go), core/v1 `count` (client-go's folding recorder, seen through
//! events.k8s.io as `deprecatedCount`), or one occurrence each; ordered by `eventTime`,
//! else the first timestamp.

use k8s_openapi::api::events::v1::Event;
use k8s_openapi::jiff::Timestamp;

use crate::recorder::State;
use crate::suite::model::EventsAssertion;

/// One Event object about a Backup, with how many times it occurred.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Occurrence {
    pub reason: String,
    pub type_: String,
    pub note: String,
    pub count: u32,
    pub first: Option<Timestamp>,
}

/// How many occurrences an Event object stands for.
pub fn occurrences(e: &Event) -> u32 {
    let series = e.series.as_ref().map(|s| s.count);
    let folded = e.deprecated_count;
    series
        .into_iter()
        .chain(folded)
        .max()
        .map_or(1, |n| n.max(1) as u32)
}

/// When an Event object first occurred: `eventTime`, else the core/v1 first timestamp.
pub fn first_time(e: &Event) -> Option<Timestamp> {
    e.event_time
        .as_ref()
        .map(|t| t.0)
        .or_else(|| e.deprecated_first_timestamp.as_ref().map(|t| t.0))
        .or_else(|| e.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// Events regarding the Backup with this name and (if known) uid, oldest first.
pub fn events_about(s: &State, actual_name: &str, uid: Option<&str>) -> Vec<Occurrence> {
    let mut out: Vec<Occurrence> = s
        .events
        .values()
        .filter(|e| {
            e.regarding.as_ref().is_some_and(|r| {
                r.kind.as_deref() == Some("Backup")
                    && r.name.as_deref() == Some(actual_name)
                    && uid.is_none_or(|u| r.uid.as_deref() == Some(u))
            })
        })
        .map(|e| Occurrence {
            reason: e.reason.clone().unwrap_or_default(),
            type_: e.type_.clone().unwrap_or_default(),
            note: e.note.clone().unwrap_or_default(),
            count: occurrences(e),
            first: first_time(e),
        })
        .collect();
    out.sort_by(|a, b| a.first.cmp(&b.first).then(a.reason.cmp(&b.reason)));
    out
}

/// Compare event occurrences with an `events` assertion.
///
/// # Errors
/// A description of the first mismatch, with the events seen.
pub fn check_events(a: &EventsAssertion, occ: &[Occurrence]) -> Result<(), String> {
    let actual: Vec<String> = occ
        .iter()
        .map(|o| format!("{} {} ×{}", o.type_, o.reason, o.count))
        .collect();
    let mut last_first = None;
    for x in &a.expect {
        let matching: Vec<&Occurrence> = occ
            .iter()
            .filter(|o| o.reason == x.reason && x.type_.as_ref().is_none_or(|t| *t == o.type_))
            .collect();
        let n: u32 = matching.iter().map(|o| o.count).sum();
        let want = x.count.unwrap_or(1);
        if n != want {
            return Err(format!(
                "expected {want} × {} event(s), saw {n}; events: {actual:?}",
                x.reason
            ));
        }
        if a.ordered && want > 0 {
            let Some(first) = matching.iter().filter_map(|o| o.first).min() else {
                return Err(format!(
                    "{} has no time (neither eventTime nor firstTimestamp): its order cannot be checked",
                    x.reason
                ));
            };
            if let Some(prev) = last_first
                && first < prev
            {
                return Err(format!(
                    "{} came before an earlier expected event; events: {actual:?}",
                    x.reason
                ));
            }
            last_first = Some(first);
        }
    }
    if a.exhaustive
        && let Some(o) = occ
            .iter()
            .find(|o| !a.expect.iter().any(|x| x.reason == o.reason))
    {
        return Err(format!("unexpected event {}; events: {actual:?}", o.reason));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::model::EventExpectation;
    use serde_json::json;

    fn occ(reason: &str, count: u32, at: i64) -> Occurrence {
        Occurrence {
            reason: reason.into(),
            type_: "Normal".into(),
            note: String::new(),
            count,
            first: Timestamp::from_second(at).ok(),
        }
    }

    fn expect(reason: &str, count: u32) -> EventExpectation {
        EventExpectation {
            reason: reason.into(),
            type_: None,
            count: Some(count),
        }
    }

    #[test]
    fn event_counts_and_order() {
        let a = EventsAssertion {
            backup: "lb1".into(),
            ordered: true,
            expect: vec![expect("RetryStarted", 1), expect("RetrySucceeded", 1)],
            exhaustive: false,
        };
        assert!(
            check_events(
                &a,
                &[occ("RetryStarted", 1, 1), occ("RetrySucceeded", 1, 2)]
            )
            .is_ok()
        );
        let err = check_events(
            &a,
            &[occ("RetryStarted", 2, 1), occ("RetrySucceeded", 1, 2)],
        )
        .unwrap_err();
        assert!(
            err.contains("expected 1 × RetryStarted event(s), saw 2"),
            "{err}"
        );
        let err = check_events(
            &a,
            &[occ("RetryStarted", 1, 3), occ("RetrySucceeded", 1, 2)],
        )
        .unwrap_err();
        assert!(err.contains("came before"), "{err}");
        let ex = EventsAssertion {
            exhaustive: true,
            ..a
        };
        assert!(
            check_events(
                &ex,
                &[
                    occ("RetryStarted", 1, 1),
                    occ("RetrySucceeded", 1, 2),
                    occ("Other", 1, 3)
                ]
            )
            .is_err()
        );
    }

    fn event(v: serde_json::Value) -> Event {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn client_go_folding_counts_every_repeat() {
        // client-go's recorder: core/v1 count 5, no eventTime, no series.
        let folded = event(json!({
            "metadata": {"name": "e1", "creationTimestamp": "2026-01-01T00:00:09Z"},
            "reason": "RetryStarted", "type": "Normal",
            "deprecatedCount": 5, "deprecatedFirstTimestamp": "2026-01-01T00:00:01Z",
        }));
        assert_eq!(occurrences(&folded), 5);
        assert_eq!(
            first_time(&folded),
            Some("2026-01-01T00:00:01Z".parse().unwrap())
        );
        let series = event(json!({
            "metadata": {"name": "e2"}, "reason": "X", "type": "Normal",
            "eventTime": "2026-01-01T00:00:02.000000Z",
            "series": {"count": 3, "lastObservedTime": "2026-01-01T00:00:03.000000Z"},
        }));
        assert_eq!(occurrences(&series), 3);
        let single = event(json!({"metadata": {"name": "e3"}, "reason": "X", "type": "Normal"}));
        assert_eq!(occurrences(&single), 1);
        assert_eq!(first_time(&single), None);
    }

    #[test]
    fn an_event_without_time_cannot_pass_an_ordered_check() {
        let a = EventsAssertion {
            backup: "lb1".into(),
            ordered: true,
            expect: vec![expect("RetryStarted", 1)],
            exhaustive: false,
        };
        let mut o = occ("RetryStarted", 1, 1);
        o.first = None;
        assert!(check_events(&a, &[o]).unwrap_err().contains("no time"));
    }
}
