//! The proxy's own CA and serving certificate (127.0.0.1, localhost), generated per proxy
//! so it works in front of any cluster, and the kubeconfig that trusts it.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// What the proxy serves with.
pub struct ServingTls {
    pub ca_pem: String,
    pub config: Arc<rustls::ServerConfig>,
}

/// Generate a CA and a serving certificate for loopback and `ip`.
///
/// # Errors
/// Key generation or the TLS configuration fails.
pub fn generate(ip: Ipv4Addr) -> Result<ServingTls, String> {
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "logbackup-conformance API proxy CA");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let issuer = CertifiedIssuer::self_signed(ca, KeyPair::generate().map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    let mut serving =
        CertificateParams::new(vec!["localhost".to_owned()]).map_err(|e| e.to_string())?;
    serving
        .subject_alt_names
        .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    if ip != Ipv4Addr::LOCALHOST {
        serving
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(ip)));
    }
    serving
        .distinguished_name
        .push(DnType::CommonName, "lbc-api-proxy");
    serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().map_err(|e| e.to_string())?;
    let cert = serving
        .signed_by(&key, &issuer)
        .map_err(|e| e.to_string())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(cert.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .map_err(|e| e.to_string())?;
    // HTTP/1.1 only: client-go and kube-rs both fall back to it.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(ServingTls {
        ca_pem: issuer.pem(),
        config: Arc::new(config),
    })
}

/// The token of a kubeconfig the proxy hands out (it authenticates upstream itself).
pub const PLACEHOLDER_TOKEN: &str = "lbc-proxy";

/// A kubeconfig for `server` trusting `ca_pem`, with a placeholder token (the proxy drops
/// it and authenticates upstream with the harness's credentials).
pub fn kubeconfig_yaml(server: &str, ca_pem: &str, token: &str) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let doc = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "lbc-proxy", "cluster": {
            "server": server,
            "certificate-authority-data": b64,
        }}],
        "users": [{"name": "lbc-controller", "user": {"token": token}}],
        "contexts": [{"name": "lbc-proxy", "context": {"cluster": "lbc-proxy", "user": "lbc-controller"}}],
        "current-context": "lbc-proxy",
        "preferences": {},
    });
    serde_yaml::to_string(&doc).unwrap_or_default()
}
