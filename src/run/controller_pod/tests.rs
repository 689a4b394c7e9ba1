use super::*;
use rstest::rstest;

fn template() -> PodTemplate {
    PodTemplate {
        namespace: "s1".into(),
        image: "lbc.local/lbc-controller:abc".into(),
        command: ControllerCommand {
            program: "/usr/local/bin/lbc-controller".into(),
            args: vec!["--kubeconfig=/etc/lbc/kubeconfig".into()],
            env: vec![("NAMESPACE".into(), "s1".into())],
            log: "/tmp/log".into(),
            run_id: "r".into(),
        },
        proxy: crate::proxy::Access {
            url: "https://100.100.1.1:4443".into(),
            ca_pem: "CA".into(),
        },
        rules: vec![
            serde_json::from_value(
                json!({"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create"]}),
            )
            .unwrap(),
        ],
        host_aliases: vec![("10.0.0.7".into(), pd_names("basic-pd", "s1"))],
    }
}

#[test]
fn the_deployment_runs_the_program_under_its_own_account_with_its_kubeconfig() {
    let all = manifests(&template());
    let kinds: Vec<&str> = all.iter().map(|o| o["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "ServiceAccount",
            "Role",
            "RoleBinding",
            "Secret",
            "Deployment"
        ]
    );
    assert_eq!(all[1]["rules"][0]["resources"][0], "jobs");
    assert_eq!(all[2]["subjects"][0]["namespace"], "s1");
    let kubeconfig = all[3]["stringData"]["kubeconfig"].as_str().unwrap();
    assert!(
        kubeconfig.contains("https://100.100.1.1:4443"),
        "{kubeconfig}"
    );
    let d = &all[4]["spec"];
    assert_eq!(d["replicas"], 1);
    assert_eq!(d["strategy"]["type"], "Recreate");
    let pod = &d["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], NAME);
    assert_eq!(pod["hostAliases"][0]["hostnames"][1], "basic-pd.s1");
    let c = &pod["containers"][0];
    assert_eq!(c["command"][0], "/usr/local/bin/lbc-controller");
    assert_eq!(c["args"][0], "--kubeconfig=/etc/lbc/kubeconfig");
    assert_eq!(c["env"][0]["name"], "NAMESPACE");
    // The project's images are never pulled; a user's may be.
    assert_eq!(c["imagePullPolicy"], "Never");
    assert_eq!(c["volumeMounts"][0]["mountPath"], "/etc/lbc");
    assert_eq!(
        d["selector"]["matchLabels"],
        d["template"]["metadata"]["labels"]
    );
    assert_eq!(pull_policy("pingcap/tidb-operator:v1.6.6"), "IfNotPresent");
}

fn pod(status: serde_json::Value) -> Pod {
    serde_json::from_value(json!({"metadata": {"name": "p"}, "status": status})).unwrap()
}

#[rstest]
#[case::running(json!({"containerStatuses": [{"name": "c", "image": "i", "imageID": "", "ready": true, "restartCount": 0, "state": {"running": {}}}]}), Ok(true))]
#[case::creating(json!({"containerStatuses": [{"name": "c", "image": "i", "imageID": "", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}]}), Ok(false))]
#[case::no_status(json!({}), Ok(false))]
#[case::image_missing(json!({"containerStatuses": [{"name": "c", "image": "lbc.local/x:1", "imageID": "", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "ErrImageNeverPull", "message": "not present"}}}]}), Err("ErrImageNeverPull"))]
fn a_pods_container_runs_waits_or_cannot_start(
    #[case] status: serde_json::Value,
    #[case] expected: Result<bool, &str>,
) {
    match (container_state(&pod(status)), expected) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Err(a), Err(b)) => {
            assert!(a.contains(b), "{a}");
            assert!(a.contains("lbc image build-target"), "{a}");
        }
        (a, b) => panic!("{a:?} vs {b:?}"),
    }
}

#[test]
fn a_restarted_container_is_a_crash_with_its_last_exit() {
    let p = pod(
        json!({"containerStatuses": [{"name": "c", "image": "i", "imageID": "", "ready": true, "restartCount": 2,
        "state": {"running": {}}, "lastState": {"terminated": {"exitCode": 101, "reason": "Error"}}}]}),
    );
    assert_eq!(
        restarts(&p).unwrap(),
        "its container restarted 2 times, last exit code 101 (Error)"
    );
    let fresh = pod(
        json!({"containerStatuses": [{"name": "c", "image": "i", "imageID": "", "ready": true, "restartCount": 0, "state": {"running": {}}}]}),
    );
    assert_eq!(restarts(&fresh), None);
}

#[rstest]
#[case(
    "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\na_total 1\n",
    Ok("a_total 1\n")
)]
#[case("HTTP/1.1 404 Not Found\r\n\r\nno", Err("404"))]
#[case("garbage", Err("no HTTP answer"))]
fn an_http_answer_gives_its_body_only_when_ok(
    #[case] answer: &str,
    #[case] expected: Result<&str, &str>,
) {
    match (http_body(answer), expected) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Err(a), Err(b)) => assert!(a.contains(b), "{a}"),
        (a, b) => panic!("{a:?} vs {b:?}"),
    }
}

#[test]
fn metrics_ports_and_pd_names() {
    assert_eq!(port_of("0.0.0.0:9090"), Some(9090));
    assert_eq!(port_of("127.0.0.1:6060"), Some(6060));
    assert_eq!(port_of(":6060"), Some(6060));
    assert_eq!(port_of("nowhere"), None);
    assert_eq!(
        pd_names("basic-pd", "ns"),
        [
            "basic-pd",
            "basic-pd.ns",
            "basic-pd.ns.svc",
            "basic-pd.ns.svc.cluster.local"
        ]
    );
}
