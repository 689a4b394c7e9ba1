//! A real node's configuration files and command lines, as plain functions of where things
//! are: containerd's `config.toml`, the CNI network, kubelet's and kube-proxy's
//! configurations. What kind writes for a node, minus what needs privileges this machine
//! does not give (see each setting's comment).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// The addresses of one node: slot `k` owns `100.100.k.0/30` (the link between the host and
/// the node's network namespace), `100.101.k.0/24` (Pods) and `100.102.k.0/24` (Services).
/// 100.64.0.0/10 is shared address space: no real network here uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeNet {
    pub slot: u8,
    /// The node's network namespace (`/run/netns/<name>`).
    pub netns: String,
    /// The host's end of the link (at most 15 characters, an interface name).
    pub host_link: String,
    /// The host's address on the link: the API server listens here, Pods reach it.
    pub host_ip: Ipv4Addr,
    /// The node's address (kubelet's, its InternalIP).
    pub node_ip: Ipv4Addr,
    pub pod_cidr: String,
    pub service_cidr: String,
    /// The `kubernetes` Service's ClusterIP (the first of the range).
    pub api_service_ip: Ipv4Addr,
    /// The node's Pod bridge inside the namespace.
    pub bridge: String,
}

impl NodeNet {
    pub fn for_slot(slot: u8) -> Self {
        Self {
            slot,
            netns: format!("lbc-node-{slot}"),
            host_link: format!("lbcn{slot}"),
            host_ip: Ipv4Addr::new(100, 100, slot, 1),
            node_ip: Ipv4Addr::new(100, 100, slot, 2),
            pod_cidr: format!("100.101.{slot}.0/24"),
            service_cidr: format!("100.102.{slot}.0/24"),
            api_service_ip: Ipv4Addr::new(100, 102, slot, 1),
            bridge: "lbc0".into(),
        }
    }
}

/// Where a node keeps its state, all under the run directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePaths {
    pub dir: PathBuf,
}

impl NodePaths {
    pub fn new(run_dir: &Path) -> Self {
        Self {
            dir: run_dir.join("node"),
        }
    }
    pub fn containerd_config(&self) -> PathBuf {
        self.dir.join("containerd.toml")
    }
    pub fn containerd_root(&self) -> PathBuf {
        self.dir.join("containerd-root")
    }
    pub fn containerd_state(&self) -> PathBuf {
        self.dir.join("containerd-state")
    }
    /// Short: a Unix socket's path has at most 107 bytes.
    pub fn containerd_socket(&self) -> PathBuf {
        self.dir.join("cd.sock")
    }
    pub fn cni_conf_dir(&self) -> PathBuf {
        self.dir.join("cni")
    }
    pub fn ipam_dir(&self) -> PathBuf {
        self.dir.join("ipam")
    }
    pub fn kubelet_root(&self) -> PathBuf {
        self.dir.join("kubelet")
    }
    pub fn kubelet_config(&self) -> PathBuf {
        self.dir.join("kubelet.yaml")
    }
    pub fn pod_logs(&self) -> PathBuf {
        self.dir.join("pod-logs")
    }
    pub fn kube_proxy_config(&self) -> PathBuf {
        self.dir.join("kube-proxy.yaml")
    }
}

/// Where CNI plugins are (Debian's `containernetworking-plugins`).
pub const CNI_BIN_DIR: &str = "/usr/lib/cni";

/// containerd 1.x (`version = 2` configuration) with everything under the node's directory.
pub fn containerd_toml(paths: &NodePaths, pause_image: &str) -> String {
    let p = |p: PathBuf| p.display().to_string();
    format!(
        r#"version = 2
root = "{root}"
state = "{state}"
# Plugins that write outside root/state, or that this node does not use.
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{socket}"

[ttrpc]
  address = "{socket}.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause_image}"
  # This machine denies CAP_SYS_RESOURCE: without it every sandbox fails with
  # "can't get final child's PID from pipe: EOF" (runc cannot lower oom_score_adj).
  restrict_oom_score_adj = true
  # Pod network namespaces under the state directory, not the machine's /var/run/netns.
  netns_mounts_under_state_dir = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{cni}"
"#,
        root = p(paths.containerd_root()),
        state = p(paths.containerd_state()),
        socket = p(paths.containerd_socket()),
        cni = p(paths.cni_conf_dir()),
    )
}

/// A bridge network for the node's Pods, addresses from its own directory.
pub fn cni_conflist(net: &NodeNet, paths: &NodePaths) -> String {
    serde_json::json!({
        "cniVersion": "1.0.0",
        "name": net.netns,
        "plugins": [
            {
                "type": "bridge",
                "bridge": net.bridge,
                "isGateway": true,
                "ipMasq": true,
                // A Pod reaching itself through a Service.
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{ "subnet": net.pod_cidr }]],
                    "routes": [{ "dst": "0.0.0.0/0" }],
                    "dataDir": paths.ipam_dir(),
                }
            },
            { "type": "portmap", "capabilities": { "portMappings": true } }
        ]
    })
    .to_string()
}

/// What kubelet needs to know besides the paths.
#[derive(Debug, Clone)]
pub struct KubeletInputs<'a> {
    pub net: &'a NodeNet,
    pub paths: &'a NodePaths,
    pub client_ca: &'a Path,
    /// The cgroup under which Pods go (`/lbc-node-<slot>`), so nodes side by side do not
    /// share `kubepods`.
    pub cgroup_root: &'a str,
    pub cluster_dns: Option<Ipv4Addr>,
}

/// `KubeletConfiguration` for a cgroup v1 machine without swap accounting.
pub fn kubelet_config(i: &KubeletInputs<'_>) -> String {
    let dns = i
        .cluster_dns
        .map_or_else(String::new, |ip| format!("clusterDNS: [\"{ip}\"]\n"));
    format!(
        r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: "{node_ip}"
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
containerRuntimeEndpoint: "unix://{socket}"
podLogsDir: "{pod_logs}"
authentication:
  anonymous: {{enabled: false}}
  webhook: {{enabled: false}}
  x509: {{clientCAFile: "{ca}"}}
authorization: {{mode: AlwaysAllow}}
# cgroup v1 here, managed by hand (no systemd).
cgroupDriver: cgroupfs
failCgroupV1: false
cgroupRoot: "{cgroup_root}"
failSwapOn: false
clusterDomain: cluster.local
{dns}resolvConf: /etc/resolv.conf
# Never evict or collect the harness's Pods and images for lack of disk.
evictionHard: {{memory.available: "0%", nodefs.available: "0%", nodefs.inodesFree: "0%", imagefs.available: "0%"}}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
localStorageCapacityIsolation: false
serializeImagePulls: false
maxPods: 250
# Status reaches the API server as soon as a container changes, not at the next sync.
syncFrequency: 5s
nodeStatusUpdateFrequency: 4s
shutdownGracePeriod: 0s
"#,
        node_ip = i.net.node_ip,
        socket = i.paths.containerd_socket().display(),
        pod_logs = i.paths.pod_logs().display(),
        ca = i.client_ca.display(),
        cgroup_root = i.cgroup_root,
    )
}

/// kubelet's flags (the rest is in its configuration file).
pub fn kubelet_args(
    net: &NodeNet,
    paths: &NodePaths,
    kubeconfig: &Path,
    node: &str,
) -> Vec<String> {
    vec![
        format!("--config={}", paths.kubelet_config().display()),
        format!("--kubeconfig={}", kubeconfig.display()),
        format!("--root-dir={}", paths.kubelet_root().display()),
        format!("--cert-dir={}", paths.kubelet_root().join("pki").display()),
        format!("--hostname-override={node}"),
        format!("--node-ip={}", net.node_ip),
        "--v=1".into(),
    ]
}

/// `KubeProxyConfiguration`: iptables in the node's own namespace, conntrack left alone.
pub fn kube_proxy_config(net: &NodeNet, kubeconfig: &Path, node: &str) -> String {
    format!(
        r#"apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: "{kubeconfig}"
hostnameOverride: {node}
mode: iptables
clusterCIDR: {pod_cidr}
bindAddress: 0.0.0.0
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
# conntrack's sysctls are the machine's: leave them.
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
"#,
        kubeconfig = kubeconfig.display(),
        pod_cidr = net.pod_cidr,
    )
}

pub fn kube_proxy_args(paths: &NodePaths) -> Vec<String> {
    vec![
        format!("--config={}", paths.kube_proxy_config().display()),
        "--v=1".into(),
    ]
}

pub fn scheduler_args(kubeconfig: &Path) -> Vec<String> {
    vec![
        format!("--kubeconfig={}", kubeconfig.display()),
        format!("--authentication-kubeconfig={}", kubeconfig.display()),
        format!("--authorization-kubeconfig={}", kubeconfig.display()),
        "--leader-elect=false".into(),
        "--secure-port=0".into(),
        "--v=1".into(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_do_not_share_addresses_or_names() {
        let (a, b) = (NodeNet::for_slot(0), NodeNet::for_slot(7));
        assert_ne!(a.pod_cidr, b.pod_cidr);
        assert_ne!(a.service_cidr, b.service_cidr);
        assert_ne!(a.netns, b.netns);
        assert_ne!(a.host_link, b.host_link);
        assert!(NodeNet::for_slot(255).host_link.len() <= 15);
        assert_eq!(b.api_service_ip, Ipv4Addr::new(100, 102, 7, 1));
    }

    #[test]
    fn containerd_keeps_everything_under_the_node_directory() {
        let paths = NodePaths::new(Path::new("/tmp/run"));
        let toml = containerd_toml(&paths, "logbackup-conformance/pause:1");
        assert!(toml.contains("root = \"/tmp/run/node/containerd-root\""));
        assert!(toml.contains("restrict_oom_score_adj = true"));
        assert!(toml.contains("netns_mounts_under_state_dir = true"));
        assert!(toml.contains("\"io.containerd.internal.v1.opt\""));
    }

    #[test]
    fn cni_network_is_named_after_the_namespace_and_keeps_its_leases_here() {
        let net = NodeNet::for_slot(3);
        let conf: serde_json::Value =
            serde_json::from_str(&cni_conflist(&net, &NodePaths::new(Path::new("/r")))).unwrap();
        assert_eq!(conf["name"], "lbc-node-3");
        assert_eq!(conf["plugins"][0]["ipam"]["dataDir"], "/r/node/ipam");
        assert_eq!(
            conf["plugins"][0]["ipam"]["ranges"][0][0]["subnet"],
            "100.101.3.0/24"
        );
    }

    #[test]
    fn kubelet_config_parses_and_names_the_cgroup_root() {
        let net = NodeNet::for_slot(1);
        let paths = NodePaths::new(Path::new("/r"));
        let text = kubelet_config(&KubeletInputs {
            net: &net,
            paths: &paths,
            client_ca: Path::new("/r/pki/ca.crt"),
            cgroup_root: "/lbc-node-1",
            cluster_dns: Some(Ipv4Addr::new(100, 102, 1, 10)),
        });
        let v: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(v["cgroupRoot"], "/lbc-node-1");
        assert_eq!(v["address"], "100.100.1.2");
        assert_eq!(v["clusterDNS"][0], "100.102.1.10");
        assert_eq!(v["authorization"]["mode"], "AlwaysAllow");
        let proxy: serde_yaml::Value =
            serde_yaml::from_str(&kube_proxy_config(&net, Path::new("/k"), "n")).unwrap();
        assert_eq!(proxy["conntrack"]["maxPerCore"], 0);
        assert_eq!(proxy["clusterCIDR"], "100.101.1.0/24");
    }
}
