//! One feature set for every shared dependency (`crates/workspace-hack`): the builds a first
//! run makes — `lbc`, the programs `lbc run` builds (lbc-controller, fake-br, lbc-sandbox) and
//! the tests — must resolve every crate they share with the same features, or each rebuilds
//! it (and everything above it) once more. When this fails, add the named crate with the
//! union of its features to crates/workspace-hack/Cargo.toml.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test set-up panics by design

use std::collections::{BTreeMap, BTreeSet};

/// Each crate (name and version) with the feature sets it is built with: one, or two where
/// it is built for build scripts and proc-macros as well.
type Features = BTreeMap<String, BTreeSet<BTreeSet<String>>>;

/// `cargo tree` for `args`.
fn features(args: &[&str]) -> Features {
    let out = std::process::Command::new(env!("CARGO"))
        .args(["tree", "--offline", "--prefix", "none", "-f", "{p}|{f}"])
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        // The workspace's own crates carry their path; the features of interest are deps'.
        .filter(|l| !l.contains("(/"))
        .filter_map(|l| {
            // A crate shown before is marked " (*)" at the end of its line.
            let (p, f) = l.trim_end_matches(" (*)").split_once('|')?;
            let mut words = p.split_whitespace();
            let key = format!("{} {}", words.next()?, words.next()?);
            let set: BTreeSet<String> = f
                .split(',')
                .filter(|x| !x.is_empty())
                .map(str::to_owned)
                .collect();
            Some((key, set))
        })
        .fold(Features::new(), |mut m, (k, set)| {
            m.entry(k).or_default().insert(set);
            m
        })
}

/// The crates two builds share whose features differ (pure).
fn differing(a: &Features, b: &Features) -> Vec<String> {
    let flat = |f: &BTreeSet<BTreeSet<String>>| -> BTreeSet<String> {
        f.iter().flatten().cloned().collect()
    };
    a.iter()
        .filter_map(|(k, fa)| {
            let fb = b.get(k)?;
            (fa != fb).then(|| {
                let (fa, fb) = (flat(fa), flat(fb));
                let only_a: Vec<_> = fa.difference(&fb).collect();
                let only_b: Vec<_> = fb.difference(&fa).collect();
                format!("{k}: {only_a:?} vs {only_b:?}")
            })
        })
        .collect()
}

#[test]
fn the_first_runs_builds_share_every_dependency() {
    let lbc = features(&["-e", "normal,build", "-p", "logbackup-conformance"]);
    let programs = features(&[
        "-e",
        "normal,build",
        "-p",
        "lbc-reference-controller",
        "-p",
        "lbc-fake-br",
        "-p",
        "lbc-sandbox",
    ]);
    let tests = features(&[
        "-e",
        "normal,build,dev",
        "--workspace",
        "--features",
        "logbackup-conformance/e2e",
    ]);
    assert!(
        lbc.len() > 100 && programs.len() > 100,
        "cargo tree said little"
    );
    let mut diffs = differing(&lbc, &programs);
    diffs.extend(differing(&lbc, &tests));
    diffs.extend(differing(&programs, &tests));
    diffs.sort();
    diffs.dedup();
    assert!(
        diffs.is_empty(),
        "rebuilt twice (add to crates/workspace-hack):\n{}",
        diffs.join("\n")
    );
}

#[test]
fn a_difference_is_named() {
    let set =
        |f: &[&str]| BTreeSet::from([f.iter().map(|s| (*s).to_owned()).collect::<BTreeSet<_>>()]);
    let a = Features::from([("jiff v0.2.46".to_owned(), set(&["std", "tz-fat"]))]);
    let b = Features::from([("jiff v0.2.46".to_owned(), set(&["std"]))]);
    assert_eq!(differing(&a, &b), ["jiff v0.2.46: [\"tz-fat\"] vs []"]);
    assert!(differing(&a, &a).is_empty());
}
