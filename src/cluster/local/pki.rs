//! Certificates and keys for the local control plane, generated in-process (rcgen).
//!
//! One CA signs the apiserver's serving certificate and the client certificates
//! (authentication is by client certificate only, as in envtest). A separate key signs
//! service-account tokens.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};

/// Errors generating or writing the PKI.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("generating certificates: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A client identity: PEM certificate and key.
#[derive(Debug, Clone)]
pub struct ClientIdentity {
    pub user: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// The files the apiserver reads, and the CA clients trust.
#[derive(Debug)]
pub struct Pki {
    pub ca_cert_pem: String,
    pub ca_cert: PathBuf,
    pub serving_cert: PathBuf,
    pub serving_key: PathBuf,
    /// Public half for `--service-account-key-file` (a certificate, as envtest passes).
    pub sa_public: PathBuf,
    /// Private half for `--service-account-signing-key-file`.
    pub sa_key: PathBuf,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    /// Generate a fresh PKI into `dir`.
    ///
    /// # Errors
    /// Key generation or file writes fail.
    pub fn generate(dir: &Path) -> Result<Self, PkiError> {
        Self::generate_for(dir, &[])
    }

    /// As [`Pki::generate`], the serving certificate also valid for `extra_ips` (a real
    /// node's: the host's address on its link, the `kubernetes` Service's ClusterIP).
    ///
    /// # Errors
    /// Key generation or file writes fail.
    pub fn generate_for(dir: &Path, extra_ips: &[Ipv4Addr]) -> Result<Self, PkiError> {
        std::fs::create_dir_all(dir).map_err(|source| PkiError::Write {
            path: dir.to_owned(),
            source,
        })?;
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "logbackup-conformance CA");
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = CertifiedIssuer::self_signed(ca, KeyPair::generate()?)?;

        let mut serving = CertificateParams::new(vec![
            "localhost".to_owned(),
            "kubernetes".to_owned(),
            "kubernetes.default".to_owned(),
            "kubernetes.default.svc".to_owned(),
            "kubernetes.default.svc.cluster.local".to_owned(),
        ])?;
        for ip in [Ipv4Addr::LOCALHOST, Ipv4Addr::new(10, 0, 0, 1)]
            .iter()
            .chain(extra_ips)
        {
            serving
                .subject_alt_names
                .push(SanType::IpAddress(IpAddr::V4(*ip)));
        }
        serving
            .distinguished_name
            .push(DnType::CommonName, "kube-apiserver");
        serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let serving_key = KeyPair::generate()?;
        let serving_cert = serving.signed_by(&serving_key, &issuer)?;

        let sa_key = KeyPair::generate()?;
        let mut sa = CertificateParams::new(Vec::<String>::new())?;
        sa.distinguished_name
            .push(DnType::CommonName, "service-account-signer");
        let sa_cert = sa.self_signed(&sa_key)?;

        let write = |name: &str, body: &str| -> Result<PathBuf, PkiError> {
            let path = dir.join(name);
            std::fs::write(&path, body).map_err(|source| PkiError::Write {
                path: path.clone(),
                source,
            })?;
            Ok(path)
        };
        Ok(Self {
            ca_cert_pem: issuer.pem(),
            ca_cert: write("ca.crt", &issuer.pem())?,
            serving_cert: write("apiserver.crt", &serving_cert.pem())?,
            serving_key: write("apiserver.key", &serving_key.serialize_pem())?,
            sa_public: write("sa-signer.crt", &sa_cert.pem())?,
            sa_key: write("sa-signer.key", &sa_key.serialize_pem())?,
            issuer,
        })
    }

    /// Issue a client certificate and write it and its key to `<dir>/<name>.crt|.key`.
    ///
    /// # Errors
    /// Key generation, signing or the writes fail.
    pub fn client_files(
        &self,
        dir: &Path,
        name: &str,
        groups: &[&str],
    ) -> Result<(PathBuf, PathBuf), PkiError> {
        let id = self.client(name, groups)?;
        let (cert, key) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        for (path, body) in [(&cert, &id.cert_pem), (&key, &id.key_pem)] {
            std::fs::write(path, body).map_err(|source| PkiError::Write {
                path: path.clone(),
                source,
            })?;
        }
        Ok((cert, key))
    }

    /// Issue a client certificate: CN = `user`, O = each of `groups`.
    ///
    /// # Errors
    /// Key generation or signing fails.
    pub fn client(&self, user: &str, groups: &[&str]) -> Result<ClientIdentity, PkiError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, user);
        for g in groups {
            params.distinguished_name.push(DnType::OrganizationName, *g);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(ClientIdentity {
            user: user.to_owned(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// A kubeconfig with everything embedded (cluster, user and context named `lbc`).
pub fn kubeconfig_yaml(server: &str, ca_pem: &str, id: &ClientIdentity) -> String {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let doc = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "lbc", "cluster": {
            "server": server,
            "certificate-authority-data": b64(ca_pem),
        }}],
        "users": [{"name": id.user, "user": {
            "client-certificate-data": b64(&id.cert_pem),
            "client-key-data": b64(&id.key_pem),
        }}],
        "contexts": [{"name": "lbc", "context": {"cluster": "lbc", "user": id.user}}],
        "current-context": "lbc",
        "preferences": {},
    });
    serde_yaml::to_string(&doc).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_files_and_a_parseable_kubeconfig() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::generate(dir.path()).unwrap();
        for p in [
            &pki.ca_cert,
            &pki.serving_cert,
            &pki.serving_key,
            &pki.sa_key,
        ] {
            assert!(std::fs::read_to_string(p).unwrap().contains("-----BEGIN"));
        }
        let admin = pki.client("admin", &["system:masters"]).unwrap();
        let yaml = kubeconfig_yaml("https://127.0.0.1:1234", &pki.ca_cert_pem, &admin);
        let kc = kube::config::Kubeconfig::from_yaml(&yaml).unwrap();
        assert_eq!(kc.current_context.as_deref(), Some("lbc"));
        assert_eq!(
            kc.clusters[0].cluster.as_ref().unwrap().server.as_deref(),
            Some("https://127.0.0.1:1234")
        );
    }
}
