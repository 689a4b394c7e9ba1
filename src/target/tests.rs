use super::*;

fn loaded(text: &str) -> Loaded {
    Loaded {
        target: load_str(Path::new("t.yaml"), text).unwrap(),
        file: "t.yaml".into(),
    }
}

#[rstest::rstest]
#[case("tidb-operator", Ok((None, "tidb-operator")))]
#[case("old=tidb-operator", Ok((Some("old"), "tidb-operator")))]
#[case("fork-2=targets/x.yaml", Ok((Some("fork-2"), "targets/x.yaml")))]
#[case("Old=tidb-operator", Err(()))]
#[case("=tidb-operator", Err(()))]
#[case("old=", Err(()))]
fn instances_are_named_before_an_equals_sign(
    #[case] spec: &str,
    #[case] want: Result<(Option<&str>, &str), ()>,
) {
    assert_eq!(instance(spec).map_err(|_| ()), want);
}

#[test]
fn missing_paths_are_named() {
    let mut t = resolve(&find("reference", Path::new("/nonexistent")).unwrap(), &[]).unwrap();
    assert!(missing_paths(&t).is_empty(), "{:?}", missing_paths(&t));
    t.program = "/nonexistent/tidb-controller-manager".into();
    t.crds = Some("/nonexistent/crds".into());
    let m = missing_paths(&t);
    assert_eq!(m.len(), 2, "{m:?}");
    assert!(m[0].contains("/nonexistent/tidb-controller-manager is not an executable file"));
}

#[test]
fn builtin_targets_load() {
    for (name, _) in BUILTIN {
        let l = find(name, Path::new("/nonexistent")).unwrap();
        assert_eq!(l.target.name, name);
        assert!(resolve(&l, &[]).is_ok(), "{name}");
    }
}

#[test]
fn unknown_placeholders_are_located_and_suggested() {
    let text = "name: x\ncommand:\n  - prog\n  - --ns={namespce}\n";
    let e = load_str(Path::new("t.yaml"), text).unwrap_err().to_string();
    assert!(e.contains("t.yaml:4:5") && e.contains("command[1]"), "{e}");
    assert!(e.contains("did you mean `{namespace}`"), "{e}");
}

#[rstest::rstest]
#[case::no_section(
    "name: x\ncommand: [p]\ninstall: deployment\n",
    "t.yaml:3",
    "install: is `deployment` but the target has no `deployment:`"
)]
#[case::bad_rule(
    "name: x\ncommand: [p]\ndeployment:\n  rules:\n    - {apiGroups: [\"\"], resources: pods}\n",
    "t.yaml:4",
    "deployment.rules[0]"
)]
#[case::image_per_suite(
    "name: x\ncommand: [p]\ndeployment:\n  image: \"r/{namespace}:1\"\n",
    "t.yaml:4",
    "an image may use the target's settings only"
)]
#[case::unknown_install("name: x\ncommand: [p]\ninstall: pod\n", "t.yaml:3", "install")]
fn a_deployment_form_is_checked_where_it_is_written(
    #[case] text: &str,
    #[case] at: &str,
    #[case] says: &str,
) {
    let e = load_str(Path::new("t.yaml"), text).unwrap_err().to_string();
    assert!(e.contains(at) && e.contains(says), "{e}");
}

#[test]
fn the_builtin_targets_install_as_deployments_with_rules() {
    for (name, _) in BUILTIN {
        let t = resolve(&find(name, Path::new("/nonexistent")).unwrap(), &[]).unwrap();
        assert_eq!(t.install, Install::Process);
        let d = t.deployment.unwrap();
        assert!(d.image.is_none() && !d.rules.is_empty(), "{name}");
    }
}

#[test]
fn unknown_keys_are_parse_errors_with_a_hint() {
    let e = load_str(Path::new("t.yaml"), "name: x\ncomand: [a]\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("t.yaml:2") && e.contains("did you mean `command`"),
        "{e}"
    );
}

#[test]
fn settings_are_filled_required_and_checked() {
    let l = loaded(
        "name: op\nsettings:\n  bin: {description: the operator binary}\n  qps: {default: '100'}\ncommand: ['{bin}', '--qps={qps}', '--ns={namespace}']\nenv: {NAMESPACE: '{namespace}'}\n",
    );
    let e = resolve(&l, &[]).unwrap_err().to_string();
    assert!(
        e.contains("needs `--set bin=…` (the operator binary)"),
        "{e}"
    );
    let e = resolve(&l, &[("bn".into(), "/x".into())])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no setting \"bn\"") && e.contains("did you mean \"bin\""),
        "{e}"
    );
    let r = resolve(&l, &[("bin".into(), "/usr/bin/op".into())]).unwrap();
    assert_eq!(r.program, "/usr/bin/op");
    // Per-suite placeholders stay for the runner.
    assert_eq!(r.args, ["--qps=100", "--ns={namespace}"]);
    assert_eq!(r.env, [("NAMESPACE".to_owned(), "{namespace}".to_owned())]);
}

#[test]
fn sets_need_an_equals_sign() {
    assert!(parse_sets(&["bin".into()]).is_err());
    assert_eq!(
        parse_sets(&["a=b=c".into()]).unwrap(),
        [("a".to_owned(), "b=c".to_owned())]
    );
}
