//! The retry benchmark: N log backups whose first attempt fails, on the local provider with
//! the reference controller and fake-br. Lateness is measured from outside: the wall time at
//! which a watch first shows `realRetryAt`, minus the persisted `expectedRetryAt`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::cluster::RunningCluster;
use crate::cluster::process::rss_kib;
use crate::run::controller::{ControllerCommand, ControllerProcess, ReferenceFlags};
use crate::smoke::ensure_namespace;
use lbc_api::plan::plan_configmap;
use lbc_api::{Backup, BackupConditionType};

/// Per-backup observations shared with the watch task.
type Shared<T> = std::sync::Arc<std::sync::Mutex<HashMap<String, T>>>;

/// Benchmark settings.
#[derive(Debug, Clone)]
pub struct RetryBench {
    pub backups: usize,
    /// `minRetryDuration` of every Backup.
    pub min_retry: String,
    pub controller_binary: PathBuf,
    pub job_image: String,
    pub timeout: Duration,
}

/// Errors of the benchmark.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{0}")]
    Setup(String),
    #[error("{what}: {source}")]
    Kube {
        what: String,
        #[source]
        source: kube::Error,
    },
}

fn kube_err(what: &str) -> impl FnOnce(kube::Error) -> BenchError + '_ {
    move |source| BenchError::Kube {
        what: what.to_owned(),
        source,
    }
}

/// Run the benchmark on `cluster` (which must map `job_image` to fake-br).
///
/// # Errors
/// Setup failures.
pub async fn measure(
    cluster: &RunningCluster,
    bench: &RetryBench,
) -> Result<RetryReport, BenchError> {
    let client = cluster.client().map_err(kube_err("client"))?;
    let ns = "bench-retry";
    ensure_namespace(&client, ns)
        .await
        .map_err(|e| BenchError::Setup(e.to_string()))?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| BenchError::Setup(e.to_string()))?;
    let run_dir = cluster.run_dir.clone().unwrap_or_else(std::env::temp_dir);
    let mut controller = ControllerProcess::start(ControllerCommand::reference(
        &bench.controller_binary,
        &ReferenceFlags {
            kubeconfig: cluster.kubeconfig.clone(),
            namespace: ns.into(),
            kernel: cluster
                .kernel_endpoints
                .first()
                .cloned()
                .unwrap_or_default(),
            job_image: bench.job_image.clone(),
            metrics_addr: None,
            extra: vec![
                format!("--metrics-addr=127.0.0.1:{port}"),
                "--log=warn".into(),
            ],
        },
        run_dir.join("bench-controller.log"),
        &cluster.run_id,
    ))
    .map_err(|e| BenchError::Setup(e.to_string()))?;

    let backups: Api<Backup> = Api::namespaced(client.clone(), ns);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    // Watch before creating, so no realRetryAt appearance is missed.
    let seen: Shared<(Timestamp, Option<Timestamp>)> = Default::default();
    let done: Shared<bool> = Default::default();
    let watch = {
        let (seen, done, backups) = (seen.clone(), done.clone(), backups.clone());
        tokio::spawn(async move {
            let mut stream =
                Box::pin(watcher(backups, watcher::Config::default()).applied_objects());
            while let Some(Ok(b)) = stream.next().await {
                let now = Timestamp::now();
                let status = b.status.clone().unwrap_or_default();
                if let Some(r) = status.backoff_retry_status.first()
                    && r.real_retry_at.is_some()
                    && let Ok(mut s) = seen.lock()
                {
                    s.entry(b.name_any())
                        .or_insert((now, r.expected_retry_at.as_ref().map(|t| t.0)));
                }
                let complete = status
                    .log_sub_command_statuses
                    .get("log-start")
                    .is_some_and(|s| s.phase == Some(BackupConditionType::Complete));
                if complete && let Ok(mut d) = done.lock() {
                    d.insert(b.name_any(), true);
                }
            }
        })
    };
    let started = Instant::now();
    for i in 0..bench.backups {
        let name = format!("bench-{i:04}");
        let cm: ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": plan_configmap(&name)},
            "data": {"log-start": "- action: fail\n"},
        }))
        .map_err(|e| BenchError::Setup(e.to_string()))?;
        cms.create(&PostParams::default(), &cm)
            .await
            .map_err(kube_err("creating a plan"))?;
        let b: Backup = serde_json::from_value(json!({
            "apiVersion": "pingcap.com/v1alpha1", "kind": "Backup",
            "metadata": {"name": name},
            "spec": {"backupMode": "log", "logSubcommand": "log-start", "br": {"cluster": "basic"},
                     "backoffRetryPolicy": {"minRetryDuration": bench.min_retry, "maxRetryTimes": 2}},
        }))
        .map_err(|e| BenchError::Setup(e.to_string()))?;
        backups
            .create(&PostParams::default(), &b)
            .await
            .map_err(kube_err("creating a Backup"))?;
    }
    let mut peak = 0;
    loop {
        if let Some((_, hwm)) = controller.pid().and_then(rss_kib) {
            peak = peak.max(hwm);
        }
        let completed = done.lock().map(|d| d.len()).unwrap_or(0);
        if completed >= bench.backups || started.elapsed() > bench.timeout {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let wall = started.elapsed();
    let metrics = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .map_err(|e| BenchError::Setup(e.to_string()))?
        .text()
        .await
        .map_err(|e| BenchError::Setup(e.to_string()))?;
    watch.abort();
    controller.stop(Duration::from_secs(2));
    let writes = sum_metric(&metrics, "backup_controller_api_writes_total");
    let completed = done.lock().map(|d| d.len()).unwrap_or(0);
    let mut lateness: Vec<f64> = seen
        .lock()
        .map(|s| {
            s.values()
                .filter_map(|(at, exp)| Some(at.duration_since((*exp)?).as_secs_f64()))
                .collect()
        })
        .unwrap_or_default();
    lateness.sort_by(f64::total_cmp);
    let n = bench.backups.max(1) as f64;
    // The first attempt costs a Job create and a Scheduled write per backup; the rest is
    // the retry cycle.
    Ok(RetryReport {
        backups: bench.backups,
        completed,
        lateness,
        writes_per_cycle: (writes - 2.0 * n) / n,
        controller_peak_rss_kib: peak,
        wall,
    })
}

/// Figures of the retry benchmark.
#[derive(Debug, Clone)]
pub struct RetryReport {
    pub backups: usize,
    pub completed: usize,
    /// Watch-observed `realRetryAt` appearance − `expectedRetryAt`, seconds, sorted.
    pub lateness: Vec<f64>,
    /// Controller API writes (status, job create/delete) per retry cycle.
    pub writes_per_cycle: f64,
    pub controller_peak_rss_kib: u64,
    pub wall: Duration,
}

impl RetryReport {
    /// The `q` quantile (0..=1) of the lateness.
    pub fn lateness_quantile(&self, q: f64) -> Option<f64> {
        if self.lateness.is_empty() {
            return None;
        }
        let idx = ((self.lateness.len() - 1) as f64 * q).round() as usize;
        self.lateness.get(idx).copied()
    }
}

/// Sum of a Prometheus counter family in a text exposition.
pub fn sum_metric(text: &str, family: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(family) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_a_counter_family() {
        let text = "# HELP x\nbackup_controller_api_writes_total{kind=\"status\"} 3\nbackup_controller_api_writes_total{kind=\"job-create\"} 2\nother 9\n";
        assert_eq!(sum_metric(text, "backup_controller_api_writes_total"), 5.0);
    }

    #[test]
    fn quantiles() {
        let r = RetryReport {
            backups: 4,
            completed: 4,
            lateness: vec![0.1, 0.2, 0.3, 0.4],
            writes_per_cycle: 0.0,
            controller_peak_rss_kib: 0,
            wall: Duration::ZERO,
        };
        assert_eq!(r.lateness_quantile(0.0), Some(0.1));
        assert_eq!(r.lateness_quantile(1.0), Some(0.4));
        assert_eq!(r.lateness_quantile(0.5), Some(0.3));
    }
}
