//! Faults the proxy injects: what they match and what they do. The runner arms them (a
//! suite's `fault` step); the proxy consults the board for every request.

mod conflict;
mod crash;
mod delay;
mod error;
mod gone;

pub(super) use crash::now as crash_now;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::jiff::Timestamp;

use super::request::{RequestInfo, Verb};

/// A request as a fault's predicate sees it.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    pub info: &'a RequestInfo,
    /// The request body, when it is JSON.
    pub body: Option<&'a serde_json::Value>,
    /// The object as it is on the server before the write (fetched only for faults that
    /// ask, see [`Fault::wants_objects`]).
    pub before: Option<&'a serde_json::Value>,
    /// The object as the write would leave it: the body of a create or update, a merge or
    /// apply patch merged into `before`; `None` for a JSON patch or a delete.
    pub after: Option<&'a serde_json::Value>,
}

/// Decides whether a request is the one; pure, called with the board locked.
pub type Matcher = Arc<dyn Fn(&RequestView<'_>) -> bool + Send + Sync>;

/// Something to wait for before going on.
#[derive(Clone)]
pub enum Hold {
    For(Duration),
    /// Until this future completes (e.g. a state in the harness's trace), or `bound`.
    Until {
        wait: Arc<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>,
        bound: Duration,
    },
}

impl std::fmt::Debug for Hold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::For(d) => write!(f, "For({d:?})"),
            Self::Until { bound, .. } => write!(f, "Until(.., bound {bound:?})"),
        }
    }
}

impl Hold {
    pub(crate) async fn wait(&self) {
        match self {
            Self::For(d) => tokio::time::sleep(*d).await,
            Self::Until { wait, bound } => {
                let _ = tokio::time::timeout(*bound, wait()).await;
            }
        }
    }
}

/// What a fault does to the request it matches.
#[derive(Debug, Clone)]
pub enum Action {
    /// SIGKILL the controller before forwarding the request (`after_response: false`) or
    /// once the apiserver answered it (the controller never sees the answer); start it
    /// again after `restart_after` (`None`: leave it stopped).
    Crash {
        after_response: bool,
        restart_after: Option<Duration>,
    },
    /// Answer 409 Conflict without forwarding.
    Conflict,
    /// Answer `code` (500, 503, 429) without forwarding, with `Retry-After`.
    Error {
        code: u16,
        retry_after: Option<Duration>,
    },
    /// Hold the request before forwarding it, or its response before returning it.
    Delay {
        request: Option<Hold>,
        response: Option<Hold>,
    },
    /// End the matching watch streams now (the open ones; else the next one).
    CloseWatch,
    /// Answer the next matching watch that resumes from a resourceVersion with
    /// `410 Gone` (an `ERROR` event, as the apiserver does when the version is too old).
    Gone,
    /// From now on, deliver each event of matching watch streams this much later (order
    /// kept).
    DelayWatch(Duration),
}

impl Action {
    /// What the proxy does with the request it fired on: each kind's response is in its
    /// own file; the watch faults act in the relay (`proxy/watch.rs`) instead.
    pub(super) async fn fire(
        self,
        shared: &super::Shared,
        seq: u64,
        info: &RequestInfo,
    ) -> super::Fired {
        match self {
            Self::Crash {
                after_response,
                restart_after,
            } => crash::fire(shared, seq, after_response, restart_after),
            Self::Conflict => conflict::fire(shared, seq, info),
            Self::Error { code, retry_after } => error::fire(shared, seq, code, retry_after),
            Self::Delay { request, response } => delay::fire(request, response).await,
            Self::Gone => gone::fire(shared, seq),
            Self::CloseWatch | Self::DelayWatch(_) => super::Fired::Forward(None),
        }
    }

    /// A short name for the log.
    pub fn describe(&self) -> String {
        match self {
            Self::Crash {
                after_response: false,
                ..
            } => "crash before forwarding".into(),
            Self::Crash { .. } => "crash after the response".into(),
            Self::Conflict => "409 Conflict".into(),
            Self::Error { code, .. } => format!("{code} error"),
            Self::Delay { request, response } => format!(
                "delay{}{}",
                request
                    .as_ref()
                    .map_or(String::new(), |h| format!(" request {h:?}")),
                response
                    .as_ref()
                    .map_or(String::new(), |h| format!(" response {h:?}"))
            ),
            Self::CloseWatch => "watch closed".into(),
            Self::Gone => "410 Gone on resume".into(),
            Self::DelayWatch(d) => format!("watch events delayed {}s", d.as_secs_f64()),
        }
    }

    fn is_watch(&self) -> bool {
        matches!(self, Self::CloseWatch | Self::Gone | Self::DelayWatch(_))
    }
}

/// Which requests a fault considers: every set field must match.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Empty: any verb.
    pub verbs: Vec<Verb>,
    pub resource: Option<String>,
    pub subresource: Option<String>,
    pub name: Option<String>,
}

impl Filter {
    /// Whether `r` passes (pure).
    pub fn admits(&self, r: &RequestInfo) -> bool {
        (self.verbs.is_empty() || r.verb.is_some_and(|v| self.verbs.contains(&v)))
            && self
                .resource
                .as_ref()
                .is_none_or(|x| r.resource.as_ref() == Some(x))
            && self
                .subresource
                .as_ref()
                .is_none_or(|x| r.subresource.as_ref() == Some(x))
            && self
                .name
                .as_ref()
                .is_none_or(|x| r.name.as_ref() == Some(x))
    }
}

/// One fault, as armed.
#[derive(Clone)]
pub struct Fault {
    /// Where it comes from, e.g. `steps[3] (fault)`.
    pub label: String,
    pub filter: Filter,
    /// Further conditions on the request (body, the object before and after).
    pub matcher: Option<Matcher>,
    /// Whether `matcher` needs `before`/`after` (the proxy then reads the object first).
    pub wants_objects: bool,
    /// Fire at the nth request that matches (from 1).
    pub occurrence: u32,
    pub action: Action,
}

impl std::fmt::Debug for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fault")
            .field("label", &self.label)
            .field("filter", &self.filter)
            .field("occurrence", &self.occurrence)
            .field("action", &self.action)
            .finish_non_exhaustive()
    }
}

/// An armed fault and what became of it.
#[derive(Debug, Clone)]
pub struct Armed {
    pub fault: Fault,
    /// Matching requests seen so far.
    pub seen: u32,
    /// When it fired, and on which request.
    pub fired: Option<(Timestamp, String)>,
}

/// A watch stream the proxy is passing through, as faults reach it.
#[derive(Debug)]
pub(crate) struct OpenWatch {
    pub id: u64,
    pub info: RequestInfo,
    pub ctl: Arc<WatchCtl>,
}

/// Controls of one watch stream.
#[derive(Debug, Default)]
pub(crate) struct WatchCtl {
    pub delay: Mutex<Duration>,
    pub close: tokio::sync::Notify,
    pub closed: std::sync::atomic::AtomicBool,
}

impl WatchCtl {
    pub(crate) fn delay(&self) -> Duration {
        *self.delay.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn set_delay(&self, d: Duration) {
        *self.delay.lock().unwrap_or_else(|p| p.into_inner()) = d;
    }
    fn close(&self) {
        self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
        self.close.notify_waiters();
    }
}

#[derive(Debug, Default)]
struct Inner {
    armed: Vec<Armed>,
    watches: Vec<OpenWatch>,
    next_watch: u64,
    /// Standing watch delays: (filter, delay) for streams opened later.
    watch_delays: Vec<(Filter, Duration)>,
}

/// The faults armed on one proxy, and its open watch streams.
#[derive(Debug, Clone, Default)]
pub struct FaultBoard {
    inner: Arc<Mutex<Inner>>,
}

impl FaultBoard {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Arm `f`. A watch fault acts on the open streams at once.
    pub fn arm(&self, f: Fault) {
        let mut inner = self.lock();
        let mut armed = Armed {
            fault: f,
            seen: 0,
            fired: None,
        };
        match armed.fault.action {
            Action::CloseWatch => {
                let hit: Vec<String> = inner
                    .watches
                    .iter()
                    .filter(|w| armed.fault.filter.admits(&w.info))
                    .map(|w| {
                        w.ctl.close();
                        w.info.describe()
                    })
                    .collect();
                if !hit.is_empty() {
                    armed.fired = Some((Timestamp::now(), hit.join(", ")));
                }
            }
            Action::DelayWatch(d) => {
                let hit: Vec<String> = inner
                    .watches
                    .iter()
                    .filter(|w| armed.fault.filter.admits(&w.info))
                    .map(|w| {
                        w.ctl.set_delay(d);
                        w.info.describe()
                    })
                    .collect();
                if !hit.is_empty() {
                    armed.fired = Some((Timestamp::now(), hit.join(", ")));
                }
                inner.watch_delays.push((armed.fault.filter.clone(), d));
            }
            _ => {}
        }
        inner.armed.push(armed);
    }

    /// Whether some armed, unfired fault admits `r` and wants the objects.
    pub(crate) fn wants_objects(&self, r: &RequestInfo) -> bool {
        self.lock().armed.iter().any(|a| {
            a.fired.is_none()
                && !a.fault.action.is_watch()
                && a.fault.wants_objects
                && a.fault.filter.admits(r)
        })
    }

    /// The action for request `v`, if an armed fault reaches its occurrence on it. Every
    /// unfired fault that matches counts it.
    pub(crate) fn decide(&self, v: &RequestView<'_>) -> Option<(String, Action)> {
        let mut inner = self.lock();
        let is_resume = v.info.verb == Some(Verb::Watch) && v.info.query_rv.is_some();
        let mut chosen = None;
        for a in inner.armed.iter_mut().filter(|a| a.fired.is_none()) {
            let applies = match a.fault.action {
                Action::Gone => is_resume,
                Action::CloseWatch | Action::DelayWatch(_) => false,
                _ => true,
            };
            if !applies
                || !a.fault.filter.admits(v.info)
                || !a.fault.matcher.as_ref().is_none_or(|m| m(v))
            {
                continue;
            }
            a.seen += 1;
            if chosen.is_none() && a.seen >= a.fault.occurrence {
                a.fired = Some((Timestamp::now(), v.info.describe()));
                chosen = Some((a.fault.label.clone(), a.fault.action.clone()));
            }
        }
        chosen
    }

    /// Register a watch stream being opened; returns its controls (delay set by standing
    /// faults; closed at once by a pending close).
    pub(crate) fn open_watch(&self, info: RequestInfo) -> (u64, Arc<WatchCtl>) {
        let mut inner = self.lock();
        let ctl = Arc::new(WatchCtl::default());
        if let Some((_, d)) = inner
            .watch_delays
            .iter()
            .rev()
            .find(|(f, _)| f.admits(&info))
        {
            ctl.set_delay(*d);
        }
        for a in inner.armed.iter_mut().filter(|a| a.fired.is_none()) {
            if !a.fault.filter.admits(&info) {
                continue;
            }
            match a.fault.action {
                Action::CloseWatch => {
                    a.fired = Some((Timestamp::now(), info.describe()));
                    ctl.close();
                }
                Action::DelayWatch(_) => a.fired = Some((Timestamp::now(), info.describe())),
                _ => {}
            }
        }
        let id = inner.next_watch;
        inner.next_watch += 1;
        inner.watches.push(OpenWatch {
            id,
            info,
            ctl: ctl.clone(),
        });
        (id, ctl)
    }

    pub(crate) fn close_watch(&self, id: u64) {
        self.lock().watches.retain(|w| w.id != id);
    }

    /// Every fault armed so far, with what became of it.
    pub fn armed(&self) -> Vec<Armed> {
        self.lock().armed.clone()
    }

    /// Open watch streams (resource descriptions).
    pub fn open_watches(&self) -> Vec<String> {
        self.lock()
            .watches
            .iter()
            .map(|w| w.info.describe())
            .collect()
    }
}

/// RFC 7386: `patch` merged into `target`.
pub fn merge_patch(target: &serde_json::Value, patch: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            let mut out = t.clone();
            for (k, v) in p {
                if v.is_null() {
                    out.remove(k);
                } else {
                    let merged = merge_patch(t.get(k).unwrap_or(&Value::Null), v);
                    out.insert(k.clone(), merged);
                }
            }
            Value::Object(out)
        }
        (_, Value::Object(p)) => merge_patch(
            &Value::Object(Default::default()),
            &Value::Object(p.clone()),
        ),
        (_, p) => p.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn info(method: &str, path: &str, q: Option<&str>) -> RequestInfo {
        RequestInfo::parse(method, path, q)
    }

    fn fault(filter: Filter, occurrence: u32, action: Action) -> Fault {
        Fault {
            label: "t".into(),
            filter,
            matcher: None,
            wants_objects: false,
            occurrence,
            action,
        }
    }

    const STATUS: &str = "/apis/pingcap.com/v1alpha1/namespaces/s/backups/lb1/status";

    #[test]
    fn fires_once_at_the_nth_match_only() {
        let board = FaultBoard::default();
        board.arm(fault(
            Filter {
                verbs: vec![Verb::Update, Verb::Patch],
                resource: Some("backups".into()),
                subresource: Some("status".into()),
                name: Some("lb1".into()),
            },
            2,
            Action::Conflict,
        ));
        let put = info("PUT", STATUS, None);
        let get = info("GET", STATUS, None);
        let view = |i| RequestView {
            info: i,
            body: None,
            before: None,
            after: None,
        };
        assert!(board.decide(&view(&get)).is_none(), "a get does not count");
        assert!(
            board.decide(&view(&put)).is_none(),
            "the first update passes"
        );
        assert!(matches!(
            board.decide(&view(&put)),
            Some((_, Action::Conflict))
        ));
        assert!(board.decide(&view(&put)).is_none(), "fired once");
        assert_eq!(board.armed()[0].seen, 2);
    }

    #[test]
    fn a_matcher_narrows_and_gone_needs_a_resume() {
        let board = FaultBoard::default();
        let mut f = fault(Filter::default(), 1, Action::Conflict);
        f.matcher = Some(Arc::new(|v: &RequestView<'_>| {
            v.after.is_some_and(|a| a["status"]["phase"] == "Complete")
        }));
        board.arm(f);
        let put = info("PUT", STATUS, None);
        let running = json!({"status": {"phase": "Running"}});
        let complete = json!({"status": {"phase": "Complete"}});
        let v = |after| RequestView {
            info: &put,
            body: None,
            before: None,
            after,
        };
        assert!(board.decide(&v(Some(&running))).is_none());
        assert!(board.decide(&v(Some(&complete))).is_some());

        let board = FaultBoard::default();
        board.arm(fault(Filter::default(), 1, Action::Gone));
        let first = info(
            "GET",
            "/apis/batch/v1/namespaces/s/jobs",
            Some("watch=true"),
        );
        let resume = info(
            "GET",
            "/apis/batch/v1/namespaces/s/jobs",
            Some("watch=true&resourceVersion=7"),
        );
        let v = |i| RequestView {
            info: i,
            body: None,
            before: None,
            after: None,
        };
        assert!(
            board.decide(&v(&first)).is_none(),
            "a first watch is not a resume"
        );
        assert!(matches!(board.decide(&v(&resume)), Some((_, Action::Gone))));
    }

    #[test]
    fn watch_faults_reach_open_and_later_streams() {
        let board = FaultBoard::default();
        let jobs = info("GET", "/apis/batch/v1/namespaces/s/jobs", Some("watch=1"));
        let pods = info("GET", "/api/v1/namespaces/s/pods", Some("watch=1"));
        let (_, j) = board.open_watch(jobs.clone());
        let (_, p) = board.open_watch(pods);
        let only_jobs = Filter {
            resource: Some("jobs".into()),
            ..Filter::default()
        };
        board.arm(fault(
            only_jobs.clone(),
            1,
            Action::DelayWatch(Duration::from_secs(2)),
        ));
        assert_eq!(j.delay(), Duration::from_secs(2));
        assert_eq!(p.delay(), Duration::ZERO);
        let (_, later) = board.open_watch(jobs.clone());
        assert_eq!(later.delay(), Duration::from_secs(2), "a standing delay");
        board.arm(fault(only_jobs, 1, Action::CloseWatch));
        assert!(j.closed.load(std::sync::atomic::Ordering::SeqCst));
        assert!(!p.closed.load(std::sync::atomic::Ordering::SeqCst));
        assert!(board.armed()[1].fired.is_some());
    }

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let t = json!({"a": 1, "b": {"c": 2, "d": 3}, "e": [1, 2]});
        let p = json!({"a": null, "b": {"c": 9}, "e": [3], "f": {"g": 1}});
        assert_eq!(
            merge_patch(&t, &p),
            json!({"b": {"c": 9, "d": 3}, "e": [3], "f": {"g": 1}})
        );
    }
}
