//! `fault`: arm a fault in the API proxy in front of the controller under test. The step
//! returns at once; the fault acts when its request comes (or, for a watch fault, on the
//! open streams now). A fault that never fires fails the suite at the end: a suite whose
//! fault found nothing to act on has tested nothing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;

use super::{Shown, Step, StepError};
use crate::judge::{BackupNames, eval};
use crate::proxy::{Action, Fault, Filter, Hold, Matcher, RequestView, Verb};
use crate::recorder::{Cursor, Entry, Kind, State, Trace};
use crate::run::scope::Scope;
use crate::suite::model::{CrashAt, FaultKind, FaultStep, Predicate, RequestMatch, VerbDecl};

/// How long `delay.until` holds a request at most, by default.
const UNTIL_BOUND: Duration = Duration::from_secs(30);

impl Step for FaultStep {
    const KIND: &'static str = "fault";
    const MOVES_CURSOR: bool = false;
    const ACTS: bool = true;
    const SHOWN: Shown = Shown::Not;

    async fn run(&self, cx: &mut Scope<'_>) -> Result<(), StepError> {
        let Some(proxy) = &cx.proxy else {
            return Err(StepError::Manifest(
                "a fault step needs the API proxy in front of the controller; this run has \
                 none (--direct-api)"
                    .into(),
            ));
        };
        let label = format!("steps[{}] (fault)", cx.step);
        for f in faults(self, &label, &cx.names, &cx.recorder.trace) {
            proxy.faults.arm(f);
        }
        Ok(())
    }
}

/// The proxy faults of `step` (a watch fault may be two: close, then 410 on the resume).
pub fn faults(step: &FaultStep, label: &str, names: &BackupNames, trace: &Trace) -> Vec<Fault> {
    let filter = filter(
        &step.request,
        names,
        matches!(step.inject, FaultKind::Watch(_)),
    );
    let matcher = matcher(&step.request, names, trace);
    let make = |action| Fault {
        label: label.to_owned(),
        filter: filter.clone(),
        matcher: matcher.clone(),
        wants_objects: step.request.makes.is_some(),
        occurrence: step.occurrence.unwrap_or(1).max(1),
        action,
    };
    let get = |d: &Option<crate::suite::duration::GoDuration>| d.as_ref().map(|d| d.get());
    match &step.inject {
        FaultKind::Crash(c) => vec![make(Action::Crash {
            after_response: c.at == CrashAt::After,
            restart_after: Some(get(&c.restart_after).unwrap_or_default()),
        })],
        FaultKind::Conflict(_) => vec![make(Action::Conflict)],
        FaultKind::Error(e) => vec![make(Action::Error {
            code: e.code,
            retry_after: get(&e.retry_after),
        })],
        FaultKind::Delay(d) => {
            let until = d.until.as_ref().map(|p| Hold::Until {
                wait: until(p.clone(), names.clone(), trace.clone()),
                bound: get(&d.bound).unwrap_or(UNTIL_BOUND),
            });
            vec![make(Action::Delay {
                request: until.or_else(|| get(&d.request).map(Hold::For)),
                response: get(&d.response).map(Hold::For),
            })]
        }
        FaultKind::Watch(w) => {
            let mut out = Vec::new();
            if let Some(d) = get(&w.delay) {
                out.push(make(Action::DelayWatch(d)));
            }
            if w.close {
                out.push(make(Action::CloseWatch));
            }
            if w.gone {
                out.push(make(Action::Gone));
            }
            out
        }
    }
}

fn filter(m: &RequestMatch, names: &BackupNames, watch: bool) -> Filter {
    let verbs = match m.verb {
        _ if watch => vec![Verb::Watch],
        None => Vec::new(),
        Some(VerbDecl::Get) => vec![Verb::Get],
        Some(VerbDecl::List) => vec![Verb::List],
        Some(VerbDecl::Watch) => vec![Verb::Watch],
        Some(VerbDecl::Create) => vec![Verb::Create],
        Some(VerbDecl::Update) => vec![Verb::Update],
        Some(VerbDecl::Patch) => vec![Verb::Patch],
        Some(VerbDecl::Delete) => vec![Verb::Delete],
        Some(VerbDecl::Write) => vec![
            Verb::Create,
            Verb::Update,
            Verb::Patch,
            Verb::Delete,
            Verb::Deletecollection,
        ],
    };
    Filter {
        verbs,
        resource: m.resource.clone(),
        subresource: m.subresource.clone(),
        name: m.name.as_deref().map(|n| names.actual(n).to_owned()),
    }
}

/// `body` and `makes`, if given.
fn matcher(m: &RequestMatch, names: &BackupNames, trace: &Trace) -> Option<Matcher> {
    if m.body.is_none() && m.makes.is_none() {
        return None;
    }
    let body = m.body.clone();
    let makes = m.makes.clone();
    let names = names.clone();
    let trace = trace.clone();
    // The recorded state, applied incrementally across calls.
    let cursor = Arc::new(Mutex::new(Cursor::default()));
    Some(Arc::new(move |v: &RequestView<'_>| {
        if let Some(want) = &body
            && !v.body.is_some_and(|b| json_contains(b, want))
        {
            return false;
        }
        let Some(p) = &makes else {
            return true;
        };
        let Some(after) = v.after else {
            return false;
        };
        let mut c = cursor.lock().unwrap_or_else(|p| p.into_inner());
        c.catch_up(&trace);
        let kind = match v.info.resource.as_deref() {
            Some("backups") => Kind::Backup,
            Some("jobs") => Kind::Job,
            _ => return false,
        };
        makes_hold(p, &names, c.state(), kind, v.before, after)
    }))
}

/// Whether the write taking the object from `before` (`None`: as recorded) to `after`
/// makes `p` hold (pure).
pub fn makes_hold(
    p: &Predicate,
    names: &BackupNames,
    recorded: &State,
    kind: Kind,
    before: Option<&serde_json::Value>,
    after: &serde_json::Value,
) -> bool {
    let with = |object: &serde_json::Value| {
        let mut s = recorded.clone();
        s.apply(&Entry {
            at: k8s_openapi::jiff::Timestamp::now(),
            received: std::time::Instant::now(),
            kind,
            name: object["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            deleted: false,
            object: object.clone(),
        });
        s
    };
    let was = before.map_or_else(|| eval(p, recorded, names), |b| eval(p, &with(b), names));
    !was && eval(p, &with(after), names)
}

/// A future that ends once `p` holds in the recorded trace.
fn until(
    p: Predicate,
    names: BackupNames,
    trace: Trace,
) -> Arc<dyn Fn() -> futures::future::BoxFuture<'static, ()> + Send + Sync> {
    Arc::new(move || {
        let (p, names, trace) = (p.clone(), names.clone(), trace.clone());
        async move {
            let mut c = Cursor::default();
            loop {
                c.catch_up(&trace);
                if eval(&p, c.state(), &names) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        .boxed()
    })
}

/// Whether `have` contains `want`: objects key by key, lists element by element (each
/// wanted element in some element), anything else equal (pure).
pub fn json_contains(have: &serde_json::Value, want: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (have, want) {
        (Value::Object(h), Value::Object(w)) => w
            .iter()
            .all(|(k, wv)| h.get(k).is_some_and(|hv| json_contains(hv, wv))),
        (Value::Array(h), Value::Array(w)) => {
            w.iter().all(|wv| h.iter().any(|hv| json_contains(hv, wv)))
        }
        (h, w) => h == w,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::model::{RecordRef, SubPhaseRef};
    use serde_json::json;

    #[test]
    fn json_contains_is_a_recursive_subset() {
        let have = json!({"reason": "RetryStarted", "regarding": {"kind": "Backup", "name": "lb1"}, "l": [1, {"a": 2, "b": 3}]});
        assert!(json_contains(&have, &json!({"reason": "RetryStarted"})));
        assert!(json_contains(&have, &json!({"regarding": {"name": "lb1"}})));
        assert!(json_contains(&have, &json!({"l": [{"b": 3}]})));
        assert!(!json_contains(&have, &json!({"reason": "RetrySucceeded"})));
        assert!(!json_contains(&have, &json!({"l": [{"b": 4}]})));
        assert!(!json_contains(&have, &json!({"missing": 1})));
    }

    fn backup(records: usize, retried: usize, sub: &str) -> serde_json::Value {
        let recs: Vec<_> = (1..=records)
            .map(|n| {
                let mut r = json!({"retryNum": n, "detectFailedAt": "2026-01-01T00:00:00Z",
                    "expectedRetryAt": "2026-01-01T00:00:01Z"});
                if n <= retried {
                    r["realRetryAt"] = json!("2026-01-01T00:00:01Z");
                }
                r
            })
            .collect();
        json!({"apiVersion": "pingcap.com/v1alpha1", "kind": "Backup",
            "metadata": {"name": "lb1", "namespace": "s"},
            "spec": {"backupMode": "log"},
            "status": {"backoffRetryStatus": recs,
                "logSubCommandStatuses": {"log-start": {"phase": sub}}}})
    }

    #[test]
    fn makes_is_a_transition_not_a_state() {
        let names = BackupNames::default();
        let retried = Predicate::RecordRetried(RecordRef {
            backup: "lb1".into(),
            n: 1,
        });
        let s = State::default();
        let (pending, ran) = (backup(1, 0, "Running"), backup(1, 1, "Running"));
        assert!(makes_hold(
            &retried,
            &names,
            &s,
            Kind::Backup,
            Some(&pending),
            &ran
        ));
        assert!(
            !makes_hold(&retried, &names, &s, Kind::Backup, Some(&ran), &ran),
            "already held"
        );
        assert!(!makes_hold(
            &retried,
            &names,
            &s,
            Kind::Backup,
            Some(&pending),
            &pending
        ));
        let scheduled = Predicate::SubPhase(SubPhaseRef {
            backup: "lb1".into(),
            subcommand: "log-start".into(),
            phase: lbc_api::BackupConditionType::Scheduled,
        });
        let complete = backup(0, 0, "Complete");
        let back = backup(0, 0, "Scheduled");
        assert!(makes_hold(
            &scheduled,
            &names,
            &s,
            Kind::Backup,
            Some(&complete),
            &back
        ));
    }
}
