use super::*;
use rstest::rstest;

fn healthy() -> Facts {
    Facts {
        go: Some("go version go1.26.8 linux/amd64".into()),
        control_plane: ControlPlane::Cached("/c/k8s/v1.34.4".into()),
        docker: DockerFact::Daemon {
            version: "20.10.24".into(),
            api: "1.41".into(),
        },
        busybox: Some("/bin/busybox".into()),
        chromium: Some("/usr/bin/chromium".into()),
        root: true,
        disk_free: Some(50 << 30),
        mem_available: Some(20 << 30),
        node_missing: vec![],
    }
}

#[test]
fn a_real_node_names_what_is_missing_and_needs_root() {
    let ok = evaluate(&healthy(), &[Need::RealNode]);
    assert_eq!(ok[0].status, Status::Ok);
    let lacking = Facts {
        node_missing: vec!["containerd".into(), "/usr/lib/cni/bridge".into()],
        ..healthy()
    };
    let c = &evaluate(&lacking, &[Need::RealNode])[0];
    assert_eq!(c.status, Status::Missing);
    assert!(
        c.line().contains("containerd, /usr/lib/cni/bridge"),
        "{}",
        c.line()
    );
    let user = Facts {
        root: false,
        ..healthy()
    };
    assert_eq!(
        evaluate(&user, &[Need::RealNode])[0].status,
        Status::Missing
    );
}

#[rstest]
#[case("go version go1.26.8 linux/amd64", Some((1, 26)))]
#[case("go version go1.24.0 linux/amd64", Some((1, 24)))]
#[case("go version go1.25rc1 linux/amd64", Some((1, 25)))]
#[case("go version go1.19 linux/amd64", Some((1, 19)))]
#[case("bash: go: not found", None)]
fn go_versions(#[case] out: &str, #[case] want: Option<(u32, u32)>) {
    assert_eq!(go_version(out), want);
}

#[test]
fn a_healthy_machine_has_nothing_missing() {
    let checks = evaluate(&healthy(), &Need::ALL);
    assert!(checks.iter().all(|c| c.status == Status::Ok), "{checks:#?}");
    assert_eq!(first_missing(&checks), None);
}

/// Each broken fact, the need that reports it, and a word its one line must carry.
#[rstest]
#[case::no_go_no_cache(
    |f: &mut Facts| { f.go = None; f.control_plane = ControlPlane::NotBuilt("/c".into()) },
    Need::ControlPlane, "install Go")]
#[case::old_go_no_cache(
    |f: &mut Facts| { f.go = Some("go version go1.22.2 linux/amd64".into()); f.control_plane = ControlPlane::NotBuilt("/c".into()) },
    Need::ControlPlane, "older than go1.24")]
#[case::corrupt_cache(
    |f: &mut Facts| f.control_plane = ControlPlane::Broken("the binary cache /c is corrupt".into()),
    Need::ControlPlane, "build-k8s --force")]
#[case::no_docker_cli(|f: &mut Facts| f.docker = DockerFact::NoCli, Need::Docker, "apt-get install docker.io")]
#[case::no_daemon(
    |f: &mut Facts| f.docker = DockerFact::NoDaemon("Cannot connect to the Docker daemon".into()),
    Need::Docker, "dockerd")]
#[case::ancient_daemon(
    |f: &mut Facts| f.docker = DockerFact::Daemon { version: "1.12".into(), api: "1.24".into() },
    Need::Docker, "API 1.24")]
#[case::no_busybox(|f: &mut Facts| f.busybox = None, Need::Docker, "busybox-static")]
#[case::no_chromium(|f: &mut Facts| f.chromium = None, Need::Chromium, "apt-get install chromium")]
#[case::not_root(|f: &mut Facts| f.root = false, Need::Root, "isolated targets")]
#[case::little_disk(|f: &mut Facts| f.disk_free = Some(512 << 20), Need::Resources, "1.0 GiB needed")]
#[case::little_memory(|f: &mut Facts| f.mem_available = Some(1 << 30), Need::Resources, "--concurrency")]
fn each_missing_fact_is_one_line_with_its_fix(
    #[case] breaks: fn(&mut Facts),
    #[case] need: Need,
    #[case] says: &str,
) {
    let mut f = healthy();
    breaks(&mut f);
    let line = first_missing(&evaluate(&f, &[need])).unwrap();
    assert!(line.contains(says), "{line}");
    assert!(line.contains("fix:") && !line.contains('\n'), "{line}");
    // The other needs do not see it (but a real node needs root too).
    let others: Vec<Need> = Need::ALL
        .into_iter()
        .filter(|n| *n != need && !(need == Need::Root && *n == Need::RealNode))
        .collect();
    assert_eq!(first_missing(&evaluate(&f, &others)), None);
}

/// The Go build's disk is asked of a command that boots the local control plane only.
#[test]
fn the_build_needs_disk_only_where_it_happens() {
    let mut f = healthy();
    f.control_plane = ControlPlane::NotBuilt("/c".into());
    f.disk_free = Some(2 << 30);
    let local = first_missing(&evaluate(&f, &[Need::ControlPlane, Need::Resources])).unwrap();
    assert!(local.contains("Go build"), "{local}");
    // `--provider kubeconfig` needs no control plane of its own.
    assert_eq!(first_missing(&evaluate(&f, &[Need::Resources])), None);
}

/// A broken cache is rebuilt with Go: without Go, the go line says so too.
#[test]
fn a_broken_control_plane_without_go_asks_for_go() {
    let mut f = healthy();
    f.go = None;
    f.control_plane = ControlPlane::Broken("the binary cache /c is corrupt".into());
    let checks = evaluate(&f, &[Need::ControlPlane]);
    let go = checks.iter().find(|c| c.what == "go").unwrap();
    assert_eq!(go.status, Status::Missing, "{go:?}");
}

#[rstest]
#[case::go_not_needed_with_a_cache(|f: &mut Facts| f.go = None)]
#[case::old_go_not_needed_with_assets(|f: &mut Facts| {
    f.go = Some("go version go1.20 linux/amd64".into());
    f.control_plane = ControlPlane::Assets("/assets".into());
})]
#[case::first_build_to_come(|f: &mut Facts| f.control_plane = ControlPlane::NotBuilt("/c".into()))]
#[case::some_memory(|f: &mut Facts| f.mem_available = Some(4 << 30))]
fn what_only_costs_time_is_not_missing(#[case] change: fn(&mut Facts)) {
    let mut f = healthy();
    change(&mut f);
    assert_eq!(first_missing(&evaluate(&f, &Need::ALL)), None);
}

#[test]
fn the_table_names_the_fix_and_the_purpose_of_a_missing_part() {
    let mut f = healthy();
    f.chromium = None;
    let table = render(&evaluate(&f, &[Need::Chromium, Need::Root]));
    assert!(table.contains("MISSING chromium"), "{table}");
    assert!(table.contains("fix: apt-get install chromium"), "{table}");
    assert!(table.contains("needed for the HTML report"), "{table}");
    assert!(table.contains("ok      root"), "{table}");
}
