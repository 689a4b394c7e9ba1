//! The layers of `docs/architecture.md`, checked: every `crate::…` path in a module of
//! `src/` names a module of a lower layer, or is one of the page's listed exceptions (and
//! every listed exception still exists, so the list only shrinks).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test set-up panics by design

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The lines of the page's fenced block tagged `tag`.
fn block(page: &str, tag: &str) -> Vec<String> {
    let open = format!("```{tag}\n");
    let start = page
        .find(&open)
        .unwrap_or_else(|| panic!("no ```{tag} block"))
        + open.len();
    let end = start + page[start..].find("```").unwrap();
    page[start..end]
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

/// Module → layer (0 lowest).
fn layers(page: &str) -> BTreeMap<String, usize> {
    block(page, "layers")
        .iter()
        .enumerate()
        .flat_map(|(i, l)| l.split_whitespace().map(move |m| (m.to_owned(), i)))
        .collect()
}

/// The code of a source text: comment lines dropped, trailing ` // …` comments cut (a URL's
/// `://` has no space before it), all on one line (rustfmt splits `use` groups).
fn code(text: &str) -> String {
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .map(|l| l.split(" //").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The first segment of each path in a `{a::b, c, d::{e, f}}` group (the text after `{`).
fn group_heads(rest: &str) -> Vec<String> {
    let (mut depth, mut item, mut out) = (0usize, String::new(), Vec::new());
    for ch in rest.chars() {
        match ch {
            '{' => {
                depth += 1;
                item.push(ch);
            }
            '}' if depth == 0 => break,
            '}' => {
                depth -= 1;
                item.push(ch);
            }
            ',' if depth == 0 => out.push(std::mem::take(&mut item)),
            _ => item.push(ch),
        }
    }
    out.push(item);
    out.iter()
        .map(|i| i.trim().split("::").next().unwrap_or("").trim().to_owned())
        .filter(|h| !h.is_empty() && h != "self")
        .collect()
}

/// The top-level modules a source text names, through `crate::` or through as many
/// `super::` as `depth` (the file's module depth below the crate root: 1 for `src/x.rs` and
/// `src/x/mod.rs`, 2 for `src/x/a.rs`).
fn named_modules(text: &str, depth: usize) -> BTreeSet<String> {
    let code = code(text);
    let supers = "super::".repeat(depth);
    let mut out = BTreeSet::new();
    for prefix in ["crate::", supers.as_str()] {
        let mut rest = code.as_str();
        while let Some(i) = rest.find(prefix) {
            // `super::` found inside a longer run of them is not a path to the root.
            let deeper = prefix.starts_with("super") && rest[..i].ends_with("super::");
            rest = &rest[i + prefix.len()..];
            if deeper || rest.starts_with("super::") {
                continue;
            }
            if let Some(group) = rest.strip_prefix('{') {
                out.extend(group_heads(group));
            } else {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                out.insert(name);
            }
        }
    }
    out.retain(|m| !m.is_empty());
    out
}

/// Every `importer -> imported` edge between top-level modules of `src/`.
fn edges() -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    let src = root().join("src");
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            if p.extension().is_none_or(|x| x != "rs") {
                continue;
            }
            let rel = p.strip_prefix(&src).unwrap();
            let first = rel
                .components()
                .next()
                .unwrap()
                .as_os_str()
                .to_string_lossy();
            // The binary is above every layer; lib.rs only declares.
            if first == "bin" || first == "lib.rs" {
                continue;
            }
            let top = first.trim_end_matches(".rs").to_owned();
            // The module's depth: its path's components, `mod.rs` not counted.
            let depth = rel.components().count()
                - usize::from(rel.file_name().is_some_and(|n| n == "mod.rs"));
            for m in named_modules(&std::fs::read_to_string(&p).unwrap(), depth) {
                if m != top {
                    out.insert((top.clone(), m));
                }
            }
        }
    }
    out
}

/// The edges that run sideways or upwards (pure).
fn wrong_way(edges: &BTreeSet<(String, String)>, layers: &BTreeMap<String, usize>) -> Vec<String> {
    edges
        .iter()
        .filter(|(from, to)| match (layers.get(from), layers.get(to)) {
            (Some(a), Some(b)) => b >= a,
            _ => true,
        })
        .map(|(from, to)| format!("{from} -> {to}"))
        .collect()
}

#[test]
fn imports_run_down_the_layers_only() {
    let page = std::fs::read_to_string(root().join("docs/architecture.md")).unwrap();
    let layers = layers(&page);
    let edges = edges();
    assert!(edges.len() > 20, "found only {} imports", edges.len());
    for (from, to) in &edges {
        assert!(
            layers.contains_key(from),
            "module {from} is in no layer of docs/architecture.md"
        );
        assert!(
            layers.contains_key(to),
            "module {to} is in no layer of docs/architecture.md"
        );
    }
    let known: BTreeSet<String> = block(&page, "exceptions").into_iter().collect();
    let wrong: BTreeSet<String> = wrong_way(&edges, &layers).into_iter().collect();
    let new: Vec<_> = wrong.difference(&known).collect();
    assert!(new.is_empty(), "imports against the layers: {new:?}");
    let gone: Vec<_> = known.difference(&wrong).collect();
    assert!(
        gone.is_empty(),
        "listed exceptions that no longer exist (remove them): {gone:?}"
    );
}

#[test]
fn a_path_the_wrong_way_is_found() {
    let layers = BTreeMap::from([("suite".to_owned(), 0), ("run".to_owned(), 1)]);
    let text = "use crate::{run::x, suite};\n// crate::nothing\nlet _ = crate::run::y;";
    assert_eq!(
        named_modules(text, 1),
        BTreeSet::from(["run".to_owned(), "suite".to_owned()])
    );
    // rustfmt's multi-line groups, nested groups, `super::` to the root, a URL.
    let text = "use crate::{\n    judge::{a, b},\n    report,\n};\nuse super::super::cluster::X;\nuse super::sibling;\nlet u = \"http://x\"; use crate::proxy;";
    assert_eq!(
        named_modules(text, 2),
        BTreeSet::from([
            "cluster".to_owned(),
            "judge".to_owned(),
            "proxy".to_owned(),
            "report".to_owned()
        ])
    );
    let edges = BTreeSet::from([("suite".to_owned(), "run".to_owned())]);
    assert_eq!(wrong_way(&edges, &layers), ["suite -> run"]);
    let fine = BTreeSet::from([("run".to_owned(), "suite".to_owned())]);
    assert!(wrong_way(&fine, &layers).is_empty());
}

/// Largest source file outside tests, lines.
const MAX_FILE: usize = 600;
/// Longest function outside tests, lines.
const MAX_FN: usize = 120;
/// Longest file of the CLI (`src/bin/lbc/`), lines.
const MAX_CLI_FILE: usize = 300;

/// The workspace's Rust sources outside tests: (path from the root, the lines before an
/// inline `#[cfg(test)]` module). `tests.rs` files and `tests/` directories are tests.
fn sources() -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    let mut dirs = vec![root().join("src"), root().join("crates")];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir).unwrap().map(Result::unwrap) {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if p.is_dir() {
                if name != "tests" && name != "target" {
                    dirs.push(p);
                }
            } else if name.ends_with(".rs") && name != "tests.rs" {
                let text = std::fs::read_to_string(&p).unwrap();
                let lines: Vec<String> = text
                    .lines()
                    .take_while(|l| *l != "#[cfg(test)]")
                    .map(str::to_owned)
                    .collect();
                let rel = p.strip_prefix(root()).unwrap().display().to_string();
                out.push((rel, lines));
            }
        }
    }
    out.sort();
    out
}

/// Functions longer than `max` lines: (first line, name, length). rustfmt's layout makes
/// this exact enough: a body ends at the first `}` at the signature's indentation.
fn long_functions(lines: &[String], max: usize) -> Vec<(usize, String, usize)> {
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let t = l.trim_start();
        let indent = &l[..l.len() - t.len()];
        let sig = t
            .trim_start_matches("pub ")
            .trim_start_matches("pub(crate) ")
            .trim_start_matches("pub(super) ")
            .trim_start_matches("const ")
            .trim_start_matches("async ")
            .trim_start_matches("unsafe ");
        let Some(rest) = sig.strip_prefix("fn ") else {
            continue;
        };
        if t.ends_with(';') {
            continue; // a declaration without a body
        }
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let close = format!("{indent}}}");
        if let Some(end) = lines[i..].iter().position(|x| *x == close)
            && end + 1 > max
        {
            out.push((i + 1, name, end + 1));
        }
    }
    out
}

#[test]
fn files_and_functions_stay_small() {
    let mut over = Vec::new();
    for (path, lines) in sources() {
        let max = if path.starts_with("src/bin/lbc/") {
            MAX_CLI_FILE
        } else {
            MAX_FILE
        };
        if lines.len() > max {
            over.push(format!("{path}: {} lines (at most {max})", lines.len()));
        }
        for (line, name, len) in long_functions(&lines, MAX_FN) {
            over.push(format!(
                "{path}:{line}: fn {name} is {len} lines (at most {MAX_FN})"
            ));
        }
    }
    assert!(over.is_empty(), "split these:\n{}", over.join("\n"));
}

#[test]
fn a_long_function_is_found() {
    let body = |n: usize| -> Vec<String> {
        let mut v = vec!["    pub async fn big(x: u8) -> u8 {".to_owned()];
        v.extend((0..n).map(|_| "        x;".to_owned()));
        v.push("    }".to_owned());
        v.push("fn decl();".to_owned());
        v
    };
    assert_eq!(
        long_functions(&body(10), 11),
        vec![(1, "big".to_owned(), 12)]
    );
    assert!(long_functions(&body(10), 12).is_empty());
}
