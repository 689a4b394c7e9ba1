//! What a Kubernetes API request is about, read from its method, path and query: verb,
//! resource, namespace, name, subresource (the apiserver's `RequestInfo`, reduced to what
//! faults match on and the log records).

use serde::Serialize;

/// The API verb, as the apiserver names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
    Deletecollection,
    /// Anything else (discovery, `/version`, health).
    Other,
}

impl Verb {
    /// Whether it changes state.
    pub fn is_write(self) -> bool {
        matches!(
            self,
            Self::Create | Self::Update | Self::Patch | Self::Delete | Self::Deletecollection
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::List => "list",
            Self::Watch => "watch",
            Self::Create => "create",
            Self::Update => "update",
            Self::Patch => "patch",
            Self::Delete => "delete",
            Self::Deletecollection => "deletecollection",
            Self::Other => "other",
        }
    }
}

/// One request, as the log records it and faults match it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct RequestInfo {
    pub verb: Option<Verb>,
    /// `backups`, `jobs`, `events`, … (`None`: not a resource request).
    pub resource: Option<String>,
    /// `pingcap.com`, `batch`, `""` for the core group.
    pub group: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
    /// `resourceVersion` of the query (list/watch/get).
    pub query_rv: Option<String>,
}

impl RequestInfo {
    /// Read it from `method`, `path` and `query` (without `?`).
    pub fn parse(method: &str, path: &str, query: Option<&str>) -> Self {
        let param = |key: &str| {
            query.and_then(|q| {
                q.split('&').find_map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                    (k == key).then(|| v.to_owned())
                })
            })
        };
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let (group, rest) = match segs.as_slice() {
            ["api", _version, rest @ ..] => (String::new(), rest),
            ["apis", group, _version, rest @ ..] => ((*group).to_owned(), rest),
            _ => {
                return Self {
                    verb: Some(Verb::Other),
                    ..Self::default()
                };
            }
        };
        // The legacy `/watch/` prefix.
        let (legacy_watch, rest) = match rest {
            ["watch", rest @ ..] => (true, rest),
            rest => (false, rest),
        };
        let (namespace, rest): (Option<String>, &[&str]) = match rest {
            // `namespaces/NAME` and `namespaces/NAME/status|finalize` are the Namespace itself.
            ["namespaces", ns, sub @ ("status" | "finalize")] => {
                return Self::finish(
                    method,
                    legacy_watch,
                    param,
                    group,
                    None,
                    &["namespaces", ns, sub],
                );
            }
            ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some((*ns).to_owned()), rest),
            rest => (None, rest),
        };
        Self::finish(method, legacy_watch, param, group, namespace, rest)
    }

    fn finish(
        method: &str,
        legacy_watch: bool,
        param: impl Fn(&str) -> Option<String>,
        group: String,
        namespace: Option<String>,
        rest: &[&str],
    ) -> Self {
        let (resource, name, subresource) = match rest {
            [] => (None, None, None),
            [r] => (Some(*r), None, None),
            [r, n] => (Some(*r), Some(*n), None),
            [r, n, s, ..] => (Some(*r), Some(*n), Some(*s)),
        };
        let watch = legacy_watch || matches!(param("watch").as_deref(), Some("true" | "1"));
        let verb = match (method, name.is_some()) {
            ("GET", _) if watch => Verb::Watch,
            ("GET", true) => Verb::Get,
            ("GET", false) => Verb::List,
            ("POST", _) => Verb::Create,
            ("PUT", _) => Verb::Update,
            ("PATCH", _) => Verb::Patch,
            ("DELETE", true) => Verb::Delete,
            ("DELETE", false) => Verb::Deletecollection,
            _ => Verb::Other,
        };
        Self {
            verb: Some(verb),
            resource: resource.map(str::to_owned),
            group: Some(group),
            namespace,
            name: name.map(str::to_owned),
            subresource: subresource.map(str::to_owned),
            query_rv: param("resourceVersion").filter(|v| !v.is_empty()),
        }
    }

    /// `verb resource[/subresource] [namespace/]name`, for messages.
    pub fn describe(&self) -> String {
        let verb = self.verb.map_or("?", Verb::as_str);
        let mut s = format!(
            "{verb} {}",
            self.resource.as_deref().unwrap_or("(non-resource)")
        );
        if let Some(sub) = &self.subresource {
            s.push('/');
            s.push_str(sub);
        }
        if let Some(n) = &self.name {
            s.push(' ');
            if let Some(ns) = &self.namespace {
                s.push_str(ns);
                s.push('/');
            }
            s.push_str(n);
        }
        s
    }
}

#[cfg(test)]
// One row per request shape: its fields are the arguments.
#[allow(clippy::too_many_arguments)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case(
        "GET",
        "/apis/pingcap.com/v1alpha1/namespaces/s1/backups/lb1",
        None,
        Verb::Get,
        Some("backups"),
        Some("s1"),
        Some("lb1"),
        None
    )]
    #[case(
        "PUT",
        "/apis/pingcap.com/v1alpha1/namespaces/s1/backups/lb1/status",
        None,
        Verb::Update,
        Some("backups"),
        Some("s1"),
        Some("lb1"),
        Some("status")
    )]
    #[case(
        "PATCH",
        "/apis/pingcap.com/v1alpha1/namespaces/s1/backups/lb1/status",
        None,
        Verb::Patch,
        Some("backups"),
        Some("s1"),
        Some("lb1"),
        Some("status")
    )]
    #[case(
        "GET",
        "/apis/batch/v1/namespaces/s1/jobs",
        Some("watch=true&resourceVersion=12"),
        Verb::Watch,
        Some("jobs"),
        Some("s1"),
        None,
        None
    )]
    #[case(
        "GET",
        "/apis/batch/v1/namespaces/s1/jobs",
        Some("labelSelector=a%3Db"),
        Verb::List,
        Some("jobs"),
        Some("s1"),
        None,
        None
    )]
    #[case(
        "GET",
        "/api/v1/watch/namespaces/s1/pods",
        None,
        Verb::Watch,
        Some("pods"),
        Some("s1"),
        None,
        None
    )]
    #[case(
        "POST",
        "/apis/events.k8s.io/v1/namespaces/s1/events",
        None,
        Verb::Create,
        Some("events"),
        Some("s1"),
        None,
        None
    )]
    #[case(
        "DELETE",
        "/apis/batch/v1/namespaces/s1/jobs/j",
        None,
        Verb::Delete,
        Some("jobs"),
        Some("s1"),
        Some("j"),
        None
    )]
    #[case(
        "DELETE",
        "/apis/batch/v1/namespaces/s1/jobs",
        None,
        Verb::Deletecollection,
        Some("jobs"),
        Some("s1"),
        None,
        None
    )]
    #[case(
        "GET",
        "/api/v1/namespaces/s1",
        None,
        Verb::Get,
        Some("namespaces"),
        None,
        Some("s1"),
        None
    )]
    #[case(
        "PUT",
        "/api/v1/namespaces/s1/finalize",
        None,
        Verb::Update,
        Some("namespaces"),
        None,
        Some("s1"),
        Some("finalize")
    )]
    #[case(
        "GET",
        "/api/v1/namespaces",
        None,
        Verb::List,
        Some("namespaces"),
        None,
        None,
        None
    )]
    #[case(
        "GET",
        "/apis/pingcap.com/v1alpha1/backups",
        Some("watch=1"),
        Verb::Watch,
        Some("backups"),
        None,
        None,
        None
    )]
    #[case("GET", "/version", None, Verb::Other, None, None, None, None)]
    #[case("GET", "/apis", None, Verb::Other, None, None, None, None)]
    fn parses(
        #[case] method: &str,
        #[case] path: &str,
        #[case] query: Option<&str>,
        #[case] verb: Verb,
        #[case] resource: Option<&str>,
        #[case] namespace: Option<&str>,
        #[case] name: Option<&str>,
        #[case] sub: Option<&str>,
    ) {
        let r = RequestInfo::parse(method, path, query);
        assert_eq!(r.verb, Some(verb), "{path}");
        assert_eq!(r.resource.as_deref(), resource, "{path}");
        assert_eq!(r.namespace.as_deref(), namespace, "{path}");
        assert_eq!(r.name.as_deref(), name, "{path}");
        assert_eq!(r.subresource.as_deref(), sub, "{path}");
    }

    #[test]
    fn reads_the_query_resource_version_and_describes() {
        let r = RequestInfo::parse(
            "GET",
            "/apis/batch/v1/namespaces/s1/jobs",
            Some("watch=true&resourceVersion=42&allowWatchBookmarks=true"),
        );
        assert_eq!(r.query_rv.as_deref(), Some("42"));
        assert_eq!(r.describe(), "watch jobs");
        let w = RequestInfo::parse(
            "PUT",
            "/apis/pingcap.com/v1alpha1/namespaces/s1/backups/lb1/status",
            None,
        );
        assert_eq!(w.describe(), "update backups/status s1/lb1");
    }
}
