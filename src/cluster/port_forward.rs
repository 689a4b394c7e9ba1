//! A local port forwarded to a Pod's port through the API server (kubelet's streaming), as
//! `kubectl port-forward` does: the harness and a controller running on this machine reach
//! something inside any cluster the same way.

use std::net::SocketAddr;

use k8s_openapi::api::core::v1::Pod;
use kube::{Api, Client};
use tokio::net::TcpListener;

/// Listening on `127.0.0.1:<local port>`; each connection gets its own stream to the Pod.
/// Dropping it stops accepting (streams already open end with their connection).
#[derive(Debug)]
pub struct PortForward {
    pub local: SocketAddr,
    accept: tokio::task::JoinHandle<()>,
}

impl PortForward {
    /// Forward a free local port to `pod`'s `port` in `namespace`.
    ///
    /// # Errors
    /// No local port.
    pub async fn start(
        client: Client,
        namespace: &str,
        pod: &str,
        port: u16,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let local = listener.local_addr()?;
        let api: Api<Pod> = Api::namespaced(client, namespace);
        let pod = pod.to_owned();
        let accept = tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let (api, pod) = (api.clone(), pod.clone());
                tokio::spawn(async move {
                    let mut forwarder = match api.portforward(&pod, &[port]).await {
                        Ok(f) => f,
                        Err(e) => {
                            tracing::debug!(%pod, port, error = %e, "port-forward refused");
                            return;
                        }
                    };
                    let Some(mut upstream) = forwarder.take_stream(port) else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut conn, &mut upstream).await;
                    drop(upstream);
                    let _ = forwarder.join().await;
                });
            }
        });
        Ok(Self { local, accept })
    }
}

impl Drop for PortForward {
    fn drop(&mut self) {
        self.accept.abort();
    }
}
