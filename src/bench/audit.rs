//! Reading kube-apiserver's audit log: a controller's writes, counted from outside it.

use std::collections::BTreeMap;
use std::path::Path;

/// One audited write request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub user: String,
    pub verb: String,
    /// `resource` or `resource/subresource`.
    pub resource: String,
    pub namespace: String,
    pub name: String,
    pub code: i64,
}

/// The writes in an audit log (JSON lines, stage `ResponseComplete`); unreadable lines are
/// skipped (the policy logs nothing else).
pub fn read_writes(path: &Path) -> std::io::Result<Vec<Write>> {
    Ok(parse_writes(&std::fs::read_to_string(path)?))
}

/// [`read_writes`] over the text of a log.
pub fn parse_writes(text: &str) -> Vec<Write> {
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["stage"] == "ResponseComplete")
        .map(|v| {
            let s = |p: &serde_json::Value| p.as_str().unwrap_or_default().to_owned();
            let o = &v["objectRef"];
            let mut resource = s(&o["resource"]);
            if let Some(sub) = o["subresource"].as_str() {
                resource = format!("{resource}/{sub}");
            }
            Write {
                user: s(&v["user"]["username"]),
                verb: s(&v["verb"]),
                resource,
                namespace: s(&o["namespace"]),
                name: s(&o["name"]),
                code: v["responseStatus"]["code"].as_i64().unwrap_or(0),
            }
        })
        .collect()
}

/// Successful writes of `user` in `namespace`, counted by `verb resource`.
pub fn count_by_kind(writes: &[Write], user: &str, namespace: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for w in writes
        .iter()
        .filter(|w| w.user == user && w.namespace == namespace && (200..300).contains(&w.code))
    {
        *out.entry(format!("{} {}", w.verb, w.resource)).or_default() += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_read_and_counted_per_user() {
        let log = r#"{"kind":"Event","stage":"ResponseComplete","verb":"update","user":{"username":"lbc-controller"},"objectRef":{"resource":"backups","namespace":"b","name":"x"},"responseStatus":{"code":200}}
{"kind":"Event","stage":"ResponseComplete","verb":"create","user":{"username":"lbc-controller"},"objectRef":{"resource":"jobs","namespace":"b","name":"j"},"responseStatus":{"code":201}}
{"kind":"Event","stage":"ResponseComplete","verb":"update","user":{"username":"lbc-controller"},"objectRef":{"resource":"backups","namespace":"b","name":"x"},"responseStatus":{"code":409}}
{"kind":"Event","stage":"ResponseComplete","verb":"patch","user":{"username":"lbc-pod"},"objectRef":{"resource":"pods","subresource":"status","namespace":"b","name":"p"},"responseStatus":{"code":200}}
not json
"#;
        let w = parse_writes(log);
        assert_eq!(w.len(), 4);
        assert_eq!(w[3].resource, "pods/status");
        let c = count_by_kind(&w, "lbc-controller", "b");
        assert_eq!(
            c.get("update backups"),
            Some(&1),
            "a conflict is not a write"
        );
        assert_eq!(c.get("create jobs"), Some(&1));
        assert_eq!(c.len(), 2);
    }
}
