//! LBR-15: Prometheus metrics, served with `/healthz` on the metrics address.

use std::net::SocketAddr;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};

/// The controller's metrics.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// Failed Jobs detected, by namespace, name, subcommand.
    pub job_failures: IntCounterVec,
    /// Retries started (a new Job, or a kernel recovery).
    pub retries: IntCounterVec,
    /// Retries that found the kernel already in the wanted state.
    pub kernel_recoveries: IntCounterVec,
    /// Budgets spent (max retries or timeout) and disabled-retry failures.
    pub retry_exhausted: IntCounterVec,
    /// `realRetryAt − expectedRetryAt`, seconds.
    pub retry_lateness: HistogramVec,
    /// API writes by kind (`status`, `job-create`, `job-delete`), for the writes-per-cycle figure.
    pub api_writes: IntCounterVec,
}

const LABELS: &[&str] = &["namespace", "name", "subcommand"];

impl Metrics {
    /// Register all metrics in a fresh registry.
    ///
    /// # Errors
    /// A metric definition is invalid (a programming error).
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let counter =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, prometheus::Error> {
                let c = IntCounterVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(c.clone()))?;
                Ok(c)
            };
        let job_failures = counter(
            "log_backup_job_failures_total",
            "Failed backup Jobs detected",
            LABELS,
        )?;
        let retries = counter("log_backup_retries_total", "Retries started", LABELS)?;
        let kernel_recoveries = counter(
            "log_backup_kernel_recoveries_total",
            "Retries resolved by the kernel being in the wanted state",
            LABELS,
        )?;
        let retry_exhausted = counter(
            "log_backup_retry_exhausted_total",
            "Backups failed permanently",
            LABELS,
        )?;
        let api_writes = counter(
            "backup_controller_api_writes_total",
            "API writes by kind",
            &["kind"],
        )?;
        let retry_lateness = HistogramVec::new(
            HistogramOpts::new(
                "log_backup_retry_lateness_seconds",
                "realRetryAt - expectedRetryAt",
            )
            .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0]),
            LABELS,
        )?;
        registry.register(Box::new(retry_lateness.clone()))?;
        Ok(Self {
            registry,
            job_failures,
            retries,
            kernel_recoveries,
            retry_exhausted,
            retry_lateness,
            api_writes,
        })
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// Serve `/metrics` and `/healthz` until the task is dropped.
///
/// # Errors
/// The address cannot be bound.
pub async fn serve(
    addr: SocketAddr,
    metrics: Metrics,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    use axum::routing::get;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let app = axum::Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/metrics",
            get(move || {
                let m = metrics.clone();
                async move { m.render() }
            }),
        );
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics server stopped");
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_labelled_counters() {
        let m = Metrics::new().unwrap();
        m.retries
            .with_label_values(&["ns", "lb1", "log-start"])
            .inc();
        let text = m.render();
        assert!(
            text.contains(
                r#"log_backup_retries_total{name="lb1",namespace="ns",subcommand="log-start"} 1"#
            ),
            "{text}"
        );
    }
}
