use super::*;
use crate::proxy::RequestInfo;

fn call(method: &str, path: &str, status: u16, reason: Option<&str>) -> ApiCall {
    ApiCall {
        seq: 0,
        start: k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        end: None,
        request: RequestInfo::parse(method, path, None),
        rv_sent: None,
        rv_returned: None,
        created: None,
        reason: reason.map(str::to_owned),
        status,
        watch_events: None,
        fault: None,
    }
}

fn tiny_suite() -> Suite {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    crate::suite::load::load_str(
        std::path::Path::new("t.yaml"),
        "name: t\nclauses: [LBR-8]\nbackups: [{name: lb1}]\nsteps:\n  - create: {backup: lb1}\n",
        root,
    )
    .unwrap()
}

const JOBS: &str = "/apis/batch/v1/namespaces/s/jobs";
const BACKUP: &str = "/apis/pingcap.com/v1alpha1/namespaces/s/backups/lb1";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/s/events";

#[test]
fn write_points_count_occurrences_per_key_and_skip_reads_and_failures() {
    let calls = vec![
        call("GET", BACKUP, 200, None),
        call("POST", JOBS, 201, None),
        call("POST", EVENTS, 201, Some("RetryStarted")),
        call("PUT", BACKUP, 409, None),
        call("PUT", BACKUP, 200, None),
        call("POST", EVENTS, 201, Some("RetrySucceeded")),
        call("POST", JOBS, 201, None),
        call(
            "PATCH",
            &format!("{EVENTS}/lb1.18ec8d68964cc567"),
            200,
            None,
        ),
    ];
    let pts = write_points(&calls);
    let d: Vec<String> = pts.iter().map(WritePoint::describe).collect();
    assert_eq!(
        d,
        [
            "create jobs #1",
            "create events (RetryStarted) #1",
            "update backups lb1 #2",
            "create events (RetrySucceeded) #1",
            "create jobs #2",
            "patch events #1",
        ]
    );
}

#[test]
fn choose_spreads_over_the_budget() {
    let pts = write_points(&[
        call("POST", JOBS, 201, None),
        call("PUT", BACKUP, 200, None),
        call("POST", JOBS, 201, None),
    ]);
    assert_eq!(choose(&pts, 100).len(), 6);
    let some = choose(&pts, 3);
    assert_eq!(some.len(), 3);
    assert_eq!(some[0].point.describe(), "create jobs #1");
    assert!(!some[0].after);
    assert!(some[2].after, "the last probe is included");
    assert!(choose(&pts, 0).is_empty());
}

#[test]
fn each_transition_is_chosen_once_across_suites() {
    let one = write_points(&[
        call("PUT", BACKUP, 200, None),
        call("POST", EVENTS, 201, Some("RetryStarted")),
        call("POST", JOBS, 201, None),
    ]);
    let mut seen = std::collections::BTreeSet::new();
    // Every probe of the first suite is new: 3 points × 2 sides.
    assert_eq!(choose_new(&one, &mut seen).len(), 6);
    // The same protocol again (another suite, other names, later occurrences): nothing new.
    let again = write_points(&[
        call("PUT", &BACKUP.replace("lb1", "lb2"), 200, None),
        call("PUT", BACKUP, 200, None),
        call("POST", EVENTS, 201, Some("RetryStarted")),
        call("POST", JOBS, 201, None),
    ]);
    let new: Vec<String> = choose_new(&again, &mut seen)
        .iter()
        .map(Probe::describe)
        .collect();
    // Only the first write (no write before it) and the second (an update after an
    // update) stand between other steps.
    assert_eq!(
        new,
        [
            "crash before update backups lb2 #1",
            "crash after update backups lb2 #1",
            "crash before update backups lb1 #1",
            "crash after update backups lb1 #1",
        ]
    );
    // A suite with nothing new is still explored: after its last write.
    let last: Vec<String> = choose_new(&one, &mut seen)
        .iter()
        .map(Probe::describe)
        .collect();
    assert_eq!(last, ["crash after create jobs #1"]);
    let t = &transitions(&one)[3].1;
    assert_eq!(t.at, "create events (RetryStarted)");
    assert_eq!(t.prev.as_deref(), Some("update backups"));
    assert_eq!(t.next.as_deref(), Some("create jobs"));
}

#[test]
fn a_jobs_kind_carries_its_subcommand() {
    let p = write_points(&[call(
        "DELETE",
        "/apis/batch/v1/namespaces/s/jobs/backup-lb1-log-stop",
        200,
        None,
    )]);
    assert_eq!(kind(&p[0]), "delete jobs log-stop");
}

#[test]
fn a_probe_suite_arms_its_crash_first_under_its_own_name() {
    let suite = tiny_suite();
    let pts = write_points(&[call("POST", EVENTS, 201, Some("RetryStarted"))]);
    let s = probe_suite(
        &suite,
        &Probe {
            point: pts[0].clone(),
            after: true,
        },
        3,
    );
    assert_eq!(s.name, "t-x3");
    let SuiteStep::Fault(f) = &s.steps[0] else {
        panic!("{:?}", s.steps[0]);
    };
    assert_eq!(
        f.request.body,
        Some(serde_json::json!({"reason": "RetryStarted"}))
    );
    assert_eq!(f.occurrence, Some(1));
    assert!(matches!(&f.inject, FaultKind::Crash(c) if c.at == CrashAt::After));
}

#[test]
fn a_probe_differs_on_a_failure_or_another_outcome_and_is_unreached_without_its_crash() {
    let suite = tiny_suite();
    let mut base = SuiteResult::new(&suite, std::path::Path::new("t.yaml"));
    base.snapshot = Some("lb1:\n  records: 1\n".into());
    let probe = Probe {
        point: write_points(&[call("POST", JOBS, 201, None)])[0].clone(),
        after: false,
    };
    let same = base.clone();
    assert_eq!(judge_probe(&probe, &base, &same).verdict, Verdict::Same);
    let mut other = base.clone();
    other.snapshot = Some("lb1:\n  records: 2\n".into());
    let o = judge_probe(&probe, &base, &other);
    assert_eq!(o.verdict, Verdict::Different);
    assert!(
        o.differences[0].contains("+  records: 2"),
        "{:?}",
        o.differences
    );
    let mut failed = base.clone();
    failed.failures.push("steps[2] (assert): boom".into());
    assert_eq!(
        judge_probe(&probe, &base, &failed).verdict,
        Verdict::Different
    );
    let mut unreached = failed.clone();
    unreached.unfired_faults = 1;
    assert_eq!(
        judge_probe(&probe, &base, &unreached).verdict,
        Verdict::Unreached
    );
}
