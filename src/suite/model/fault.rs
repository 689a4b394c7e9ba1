//! `fault` steps: which request of the controller to meet, and the answer (crash, error,
//! delay, cut watch).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::*;
use crate::suite::duration::GoDuration;

/// `fault`: which request of the controller, and what happens to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultStep {
    /// Which requests count (every given field must match).
    #[serde(default)]
    pub request: RequestMatch,
    /// Fire at the nth matching request from now (default 1). Not for `watch`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurrence: Option<u32>,
    /// What happens. Exactly one key.
    pub inject: FaultKind,
}

/// A request of the controller under test.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequestMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verb: Option<VerbDecl>,
    /// `backups`, `jobs`, `events`, `pods`, `leases`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// e.g. `status`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subresource: Option<String>,
    /// The object's name (a declared Backup's name means that Backup).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The JSON request body contains this (every key and value given, recursively; a
    /// list matches when each given element matches one of its elements).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<serde_json::Value>,
    /// A write that makes this hold: false on the object before the write, true on the
    /// object as written (the rest of the state as recorded). Whatever verb the
    /// controller uses: an update, a merge or apply patch (not a JSON patch), a create.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub makes: Option<Predicate>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum VerbDecl {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
    /// create, update, patch or delete.
    Write,
}

/// What a fault does. Exactly one key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum FaultKind {
    /// SIGKILL the controller just before the request is forwarded, or just after the
    /// apiserver answered it (the controller never sees the answer), then start it again.
    Crash(CrashFault),
    /// Answer 409 Conflict once, without forwarding.
    Conflict(Empty),
    /// Answer an error once, without forwarding.
    Error(ErrorFault),
    /// Hold the request before forwarding it, or its response before returning it.
    Delay(DelayFault),
    /// Watch streams of `request.resource`.
    Watch(WatchFault),
}

/// `{}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CrashFault {
    /// `before` (the request never reaches the apiserver) or `after` (it took effect).
    pub at: CrashAt,
    /// Start the controller again after this long (Go duration; default at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_after: Option<GoDuration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum CrashAt {
    Before,
    After,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ErrorFault {
    /// 429, 500, 502, 503 or 504.
    pub code: u16,
    /// `Retry-After` (Go duration, whole seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<GoDuration>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DelayFault {
    /// Hold the request this long before forwarding it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<GoDuration>,
    /// Hold the response this long before returning it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<GoDuration>,
    /// Hold the request until this holds in the recorded trace (at most `bound`): a
    /// race made to happen every time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<Predicate>,
    /// The longest `until` may hold a request (Go duration, default 30s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bound: Option<GoDuration>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WatchFault {
    /// End the open watch streams now (the next one, if none is open).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub close: bool,
    /// Answer the next watch that resumes from a resourceVersion with 410 Gone.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub gone: bool,
    /// From now on deliver every watch event this much later (order kept): a stale view.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<GoDuration>,
}

impl Checks for FaultStep {
    fn checks<'a>(&'a self, field: &str, out: &mut Vec<Check<'a>>) {
        let broken = |key: &'static str, value: String, message: &str, choices| Check::Broken {
            field: format!("{field}.{key}"),
            key,
            value,
            message: message.to_owned(),
            choices,
        };
        if let Some(p) = &self.request.makes {
            out.push(Check::Predicate {
                field: format!("{field}.request.makes"),
                that: p,
            });
        }
        if self.occurrence == Some(0) {
            out.push(broken("occurrence", "0".into(), "counts from 1", &[]));
        }
        let is_watch = self.request.verb == Some(VerbDecl::Watch);
        match &self.inject {
            FaultKind::Crash(c) => out.extend(duration(
                format!("{field}.inject.crash.restartAfter"),
                "restartAfter",
                &c.restart_after,
            )),
            FaultKind::Conflict(_) => {}
            FaultKind::Error(e) => {
                if ![429, 500, 502, 503, 504].contains(&e.code) {
                    out.push(Check::Broken {
                        field: format!("{field}.inject.error.code"),
                        key: "code",
                        value: e.code.to_string(),
                        message: format!(
                            "{} is not an answer the apiserver gives to a healthy request; one of 429, 500, 502, 503, 504",
                            e.code
                        ),
                        choices: &[],
                    });
                }
                out.extend(duration(
                    format!("{field}.inject.error.retryAfter"),
                    "retryAfter",
                    &e.retry_after,
                ));
            }
            FaultKind::Delay(d) => {
                if d.request.is_none() && d.response.is_none() && d.until.is_none() {
                    out.push(broken(
                        "inject",
                        "delay".into(),
                        "delay needs request, response or until",
                        &["request", "response", "until"],
                    ));
                }
                if let Some(u) = &d.until {
                    out.push(Check::Predicate {
                        field: format!("{field}.inject.delay.until"),
                        that: u,
                    });
                }
                for (key, v) in [
                    ("request", &d.request),
                    ("response", &d.response),
                    ("bound", &d.bound),
                ] {
                    out.extend(duration(format!("{field}.inject.delay.{key}"), key, v));
                }
            }
            FaultKind::Watch(w) => {
                if !w.close && !w.gone && w.delay.is_none() {
                    out.push(broken(
                        "inject",
                        "watch".into(),
                        "watch needs close, gone or delay",
                        &["close", "gone", "delay"],
                    ));
                }
                if self.request.verb.is_some() && !is_watch {
                    out.push(broken(
                        "request",
                        "verb".into(),
                        "a watch fault acts on watch requests: leave verb out or say watch",
                        &["watch"],
                    ));
                }
                if self.request.resource.is_none() {
                    out.push(broken(
                        "request",
                        String::new(),
                        "a watch fault needs request.resource (which streams)",
                        &["backups", "jobs", "pods"],
                    ));
                }
                out.extend(duration(
                    format!("{field}.inject.watch.delay"),
                    "delay",
                    &w.delay,
                ));
            }
        }
        if is_watch && !matches!(self.inject, FaultKind::Watch(_)) {
            out.push(broken(
                "request",
                "watch".into(),
                "only a watch fault acts on a watch request",
                &[],
            ));
        }
    }
}
