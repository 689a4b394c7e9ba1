//! A suite's set-up: its namespace, the recorder, the kernel, the controller under test
//! (behind the API proxy, isolated where the target says), the plans, and the wait for the
//! API server's create hold after a CRD is installed.

use super::*;

/// Namespace, recorder, controller, plans; the first failure as the error when the suite
/// cannot start. A plan that cannot be written is recorded in `result` and the suite goes
/// on (its steps then fail saying more).
pub(super) async fn set_up<'a>(
    cluster: &RunningCluster,
    suite: &'a Suite,
    root: &'a Path,
    cfg: &RunConfig,
    bundle_dir: &Path,
    result: &mut SuiteResult,
) -> Result<Scope<'a>, String> {
    let client = cluster.client().map_err(|e| format!("no client: {e}"))?;
    let ns = suite.name.clone();
    let timeout = suite
        .timeout
        .as_ref()
        .map_or(cfg.suite_timeout, |d| d.get());
    // Another run's suite namespace is in use for at most the suite's time and teardown.
    namespace::fresh(
        &client,
        &ns,
        &cluster.run_id,
        timeout + Duration::from_secs(60),
        Duration::from_secs(60),
    )
    .await
    .map_err(|e| e.to_string())?;
    // A killed run's admission policy for this namespace would mutate this run's Jobs.
    admission::remove(&client, &ns).await;
    let own_kernel = own_kernel(cluster, suite, cfg, &client).await?;
    let names = suite_names(suite, own_kernel.is_some());
    let kernel = own_kernel.as_ref().map_or_else(
        || {
            cluster
                .kernel_endpoints
                .first()
                .cloned()
                .unwrap_or_default()
        },
        |k| k.endpoint.clone(),
    );
    // The suite's Pods reach a kernel in the cluster by its Service, not by this machine's
    // port-forward.
    let for_pods = own_kernel
        .as_ref()
        .and_then(|k| k.pod_endpoint.clone())
        .unwrap_or_else(|| kernel.clone());
    let shared = own_kernel.is_none();
    prepare_kernel(&client, &ns, &names, (&kernel, &for_pods), shared).await?;
    super::job_access::grant(&client, &ns).await?;
    let recorder = Recorder::start(&client, &ns).await;
    let _ = std::fs::create_dir_all(bundle_dir);
    let log = bundle_dir.join("controller.log");
    let _ = std::fs::remove_file(&log);
    let hook = controller::LateHook::default();
    let (proxy, controller_kubeconfig, reach, metrics_addr) =
        connect(cluster, cfg, suite, bundle_dir, &hook, (&kernel, &for_pods)).await?;
    // A target's objects are custom resources too: the first of them waits out the hold.
    let held_waited = !cfg.objects.is_empty();
    if held_waited {
        wait_out_create_hold(&client, &install::crds_created_in_a_suite(&cfg.objects)).await;
    }
    install::create_objects(&client, &ns, &cfg.objects).await?;
    let controller = start_controller(
        cluster,
        cfg,
        suite,
        &client,
        log,
        (&proxy, &controller_kubeconfig, metrics_addr, &hook),
        (&reach, &for_pods),
    )
    .await?;
    // Plans first, so the first attempt already follows them.
    result
        .failures
        .extend(write_plans(&client, &ns, suite, &names).await);
    if !held_waited {
        // After the controller's start, which the wait then overlaps.
        wait_out_create_hold(&client, &install::crds_created_in_a_suite(&[])).await;
    }
    Ok(Scope {
        suite,
        step: 0,
        root,
        client,
        namespace: ns,
        names,
        recorder,
        cursor: Cursor::default(),
        controller,
        proxy,
        own_kernel,
        bridges: reach.bridges,
        metrics_at: reach.metrics_at,
        metric_names: cfg.metric_names.clone(),
        tool_image: cfg.tool_image.clone(),
        kernel: KernelClient::new(if kernel.is_empty() {
            "127.0.0.1:2379"
        } else {
            &kernel
        }),
        deadline: tokio::time::Instant::now() + timeout,
        snapshot: None,
        fingerprint: None,
        final_events: Vec::new(),
        acted_at: None,
    })
}

/// The controller's way to the API server (the proxy and its kubeconfig), to the kernel and
/// to its metrics; where it serves them. A controller in a Pod reaches the proxy where Pods
/// reach this machine, as its ServiceAccount.
async fn connect(
    cluster: &RunningCluster,
    cfg: &RunConfig,
    suite: &Suite,
    bundle_dir: &Path,
    hook: &controller::LateHook,
    (kernel, for_pods): (&str, &str),
) -> Result<
    (
        Option<crate::proxy::ApiProxy>,
        PathBuf,
        Reach,
        std::net::SocketAddr,
    ),
    String,
> {
    let ns = &suite.name;
    let pod = cfg.controller.pod.as_ref();
    let metrics_addr = match pod {
        Some(_) => pod_form::METRICS_ADDR
            .parse()
            .map_err(|_| "metrics address")?,
        None => crate::programs::process::free_loopback_port()
            .map(|port| std::net::SocketAddr::from(([127, 0, 0, 1], port)))
            .map_err(|e| format!("no port for the controller's metrics: {e}"))?,
    };
    let listen = match pod {
        Some(_) => pod_form::proxy_listen(cluster, cfg.api_proxy, ns)?,
        None => crate::proxy::Listen::default(),
    };
    let (proxy, controller_kubeconfig) =
        start_proxy(cluster, cfg, bundle_dir, hook, &listen).await?;
    let api_url = proxy
        .as_ref()
        .map_or_else(|| cluster.config.cluster_url.to_string(), |p| p.url());
    let reach = match pod {
        Some(_) => Reach {
            isolation: None,
            bridges: None,
            metrics_at: cfg
                .controller
                .metrics_addr(metrics_addr)
                .as_deref()
                .and_then(super::controller_pod::port_of)
                .map(scope::MetricsAt::Pod),
            kernel: for_pods.to_owned(),
        },
        None => reach(cluster, cfg, suite, &api_url, kernel, metrics_addr)?,
    };
    Ok((proxy, controller_kubeconfig, reach, metrics_addr))
}

/// Start the controller under test (its process, or its Deployment), fenced by the proxy.
async fn start_controller(
    cluster: &RunningCluster,
    cfg: &RunConfig,
    suite: &Suite,
    client: &kube::Client,
    log: PathBuf,
    (proxy, controller_kubeconfig, metrics_addr, hook): (
        &Option<crate::proxy::ApiProxy>,
        &Path,
        std::net::SocketAddr,
        &controller::LateHook,
    ),
    (reach, for_pods): (&Reach, &str),
) -> Result<std::sync::Arc<SharedController>, String> {
    let ns = &suite.name;
    let pod = cfg.controller.pod.as_ref();
    let in_pod = PathBuf::from(super::controller_pod::KUBECONFIG_PATH);
    let endpoints = controller::SuiteEndpoints {
        kubeconfig: if pod.is_some() {
            &in_pod
        } else {
            controller_kubeconfig
        },
        namespace: ns,
        kernel: &reach.kernel,
        job_image: &cfg.job_image,
        metrics_addr,
        isolation: reach.isolation.clone(),
    };
    let command = cfg.controller.command(&endpoints, log, &cluster.run_id);
    let controller = match (pod, proxy) {
        (Some(pod), Some(proxy)) => {
            let aliases = pod_form::pd_aliases(client, ns, &pd_service(suite), for_pods).await?;
            pod_form::start(cluster, ns, pod, command, proxy.access(), aliases).await?
        }
        _ => ControllerProcess::start(command)
            .map(|p| SharedController::new(controller::Runner::Process(p)))
            .map_err(|e| format!("starting the controller: {e}"))?,
    };
    hook.set(&controller);
    if let Some(p) = proxy {
        controller.fence_with(p.fence.clone());
    }
    Ok(controller)
}

/// The suite's own kernel if asked for, where Pods can reach one on loopback. Shared (the
/// default), a suite saves an etcd's start and idle ticking.
async fn own_kernel(
    cluster: &RunningCluster,
    suite: &Suite,
    cfg: &RunConfig,
    client: &kube::Client,
) -> Result<Option<SuiteKernel>, String> {
    if let Some(image) = &cfg.kernel_in_cluster {
        let service = pd_service(suite);
        let direct = cluster.capabilities.pod_host.is_some();
        return SuiteKernel::in_cluster(
            client,
            &suite.name,
            &service,
            image,
            direct,
            Duration::from_secs(60),
        )
        .await
        .map(Some)
        .map_err(|e| e.to_string());
    }
    let caps = &cluster.capabilities;
    let host = match (caps.local_processes, caps.pod_host) {
        (_, Some(host)) => Some(host),
        (true, None) => Some(std::net::Ipv4Addr::LOCALHOST),
        (false, None) => None,
    };
    match (&cluster.run_dir, host) {
        (Some(dir), Some(host)) if !cfg.shared_kernel => SuiteKernel::start(
            &dir.join("kernels").join(&suite.name),
            &cluster.run_id,
            host,
            Duration::from_secs(20),
        )
        .await
        .map(Some)
        .map_err(|e| e.to_string()),
        _ => Ok(None),
    }
}

/// The suite's Backups' names in the cluster: declared names on an own kernel, else
/// prefixed by the suite so a shared kernel keeps suites apart.
fn suite_names(suite: &Suite, own_kernel: bool) -> BackupNames {
    BackupNames(
        suite
            .backups
            .iter()
            .map(|b| {
                let actual = if own_kernel {
                    b.name.clone()
                } else {
                    manifest::actual_name(&suite.name, &b.name)
                };
                (b.name.clone(), actual)
            })
            .collect(),
    )
}

/// PD's Service of the suite's Backups (`<cluster>-pd`; their `spec.br.cluster`).
fn pd_service(suite: &Suite) -> String {
    let cluster = suite
        .backups
        .iter()
        .filter_map(|d| manifest::backup_manifest(suite, d, &d.name, Path::new("."), None).ok())
        .find_map(|b| b.spec.br.map(|br| br.cluster))
        .unwrap_or_else(|| "basic".into());
    format!("{cluster}-pd")
}

/// Clear a shared kernel of the suite's tasks and tell fake-br where the kernel is (where
/// its Pods reach it: `for_pods`).
async fn prepare_kernel(
    client: &kube::Client,
    ns: &str,
    names: &BackupNames,
    (kernel, for_pods): (&str, &str),
    shared: bool,
) -> Result<(), String> {
    if kernel.is_empty() {
        return Ok(());
    }
    if shared {
        // A shared kernel outlives the run: an earlier run's tasks of the same names (the
        // names are the same on every run) would read as this run's. Exact keys only.
        let etcd = KernelClient::new(kernel);
        for actual in names.0.values() {
            let k = lbc_api::kernel::keys::task_keys(actual);
            for key in [&k.info, &k.checkpoint, &k.pause, &k.last_error] {
                etcd.delete(key)
                    .await
                    .map_err(|e| format!("clearing {key} in the kernel {kernel}: {e}"))?;
            }
        }
    }
    // fake-br looks here first, so this suite's Jobs use this suite's kernel (or the one
    // given for the cluster: nothing else tells a Pod on someone else's cluster).
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": lbc_api::plan::KERNEL_CONFIGMAP},
        "data": {lbc_api::plan::KERNEL_CONFIGMAP_KEY: for_pods},
    }))
    .unwrap_or_default();
    Api::<ConfigMap>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &cm)
        .await
        .map_err(|e| format!("the kernel ConfigMap: {e}"))?;
    Ok(())
}

/// The API proxy, when the run has one: the controller's kubeconfig points at it.
async fn start_proxy(
    cluster: &RunningCluster,
    cfg: &RunConfig,
    bundle_dir: &Path,
    hook: &controller::LateHook,
    listen: &crate::proxy::Listen,
) -> Result<(Option<crate::proxy::ApiProxy>, PathBuf), String> {
    if !cfg.api_proxy {
        return Ok((None, cluster.kubeconfig.clone()));
    }
    let proxy = crate::proxy::ApiProxy::start_at(
        &cluster.config,
        Some(std::sync::Arc::new(hook.clone())),
        cfg.api_latency,
        listen,
    )
    .await
    .map_err(|e| e.to_string())?;
    let path = bundle_dir.join("kubeconfig");
    std::fs::write(&path, proxy.kubeconfig_yaml())
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok((Some(proxy), path))
}

/// How the controller reaches the API server, the kernel and its metrics endpoint.
struct Reach {
    isolation: Option<controller::Isolation>,
    bridges: Option<isolate::HostBridges>,
    metrics_at: Option<scope::MetricsAt>,
    /// The kernel as the controller addresses it.
    kernel: String,
}

/// An isolated controller reaches the API server and the suite's kernel through the
/// harness, and finds the kernel by PD's service name; otherwise directly.
fn reach(
    cluster: &RunningCluster,
    cfg: &RunConfig,
    suite: &Suite,
    api_url: &str,
    kernel: &str,
    metrics_addr: std::net::SocketAddr,
) -> Result<Reach, String> {
    if cfg.controller.sandbox.is_none() {
        return Ok(Reach {
            isolation: None,
            bridges: None,
            metrics_at: cfg
                .controller
                .metrics_addr(metrics_addr)
                .map(scope::MetricsAt::Tcp),
            kernel: kernel.to_owned(),
        });
    }
    let api = isolate::host_port(api_url).unwrap_or_default();
    let kernel_hp = isolate::host_port(kernel).unwrap_or_default();
    let dir = cluster
        .run_dir
        .clone()
        .unwrap_or_else(std::env::temp_dir)
        .join("isolation")
        .join(&suite.name);
    let inside_metrics = cfg.controller.metrics_addr(metrics_addr);
    let (iso, bridges, sock) = isolate::set_up(
        &dir,
        &api,
        &kernel_hp,
        &pd_names(suite, &suite.name),
        inside_metrics.as_deref(),
    )
    .map_err(|e| format!("isolating the controller: {e}"))?;
    Ok(Reach {
        isolation: Some(iso),
        bridges: Some(bridges),
        metrics_at: sock.map(scope::MetricsAt::Unix),
        kernel: format!("http://127.0.0.1:{}", isolate::PD_PORT),
    })
}

/// Each declared plan as its ConfigMap; the failures, one per plan.
async fn write_plans(
    client: &kube::Client,
    ns: &str,
    suite: &Suite,
    names: &BackupNames,
) -> Vec<String> {
    let mut failures = Vec::new();
    for (backup, subs) in &suite.plans {
        let name = plan_configmap(names.actual(backup));
        let data: BTreeMap<String, String> = subs
            .iter()
            .map(|(k, v)| (k.clone(), serde_yaml::to_string(v).unwrap_or_default()))
            .collect();
        let cm: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": name}, "data": data}))
                .unwrap_or_default();
        if let Err(e) = Api::<ConfigMap>::namespaced(client.clone(), ns)
            .create(&PostParams::default(), &cm)
            .await
        {
            failures.push(format!("plans.{backup}: {e}"));
        }
    }
    failures
}

/// Right after a CRD is installed (a fresh cluster, a target's own CRDs) the API server holds
/// every create of its resources for 2 s: waiting out the rest of that window before the
/// suite's first such create costs less, and the suite's steps then run at the pace they
/// would later on.
async fn wait_out_create_hold(client: &kube::Client, crds: &[String]) {
    if let Some(until) = install::creates_held_until(client, crds).await {
        let left = install::hold_left(until, jiff::Timestamp::now(), Duration::from_millis(100));
        tokio::time::sleep(left).await;
    }
}
