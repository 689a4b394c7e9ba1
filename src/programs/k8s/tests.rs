use super::*;

fn lookup(cache: &Path) -> BinaryLookup {
    BinaryLookup {
        kubebuilder_assets: None,
        cache_root: cache.to_owned(),
        path: Some(OsString::from("/nonexistent-bin")),
        force_build: false,
    }
}

fn fake_bins(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).unwrap();
    for n in [APISERVER, CONTROLLER_MANAGER] {
        let p = dir.join(n);
        std::fs::write(&p, b"#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

#[test]
fn missing_go_names_cause_and_fix() {
    let cache = tempfile::tempdir().unwrap();
    let err = lookup(cache.path()).resolve().unwrap_err().to_string();
    assert!(err.contains("Go toolchain (`go`) is not on PATH"), "{err}");
    assert!(err.contains("Install Go"), "{err}");
    assert!(err.contains("KUBEBUILDER_ASSETS"), "{err}");
}

#[test]
fn kubebuilder_assets_wins_and_must_be_complete() {
    let assets = tempfile::tempdir().unwrap();
    let mut l = lookup(Path::new("/nonexistent-cache"));
    l.kubebuilder_assets = Some(assets.path().to_owned());
    let err = l.resolve().unwrap_err().to_string();
    assert!(err.contains("no executable kube-apiserver"), "{err}");
    fake_bins(assets.path());
    let found = l.resolve().unwrap();
    assert_eq!(found.source, BinarySource::KubebuilderAssets);
}

#[test]
fn adopted_cache_is_found_and_truncation_is_reported_as_corrupt() {
    let cache = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    fake_bins(src.path());
    let l = lookup(cache.path());
    adopt_into_cache(&l, src.path()).unwrap();
    assert_eq!(l.resolve().unwrap().source, BinarySource::Cache);
    verify_hashes(&l.version_dir()).unwrap();

    std::fs::write(l.version_dir().join("bin").join(APISERVER), b"#!").unwrap();
    let err = l.resolve().unwrap_err().to_string();
    assert!(err.contains("is corrupt"), "{err}");
    assert!(err.contains("truncated or replaced"), "{err}");
    assert!(err.contains("rm -rf"), "{err}");
}

#[test]
fn unparseable_manifest_is_corrupt_not_a_rebuild() {
    let cache = tempfile::tempdir().unwrap();
    let l = lookup(cache.path());
    std::fs::create_dir_all(l.version_dir()).unwrap();
    std::fs::write(l.version_dir().join(MANIFEST), "{not json").unwrap();
    let err = l.resolve().unwrap_err().to_string();
    assert!(err.contains("does not parse"), "{err}");
}

#[test]
fn embedded_module_pins_every_staging_module() {
    assert!(GO_MOD.contains("k8s.io/kubernetes v1.34.4"));
    let staging = GO_MOD
        .lines()
        .filter(|l| l.contains("=> k8s.io/") && l.trim_end().ends_with("v0.34.4"))
        .count();
    assert!(staging >= 29, "only {staging} staging replaces");
    assert!(version_ldflags().contains("gitVersion=v1.34.4"));
    assert!(version_ldflags().contains("gitMinor=34"));
}
