//! `lbc-controller`: the reference log backup retry controller.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use lbc_reference_controller::controller::metrics::{self, Metrics};
use lbc_reference_controller::controller::{
    ControllerConfig, Ctx, KernelResolver, RetryStrategy, SystemClock, run,
};

#[derive(Parser, Debug)]
#[command(
    name = "lbc-controller",
    version,
    about = "Reference Backup controller (log backup retry, seed §11)"
)]
struct Flags {
    /// Kubeconfig file (default: $KUBECONFIG, then in-cluster).
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Watch only this namespace (default: all).
    #[arg(long)]
    namespace: Option<String>,
    /// Kernel (PD etcd) endpoint used for every cluster without a --kernel-map entry.
    /// Without either, PD's service `<cluster>-pd.<ns>:2379` is used, as the operator does.
    #[arg(long, env = "LBC_KERNEL_ENDPOINTS")]
    kernel_endpoints: Option<String>,
    /// `[NAMESPACE/]CLUSTER=ENDPOINT`, repeatable.
    #[arg(long = "kernel-map")]
    kernel_map: Vec<String>,
    /// Image of the backup Jobs' main container.
    #[arg(long, default_value = "pingcap/tidb-backup-manager:latest")]
    job_image: String,
    /// Address of /metrics and /healthz.
    #[arg(long, default_value = "127.0.0.1:9464")]
    metrics_addr: SocketAddr,
    /// Where retry state lives. `workqueue` is the seed's rejected scheme A (in-memory,
    /// reset by a restart); it exists so suites can prove they catch it.
    #[arg(long, value_enum, default_value_t = RetryStrategy::Persisted)]
    retry_strategy: RetryStrategy,
    /// Kernel sync period (LBR-10), Go duration.
    #[arg(long, default_value = "10s")]
    kernel_sync_period: String,
    /// Take configuration the way TiDB Operator's controller-manager does: the kubeconfig
    /// from $KUBECONFIG only, the namespace from $NAMESPACE (required), the kernel only by
    /// PD's service name, a Job only once the Backup's TidbCluster exists, metrics on the
    /// fixed 127.0.0.1:6060. The flags it replaces are refused.
    #[arg(long)]
    operator_compat: bool,
    /// Log filter (tracing EnvFilter syntax).
    #[arg(
        long,
        env = "LBC_LOG",
        default_value = "info,kube_client::client::builder=off"
    )]
    log: String,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // One line per error, never a backtrace (`RUST_BACKTRACE=1` would make anyhow print one).
    match controller_main(Flags::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn controller_main(flags: Flags) -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&flags.log).context("bad --log")?)
        .with_writer(std::io::stderr)
        .init();
    let mut flags = flags;
    if flags.operator_compat {
        compat(&mut flags)?;
    }
    let kernel = KernelResolver::parse(flags.kernel_endpoints.clone(), &flags.kernel_map)
        .map_err(anyhow::Error::msg)?;
    let sync: Duration = lbc_api::duration::parse_go_duration(&flags.kernel_sync_period)
        .with_context(|| format!("--kernel-sync-period {:?}", flags.kernel_sync_period))?;
    let config = match &flags.kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading --kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await?
        }
        None => kube::Config::infer()
            .await
            .context("no kubeconfig and not in a cluster")?,
    };
    let client = kube::Client::try_from(config)?;
    let metrics = Metrics::new()?;
    let _server = metrics::serve(flags.metrics_addr, metrics.clone())
        .await
        .with_context(|| format!("binding --metrics-addr {}", flags.metrics_addr))?;
    let ctx = Arc::new(Ctx::new(
        client,
        ControllerConfig {
            namespace: flags.namespace,
            job_image: flags.job_image,
            kernel,
            strategy: flags.retry_strategy,
            kernel_sync_period: sync,
            reporter: "lbc-controller".into(),
            require_tidb_cluster: flags.operator_compat,
        },
        metrics,
        Arc::new(SystemClock),
    ));
    tracing::info!(strategy = ?flags.retry_strategy, "lbc-controller started");
    run(ctx).await;
    Ok(())
}

/// `--operator-compat`: the operator's environment instead of the flags it does not have.
fn compat(flags: &mut Flags) -> Result<()> {
    let given = [
        ("--namespace", flags.namespace.is_some()),
        ("--kernel-endpoints", flags.kernel_endpoints.is_some()),
        ("--kernel-map", !flags.kernel_map.is_empty()),
    ];
    if let Some((flag, _)) = given.iter().find(|(_, set)| *set) {
        anyhow::bail!(
            "--operator-compat takes no {flag} (and no $LBC_KERNEL_ENDPOINTS): the operator \
             has none; it reads $NAMESPACE and finds PD by its service name"
        );
    }
    let namespace = std::env::var("NAMESPACE")
        .ok()
        .filter(|n| !n.is_empty())
        .context("--operator-compat: $NAMESPACE is required, as for the operator")?;
    flags.namespace = Some(namespace);
    flags.metrics_addr = SocketAddr::from(([127, 0, 0, 1], 6060));
    Ok(())
}
