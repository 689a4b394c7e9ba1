//! Malformed suite files: each must be rejected with a message naming the file, line,
//! column and field (and the closest valid key where one is close). The messages are
//! snapshotted and reviewed like code.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test set-up panics by design

use std::collections::BTreeMap;
use std::path::Path;

use logbackup_conformance::suite;

#[test]
fn malformed_suites_are_rejected_with_located_messages() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("tests/malformed");
    let files = suite::discover(&dir).unwrap();
    assert!(files.len() >= 10, "only {} malformed suites", files.len());
    let mut messages = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(root).unwrap().to_owned();
        let text = std::fs::read_to_string(&f).unwrap();
        let err = suite::load_str(&rel, &text, root)
            .expect_err(&format!("{} was accepted", rel.display()));
        messages.insert(
            rel.file_name().unwrap().to_string_lossy().into_owned(),
            err.to_string(),
        );
    }
    insta::assert_yaml_snapshot!(messages);
}

#[test]
fn every_shipped_suite_lints_clean() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let files = suite::discover(&root.join("suites")).unwrap();
    assert!(!files.is_empty());
    for f in files {
        if let Err(e) = suite::load_file(&f, root) {
            panic!("{e}");
        }
    }
}

#[test]
fn two_suites_of_one_name_are_refused_naming_both_files() {
    // The name is the suite's namespace: two at once would share it.
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("suites/retry-disabled.yaml"),
    )
    .unwrap();
    for f in ["a.yaml", "b.yaml"] {
        std::fs::write(dir.path().join(f), &text).unwrap();
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lbc"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("lint")
        .arg(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("b.yaml: name: \"retry-disabled\" is also the name of")
            && err.contains("a.yaml"),
        "{err}"
    );
}

/// Bad target arguments are refused in one line before anything starts: one target given
/// twice without instance names, and a path that is not there.
#[test]
fn target_instances_must_be_named_and_their_paths_exist() {
    let lbc = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_lbc"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, err) = lbc(&["lint-target", "reference", "reference"]);
    assert!(!ok);
    assert!(err.contains("name the instances"), "{err}");
    let (ok, err) = lbc(&["lint-target", "old=reference", "new=reference"]);
    assert!(ok, "{err}");
    let (ok, err) = lbc(&[
        "lint-target",
        "new=reference",
        "--set",
        "new:bin=/nonexistent/x",
    ]);
    assert!(!ok);
    assert!(
        err.contains("new (") && err.contains("/nonexistent/x is not an executable file"),
        "{err}"
    );
}
