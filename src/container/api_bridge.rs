//! A bridge between testcontainers and an older Docker daemon.
//!
//! testcontainers' Docker client (bollard) pins the Engine API version it asks for (1.52 for
//! bollard 0.20) and does not negotiate; Debian's `docker.io` (20.10) answers at most 1.41
//! and refuses newer requests outright. The bridge listens on a socket of its own and
//! forwards every request to the daemon with the version in its path lowered to the
//! daemon's highest, streaming bodies and upgraded (hijacked) connections through. The
//! operations the providers use (create, start, inspect, logs, archive, remove) mean the
//! same at both versions.
//!
//! testcontainers reads `DOCKER_HOST` when it starts a container, so [`claim_env`] must run
//! before the async runtime starts (it sets the variable); [`ensure_running`] then serves
//! the socket from inside the runtime.

use std::path::PathBuf;
use std::sync::OnceLock;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::{UnixListener, UnixStream};

/// Set by [`claim_env`]: where the real daemon listens.
const UPSTREAM_ENV: &str = "LBC_DOCKER_UPSTREAM";

/// What the bridge serves: its socket and the daemon behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bridge {
    pub socket: PathBuf,
    pub upstream: PathBuf,
}

/// Why the bridge could not start.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error(
        "the Docker daemon speaks Engine API {daemon}, older than testcontainers asks for; \
         start the cluster through `lbc` (which bridges the versions), or call \
         `container::api_bridge::claim_env()` before the async runtime starts"
    )]
    NotClaimed { daemon: String },
    #[error("the Docker API bridge on {socket}: {source}")]
    Io {
        socket: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the Docker daemon at {upstream} does not answer /version: {detail}")]
    Upstream { upstream: PathBuf, detail: String },
}

/// Point `DOCKER_HOST` at a bridge socket of this process (the daemon it replaces is kept in
/// `LBC_DOCKER_UPSTREAM`). Only a unix-socket daemon is bridged; a TCP `DOCKER_HOST` is left
/// alone. Idempotent.
///
/// # Safety
/// Changes the process environment: call it while the process has one thread (at the
/// start of `main`, before the async runtime and before anything reads the environment
/// from another thread).
pub unsafe fn claim_env() {
    if std::env::var_os(UPSTREAM_ENV).is_some() {
        return;
    }
    let upstream = match std::env::var("DOCKER_HOST") {
        Ok(h) if h.starts_with("unix://") => PathBuf::from(&h["unix://".len()..]),
        Ok(h) if !h.is_empty() => return,
        _ => PathBuf::from("/var/run/docker.sock"),
    };
    let socket = std::env::temp_dir()
        .join(format!("lbc-docker-{}", std::process::id()))
        .join("docker.sock");
    // SAFETY: the caller guarantees no other thread runs yet.
    unsafe {
        std::env::set_var(UPSTREAM_ENV, &upstream);
        std::env::set_var("DOCKER_HOST", format!("unix://{}", socket.display()));
    }
}

/// The bridge [`claim_env`] arranged, if any.
pub fn claimed() -> Option<Bridge> {
    let upstream = PathBuf::from(std::env::var_os(UPSTREAM_ENV)?);
    let host = std::env::var("DOCKER_HOST").ok()?;
    let socket = PathBuf::from(host.strip_prefix("unix://")?);
    Some(Bridge { socket, upstream })
}

static STARTED: OnceLock<Result<(), String>> = OnceLock::new();

/// Serve the claimed bridge (once per process) when the daemon needs it. Without a claim,
/// checks that the daemon is new enough for testcontainers.
///
/// # Errors
/// The daemon is too old and no bridge was claimed, or the bridge cannot listen.
pub async fn ensure_running(daemon_api: &str) -> Result<(), BridgeError> {
    let Some(bridge) = claimed() else {
        return if api_at_least(daemon_api, CLIENT_API) {
            Ok(())
        } else {
            Err(BridgeError::NotClaimed {
                daemon: daemon_api.to_owned(),
            })
        };
    };
    if let Some(r) = STARTED.get() {
        return r.clone().map_err(|detail| BridgeError::Upstream {
            upstream: bridge.upstream.clone(),
            detail,
        });
    }
    if let Some(dir) = bridge.socket.parent() {
        let _ = std::fs::create_dir_all(dir);
        crate::programs::process::remove_dir_at_exit(dir);
    }
    let _ = std::fs::remove_file(&bridge.socket);
    let listener = UnixListener::bind(&bridge.socket).map_err(|source| BridgeError::Io {
        socket: bridge.socket.clone(),
        source,
    })?;
    let version = daemon_api.to_owned();
    let upstream = bridge.upstream.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (upstream, version) = (upstream.clone(), version.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    forward(req, upstream.clone(), version.clone())
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades()
                    .await;
            });
        }
    });
    let _ = STARTED.set(Ok(()));
    Ok(())
}

/// The Engine API version testcontainers' client asks for.
pub const CLIENT_API: &str = "1.52";

/// `a >= b` for `MAJOR.MINOR` versions.
pub fn api_at_least(a: &str, b: &str) -> bool {
    parse_api(a) >= parse_api(b)
}

fn parse_api(v: &str) -> (u32, u32) {
    let (major, minor) = v.split_once('.').unwrap_or((v, "0"));
    (major.parse().unwrap_or(0), minor.parse().unwrap_or(0))
}

/// `/v1.52/containers/json?x` → `/v1.41/containers/json?x` when the daemon's highest
/// version is lower than the one asked for; anything else unchanged.
pub fn lower_version(path_and_query: &str, daemon: &str) -> String {
    let Some(rest) = path_and_query.strip_prefix("/v") else {
        return path_and_query.to_owned();
    };
    let Some((asked, tail)) = rest.split_once('/') else {
        return path_and_query.to_owned();
    };
    if asked.split('.').count() != 2 || asked.chars().any(|c| !c.is_ascii_digit() && c != '.') {
        return path_and_query.to_owned();
    }
    if api_at_least(daemon, asked) {
        path_and_query.to_owned()
    } else {
        format!("/v{daemon}/{tail}")
    }
}

type BoxBody = http_body_util::combinators::BoxBody<bytes::Bytes, hyper::Error>;

async fn forward(
    mut req: Request<Incoming>,
    upstream: PathBuf,
    daemon: String,
) -> Result<Response<BoxBody>, std::io::Error> {
    let pq = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let lowered = lower_version(&pq, &daemon);
    *req.uri_mut() = lowered
        .parse()
        .map_err(|e| std::io::Error::other(format!("bad path {lowered}: {e}")))?;
    let wants_upgrade = req.headers().contains_key(hyper::header::UPGRADE);
    let downstream_upgrade = wants_upgrade.then(|| hyper::upgrade::on(&mut req));
    let stream = UnixStream::connect(&upstream).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    let mut resp = sender
        .send_request(req)
        .await
        .map_err(std::io::Error::other)?;
    if resp.status() == hyper::StatusCode::SWITCHING_PROTOCOLS
        && let Some(down) = downstream_upgrade
    {
        let up = hyper::upgrade::on(&mut resp);
        tokio::spawn(async move {
            if let (Ok(up), Ok(down)) = (up.await, down.await) {
                let (mut up, mut down) = (TokioIo::new(up), TokioIo::new(down));
                let _ = tokio::io::copy_bidirectional(&mut up, &mut down).await;
            }
        });
    }
    Ok(resp.map(BodyExt::boxed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("/v1.52/containers/json?all=1", "1.41", "/v1.41/containers/json?all=1")]
    #[case("/v1.41/info", "1.41", "/v1.41/info")]
    #[case("/v1.40/info", "1.41", "/v1.40/info")]
    #[case("/v1.52/info", "1.53", "/v1.52/info")]
    #[case("/_ping", "1.41", "/_ping")]
    #[case("/version", "1.41", "/version")]
    #[case("/volumes/v1.52/x", "1.41", "/volumes/v1.52/x")]
    fn only_a_newer_version_prefix_is_lowered(
        #[case] path: &str,
        #[case] daemon: &str,
        #[case] want: &str,
    ) {
        assert_eq!(lower_version(path, daemon), want);
    }

    #[rstest]
    #[case("1.41", "1.52", false)]
    #[case("1.52", "1.52", true)]
    #[case("1.100", "1.52", true)]
    #[case("2.0", "1.52", true)]
    fn versions_compare_numerically(#[case] a: &str, #[case] b: &str, #[case] want: bool) {
        assert_eq!(api_at_least(a, b), want);
    }
}
