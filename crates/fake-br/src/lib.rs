//! fake-br: the Job entrypoint that stands in for backup-manager + br.
//!
//! It accepts backup-manager's command line, writes `Prepare`, `Running`, does the kernel
//! effect of the subcommand, then `Complete` — unless the per-attempt [`plan`](lbc_api::plan) says
//! otherwise (fail, hang, SIGKILL, write `Failed`, skip the kernel effect).

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::{Api, Client};

use lbc_api::duration::parse_go_duration;
use lbc_api::kernel::keys::{PauseKind, pause_v2, task_keys};
use lbc_api::kernel::{KernelClient, KernelError, tso_now};
use lbc_api::plan::{
    Action, KERNEL_CONFIGMAP, KERNEL_CONFIGMAP_KEY, PlanError, Step, plan_configmap, pop_step,
};
use lbc_api::status_write::update_backup_from;
use lbc_api::{Backup, BackupConditionType as C, BackupMode, LogSubcommand, condition};

/// Environment variable (set by the local provider) that overrides the kernel endpoints.
pub const KERNEL_ENDPOINTS_ENV: &str = "LBC_KERNEL_ENDPOINTS";

/// Errors of a fake-br run (each ends the process non-zero).
#[derive(Debug, thiserror::Error)]
pub enum FakeBrError {
    #[error("{what}: {source}")]
    Kube {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Kernel(#[from] KernelError),
    #[error("Backup {0} not found")]
    NotFound(String),
    #[error("bad plan step: delay {0:?}: {1}")]
    Delay(String, lbc_api::duration::DurationError),
    #[error("bad argument: {0}")]
    Args(String),
}

fn kube_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> FakeBrError {
    let what = what.into();
    move |source| FakeBrError::Kube { what, source }
}

/// backup-manager's `backup` command line (the subset fake-br uses).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Args {
    pub namespace: String,
    pub backup_name: String,
    pub mode: String,
    pub subcommand: Option<String>,
    pub commit_ts: Option<String>,
    pub truncate_until: Option<String>,
    pub kernel_endpoints: Option<String>,
    /// Flags fake-br does not know (tolerated, logged).
    pub ignored: Vec<String>,
}

/// Parse `backup --namespace=… --backupName=… --mode=log --subcommand=… […]`. Both
/// `--flag=value` and `--flag value` work; unknown flags are kept in `ignored`.
///
/// # Errors
/// The `backup` verb, `--namespace` or `--backupName` is missing.
pub fn parse_args<I: IntoIterator<Item = String>>(argv: I) -> Result<Args, FakeBrError> {
    let mut it = argv.into_iter().peekable();
    let mut args = Args {
        mode: "snapshot".into(),
        ..Args::default()
    };
    let mut verb = None;
    while let Some(a) = it.next() {
        let Some(flag) = a
            .strip_prefix("--")
            .or_else(|| a.strip_prefix('-').filter(|f| f.len() == 1))
        else {
            if verb.is_none() {
                verb = Some(a);
            } else {
                args.ignored.push(a);
            }
            continue;
        };
        let (key, inline) = match flag.split_once('=') {
            Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
            None => (flag.to_owned(), None),
        };
        let known = matches!(
            key.as_str(),
            "namespace"
                | "backupName"
                | "mode"
                | "subcommand"
                | "commit-ts"
                | "truncate-until"
                | "kernel-endpoints"
        );
        let value = if known {
            match inline {
                Some(v) => v,
                None => it.next().unwrap_or_default(),
            }
        } else {
            // Boolean-or-valued unknown flag: only `--flag=value` form is unambiguous.
            args.ignored.push(a.clone());
            continue;
        };
        match key.as_str() {
            "namespace" => args.namespace = value,
            "backupName" => args.backup_name = value,
            "mode" => args.mode = value,
            "subcommand" => args.subcommand = Some(value),
            "commit-ts" => args.commit_ts = Some(value),
            "truncate-until" => args.truncate_until = Some(value),
            _ => args.kernel_endpoints = Some(value),
        }
    }
    if verb.as_deref() != Some("backup") {
        return Err(FakeBrError::Args(format!(
            "expected the `backup` verb, got {verb:?}"
        )));
    }
    if args.namespace.is_empty() || args.backup_name.is_empty() {
        return Err(FakeBrError::Args(
            "--namespace and --backupName are required".into(),
        ));
    }
    Ok(args)
}

/// TiDB Operator's BR init container runs `/bin/sh -c "cp /br /var/lib/br-bin/br; echo …"`
/// in the BR image; fake-br stands in for that image too. Given exactly that command it
/// returns what it stands in for (nothing needs copying: fake-br plays br as well); any other
/// command is not understood and fails the container.
pub fn br_copy_stand_in(argv: &[String]) -> Option<String> {
    match argv {
        [sh, c, script] if sh.ends_with("sh") && c == "-c" && script.starts_with("cp /br ") => {
            Some(format!(
                "standing in for the BR image's {script:?}: br is fake-br, nothing to copy"
            ))
        }
        _ => None,
    }
}

/// Pop this run's step from the plan ConfigMap (None: no plan or plan exhausted).
///
/// # Errors
/// API errors, or a malformed plan.
pub async fn take_step(
    client: &Client,
    ns: &str,
    backup: &str,
    key: &str,
) -> Result<Option<Step>, FakeBrError> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let name = plan_configmap(backup);
    loop {
        let Some(mut cm) = api
            .get_opt(&name)
            .await
            .map_err(kube_err(format!("reading {name}")))?
        else {
            return Ok(None);
        };
        let Some(yaml) = cm.data.as_ref().and_then(|d| d.get(key)).cloned() else {
            return Ok(None);
        };
        let (step, rest) = pop_step(&name, key, &yaml)?;
        if step.is_none() {
            return Ok(None);
        }
        cm.data.get_or_insert_default().insert(key.to_owned(), rest);
        // resourceVersion from the read guards the pop: two runs never take one step.
        match api.replace(&name, &PostParams::default(), &cm).await {
            Ok(_) => return Ok(step),
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(e) => return Err(kube_err(format!("updating {name}"))(e)),
        }
    }
}

/// The suite's own kernel, if the harness named one in the namespace.
///
/// # Errors
/// API errors other than "not found".
pub async fn suite_kernel(client: &Client, ns: &str) -> Result<Option<String>, FakeBrError> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let cm = api
        .get_opt(KERNEL_CONFIGMAP)
        .await
        .map_err(kube_err(format!("reading {KERNEL_CONFIGMAP}")))?;
    Ok(cm
        .and_then(|c| c.data)
        .and_then(|mut d| d.remove(KERNEL_CONFIGMAP_KEY)))
}

/// Where the kernel is: the flag, the suite's kernel, the env override, or PD's service
/// name as backup-manager derives it.
pub fn kernel_endpoint(
    args: &Args,
    backup: &Backup,
    suite: Option<String>,
    env: Option<String>,
) -> String {
    if let Some(e) = args
        .kernel_endpoints
        .clone()
        .or(suite.filter(|e| !e.is_empty()))
        .or(env)
        .filter(|e| !e.is_empty())
    {
        return e.split(',').next().unwrap_or_default().to_owned();
    }
    let br = backup.spec.br.clone().unwrap_or_default();
    let ns = br
        .cluster_namespace
        .unwrap_or_else(|| args.namespace.clone());
    lbc_api::names::pd_endpoint(&br.cluster, &ns)
}

/// The kernel change a successful subcommand makes.
///
/// # Errors
/// Kernel I/O errors.
pub async fn kernel_effect(
    kernel: &KernelClient,
    task: &str,
    sub: LogSubcommand,
    start_ts: u64,
) -> Result<(), KernelError> {
    let k = task_keys(task);
    match sub {
        LogSubcommand::Start => {
            let info = serde_json::json!({"name": task, "start_ts": start_ts});
            kernel.put(&k.info, info.to_string().as_bytes()).await?;
            kernel.put(&k.checkpoint, &start_ts.to_be_bytes()).await?;
            kernel.delete(&k.pause).await?;
            kernel.delete(&k.last_error).await?;
        }
        LogSubcommand::Stop => {
            for key in [&k.info, &k.checkpoint, &k.pause, &k.last_error] {
                kernel.delete(key).await?;
            }
        }
        LogSubcommand::Pause => {
            let host = std::env::var("HOSTNAME").unwrap_or_default();
            let value = pause_v2(
                PauseKind::Manual,
                None,
                &host,
                u64::from(std::process::id()),
                &Timestamp::now().to_string(),
            );
            kernel.put(&k.pause, &value).await?;
        }
        LogSubcommand::Resume => {
            kernel.delete(&k.pause).await?;
            kernel.delete(&k.last_error).await?;
        }
        LogSubcommand::Truncate => {}
    }
    Ok(())
}

/// Which status a run writes: a log subcommand's, or (snapshot) the whole status.
#[derive(Debug, Clone, Copy)]
struct Target {
    mode: BackupMode,
    sub: Option<LogSubcommand>,
}

/// Write one condition for the target, plus extra fields, starting from `known` (the copy
/// this process read or wrote last: one request when nobody wrote since, a conflict and a
/// read otherwise). Returns the stored copy.
#[allow(clippy::too_many_arguments)]
async fn write(
    api: &Api<Backup>,
    name: &str,
    known: Option<Backup>,
    Target { mode, sub }: Target,
    ty: C,
    reason: Option<&str>,
    message: Option<&str>,
    extra: impl Fn(&mut Backup),
) -> Result<Backup, FakeBrError> {
    update_backup_from(api, name, known, |b| {
        let now = Timestamp::now();
        let status = b.status.get_or_insert_default();
        let mut changed = status.apply(mode, sub, condition(ty, reason, message), now);
        let before = b.status.clone();
        extra(b);
        changed |= b.status != before;
        changed
    })
    .await
    .map_err(kube_err(format!("writing {ty:?} to Backup {name}")))?
    .ok_or_else(|| FakeBrError::NotFound(name.into()))
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Exit(i32),
    Hang,
    Sigkill,
}

/// Run one attempt. The caller turns the outcome into the process's end.
///
/// # Errors
/// API or kernel errors (the process then exits non-zero, as backup-manager would).
pub async fn run(client: Client, args: Args) -> Result<Outcome, FakeBrError> {
    for flag in &args.ignored {
        tracing::info!(flag, "ignoring an argument fake-br does not use");
    }
    let api: Api<Backup> = Api::namespaced(client.clone(), &args.namespace);
    let name = args.backup_name.clone();
    let backup = api
        .get_opt(&name)
        .await
        .map_err(kube_err(format!("reading Backup {name}")))?
        .ok_or_else(|| FakeBrError::NotFound(name.clone()))?;
    let target = target_of(&args)?;
    let Target { mode, sub } = target;
    let key = sub.map_or("snapshot", LogSubcommand::as_str);
    let step = take_step(&client, &args.namespace, &name, key)
        .await?
        .unwrap_or_default();
    tracing::info!(?step, "fake-br attempt");
    let delay = match &step.delay {
        Some(d) => parse_go_duration(d).map_err(|e| FakeBrError::Delay(d.clone(), e))?,
        None => Duration::ZERO,
    };
    let kernel = KernelClient::new(&kernel_endpoint(
        &args,
        &backup,
        suite_kernel(&client, &args.namespace).await?,
        std::env::var(KERNEL_ENDPOINTS_ENV).ok(),
    ));

    let known = write(
        &api,
        &name,
        Some(backup.clone()),
        target,
        C::Prepare,
        None,
        None,
        |_| {},
    )
    .await?;
    if step.before_running && step.action != Action::Succeed {
        tokio::time::sleep(delay).await;
        return finish_failure(&api, &name, known, mode, sub, &step, planned_end(&step)).await;
    }
    let known = write(
        &api,
        &name,
        Some(known),
        target,
        C::Running,
        None,
        None,
        with_backup_path(sub, s3_path(&backup)),
    )
    .await?;
    let start_ts = args
        .commit_ts
        .as_deref()
        .filter(|c| !c.is_empty() && *c != "0")
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(tso_now);
    if let Some(s) = sub
        && step.performs_kernel_effect()
    {
        kernel_effect(&kernel, &name, s, start_ts).await?;
    }
    tokio::time::sleep(delay).await;
    if let Some(outcome) = planned_end(&step) {
        return finish_failure(&api, &name, known, mode, sub, &step, Some(outcome)).await;
    }
    let truncate_until = args.truncate_until.clone();
    write(
        &api,
        &name,
        Some(known),
        target,
        C::Complete,
        None,
        None,
        with_results(sub, start_ts, truncate_until),
    )
    .await?;
    Ok(Outcome::Exit(0))
}

/// Which status this run writes, from `--mode` and `--subcommand` (log-start by default).
fn target_of(args: &Args) -> Result<Target, FakeBrError> {
    let (mode, sub) = if args.mode == "log" {
        let sub: LogSubcommand = args
            .subcommand
            .as_deref()
            .unwrap_or("log-start")
            .parse()
            .map_err(FakeBrError::Args)?;
        (BackupMode::Log, Some(sub))
    } else {
        (BackupMode::Snapshot, None)
    };
    Ok(Target { mode, sub })
}

/// How the plan's step ends the run, or `None` when it lets the run succeed.
fn planned_end(step: &Step) -> Option<Outcome> {
    match step.action {
        Action::Succeed => None,
        Action::Fail => Some(Outcome::Exit(step.exit_code.unwrap_or(1))),
        Action::Hang => Some(Outcome::Hang),
        Action::Sigkill => Some(Outcome::Sigkill),
    }
}

/// The Backup's S3 location as br reports it (`s3://bucket/prefix`).
fn s3_path(backup: &Backup) -> Option<String> {
    backup.spec.s3.as_ref().map(|s| {
        format!(
            "s3://{}/{}",
            s.bucket.clone().unwrap_or_default(),
            s.prefix.clone().unwrap_or_default()
        )
    })
}

/// What `Running` adds: log-start records where the backup goes.
fn with_backup_path(
    sub: Option<LogSubcommand>,
    backup_path: Option<String>,
) -> impl Fn(&mut Backup) {
    move |b| {
        if sub == Some(LogSubcommand::Start)
            && let (Some(st), Some(p)) = (b.status.as_mut(), backup_path.clone())
        {
            st.backup_path = Some(p);
        }
    }
}

/// What `Complete` adds, what the subcommand leaves behind: log-start its commit-ts,
/// log-truncate how far it truncated.
fn with_results(
    sub: Option<LogSubcommand>,
    start_ts: u64,
    truncate_until: Option<String>,
) -> impl Fn(&mut Backup) {
    move |b| {
        let Some(st) = b.status.as_mut() else { return };
        match sub {
            Some(LogSubcommand::Start) => st.commit_ts = Some(start_ts.to_string()),
            Some(LogSubcommand::Truncate) => st.log_success_truncate_until = truncate_until.clone(),
            _ => {}
        }
    }
}

async fn finish_failure(
    api: &Api<Backup>,
    name: &str,
    known: Backup,
    mode: BackupMode,
    sub: Option<LogSubcommand>,
    step: &Step,
    outcome: Option<Outcome>,
) -> Result<Outcome, FakeBrError> {
    if let Some(reason) = &step.write_failed {
        let message = format!("fake-br failed on purpose ({reason})");
        write(
            api,
            name,
            Some(known),
            Target { mode, sub },
            C::Failed,
            Some(reason),
            Some(&message),
            |_| {},
        )
        .await?;
    }
    Ok(outcome.unwrap_or(Outcome::Exit(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn parses_the_operators_command_line() {
        let a = parse_args(argv(
            "backup --namespace=ns --backupName=lb1 --tikvVersion=v8.1.0 --mode=log --subcommand=log-start --commit-ts=42 --cluster-tls=true",
        ))
        .unwrap();
        assert_eq!(a.namespace, "ns");
        assert_eq!(a.backup_name, "lb1");
        assert_eq!(a.mode, "log");
        assert_eq!(a.subcommand.as_deref(), Some("log-start"));
        assert_eq!(a.commit_ts.as_deref(), Some("42"));
        assert_eq!(
            a.ignored,
            vec!["--tikvVersion=v8.1.0", "--cluster-tls=true"]
        );
    }

    #[test]
    fn space_separated_values_work() {
        let a = parse_args(argv("backup --namespace ns --backupName lb1")).unwrap();
        assert_eq!(
            (
                a.namespace.as_str(),
                a.backup_name.as_str(),
                a.mode.as_str()
            ),
            ("ns", "lb1", "snapshot")
        );
    }

    #[test]
    fn missing_required_flags_are_named() {
        let err = parse_args(argv("backup --namespace=ns"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("--backupName"), "{err}");
        let err = parse_args(argv("restore --namespace=ns --backupName=x"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("`backup` verb"), "{err}");
    }

    #[test]
    fn only_the_operators_br_copy_is_stood_in_for() {
        let cmd = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(
            br_copy_stand_in(&cmd(&[
                "/bin/sh",
                "-c",
                "cp /br /var/lib/br-bin/br; echo 'BR copy finished'"
            ]))
            .is_some()
        );
        assert!(br_copy_stand_in(&cmd(&["/bin/sh", "-c", "rm -rf /"])).is_none());
        assert!(br_copy_stand_in(&cmd(&["backup", "--namespace=x"])).is_none());
    }

    #[test]
    fn kernel_endpoint_follows_backup_manager_unless_overridden() {
        let b: Backup = serde_json::from_value(serde_json::json!({
            "apiVersion": "pingcap.com/v1alpha1", "kind": "Backup",
            "metadata": {"name": "lb1"},
            "spec": {"br": {"cluster": "basic", "clusterNamespace": "tidb"}},
        }))
        .unwrap();
        let a = parse_args(argv("backup --namespace=ns --backupName=lb1")).unwrap();
        assert_eq!(kernel_endpoint(&a, &b, None, None), "basic-pd.tidb:2379");
        let env = Some("http://127.0.0.1:1".to_owned());
        assert_eq!(
            kernel_endpoint(&a, &b, None, env.clone()),
            "http://127.0.0.1:1"
        );
        // The suite's own kernel wins over the node's default.
        let suite = Some("http://127.0.0.1:2".to_owned());
        assert_eq!(kernel_endpoint(&a, &b, suite, env), "http://127.0.0.1:2");
    }
}
