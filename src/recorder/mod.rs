//! The flight recorder: every watch event for a suite's Backups, Jobs, Pods and Events, in
//! arrival order ([`Trace`]), and the cluster as of any point of it ([`State`], applied
//! incrementally by a [`Cursor`]). Assertions run over this trace, not over one polled
//! snapshot, so a transient state is seen and absence is checked over a window.

mod state;
mod trace;

pub use state::{Cursor, State};
pub use trace::{Entry, Kind, Trace};

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::watcher;
use kube::{Api, Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use lbc_api::Backup;

/// Watches one namespace until dropped.
pub struct Recorder {
    pub trace: Trace,
    changed: watch::Receiver<u64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn spawn_watch<K>(
    client: &Client,
    ns: &str,
    kind: Kind,
    trace: Trace,
    tx: Arc<watch::Sender<u64>>,
    ready: tokio::sync::mpsc::Sender<()>,
) -> tokio::task::JoinHandle<()>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + DeserializeOwned
        + Serialize
        + Send
        + Sync
        + 'static,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    tokio::spawn(async move {
        let mut stream = Box::pin(watcher(api, watcher::Config::default()));
        let mut ready = Some(ready);
        while let Some(ev) = stream.next().await {
            let (obj, deleted) = match ev {
                Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => (o, false),
                Ok(watcher::Event::Delete(o)) => (o, true),
                Ok(watcher::Event::InitDone) => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(()).await;
                    }
                    continue;
                }
                Ok(watcher::Event::Init) => continue,
                Err(e) => {
                    tracing::debug!(error = %e, "recorder watch error; the watcher retries");
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    continue;
                }
            };
            let name = obj.meta().name.clone().unwrap_or_default();
            trace.push(Entry {
                at: Timestamp::now(),
                received: std::time::Instant::now(),
                kind,
                name,
                deleted,
                object: serde_json::to_value(&obj).unwrap_or_default(),
            });
            tx.send_modify(|v| *v += 1);
        }
    })
}

impl Recorder {
    /// Start recording `ns`; returns once every watch has listed what exists.
    pub async fn start(client: &Client, ns: &str) -> Self {
        let trace = Trace::default();
        let (tx, changed) = watch::channel(0u64);
        let tx = Arc::new(tx);
        let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(4);
        let tasks = vec![
            spawn_watch::<Backup>(
                client,
                ns,
                Kind::Backup,
                trace.clone(),
                tx.clone(),
                ready_tx.clone(),
            ),
            spawn_watch::<Job>(
                client,
                ns,
                Kind::Job,
                trace.clone(),
                tx.clone(),
                ready_tx.clone(),
            ),
            spawn_watch::<Pod>(
                client,
                ns,
                Kind::Pod,
                trace.clone(),
                tx.clone(),
                ready_tx.clone(),
            ),
            spawn_watch::<Event>(client, ns, Kind::Event, trace.clone(), tx.clone(), ready_tx),
        ];
        for _ in 0..4 {
            if tokio::time::timeout(std::time::Duration::from_secs(30), ready_rx.recv())
                .await
                .is_err()
            {
                tracing::warn!("recorder: a watch did not finish its initial list in 30 s");
                break;
            }
        }
        Self {
            trace,
            changed,
            tasks,
        }
    }

    /// Wait until the trace changes or `deadline` passes; returns false at the deadline.
    pub async fn changed_before(&mut self, deadline: tokio::time::Instant) -> bool {
        matches!(
            tokio::time::timeout_at(deadline, self.changed.changed()).await,
            Ok(Ok(()))
        )
    }
}
