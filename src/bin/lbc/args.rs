//! The arguments several commands share: the local cluster's, `run`'s (also `explore`'s),
//! and their value types.

use std::path::PathBuf;

use anyhow::Result;
pub(crate) use logbackup_conformance::cluster::local::NodeKind;
use logbackup_conformance::judge::metrics::MetricNames;

#[derive(clap::Args, Debug, Clone, Default)]
pub(crate) struct LocalArgs {
    /// Map an image to a local executable (IMAGE=/path/to/program); repeatable.
    #[arg(long = "image-map", value_name = "IMAGE=PATH")]
    pub(crate) image_map: Vec<String>,
    /// kube-apiserver port (0: any free port).
    #[arg(long, default_value_t = 0)]
    pub(crate) apiserver_port: u16,
    /// API etcd client port (0: any free port).
    #[arg(long, default_value_t = 0)]
    pub(crate) etcd_port: u16,
    /// Kernel (PD) etcd client port (0: any free port).
    #[arg(long, default_value_t = 0)]
    pub(crate) kernel_port: u16,
    /// Keep the run directory (logs, kubeconfig) after exit, and (`run`) every suite's
    /// bundle, passed or failed.
    #[arg(long)]
    pub(crate) keep: bool,
    /// What runs the local cluster's Pods: `agent` (the harness's node agent, fast) or
    /// `kubelet` (a real node: kubelet, containerd, CNI, kube-proxy; root, and the node's
    /// programs from `lbc build-k8s --node`).
    #[arg(long, value_enum, default_value_t = NodeKind::Agent)]
    pub(crate) node: NodeKind,
}

#[derive(clap::Args, Debug)]
pub(crate) struct RunArgs {
    /// Suite files or directories (default: suites/).
    pub(crate) paths: Vec<PathBuf>,
    /// Run only suites naming this clause (e.g. LBR-3), label or name; repeatable (any matches).
    #[arg(long)]
    pub(crate) selector: Vec<String>,
    /// Stop starting suites after the first failure.
    #[arg(long)]
    pub(crate) fail_fast: bool,
    /// Run a failed suite again up to N times; one that then passes is reported as flaky
    /// (neither pass nor fail; the run's exit code counts only failures).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub(crate) rerun_failed: u32,
    /// Suites run at once (default: 8 per core, bounded by the memory available at 256 MiB
    /// per suite; they mostly wait on timers). The longest suites start first.
    #[arg(long)]
    pub(crate) concurrency: Option<usize>,
    /// The controller under test: a target file or name (targets/NAME.yaml, or a built-in:
    /// reference, reference-operator); repeatable for a clause × target matrix. Default:
    /// reference. `NAME=TARGET` names an instance (two builds of one target, each with
    /// `--set NAME:KEY=V`); exactly two named instances make a release gate: the second is
    /// compared with the first check by check, a suite that flips to failing runs again
    /// twice, and the exit code is non-zero only for a confirmed regression.
    #[arg(long = "target", value_name = "TARGET")]
    pub(crate) targets: Vec<String>,
    /// A target setting, KEY=VALUE (e.g. bin=/path/to/tidb-controller-manager); given to
    /// every target that has the key, or TARGET:KEY=VALUE for one.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub(crate) sets: Vec<String>,
    /// Another controller without a target file: a command template with {kubeconfig},
    /// {namespace}, {kernel}, {job_image}, {metrics_addr}. Map its job image with --image-map.
    #[arg(long, conflicts_with = "targets")]
    pub(crate) controller_cmd: Option<String>,
    /// The controller's metric names per LBR-15 role, for `metrics` assertions:
    /// `job-failures=NAME,retries=NAME,kernel-recoveries=NAME` (default: the target's).
    #[arg(long, value_parser = parse_metric_names)]
    pub(crate) metric_names: Option<MetricNames>,
    /// Extra arguments for the controller, e.g. --controller-flag=--retry-strategy=workqueue.
    #[arg(long = "controller-flag", allow_hyphen_values = true)]
    pub(crate) controller_flags: Vec<String>,
    /// Compare each suite's behaviour fingerprint (messages, all events) with
    /// tests/baselines/NAME/, recording it where there is none: what changed between two
    /// builds of the same controller. Not a conformance verdict.
    #[arg(long, value_name = "NAME", value_parser = parse_baseline_name)]
    pub(crate) baseline: Option<String>,
    /// Let the controller talk to the apiserver directly, without the harness's API proxy
    /// (no API traffic in the bundles; `fault` steps then fail).
    #[arg(long)]
    pub(crate) direct_api: bool,
    /// Stress mode: the API proxy adds latency to every request of the controller (0–2×
    /// this many ms), the node agent delays each Pod start as much, and 9 suites per core
    /// run at once (8 without it): ordering races show up.
    #[arg(long, value_name = "MS", num_args = 0..=1, default_missing_value = "20")]
    pub(crate) stress: Option<u64>,
    /// `shared`: suites share the cluster's kernel (PD's etcd), their Backups named
    /// `<hash of the suite>-<name>`. `per-suite`: each suite starts an etcd of its own and
    /// keeps its declared names (local and container providers; ≈ 0.11 s of CPU a suite).
    /// `in-cluster`: each suite's kernel is an etcd Pod behind PD's Service (`basic-pd`) in
    /// its namespace, reached from here by a port-forward: any cluster with a real kubelet
    /// whose nodes hold `logbackup-conformance/etcd:VERSION` (`lbc image save etcd`); no
    /// `--kernel-endpoints` needed.
    #[arg(long, value_enum, default_value_t = KernelKind::Shared)]
    pub(crate) kernel: KernelKind,
    /// With --baseline: overwrite the baseline with this run's fingerprints.
    #[arg(long, requires = "baseline")]
    pub(crate) baseline_update: bool,
    /// Where the cluster runs: `local` (processes on this machine), `container` (the same
    /// control plane inside one container of the project's cluster image, built on
    /// demand), `k3s` (rancher/k3s in a privileged container, where it can be pulled),
    /// `kubeconfig` (an existing cluster: --kubeconfig and --kernel-endpoints).
    #[arg(long, value_enum, default_value_t = ProviderKind::Local)]
    pub(crate) provider: ProviderKind,
    /// `--provider kubeconfig`: the existing cluster's kubeconfig. Its nodes must run the
    /// job image (`lbc image save` writes fake-br's).
    #[arg(long, value_name = "PATH", required_if_eq("provider", "kubeconfig"))]
    pub(crate) kubeconfig: Option<PathBuf>,
    /// `--provider kubeconfig`: the kubeconfig's context (default: its current one).
    #[arg(long, value_name = "NAME", requires = "kubeconfig")]
    pub(crate) context: Option<String>,
    /// `--provider kubeconfig`: the kernel (PD's etcd client URL or HOST:PORT), reachable
    /// from this machine and from the cluster's Pods; comma-separated for several. Suites
    /// share it, so each Backup is named `<hash of the suite>-<name>`. Not needed with
    /// `--kernel in-cluster`.
    #[arg(long, value_name = "ENDPOINTS", value_delimiter = ',')]
    pub(crate) kernel_endpoints: Vec<String>,
    /// `--provider kubeconfig`: the address of this machine that the cluster's Pods reach (a
    /// controller installed as a Deployment reaches the harness's API proxy there).
    #[arg(long, value_name = "IPV4")]
    pub(crate) pod_host: Option<std::net::Ipv4Addr>,
    /// How the controller under test runs: `process` (on this machine) or `deployment`
    /// (from its image, in each suite's namespace, under a ServiceAccount with the target's
    /// `deployment.rules`; needs a cluster whose Pods reach this machine). Default: the
    /// target's `install`.
    #[arg(long, value_enum)]
    pub(crate) install: Option<logbackup_conformance::target::Install>,
    /// The image of the Jobs the controller runs (`{job_image}`). Default: on an existing
    /// cluster (`--provider kubeconfig`) the project's fake-br image
    /// (`logbackup-conformance/fake-br:VERSION`, which `lbc image save` writes); elsewhere
    /// `pingcap/tidb-backup-manager:latest`, which the harness's node runs as fake-br.
    #[arg(long, value_name = "IMAGE")]
    pub(crate) job_image: Option<String>,
    /// `spec.toolImage` of the Backups the suites create (the BR image TiDB Operator's Jobs
    /// copy `br` from). Default: with `--provider kubeconfig` the project's BR stand-in
    /// (`logbackup-conformance/br:VERSION`); elsewhere unset.
    #[arg(long, value_name = "IMAGE")]
    pub(crate) tool_image: Option<String>,
    /// How the local provider's node agent runs Pods: `process` (local programs, the
    /// image map) or `docker` (containers from the project's images, built on demand;
    /// other images fall back to processes).
    #[arg(long, value_enum, default_value_t = RuntimeKind::Process)]
    pub(crate) runtime: RuntimeKind,
    /// Where report.json, junit.xml, index.html and debug bundles go.
    #[arg(long, default_value = "target/lbc-report")]
    pub(crate) report_dir: PathBuf,
    /// Which reports to write (comma-separated): `json` (report.json), `junit`
    /// (junit.xml), `html` (index.html: the clause matrix and each suite's timeline). The
    /// progress lines and the summary always go to the terminal.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "json,junit,html"
    )]
    pub(crate) report: Vec<ReportKind>,
    /// Global watchdog, seconds.
    #[arg(long, default_value_t = 1800)]
    pub(crate) timeout: u64,
    #[command(flatten)]
    pub(crate) local: LocalArgs,
}

/// `--provider`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum ProviderKind {
    #[default]
    Local,
    Container,
    K3s,
    Kubeconfig,
}

/// `--kernel`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum KernelKind {
    #[default]
    Shared,
    PerSuite,
    InCluster,
}

/// `--report`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReportKind {
    Json,
    Junit,
    Html,
}

/// `--runtime`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum RuntimeKind {
    #[default]
    Process,
    Docker,
}

pub(crate) fn parse_metric_names(s: &str) -> Result<MetricNames, String> {
    MetricNames::parse(s)
}

pub(crate) fn parse_baseline_name(s: &str) -> Result<String, String> {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && !s.starts_with('.')
    {
        Ok(s.to_owned())
    } else {
        Err("a baseline name is letters, digits, '-', '_' or '.', e.g. v1.6.3".into())
    }
}
