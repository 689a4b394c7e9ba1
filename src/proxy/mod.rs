//! The API proxy: stands between the controller under test and kube-apiserver (TLS with its
//! own CA; the controller's kubeconfig points at it), records every request of the
//! controller ([`ApiLog`]) and injects the faults armed on its [`FaultBoard`]: a crash of
//! the controller at a chosen request, a 409, a 5xx/429, a held request or response, a cut,
//! expired or slowed watch. Watches are streamed through event by event, in order.
//!
//! It forwards with the harness's own client (any kubeconfig credentials), so it works in
//! front of every cluster provider.

mod fault;
mod fence;
mod log;
mod request;
mod tls;
mod watch;

pub use fault::{
    Action, Armed, Fault, FaultBoard, Filter, Hold, Matcher, RequestView, merge_patch,
};
pub use log::{ApiCall, ApiLog};
pub use request::{RequestInfo, Verb};

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use k8s_openapi::jiff::Timestamp;
use tokio::net::TcpListener;

pub use fence::Fence;
pub use tls::PLACEHOLDER_TOKEN;

/// The body the proxy answers with.
type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Errors starting the proxy.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("the API proxy's TLS set-up: {0}")]
    Tls(String),
    #[error("the API proxy cannot listen on 127.0.0.1: {0}")]
    Listen(#[source] std::io::Error),
    #[error("the API proxy's upstream client: {0}")]
    Upstream(#[source] kube::Error),
}

/// What the proxy does to the controller under test when a `crash` fault fires.
pub trait ControllerHook: Send + Sync {
    /// SIGKILL it now; start it again after `restart_after` (`None`: leave it stopped).
    fn crash(&self, restart_after: Option<Duration>);
}

/// Added latency (stress mode): each request waits `base` ± up to `base` before forwarding.
#[derive(Debug, Clone, Copy, Default)]
pub struct Latency {
    pub base: Duration,
}

impl Latency {
    /// The delay for request `seq`: spread over [0, 2·base], deterministic per `seq`.
    pub fn for_request(self, seq: u64) -> Duration {
        if self.base.is_zero() {
            return Duration::ZERO;
        }
        // splitmix64: a cheap, well-spread hash, so runs are reproducible.
        let mut z = seq.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        let frac = (z % 10_001) as f64 / 10_000.0;
        self.base.mul_f64(2.0 * frac)
    }
}

struct Shared {
    upstream: kube::Client,
    log: ApiLog,
    faults: FaultBoard,
    hook: Option<Arc<dyn ControllerHook>>,
    latency: Latency,
    gate: tokio::sync::watch::Receiver<fence::Gate>,
}

/// The proxy's URL and CA.
#[derive(Debug, Clone)]
pub struct Access {
    pub url: String,
    pub ca_pem: String,
}

impl Access {
    /// A kubeconfig that reaches the cluster through the proxy with `token`.
    pub fn kubeconfig_yaml(&self, token: &str) -> String {
        tls::kubeconfig_yaml(&self.url, &self.ca_pem, token)
    }
}

/// Where the proxy listens and whom it acts as upstream.
#[derive(Debug, Clone)]
pub struct Listen {
    /// Its address (in its certificate): loopback, or where a node's Pods reach this host.
    pub ip: std::net::Ipv4Addr,
    /// Act as this user with these groups (a ServiceAccount: its RBAC rules then decide);
    /// `None`: with the harness's own rights.
    pub act_as: Option<(String, Vec<String>)>,
}

impl Default for Listen {
    fn default() -> Self {
        Self {
            ip: std::net::Ipv4Addr::LOCALHOST,
            act_as: None,
        }
    }
}

impl Listen {
    /// A ServiceAccount's identity, as the API server gives it to its tokens.
    pub fn service_account(ip: std::net::Ipv4Addr, namespace: &str, name: &str) -> Self {
        Self {
            ip,
            act_as: Some((
                format!("system:serviceaccount:{namespace}:{name}"),
                vec![
                    "system:serviceaccounts".into(),
                    format!("system:serviceaccounts:{namespace}"),
                    "system:authenticated".into(),
                ],
            )),
        }
    }
}

/// A running proxy; stops (with every connection) when dropped.
pub struct ApiProxy {
    pub addr: SocketAddr,
    pub log: ApiLog,
    pub faults: FaultBoard,
    /// Cuts the controller off while the harness has it down.
    pub fence: Fence,
    ca_pem: String,
    shutdown: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for ApiProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiProxy")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Drop for ApiProxy {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        self.task.abort();
    }
}

impl ApiProxy {
    /// Listen on a free loopback port and forward to the cluster of `upstream`.
    ///
    /// # Errors
    /// TLS set-up, the listener or the upstream client fail.
    pub async fn start(
        upstream: &kube::Config,
        hook: Option<Arc<dyn ControllerHook>>,
        latency: Latency,
    ) -> Result<Self, ProxyError> {
        Self::start_at(upstream, hook, latency, &Listen::default()).await
    }

    /// Listen where `at` says, acting upstream as whom it says.
    ///
    /// # Errors
    /// TLS set-up, the listener or the upstream client fail.
    pub async fn start_at(
        upstream: &kube::Config,
        hook: Option<Arc<dyn ControllerHook>>,
        latency: Latency,
        at: &Listen,
    ) -> Result<Self, ProxyError> {
        let tls = tls::generate(at.ip).map_err(ProxyError::Tls)?;
        let mut config = upstream.clone();
        // Watches stay open for minutes without a byte.
        config.read_timeout = None;
        if let Some((user, groups)) = &at.act_as {
            config.auth_info.impersonate = Some(user.clone());
            config.auth_info.impersonate_groups = Some(groups.clone());
        }
        let client = kube::Client::try_from(config).map_err(ProxyError::Upstream)?;
        let listener = TcpListener::bind((at.ip, 0))
            .await
            .map_err(ProxyError::Listen)?;
        let addr = listener.local_addr().map_err(ProxyError::Listen)?;
        let log = ApiLog::default();
        let faults = FaultBoard::default();
        let fence = Fence::default();
        let shared = Arc::new(Shared {
            upstream: client,
            log: log.clone(),
            faults: faults.clone(),
            hook,
            latency,
            gate: fence.watch(),
        });
        let (shutdown, rx) = tokio::sync::watch::channel(false);
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.config);
        let task = tokio::spawn(accept_loop(listener, acceptor, shared, rx, fence.watch()));
        Ok(Self {
            addr,
            log,
            faults,
            fence,
            ca_pem: tls.ca_pem,
            shutdown,
            task,
        })
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// A kubeconfig that reaches the cluster through this proxy.
    pub fn kubeconfig_yaml(&self) -> String {
        self.kubeconfig_yaml_with(tls::PLACEHOLDER_TOKEN)
    }

    /// How a controller reaches it: its URL and CA (a kubeconfig for any token).
    pub fn access(&self) -> Access {
        Access {
            url: self.url(),
            ca_pem: self.ca_pem.clone(),
        }
    }

    /// [`Self::kubeconfig_yaml`] with `token` (see [`Fence::up`]).
    pub fn kubeconfig_yaml_with(&self, token: &str) -> String {
        tls::kubeconfig_yaml(&self.url(), &self.ca_pem, token)
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    shared: Arc<Shared>,
    shutdown: tokio::sync::watch::Receiver<bool>,
    fence: tokio::sync::watch::Receiver<fence::Gate>,
) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let (down, generation) = {
            let g = fence.borrow();
            (g.down, g.generation)
        };
        if down {
            continue;
        }
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let shared = shared.clone();
        let mut shutdown = shutdown.clone();
        let mut fence = fence.clone();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let svc = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(handle(req, &shared).await) }
            });
            let conn =
                hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), svc);
            tokio::select! {
                _ = conn => {}
                _ = shutdown.wait_for(|stop| *stop) => {}
                _ = fence.wait_for(|g| g.generation != generation) => {}
            }
        });
    }
}

fn full(body: impl Into<Bytes>) -> ProxyBody {
    Full::new(body.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A `Status` answer, as the apiserver gives one.
fn status_response(
    code: u16,
    reason: &str,
    message: &str,
    retry_after: Option<Duration>,
) -> Response<ProxyBody> {
    let body = serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code,
    });
    let mut r = Response::new(full(body.to_string()));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(d) = retry_after
        && let Ok(v) = HeaderValue::from_str(&d.as_secs().max(1).to_string())
    {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

/// Request headers that belong to the hop to the proxy (or that the upstream client sets).
fn forwardable(headers: &HeaderMap) -> HeaderMap {
    const DROP: [&str; 10] = [
        "host",
        "authorization",
        "connection",
        "keep-alive",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        // Bodies stay readable for the log.
        "accept-encoding",
    ];
    let mut out = headers.clone();
    for h in DROP {
        out.remove(h);
    }
    out.remove(header::CONTENT_LENGTH);
    out
}

fn json_of(bytes: &[u8]) -> Option<serde_json::Value> {
    if bytes.is_empty() {
        return None;
    }
    serde_json::from_slice(bytes).ok()
}

fn rv_of(v: &serde_json::Value) -> Option<String> {
    v["metadata"]["resourceVersion"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// A request the controller sent, read once.
struct Received {
    parts: http::request::Parts,
    body: Bytes,
    json: Option<serde_json::Value>,
    info: RequestInfo,
}

async fn handle(req: Request<Incoming>, shared: &Shared) -> Response<ProxyBody> {
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if !shared.gate.borrow().admits(auth) {
        // A stopped controller's Pod, not yet dead: as if it were.
        tracing::debug!(uri = %req.uri(), "refused a request of a stopped controller");
        return status_response(
            401,
            "Unauthorized",
            "lbc proxy: the controller was stopped",
            None,
        );
    }
    let (parts, body) = req.into_parts();
    let info = RequestInfo::parse(parts.method.as_str(), parts.uri.path(), parts.uri.query());
    let Ok(collected) = body.collect().await else {
        return status_response(
            400,
            "BadRequest",
            "lbc proxy: unreadable request body",
            None,
        );
    };
    let body = collected.to_bytes();
    let rx = Received {
        json: json_of(&body),
        parts,
        body,
        info,
    };
    let reason = rx
        .json
        .as_ref()
        .filter(|_| rx.info.resource.as_deref() == Some("events"))
        .and_then(|b| b["reason"].as_str().map(str::to_owned));
    let seq = shared
        .log
        .begin(rx.info.clone(), rx.json.as_ref().and_then(rv_of), reason);
    let pause = shared.latency.for_request(seq);
    if !pause.is_zero() {
        tokio::time::sleep(pause).await;
    }
    let post = match fault_for(shared, seq, &rx).await {
        Fired::Answer(r) => return r,
        Fired::Forward(post) => post,
    };
    forward(shared, seq, rx, post).await
}

/// What follows a request: the proxy's own answer, or forwarding it with what to do once
/// the apiserver answered.
enum Fired {
    Answer(Response<ProxyBody>),
    Forward(Option<Post>),
}

/// The fault that fires on this request, if any, and what it does. The object is read
/// first only when a fault asks for it.
async fn fault_for(shared: &Shared, seq: u64, rx: &Received) -> Fired {
    let info = &rx.info;
    let before = if shared.faults.wants_objects(info) && info.name.is_some() {
        read_current(shared, rx.parts.uri.path()).await
    } else {
        None
    };
    let content_type = rx
        .parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let after = match info.verb {
        Some(Verb::Create | Verb::Update) => rx.json.clone(),
        Some(Verb::Patch) if !content_type.contains("json-patch") => match (&before, &rx.json) {
            (Some(b), Some(p)) => Some(merge_patch(b, p)),
            _ => None,
        },
        _ => None,
    };
    let view = RequestView {
        info,
        body: rx.json.as_ref(),
        before: before.as_ref(),
        after: after.as_ref(),
    };
    let Some((label, action)) = shared.faults.decide(&view) else {
        return Fired::Forward(None);
    };
    let note = format!("{label}: {}", action.describe());
    tracing::info!(request = %info.describe(), fault = %note, "fault injected");
    shared.log.update(seq, |c| c.fault = Some(note));
    action.fire(shared, seq, info).await
}

/// Forward the request to the apiserver and relay its answer (a watch event by event).
async fn forward(
    shared: &Shared,
    seq: u64,
    rx: Received,
    post: Option<Post>,
) -> Response<ProxyBody> {
    let uri = match rx.parts.uri.query() {
        Some(q) => format!("{}?{q}", rx.parts.uri.path()),
        None => rx.parts.uri.path().to_owned(),
    };
    let mut up = Request::builder().method(rx.parts.method.clone()).uri(&uri);
    if let Some(h) = up.headers_mut() {
        *h = forwardable(&rx.parts.headers);
    }
    let Ok(up) = up.body(kube::client::Body::from(rx.body.to_vec())) else {
        return answered(
            shared,
            seq,
            status_response(400, "BadRequest", "lbc proxy: bad request line", None),
        );
    };
    let resp = match shared.upstream.send(up).await {
        Ok(r) => r,
        Err(e) => {
            let msg = format!("lbc proxy: the apiserver is unreachable: {e}");
            return answered(
                shared,
                seq,
                status_response(502, "InternalError", &msg, None),
            );
        }
    };
    let (mut rparts, rbody) = resp.into_parts();
    for h in ["connection", "keep-alive", "transfer-encoding"] {
        rparts.headers.remove(h);
    }
    rparts.headers.remove(header::CONTENT_LENGTH);
    if rx.info.verb == Some(Verb::Watch) && rparts.status.is_success() {
        return relay_watch(shared, seq, rx.info, rparts, rbody);
    }
    let status = rparts.status.as_u16();
    let bytes = match rbody.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            let msg = format!("lbc proxy: the apiserver's answer broke off: {e}");
            return answered(
                shared,
                seq,
                status_response(502, "InternalError", &msg, None),
            );
        }
    };
    let parsed = json_of(&bytes);
    shared.log.update(seq, |c| {
        c.status = status;
        c.rv_returned = parsed.as_ref().and_then(rv_of);
        if c.request.name.is_none() && c.request.verb == Some(Verb::Create) {
            c.created = parsed
                .as_ref()
                .and_then(|v| v["metadata"]["name"].as_str().map(str::to_owned));
        }
    });
    match post {
        Some(Post::Crash(restart_after)) => return fault::crash_now(shared, seq, restart_after),
        Some(Post::Hold(h)) => h.wait().await,
        None => {}
    }
    shared.log.update(seq, |c| c.end = Some(Timestamp::now()));
    Response::from_parts(rparts, full(bytes))
}

/// A watch's answer: logged as open, its events relayed one by one (watch faults act there).
fn relay_watch(
    shared: &Shared,
    seq: u64,
    info: RequestInfo,
    rparts: http::response::Parts,
    rbody: kube::client::Body,
) -> Response<ProxyBody> {
    let json = rparts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.contains("json"));
    let status = rparts.status.as_u16();
    shared.log.update(seq, |c| {
        c.status = status;
        c.end = Some(Timestamp::now());
        c.watch_events = Some(0);
    });
    let body = watch::relay(
        rbody,
        json,
        info,
        shared.faults.clone(),
        shared.log.clone(),
        seq,
    );
    Response::from_parts(rparts, body)
}

/// What to do once the apiserver answered.
enum Post {
    Crash(Option<Duration>),
    Hold(Hold),
}

/// Log the proxy's own answer to `seq` and return it.
fn answered(shared: &Shared, seq: u64, r: Response<ProxyBody>) -> Response<ProxyBody> {
    let status = r.status().as_u16();
    shared.log.update(seq, |c| {
        c.status = status;
        c.end = Some(Timestamp::now());
    });
    r
}

/// The object at `path` (a subresource path reads the whole object), from the server.
async fn read_current(shared: &Shared, path: &str) -> Option<serde_json::Value> {
    let req = Request::get(path).body(kube::client::Body::empty()).ok()?;
    let resp = shared.upstream.send(req).await.ok()?;
    if !resp.status().is_success() {
        return None;
    }
    let bytes = resp.into_body().collect().await.ok()?.to_bytes();
    json_of(&bytes)
}

#[cfg(test)]
mod tests;
