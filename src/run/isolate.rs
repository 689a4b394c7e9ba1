//! The harness's side of an isolated controller (see `lbc-sandbox`): Unix sockets that
//! forward to the API server and the suite's kernel, and the private hosts file in which
//! PD's service names resolve to the loopback address where the kernel is forwarded.

use std::path::{Path, PathBuf};

use super::controller::Isolation;

/// Port PD serves on; the operator appends it to the service name.
pub const PD_PORT: u16 = 2379;

/// Why isolation could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum IsolateError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "an isolated target reaches the API server through loopback, but the cluster's is at {0}"
    )]
    NotLoopback(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> IsolateError {
    let what = what.into();
    move |source| IsolateError::Io { what, source }
}

/// Forwarders from Unix sockets to TCP addresses; stopped when dropped.
#[derive(Debug)]
pub struct HostBridges {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for HostBridges {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Listen on each socket and forward its connections to the address.
///
/// # Errors
/// A socket cannot be bound.
pub fn bridge(pairs: &[(PathBuf, String)]) -> Result<HostBridges, IsolateError> {
    let mut tasks = Vec::new();
    for (sock, addr) in pairs {
        let _ = std::fs::remove_file(sock);
        let l = tokio::net::UnixListener::bind(sock)
            .map_err(io(format!("binding {}", sock.display())))?;
        let addr = addr.clone();
        tasks.push(tokio::spawn(async move {
            while let Ok((mut inside, _)) = l.accept().await {
                let addr = addr.clone();
                tokio::spawn(async move {
                    if let Ok(mut out) = tokio::net::TcpStream::connect(&addr).await {
                        let _ = tokio::io::copy_bidirectional(&mut inside, &mut out).await;
                    }
                });
            }
        }));
    }
    Ok(HostBridges { tasks })
}

/// `host:port` of an `http(s)://host:port` URL.
pub fn host_port(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let hp = rest.split('/').next()?;
    (!hp.is_empty()).then(|| hp.to_owned())
}

/// What a suite's isolated controller needs: the sockets and hosts file under `dir`, the
/// bridges, and the kernel endpoint it is told (`http://127.0.0.1:2379`).
///
/// `api` is the API server's `host:port`, `kernel` the suite's kernel `host:port`,
/// `pd_names` the service names to resolve (`basic-pd.ns`), `metrics` where it serves
/// metrics inside.
///
/// # Errors
/// The API server is not on loopback, or a file or socket cannot be made.
pub fn set_up(
    dir: &Path,
    api: &str,
    kernel: &str,
    pd_names: &[String],
    metrics: Option<&str>,
) -> Result<(Isolation, HostBridges, Option<PathBuf>), IsolateError> {
    if !(api.starts_with("127.0.0.1:") || api.starts_with("localhost:")) {
        return Err(IsolateError::NotLoopback(api.to_owned()));
    }
    std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    let hosts = dir.join("hosts");
    let mut text = String::from("127.0.0.1 localhost\n::1 localhost\n");
    for name in pd_names {
        text.push_str(&format!(
            "127.0.0.1 {name} {name}.svc {name}.svc.cluster.local\n"
        ));
    }
    std::fs::write(&hosts, text).map_err(io(format!("writing {}", hosts.display())))?;
    let api_sock = dir.join("api.sock");
    let kernel_sock = dir.join("kernel.sock");
    let bridges = bridge(&[
        (api_sock.clone(), api.replace("localhost:", "127.0.0.1:")),
        (kernel_sock.clone(), kernel.to_owned()),
    ])?;
    let metrics_sock = metrics.map(|_| dir.join("metrics.sock"));
    let isolation = Isolation {
        hosts,
        listen: vec![
            (api.replace("localhost:", "127.0.0.1:"), api_sock),
            (format!("127.0.0.1:{PD_PORT}"), kernel_sock),
        ],
        expose: metrics_sock
            .iter()
            .zip(metrics)
            .map(|(s, m)| (s.clone(), m.to_owned()))
            .collect(),
    };
    Ok((isolation, bridges, metrics_sock))
}

/// `GET /metrics` over a Unix socket (HTTP/1.0: the body runs to the end of the stream).
///
/// # Errors
/// The socket does not answer, or the answer is not a 200.
pub async fn scrape_unix(sock: &Path) -> Result<String, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::UnixStream::connect(sock)
        .await
        .map_err(|e| format!("connecting to {}: {e}", sock.display()))?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await
        .map_err(|e| format!("writing to {}: {e}", sock.display()))?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)
        .await
        .map_err(|e| format!("reading {}: {e}", sock.display()))?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| "no HTTP response from the metrics endpoint".to_owned())?;
    let ok = head.starts_with("HTTP/1.") && head.split_whitespace().nth(1) == Some("200");
    if !ok {
        return Err(format!(
            "the metrics endpoint answered {:?}",
            head.lines().next().unwrap_or_default()
        ));
    }
    Ok(body.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_of_urls() {
        assert_eq!(
            host_port("https://127.0.0.1:6443/").as_deref(),
            Some("127.0.0.1:6443")
        );
        assert_eq!(
            host_port("http://127.0.0.1:2379").as_deref(),
            Some("127.0.0.1:2379")
        );
    }

    #[tokio::test]
    async fn bridges_forward_and_a_remote_api_server_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let e = set_up(dir.path(), "10.0.0.1:6443", "127.0.0.1:1", &[], None).unwrap_err();
        assert!(e.to_string().contains("loopback"), "{e}");
        // A TCP echo of one line behind a bridge.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut c, _) = l.accept().await.unwrap();
            use tokio::io::AsyncWriteExt;
            c.write_all(b"HTTP/1.0 200 OK\r\n\r\nx_total 1\n")
                .await
                .unwrap();
        });
        let sock = dir.path().join("m.sock");
        let _b = bridge(&[(sock.clone(), addr)]).unwrap();
        assert_eq!(scrape_unix(&sock).await.unwrap(), "x_total 1\n");
    }
}
