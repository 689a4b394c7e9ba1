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
